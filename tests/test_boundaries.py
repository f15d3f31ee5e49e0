"""Tests of facelatent.boundaries: the boundary file, InterFaceGAN's fitting protocol, conditional
directions, correlations, SeFa and GANSpace, and the `boundary` / `directions` commands.

Data are small synthetic latents with a known normal (scores = a linear projection plus noise);
SeFa runs on the tiny random MobileStyleGAN, and on the real one in a test marked slow. The
published InterFaceGAN fixtures are tested in test_boundaries_fixtures.py.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelatent.boundaries import (
    SOLVERS,
    Boundary,
    LinearBoundary,
    condition,
    condition_boundary,
    correlation_matrix,
    ganspace,
    load_boundary,
    sefa,
    style_affines,
)
from facelatent.cli import main
from facelatent.generators import get_generator
from facelatent.ranges import parse_layers


def synthetic(n: int = 3000, dim: int = 16, noise: float = 0.3, seed: int = 0,
              offset: float = 5.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W-like latents (per-dimension scales, far from the origin), scores and the true normal."""
    rng = np.random.default_rng(seed)
    scale = np.exp(0.5 * rng.standard_normal(dim))
    x = rng.standard_normal((n, dim)) * scale + offset * rng.standard_normal(dim)
    normal = rng.standard_normal(dim)
    normal /= np.linalg.norm(normal)
    proj = (x - x.mean(0)) @ normal
    scores = proj / proj.std() + noise * rng.standard_normal(n)
    return x.astype(np.float32), scores, normal


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return synthetic()


@pytest.fixture(scope="module")
def tiny_G():  # type: ignore[no-untyped-def]
    return get_generator("mobilestylegan-tiny")


# --- LinearBoundary ----------------------------------------------------------------------------

@pytest.mark.parametrize("solver", [s for s in SOLVERS if s != "mean-diff"])
def test_each_solver_recovers_the_known_normal(data, solver: str) -> None:
    x, s, normal = data
    est = LinearBoundary(solver=solver, ratio=0.2, bootstrap=0).fit(x, s)
    assert est.normal_.shape == (16,) and est.normal_.dtype == np.float32
    assert abs(np.linalg.norm(est.normal_) - 1) < 1e-6
    assert float(est.normal_ @ normal) > 0.95          # right direction AND sign (high = positive)
    assert est.val_accuracy_ > 0.95
    assert 0.6 < est.remaining_accuracy_ <= 1.0
    assert est.n_train_ == 2 * 420 and est.n_val_ == 2 * 180
    assert est.n_remaining_ == 3000 - 1200 and est.train_time_ > 0


def test_mean_diff_is_the_difference_of_the_class_means(data) -> None:
    """No covariance: on these anisotropic latents it is off the true normal (what the
    discriminative solvers correct), but exactly the normalised mean difference, through the
    midpoint of the means."""
    x, s, normal = data
    est = LinearBoundary(solver="mean-diff", ratio=0.5, split=0.999, bootstrap=0).fit(x, s)
    order = np.argsort(s, kind="stable")
    rng = np.random.default_rng(0)
    n_each = len(s) // 2
    n_train = int(round(0.999 * n_each))
    pos = rng.permutation(order[len(s) - n_each:])[:n_train]
    neg = rng.permutation(order[:n_each])[:n_train]
    m1, m0 = x[pos].astype(np.float64).mean(0), x[neg].astype(np.float64).mean(0)
    want = (m1 - m0) / np.linalg.norm(m1 - m0)
    assert np.allclose(est.normal_, want, atol=1e-6)
    assert est.normal_ @ ((m1 + m0) / 2) + est.intercept_ == pytest.approx(0.0, abs=1e-5)
    assert 0.5 < float(est.normal_ @ normal) < 0.99
    assert est.to_boundary("x", "w").provenance["standardize"] is False


