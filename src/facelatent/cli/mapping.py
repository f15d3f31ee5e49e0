"""`facelatent mapping`: train, apply and evaluate the identity/attribute mapping (Nitzan et
al. 2020). Each action lives in its own module; this one only builds the group.

    facelatent mapping train --store runs/map-ffhq --out runs/mapping --preset cpu
    facelatent mapping apply --identity A --attributes B --checkpoint C --out DIR
    facelatent mapping evaluate --checkpoint C --out DIR
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from facelatent.cli import mapping_apply, mapping_evaluate, mapping_train

    group = sub.add_parser(
        "mapping", help="identity/attribute mapping into W (train, apply, evaluate)",
        description="Take the identity from one face and pose, expression, lighting and the "
                    "rest from another, map both into the generator's W and render the "
                    "combination (Nitzan et al., SIGGRAPH Asia 2020).")
    actions = group.add_subparsers(dest="mapping_command", metavar="ACTION", required=True)
    for module in (mapping_train, mapping_apply, mapping_evaluate):
        module.register(actions)
