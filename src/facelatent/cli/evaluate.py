"""`facelatent evaluate`: re-score edited faces of a store's samples (see evaluation.metrics)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "evaluate", help="re-score, identity and drift of an edit on a store's samples",
        description="Edit N of the store's samples along a boundary at every strength, re-score "
                    "them with every attribute model and embed them with the recogniser that did "
                    "not make the store's embeddings. Writes evaluation.json, curves.png and "
                    "grid_<variant>.png; with --condition, plain and conditional side by side. "
                    "Edit quality (change per latent unit and per sigma, identity loss and drift "
                    "per sd of change, same-person fraction) is in evaluation.json. With --compare, "
                    "BOUNDARY and every compared file edit the same faces by the same latent "
                    "distances (strengths in BOUNDARY's sigma) and comparison.json holds one row "
                    "of edit quality each.")
    p.add_argument("--store", required=True, help="LatentStore folder the faces come from")
    p.add_argument("--boundary", required=True, help="boundary file (.npz or InterFaceGAN .npy)")
    p.add_argument("--condition", nargs="+", default=[], metavar="FILE",
                   help="condition boundaries: also evaluate the conditional edit")
    p.add_argument("--compare", nargs="+", default=[], metavar="FILE",
                   help="more boundary files to compare with BOUNDARY on the same faces and "
                        "distances (writes comparison.json)")
    p.add_argument("--n", type=int, default=64, help="faces to evaluate (default 64)")
    p.add_argument("--seeds", default=None,
                   help="evaluate these seeds instead of store rows, e.g. held-out ones: "
                        "1000000-1000063 (made as the store makes its samples)")
    p.add_argument("--pick", choices=("first", "random"), default="first",
                   help="the first N samples, or a seeded random choice")
    p.add_argument("--seed", type=int, default=0, help="seed of --pick random")
    p.add_argument("--range", nargs=2, type=float, default=(-3.0, 3.0), metavar=("LO", "HI"),
                   help="lowest and highest strength (default: -3 3)")
    p.add_argument("--steps", type=int, default=7, help="strengths from LO to HI (default 7)")
    p.add_argument("--mode", choices=("relative", "absolute"), default="relative")
    p.add_argument("--unit", choices=("sigma", "raw"), default="sigma")
    p.add_argument("--sigma", type=float, default=None,
                   help="sigma unit in latent units (default: boundary metrics, else the store's spread)")
    p.add_argument("--layers", default=None, help="style inputs to edit (W boundaries)")
    p.add_argument("--space", choices=("z", "w", "wp"), default=None,
                   help="the boundary's space, overriding the file's (for .npy files)")
    p.add_argument("--attributes", default=None,
                   help="attributes to score, comma-separated (default: the store's)")
    p.add_argument("--identity-model", choices=("sface", "dlib"), default=None,
                   help="override the rule (the recogniser the store's embeddings are not from)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass")
    p.add_argument("--keep", type=int, default=4,
                   help="faces shown in the grids (default 4; 0 = write no grids)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true", help="print evaluation.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from facelatent.editing import load_edit_boundary
    from facelatent.evaluation import evaluate_store, write_evaluation
    from facelatent.generators import resolve_device
    from facelatent.io import read_json
    from facelatent.ranges import parse_seeds

    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    boundary = load_edit_boundary(args.boundary, args.space)
    conditions = [load_edit_boundary(f, args.space) for f in args.condition]
    strengths = np.linspace(args.range[0], args.range[1], args.steps)
    if args.compare:
        return _compare(args, boundary, strengths, seeds)
    with tqdm(unit="img", desc="evaluate", file=sys.stderr) as bar:
        ev = evaluate_store(args.store, boundary, strengths, conditions, n=args.n, pick=args.pick,
                            seed=args.seed, seeds=seeds, identity_model=args.identity_model,
                            attributes=args.attributes, sigma=args.sigma,
                            device=str(resolve_device(args.device)), mode=args.mode,
                            unit=args.unit, layers=args.layers, batch=args.batch,
                            keep=args.keep, progress=bar.update, on_start=bar.reset)
    paths = write_evaluation(ev, args.out, info={"boundary_file": args.boundary,
                                                 "condition_files": list(args.condition)})
    written = read_json(paths["json"])
    if args.json:
        print(json.dumps(written, indent=2))
        return 0
    lo, hi = ev.strengths[0], ev.strengths[-1]
    for variant in ev.variants:
        mono = ev.monotonicity(variant)
        print(f"{variant}: target {ev.target or '-'} monotonicity (Spearman) "
              f"{'-' if mono != mono else f'{mono:.3f}'}; identity ({ev.identity_model}) "
              f"{ev.identity_at(lo, variant):.3f} at {lo:+g}, {ev.identity_at(hi, variant):.3f} at {hi:+g}")
        q = written["variants"][variant].get("quality")
        if q:
            print(f"  quality: {_quality_line(q)}")
    for name, d in ev.condition_drift().items():
        print(f"condition {name}: mean |drift| plain {d['plain_mean_abs']:.3g}, conditional "
              f"{d['conditional_mean_abs']:.3g} (reduction {100 * d['reduction']:.0f}%)")
    print(f"{ev.images} images in {ev.seconds:.1f} s; wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _quality_line(q: dict) -> str:
    def num(key: str, fmt: str = "{:.3f}") -> str:
        v = q.get(key)
        return "-" if v is None else fmt.format(v)

    same = q.get("same_person_edited")
    return (f"change {num('change_per_unit_sd')} sd per latent unit ({num('change_per_sigma')} per "
            f"sigma); identity loss {num('identity_loss_per_change', '{:.4f}')} and drift "
            f"{num('drift_per_change')} per sd of change; same person "
            f"{'-' if same is None else f'{100 * same:.0f}%'}")


def _compare(args: argparse.Namespace, boundary, strengths, seeds) -> int:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from tqdm import tqdm

    from facelatent.editing import load_edit_boundary
    from facelatent.evaluation.quality import QUALITY_FORMAT, QUALITY_FORMAT_VERSION
    from facelatent.evaluation.store import compare_store
    from facelatent.generators import resolve_device
    from facelatent.io import jsonable, write_json

    if args.condition or args.mode != "relative" or args.layers is not None:
        raise ValueError("--compare edits every boundary plainly in relative mode: drop "
                         "--condition, --mode absolute and --layers (evaluate those one by one)")
    files = [args.boundary, *args.compare]
    boundaries = [boundary, *(load_edit_boundary(f, args.space) for f in args.compare)]
    labels = [Path(f).name for f in files]
    if len(set(labels)) < len(labels):
        labels = list(files)
    with tqdm(unit="img", desc="compare", file=sys.stderr) as bar:
        result = compare_store(args.store, boundaries, strengths, labels=labels, n=args.n,
                               pick=args.pick, seed=args.seed, seeds=seeds, unit=args.unit,
                               sigma=args.sigma, identity_model=args.identity_model,
                               attributes=args.attributes, batch=args.batch,
                               device=str(resolve_device(args.device)), progress=bar.update,
                               on_start=bar.reset)
    for row, f in zip(result["rows"], files):
        row["file"] = f
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = write_json(out / "comparison.json", jsonable(result), format=QUALITY_FORMAT,
                      version=QUALITY_FORMAT_VERSION)
    if args.json:
        print(json.dumps(jsonable(result), indent=2))
        return 0
    st = result["settings"]
    print(f"{st['n']} faces{' (held out)' if st.get('held_out') else ''}, latent distances "
          f"{', '.join(f'{d:+.3g}' for d in st['distances'])}, identity by {st['identity_model']}")
    for row in result["rows"]:
        q = row.get("quality")
        print(f"{row['label']}: cos to first {row['cos_to_first']:.3f}; "
              f"{_quality_line(q) if q else 'no scored target'}")
    print(f"{st['images']} images in {st['seconds']:.1f} s; wrote {path}")
    return 0
