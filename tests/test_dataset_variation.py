"""Tests of offsets in sigma units and the attribute-varied mode of `facelatent dataset build`
(facelatent.datasets.shard, .sampling, .variation, .writer).

The store is made up: latents [N, 32] (the tiny generator's w_dim) drawn with a known covariance,
and "yaw" and "age" scores that are linear in planted directions, so every spread has a value
computed here by hand. The face networks are the random ones of tests/test_dataset_writer.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from facelatent.boundaries import Boundary, IdentityBoundaries
from facelatent.boundaries.identity import MissingSpreadError, latent_covariance
from facelatent.datasets import DatasetSettings, build_dataset
from facelatent.datasets.sampling import draw_identity, sample_identity
from facelatent.datasets.variation import (
    AttributeDirections,
    attribute_directions,
    class_directions,
)
from facelatent.latents.store import LatentStore, StoreSpec
from facelatent.runs import Models, ResumeMismatchError
from tests.test_dataset_writer import TINY, make_identities, models

pytestmark = pytest.mark.usefixtures("one_thread")
DIM = 32
SETTINGS = DatasetSettings(per_identity=4, max_off=2.0, classes_per_shard=2, batch=4)


@pytest.fixture(scope="module")
def tiny_models() -> Models:
    return models()


def make_store(path: Path, n: int = 512) -> tuple[Path, np.ndarray]:
    """A store of latents with per-dimension stds 0.1..0.6 and linear yaw/age scores;
    returns (path, the planted [2, DIM] score directions)."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((n, DIM)) * np.linspace(0.1, 0.6, DIM)).astype(np.float32)
    planted = np.linalg.qr(rng.standard_normal((DIM, 2)))[0].T
    scores = x @ planted.T + 0.01 * rng.standard_normal((n, 2))
    spec = StoreSpec(generator=TINY, z_dim=DIM, w_dim=DIM, shard_size=n, attributes=("yaw", "age"))
    store = LatentStore.create(path, spec, n=n, command=["test"])
    store.write_shard(0, {"seeds": np.arange(n), "w": x, "z": x,
                          "scores/yaw": scores[:, 0].astype(np.float32),
                          "scores/age": scores[:, 1].astype(np.float32)})
    return path, planted


def boundaries(store: Path | None, k: int = 2, sigma: bool = True) -> IdentityBoundaries:
    ids = make_identities(k)
    spread = np.linspace(0.2, 0.4, k) if sigma else None
    return IdentityBoundaries(ids.seeds, ids.normals, ids.intercepts, ids.latents,
                              provenance={"generator": TINY,
                                          "store": None if store is None else str(store)},
                              sigma=spread)


def rows(root: Path) -> dict[str, np.ndarray]:
    t = pq.read_table(root / "metadata.parquet")
    return {name: np.asarray(t.column(name).to_pylist()) for name in t.column_names}


# --- offsets in sigma --------------------------------------------------------------------------

def test_sigma_units_resolve_to_sigma_times_the_spread(tmp_path: Path, tiny_models: Models) -> None:
    ids = boundaries(None)
    build_dataset(tmp_path / "s", ids, SETTINGS, models=tiny_models)
    build_dataset(tmp_path / "r", ids, replace(SETTINGS, offset_units="raw"), models=tiny_models)
    s, r = rows(tmp_path / "s"), rows(tmp_path / "r")
    order = np.argsort(ids.seeds)                   # classes are numbered in seed order
    want = 2.0 * ids.sigma[order]
    np.testing.assert_allclose(s["max_off_raw"], np.repeat(want, 4), rtol=1e-6)
    np.testing.assert_allclose(r["max_off_raw"], 2.0)
    # The same draws, scaled: |a| ~ |N(0, max_off)| in raw units is sigma x the sigma-unit one.
    np.testing.assert_allclose(s["offset"], r["offset"] * np.repeat(ids.sigma[order], 4),
                               rtol=1e-4)
    manifest = json.loads((tmp_path / "s" / "dataset.json").read_text())
    assert manifest["offset_units"] == "sigma" and manifest["settings"]["offset_units"] == "sigma"
    np.testing.assert_allclose(manifest["max_off_raw"], want, rtol=1e-5)


