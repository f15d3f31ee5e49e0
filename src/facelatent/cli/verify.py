"""`facelatent verify lfw`: face verification accuracy and thresholds of the recognisers on LFW
(see faces.calibration); `facelatent verify utkface`: the age and gender scorers on UTKFace's
labelled photos (see faces.utkface)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("verify", help="benchmarks of the face models on real labelled photos",
                       description="Measure the face models on real labelled photos through "
                                   "facelatent's own detection and alignment: the identity "
                                   "recognisers on LFW, the age and gender scorers on UTKFace.")
    vsub = p.add_subparsers(dest="verify_command", metavar="BENCHMARK", required=True)
    lfw = vsub.add_parser(
        "lfw", help="LFW View 2: 10-fold accuracy and the same-person threshold",
        description="Embed every image of LFW's pairs.txt once, then for each fold choose the "
                    "cosine threshold on the other folds and report accuracy on the held-out "
                    "one; a pair whose face is not found counts as wrong. Also prints the "
                    "threshold chosen on all chosen folds (what faces.calibration keeps).")
    lfw.add_argument("--lfw", required=True, metavar="DIR",
                     help="LFW folder holding pairs.txt and the images (Name/Name_0001.jpg, "
                          "there or one folder below)")
    lfw.add_argument("--model", choices=("sface", "dlib", "both"), default="both",
                     help="recogniser(s) to measure (default: both, sharing the detection)")
    lfw.add_argument("--folds", default=None,
                     help="folds to use, e.g. 1-10 or 1,2 (default: all the file has, 10 in "
                          "View 2); each is held out in turn")
    lfw.add_argument("--face", choices=("central", "largest"), default="central",
                     help="face of a photo with several: nearest the centre (LFW's subject; "
                          "default) or the largest (what `facelatent score` keeps)")
    lfw.add_argument("--cache", default=None, metavar="DIR",
                     help="keep the embeddings in DIR/lfw-<model>-<face>.npz, so a re-run is "
                          "instant")
    lfw.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, auto")
    lfw.add_argument("--batch", type=int, default=32, help="images per forward pass")
    lfw.add_argument("--json", action="store_true", help="print the results as JSON")
    lfw.set_defaults(func=run_lfw)

    utk = vsub.add_parser(
        "utkface", help="UTKFace: age MAE and gender accuracy of `facelatent score`",
        description="Score every labelled photo of UTKFace as `facelatent score` does (the "
                    "largest face) and compare with the labels: age MAE overall and per age "
                    "band, gender accuracy overall and per race code. A photo whose face is not "
                    "found counts as wrong for gender; age is averaged over the faces found.")
    utk.add_argument("--dir", required=True, metavar="DIR",
                     help="UTKFace folder holding labels.csv (filename,age,gender,race) and "
                          "images/")
    utk.add_argument("--limit", type=int, default=None, metavar="N",
                     help="score only N photos, their ages in the proportions of the whole "
                          "(every (total/N)-th by age; default: all)")
    utk.add_argument("--cache", default=None, metavar="DIR",
                     help="keep the scores in DIR/utkface-scores.npz, so a re-run is instant")
    utk.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, auto")
    utk.add_argument("--batch", type=int, default=32, help="faces per forward pass")
    utk.add_argument("--json", action="store_true", help="print the results as JSON")
    utk.set_defaults(func=run_utkface)


def run_lfw(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facelatent.faces.calibration import SAME_PERSON_THRESHOLD
    from facelatent.faces.lfw import verify_lfw
    from facelatent.generators import resolve_device
    from facelatent.ranges import parse_seeds

    folds = None if args.folds is None else parse_seeds(args.folds, limit=100, option="--folds")
    models = ("sface", "dlib") if args.model == "both" else (args.model,)
    with tqdm(unit="img", desc="embed LFW", file=sys.stderr, disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        results = verify_lfw(args.lfw, models, folds=folds, face=args.face,
                             cache=args.cache,
                             device=str(resolve_device(args.device)), batch_size=args.batch,
                             progress=progress)
    if args.json:
        print(json.dumps({m: r.as_dict() for m, r in results.items()}, indent=1))
        return 0
    print(f"{'model':<6} {'accuracy':>17} {'threshold':>9} {'stored':>7} {'genuine':>8} "
          f"{'impostor':>8} {'not found':>9} {'failed pairs':>12}")
    for m, r in results.items():
        acc = f"{100 * r.accuracy_mean:.2f} ± {100 * r.accuracy_std:.2f} %"
        print(f"{m:<6} {acc:>17} {r.threshold:>9.4f} {SAME_PERSON_THRESHOLD[m]:>7.4f} "
              f"{r.genuine_mean:>8.4f} {r.impostor_mean:>8.4f} "
              f"{r.faces_not_found:>4}/{r.images:<4} {r.pairs_failed:>5}/{r.pairs:<6}")
    first = next(iter(results.values()))
    source = "cache" if all(r.cached for r in results.values()) else "embedded"
    held_out = ("mean ± std over held-out folds" if len(first.folds) > 1 else
                "one fold, its threshold chosen on itself")
    print(f"folds {','.join(map(str, first.folds))}; {first.pairs} pairs, {first.images} images "
          f"({source}) in {first.seconds:.0f} s; accuracy: {held_out}")
    return 0


def run_utkface(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facelatent.faces.utkface import verify_utkface
    from facelatent.generators import resolve_device

    with tqdm(unit="img", desc="score UTKFace", file=sys.stderr, disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        r = verify_utkface(args.dir, limit=args.limit, cache=args.cache,
                           device=str(resolve_device(args.device)), batch_size=args.batch,
                           progress=progress)
    if args.json:
        print(json.dumps(r.as_dict(), indent=1))
        return 0
    source = "cache" if r.cached else "scored"
    print(f"UTKFace: {r.photos} photos, faces found {r.faces_found}/{r.photos} "
          f"({r.photos - r.faces_found} not found), {source} in {r.seconds:.0f} s")
    print(f"age MAE {r.age_mae:.2f} years over the faces found (bias {r.age_bias:+.2f})")
    print(f"gender accuracy {100 * r.gender_accuracy:.2f} % (not found counted wrong; "
          f"{100 * r.gender_accuracy_found:.2f} % over the faces found)")
    print(f"{'age band':<10} {'photos':>6} {'found':>6} {'MAE':>6}")
    for g in r.age_by_band:
        print(f"{g.group:<10} {g.photos:>6} {g.found:>6} {g.value:>6.2f}")
    print(f"{'race':<10} {'photos':>6} {'found':>6} {'gender':>8}")
    for g in r.gender_by_race:
        print(f"{g.group:<10} {g.photos:>6} {g.found:>6} {100 * g.value:>6.2f} %")
    return 0