def test_intercept_places_the_hyperplane_at_the_median_in_raw_space() -> None:
    # Noise-free scores, median split: the hyperplane is {x : n.x = median(n.x)}, in the RAW
    # space of these far-from-origin, unevenly scaled latents (the standardisation maps back).
    x, _, normal = synthetic(noise=0.0, offset=20.0)
    s = x.astype(np.float64) @ normal
    for solver in ("logistic", "lda"):
        est = LinearBoundary(solver=solver, ratio=None, bootstrap=0).fit(x, s)
        assert float(est.normal_ @ normal) > 0.99
        # the hyperplane cuts the fitted normal's own projection at its median (spread ~ 1)
        proj = x.astype(np.float64) @ est.normal_
        assert est.intercept_ == pytest.approx(-np.median(proj), abs=0.05)
        assert abs(est.intercept_) > 3                      # far from the origin: not dropped
        b = est.to_boundary("attr", "w")
        assert np.mean((b.distance(x) > 0) == (s > np.median(s))) > 0.97
        assert np.isnan(est.remaining_accuracy_)            # a median split leaves nothing between


def test_decision_function_is_the_signed_distance(data) -> None:
    x, s, _ = data
    est = LinearBoundary(bootstrap=0).fit(x, s)
    d = est.decision_function(x[:5])
    assert np.allclose(d, x[:5].astype(np.float64) @ est.normal_ + est.intercept_, atol=1e-4)
    assert np.array_equal(est.predict(x[:5]), (d > 0).astype(np.int64))


def test_fit_is_seeded(data) -> None:
    x, s, _ = data
    a = LinearBoundary(random_state=3, bootstrap=2).fit(x, s)
    b = LinearBoundary(random_state=3, bootstrap=2).fit(x, s)
    c = LinearBoundary(random_state=4, bootstrap=2).fit(x, s)
    assert np.array_equal(a.normal_, b.normal_) and a.intercept_ == b.intercept_
    assert a.val_accuracy_ == b.val_accuracy_ and a.stability_ == b.stability_
    assert not np.array_equal(a.normal_, c.normal_)


def test_bootstrap_stability(data) -> None:
    x, s, _ = data
    est = LinearBoundary(ratio=0.1, bootstrap=4).fit(x, s)
    assert 0.9 < est.stability_ <= 1.0
    noisy = LinearBoundary(ratio=0.1, bootstrap=4).fit(x, np.random.default_rng(0).permutation(s))
    assert 0.0 < noisy.stability_ < est.stability_        # random labels: unstable normals
    assert np.isnan(LinearBoundary(bootstrap=0).fit(x, s).stability_)
    with pytest.raises(ValueError, match="bootstrap"):
        LinearBoundary(bootstrap=1).fit(x, s)


def test_layerwise_latents_give_a_layerwise_normal(data) -> None:
    x, s, _ = data
    wp = np.stack([x, 0.5 * x, x[::-1]], axis=1)           # [N, 3, D]
    b = LinearBoundary(bootstrap=0).fit(wp, s).to_boundary("attr", "wp")
    assert b.normal.shape == (3, 16) and abs(np.linalg.norm(b.normal) - 1) < 1e-6


@pytest.mark.parametrize(("latents", "scores", "match"), [
    (np.zeros(100), np.zeros(100), "1-D array"),
    (np.full((100, 4), np.nan), np.arange(100.0), "NaN"),
    (np.zeros((100, 4)), np.r_[np.arange(99.0), np.nan], "NaN"),
    (np.zeros((100, 4)), np.arange(99.0), "different lengths"),
    (np.random.default_rng(0).normal(size=(100, 4)), np.arange(100.0), "too few samples"),
])
def test_bad_inputs_raise_clear_errors(latents, scores, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LinearBoundary(ratio=0.02).fit(latents, scores)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"solver": "rbf"}, "solver"), ({"ratio": 0.7}, "ratio"), ({"split": 1.0}, "split"),
    ({"C": 0.0}, "C must"),
])
def test_bad_hyperparameters_raise_in_fit(data, kwargs, match: str) -> None:
    x, s, _ = data
    est = LinearBoundary(**kwargs)                          # stored as given, checked in fit
    with pytest.raises(ValueError, match=match):
        est.fit(x, s)


