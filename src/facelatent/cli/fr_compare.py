"""`fr compare`: the sampling modes of `dataset build` compared by what matters, the LFW accuracy
of a recogniser trained on each (see facelatent.recognition.compare).

    facelatent fr compare --identities runs/ident16/ids --per-identity 10 \\
        --modes paper,code,random,varied --epochs 4 --preset cpu \\
        --lfw ../shared/datasets/lfw --out runs/fr-compare

`add_compare_parser(actions)` adds it to the `fr` group; `build_parser()` makes the same
parser stand-alone for scripts/compare_datasets.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from facelatent.cli.constants import DEFAULT_MAX_OFF, SAMPLE_MODES

DESCRIPTION = ("For each sampling mode (paper, code, random, varied): build a dataset from the "
               "same references with the same identities x images, train the same recogniser "
               "with the same budget and seed, and measure it on LFW (10 folds). Writes "
               "OUT/comparison.json, OUT/table.md and OUT/comparison.html (table, DET curves, "
               "the datasets' quality). Every stage resumes: the same command after a kill "
               "redoes only what was not finished; other settings in the same --out are "
               "refused.")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--identities", required=True, metavar="DIR",
                   help="identity boundaries: a folder from `identity fit` or its .npz")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="comparison folder: datasets/, train/, stages/ and the outputs")
    p.add_argument("--lfw", required=True, metavar="DIR",
                   help="LFW folder holding pairs.txt and the images")
    p.add_argument("--modes", default=",".join(SAMPLE_MODES),
                   help="comma-separated sampling modes (default: all four, %(default)s)")
    p.add_argument("--per-identity", type=int, default=10, help="images per class")
    p.add_argument("--identities-max", type=int, default=None, metavar="N",
                   help="use only the first N references by seed (default: all)")
    p.add_argument("--max-off", type=float, default=DEFAULT_MAX_OFF,
                   help="paper, random, varied: |N(0, max_off)| in sigma (default %(default)s)")
    p.add_argument("--code-max-off", type=float, default=None,
                   help="code: the U(0, c) bound in sigma (default: 2 sqrt(2/pi) max_off, the "
                        "paper mode's mean distance along the normal; 9.57 for 6)")
    p.add_argument("--both-sides", action="store_true",
                   help="the other side of each boundary as a second class (as the paper)")
    p.add_argument("--attributes", default=None, metavar="DIR",
                   help="varied: a folder of attribute boundary files (default: fitted on the "
                        "boundaries' store)")
    p.add_argument("--attribute-scale", type=float, default=1.0)
    p.add_argument("--preset", choices=("cpu", "gpu"), default="cpu",
                   help="training preset of `fr train` (cpu: batch 64, 4 epochs)")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--batch", type=int, help="override the preset's crops per step")
    p.add_argument("--lr", type=float, help="override the preset's peak learning rate")
    p.add_argument("--arch", choices=("mobilefacenet", "resnet18"), default="mobilefacenet")
    p.add_argument("--embedding", type=int, default=128)
    p.add_argument("--loss", choices=("cosface", "arcface"), default="cosface")
    p.add_argument("--seed", type=int, default=0,
                   help="the datasets' offsets and the training's weights, order, augmentation")
    p.add_argument("--folds", default=None, help="LFW folds, e.g. 1-10 (default: all ten)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="LFW crop cache (default: OUT/lfw-cache; point it at an existing "
                        "cache to skip aligning LFW's 7,701 photos)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--json", action="store_true", help="print comparison.json's records")
    p.set_defaults(func=run_compare)


def add_compare_parser(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `compare` to a command group's sub-parsers (e.g. `facelatent fr`)."""
    p = actions.add_parser("compare", help="paper vs code vs random vs varied, trained and "
                                           "measured on LFW (resumable)",
                           description=DESCRIPTION)
    _add_arguments(p)


def build_parser(prog: str = "compare_datasets.py") -> argparse.ArgumentParser:
    """The stand-alone parser (scripts/compare_datasets.py)."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    _add_arguments(p)
    return p


def run_compare(args: argparse.Namespace) -> int:
    from facelatent.cli.sample import ProgressBar
    from facelatent.generators.base import resolve_device
    from facelatent.ranges import parse_seeds
    from facelatent.recognition import RecognizerConfig, preset
    from facelatent.recognition.compare import CompareSettings, compare_modes
    from facelatent.recognition.compare_report import HEADER, table_rows

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    folds = None if args.folds is None else parse_seeds(args.folds, limit=100, option="--folds")
    device = str(resolve_device(args.device, "--device"))
    settings = CompareSettings(modes=modes, per_identity=args.per_identity,
                               identities_max=args.identities_max, max_off=args.max_off,
                               code_max_off=args.code_max_off, both_sides=args.both_sides,
                               attribute_scale=args.attribute_scale, attributes=args.attributes,
                               seed=args.seed, device=device,
                               folds=None if folds is None else tuple(folds))
    overrides: dict[str, Any] = {k: v for k, v in (("epochs", args.epochs), ("batch", args.batch),
                                                   ("lr", args.lr)) if v is not None}
    train = preset(args.preset, model=RecognizerConfig(args.arch, args.embedding),
                   loss=args.loss, seed=args.seed, device=device, **overrides)
    started: dict[tuple[str, str], float] = {}

    def on_stage(mode: str, stage: str, what: str) -> None:
        if what == "start":
            started[mode, stage] = time.perf_counter()
            return
        took = (f"done in {time.perf_counter() - started[mode, stage]:.0f} s" if what == "done"
                else "finished earlier: read")
        print(f"{mode}: {stage} {took}", file=sys.stderr, flush=True)

    result = compare_modes(args.identities, args.out, settings, train, lfw=args.lfw,
                           cache=args.cache, on_stage=on_stage,
                           progress=lambda desc: ProgressBar(desc=desc, unit="step"
                                                             if desc.endswith("train") else "img"))
    if args.json:
        print(json.dumps(result.to_json(), indent=1, default=float))
        return 0
    widths = [max(len(h), *(len(r[i]) for r in table_rows(result.modes)))
              for i, h in enumerate(HEADER)]
    for row in [list(HEADER), *table_rows(result.modes)]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if result.verdict is not None:
        print(result.verdict["text"])
    print(f"wrote {result.files['table']}, {result.files['html']}, {result.files['json']}")
    return 0
