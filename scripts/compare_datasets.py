"""Which sampling mode's synthetic identities train the best face recogniser? Paper vs
ExFaceGAN's code mode vs random directions vs attribute-varied, at equal identities x images
and equal training budget, measured on LFW (issue 16, item 5; facelatent.recognition.compare).

    OMP_NUM_THREADS=1 python scripts/compare_datasets.py --identities runs/ident16/ids \
        --per-identity 10 --modes paper,code,random,varied --epochs 4 --preset cpu \
        --lfw ../shared/datasets/lfw --out runs/fr-compare [--both-sides] [--cache DIR]

The same as `facelatent fr compare` (same arguments). Writes OUT/comparison.json,
OUT/table.md and OUT/comparison.html and prints the table.
Resumable: the same command after a kill redoes only the unfinished stages. Errors are one
line (exit 2), as with the `facelatent` command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from facelatent.cli import EXPECTED, describe_error
    from facelatent.cli.fr_compare import build_parser
    from facelatent.runtime import one_blas_thread, passive_waiting

    passive_waiting()
    one_blas_thread()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("compare_datasets: interrupted", file=sys.stderr)
        return 130
    except EXPECTED as exc:
        print(f"compare_datasets: error: {describe_error(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