def test_unfitted_estimator_says_so() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        LinearBoundary().to_boundary("a", "w")


# --- the boundary file -------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path: Path, data) -> None:
    x, s, _ = data
    est = LinearBoundary(ratio=None, bootstrap=0).fit(x, s)   # remaining accuracy is NaN
    b = est.to_boundary("smile", "w", {"store": "runs/ffhq"})
    path = b.save(tmp_path / "smile_w.npz")
    with np.load(path) as raw:
        assert sorted(raw.files) == sorted(["format", "format_version", "normal", "intercept",
                                            "space", "attribute", "metrics", "provenance"])
        assert (str(raw["format"]), int(raw["format_version"])) == ("facelatent.boundary", 1)
    back = load_boundary(path)
    assert np.array_equal(back.normal, b.normal) and back.intercept == b.intercept
    assert (back.space, back.attribute) == ("w", "smile")
    assert back.metrics["remaining_accuracy"] is None        # NaN is stored as JSON null
    assert back.metrics["val_accuracy"] == b.metrics["val_accuracy"]
    assert back.provenance["store"] == "runs/ffhq" and back.provenance["solver"] == "svc"
    assert back.provenance["intercept_known"] is True and back.provenance["seed"] == 0


def test_layerwise_boundary_round_trip(tmp_path: Path) -> None:
    v = np.random.default_rng(1).normal(size=(4, 8))
    b = Boundary.from_direction(v, 2.0, space="wp", attribute="age")
    back = load_boundary(b.save(tmp_path / "age_wp.npz"))
    assert back.normal.shape == (4, 8) and back.space == "wp"
    assert back.intercept == pytest.approx(2.0 / np.linalg.norm(v))
    assert back.provenance["original_norm"] == pytest.approx(np.linalg.norm(v))


def test_load_interfacegan_npy(tmp_path: Path) -> None:
    v = np.random.default_rng(2).normal(size=(1, 8))
    np.save(tmp_path / "stylegan_ffhq_smile_w_boundary.npy", v / np.linalg.norm(v))
    b = load_boundary(tmp_path / "stylegan_ffhq_smile_w_boundary.npy")
    assert (b.space, b.attribute, b.intercept) == ("w", "smile", 0.0)
    assert b.normal.shape == (8,) and b.provenance["intercept_known"] is False
    assert b.provenance["model"] == "stylegan_ffhq"
    np.save(tmp_path / "pggan_celebahq_age_c_gender_eyeglasses_boundary.npy", v / np.linalg.norm(v))
    c = load_boundary(tmp_path / "pggan_celebahq_age_c_gender_eyeglasses_boundary.npy")
    assert (c.space, c.attribute) == ("z", "age") and c.provenance["conditions"] == ["gender", "eyeglasses"]


@pytest.mark.parametrize(("name", "space", "attribute", "extra"), [
    ("stylegan_ffhq_age_w_boundary.npy", "w", "age", {"model": "stylegan_ffhq"}),
    ("stylegan_ffhq_age_boundary.npy", "z", "age", {"model": "stylegan_ffhq"}),     # IFG: no token = Z
    ("pggan_celebahq_quality_boundary.npy", "z", "quality", {"model": "pggan_celebahq"}),
    ("stylegan_celebahq_eyeglasses_c_age_boundary.npy", "z", "eyeglasses",
     {"model": "stylegan_celebahq", "conditions": ["age"]}),
    ("age_r0.02_w.npy", "w", "age", {}),              # the dot is part of the name, not its end
    ("age_w_r0.02.npy", "w", "age", {}),
    ("smile_logit_w.npy", "w", "smile_logit", {}),    # the longest known name wins over "smile"
    ("my.model.v2_mouth_open_wp.npy", "wp", "mouth_open", {}),
    ("boundary_yaw_z.npy", "z", "yaw", {}),
    ("W_Gender.NPY", "w", "gender", {}),
    ("age.npy", None, "age", {}),                     # no space token: the caller must say
    ("direction_0.3.npy", None, "direction_0.3", {}),
])
def test_boundary_names_are_read_from_known_tokens(name: str, space: str | None, attribute: str,
                                                   extra: dict) -> None:
    from facelatent.boundaries.boundary import parse_boundary_name
    assert parse_boundary_name(name) == (space, attribute, extra)


