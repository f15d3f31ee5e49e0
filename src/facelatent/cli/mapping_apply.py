"""`facelatent mapping apply`: the identity of some faces with the pose, expression and the rest
of others, through a trained mapping; every pair, or a path between two faces."""

from __future__ import annotations

import argparse
import json
import sys


def register(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = actions.add_parser(
        "apply", help="swap identity and attributes between faces with a trained mapping",
        description="Take the identity from each --identity face and everything else (pose, "
                    "expression, lighting, background) from each --attributes face, map both "
                    "into W and render every combination; or, with --interpolate, a path "
                    "between two faces. Inputs are seed lists (faces the generator makes), "
                    "image files or folders of them; photos are detected and FFHQ-aligned. "
                    "Writes one PNG per image, grid.png (inputs as its header row and column) "
                    "and latents.npz.")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint.npz from `facelatent mapping train`")
    p.add_argument("--identity", required=True, nargs="+", metavar="INPUT",
                   help="faces whose identity is kept: seeds (e.g. 0-5,9), image files or "
                        "folders (write ./0-5 for a file named like seeds)")
    p.add_argument("--attributes", required=True, nargs="+", metavar="INPUT",
                   help="faces that give pose, expression, lighting and the rest (as "
                        "--identity)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--interpolate", choices=("identity", "attributes"), default=None,
                   help="instead of every pair: move between exactly two faces of this side, "
                        "for each face of the other side")
    p.add_argument("--steps", type=int, default=7,
                   help="points along an --interpolate path, ends included (default 7)")
    p.add_argument("--aligned", action="store_true",
                   help="image inputs are FFHQ-aligned faces already (e.g. generated ones): "
                        "resize them instead of detecting and aligning a face")
    p.add_argument("--model", default=None,
                   help="generator name (default: the one the checkpoint was trained for)")
    p.add_argument("--psi", type=float, default=None,
                   help="truncation psi of faces from seeds (default: the checkpoint's)")
    p.add_argument("--size", type=int, default=256, help="side of the written images in px "
                                                         "(default 256; grid tiles at most 256)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--batch", type=int, default=4, help="images per synthesis pass (default 4)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facelatent.cli.sample import ProgressBar
    from facelatent.generators import get_generator, resolve_device
    from facelatent.mapping import Mapper
    from facelatent.mapping.apply import apply_to_dir, check_apply_options

    mode = args.interpolate or "swap"
    check_apply_options(mode, args.steps, args.size, args.batch, args.psi)   # before loading
    device = resolve_device(args.device, "--device")
    mapper = Mapper.from_checkpoint(args.checkpoint, device)
    G = get_generator(args.model or mapper.generator["name"], device=device)
    mapper.check_generator(G)
    with ProgressBar("apply") as bar:
        report = apply_to_dir(mapper, G, args.identity, args.attributes, args.out, mode=mode,
                              steps=args.steps, truncation_psi=args.psi, aligned=args.aligned,
                              size=args.size, batch=args.batch, checkpoint=args.checkpoint,
                              progress=bar)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    rows, cols = report["shape"][:2]
    if args.model and args.model != mapper.generator["name"]:
        print(f"note: the mapping was trained for {mapper.generator['name']}; rendered with "
              f"{args.model}, which has the same w size", file=sys.stderr)
    print(f"wrote {report['images']} images ({rows} rows: {report['rows']}; {cols} columns: "
          f"{report['columns']}), {report['grid']} and {report['latents']} in "
          f"{report['seconds']:.1f} s")
    return 0