def test_old_boundaries_work_in_raw_units_and_are_refused_in_sigma(tmp_path: Path,
                                                                    tiny_models: Models) -> None:
    old = boundaries(tmp_path / "gone", sigma=False)
    report = build_dataset(tmp_path / "raw", old, replace(SETTINGS, offset_units="raw"),
                           models=tiny_models)
    assert report.samples_written == 8
    with pytest.raises(MissingSpreadError, match="pass --offset-units raw") as caught:
        build_dataset(tmp_path / "sigma", old, SETTINGS, models=tiny_models)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "sigma" / "dataset.json").exists()
    # With its store present, sigma comes from the store's covariance.
    store, _ = make_store(tmp_path / "store")
    here = replace(old, provenance={**old.provenance, "store": str(store)})
    build_dataset(tmp_path / "filled", here, SETTINGS, models=tiny_models)
    x = LatentStore.open(store, read_only=True).latents("w").astype(np.float64)
    sigma = np.std(x @ here.normals.T.astype(np.float64), axis=0)
    got = rows(tmp_path / "filled")["max_off_raw"][::4]
    np.testing.assert_allclose(got, 2.0 * sigma[np.argsort(here.seeds)], rtol=1e-4)


def test_resume_key_covers_units_and_mode(tmp_path: Path, tiny_models: Models) -> None:
    store, _ = make_store(tmp_path / "store")
    ids = boundaries(store)
    build_dataset(tmp_path / "d", ids, SETTINGS, models=tiny_models)
    with pytest.raises(ResumeMismatchError, match="offset_units"):
        build_dataset(tmp_path / "d", ids, replace(SETTINGS, offset_units="raw"), models=tiny_models)
    with pytest.raises(ResumeMismatchError, match="mode"):
        build_dataset(tmp_path / "d", ids, replace(SETTINGS, mode="varied"), models=tiny_models)
    # Other spreads give other raw offsets: refused although the settings match.
    with pytest.raises(ResumeMismatchError, match="max_off_raw_sha256"):
        build_dataset(tmp_path / "d", replace(ids, sigma=ids.sigma * 2), SETTINGS,
                      models=tiny_models)
    assert build_dataset(tmp_path / "d", ids, SETTINGS, models=tiny_models).action == "complete"
    # A dataset written before units existed counted in raw units, and resumes as such.
    raw = replace(SETTINGS, offset_units="raw")
    build_dataset(tmp_path / "old", ids, raw, models=tiny_models)
    manifest_file = tmp_path / "old" / "dataset.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["settings"]["offset_units"]
    manifest_file.write_text(json.dumps(manifest))
    assert build_dataset(tmp_path / "old", ids, raw, models=tiny_models).action == "complete"
    with pytest.raises(ResumeMismatchError, match="offset_units"):
        build_dataset(tmp_path / "old", ids, SETTINGS, models=tiny_models)


def test_bad_units_and_scales_are_refused() -> None:
    with pytest.raises(ValueError, match="offset_units must be 'sigma' or 'raw'"):
        DatasetSettings(offset_units="pixels")
    with pytest.raises(ValueError, match="attribute_scale"):
        DatasetSettings(attribute_scale=-1.0)
    assert "attribute_scale" not in DatasetSettings().resume_key()
    assert DatasetSettings(mode="varied", attribute_scale=2.0).resume_key()["attribute_scale"] == 2.0


# --- the varied mode ---------------------------------------------------------------------------

def directions(k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, AttributeDirections]:
    """(normal [DIM], latent [DIM], AttributeDirections of k random normals and a diagonal
    covariance)."""
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal(DIM)
    normal /= np.linalg.norm(normal)
    normals = rng.standard_normal((k, DIM))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    cov = np.diag(np.linspace(0.05, 0.5, DIM) ** 2)
    names = ("yaw", "age", "sefa_0")[:k]
    return normal, rng.standard_normal(DIM), AttributeDirections(names, normals, cov, "made up")