def test_a_npy_without_a_space_in_its_name_needs_one(tmp_path: Path) -> None:
    v = np.random.default_rng(3).normal(size=(1, 8))
    path = tmp_path / "age_r0.02.npy"
    np.save(path, v / np.linalg.norm(v))
    with pytest.raises(ValueError, match=r"cannot tell the latent space.*--space"):
        load_boundary(path)
    b = load_boundary(path, space="w")
    assert (b.space, b.attribute) == ("w", "age")
    np.save(tmp_path / "age_r0.02_w.npy", v / np.linalg.norm(v))          # the case
    assert load_boundary(tmp_path / "age_r0.02_w.npy", space="z").space == "w"   # the name wins
    with pytest.raises(ValueError, match="space must be one of"):
        load_boundary(path, space="x")


def test_known_attribute_names_cover_every_score() -> None:
    from facelatent.boundaries.boundary import KNOWN_ATTRIBUTES
    from facelatent.faces.analysis import ATTRIBUTES
    assert set(ATTRIBUTES) <= set(KNOWN_ATTRIBUTES)


def test_non_unit_npy_is_normalised_loudly(tmp_path: Path) -> None:
    v = np.full((1, 4), 1.0)                                 # norm 2
    np.save(tmp_path / "pose_z.npy", v)
    with pytest.warns(UserWarning, match="norm 2"):
        b = load_boundary(tmp_path / "pose_z.npy")
    assert b.provenance["original_norm"] == pytest.approx(2.0)
    assert np.allclose(b.normal, 0.5)
    np.save(tmp_path / "pose2.npy", v / 2 * (1 + 5e-5))     # within 1e-4: quiet, norm still kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_boundary(tmp_path / "pose2.npy", space="z").provenance["original_norm"] == pytest.approx(1 + 5e-5)


@pytest.mark.parametrize(("array", "match"), [
    (np.zeros((1, 4)), "zero vector"), (np.array([[np.nan, 1.0]]), "NaN"),
    (np.zeros((2, 2, 2)), "shape"), (np.arange(4), "floats"),
])
def test_bad_npy_files(tmp_path: Path, array: np.ndarray, match: str) -> None:
    np.save(tmp_path / "bad_w.npy", array)
    with pytest.raises(ValueError, match=match):
        load_boundary(tmp_path / "bad_w.npy")


def test_bad_npz_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "extra.npz", normal=np.ones(4) / 2, intercept=0.0, colour="red")
    with pytest.raises(ValueError, match="unknown keys"):
        load_boundary(tmp_path / "extra.npz")
    np.savez(tmp_path / "no_intercept.npz", normal=np.ones(4) / 2)
    with pytest.raises(ValueError, match="intercept"):
        load_boundary(tmp_path / "no_intercept.npz")
    np.savez(tmp_path / "long.npz", normal=np.ones(4), intercept=0.0, space="w")
    with pytest.raises(ValueError, match="unit length"):
        load_boundary(tmp_path / "long.npz")
    np.savez(tmp_path / "spaceless.npz", normal=np.ones(4) / 2, intercept=0.0)   # says no space
    with pytest.raises(ValueError, match="cannot tell the latent space"):
        load_boundary(tmp_path / "spaceless.npz")
    assert load_boundary(tmp_path / "spaceless.npz", space="z").space == "z"
    (tmp_path / "text.npz").write_text("not a boundary")
    with pytest.raises(ValueError, match="text.npz is not an .npz archive: it is a text file"):
        load_boundary(tmp_path / "text.npz")


