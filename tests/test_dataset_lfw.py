"""Tests of facelatent.datasets.lfw: LFW's own intra-class spread, the reference beside a
dataset's in `facelatent dataset report --lfw DIR`.

A made-up LFW folder (pairs.txt and one-colour JPEGs) with a stand-in scorer whose scores are
known per file, so the spreads are computed here by hand; the real folder, when present, is
scored for a few people with the real networks (marked slow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facelatent.datasets.lfw as lfw_module
from facelatent.datasets import lfw_spread
from facelatent.datasets.lfw import lfw_people
from facelatent.datasets.shard import DATASET_ATTRIBUTES

REAL_LFW = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "lfw"
YAW = DATASET_ATTRIBUTES.index("yaw")
AGE = DATASET_ATTRIBUTES.index("age")
# person -> image numbers named by the pairs below; Cy_Solo has one image, so is left out.
PEOPLE = {"Ann_Lee": (1, 2, 3), "Bo_Chan": (1, 2), "Cy_Solo": (1,)}
PAIRS = "1\t2\nAnn_Lee\t1\t2\nBo_Chan\t1\t2\nAnn_Lee\t3\tCy_Solo\t1\nBo_Chan\t2\tAnn_Lee\t1\n"


def make_lfw(root: Path) -> Path:
    (root / "pairs.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "pairs.txt").write_text(PAIRS)
    for name, numbers in PEOPLE.items():
        (root / "images" / name).mkdir(parents=True)
        for k in numbers:
            Image.new("RGB", (64, 64), (10 * k, 0, 0)).save(root / "images" / name /
                                                            f"{name}_{k:04d}.jpg")
    return root


def fake_scores(calls: list[int]):
    """A stand-in for the scoring: yaw = 10 x image number, age = 30 + number (Bo_Chan's
    second photo has no face: NaN)."""
    def score(files, analyzer, chunk, progress):
        calls.append(len(files))
        out = np.full((len(files), len(DATASET_ATTRIBUTES)), np.nan)
        for i, f in enumerate(files):
            if f.name == "Bo_Chan_0002.jpg":
                continue
            k = int(f.stem.split("_")[-1])
            out[i, YAW], out[i, AGE] = 10.0 * k, 30.0 + k
        return out
    return score


def test_people_with_two_images_or_more() -> None:
    groups = lfw_people(["B/B_0002.jpg", "A/A_0001.jpg", "B/B_0001.jpg", "B/B_0001.jpg"])
    assert groups == {"B": ["B/B_0001.jpg", "B/B_0002.jpg"]}


def test_spread_of_a_made_up_lfw_and_its_cache(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_lfw(tmp_path / "lfw")
    calls: list[int] = []
    monkeypatch.setattr(lfw_module, "_score", fake_scores(calls))
    r = lfw_spread(root, cache=tmp_path / "cache", analyzer=object())
    # Ann_Lee: yaw 10, 20, 30 -> std 8.165; Bo_Chan: one face left -> skipped.
    assert r.spreads["yaw"] == pytest.approx(np.std([10, 20, 30]))
    assert r.spreads["age"] == pytest.approx(np.std([31, 32, 33]))
    assert np.isnan(r.spreads["pitch"])
    assert (r.people, r.images, r.faces_found, r.scored) == (2, 5, 4, 5)
    assert calls == [5] and r.cache == str(tmp_path / "cache" / "lfw-attribute-scores.npz")
    again = lfw_spread(root, cache=tmp_path / "cache", analyzer=object())
    assert calls == [5] and again.scored == 0 and again.spreads == pytest.approx(r.spreads,
                                                                                 nan_ok=True)
    one = lfw_spread(root, cache=tmp_path / "cache", people=1, analyzer=object())
    assert (one.people, one.images) == (1, 3)
    assert lfw_spread(root, use_cache=False, analyzer=object()).cache is None and calls == [5, 5]
    assert not list(root.rglob("*.npz"))                      # nothing written beside the photos
    with pytest.raises(ValueError, match="people must be >= 1"):
        lfw_spread(root, cache=tmp_path / "cache", people=0)


def test_the_report_shows_lfw_beside_the_dataset(tmp_path: Path) -> None:
    from facelatent.datasets import build_quality_report
    from tests.test_dataset_quality import write_dataset  # type: ignore[attr-defined]

    folder = write_dataset(tmp_path / "d")
    lfw = {"spreads": {"yaw": 12.5, "age": 4.25}, "people": 7, "images": 20, "faces_found": 19}
    summary = build_quality_report(folder, tmp_path / "r.html", lfw=lfw)
    html = (tmp_path / "r.html").read_text()
    assert "LFW (7 people, 19 photos)" in html and "12.5" in html
    assert summary["lfw"]["people"] == 7
    kept = summary["dataset"]["identity_kept"]
    assert kept is not None and 0.0 <= kept["genuine_same"] <= 1.0


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_LFW / "pairs.txt").is_file(), reason="../shared/datasets/lfw absent")
def test_real_lfw_spread_of_a_few_people(tmp_path: Path) -> None:
    r = lfw_spread(REAL_LFW, people=4, cache=tmp_path)
    assert r.people == 4 and r.faces_found >= r.images - 1
    assert 0.5 < r.spreads["yaw"] < 40 and 0.5 < r.spreads["age"] < 30
