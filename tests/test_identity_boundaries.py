"""Tests of facelatent.boundaries.identity: per-reference identity boundaries (ExFaceGAN) and
sampling along them.

The data are a planted problem: latents X ~ N(0, I) in 64 dimensions and K = 8 hidden
"identity" directions U; a sample's embedding is its projection on U plus Gaussian noise,
normalised. The cosine similarity of a reference r to a candidate then grows with the
candidate's projection on d_r = U^T U x_r (plus noise), so d_r is the planted normal of r.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from facelatent.boundaries import (
    IdentityBoundaries,
    fit_identity_boundaries,
    identity_labels,
)
from facelatent.boundaries.identity import METRICS
from facelatent.datasets.sampling import sample_identity
from facelatent.latents.store import LatentStore, StoreSpec

pytestmark = pytest.mark.usefixtures("one_thread")

SEED0 = 1000     # seeds start here, so a seed is never its row


def planted(n: int = 3000, dim: int = 64, k: int = 8, noise: float = 0.35, seed: int = 0,
            ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({"seeds", "latents" [n, dim], "embeddings" [n, 128] unit}, U [k, dim] orthonormal)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    u = np.linalg.qr(rng.standard_normal((dim, k)))[0].T
    v = np.concatenate([x @ u.T, noise * rng.standard_normal((n, 128 - k))], axis=1)
    emb = v / np.linalg.norm(v, axis=1, keepdims=True)
    data = {"seeds": SEED0 + np.arange(n), "latents": x.astype(np.float32),
            "embeddings": emb.astype(np.float32)}
    return data, u


def planted_normals(data: dict[str, np.ndarray], u: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    x = data["latents"][seeds - SEED0].astype(np.float64)
    d = (x @ u.T) @ u
    return d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def problem() -> tuple[dict[str, np.ndarray], np.ndarray]:
    return planted()


@pytest.fixture(scope="module")
def fitted(problem) -> dict[str, IdentityBoundaries]:
    data, _ = problem
    out = {solver: fit_identity_boundaries(data, references=6, solver=solver)
           for solver in ("lda", "logistic")}
    out["linear-svc"] = fit_identity_boundaries(data, references=3, solver="linear-svc")
    return out


# --- fitting -------------------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["lda", "logistic"])
def test_recovered_normals_align_with_the_planted_directions(problem, fitted, solver: str) -> None:
    data, u = problem
    b = fitted[solver]
    assert len(b) == 6 and b.normals.shape == (6, 64) and b.normals.dtype == np.float32
    cos = np.sum(b.normals * planted_normals(data, u, b.seeds), axis=1)
    assert cos.min() > 0.9                       # direction AND sign: towards the same side
    assert b.metrics["val_accuracy"].min() > 0.75
    assert (b.metrics["reference_distance"] > 0).all()     # each reference on its same side
    assert (b.metrics["n_same"] == 1499).all() and (b.metrics["n_different"] == 1499).all()
    assert set(b.metrics) == set(METRICS)
    assert b.provenance["solver"] == solver and b.provenance["n_candidates"] == 3000
    assert b.provenance["fit_seconds"] > 0


def test_linear_svc_agrees_with_lda_and_the_planted_directions(problem, fitted) -> None:
    data, u = problem
    svc = fitted["linear-svc"]
    lda = fitted["lda"].select(svc.seeds)
    assert np.sum(svc.normals * lda.normals, axis=1).min() > 0.9
    assert np.sum(svc.normals * planted_normals(data, u, svc.seeds), axis=1).min() > 0.9
    assert abs(svc.metrics["val_accuracy"].mean() - lda.metrics["val_accuracy"].mean()) < 0.03


@pytest.mark.parametrize("solver,minmax", [("lda", True), ("logistic", True), ("linear-svc", True),
                                           ("linear-svc", False)])
def test_intercepts_are_in_raw_latent_units(solver: str, minmax: bool) -> None:
    # Latents far from the origin with uneven scales: a boundary fitted in a scaled or centred
    # space and applied raw (as ExFaceGAN does) would classify at chance here.
    data, _ = planted(n=1200, dim=16, k=4)
    rng = np.random.default_rng(1)
    data["latents"] = (data["latents"] * np.exp(rng.standard_normal(16)) + 20.0).astype(np.float32)
    b = fit_identity_boundaries(data, references=[SEED0 + 3, SEED0 + 500], solver=solver,
                                minmax=minmax)
    rows = b.seeds - SEED0
    labels = identity_labels(data["embeddings"][rows], data["embeddings"], exclude=rows)
    decision = b.normals @ data["latents"].T.astype(np.float64) + b.intercepts[:, None]
    used = labels >= 0
    overall = (((decision > 0) == (labels == 1)) & used).sum(axis=1) / used.sum(axis=1)
    n_train = 2 * np.round(0.7 * b.metrics["n_same"])
    n_val = used.sum(axis=1) - n_train
    m = b.metrics
    expected = (m["train_accuracy"] * n_train + m["val_accuracy"] * n_val) / (n_train + n_val)
    np.testing.assert_allclose(overall, expected, atol=2e-3)
    assert overall.min() > 0.65                # chance is 0.5


def test_boundaries_are_keyed_by_seed_not_by_row(problem) -> None:
    data, _ = problem
    a = fit_identity_boundaries(data, references=4)
    perm = np.random.default_rng(5).permutation(len(data["seeds"]))
    shuffled = {k: v[perm] for k, v in data.items()}
    b = fit_identity_boundaries(shuffled, references=4)
    np.testing.assert_array_equal(a.seeds, b.seeds)
    np.testing.assert_allclose(a.normals, b.normals, atol=1e-5)
    np.testing.assert_allclose(a.intercepts, b.intercepts, atol=1e-5)
    # A reference's boundary does not depend on the other references fitted with it.
    s, t, v = (int(x) for x in a.seeds[:3])
    one = fit_identity_boundaries(data, references=[s, t])
    two = fit_identity_boundaries(data, references=[v, s])
    np.testing.assert_allclose(one[s][0], two[s][0], atol=1e-5)
    np.testing.assert_allclose(one[s][0], a[s][0], atol=1e-5)
    assert np.array_equal(one[s][2], data["latents"][s - SEED0])
    # An int picks the same seeds whatever the row order, and more references extend the pick.
    assert set(a.seeds) <= set(fit_identity_boundaries(data, references=8).seeds)


def test_labels_median_split_is_half_and_half_and_excludes_the_reference(problem) -> None:
    data, _ = problem
    emb = data["embeddings"][:101]              # 101 candidates, 100 once the reference is out
    refs = np.array([0, 7, 50])
    labels = identity_labels(emb[refs], emb, exclude=refs)
    assert labels.dtype == np.int8 and labels.shape == (3, 101)
    assert ((labels == 1).sum(axis=1) == 50).all() and ((labels == 0).sum(axis=1) == 50).all()
    assert (labels[np.arange(3), refs] == -1).all()   # its own similarity (1.0) would be "same"
    sims = emb[refs] @ emb.T
    for i in range(3):
        same, diff = sims[i][labels[i] == 1], sims[i][labels[i] == 0]
        assert same.min() > diff.max()
    # Without the exclusion an odd count leaves the middle candidate out, and the reference
    # labels itself "same".
    odd = identity_labels(emb[refs], emb)
    assert ((odd == -1).sum(axis=1) == 1).all() and (odd[np.arange(3), refs] == 1).all()


def test_labels_quantile_leaves_the_middle_unused(problem) -> None:
    data, _ = problem
    emb = data["embeddings"][:201]
    labels = identity_labels(emb[:2], emb, rule="quantile", quantile=0.25, exclude=[0, 1])
    assert ((labels == 1).sum(axis=1) == 50).all() and ((labels == 0).sum(axis=1) == 50).all()
    assert ((labels == -1).sum(axis=1) == 101).all()
    sims = emb[:2] @ emb.T
    for i in range(2):
        middle = sims[i][(labels[i] == -1) & (np.arange(201) != i)]
        assert middle.min() > sims[i][labels[i] == 0].max()
        assert middle.max() < sims[i][labels[i] == 1].min()
    b = fit_identity_boundaries(data, references=2, rule="quantile", quantile=0.1)
    assert (b.metrics["n_same"] == 299).all() and b.provenance["labels"]["quantile"] == 0.1


def test_nan_embeddings_are_dropped_as_candidates_and_refused_as_references(problem) -> None:
    data, _ = problem
    data = {k: v.copy() for k, v in data.items()}
    no_face = np.array([2, 10, 11, 400])
    data["embeddings"][no_face] = np.nan
    labels = identity_labels(data["embeddings"][:3][[0, 1]], data["embeddings"])
    assert (labels[:, no_face] == -1).all() and (labels == 1).sum() == 2 * 1498
    b = fit_identity_boundaries(data, references=50)
    assert not set(b.seeds) & set(SEED0 + no_face)
    # 2,996 with a face, less the reference: 2,995, so 1,497 per class and the middle one unused
    assert (b.metrics["n_same"] == 1497).all() and (b.metrics["n_different"] == 1497).all()
    assert np.isfinite(b.normals).all()
    with pytest.raises(ValueError, match=r"1010.*no identity embedding"):
        fit_identity_boundaries(data, references=[SEED0, SEED0 + 10])
    with pytest.raises(ValueError, match="not finite"):
        identity_labels(data["embeddings"][no_face], data["embeddings"])


def test_bad_inputs_are_refused_with_a_named_argument(problem) -> None:
    data, _ = problem
    with pytest.raises(ValueError, match="solver"):
        fit_identity_boundaries(data, references=2, solver="svm")
    with pytest.raises(ValueError, match="too few candidates"):
        fit_identity_boundaries({k: v[:5] for k, v in data.items()}, references=1)
    with pytest.raises(ValueError, match=r"seeds \[7\] are not in the store"):
        fit_identity_boundaries(data, references=[7])
    with pytest.raises(ValueError, match="latents"):
        fit_identity_boundaries({**data, "latents": data["latents"][:-1]}, references=1)
    with pytest.raises(ValueError, match="keys"):
        fit_identity_boundaries({"seeds": data["seeds"]}, references=1)
    with pytest.raises(ValueError, match="quantile"):
        identity_labels(data["embeddings"][:1], data["embeddings"], rule="quantile", quantile=0.5)
    with pytest.raises(ValueError, match="same E"):
        identity_labels(data["embeddings"][:1, :64], data["embeddings"])


def test_fits_a_latent_store_and_records_where_from(tmp_path: Path) -> None:
    data, u = planted(n=512, dim=16, k=4)
    spec = StoreSpec(generator="g", z_dim=16, w_dim=16, shard_size=256, identity=("sface",),
                     seed_start=SEED0)
    store = LatentStore.create(tmp_path / "store", spec, n=512, command=["test"])
    for i in range(2):
        rows = slice(256 * i, 256 * (i + 1))
        store.write_shard(i, {"seeds": data["seeds"][rows], "w": data["latents"][rows],
                              "z": -data["latents"][rows],
                              "identity/sface": data["embeddings"][rows]})
    b = fit_identity_boundaries(tmp_path / "store", references=3, space="z")
    assert b.space == "z" and b.provenance["store"] == str(tmp_path / "store")
    assert b.provenance["generator"] == "g" and b.provenance["labels"]["rule"] == "median"
    cos = np.sum(b.normals * planted_normals(data, u, b.seeds), axis=1)
    assert cos.max() < -0.8              # z = -w here: the same directions, sign flipped
    with pytest.raises(ValueError, match="dlib"):
        fit_identity_boundaries(tmp_path / "store", references=3, model="dlib")


# --- the container and its file ------------------------------------------------------------------

def test_save_load_round_trip_and_lookup(fitted, tmp_path: Path) -> None:
    b = fitted["lda"]
    path = b.save(tmp_path / "sub" / "ids.npz")
    c = IdentityBoundaries.load(path)
    for name in ("seeds", "normals", "intercepts", "latents"):
        np.testing.assert_array_equal(getattr(b, name), getattr(c, name))
    for name in METRICS:
        np.testing.assert_array_equal(b.metrics[name], c.metrics[name])
    assert (c.space, c.model) == ("w", "sface") and c.provenance == b.provenance
    seed = int(b.seeds[2])
    normal, intercept, latent = c[seed]
    assert c.index(seed) == 2 and np.array_equal(normal, b.normals[2])
    assert intercept == pytest.approx(float(b.intercepts[2]))
    assert np.array_equal(latent, b.latents[2])
    picked = c.select([int(b.seeds[4]), seed])
    assert list(picked.seeds) == [int(b.seeds[4]), seed] and len(picked) == 2
    np.testing.assert_array_equal(picked.metrics["val_accuracy"], b.metrics["val_accuracy"][[4, 2]])
    with pytest.raises(KeyError, match="seed 5;"):
        c[5]
    assert not list(tmp_path.glob("sub/.*tmp"))


def test_load_refuses_missing_corrupt_and_mismatched_files(fitted, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        IdentityBoundaries.load(tmp_path / "none.npz")
    path = fitted["lda"].save(tmp_path / "ids.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ValueError, match="truncated.npz"):
        IdentityBoundaries.load(truncated)
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match="text.npz"):
        IdentityBoundaries.load(text)
    with np.load(path) as data:
        values = {k: data[k] for k in data.files}
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{**values, "intercepts": values["intercepts"][:-1]})
    with pytest.raises(ValueError, match=r"bad.npz: intercepts must have shape \[6\]"):
        IdentityBoundaries.load(bad)
    np.savez(bad, **{**values, "extra": np.zeros(2)})
    with pytest.raises(ValueError, match="unknown keys"):
        IdentityBoundaries.load(bad)
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("seeds.npy", b"garbage")
    with pytest.raises(ValueError, match="bad.npz"):
        IdentityBoundaries.load(bad)


def test_constructor_checks_shapes_units_and_unique_seeds() -> None:
    normals = np.eye(3, dtype=np.float32)
    ok = IdentityBoundaries(np.array([4, 5, 6]), normals, np.zeros(3), np.ones((3, 3)))
    assert len(ok) == 3 and ok.dim == 3
    with pytest.raises(ValueError, match="unique"):
        IdentityBoundaries(np.array([4, 4, 6]), normals, np.zeros(3), np.ones((3, 3)))
    with pytest.raises(ValueError, match="unit length; seed 5"):
        IdentityBoundaries(np.array([4, 5, 6]), normals * [[1], [2], [1]], np.zeros(3),
                           np.ones((3, 3)))
    with pytest.raises(ValueError, match="latents"):
        IdentityBoundaries(np.array([4, 5, 6]), normals, np.zeros(3), np.ones((3, 2)))
    with pytest.raises(ValueError, match="metric 'x'"):
        IdentityBoundaries(np.array([4, 5, 6]), normals, np.zeros(3), np.ones((3, 3)),
                           metrics={"x": np.zeros(2)})


# --- sampling ------------------------------------------------------------------------------------

def one_reference(dim: int = 32) -> tuple[np.ndarray, float, np.ndarray]:
    rng = np.random.default_rng(3)
    normal = rng.standard_normal(dim)
    return normal / np.linalg.norm(normal), 0.5, rng.standard_normal(dim)


@pytest.mark.parametrize("mode", ["paper", "code", "random"])
def test_sample_identity_shapes_and_determinism(mode: str) -> None:
    ref = one_reference()
    lat, off, norms = sample_identity(ref, 40, max_off=3.0, mode=mode, seed=(7, 1001))
    assert lat.shape == (40, 32) and lat.dtype == np.float32 and off.shape == norms.shape == (40,)
    again = sample_identity(ref, 40, max_off=3.0, mode=mode, rng=np.random.default_rng((7, 1001)))
    np.testing.assert_array_equal(lat, again[0])
    other = sample_identity(ref, 40, max_off=3.0, mode=mode, seed=(7, 1002))
    assert not np.allclose(lat, other[0])
    step = lat.astype(np.float64) - ref[2]
    np.testing.assert_allclose(norms, np.linalg.norm(step, axis=1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(off, np.abs(step @ ref[0]), rtol=1e-4, atol=1e-4)


def test_sample_identity_sides_and_offsets() -> None:
    normal, _, latent = ref = one_reference()
    for side, sign in (("same", 1), ("other", -1)):
        lat, off, norms = sample_identity(ref, 200, max_off=2.0, mode="paper", side=side, seed=0)
        along = (lat - latent) @ normal
        assert (sign * along > 0).all()
        np.testing.assert_allclose(off, norms, rtol=1e-5)
        # |a| with a ~ N(0, 2): mean 2 sqrt(2 / pi) = 1.60
        assert 1.35 < off.mean() < 1.85
        lat, _, _ = sample_identity(ref, 200, max_off=2.0, mode="code", side=side, seed=0)
        u = (lat - latent) / normal                # each dimension's own factor, in [0, max_off]
        assert (sign * u > -1e-3).all() and (np.abs(u) < 2.0 + 1e-3).all()
        assert np.abs(u).std() > 0.3               # not one factor per sample
    paper = sample_identity(ref, 500, max_off=2.0, mode="paper", seed=9)
    rand = sample_identity(ref, 500, max_off=2.0, mode="random", seed=9)
    np.testing.assert_allclose(rand[2], paper[2], rtol=1e-5)   # the same norms, draw by draw
    cos = ((rand[0] - latent) @ normal) / rand[2]
    assert abs(cos.mean()) < 0.05 and np.abs(cos).mean() < 0.3   # random directions (1/sqrt 32)


def test_sample_identity_from_boundaries_needs_a_reference_and_a_seed(fitted) -> None:
    b = fitted["lda"]
    seed = int(b.seeds[1])
    lat, _, _ = sample_identity(b, 3, max_off=1.0, reference=seed, seed=0)
    np.testing.assert_array_equal(lat, sample_identity(b[seed], 3, max_off=1.0, seed=0)[0])
    assert sample_identity(b.select([seed]), 3, max_off=1.0, seed=0)[0].shape == (3, 64)
    with pytest.raises(ValueError, match="reference=SEED"):
        sample_identity(b, 3, max_off=1.0, seed=0)
    with pytest.raises(ValueError, match="exactly one of rng= or seed="):
        sample_identity(b[seed], 3, max_off=1.0)
    with pytest.raises(ValueError, match="mode"):
        sample_identity(b[seed], 3, max_off=1.0, mode="both", seed=0)
    with pytest.raises(KeyError, match="seed 3;"):
        sample_identity(b, 3, max_off=1.0, reference=3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample_identity(b[seed], 1, max_off=30.0, mode="code", side="other", seed=0)


def test_a_fit_folder_is_the_library_convention(fitted, tmp_path: Path) -> None:
    from facelatent.boundaries import BOUNDARIES_FILE, boundaries_path
    from facelatent.cli.identity import boundaries_path as cli_boundaries_path

    b = fitted["lda"]
    path = b.save(tmp_path / "ids")                      # a folder: boundaries.npz + summary.json
    assert path == tmp_path / "ids" / BOUNDARIES_FILE and path.is_file()
    summary = json.loads((tmp_path / "ids" / "summary.json").read_text())
    assert summary["references"] == len(b) and summary["val_accuracy"]["min"] > 0.5
    back = IdentityBoundaries.load(tmp_path / "ids")
    np.testing.assert_array_equal(back.normals, b.normals)
    assert boundaries_path(tmp_path / "x.npz") == tmp_path / "x.npz"
    assert cli_boundaries_path(tmp_path / "ids") == path          # the CLI's name still works
    with pytest.raises(FileNotFoundError, match="identity fit"):
        IdentityBoundaries.load(tmp_path / "none")


# --- sigma: the store's spread along each normal -------------------------------------------------

def planted_store(path: Path, n: int = 512, dim: int = 16) -> tuple[dict[str, np.ndarray], Path]:
    """A two-shard store of the planted problem, latents in W scaled by 0.3 (a W-like spread)."""
    data, _ = planted(n=n, dim=dim, k=4)
    data["latents"] = (0.3 * data["latents"]).astype(np.float32)
    spec = StoreSpec(generator="g", z_dim=dim, w_dim=dim, shard_size=n // 2, identity=("sface",),
                     seed_start=SEED0)
    store = LatentStore.create(path, spec, n=n, command=["test"])
    for i in range(2):
        rows = slice(n // 2 * i, n // 2 * (i + 1))
        store.write_shard(i, {"seeds": data["seeds"][rows], "w": data["latents"][rows],
                              "z": data["latents"][rows] / 0.3,
                              "identity/sface": data["embeddings"][rows]})
    return data, path


def test_sigma_is_the_std_of_the_samples_along_each_normal(problem, fitted, tmp_path: Path) -> None:
    data, _ = problem
    b = fitted["lda"]
    want = np.std(data["latents"].astype(np.float64) @ b.normals.T.astype(np.float64), axis=0)
    assert b.sigma is not None and b.sigma.dtype == np.float32 and b.sigma.shape == (6,)
    np.testing.assert_allclose(b.sigma, want, rtol=1e-4)
    assert 0.9 < b.sigma.min() and b.sigma.max() < 1.1          # X ~ N(0, I): unit spread
    back = IdentityBoundaries.load(b.save(tmp_path / "ids"))
    np.testing.assert_array_equal(back.sigma, b.sigma)
    np.testing.assert_array_equal(back.select([int(b.seeds[3])]).sigma, b.sigma[[3]])
    assert json.loads((tmp_path / "ids" / "summary.json").read_text())["sigma"]["median"] > 0.9
    with pytest.raises(ValueError, match="sigma must hold 6 positive"):
        IdentityBoundaries(b.seeds, b.normals, b.intercepts, b.latents, sigma=np.zeros(6))


def test_a_file_without_sigma_gets_it_from_its_store_or_is_refused(tmp_path: Path) -> None:
    from facelatent.boundaries.identity import MissingSpreadError, ensure_sigma

    _, store = planted_store(tmp_path / "store")
    fitted_here = fit_identity_boundaries(store, references=3)
    old = IdentityBoundaries(fitted_here.seeds, fitted_here.normals, fitted_here.intercepts,
                             fitted_here.latents, provenance=fitted_here.provenance)
    path = old.save(tmp_path / "old.npz")
    with zipfile.ZipFile(path) as z:
        assert "sigma.npy" not in z.namelist()               # as files from before sigma
    loaded = IdentityBoundaries.load(path)
    assert loaded.sigma is None
    filled = ensure_sigma(loaded)
    np.testing.assert_allclose(filled.sigma, fitted_here.sigma, rtol=1e-5)
    assert 0.25 < filled.sigma.min() and filled.sigma.max() < 0.35     # 0.3 x N(0, I)
    assert "computed from" in filled.provenance["sigma_source"]
    assert ensure_sigma(fitted_here) is fitted_here
    gone = IdentityBoundaries(old.seeds, old.normals, old.intercepts, old.latents,
                              provenance={**old.provenance, "store": str(tmp_path / "moved")})
    with pytest.raises(MissingSpreadError, match="--offset-units raw") as caught:
        ensure_sigma(gone)
    assert "\n" not in str(caught.value) and "moved" in str(caught.value)