def test_boundary_constructor_checks() -> None:
    with pytest.raises(ValueError, match="unit length"):
        Boundary(np.ones(4))
    with pytest.raises(ValueError, match="space"):
        Boundary(np.ones(4) / 2, space="s")
    with pytest.raises(ValueError, match=r"\[num_ws, dim\]"):
        Boundary(np.ones(4) / 2, space="wp")
    with pytest.raises(ValueError, match="zero"):
        Boundary.from_direction(np.zeros(4))


# --- conditional directions and correlations -----------------------------------------------------

def test_condition_handles_dependent_and_duplicate_conditions() -> None:
    rng = np.random.default_rng(3)
    p, c1, c2 = rng.normal(size=(3, 32))
    conds = [c1, c2, c1 + 2 * c2, c1, -3 * c2]               # rank 2
    r = condition(p, conds)
    assert abs(np.linalg.norm(r) - 1) < 1e-12
    assert max(abs(r @ c) / np.linalg.norm(c) for c in conds) < 1e-12
    assert np.allclose(r, condition(p, [c1, c2]), atol=1e-12)
    assert float(r @ p) > 0                                   # keeps the primal's sense
    assert np.allclose(condition(p, []), p / np.linalg.norm(p))


def test_condition_layerwise_and_errors() -> None:
    rng = np.random.default_rng(4)
    p, c = rng.normal(size=(2, 3, 8))
    r = condition(p, [c])
    assert r.shape == (3, 8) and abs(float(np.sum(r * c))) < 1e-12
    with pytest.raises(ValueError, match="span"):
        condition(c * 2, [c])
    with pytest.raises(ValueError, match="shape"):
        condition(p, [c[0]])


def test_condition_boundary_keeps_space_and_attribute() -> None:
    rng = np.random.default_rng(5)
    age = Boundary.from_direction(rng.normal(size=8), 1.0, space="z", attribute="age")
    gender = Boundary.from_direction(rng.normal(size=8), space="z", attribute="gender")
    out = condition_boundary(age, [gender])
    assert (out.attribute, out.space, out.intercept) == ("age", "z", 0.0)
    assert out.provenance["conditions"] == ["gender"] and abs(float(out.normal @ gender.normal)) < 1e-6
    with pytest.raises(ValueError, match="space"):
        condition_boundary(age, [Boundary(gender.normal, space="w")])


def test_correlation_matrix() -> None:
    a, b = np.eye(4)[0], np.array([-1.0, 1.0, 0, 0])
    cos = correlation_matrix([a, Boundary.from_direction(b)])
    assert np.allclose(cos, [[1, -2**-0.5], [-2**-0.5, 1]])
    assert np.allclose(correlation_matrix([a, b], absolute=True), np.abs(cos))
    with pytest.raises(ValueError, match="shape"):
        correlation_matrix([a, np.ones(3)])


# --- SeFa and GANSpace ---------------------------------------------------------------------------

def test_sefa_directions_are_unit_orthogonal_and_ranked(tiny_G) -> None:
    affines = style_affines(tiny_G)
    assert len(affines) == tiny_G.num_ws == 11
    dirs = sefa(tiny_G, k=5)
    n = np.stack([d.normal.astype(np.float64) for d in dirs])
    assert np.allclose(n @ n.T, np.eye(5), atol=1e-6)
    eig = [d.metrics["eigenvalue"] for d in dirs]
    assert eig == sorted(eig, reverse=True)
    # the eigenvalue is ||A n||^2 for the row-normalised stacked weights A, the most any unit n gets
    a = np.concatenate([m.weight.double().numpy() for m in affines])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    assert np.linalg.norm(a @ n[0]) ** 2 == pytest.approx(eig[0], rel=1e-5)
    rand = np.random.default_rng(0).normal(size=(50, tiny_G.w_dim))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    assert (np.linalg.norm(a @ rand.T, axis=0) ** 2).max() < eig[0]
    assert all((d.space, d.intercept) == ("w", 0.0) for d in dirs)


