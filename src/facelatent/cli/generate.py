"""`facelatent generate`: images, a grid and the latents for a list of seeds."""

from __future__ import annotations

import argparse
import sys

from facelatent.cli.constants import GENERATE_MAX_SEEDS, MAX_BATCH, MAX_SIZE, MIN_SIZE


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("generate", help="generate faces for seeds",
                       description="Write one PNG per seed, grid.png (the first 100 faces) and "
                                   "latents.npz (seeds, z, w).")
    p.add_argument("--model", default="mobilestylegan-ffhq", help="generator name")
    p.add_argument("--seeds", required=True,
                   help=f"seeds, e.g. 0-15 or 0-3,7,9-10 (at most {GENERATE_MAX_SEEDS:,})")
    p.add_argument("--psi", type=float, default=1.0,
                   help="truncation psi from -2 to 2 (1 = none, 0 = the average face)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=None,
                   help=f"resize images to SIZE pixels, {MIN_SIZE} to {MAX_SIZE} "
                        "(default: the generator's resolution)")
    p.add_argument("--backend", choices=("torch", "openvino"), default="torch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--space", choices=("z", "w"), default="w", help="where truncation acts")
    p.add_argument("--batch", type=int, default=4,
                   help=f"images per forward pass, 1 to {MAX_BATCH}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facelatent.generators import get_generator, resolve_device
    from facelatent.latents.sampling import check_generate_options, generate_to_dir
    from facelatent.ranges import parse_seeds

    # Every option is checked before the generator is loaded or anything is written.
    seeds = parse_seeds(args.seeds, limit=GENERATE_MAX_SEEDS)
    check_generate_options(args.psi, args.size, args.batch, args.space, psi_option="--psi",
                           size_option="--size", batch_option="--batch")
    device = resolve_device(args.device, "--device")
    if args.backend == "openvino":  # OpenVINO runs on the CPU whatever --device says
        device = resolve_device("cpu")
    G = get_generator(args.model, device=device, backend=args.backend)
    with tqdm(total=len(seeds), unit="img", desc="generate", file=sys.stderr) as bar:
        result = generate_to_dir(G, seeds, args.out, truncation_psi=args.psi, size=args.size,
                                 space=args.space, batch=args.batch, progress=bar.update)
    print(f"wrote {len(result.images)} images, {result.grid} and {result.latents}")
    return 0
