"""`facelatent identity fit` (ExFaceGAN): one identity boundary per reference face of a store.

    facelatent identity fit --store runs/ffhq --references 1000 --out runs/ffhq/identities
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

BOUNDARIES_FILE = "boundaries.npz"


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
                   help=f"a folder (gets {BOUNDARIES_FILE} and summary.json) or an .npz path")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_fit)


def parse_seeds(value: str) -> int | list[int]:
    """'1000' -> 1000 (a count); '3,17,42' or '0-99' or '0-9,20' -> a seed list."""
    value = value.strip()
    if value.isdigit():
        return int(value)
    seeds: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (int(v) for v in part.split("-", 1))
            if hi < lo:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.extend(range(lo, hi + 1))
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"--references must be a count or seeds like 3,17,42 or 0-99, got {value!r}")
    return seeds


def boundaries_path(value: str | Path) -> Path:
    path = Path(value)
    return path / BOUNDARIES_FILE if path.suffix != ".npz" else path


def run_fit(args: argparse.Namespace) -> int:
    from facelatent.boundaries.identity import fit_identity_boundaries
    from facelatent.latents.store import LatentStore

    store = LatentStore.open(args.store, read_only=True)
    ids = fit_identity_boundaries(store, references=parse_seeds(args.references),
                                  model=args.model, space=args.space, rule=args.rule,
                                  quantile=args.quantile, solver=args.solver, split=args.split,
                                  seed=args.seed)
    target = boundaries_path(args.out)
    target.parent.mkdir(parents=True, exist_ok=True)
    ids.provenance = {**(ids.provenance or {}), "command": sys.argv}
    ids.save(target)
    summary = _fit_summary(ids, target)
    if Path(args.out).suffix != ".npz":
        (target.parent / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(ids)} identity boundaries ({args.model} labels, {args.rule}, {args.solver}, "
              f"{args.space}) in {summary['fit_seconds']:.1f} s; validation accuracy median "
              f"{summary['val_accuracy']['median']:.3f} (min {summary['val_accuracy']['min']:.3f}); "
              f"wrote {target} ({summary['bytes'] / 1e6:.1f} MB)")
    return 0


def _fit_summary(ids: Any, target: Path) -> dict[str, Any]:
    m = ids.metrics
    val = np.asarray(m.get("val_accuracy", []), float)
    stats = ({"median": float(np.median(val)), "mean": float(val.mean()),
              "min": float(val.min()), "max": float(val.max())} if val.size else {})
    return {"path": str(target), "references": len(ids), "space": ids.space,
            "label_model": ids.model, "val_accuracy": stats,
            "fit_seconds": float((ids.provenance or {}).get("fit_seconds", 0.0)),
            "bytes": target.stat().st_size}
