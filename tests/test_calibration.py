"""faces.calibration without models: the pairs.txt parser, the fold protocol on synthetic
cosines with known answers, same_person and identity_report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.faces import calibration
from facelatent.faces import lfw
from facelatent.faces.calibration import (
    SAME_PERSON_THRESHOLD,
    best_threshold,
    cross_validate,
    identity_report,
    pair_accuracy,
    same_person,
)
from facelatent.faces.lfw import parse_pairs, read_lfw

PAIRS = """2\t2
Ann_Veneman\t3\t5
Zico\t1\t2
Abdel_Madi_Shabneh\t1\tDean_Barker\t1
Zico\t3\tAnn_Veneman\t10
Bob 1 12
Bob 2 3
Carl\t1\tDan\t2
Dan 1 Eve 1
"""


def write_pairs(tmp_path: Path, text: str = PAIRS) -> Path:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path


# -- pairs.txt ---------------------------------------------------------------------------------

def test_parse_pairs_reads_folds_kinds_and_file_names(tmp_path: Path) -> None:
    pairs = parse_pairs(write_pairs(tmp_path))
    assert pairs.folds == 2
    assert pairs.first[0] == "Ann_Veneman/Ann_Veneman_0003.jpg"
    assert pairs.second[0] == "Ann_Veneman/Ann_Veneman_0005.jpg"
    assert pairs.second[3] == "Ann_Veneman/Ann_Veneman_0010.jpg"
    assert pairs.first[4] == "Bob/Bob_0001.jpg" and pairs.second[4] == "Bob/Bob_0012.jpg"
    assert pairs.same.tolist() == [True, True, False, False] * 2
    assert pairs.fold.tolist() == [1, 1, 1, 1, 2, 2, 2, 2]
    assert len(pairs.images()) == 16
    second = pairs.select([2])
    assert second.first == ("Bob/Bob_0001.jpg", "Bob/Bob_0002.jpg", "Carl/Carl_0001.jpg",
                            "Dan/Dan_0001.jpg")
    assert second.fold.tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize("text, message", [
    ("", "line 1"),
    ("10 300\nZico 1 2\n", "promises 10 folds"),
    ("1 1\nZico 1 Ann 2\nZico 1 Ann 2\n", "line 2 must be 'name n1 n2'"),
    ("1 1\nZico 1 2\nZico 1 2\n", "line 3 must be 'name1 n1 name2 n2'"),
    ("1 1\nZico one 2\nZico 1 Ann 2\n", "'one' is not a positive integer"),
])
def test_parse_pairs_names_the_bad_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pairs(write_pairs(tmp_path, text))


def test_select_refuses_folds_outside_the_file(tmp_path: Path) -> None:
    pairs = parse_pairs(write_pairs(tmp_path))
    with pytest.raises(ValueError, match="folds must be numbers from 1 to 2"):
        pairs.select([3])


def test_read_lfw_finds_the_image_folder_one_level_down(tmp_path: Path) -> None:
    write_pairs(tmp_path)
    with pytest.raises(ValueError, match="lfw: no folder"):
        read_lfw(tmp_path)
    image = tmp_path / "deepfunneled" / "Ann_Veneman" / "Ann_Veneman_0003.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"")
    pairs, images = read_lfw(tmp_path)
    assert images == tmp_path / "deepfunneled" and len(pairs.same) == 8
    with pytest.raises(ValueError, match="no pairs.txt"):
        read_lfw(tmp_path / "deepfunneled")


# -- the protocol ------------------------------------------------------------------------------

def test_best_threshold_separable_is_the_midpoint_of_the_gap() -> None:
    cos = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    same = np.array([False, False, False, True, True])
    threshold, accuracy = best_threshold(cos, same)
    assert threshold == pytest.approx(0.5)
    assert accuracy == 1.0


def test_best_threshold_with_overlap_and_ties() -> None:
    # Sorted: 0.1 d, 0.2 s, 0.3 d, 0.4 s, 0.5 d, 0.6 s, 0.7 s. Right per cut: below 0.1: 4/7;
    # 0.1|0.2: 5; 0.2|0.3: 4; 0.3|0.4: 5; 0.4|0.5: 4; 0.5|0.6: 5; 0.6|0.7: 4; above: 3.
    # Three cuts tie at 5/7; the middle one (0.35) is taken.
    cos = np.array([0.4, 0.1, 0.5, 0.3, 0.2, 0.7, 0.6])
    same = np.array([True, False, False, False, True, True, True])
    threshold, accuracy = best_threshold(cos, same)
    assert threshold == pytest.approx(0.35)
    assert accuracy == pytest.approx(5 / 7)
    # Equal cosines are never split: both pairs at 0.5 fall on the same side.
    cos = np.array([0.5, 0.5, 0.9])
    same = np.array([False, True, True])
    threshold, accuracy = best_threshold(cos, same)
    assert accuracy == pytest.approx(2 / 3)
    assert not 0.5 <= threshold < 0.5 + 1e-12


def test_nan_pairs_are_failures_never_dropped() -> None:
    cos = np.array([0.1, 0.9, np.nan, np.nan])
    same = np.array([False, True, False, True])
    threshold, accuracy = best_threshold(cos, same)
    assert accuracy == 0.5                           # the two NaN pairs are wrong
    assert 0.1 < threshold < 0.9
    assert pair_accuracy(cos, same, threshold) == 0.5
    assert pair_accuracy(cos, same, 2.0) == 0.25     # NaN never counts as "different" either
    assert best_threshold(np.array([np.nan]), np.array([True]))[1] == 0.0


def test_cross_validate_holds_each_fold_out() -> None:
    # Folds 1 and 2 separate at 0.5; fold 3 separates at 0.15. Held out, fold 3 gets the
    # threshold chosen on folds 1-2 (0.5) and loses its same pair at 0.2: accuracy 1/2.
    cos = np.array([0.2, 0.8, 0.3, 0.7, 0.1, 0.2])
    same = np.array([False, True, False, True, False, True])
    fold = np.array([1, 1, 2, 2, 3, 3])
    folds, thresholds, accuracies = cross_validate(cos, same, fold)
    assert folds.tolist() == [1, 2, 3]
    assert accuracies.tolist() == [1.0, 1.0, 0.5]
    assert thresholds[2] == pytest.approx(0.5)
    # A single fold is chosen on itself.
    _, thresholds, accuracies = cross_validate(cos[4:], same[4:], fold[4:])
    assert thresholds.tolist() == [pytest.approx(0.15)] and accuracies.tolist() == [1.0]


def test_cross_validate_recovers_a_known_threshold_on_many_pairs() -> None:
    rng = np.random.default_rng(0)
    n = 6000
    same = np.arange(n) % 2 == 0
    cos = np.where(same, rng.uniform(0.4, 1.0, n), rng.uniform(-0.2, 0.3, n))
    flip = rng.choice(n, 60, replace=False)          # 1 % label noise
    same[flip] = ~same[flip]
    fold = np.repeat(np.arange(1, 11), n // 10)
    folds, thresholds, accuracies = cross_validate(cos, same, fold)
    assert len(folds) == 10
    assert np.all((thresholds > 0.3) & (thresholds < 0.4))
    assert accuracies.mean() == pytest.approx(0.99, abs=0.003)


def test_protocol_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="same must be a bool array"):
        best_threshold(np.zeros(2), np.array([0, 1]))
    with pytest.raises(ValueError, match="one label per pair"):
        pair_accuracy(np.zeros(3), np.zeros(2, dtype=bool), 0.5)
    with pytest.raises(ValueError, match="one fold number per pair"):
        cross_validate(np.zeros(2), np.zeros(2, dtype=bool), np.ones(3))


# -- same person -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["sface", "dlib"])
def test_same_person_is_above_the_stored_threshold(model: str) -> None:
    t = SAME_PERSON_THRESHOLD[model]
    got = same_person(torch.tensor([t - 0.01, t, t + 0.01, float("nan")], dtype=torch.float64),
                      model)
    assert got.dtype == np.bool_
    assert got.tolist() == [False, False, True, False]
    assert same_person(t + 0.05, model).shape == ()


def test_identity_report_fraction_counts_missing_faces_as_different() -> None:
    t = SAME_PERSON_THRESHOLD["sface"]
    report = identity_report(np.array([t + 0.2, t - 0.1, t + 0.1, np.nan]), "sface")
    assert report["fraction_same"] == 0.5
    assert report["mean_cosine"] == pytest.approx(t + 0.2 / 3)
    assert report["threshold"] == t
    assert np.isnan(identity_report([np.nan], "dlib")["mean_cosine"])


def test_same_person_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="model must be one of 'sface', 'dlib'"):
        same_person(0.5, "arcface")
    with pytest.raises(ValueError, match="cosines is empty"):
        identity_report([], "sface")
    with pytest.raises(ValueError, match="cosine must be numbers"):
        same_person("high", "sface")


def test_thresholds_are_cosines() -> None:
    assert set(SAME_PERSON_THRESHOLD) == {"sface", "dlib"}
    assert all(-1 < t < 1 for t in calibration.SAME_PERSON_THRESHOLD.values())


def test_central_face_is_the_one_nearest_the_photo_centre() -> None:
    from facelatent.faces.analysis import FaceGeometry

    # Photo 0 (100 x 100): a large face at the left edge and a smaller one in the middle; photo 1
    # has none; photo 2 (200 wide) one face. Rows as locate_faces gives them: left to right.
    boxes = torch.tensor([[0.0, 20, 45, 80], [35, 35, 65, 65], [90, 40, 130, 90]])
    geometry = FaceGeometry(found=torch.ones(3, dtype=torch.bool), boxes=boxes,
                            points5=torch.arange(3.0)[:, None, None].expand(3, 5, 2),
                            align68=torch.zeros(3, 68, 2), detection_boxes=boxes)

    class Analyzer:
        def locate_faces(self, photos: list[torch.Tensor]) -> tuple[FaceGeometry, torch.Tensor]:
            return geometry, torch.tensor([0, 0, 2])

    photos = [torch.zeros(3, 100, 100), torch.zeros(3, 100, 100), torch.zeros(3, 100, 200)]
    chosen, owner = lfw._central_faces(Analyzer(), photos)  # type: ignore[arg-type]
    assert owner.tolist() == [0, 2]
    assert chosen.points5[:, 0, 0].tolist() == [1.0, 2.0]      # rows 1 and 2 of the geometry