def test_sefa_layer_subsets(tiny_G) -> None:
    coarse = sefa(tiny_G, layers=range(0, 4), k=2)
    fine = sefa(tiny_G, layers=parse_layers("7-10", tiny_G.num_ws), k=2)
    assert coarse[0].provenance["layers"] == [0, 1, 2, 3]
    assert abs(float(coarse[0].normal @ fine[0].normal)) < 0.99  # different layers, other directions
    with pytest.raises(ValueError, match="out of range"):
        sefa(tiny_G, layers=[11])
    with pytest.raises(ValueError, match="layer"):
        parse_layers("3-1", 11)


def test_ganspace_finds_a_known_principal_axis() -> None:
    rng = np.random.default_rng(6)
    axis = rng.normal(size=16)
    axis /= np.linalg.norm(axis)
    x = 3.0 + rng.normal(size=(2000, 16)) * 0.5 + rng.normal(size=(2000, 1)) * 4.0 * axis
    dirs = ganspace(x, k=3)
    assert abs(float(dirs[0].normal @ axis)) > 0.99
    ratios = [d.metrics["explained_variance_ratio"] for d in dirs]
    assert ratios[0] == pytest.approx(16.25 / 20.0, abs=0.03)  # axis var 16 + 0.25, 16 x 0.25 in all
    assert ratios == sorted(ratios, reverse=True)
    assert dirs[0].metrics["std"] == pytest.approx(np.sqrt(16 + 0.25), rel=0.05)
    assert dirs[0].intercept == pytest.approx(-float(dirs[0].normal @ x.mean(0)), rel=1e-5)
    assert abs(float(dirs[0].normal @ dirs[1].normal)) < 1e-6
    with pytest.raises(ValueError, match="k must"):
        ganspace(x[:3], k=3)


