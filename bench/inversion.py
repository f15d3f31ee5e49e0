"""GAN inversion of real photos: seconds per photo and reconstruction quality, in one run.

    python bench/inversion.py [--lfw ../shared/datasets/lfw] [--people 20] [--runs w:100,wp:50]
                              [--batch 1] [--threads 2] [--sweep] [--json OUT]

Photos: the first ``--people`` names in LFW's ``people.txt`` that have
``deepfunneled250/<Name>/<Name>_0001.jpg`` (read in place, never copied), plus the package test
photos obama.jpg and biden.jpg. Each is located and FFHQ-aligned at 256 px
(:func:`facelatent.inversion.align_photo`; the largest face where several are found).

Runs: the baseline first, W from ``w_avg`` (``w:<steps>``, the first entry of ``--runs``); then
the others, ``<space>:<steps>[:<batch>]``. For each: seconds per photo (optimisation and
metrics, from the aligned crop), MS-SSIM and PSNR at 256, identity cosine of the reconstruction
against the aligned crop under SFace (the recogniser in the loss) and dlib (not in it), dlib's
cosine against the ORIGINAL photo (detected and aligned as any photo) and the fraction of faces
above each recogniser's same-person threshold (facelatent.faces.calibration where it exists,
else the provisional 0.31 SFace / 0.91 dlib). Ratios are against the baseline.

``--mapping CHECKPOINT``: a run spec whose steps end in ``e`` (``wp:30e``) starts from the
mapping's ``encode()`` (``Inverter(init="encoder")``) instead of ``w_avg``; ``wp:1e`` is close
to the encoder alone.

``--sweep``: instead, compare loss weights (the sets in ``SWEEP``) at the last run's space and
step count on the first ``--sweep-photos`` photos: how the weights in ``LossWeights`` were chosen.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PROVISIONAL = {"sface": 0.31, "dlib": 0.91}
SWEEP = {    # name -> changes to LossWeights()
    "default": {},
    "no identity": {"identity": 0.0},
    "no latent terms": {"prior": 0.0, "delta": 0.0},
}


def thresholds() -> tuple[dict[str, float], str]:
    try:
        from facelatent.faces.calibration import SAME_PERSON_THRESHOLD
    except ImportError:
        return dict(PROVISIONAL), "provisional"
    return {m: float(SAME_PERSON_THRESHOLD[m]) for m in PROVISIONAL}, "facelatent.faces.calibration"


def photo_paths(lfw: Path, people: int) -> list[Path]:
    from facelatent.weights import file_path

    out = []
    for line in (lfw / "people.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            continue
        path = lfw / "deepfunneled250" / parts[0] / f"{parts[0]}_0001.jpg"
        if path.is_file():
            out.append(path)
        if len(out) == people:
            break
    return out + [file_path("test-photos", name) for name in ("obama.jpg", "biden.jpg")]


def load_faces(paths: list[Path], analyzer: object) -> tuple[list[Path], torch.Tensor,
                                                             list[torch.Tensor], list[object]]:
    """Aligned 256 px crops [N, 3, 256, 256] of the photos where a face was found, the photos
    and each crop's alignment transform (JSON)."""
    from facelatent.images import from_uint8, load_rgb
    from facelatent.inversion import align_photo

    kept, crops, photos, transforms = [], [], [], []
    for path in paths:
        photo = from_uint8(load_rgb(path)[None])[0]
        faces = align_photo(analyzer, photo)         # type: ignore[arg-type]
        if not faces:
            print(f"  {path.name}: no face found, skipped", file=sys.stderr)
            continue
        kept.append(path)
        crops.append(faces[0].crop)
        photos.append(photo)
        transforms.append(faces[0].transform)
    return kept, torch.stack(crops), photos, transforms


def run_one(G: object, analyzer: object, crops: torch.Tensor, photo_dlib: torch.Tensor,
            space: str, steps: int, batch: int, weights: object, limits: dict[str, float],
            save: tuple[Path, list[Path], list[object]] | None = None,
            encoder: object = None) -> dict[str, float]:
    from facelatent.inversion import Inverter, save_inversion

    started = time.perf_counter()
    init = "mean" if encoder is None else "encoder"
    res = Inverter(space, steps, batch_size=batch, weights=weights, init=init,
                   encoder=encoder).fit(  # type: ignore[arg-type]
        G, crops, analyzer).result_                   # type: ignore[arg-type]
    seconds = (time.perf_counter() - started) / len(crops)
    if save is not None:                              # for bench/edit_photos.py
        folder, paths, transforms = save
        for i, (path, transform) in enumerate(zip(paths, transforms)):
            save_inversion(res, folder / f"{space}{steps}" / f"{path.stem}_face0", i,
                           source=path, face_index=0, transform=transform)
    m = res.metrics
    with torch.no_grad():
        recon = analyzer.embed(res.images, "dlib", generated=True)   # type: ignore[attr-defined]
    vs_photo = (recon * photo_dlib).sum(1).numpy()
    return {"seconds_per_photo": seconds, "msssim": float(m["msssim"].mean()),
            "psnr": float(m["psnr"].mean()),
            "sface": float(m["identity_sface"].mean()),
            "dlib": float(m["identity_dlib"].mean()),
            "dlib_photo": float(np.nanmean(vs_photo)),
            "same_sface": float((m["identity_sface"] > limits["sface"]).mean()),
            "same_dlib": float((m["identity_dlib"] > limits["dlib"]).mean()),
            "same_dlib_photo": float((vs_photo > limits["dlib"]).mean()),
            "n": len(crops)}


