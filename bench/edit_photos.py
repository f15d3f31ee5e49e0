"""Do edits of inverted photos move the attribute as edits of generated faces do?

    python bench/edit_photos.py --inverted inv/ --boundaries smile_w.npz age_w.npz \
        [--seeds 100000-100004] [--strengths -2,-1,0,1,2] [--json OUT]

For each boundary, the same strengths (in the boundary's sigma) are applied to the inverted
photos (every `latents.npz` under ``--inverted``, from `facelatent invert`) and, as the
baseline in the same run, to generated faces of held-out seeds. Each edited face is re-scored
on the boundary's attribute; reported per face set: the attribute's change per sigma (least
squares slope over the strengths, mean over faces), and identity along the edit: the dlib
cosine of the faces at the ends of the range to the unedited face, with the fraction above the
LFW-calibrated same-person threshold (dlib is not the recogniser inside the inversion's loss).
The ratio row is photos / generated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def measure(G: object, analyzer: object, starts: object, boundary: object,
            strengths: np.ndarray, attribute: str, threshold: float) -> dict[str, float]:
    from facelatent.editing import edit_images

    images = edit_images(G, starts, boundary, strengths, batch=4)       # [N, S, 3, H, W]
    n, s = images.shape[:2]
    flat = images.flatten(0, 1)
    with torch.no_grad():
        scores = analyzer.score(flat, [attribute], generated=True)[attribute]  # type: ignore
        emb = analyzer.embed(flat, "dlib", generated=True)                      # type: ignore
    scores = scores.reshape(n, s).numpy().astype(np.float64)
    emb = emb.reshape(n, s, -1)
    zero = int(np.argmin(np.abs(strengths)))
    cos = (emb * emb[:, zero:zero + 1]).sum(-1).numpy()                        # [N, S]
    ends = cos[:, [0, -1]]
    slope = np.polyfit(strengths, scores.T, 1)[0]                               # [N]
    return {"per_sigma": float(slope.mean()), "per_sigma_std": float(slope.std()),
            "identity_ends": float(ends.mean()),
            "same_person_ends": float((ends > threshold).mean()), "n": int(n)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inverted", required=True, help="folder of `facelatent invert` output")
    parser.add_argument("--boundaries", nargs="+", required=True, help="W boundary files")
    parser.add_argument("--seeds", default="100000-100004", help="generated faces (held out)")
    parser.add_argument("--strengths", default="-2,-1,0,1,2", help="in sigma")
    parser.add_argument("--model", default="mobilestylegan-ffhq")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from facelatent.editing import load_edit_boundary, load_start
    from facelatent.faces import FaceAnalyzer
    from facelatent.faces.calibration import SAME_PERSON_THRESHOLD
    from facelatent.generators import get_generator
    from facelatent.ranges import parse_seeds

    files = sorted(Path(args.inverted).rglob("latents.npz"))
    if not files:
        print(f"no latents.npz under {args.inverted}", file=sys.stderr)
        return 2
    G = get_generator(args.model)
    analyzer = FaceAnalyzer(batch_size=16)
    strengths = np.array([float(v) for v in args.strengths.split(",")])
    threshold = float(SAME_PERSON_THRESHOLD["dlib"])
    seeds = parse_seeds(args.seeds)
    print(f"{len(files)} inverted photos, {len(seeds)} generated faces, strengths "
          f"{strengths.tolist()} sigma; dlib same-person threshold {threshold:.3f}")
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for path in args.boundaries:
        b = load_edit_boundary(path)
        photos = load_start(files, b.space)
        attribute = b.attribute
        rows[attribute] = {
            "photos": measure(G, analyzer, photos.latents, b, strengths, attribute, threshold),
            "generated": measure(G, analyzer, seeds, b, strengths, attribute, threshold)}
        p, g = rows[attribute]["photos"], rows[attribute]["generated"]
        print(f"{attribute:<14} per sigma: photos {p['per_sigma']:+.3f} ± {p['per_sigma_std']:.3f},"
              f" generated {g['per_sigma']:+.3f} ± {g['per_sigma_std']:.3f} (ratio "
              f"{p['per_sigma'] / g['per_sigma']:.2f}); dlib cosine at ±{abs(strengths[0]):g} "
              f"sigma: photos {p['identity_ends']:.3f} ({p['same_person_ends']:.0%} same), "
              f"generated {g['identity_ends']:.3f} ({g['same_person_ends']:.0%} same)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
