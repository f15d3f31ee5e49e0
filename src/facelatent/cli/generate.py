"""`facelatent generate`: images, a grid and the latents for a list of seeds."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from facelatent.generators import get_generator
from facelatent.latents.sampling import generate_to_dir, parse_seeds


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("generate", help="generate faces for seeds",
                       description="Write one PNG per seed, grid.png and latents.npz (seeds, z, w).")
    p.add_argument("--model", default="mobilestylegan-ffhq", help="generator name")
    p.add_argument("--seeds", required=True, help="seeds, e.g. 0-15 or 0-3,7,9-10")
    p.add_argument("--psi", type=float, default=1.0, help="truncation psi (1 = none)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=None, help="resize images to SIZE pixels")
    p.add_argument("--backend", choices=("torch", "openvino"), default="torch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--space", choices=("z", "w"), default="w", help="where truncation acts")
    p.add_argument("--batch", type=int, default=4, help="images per forward pass")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    device = "cpu" if args.backend == "openvino" else args.device
    G = get_generator(args.model, device=device, backend=args.backend)
    with tqdm(total=len(seeds), unit="img", desc="generate", file=sys.stderr) as bar:
        result = generate_to_dir(G, seeds, args.out, truncation_psi=args.psi, size=args.size,
                                 space=args.space, batch=args.batch, progress=bar.update)
    print(f"wrote {len(result.images)} images, {result.grid} and {result.latents}")
    return 0