def test_class_directions_are_conditioned_and_scaled_by_the_store_spread() -> None:
    normal, _, attrs = directions()
    dirs, spreads = class_directions(attrs, normal, factor=1.5)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(dirs @ normal, 0.0, atol=1e-12)
    assert (np.sum(dirs * attrs.normals, axis=1) > 0.5).all()      # still the attributes
    x = np.random.default_rng(1).multivariate_normal(np.zeros(DIM), attrs.covariance, 200_000)
    np.testing.assert_allclose(spreads, 1.5 * np.std(x @ dirs.T, axis=0), rtol=0.01)
    with pytest.raises(ValueError, match="attribute-scale"):
        class_directions(attrs, normal, factor=-1)


def test_varied_draws_are_deterministic_orthogonal_and_scaled() -> None:
    normal, latent, attrs = directions()
    dirs, spreads = class_directions(attrs, normal)
    ref = (normal, 0.0, latent)
    kw = {"max_off": 0.5, "mode": "varied", "directions": dirs, "spreads": spreads}
    draw = draw_identity(ref, 4000, seed=(0, 7), **kw)
    again = draw_identity(ref, 4000, rng=np.random.default_rng((0, 7)), **kw)
    np.testing.assert_array_equal(draw.latents, again.latents)
    assert not np.allclose(draw.latents, draw_identity(ref, 4000, seed=(0, 8), **kw).latents)
    step = draw.latents.astype(np.float64) - latent
    along = step @ normal
    # The identity side moves exactly as in paper mode, draw by draw ...
    paper = sample_identity(ref, 4000, max_off=0.5, mode="paper", seed=(0, 7))
    np.testing.assert_allclose(along, paper[1], atol=1e-5)
    np.testing.assert_allclose(draw.offsets, paper[1], atol=1e-5)
    # ... and the rest of the step lies off the normal, along the attribute directions.
    rest = step - along[:, None] * normal
    np.testing.assert_allclose(rest @ normal, 0.0, atol=1e-5)
    np.testing.assert_allclose(rest, draw.strengths @ dirs, atol=1e-5)
    np.testing.assert_allclose(draw.strengths.std(axis=0), spreads, rtol=0.05)
    assert abs(draw.strengths.mean(axis=0)).max() < 0.1 * spreads.min()
    with pytest.raises(ValueError, match="orthogonal to the identity normal"):
        draw_identity(ref, 2, seed=0, max_off=0.5, mode="varied", directions=attrs.normals,
                      spreads=spreads)
    with pytest.raises(ValueError, match="needs directions"):
        draw_identity(ref, 2, seed=0, max_off=0.5, mode="varied")
    with pytest.raises(ValueError, match="for mode 'varied'"):
        draw_identity(ref, 2, seed=0, max_off=0.5, mode="paper", directions=dirs, spreads=spreads)


def test_attribute_directions_fitted_on_the_store_or_read_from_a_folder(tmp_path: Path) -> None:
    store, planted = make_store(tmp_path / "store")
    ids = boundaries(store)
    fitted = attribute_directions(ids)
    assert fitted.names == ("yaw", "age") and "fitted on" in fitted.source   # no smile scored
    # LDA on a planted linear score points (nearly) along the whitened direction; the sign
    # is right (high score side) and the cosine high.
    cos = np.sum(fitted.normals * planted, axis=1)
    assert (cos > 0.5).all(), cos
    x = LatentStore.open(store, read_only=True).latents("w")
    np.testing.assert_allclose(fitted.covariance, latent_covariance(x), rtol=1e-10)
    folder = tmp_path / "attrs"
    folder.mkdir()
    Boundary(planted[0].astype(np.float32), 0.0, "w", "yaw").save(folder / "yaw_w.npz")
    Boundary(planted[1].astype(np.float32), 0.0, "w", "sefa_0").save(folder / "sefa_0.npz")
    read = attribute_directions(ids, folder)
    assert read.names == ("sefa_0", "yaw") and read.source == str(folder)
    np.testing.assert_allclose(read.normals, planted[[1, 0]], atol=1e-6)
    assert read.key() != fitted.key()
    with pytest.raises(ValueError, match="store .* is not there"):
        attribute_directions(boundaries(tmp_path / "gone"))