def synthesis_seconds(G: object, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of one W+ synthesis forward and backward (a busy machine
    slows every run alike; this says by how much)."""
    best = float("inf")
    for _ in range(repeats):
        ws = G.w_avg[None, None].repeat(1, G.num_ws, 1).requires_grad_(True)  # type: ignore
        started = time.perf_counter()
        G.synthesis(ws).square().mean().backward()                             # type: ignore
        best = min(best, time.perf_counter() - started)
    return best


COLUMNS = ("seconds_per_photo", "msssim", "psnr", "sface", "dlib", "dlib_photo", "same_sface",
           "same_dlib", "same_dlib_photo")


def print_table(rows: dict[str, dict[str, float]]) -> None:
    base = next(iter(rows.values()))
    print(f"{'run':<18}" + "".join(f"{c:>17}" for c in COLUMNS))
    for name, r in rows.items():
        print(f"{name:<18}" + "".join(f"{r[c]:>17.3f}" for c in COLUMNS))
    print(f"{'ratio to ' + next(iter(rows)):<18}")
    for name, r in list(rows.items())[1:]:
        ratios = [r[c] / base[c] if base[c] else float("nan") for c in COLUMNS]
        print(f"{name:<18}" + "".join(f"{v:>17.3f}" for v in ratios))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lfw", default=str(ROOT.parent / "shared" / "datasets" / "lfw"))
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--runs", default="w:100,wp:50,wp:100",
                        help="baseline first: space:steps[:batch], comma-separated")
    parser.add_argument("--batch", type=int, default=1, help="faces per step (default runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sweep", action="store_true", help="compare loss weights instead")
    parser.add_argument("--sweep-photos", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the table as JSON here")
    parser.add_argument("--weights", default="",
                        help="LossWeights changes for the runs, e.g. delta=0.5,prior=0.05")
    parser.add_argument("--mapping", default=None,
                        help="a mapping checkpoint: runs whose steps end in 'e' start from it")
    parser.add_argument("--save", default=None,
                        help="also write every inversion here (DIR/<space><steps>/<photo>_face0, "
                             "as `facelatent invert` does; bench/edit_photos.py reads them)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from facelatent.faces.analysis import FaceAnalyzer
    from facelatent.generators import get_generator
    from facelatent.inversion import LossWeights

    G = get_generator("mobilestylegan-ffhq")
    analyzer = FaceAnalyzer(G.device)
    limits, source = thresholds()
    unit = synthesis_seconds(G)
    print(f"one synthesis forward + backward at {G.resolution} px: {unit:.2f} s (the unit of "
          "cost: seconds per photo / this ~ steps)", flush=True)
    paths, crops, photos, transforms = load_faces(photo_paths(Path(args.lfw), args.people),
                                                  analyzer)
    geom = analyzer.locate(photos)
    photo_dlib = analyzer.embed(photos, "dlib", geometry=geom)
    print(f"{len(paths)} photos ({len(paths) - 2} LFW people + 2 test photos); same-person "
          f"thresholds {limits} ({source}); {args.threads} threads", flush=True)
    runs = []
    for spec in args.runs.split(","):
        parts = spec.split(":")
        runs.append((parts[0], parts[1], int(parts[2]) if len(parts) > 2 else args.batch))
    encoder = None
    if args.mapping:
        from facelatent.mapping import Mapper

        encoder = Mapper.from_checkpoint(args.mapping, G.device, analyzer).encode
    rows: dict[str, dict[str, float]] = {}
    if args.sweep:
        space, steps_spec, batch = runs[-1]
        steps = int(steps_spec.rstrip("e"))
        n = args.sweep_photos
        for name, change in SWEEP.items():
            weights = replace(LossWeights(), **change)
            rows[name] = run_one(G, analyzer, crops[:n], photo_dlib[:n], space, steps, batch,
                                 weights, limits)
            print(f"  {name}: {rows[name]}", file=sys.stderr, flush=True)
    else:
        for space, steps_spec, batch in runs:
            steps = int(steps_spec.rstrip("e"))
            from_encoder = steps_spec.endswith("e")
            if from_encoder and encoder is None:
                raise SystemExit(f"run {space}:{steps_spec} starts from the mapping: pass "
                                 "--mapping CHECKPOINT")
            name = f"{space}:{steps_spec}" + (f" b{batch}" if batch > 1 else "")
            changes = {k: float(v) for k, v in (kv.split("=") for kv in args.weights.split(",")
                                                if kv)}
            rows[name] = run_one(G, analyzer, crops, photo_dlib, space, steps, batch,
                                 replace(LossWeights(), **changes), limits,
                                 (Path(args.save), paths, transforms) if args.save else None,
                                 encoder if from_encoder else None)
            print(f"  {name}: {rows[name]}", file=sys.stderr, flush=True)
    print_table(rows)
    if args.json:
        from facelatent.io import write_json

        write_json(args.json, {"runs": rows, "photos": [str(p) for p in paths],
                               "thresholds": limits, "threshold_source": source,
                               "weights": LossWeights().as_dict(), "threads": args.threads,
                               "synthesis_seconds": unit},
                   format="facelatent.bench.inversion")
    return 0


if __name__ == "__main__":
    sys.exit(main())
