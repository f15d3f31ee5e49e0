"""`facelatent identity fit` (ExFaceGAN): one identity boundary per reference face of a store.

    facelatent identity fit --store runs/ffhq --references 1000 --out runs/ffhq/identities
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("identity", help="identity boundaries for synthetic identities",
                           description="Per reference face, a linear boundary between latents "
                                       "of the same identity and of others (ExFaceGAN).")
    actions = group.add_subparsers(dest="identity_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "fit", help="fit one identity boundary per reference sample of a store",
        description="Similarity of each reference's embedding to every other sample's (one "
                    "matrix product), labels by median split or top/bottom quantiles, one linear "
                    "boundary per reference in the same space it is applied in, keyed by seed.")
    p.add_argument("--store", required=True, help="LatentStore with identity embeddings")
    p.add_argument("--references", default="1000",
                   help="number of references (a seeded random choice) or a seed list: 3,17,42 "
                        "or 0-99")
    p.add_argument("--model", choices=("sface", "dlib"), default="sface",
                   help="recogniser that labels same/different (the report then measures with "
                        "the other one)")
    p.add_argument("--space", choices=("w", "z"), default="w")
    p.add_argument("--rule", choices=("median", "quantile"), default="median",
                   help="median split (the paper) or top/bottom --quantile")
    p.add_argument("--quantile", type=float, default=0.25, help="fraction per class for 'quantile'")
    p.add_argument("--solver", choices=("lda", "logistic", "linear-svc"), default="lda")
    p.add_argument("--split", type=float, default=0.7, help="training fraction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True,
                   help="a folder (gets boundaries.npz and summary.json) or an .npz path")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_fit)


def boundaries_path(value: str | Path) -> Path:
    """Thin alias of `facelatent.boundaries.identity.boundaries_path` (the folder convention
    lives in the library; kept here for callers that import it from the CLI)."""
    from facelatent.boundaries.identity import boundaries_path as library_path

    return library_path(value)


def run_fit(args: argparse.Namespace) -> int:
    from facelatent.boundaries import IdentityBoundaryFitter
    from facelatent.boundaries.sources import open_store
    from facelatent.ranges import parse_count_or_seeds

    store = open_store(args.store)
    try:        # sized against the store before any list is built
        references = parse_count_or_seeds(args.references, limit=max(1, len(store)),
                                          option="--references")
    except ValueError as exc:
        raise ValueError(f"{exc} (the store {args.store} holds {len(store):,} samples)") from None
    fitter = IdentityBoundaryFitter(references=references, model=args.model, space=args.space,
                                    rule=args.rule, quantile=args.quantile, solver=args.solver,
                                    split=args.split, random_state=args.seed)
    ids = fitter.fit(store).boundaries_
    target = ids.save(args.out)
    summary = {"path": str(target), **ids.summary(), "bytes": target.stat().st_size}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(ids)} identity boundaries ({args.model} labels, {args.rule}, {args.solver}, "
              f"{args.space}) in {summary['fit_seconds']:.1f} s; validation accuracy median "
              f"{summary['val_accuracy']['median']:.3f} (min {summary['val_accuracy']['min']:.3f}); "
              f"spread along the normals (sigma) median {summary['sigma']['median']:.3g} raw "
              f"units; wrote {target} ({summary['bytes'] / 1e6:.1f} MB)")
    return 0
