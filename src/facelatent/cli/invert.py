"""`facelatent invert`: the faces in photos as latents of the generator (GAN inversion)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "invert", help="invert faces in photos into W or W+ latents",
        description="Find the faces in each photo, cut them the way FFHQ was made, and optimise "
                    "a latent until the generator reproduces each. Writes OUT/<photo>_face<K>/ "
                    "per face: aligned.png, reconstruction.png, side_by_side.png and latents.npz "
                    "(for `facelatent edit --latents`). A photo that fails is reported on one "
                    "line and the others go on; the exit code is 1 if any failed.")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--space", choices=("w", "wp", "w+"), default="wp",
                   help="w: one code per face; wp (or w+): one per layer, closer but less "
                        "editable (default wp)")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps (default 100)")
    p.add_argument("--face", type=int, default=None,
                   help="which face of each photo, 0 = the leftmost (default: every face)")
    p.add_argument("--init", choices=("mean", "encoder"), default="mean",
                   help="start from w_avg (mean) or an encoder's guess (default mean; encoder "
                        "needs --mapping)")
    p.add_argument("--mapping", default=None, metavar="CHECKPOINT",
                   help="with --init encoder: a trained mapping (facelatent mapping train) whose "
                        "encode() gives the starting w")
    p.add_argument("--size", type=int, default=256,
                   help="side of the aligned crop in px (default 256, the loss size)")
    p.add_argument("--model", default="mobilestylegan-ffhq", help="generator name")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--batch", type=int, default=1, help="faces optimised together (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object per face")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facelatent.generators import get_generator, resolve_device
    from facelatent.inversion import Inverter, invert_photos

    space = "wp" if args.space == "w+" else args.space
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    if args.face is not None and args.face < 0:
        raise ValueError(f"--face must be >= 0 (0 = the leftmost face), got {args.face}")
    if args.size < 64:
        raise ValueError(f"--size must be at least 64 px, got {args.size}")
    if (args.init == "encoder") != (args.mapping is not None):
        raise ValueError("--init encoder and --mapping CHECKPOINT go together: the mapping is "
                         "the encoder")
    encoder = None
    device = resolve_device(args.device, "--device")
    if args.mapping is not None:
        from facelatent.mapping import Mapper

        encoder = Mapper.from_checkpoint(args.mapping, device)
    inverter = Inverter(space, args.steps, init=args.init, batch_size=args.batch,
                        encoder=None if encoder is None else encoder.encode)
    inverter.check_settings()             # before loading the generator
    G = get_generator(args.model, device=device)
    if encoder is not None:
        encoder.check_generator(G)
    with tqdm(total=1, unit="step", desc="invert", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        rows = invert_photos(args.photos, args.out, G, inverter, face=args.face,
                             size=args.size, progress=progress)
    failed = [r for r in rows if "error" in r]
    for r in rows:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"{r['path']}: error: {r['error']}", file=sys.stderr)
        else:
            print(f"{r['folder']}  MS-SSIM {r['msssim']:.3f}  PSNR {r['psnr']:.1f} dB  "
                  f"identity sface {r['identity_sface']:.3f} dlib {r['identity_dlib']:.3f}  "
                  f"{r['seconds']:.1f} s")
    if failed:
        print(f"{len(failed)} of {len({r['path'] for r in rows})} photos failed",
              file=sys.stderr)
    return 1 if failed else 0