@pytest.mark.slow
def test_sefa_on_the_real_generator() -> None:
    G = get_generator("mobilestylegan-ffhq")
    assert len(style_affines(G)) == 23
    dirs = sefa(G, layers=range(0, 8), k=5)
    n = np.stack([d.normal.astype(np.float64) for d in dirs])
    assert np.allclose(n @ n.T, np.eye(5), atol=1e-5)
    assert dirs[0].metrics["eigenvalue"] > dirs[4].metrics["eigenvalue"] > 0


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_fit_condition_correlate(tmp_path: Path, data, capsys) -> None:
    x, s, normal = data
    rng = np.random.default_rng(7)
    np.savez(tmp_path / "store.npz", w=x, z=rng.normal(size=x.shape).astype(np.float32),
             scores_smile=s, scores_age=s + 2 * rng.normal(size=len(s)))
    assert main(["boundary", "fit", "--npz", str(tmp_path / "store.npz"), "--attribute", "smile",
                 "--ratio", "0.1", "--bootstrap", "2", "--out", str(tmp_path / "smile_w.npz"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["val_accuracy"] > 0.95 and out["provenance"]["command"] == "facelatent boundary fit"
    smile = load_boundary(tmp_path / "smile_w.npz")
    assert float(smile.normal @ normal) > 0.95 and smile.provenance["arguments"]["ratio"] == 0.1
    assert main(["boundary", "fit", "--npz", str(tmp_path / "store.npz"), "--attribute", "age",
                 "--space", "z", "--solver", "lda", "--out", str(tmp_path / "age_z.npz")]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    assert main(["boundary", "fit", "--npz", str(tmp_path / "store.npz"), "--attribute", "pose",
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "scores present: ['age', 'smile']" in capsys.readouterr().err

    age = load_boundary(tmp_path / "age_z.npz")
    np.save(tmp_path / "gender_boundary.npy", rng.normal(size=(1, 16)) / 4.0)
    with pytest.warns(UserWarning):
        assert main(["boundary", "condition", str(tmp_path / "age_z.npz"), "--on",
                     str(tmp_path / "gender_boundary.npy"), "--out", str(tmp_path / "age_c.npz")]) == 0
    assert "max |cos| to conditions" in capsys.readouterr().out
    age_c = load_boundary(tmp_path / "age_c.npz")
    assert age_c.provenance["conditions"] == ["gender"] and float(age_c.normal @ age.normal) > 0

    files = [str(tmp_path / f) for f in ("smile_w.npz", "age_z.npz", "age_c.npz")]
    assert main(["boundary", "correlate", *files, "--heatmap", str(tmp_path / "cos.png"), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["labels"] == ["smile_w", "age_z", "age_c"]  # two "age" boundaries: file names
    assert table["cosine"][1][2] == pytest.approx(float(age.normal @ age_c.normal), abs=1e-5)
    assert Image.open(tmp_path / "cos.png").size[0] > 100
    assert main(["boundary", "correlate", *files[:2]]) == 0
    assert "smile" in capsys.readouterr().out


def test_cli_directions(tmp_path: Path, capsys) -> None:
    assert main(["directions", "sefa", "--model", "mobilestylegan-tiny", "--layers", "0-3",
                 "--k", "3", "--out", str(tmp_path / "sefa")]) == 0
    files = sorted((tmp_path / "sefa").glob("*.npz"))
    assert [f.name for f in files] == ["sefa_0.npz", "sefa_1.npz", "sefa_2.npz"]
    assert load_boundary(files[0]).provenance["layers"] == [0, 1, 2, 3]
    capsys.readouterr()
    x = np.random.default_rng(8).normal(size=(200, 8)).astype(np.float32)
    np.savez(tmp_path / "lat.npz", w=x)
    assert main(["directions", "ganspace", "--npz", str(tmp_path / "lat.npz"), "--k", "2",
                 "--out", str(tmp_path / "pca"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [Path(r["file"]).name for r in rows] == ["pca_0.npz", "pca_1.npz"]
    assert rows[0]["explained_variance_ratio"] >= rows[1]["explained_variance_ratio"]


def test_cli_interfacegan_protocol_and_spaceless_npy(tmp_path: Path, data, capsys) -> None:
    """--protocol interfacegan fits svc with InterFaceGAN's split and says so; another solver
    with it is one line; a .npy condition without a space token takes the primal's space and
    correlate asks for --space."""
    x, s, _ = data
    np.savez(tmp_path / "store.npz", w=x, scores_age=s)
    assert main(["boundary", "fit", "--npz", str(tmp_path / "store.npz"), "--attribute", "age",
                 "--protocol", "interfacegan", "--seed", "3", "--bootstrap", "0",
                 "--out", str(tmp_path / "age_w.npz")]) == 0
    printed = capsys.readouterr().out
    assert "median labels; InterFaceGAN's midpoint labels" in printed
    b = load_boundary(tmp_path / "age_w.npz")
    assert (b.provenance["protocol"], b.provenance["solver"]) == ("interfacegan", "svc")
    want = LinearBoundary(solver="svc", protocol="interfacegan", random_state=3, bootstrap=0).fit(x, s)
    assert float(b.normal @ want.normal_) == pytest.approx(1.0, abs=1e-6)
    assert main(["boundary", "fit", "--npz", str(tmp_path / "store.npz"), "--attribute", "age",
                 "--protocol", "interfacegan", "--solver", "logistic",
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "protocol 'interfacegan'" in capsys.readouterr().err
    v = np.random.default_rng(0).normal(size=(1, x.shape[1]))
    np.save(tmp_path / "gender.npy", v / np.linalg.norm(v))
    assert main(["boundary", "condition", str(tmp_path / "age_w.npz"), "--on",
                 str(tmp_path / "gender.npy"), "--out", str(tmp_path / "age_c.npz")]) == 0
    assert load_boundary(tmp_path / "age_c.npz").space == "w"
    capsys.readouterr()
    assert main(["boundary", "correlate", str(tmp_path / "age_w.npz"), str(tmp_path / "gender.npy")]) == 2
    assert "--space" in capsys.readouterr().err
    assert main(["boundary", "correlate", str(tmp_path / "age_w.npz"), str(tmp_path / "gender.npy"),
                 "--space", "w"]) == 0
