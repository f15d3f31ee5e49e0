"""Where do the recognisers of an `fr compare` lose the same person? LFW's genuine pairs
binned by how far apart the two photos' poses are (|yaw difference|, or another score's
difference), with each mode's share accepted at one threshold: the one that accepts a share
--far of all impostor pairs. If the attribute-varied mode teaches pose invariance, its share
falls less than the others' from the first bin to the last.

    OMP_NUM_THREADS=1 python scripts/lfw_pose_breakdown.py runs/fr-compare-96x20 \
        --lfw ../shared/datasets/lfw [--score yaw] [--edges 0,5,10,20,90] [--far 0.1]

Reads OUT/stages/<mode>/lfw-scores.npz (every mode whose lfw stage is done) and the photos'
scores from the LFW attribute cache of `dataset report --lfw` (`facelatent.datasets.lfw.
lfw_scores`; photos it lacks are scored and cached first: about 20 min for all 4,979 of LFW's
people with two photos or more). Prints a markdown table and writes
OUT/pose-breakdown-<score>.json. Errors are one line (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def breakdown(out: Path, lfw: Path, score: str, edges: list[float], far: float) -> dict:
    import numpy as np

    from facelatent.datasets.lfw import lfw_scores
    from facelatent.datasets.sampling import SAMPLE_MODES
    from facelatent.datasets.shard import DATASET_ATTRIBUTES
    from facelatent.faces.lfw import read_folds
    from facelatent.io import load_npz
    from facelatent.recognition.compare import FORMAT, tar_by_bins

    if score not in DATASET_ATTRIBUTES:
        raise ValueError(f"--score must be one of {', '.join(DATASET_ATTRIBUTES)}, got {score!r}")
    order = {m: i for i, m in enumerate(SAMPLE_MODES)}       # the comparison's table order
    stages = sorted((p.parent for p in (out / "stages").glob("*/lfw-scores.npz")),
                    key=lambda s: (order.get(s.name, len(order)), s.name))
    if not stages:
        raise FileNotFoundError(f"{out} has no stages/<mode>/lfw-scores.npz: give the --out "
                                "folder of an `fr compare` whose lfw stage finished")
    pairs, images, _ = read_folds(lfw)
    genuine = [i for i in range(len(pairs.same)) if pairs.same[i]]
    photos = sorted({pairs.first[i] for i in genuine} | {pairs.second[i] for i in genuine})
    held = lfw_scores(images, photos)
    k = DATASET_ATTRIBUTES.index(score)
    key = np.full(len(pairs.same), np.nan)
    for i in genuine:
        key[i] = abs(float(held[pairs.first[i]][k]) - float(held[pairs.second[i]][k]))
    modes = {}
    for stage in stages:
        scores = load_npz(stage / "lfw-scores.npz", format=f"{FORMAT}.lfw-scores",
                          max_version=1, kind="a comparison's LFW scores")
        if not np.array_equal(scores["same"], pairs.same):
            raise ValueError(f"{stage / 'lfw-scores.npz'} is not over {lfw}'s pairs (or a "
                             "subset of folds); give the LFW folder the comparison used")
        modes[stage.name] = tar_by_bins(scores["cosines"], scores["same"], key, edges, far)
    return {"score": score, "edges": edges, "far": far, "modes": modes}


def markdown(result: dict) -> str:
    first = next(iter(result["modes"].values()))
    heads = [f"{b['low']:g}-{b['high']:g} ({b['pairs']} pairs)" for b in first["bins"]]
    lines = [f"| mode | {' | '.join(heads)} |", "|" + " --- |" * (len(heads) + 1)]
    for mode, r in result["modes"].items():
        cells = ["-" if b["tar"] is None else f"{100 * b['tar']:.1f} %" for b in r["bins"]]
        lines.append(f"| {mode} | {' | '.join(cells)} |")
    return ("\n".join(lines) + f"\n\nGenuine LFW pairs by |{result['score']} difference|, "
            f"accepted at each mode's FAR {result['far']:g} threshold; "
            f"{first['outside']} pairs with the score missing or outside the bins.\n")


def main(argv: Sequence[str] | None = None) -> int:
    from facelatent.cli import EXPECTED, describe_error
    from facelatent.io import write_json
    from facelatent.runtime import one_blas_thread

    one_blas_thread()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the --out folder of an `fr compare`")
    p.add_argument("--lfw", type=Path, required=True, help="LFW folder the comparison used")
    p.add_argument("--score", default="yaw", help="which score's difference bins the pairs")
    p.add_argument("--edges", default="0,5,10,20,90", help="bin edges, comma-separated")
    p.add_argument("--far", type=float, default=0.1, help="impostor pairs accepted (share)")
    args = p.parse_args(argv)
    try:
        edges = [float(e) for e in args.edges.split(",")]
        result = breakdown(args.out, args.lfw, args.score, edges, args.far)
        write_json(args.out / f"pose-breakdown-{args.score}.json", result,
                   format="facelatent.fr-comparison.pose-breakdown")
    except EXPECTED as exc:
        print(f"lfw_pose_breakdown: error: {describe_error(exc)}", file=sys.stderr)
        return 2
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
