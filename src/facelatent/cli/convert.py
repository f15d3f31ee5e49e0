"""`facelatent convert`: a user's generator checkpoint to model.safetensors + config.json."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "convert", help="convert a generator checkpoint to safetensors + config.json",
        description="Read a generator checkpoint with its safe loader (no code from the file "
                    "runs) and write OUT_DIR/model.safetensors (the generator's tensors, "
                    "float32) and OUT_DIR/config.json (architecture, num_ws, source sha256, "
                    "facelatent version). Load the result with --model converted:OUT_DIR; the "
                    "original file and its format are no longer needed.")
    p.add_argument("source", help="stylegan2:IN.pkl (NVIDIA StyleGAN2/2-ADA), stylegan3:IN.pkl, "
                                  "rosinality:IN.pt, pggan:IN.pth or stylegan1:IN.pth "
                                  "(InterFaceGAN's PGGAN and StyleGAN)")
    p.add_argument("out_dir", help="output folder (created)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a converted generator already in OUT_DIR")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facelatent.generators.converted import convert_generator

    result = convert_generator(args.source, args.out_dir, overwrite=args.overwrite)
    if args.json:
        print(json.dumps({"folder": str(result.folder), "weights": str(result.weights),
                          "config": str(result.config), "family": result.family,
                          "resolution": result.resolution, "num_ws": result.num_ws,
                          "tensors": result.tensors, "source_sha256": result.source_sha256},
                         indent=2))
    else:
        print(f"wrote {result.weights} ({result.tensors} tensors) and {result.config}; "
              f"load it as --model converted:{result.folder}")
    return 0
