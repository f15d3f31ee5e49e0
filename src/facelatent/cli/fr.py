"""`facelatent fr`: train a face recogniser on a synthetic dataset, and measure recognisers on
LFW (see facelatent.recognition).

    facelatent fr train --dataset data/synth --out runs/fr --preset cpu --lfw ../shared/datasets/lfw
    facelatent fr evaluate --lfw ../shared/datasets/lfw --model sface,dlib,runs/fr
    facelatent fr evaluate-dataset --dataset data/synth-heldout --model dlib,runs/fr --classes 96-127
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = sub.add_parser(
        "fr", help="train face recognisers on a dataset and verify them on LFW",
        description="Face recognition on synthetic identities (ExFaceGAN's test): train a "
                    "compact recogniser on a facelatent dataset, and measure it (or the "
                    "pretrained sface and dlib nets) on LFW with the standard 10-fold protocol "
                    "through facelatent's own detection and alignment.")
    actions = group.add_subparsers(dest="fr_command", metavar="ACTION", required=True)
    _register_train(actions)
    _register_evaluate(actions)
    _register_evaluate_dataset(actions)
    from facelatent.cli.fr_compare import add_compare_parser

    add_compare_parser(actions)


def _add_lfw_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--folds", default=None,
                   help="LFW folds, e.g. 1-10 or 1,2 (default: all ten); each is held out in "
                        "turn, its threshold chosen on the others")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="keep LFW's aligned crops (and sface/dlib embeddings) in DIR, so a "
                        "re-run aligns nothing (default: <facelatent cache>/lfw)")


def _register_train(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = actions.add_parser(
        "train", help="train a recogniser on a dataset's crops (resumable)",
        description="Train MobileFaceNet (or IR-ResNet-18) with a CosFace (or ArcFace) margin "
                    "on the 112x112 crops of a `facelatent dataset build` folder, one class per "
                    "identity, with flip, resized-crop and colour-jitter augmentation. A "
                    "checkpoint after every epoch; the same command resumes a killed run, and "
                    "other settings or another dataset in the same --out are refused. With "
                    "--lfw, the LFW accuracy after each epoch goes to OUT/log.jsonl.")
    p.add_argument("--dataset", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder: config.json, model.safetensors, state.pt, log.jsonl")
    p.add_argument("--preset", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: batch 64, 4 epochs; gpu: batch 512, 30 epochs, float16 on CUDA "
                        "(both SGD lr 0.1, cosine; README)")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--batch", type=int, help="override the preset's crops per step")
    p.add_argument("--lr", type=float, help="override the preset's peak learning rate")
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine")
    p.add_argument("--arch", choices=("mobilefacenet", "resnet18"), default="mobilefacenet",
                   help="mobilefacenet: about 1 M parameters; resnet18: IR-18, about 14 M")
    p.add_argument("--embedding", type=int, default=128, help="embedding dimensions")
    p.add_argument("--loss", choices=("cosface", "arcface"), default="cosface")
    p.add_argument("--margin", type=float, default=None,
                   help="m (default: 0.35 for cosface, 0.5 for arcface)")
    p.add_argument("--scale", type=float, default=64.0, help="s (default: 64)")
    p.add_argument("--seed", type=int, default=0,
                   help="initial weights, order of crops and augmentation")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--lfw", default=None, metavar="DIR",
                   help="LFW folder (pairs.txt and the images): measure after each epoch")
    _add_lfw_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_train)


def _register_evaluate(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = actions.add_parser(
        "evaluate", help="LFW 10-fold verification accuracy of recognisers",
        description="For each model: embed every photo the chosen folds' pairs name (our own "
                    "detection and alignment), choose the cosine threshold on the other folds "
                    "and measure accuracy on each held-out fold; mean ± std. A photo whose face "
                    "is not found makes its pairs wrong (counted, never dropped). A trained "
                    "recogniser reads 112x112 ArcFace-template crops and averages the "
                    "embeddings of each crop and its mirror image.")
    p.add_argument("--lfw", required=True, metavar="DIR",
                   help="LFW folder holding pairs.txt and the images (Name/Name_0001.jpg)")
    p.add_argument("--model", default="sface",
                   help="comma-separated: sface, dlib, or a folder written by `fr train` "
                        "(default: sface)")
    _add_lfw_options(p)
    p.add_argument("--no-flip", action="store_true",
                   help="trained recognisers: embed the crop alone, not flip-averaged")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, auto")
    p.add_argument("--batch", type=int, default=32, help="photos per detection batch")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run_evaluate)


def _register_evaluate_dataset(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = actions.add_parser(
        "evaluate-dataset", help="verification on a synthetic dataset's (held-out) identities",
        description="Every pair of crops of the chosen classes of a `dataset build` folder: "
                    "EER, TAR at FAR 1e-3 and 1e-2, mean cosines, and the EER in disjoint groups "
                    "of classes (mean ± std). Beside LFW it tells what the training data taught "
                    "inside the generator's domain from what transfers to real photos. The "
                    "overlap column counts evaluated identities the recogniser trained on "
                    "(0 for a held-out test).")
    p.add_argument("--dataset", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--model", default="dlib",
                   help="comma-separated: sface, dlib (the embeddings the build stored), or "
                        "folders written by `fr train` (default: dlib)")
    p.add_argument("--classes", default=None,
                   help="class numbers, e.g. 96-127 (default: every class with a crop)")
    p.add_argument("--groups", type=int, default=4,
                   help="disjoint groups of classes for the EER's spread (default 4; 1: none)")
    p.add_argument("--no-flip", action="store_true",
                   help="trained recognisers: embed the crop alone, not flip-averaged")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, auto")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run_evaluate_dataset)


def run_evaluate_dataset(args: argparse.Namespace) -> int:
    from facelatent.generators.base import resolve_device
    from facelatent.ranges import parse_seeds
    from facelatent.recognition.heldout import evaluate_on_dataset

    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if not models:
        raise ValueError("--model names no recogniser; pass sface, dlib or a run folder")
    classes = (None if args.classes is None
               else parse_seeds(args.classes, limit=1_000_000, option="--classes"))
    device = str(resolve_device(args.device, "--device"))
    results = {m: evaluate_on_dataset(m, args.dataset, classes=classes, groups=args.groups,
                                      device=device, flip=not args.no_flip) for m in models}
    if args.json:
        print(json.dumps(results, indent=1, default=float))
        return 0
    first = next(iter(results.values()))
    width = max(12, *(len(m) for m in models))
    print(f"{'model':<{width}} {'EER':>7} {'EER by group':>17} {'TAR@1e-3':>9} {'TAR@1e-2':>9} "
          f"{'genuine':>7} {'impostor':>8} {'overlap':>7}")
    for m, r in results.items():
        g = r["groups"]
        spread = ("-" if g["eer_mean"] is None else
                  f"{100 * g['eer_mean']:.2f} ± {100 * g['eer_std']:.2f} %")
        tar = [f"{100 * r['tar_at_far'][k]['tar']:.2f}%" + ("" if r["tar_at_far"][k]["resolved"]
                                                            else "*") for k in ("0.001", "0.01")]
        overlap = "?" if r["overlap"] is None else str(r["overlap"])
        print(f"{m:<{width}} {100 * r['eer']:>6.2f}% {spread:>17} {tar[0]:>9} {tar[1]:>9} "
              f"{r['genuine_mean']:>7.3f} {r['impostor_mean']:>8.3f} {overlap:>7}")
    print(f"{first['dataset']}: classes {first['class_range'][0]}-{first['class_range'][1]} "
          f"({first['classes']}), {first['images']} crops, {first['genuine_pairs']} genuine and "
          f"{first['impostor_pairs']} impostor pairs; * unresolved (fewer than 10 / FAR impostor "
          f"pairs); labelled with {first['label_model']}; overlap: identities the recogniser "
          "trained on (? its dataset is gone)")
    return 0


def _folds(value: str | None) -> list[int] | None:
    from facelatent.ranges import parse_seeds

    return None if value is None else parse_seeds(value, limit=100, option="--folds")


def _cache(value: str | None) -> str:
    from facelatent.weights import cache_root

    return value if value is not None else str(cache_root() / "lfw")


def _updater(bar: Any) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that moves the tqdm ``bar``."""
    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
    return progress


