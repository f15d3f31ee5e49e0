"""`facelatent dataset build|report` (ExFaceGAN).

    facelatent dataset build --identities runs/ffhq/identities --per-identity 50 --out data/synth
    facelatent dataset report data/synth [--baseline data/synth-random] [--lfw LFW] [--comparison DIR] --out r.html
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facelatent.cli.constants import DEFAULT_MAX_OFF, OFFSET_UNITS, SAMPLE_MODES
from facelatent.cli.sample import ProgressBar, add_engine_arguments, engine_from_args


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    p.add_argument("--identities-max", type=int, default=None, metavar="K",
                   help="use only the first K references (by seed); default: all")
    p.add_argument("--max-off", type=float, default=DEFAULT_MAX_OFF,
                   help="offset scale (paper: |N(0, max_off)| along the normal), in "
                        "--offset-units; default %(default)s sigma: single offsets beyond "
                        "about 20 sigma ghost the face")
    p.add_argument("--offset-units", choices=OFFSET_UNITS, default="sigma",
                   help="sigma: times each normal's spread in the store (about 0.2-0.3 raw "
                        "units in MobileStyleGAN's W); raw: latent units")
    p.add_argument("--mode", choices=SAMPLE_MODES, default="paper",
                   help="paper; code (ExFaceGAN's elementwise U(0, max_off) x normal); random "
                        "(the baseline: random directions, the paper's offset norms); varied "
                        "(paper plus pose, expression, age moves orthogonal to the identity "
                        "normal, see --attributes)")
    p.add_argument("--attributes", default=None, metavar="DIR",
                   help="varied: a folder of attribute boundary files (boundary fit, directions sefa); "
                        "default: yaw, pitch, smile and age fitted on the boundaries' store")
    p.add_argument("--attribute-scale", type=float, default=1.0,
                   help="varied: strength std as a multiple of the store's spread along each "
                        "attribute direction")
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
    p.add_argument("--lfw", default=None, metavar="DIR",
                   help="LFW folder (pairs.txt and images): its own intra-class spread, scored "
                        "by the same models, beside the datasets' (cached in the user cache)")
    p.add_argument("--comparison", default=None, metavar="DIR",
                   help="the --out folder of a finished `fr compare`: its table, verdict and "
                        "LFW DET curves become sections of the report")
    p.add_argument("--out", default=None, help="HTML file (default: DATASET/report.html)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_report)


def run_build(args: argparse.Namespace) -> int:
    from facelatent.boundaries import boundaries_path
    from facelatent.boundaries.identity import IdentityBoundaries
    from facelatent.datasets import DatasetSettings, build_dataset

    source = boundaries_path(args.identities)
    ids = IdentityBoundaries.load(source)
    settings = DatasetSettings(per_identity=args.per_identity, max_off=args.max_off,
                               mode=args.mode, offset_units=args.offset_units,
                               attribute_scale=args.attribute_scale,
                               both_sides=args.both_sides, seed=args.seed,
                               full_size=args.full_size, batch=args.batch, device=args.device,
                               classes_per_shard=args.classes_per_shard)
    with engine_from_args(args) as engine, ProgressBar("dataset") as bar:
        report = build_dataset(args.out, ids, settings, attributes=args.attributes,
                               generator=args.model,
                               limit=args.identities_max, engine=engine,
                               source=str(source), progress=bar)
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
    summary = build_quality_report(args.dataset, out, baseline=args.baseline, model=args.model,
                                   lfw=args.lfw, comparison=args.comparison)
    if args.json:
        print(json.dumps(summary, indent=2, default=float))
    else:
        print(f"wrote {out}")
    return 0

