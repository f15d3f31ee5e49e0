"""`facelatent edit`: faces of some seeds moved along a boundary, as grids and GIFs.

Generator and truncation default to those of the store the boundary was fitted on (its
provenance records them), so an edit starts from the faces the boundary was fitted on.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "edit", help="edit faces along a boundary (grids and GIFs)",
        description="Move the faces of SEEDS along a boundary's normal, from the low to the high "
                    "end of --range in --steps steps, and write per seed a grid PNG (strengths "
                    "left to right) and a GIF, plus grid.png (seeds x strengths) and edit.json.")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--seeds", help="seeds, e.g. 0-7 or 0-3,9")
    start.add_argument("--latents", nargs="+", metavar="FILE",
                       help="faces to edit from files instead of seeds: latents.npz from "
                            "`facelatent generate`, or the folders (or their latents.npz) "
                            "`facelatent invert` writes for a person's own photos")
    p.add_argument("--paste-back", action="store_true",
                   help="with inverted photos: also put each edited face back into its photo "
                        "(NAME_photo.png and .gif), blended with a soft mask")
    p.add_argument("--feather", type=float, default=0.25,
                   help="softness of the paste-back mask's edge, as a fraction of the face "
                        "ellipse (default 0.25)")
    p.add_argument("--boundary", required=True, help="boundary file (.npz, or an InterFaceGAN .npy)")
    p.add_argument("--range", nargs=2, type=float, default=(-3.0, 3.0), metavar=("LO", "HI"),
                   help="lowest and highest strength (default: -3 3)")
    p.add_argument("--steps", type=int, default=7, help="strengths from LO to HI (default 7)")
    p.add_argument("--layers", default=None,
                   help="style inputs to edit, e.g. 0-7 or 0-3,8 (W boundaries; default all)")
    p.add_argument("--condition", nargs="+", default=[], metavar="FILE",
                   help="boundaries to keep fixed: edit orthogonally to their normals")
    p.add_argument("--mode", choices=("relative", "absolute"), default="relative",
                   help="relative: move by the strength; absolute: land at that signed distance "
                        "from the hyperplane (needs an intercept)")
    p.add_argument("--unit", choices=("sigma", "raw"), default="sigma",
                   help="sigma: strengths in standard deviations of the store's samples along "
                        "the normal; raw: latent units")
    p.add_argument("--sigma", type=float, default=None,
                   help="the sigma unit in latent units (default: the boundary's metrics, else "
                        "computed from --store or the boundary's own store)")
    p.add_argument("--store", default=None, help="store to compute sigma from")
    p.add_argument("--space", choices=("z", "w", "wp"), default=None,
                   help="the boundary's space, overriding the file's (for .npy files)")
    p.add_argument("--model", default=None,
                   help="generator name (default: the boundary's store's, else mobilestylegan-ffhq)")
    p.add_argument("--psi", type=float, default=None,
                   help="truncation psi (default: the boundary's store's, else 1)")
    p.add_argument("--truncation-space", choices=("z", "w"), default=None,
                   help="where psi acts (default: the boundary's store's, else w)")
    p.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    p.add_argument("--backend", choices=("torch", "openvino"), default="torch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--batch", type=int, default=4, help="images per synthesis pass")
    p.add_argument("--frame-ms", type=int, default=200, help="GIF frame duration in ms")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from facelatent.editing import (
        check_fits,
        edit_to_dir,
        generator_settings,
        load_edit_boundary,
        sefa_layers,
        sigma_for,
    )
    from facelatent.editing.start import load_start
    from facelatent.generators import get_generator
    from facelatent.ranges import parse_layers, parse_seeds

    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.paste_back and not args.latents:
        raise ValueError("--paste-back puts edited photos back into their photos: give "
                         "--latents with the folders `facelatent invert` wrote")
    boundary = load_edit_boundary(args.boundary, args.space)
    conditions = [load_edit_boundary(f, args.space) for f in args.condition]
    start = (load_start(args.latents, boundary.space, photos=args.paste_back) if args.latents
             else None)
    faces = start.latents if start is not None else parse_seeds(args.seeds)
    setup = generator_settings(boundary, args.model or (start and start.generator), args.psi,
                               args.truncation_space)
    model, psi = setup["generator"], setup["truncation_psi"]
    sigma, source = (sigma_for(boundary, args.sigma, args.store) if args.unit == "sigma"
                     else (None, "raw units"))
    strengths = np.linspace(args.range[0], args.range[1], args.steps)
    device = "cpu" if args.backend == "openvino" else args.device
    G = get_generator(model, device=device, backend=args.backend)
    for b in (boundary, *conditions):
        check_fits(b, G, model)
    if start is not None and start.latents.ndim == 3 and start.latents.shape[1] != G.num_ws:
        raise ValueError(f"--latents hold W+ latents of {start.latents.shape[1]} style inputs, "
                         f"but {model} has {G.num_ws}: they come from another generator")
    layers = parse_layers(args.layers, G.num_ws)        # checked before any message or work
    if layers is None and (own := sefa_layers(boundary, G.num_ws)) is not None:
        layers = own                    # SeFa edits the style inputs it was found on
        print(f"editing the SeFa direction's own style inputs {layers} (--layers overrides)",
              file=sys.stderr)
    print(f"editing {len(faces)} faces of {model} (psi {psi:g}) along {boundary.attribute!r} "
          f"({boundary.space}, {args.mode}); strengths {args.range[0]:g}..{args.range[1]:g}"
          + (f" x sigma {sigma:.4g} ({source})" if sigma is not None else " (raw)"),
          file=sys.stderr, flush=True)
    with tqdm(total=len(faces) * args.steps, unit="img", desc="edit", file=sys.stderr) as bar:
        summary = edit_to_dir(
            G, faces, boundary, strengths, args.out, truncation_psi=psi,
            names=start.names if start is not None else None,
            photos=start.photos if args.paste_back and start is not None else None,
            feather=args.feather,
            truncation_space=setup["truncation_space"], size=args.size, batch=args.batch,
            frame_ms=args.frame_ms, progress=bar.update,
            info={"boundary_file": str(args.boundary), "sigma_source": source,
                  "condition_files": list(args.condition)},
            mode=args.mode, layers=layers, conditions=conditions, unit=args.unit, sigma=sigma)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        pasted = " (and pasted back into their photos)" if args.paste_back else ""
        print(f"wrote {len(faces)} grids and GIFs{pasted} and {summary['grid']}")
    return 0