def test_varied_dataset_records_strengths_and_keeps_the_identity_side(tmp_path: Path,
                                                                     tiny_models: Models) -> None:
    store, _ = make_store(tmp_path / "store")
    ids = boundaries(store)
    varied = replace(SETTINGS, mode="varied")
    build_dataset(tmp_path / "v", ids, varied, models=tiny_models)
    build_dataset(tmp_path / "p", ids, SETTINGS, models=tiny_models)
    v, p = rows(tmp_path / "v"), rows(tmp_path / "p")
    assert {"strength_yaw", "strength_age"} <= set(v) and "strength_yaw" not in p
    np.testing.assert_allclose(v["offset"], p["offset"], atol=1e-5)   # same identity offsets
    assert not np.allclose(v["latent"], p["latent"])
    order = np.argsort(ids.seeds)
    normals = np.repeat(ids.normals[order], 4, axis=0).astype(np.float64)
    rest = (v["latent"] - p["latent"]).astype(np.float64)       # the attribute part of the step
    np.testing.assert_allclose(np.sum(rest * normals, axis=1), 0.0, atol=1e-4)
    manifest = json.loads((tmp_path / "v" / "dataset.json").read_text())
    assert manifest["variation"]["names"] == ["yaw", "age"]
    assert manifest["variation"]["strength_std_median"]["yaw"] > 0
    assert manifest["attributes"]["names"] == ["yaw", "age"]          # the resume key's part
    # The quality report reads the steps back and fits what each costs the class.
    from facelatent.datasets.quality import dataset_quality, read_dataset

    table = read_dataset(tmp_path / "v")
    assert set(table.strengths) == {"yaw", "age"} and table.offset is not None
    np.testing.assert_allclose(table.strengths["yaw"], v["strength_yaw"][v["face"]], rtol=1e-6)
    cost = dataset_quality(table, "dlib")["identity_cost_of_moves"]
    assert list(cost["per_sd"]) == ["yaw", "age", "identity offset"]
    assert dataset_quality(read_dataset(tmp_path / "p"), "dlib").get("identity_cost_of_moves") is None
    assert build_dataset(tmp_path / "v", ids, varied, models=tiny_models).action == "complete"
    # Deterministic: a second build writes the same rows; a resume with other directions fails.
    build_dataset(tmp_path / "v2", ids, varied, models=tiny_models)
    np.testing.assert_array_equal(rows(tmp_path / "v2")["latent"], v["latent"])
    folder = tmp_path / "attrs"
    folder.mkdir()
    Boundary(np.eye(DIM, dtype=np.float32)[0], 0.0, "w", "yaw").save(folder / "yaw.npz")
    with pytest.raises(ResumeMismatchError, match="attributes"):
        build_dataset(tmp_path / "v", ids, varied, attributes=folder, models=tiny_models)
    with pytest.raises(ValueError, match="for mode 'varied'"):
        build_dataset(tmp_path / "p", ids, SETTINGS, attributes=folder, models=tiny_models)


def test_the_cli_refuses_sigma_without_a_spread_in_one_line(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from facelatent.cli import main

    path = boundaries(tmp_path / "gone", sigma=False).save(tmp_path / "ids.npz")
    argv = ["dataset", "build", "--identities", str(path), "--per-identity", "1",
            "--out", str(tmp_path / "d")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--offset-units raw" in err and "refit" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "d").exists()


def test_random_mode_refuses_both_sides() -> None:
    from facelatent.datasets import DatasetSettings
    from facelatent.recognition.compare import CompareSettings

    with pytest.raises(ValueError, match="random directions have no side") as info:
        DatasetSettings(mode="random", both_sides=True)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="random directions have no side"):
        CompareSettings(modes=("paper", "random"), both_sides=True)
    CompareSettings(modes=("paper", "varied"), both_sides=True)
