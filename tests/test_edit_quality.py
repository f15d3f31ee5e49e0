"""Edit quality (facelatent.evaluation.quality): the figures on arrays whose answers are known,
the comparison of several boundaries on shared faces (tiny random generator, random-weight
face networks), and its agreement with `evaluate_edit` on the same edit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facelatent.boundaries import Boundary
from facelatent.evaluation import evaluate_edit
from facelatent.evaluation.quality import (
    compare_boundaries,
    drift_names,
    edit_quality,
    evaluation_quality,
)
from facelatent.faces import analysis
from facelatent.faces.analysis import random_face_loaders
from facelatent.faces.calibration import SAME_PERSON_THRESHOLD
from facelatent.generators import get_generator

TINY = "mobilestylegan-tiny"
pytestmark = pytest.mark.usefixtures("one_thread")


def linear_case(k: float = 2.0, a: float = 0.05, sd: float = 4.0, n: int = 5):
    """Target moves k per latent unit, identity loses a per unit, one drift attribute moves
    0.5 per unit (its sd 1)."""
    d = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    ones = np.ones((n, 1))
    t = ones * (k * d)
    ident = 1.0 - ones * (a * np.abs(d))
    drift = {"age": ones * (0.5 * d)}
    return d, t, ident, drift, sd


def test_known_slopes_costs_and_matched_change() -> None:
    d, t, ident, drift, sd = linear_case()
    q = edit_quality(d, t, ident, drift, target_sd=sd, drift_sd={"age": 1.0},
                     identity_model="dlib", sigma=1.5)
    assert q["change_per_unit"] == pytest.approx(2.0)
    assert q["change_per_unit_sd"] == pytest.approx(0.5)
    assert q["change_per_sigma"] == pytest.approx(0.75)
    # identity lost per sd of change: a |d| / (k |d| / sd) = a sd / k
    assert q["identity_loss_per_change"] == pytest.approx(0.05 * 4.0 / 2.0)
    assert q["drift_per_change"] == pytest.approx(0.5 * 4.0 / 2.0)
    assert q["drift_per_change_by_attribute"] == {"age": pytest.approx(1.0)}
    assert q["identity_loss_per_change_se"] == pytest.approx(0.0, abs=1e-12)   # identical faces
    at = q["at_change"]                          # 1 sd of change is 2 latent units on each side
    assert at["sides"] == 2 and at["distance"] == pytest.approx(2.0)
    assert at["identity_loss"] == pytest.approx(0.1) and at["drift"] == pytest.approx(1.0)
    assert q["same_person_threshold"] == SAME_PERSON_THRESHOLD["dlib"]
    assert q["same_person"][2] == 1.0 and q["same_person"][0] == 0.0       # 0.90 < 0.909


def test_a_direction_that_moves_less_costs_more_per_change() -> None:
    """The same identity loss per latent unit with half the attribute change per unit is
    twice the cost per sd of change, and reaches the matched change later (or not at all)."""
    d, t, ident, drift, sd = linear_case(k=2.0)
    fast = edit_quality(d, t, ident, drift, target_sd=sd, drift_sd={"age": 1.0}, identity_model="sface")
    slow = edit_quality(d, t / 2, ident, drift, target_sd=sd, drift_sd={"age": 1.0}, identity_model="sface")
    assert slow["identity_loss_per_change"] == pytest.approx(2 * fast["identity_loss_per_change"])
    assert slow["at_change"]["sides"] == 0 and slow["at_change"]["identity_loss"] is None
    assert fast["at_change"]["sides"] == 2


def test_bad_shapes_and_scales_are_refused() -> None:
    d, t, ident, drift, sd = linear_case()
    with pytest.raises(ValueError, match=r"\[N, S\]"):
        edit_quality(d[:3], t, ident, drift, target_sd=sd, drift_sd={}, identity_model="dlib")
    with pytest.raises(ValueError, match="target_sd"):
        edit_quality(d, t, ident, drift, target_sd=0.0, drift_sd={}, identity_model="dlib")


def test_drift_names_leave_out_the_target_family() -> None:
    scored = ["yaw", "pitch", "smile", "smile_logit", "age", "gender_logit", "eyeglasses"]
    assert drift_names("smile_logit", scored) == ["yaw", "pitch", "age", "gender_logit", "eyeglasses"]
    assert drift_names("yaw", scored) == ["pitch", "smile_logit", "age", "gender_logit", "eyeglasses"]


@pytest.fixture(scope="module")
def nets():
    return get_generator(TINY), analysis.FaceAnalyzer(batch_size=8, loaders=random_face_loaders())


def wb(seed: int, attribute: str) -> Boundary:
    rng = np.random.default_rng(seed)
    return Boundary.from_direction(rng.normal(size=32), 0.0, space="w", attribute=attribute,
                                   metrics={"sigma": 1.0})


def test_compare_renders_the_unedited_faces_once_and_agrees_with_evaluate_edit(nets) -> None:
    G, an = nets
    smile, other = wb(1, "smile"), wb(2, "smile")
    counted = []
    out = compare_boundaries(G, an, [smile, smile, other], [3, 4, 5], [-1.0, 1.0],
                             labels=["a", "a again", "b"], attributes=("smile", "age", "yaw"),
                             on_start=counted.append)
    assert counted == [3 + 3 * 2 * 3] and out["settings"]["images"] == counted[0]
    rows = out["rows"]
    assert [r["label"] for r in rows] == ["a", "a again", "b"]
    assert rows[0]["target"] == "smile_logit" and rows[0]["cos_to_first"] == pytest.approx(1.0)
    qa, qa2 = rows[0]["quality"], rows[1]["quality"]
    assert qa["identity_loss_per_change"] == pytest.approx(qa2["identity_loss_per_change"])
    assert rows[2]["quality"]["change_per_unit"] != pytest.approx(qa["change_per_unit"])
    # The same edit through evaluate_edit (strength 0 included, raw units) gives the same figures
    # when it is given the same score scale.
    ev = evaluate_edit(G, an, smile, [3, 4, 5], [-1.0, 0.0, 1.0], identity_model="dlib",
                       attributes=("smile", "age", "yaw"), unit="raw", keep=0)
    qe = evaluation_quality(ev, target_sd=out["settings"]["score_sd"]["smile_logit"],
                            score_sd=out["settings"]["score_sd"])
    assert qe["change_per_unit"] == pytest.approx(qa["change_per_unit"], rel=1e-4)
    assert qe["identity_loss_per_change"] == pytest.approx(qa["identity_loss_per_change"], rel=1e-4)
    assert qe["drift_per_change"] == pytest.approx(qa["drift_per_change"], rel=2e-3)  # batch order


def test_compare_refuses_mixed_spaces_and_zero_distances(nets) -> None:
    G, an = nets
    z = Boundary.from_direction(np.ones(32), 0.0, space="z", attribute="age")
    with pytest.raises(ValueError, match="one latent space"):
        compare_boundaries(G, an, [wb(1, "age"), z], [0], [1.0])
    with pytest.raises(ValueError, match="non-zero"):
        compare_boundaries(G, an, [wb(1, "age")], [0], [0.0])
    with pytest.raises(ValueError, match="at least one boundary"):
        compare_boundaries(G, an, [], torch.zeros(1, 32), [1.0])
