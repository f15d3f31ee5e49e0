"""Score generated faces and save, per attribute, a grid of the top and bottom faces.

    python scripts/score_generated.py [--n 64] [--psi 0.8] [--k 8] [--out out/face_scores]

Generates seeds 0..n-1 with MobileStyleGAN-FFHQ, scores them with every default attribute
(fixed FFHQ crop, no detection) and both identity embedders, then writes:

- ``<attribute>.png``: the k highest-scoring faces on the top row, the k lowest below;
- ``scores.json``: every face's scores, and per attribute its distribution (mean, std,
  min, quartiles, max);
and prints the distributions. This is how a person checks that each score means what it
claims on generated faces.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from facelatent.faces import analysis
from facelatent.generators import get_generator, z_from_seeds
from facelatent.images import grid, resize, save_png, to_uint8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--psi", type=float, default=0.8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--out", default="out/face_scores")
    parser.add_argument("--thumb", type=int, default=160, help="grid thumbnail size")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    G = get_generator("mobilestylegan-ffhq")
    analyzer = analysis.FaceAnalyzer()
    names = analysis.DEFAULT_ATTRIBUTES + ("gender_logit", "smile_logit")
    seeds = list(range(args.n))
    scores: dict[str, list[float]] = {n: [] for n in names}
    thumbs = []
    with torch.no_grad():
        for start in range(0, args.n, 8):
            batch = seeds[start:start + 8]
            images = G.synthesis(G.mapping(z_from_seeds(batch, G.z_dim), args.psi)).clamp(-1, 1)
            part = analyzer.score(images, names, generated=True)
            for n in names:
                scores[n].extend(part[n].tolist())
            thumbs.append(to_uint8(resize(images, args.thumb)))
            print(f"scored {start + len(batch)}/{args.n}", file=sys.stderr)
    pictures = np.concatenate(thumbs)

    summary = {}
    print(f"{'attribute':<14}{'mean':>8}{'std':>8}{'min':>8}{'q25':>8}{'median':>8}"
          f"{'q75':>8}{'max':>8}")
    for n in names:
        v = np.asarray(scores[n])
        q = np.percentile(v, [0, 25, 50, 75, 100])
        summary[n] = {"mean": float(v.mean()), "std": float(v.std()), "min": float(q[0]),
                      "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]),
                      "max": float(q[4])}
        print(f"{n:<14}{v.mean():8.2f}{v.std():8.2f}" + "".join(f"{x:8.2f}" for x in q))
        if n.endswith("_logit"):
            continue
        order = np.argsort(-v)
        picks = np.concatenate([order[:args.k], order[::-1][:args.k]])
        save_png(grid(pictures[picks], cols=args.k, pad=4), out / f"{n}.png")
    (out / "scores.json").write_text(json.dumps(
        {"seeds": seeds, "psi": args.psi, "scores": scores, "summary": summary}, indent=1))
    print(f"wrote {out}/<attribute>.png (top {args.k} above, bottom {args.k} below) and "
          f"{out}/scores.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