def run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facelatent.cli.sample import ProgressBar
    from facelatent.generators.base import resolve_device
    from facelatent.recognition import (
        LfwCheck,
        RecognizerConfig,
        preset,
        train_recognizer,
    )
    from facelatent.recognition.data import load_training_set

    device = resolve_device(args.device, "--device")
    overrides: dict[str, Any] = {k: v for k, v in (("epochs", args.epochs), ("batch", args.batch),
                                                   ("lr", args.lr)) if v is not None}
    settings = preset(args.preset, model=RecognizerConfig(args.arch, args.embedding),
                      schedule=args.schedule, loss=args.loss, margin=args.margin,
                      scale=args.scale, seed=args.seed, device=str(device), **overrides)
    if args.lfw is None and (args.folds is not None or args.cache is not None):
        raise ValueError("--folds and --cache choose how LFW is measured after each epoch; "
                         "add --lfw DIR, or drop them")
    lfw = (None if args.lfw is None else
           LfwCheck(args.lfw, folds=_folds(args.folds), cache=_cache(args.cache)))
    with tqdm(unit="img", desc="read crops", file=sys.stderr, disable=None) as bar:
        data = load_training_set(args.dataset, progress=_updater(bar))
    with ProgressBar(desc="fr train", unit="step") as bar:
        report = train_recognizer(data, args.out, settings, lfw=lfw, progress=bar)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    if report.action == "complete":
        print(f"{report.out}: all {report.epoch} epochs are done; nothing to do")
        return 0
    last = report.last
    lfw_text = (f"; LFW {100 * last['lfw_accuracy']:.2f} ± {100 * last['lfw_std']:.2f} % "
                f"over {last['lfw_folds']} folds" if "lfw_accuracy" in last else "")
    print(f"{report.out} ({report.action}): epoch {report.epoch} of {settings.epochs}, "
          f"{report.images} crops of {report.classes} classes ({report.skipped} rows without "
          f"a face skipped), {report.parameters / 1e6:.2f} M parameters; "
          f"{report.epochs_run} epochs in {report.seconds:.0f} s; last epoch: loss "
          f"{last['loss']:.3f}, train accuracy {100 * last['train_accuracy']:.1f} %, "
          f"{last['seconds']:.0f} s{lfw_text}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facelatent.generators.base import resolve_device
    from facelatent.recognition.lfw import PUBLISHED, evaluate_lfw

    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if not models:
        raise ValueError("--model names no recogniser; pass sface, dlib or a run folder")
    device = str(resolve_device(args.device, "--device"))
    results = {}
    for model in models:
        with tqdm(unit="img", desc=f"align LFW ({model})", file=sys.stderr,
                  disable=None) as bar:
            results[model] = evaluate_lfw(args.lfw, model, folds=_folds(args.folds),
                                          cache=_cache(args.cache), device=device,
                                          batch_size=args.batch, flip=not args.no_flip,
                                          progress=_updater(bar))
    if args.json:
        print(json.dumps({m: {**r.as_dict(), "published": PUBLISHED.get(m)}
                          for m, r in results.items()}, indent=1))
        return 0
    width = max(12, *(len(m) for m in models))
    print(f"{'model':<{width}} {'accuracy':>17} {'published':>9} {'not found':>9} "
          f"{'failed pairs':>12}")
    for m, r in results.items():
        acc = f"{100 * r.accuracy_mean:.2f} ± {100 * r.accuracy_std:.2f} %"
        published = f"{PUBLISHED[m]:.2f} %" if m in PUBLISHED else "-"
        print(f"{m:<{width}} {acc:>17} {published:>9} {r.faces_not_found:>4}/{r.images:<4} "
              f"{r.pairs_failed:>5}/{r.pairs:<6}")
    first = next(iter(results.values()))
    held_out = ("mean ± std over held-out folds" if len(first.folds) > 1 else
                "one fold, its threshold chosen on itself")
    print(f"folds {','.join(map(str, first.folds))}; {first.pairs} pairs, {first.images} "
          f"photos; accuracy: {held_out}; a face not found counts its pairs wrong")
    if any(m not in PUBLISHED for m in models):
        print("trained recognisers: flip-averaged embeddings of ArcFace-template crops"
              + (" (off: --no-flip)" if args.no_flip else ""))
    return 0
