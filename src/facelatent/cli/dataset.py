"""`facelatent identity fit` and `facelatent dataset build|report` (ExFaceGAN).

    facelatent identity fit --store runs/ffhq --references 1000 --out runs/ffhq/identities
    facelatent dataset build --identities runs/ffhq/identities --per-identity 50 --out data/synth
    facelatent dataset report data/synth [--baseline data/synth-random] --out report.html
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.cli.sample import ProgressBar, add_engine_arguments, engine_from_args

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

    group = sub.add_parser("dataset", help="synthetic face-recognition datasets",
                           description="Build and assess datasets of synthetic identities.")
    actions = group.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "build", help="many aligned images per synthetic identity",
        description="One folder per identity of 112x112 crops on the ArcFace template, and a "
                    "parquet metadata table. Resumable with the same command; deterministic "
                    "given --seed.")
    p.add_argument("--identities", required=True,
                   help="identity boundaries: a folder from `identity fit` or its .npz")
    p.add_argument("--per-identity", type=int, default=50, help="images per identity")
    p.add_argument("--identities-max", type=int, default=0,
                   help="use only the first K references (by seed); 0 = all")
    p.add_argument("--max-off", type=float, default=10.0,
                   help="offset scale in latent units (paper: |N(0, max_off)| along the normal). "
                        "Mind the scale: in MobileStyleGAN's W the samples spread by about 0.3 "
                        "along an identity normal, and faces break up beyond about 3.5")
    p.add_argument("--mode", choices=("paper", "code", "random"), default="paper",
                   help="paper; code (ExFaceGAN's elementwise U(0, max_off) x normal); random "
                        "(the baseline: random directions, the paper's offset norms)")
    p.add_argument("--both-sides", action="store_true",
                   help="the other side of each boundary as a second identity")
    p.add_argument("--full-size", type=int, default=0, help="also write full images (pixels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="generator (default: the boundaries' own)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--classes-per-shard", type=int, default=4)
    p.add_argument("--device", default="cpu")
    add_engine_arguments(p)
    p.add_argument("--out", required=True, help="dataset folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_build)

    p = actions.add_parser(
        "report", help="quality report: genuine/impostor, EER, FNMR@FMR, collisions, spread",
        description="Measured with the recogniser that did not label the boundaries; a baseline "
                    "dataset (e.g. --mode random) side by side.")
    p.add_argument("dataset", help="dataset folder")
    p.add_argument("--baseline", default=None, help="a second dataset folder to compare with")
    p.add_argument("--model", choices=("sface", "dlib"), default=None,
                   help="recogniser to measure with (default: the one that did not label)")
    p.add_argument("--out", default=None, help="HTML file (default: DATASET/report.html)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_report)


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


def run_build(args: argparse.Namespace) -> int:
    from facelatent.boundaries.identity import IdentityBoundaries
    from facelatent.datasets.writer import DatasetSettings, build_dataset

    source = boundaries_path(args.identities)
    ids = IdentityBoundaries.load(source)
    if args.identities_max:
        ids = ids.select(np.sort(ids.seeds)[:args.identities_max])
    settings = DatasetSettings(per_identity=args.per_identity, max_off=args.max_off,
                               mode=args.mode, both_sides=args.both_sides, seed=args.seed,
                               full_size=args.full_size, batch=args.batch, device=args.device,
                               classes_per_shard=args.classes_per_shard)
    with engine_from_args(args) as engine, ProgressBar("dataset") as bar:
        report = build_dataset(args.out, ids, settings, generator=args.model, engine=engine,
                               source=str(source), progress=bar.update, on_start=bar.start)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif report.action == "complete":
        print(f"{report.path}: all {report.classes} identities are there already")
    else:
        print(f"{report.path} ({report.action}): {report.classes} identities; wrote "
              f"{report.shards_written} shards, {report.samples_written} samples "
              f"({report.images_written} with a face) in {report.seconds:.1f} s "
              f"({report.images_per_s:.2f} images/s)")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from facelatent.datasets.report import build_quality_report

    out = Path(args.out) if args.out else Path(args.dataset) / "report.html"
    summary = build_quality_report(args.dataset, out, baseline=args.baseline, model=args.model)
    if args.json:
        print(json.dumps(summary, indent=2, default=float))
    else:
        print(f"wrote {out}")
    return 0

