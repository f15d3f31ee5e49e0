"""Tests of facelatent.evaluation (evaluate_edit, evaluate_store, the report) and the
`facelatent evaluate` and `facelatent report` commands.

A tiny store is sampled once with the tiny random generator and random-weight face networks
(as in tests/test_store.py); the commands get the same random networks by replacing the face
model loaders.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from facelatent.boundaries import Boundary, LinearBoundary
from facelatent.cli import main
from facelatent.evaluation import (
    IDENTITY_RULE,
    build_report,
    evaluate_edit,
    evaluate_store,
    evaluation_identity_model,
    score_names,
    spearman_rows,
    target_score,
)
from facelatent.faces import analysis
from facelatent.faces.analysis import random_face_loaders
from facelatent.generators import get_generator
from facelatent.latents.fill import SampleSettings, sample_to_store
from facelatent.runs import Models
from facelatent.latents.store import LatentStore

TINY = "mobilestylegan-tiny"
ATTRS = ("age", "gender", "smile", "yaw")


LOADERS = random_face_loaders()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def analyzer() -> analysis.FaceAnalyzer:
    return analysis.FaceAnalyzer(batch_size=8, loaders=LOADERS)


@pytest.fixture(scope="module")
def store(tmp_path_factory, analyzer) -> Path:
    path = tmp_path_factory.mktemp("eval") / "store"
    settings = SampleSettings(TINY, device="cpu", truncation_psi=0.8, attributes=ATTRS,
                              identity=("sface",), batch=8)
    models = Models(get_generator(TINY), analyzer, provenance={"face_models": "random weights (test)"})
    sample_to_store(path, 24, settings, shard_size=8, models=models, command=["test"])
    return path


@pytest.fixture(scope="module")
def boundaries(store, tmp_path_factory) -> dict[str, Path]:
    """smile and gender boundaries fitted on the store (W), saved with their provenance."""
    st = LatentStore.open(store, read_only=True)
    folder = tmp_path_factory.mktemp("boundaries")
    out = {}
    for name in ("smile", "gender"):
        est = LinearBoundary(ratio=0.25, split=0.7, bootstrap=2, random_state=0)
        est.fit(st.latents("w"), st.scores(f"{name}"))
        b = est.to_boundary(name, "w", {"store": str(store)})
        out[name] = b.save(folder / f"{name}_w.npz")
    return out


@pytest.fixture(scope="module")
def evaluated(store, boundaries, tmp_path_factory, monkeypatch_module) -> Path:
    """`facelatent evaluate` run once on the tiny store, with the random face networks."""
    monkeypatch_module.setattr(analysis, "_default_loaders", lambda: dict(LOADERS))
    out = tmp_path_factory.mktemp("evaluate") / "smile"
    code = main(["evaluate", "--store", str(store), "--boundary", str(boundaries["smile"]),
                 "--condition", str(boundaries["gender"]), "--n", "3", "--range", "-2", "2",
                 "--steps", "3", "--out", str(out), "--device", "cpu", "--keep", "2"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def wb(seed: int, attribute: str, sigma: float | None = 1.0) -> Boundary:
    rng = np.random.default_rng(seed)
    return Boundary.from_direction(rng.normal(size=32), 0.1, space="w", attribute=attribute,
                                   metrics={} if sigma is None else {"sigma": sigma})


# -- pieces -----------------------------------------------------------------------------------
def test_identity_rule_uses_the_other_recogniser() -> None:
    assert evaluation_identity_model(("sface",)) == "dlib"
    assert evaluation_identity_model(("sface", "dlib")) == "dlib"
    assert evaluation_identity_model(("dlib",)) == "sface"
    assert evaluation_identity_model(("dlib", "sface")) == "sface"
    assert evaluation_identity_model(()) == "dlib"
    assert "did not make the store's" in IDENTITY_RULE


def test_scores_prefer_log_odds_for_the_target() -> None:
    names = score_names(("age", "gender", "smile", "pose"))
    assert names == ("age", "gender", "gender_logit", "smile", "smile_logit", "yaw", "pitch", "roll")
    assert target_score("smile", names) == "smile_logit"
    assert target_score("age", names) == "age"
    assert target_score("pose", names) == "yaw"
    assert target_score("sefa_0", names) is None


def test_spearman_rows_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    x = np.linspace(-3, 3, 7)
    y = rng.normal(size=(5, 7))
    y[1] = np.arange(7.0) ** 3           # monotone: 1
    y[2] = -np.arange(7.0)               # reversed: -1
    y[3, 2] = y[3, 4]                    # a tie
    want = [spearmanr(x, row).statistic for row in y]
    np.testing.assert_allclose(spearman_rows(x, y), want, atol=1e-12)
    assert spearman_rows(x, np.ones((1, 7)))[0] != spearman_rows(x, np.ones((1, 7)))[0]  # NaN


# -- evaluate_edit ----------------------------------------------------------------------------
def test_evaluate_edit_gives_finite_curves_and_identity_one_at_zero(store, analyzer) -> None:
    st = LatentStore.open(store, read_only=True)
    G = get_generator(TINY)
    w = torch.from_numpy(st.latents("w")[:4])
    s = [-2.0, -1.0, 0.0, 1.0, 2.0]
    ev = evaluate_edit(G, analyzer, wb(1, "smile", sigma=3.0), w, s, conditions=[wb(2, "gender")],
                       identity_model="dlib", attributes=ATTRS, truncation_psi=0.8, clamp=False,
                       keep=2, thumb_size=32)
    assert ev.variants == ["plain", "conditional"] and ev.n == 4 and ev.images == 2 * 4 * 5
    assert ev.target == "smile_logit"
    for variant in ev.variants:
        for name, curve in ev.curves(variant).items():
            assert len(curve["mean"]) == 5 and np.isfinite(curve["mean"]).all(), name
        ident = ev.identity_curve(variant)
        assert ident["mean"][2] == pytest.approx(1.0, abs=1e-5)       # strength 0: the face
        assert max(ident["mean"][0], ident["mean"][4]) < 1.0 - 1e-6   # an edit changes it
        assert -1.0 <= ev.monotonicity(variant) <= 1.0
    # The unedited faces re-scored are the store's faces: same scores as the store holds.
    for name in ATTRS:
        np.testing.assert_allclose(ev.reference_scores[name], st.scores(name)[:4], atol=1e-4,
                                   err_msg=name)
    drift = ev.drift("plain")
    assert "smile" not in drift and "smile_logit" not in drift and "age" in drift
    assert drift["age"][2] == pytest.approx(0.0, abs=1e-6)
    cd = ev.condition_drift()["gender_logit"]
    assert len(cd["plain"]) == 5 and np.isfinite(cd["plain_mean_abs"])
    assert cd["reduction"] == pytest.approx(1 - cd["conditional_mean_abs"] / cd["plain_mean_abs"])
    assert ev.thumbnails["plain"].shape == (2, 5, 32, 32, 3)
    data = ev.to_json()
    json.dumps(data, allow_nan=False)
    assert data["variants"]["plain"]["identity_at_extremes"]["-2"] == pytest.approx(
        ev.identity_curve("plain")["mean"][0]) == pytest.approx(ev.identity_at(-2.0))
    assert data["identity_model"] == "dlib" and data["sigma"] == 3.0


def test_absolute_mode_measures_identity_against_the_unedited_face(store, analyzer) -> None:
    st = LatentStore.open(store, read_only=True)
    G = get_generator(TINY)
    ev = evaluate_edit(G, analyzer, wb(3, "age"), torch.from_numpy(st.latents("w")[:2]), [0.0, 1.0],
                       mode="absolute", attributes=("age",), truncation_psi=0.8, keep=0)
    assert ev.images == 2 + 2 * 2                   # the unedited faces are made on their own
    assert ev.identity["plain"][:, 0].max() < 1.0   # absolute 0 = onto the hyperplane, moved
    assert ev.target == "age" and not ev.thumbnails


def test_evaluate_store_picks_rows_and_computes_sigma_from_the_store(store, analyzer, boundaries) -> None:
    from facelatent.boundaries import load_boundary
    from facelatent.editing import distance_spread

    b = load_boundary(boundaries["smile"])
    ev = evaluate_store(store, b, [0.0, 1.0], n=3, pick="random", seed=1,
                        generator=get_generator(TINY), analyzer=analyzer, keep=0)
    st = LatentStore.open(store, read_only=True)
    assert ev.settings["sigma"] == pytest.approx(distance_spread(b, st.latents("w")))
    assert ev.identity_model == "dlib" and len(ev.seeds) == 3 and ev.seeds == sorted(ev.seeds)
    assert ev.settings["truncation_psi"] == 0.8
    with pytest.raises(ValueError, match="more than the 24 samples"):
        evaluate_store(store, b, [0.0], n=25, generator=get_generator(TINY), analyzer=analyzer)


# -- the commands -----------------------------------------------------------------------------
def test_cli_evaluate_writes_json_curves_and_grids(evaluated: Path) -> None:
    data = json.loads((evaluated / "evaluation.json").read_text())
    assert {p.name for p in evaluated.iterdir()} >= {"evaluation.json", "curves.png",
                                                     "grid_plain.png", "grid_conditional.png"}
    assert data["identity_model"] == "dlib" and data["store_identity"] == ["sface"]
    assert data["strengths"] == [-2.0, 0.0, 2.0] and data["n"] == 3 and data["target"] == "smile_logit"
    for variant in ("plain", "conditional"):
        v = data["variants"][variant]
        assert v["identity"]["mean"][1] == pytest.approx(1.0, abs=1e-5)
        assert all(np.isfinite(c["mean"]).all() for c in v["curves"].values())
    assert set(data["condition_drift"]) == {"gender_logit"}
    assert data["sigma_source"] == "boundary metrics" and data["sigma"] > 0   # set by the fit


def test_cli_evaluate_quality_held_out_seeds_and_compare(store, boundaries, evaluated,
                                                        monkeypatch_module, tmp_path: Path,
                                                        capsys) -> None:
    """evaluation.json carries edit quality; --seeds evaluates seeds outside the store;
    --compare writes one row per boundary on the same faces, which the report shows."""
    data = json.loads((evaluated / "evaluation.json").read_text())
    q = data["variants"]["plain"]["quality"]
    assert q["distances"][0] == pytest.approx(-2.0 * data["sigma"])
    assert q["identity_model"] == "dlib" and 0.0 <= q["same_person_edited"] <= 1.0
    assert set(data["score_sd"]) == {"age", "gender", "smile", "yaw"}  # the store's spreads
    out = tmp_path / "held"
    assert main(["evaluate", "--store", str(store), "--boundary", str(boundaries["smile"]),
                 "--seeds", "500-501", "--steps", "3", "--keep", "0", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "quality: change" in capsys.readouterr().out
    held = json.loads((out / "evaluation.json").read_text())
    assert held["seeds"] == [500, 501] and held["held_out"] is True and held["pick"] == "seeds"
    cmp = tmp_path / "cmp"
    assert main(["evaluate", "--store", str(store), "--boundary", str(boundaries["smile"]),
                 "--compare", str(boundaries["gender"]), "--seeds", "500-501", "--range", "-1", "1",
                 "--steps", "3", "--out", str(cmp), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "smile_w.npz: cos to first 1.000" in printed and "gender_w.npz" in printed
    result = json.loads((cmp / "comparison.json").read_text())
    assert result["format"] == "facelatent.edit-comparison"
    assert [r["target"] for r in result["rows"]] == ["smile_logit", "gender_logit"]
    smile_sigma = json.loads((evaluated / "evaluation.json").read_text())["sigma"]
    assert result["settings"]["distances"] == pytest.approx([-smile_sigma, smile_sigma])
    assert result["settings"]["images"] == 2 + 2 * 2 * 2 and result["settings"]["held_out"]
    assert main(["evaluate", "--store", str(store), "--boundary", str(boundaries["smile"]),
                 "--compare", str(boundaries["gender"]), "--condition", str(boundaries["gender"]),
                 "--out", str(cmp)]) == 2
    assert "--compare edits every boundary plainly" in capsys.readouterr().err
    page = build_report(store, tmp_path / "r.html", evaluations=[cmp, evaluated])
    html = page.read_text()
    assert "Boundary comparison" in html and "identity loss per sd of change" in html
    assert "remaining % (InterFaceGAN)" in html


def test_report_is_one_self_contained_html_file(store, boundaries, evaluated, tmp_path: Path,
                                                capsys) -> None:
    edit_dir = tmp_path / "edit"
    assert main(["edit", "--seeds", "0-1", "--boundary", str(boundaries["smile"]), "--steps", "3",
                 "--size", "32", "--out", str(edit_dir), "--device", "cpu"]) == 0
    edit_info = json.loads((edit_dir / "edit.json").read_text())
    assert edit_info["truncation_psi"] == 0.8                   # from the boundary's store
    assert edit_info["sigma_source"] == "boundary metrics"        # recorded by the fit
    out = tmp_path / "report.html"
    assert main(["report", str(store), "--out", str(out), "--boundaries",
                 str(boundaries["smile"].parent), "--evaluations", str(evaluated.parent),
                 "--edits", str(edit_dir)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text()
    for section in ("store", "scores", "boundaries", "correlations", "edits", "evaluation"):
        assert f'<section id="{section}">' in page, section
    assert TINY in page and "smile_w.npz" in page and "gender_w.npz" in page
    assert "96.9" in page and "98.7" in page                    # InterFaceGAN's reference column
    assert "samples/s" in page and "random weights (test)" in page
    images = re.findall(r'<img src="([^"]*)"', page)
    # histograms, heatmap, edit grid, 2 evaluation grids, curves
    assert len(images) == 6 and all(src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for src in images)
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page
    again = build_report(store, tmp_path / "bare.html")          # nothing but the store
    assert "No boundary files given" in again.read_text()
