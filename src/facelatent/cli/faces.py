"""`facelatent score` (attribute scores of image files) and `facelatent faces list`."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys

from facelatent.cli.constants import DEFAULT_ATTRIBUTES, IDENTITY_MODELS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "score", help="score faces in image files",
        description="Age, gender, smile, expression, head pose, mouth/eye openness and "
                    "eyeglasses for each image (folders are searched for images). Photos go "
                    "through face detection; --generated reads FFHQ-aligned faces with the "
                    "fixed crop. An input that cannot be scored gets an \"error\" field.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON list, one object per input")
    fmt.add_argument("--csv", action="store_true", help="print CSV, one row per input")
    p.add_argument("--attributes", default=None,
                   help="comma-separated names or groups (pose, expression); default: "
                        + ",".join(DEFAULT_ATTRIBUTES))
    p.add_argument("--identity", choices=("none", *IDENTITY_MODELS), default="none",
                   help="also print a 128-d identity embedding per face")
    p.add_argument("--generated", action="store_true",
                   help="inputs are FFHQ-aligned generated faces: skip detection")
    p.add_argument("--all-faces", action="store_true",
                   help="one row per face found in a photo, left to right, with its index "
                        "(face_index), box (x0 y0 x1 y1 pixels) and detection score; faces "
                        "narrower than about 1/32 of the photo's longer side may be missed "
                        "(default: the largest face only)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, auto")
    p.add_argument("--batch", type=int, default=32, help="faces per forward pass")
    p.set_defaults(func=run_score)

    faces = sub.add_parser("faces", help="face models", description="Face models and attributes.")
    fsub = faces.add_subparsers(dest="faces_command", metavar="COMMAND", required=True)
    lst = fsub.add_parser("list", help="list face models and the attributes they score")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=run_list)


def run_score(args: argparse.Namespace) -> int:
    from facelatent.faces import registry
    from facelatent.faces.files import score_files

    names = registry.resolve_attributes(args.attributes)
    rows = score_files(args.paths, names, generated=args.generated, device=args.device,
                       batch_size=args.batch,
                       identity=None if args.identity == "none" else args.identity,
                       progress=sys.stderr.isatty(), all_faces=args.all_faces)
    where = ["face_index", "box", "detection_score"] if args.all_faces else []
    if args.json:
        json.dump([_jsonable(r) for r in rows], sys.stdout, indent=1)
        print()
    elif args.csv:
        columns = ["path", "face", *where, *names,
                   *(["identity"] if args.identity != "none" else []), "error"]
        writer = csv.DictWriter(sys.stdout, columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            row = dict(r)
            if "identity" in row:
                row["identity"] = " ".join(f"{v:.6f}" for v in row["identity"])
            if "box" in row:
                row["box"] = " ".join(f"{v:.1f}" for v in row["box"])
            writer.writerow({k: _cell(v) for k, v in row.items()})
    else:
        _print_table(rows, names, args.all_faces)
    return 0 if all("error" not in r for r in rows) else 1


def _jsonable(row: dict[str, object]) -> dict[str, object]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _cell(v: object) -> object:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _print_table(rows: list[dict[str, object]], names: tuple[str, ...],
                 all_faces: bool = False) -> None:
    width = max([len("path"), *(len(str(r["path"])) for r in rows)])
    # With every face: its index and box (whole pixels) between the path and the scores.
    where = f"{'face':>4}  {'box (x0 y0 x1 y1)':<21}  " if all_faces else ""
    print(f"{'path':<{width}}  {where}" + "  ".join(f"{n:>10}" for n in names))
    for r in rows:
        if "error" in r:
            print(f"{r['path']!s:<{width}}  error: {r['error']}")
            continue
        cells = []
        for n in names:
            v = r.get(n)
            cells.append(f"{v:>10.3f}" if isinstance(v, float) and not math.isnan(v) else
                         f"{'-':>10}")
        if all_faces:
            box = " ".join(f"{round(float(v))}" for v in r["box"])  # type: ignore[attr-defined]
            where = f"{r['face_index']!s:>4}  {box:<21}  "
        print(f"{r['path']!s:<{width}}  {where}" + "  ".join(cells))


def run_list(args: argparse.Namespace) -> int:
    from facelatent.faces import registry

    models = [m.describe() for m in registry.MODELS.values()]
    attributes = [vars(a) for a in registry.ATTRIBUTES.values()]
    if args.json:
        json.dump({"models": models, "attributes": attributes}, sys.stdout, indent=1)
        print()
        return 0
    print("models:")
    for m in registry.MODELS.values():
        grad = "torch, differentiable" if m.differentiable else "no gradients"
        print(f"  {m.name:<12} {m.task:<11} {m.asset:<24} {m.licence:<11} {grad}")
        print(f"  {'':<12} {m.input}")
    print("attributes:")
    for a in registry.ATTRIBUTES.values():
        print(f"  {a.name:<22} {a.model:<12} {a.meaning}")
    return 0

