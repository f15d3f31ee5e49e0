"""`facelatent mapping evaluate`: the mapping beside style mixing and a boundary walk on the
same held-out pairs (see facelatent.mapping.evaluate).

    facelatent mapping evaluate --checkpoint runs/mapping/checkpoint.npz --out runs/map-eval \\
        --pairs 32 --boundaries runs/boundaries --photos photos/
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = actions.add_parser(
        "evaluate", help="identity, pose and expression of swaps beside two baselines",
        description="Swap identity and attributes on held-out generated pairs (and photos), "
                    "and measure identity (with the recogniser the mapping did not train with), "
                    "landmark error, |yaw| and |pitch| differences and expression distance to "
                    "the attribute face, and reconstruction on same-image pairs. Style mixing "
                    "in W+ and a walk along InterFaceGAN boundaries run on the same pairs. "
                    "Writes summary.json, index.html and grid PNGs.")
    p.add_argument("--checkpoint", required=True, help="checkpoint.npz of facelatent mapping train")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--pairs", type=int, default=32,
                   help="generated pairs (default 32; 0 = photos only)")
    p.add_argument("--seeds", default=None,
                   help="seeds of the generated faces, identity faces then as many attribute "
                        "faces, e.g. 2000000-2000063 (default: 2 x pairs from 1000000)")
    p.add_argument("--psi", type=float, default=None,
                   help="truncation of the generated faces (default: the checkpoint's)")
    p.add_argument("--boundaries", nargs="+", default=[], metavar="PATH",
                   help="W boundary files or folders for the walk (yaw_w.npz, pitch_w.npz, "
                        "smile_logit_w.npz, ...; others, e.g. age, are held fixed)")
    p.add_argument("--crossover", default="auto",
                   help="style mixing: 'auto' (sweep 2-10, pick by the rule in the summary), "
                        "a number of style inputs, or a list to sweep such as 2-6,8")
    p.add_argument("--photos", nargs="+", default=[], metavar="PATH",
                   help="photo files or folders: the mapping on every ordered pair of them")
    p.add_argument("--inversions", nargs="+", default=[], metavar="DIR",
                   help="facelatent invert output folders: the mapping and both baselines")
    p.add_argument("--photo-pairs", type=int, default=None,
                   help="at most this many pairs per photo set (default: every ordered pair)")
    p.add_argument("--judge", choices=("sface", "dlib"), default=None,
                   help="recogniser that measures identity (default: the one the mapping did "
                        "not train with; naming the training one is marked as not independent)")
    p.add_argument("--model", default=None, help="generator (default: the checkpoint's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--batch", type=int, default=4, help="faces per forward pass (default 4)")
    p.add_argument("--size", type=int, default=256, help="px faces are measured at (default 256)")
    p.add_argument("--keep", type=int, default=6, help="pairs shown in the grids (default 6)")
    p.add_argument("--walk-iterations", type=int, default=3,
                   help="renders per pair in the boundary walk (default 3)")
    p.add_argument("--max-strength", type=float, default=3.0,
                   help="the walk's cap per boundary, in sigma (default 3)")
    p.add_argument("--json", action="store_true", help="print summary.json")
    p.set_defaults(func=run)


def _crossover(spec: str) -> Any:
    from facelatent.ranges import parse_seeds

    if spec.strip() == "auto":
        return "auto"
    return parse_seeds(spec, limit=1024, option="--crossover")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facelatent.faces.analysis import FaceAnalyzer
    from facelatent.generators import get_generator, resolve_device
    from facelatent.io import read_json
    from facelatent.mapping.checkpoint import load_checkpoint
    from facelatent.mapping.evaluate import (
        METRICS,
        check_evaluate_options,
        evaluate_mapping,
        write_mapping_evaluation,
    )
    from facelatent.mapping.mapper import Mapper
    from facelatent.ranges import parse_seeds

    seeds = parse_seeds(args.seeds, option="--seeds") if args.seeds else None
    crossover = _crossover(args.crossover)
    check_evaluate_options(pairs=args.pairs, batch=args.batch, keep=args.keep, size=args.size,
                           walk_iterations=args.walk_iterations, max_strength=args.max_strength,
                           photo_pairs=args.photo_pairs)
    device = resolve_device(args.device, "--device")
    ckpt = load_checkpoint(args.checkpoint, device)
    analyzer = FaceAnalyzer(device, batch_size=args.batch)
    mapper = Mapper(ckpt.model, ckpt.generator, analyzer)
    mapper.stage, mapper.step = ckpt.stage, ckpt.step
    G = get_generator(args.model or ckpt.generator["name"], device)

    with tqdm(unit="img", desc="mapping evaluate", file=sys.stderr, dynamic_ncols=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        ev = evaluate_mapping(mapper, G, analyzer, pairs=args.pairs, seeds=seeds,
                              truncation_psi=args.psi, boundaries=args.boundaries,
                              crossover=crossover, photos=args.photos,
                              inversions=args.inversions, photo_pairs=args.photo_pairs,
                              size=args.size, batch=args.batch, keep=args.keep,
                              walk_iterations=args.walk_iterations,
                              max_strength=args.max_strength, training=ckpt.data,
                              judge=args.judge, progress=progress)
    paths = write_mapping_evaluation(ev, args.out, info={"checkpoint": str(args.checkpoint)})
    if args.json:
        print(json.dumps(read_json(paths["json"]), indent=2))
        return 0
    summary = ev.summary()
    for name, s in summary["sets"].items():
        print(f"{name}: {s['pairs']} pairs of {s['faces']} faces; identity by "
              f"{summary['identity_model']}")
        for method, m in s["methods"].items():
            fields = ", ".join(f"{k} {m[k]['mean']:.3f}" for k in METRICS)
            print(f"  {method}: {fields}; same person {100 * m['identity_cosine']['fraction_same']:.0f} %")
        if "crossover" in s:
            print(f"  style mixing crossover k = {s['crossover']['chosen']}")
        for c in s["comparison"].values():
            print(f"  {c['verdict']}")
        for note in s["notes"]:
            print(f"  note: {note}")
    print(f"{ev.images} images in {ev.seconds:.1f} s; wrote {paths['html']} and "
          f"{paths['json']}")
    return 0
