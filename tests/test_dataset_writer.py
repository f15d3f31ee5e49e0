"""Tests of facelatent.datasets.writer (`facelatent dataset build`): layout, determinism,
keys by seed, faces not found, resume after an interrupted build, and the Ray engine.

The generator is the tiny random one and the face networks have random weights; the detector is
`FixedGeometryDetector` (a random image holds no face a real detector would find).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from facelatent.datasets import DatasetSettings, build_dataset
from facelatent.errors import FacelatentError
from facelatent.faces.align import FixedGeometryDetector
from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
from facelatent.generators import get_generator
from facelatent.runs import LocalEngine, Models, ResumeMismatchError

TINY = "mobilestylegan-tiny"
pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Identities:
    """What the writer reads of `IdentityBoundaries`."""

    seeds: np.ndarray
    normals: np.ndarray
    intercepts: np.ndarray
    latents: np.ndarray
    space: str = "w"
    model: str = "sface"
    provenance: dict[str, Any] = field(default_factory=lambda: {"generator": TINY})
    sigma: np.ndarray | None = None

    def shuffled(self, order: list[int]) -> Identities:
        return replace(self, seeds=self.seeds[order], normals=self.normals[order],
                       intercepts=self.intercepts[order], latents=self.latents[order],
                       sigma=None if self.sigma is None else self.sigma[order])


def make_identities(k: int = 3) -> Identities:
    G = get_generator(TINY)
    rng = np.random.default_rng(0)
    seeds = np.array([40, 7, 19, 3, 11][:k], np.int64)
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(rng.standard_normal((k, G.z_dim)).astype(np.float32)))
    normals = rng.standard_normal((k, G.w_dim)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return Identities(seeds, normals, rng.standard_normal(k).astype(np.float32), w.numpy())


class MissEveryOther(FixedGeometryDetector):
    """Finds the face in every other image of a batch (to test rows without a face)."""

    def detect(self, images: Any, **kw: object) -> list[object]:
        out = super().detect(images, **kw)
        for i in range(1, len(out), 2):
            d = out[i]
            out[i] = type(d)(d.boxes[:0], d.scores[:0], d.points[:0])
        return out


def models(detector: type = FixedGeometryDetector) -> Models:
    return Models(get_generator(TINY),
                  FaceAnalyzer(loaders={**random_face_loaders(), "yunet": detector}))


@pytest.fixture(scope="module")
def tiny_models() -> Models:
    return models()


SETTINGS = DatasetSettings(per_identity=3, max_off=2.0, offset_units="raw", both_sides=True,
                           classes_per_shard=4, batch=2)


def table(root: Path) -> dict[str, np.ndarray]:
    t = pq.read_table(root / "metadata.parquet")
    return {name: np.asarray(t.column(name).to_pylist()) for name in t.column_names}


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "images").rglob("*") if p.is_file())


def test_layout_rows_and_files(tmp_path: Path, tiny_models: Models) -> None:
    ids = make_identities()
    report = build_dataset(tmp_path / "d", ids, SETTINGS, models=tiny_models)
    assert (report.action, report.classes, report.shards_written) == ("created", 6, 2)
    assert report.samples_written == 18 and report.images_written == 18
    rows = table(tmp_path / "d")
    assert len(rows["identity"]) == 18
    # Classes in (reference seed, side) order, whatever the order of the boundaries.
    assert rows["reference_seed"][::3].tolist() == [7, 7, 19, 19, 40, 40]
    assert rows["side"][::3].tolist() == ["same", "other"] * 3
    assert rows["identity"].tolist() == np.repeat(np.arange(6), 3).tolist()
    assert rows["sample"].tolist() == [0, 1, 2] * 6
    assert rows["latent"].shape == (18, 32) and rows["embedding_sface"].shape == (18, 128)
    np.testing.assert_allclose(np.linalg.norm(rows["embedding_dlib"], axis=1), 1, atol=1e-5)
    assert np.isfinite(rows["yaw"]).all() and np.isfinite(rows["age"]).all()
    assert rows["path"][4] == "images/00001/00001_001.png"
    assert files(tmp_path / "d") == sorted(rows["path"].tolist())
    from PIL import Image
    with Image.open(tmp_path / "d" / rows["path"][0]) as im:
        assert im.size == (112, 112)
    manifest = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert manifest["classes"] == 6 and set(manifest["shards"]) == {"0", "1"}
    assert manifest["label_model"] == "sface" and manifest["sampling"] == "paper"
    assert "research" in manifest["licence"]
    # The same side of a boundary moves towards it: offsets along +normal for "same".
    same = rows["side"] == "same"
    assert (rows["offset"][same] > 0).all() and (rows["offset"][~same] < 0).all()
    np.testing.assert_allclose(np.abs(rows["offset"]), rows["offset_norm"], rtol=1e-4)


def test_same_files_for_any_order_and_batch(tmp_path: Path, tiny_models: Models) -> None:
    ids = make_identities()
    build_dataset(tmp_path / "a", ids, SETTINGS, models=tiny_models)
    build_dataset(tmp_path / "b", ids.shuffled([2, 0, 1]),
                  replace(SETTINGS, batch=3, classes_per_shard=1), models=tiny_models)
    a, b = table(tmp_path / "a"), table(tmp_path / "b")
    for name in a:
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(a[name], b[name], atol=2e-5, err_msg=name)
        else:
            assert a[name].tolist() == b[name].tolist(), name
    assert files(tmp_path / "a") == files(tmp_path / "b")


def test_rows_without_a_face_keep_their_place(tmp_path: Path) -> None:
    build_dataset(tmp_path / "d", make_identities(2), replace(SETTINGS, both_sides=False),
                  models=models(MissEveryOther))
    rows = table(tmp_path / "d")
    assert rows["face"].tolist() == [True, False, True, False, True, False]
    assert rows["path"][1] == "" and np.isnan(rows["embedding_sface"][1]).all()
    assert rows["sample"].tolist() == [0, 1, 2, 0, 1, 2]
    assert len(files(tmp_path / "d")) == 3


class StopAfter:
    """An engine that runs `k` shards, then dies as a killed run would."""

    def __init__(self, k: int, models: Models) -> None:
        self.k, self.models = k, models

    def map(self, fn: Any, jobs: Any) -> Any:
        for i, job in enumerate(jobs):
            if i == self.k:
                raise KeyboardInterrupt
            yield job, fn(job, self.models)


def test_interrupted_build_resumes_without_loss_or_duplicates(tmp_path: Path,
                                                              tiny_models: Models) -> None:
    ids, settings = make_identities(), replace(SETTINGS, classes_per_shard=2)
    build_dataset(tmp_path / "whole", ids, settings, models=tiny_models)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(tmp_path / "cut", ids, settings, engine=StopAfter(1, tiny_models))
    manifest = json.loads((tmp_path / "cut" / "dataset.json").read_text())
    assert list(manifest["shards"]) == ["0"] and not (tmp_path / "cut" / "metadata.parquet").exists()
    # A half-written shard (an image of shard 1 already there, its part not) is redone in place.
    stray = tmp_path / "cut" / "images" / "00002" / "00002_000.png"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half a png")
    report = build_dataset(tmp_path / "cut", ids, settings, models=tiny_models)
    assert (report.action, report.shards_written) == ("resumed", 2)
    whole, cut = table(tmp_path / "whole"), table(tmp_path / "cut")
    for name in whole:
        if whole[name].dtype.kind == "f":
            np.testing.assert_array_equal(whole[name], cut[name], err_msg=name)
        else:
            assert whole[name].tolist() == cut[name].tolist(), name
    assert files(tmp_path / "whole") == files(tmp_path / "cut")
    assert stray.read_bytes() == (tmp_path / "whole" / "images/00002/00002_000.png").read_bytes()
    assert not list((tmp_path / "cut").rglob("*.tmp"))
    again = build_dataset(tmp_path / "cut", ids, settings, models=tiny_models)
    assert again.action == "complete" and again.samples_written == 0


def test_resume_with_other_settings_is_refused(tmp_path: Path, tiny_models: Models) -> None:
    ids = make_identities(1)
    settings = replace(SETTINGS, both_sides=False, per_identity=1)
    build_dataset(tmp_path / "d", ids, settings, models=tiny_models)
    with pytest.raises(FacelatentError, match="settings"):
        build_dataset(tmp_path / "d", ids, replace(settings, max_off=3.0), models=tiny_models)
    with pytest.raises(FacelatentError, match="identities"):
        build_dataset(tmp_path / "d", make_identities(2), settings, models=tiny_models)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "dataset.json").write_text("{}")
    with pytest.raises(FacelatentError, match="expected a facelatent dataset manifest"):
        build_dataset(tmp_path / "x", ids, settings, models=tiny_models)


def test_resume_with_boundaries_of_another_fit_is_refused(tmp_path: Path,
                                                          tiny_models: Models) -> None:
    """Same references, other normals (another labelling rule): never mixed into one dataset."""
    ids = make_identities()
    settings = replace(SETTINGS, classes_per_shard=2)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(tmp_path / "d", ids, settings, engine=StopAfter(1, tiny_models))
    refit = replace(ids, normals=ids.normals[::-1].copy(),
                    provenance={**ids.provenance, "labels": {"rule": "quantile"}})
    with pytest.raises(ResumeMismatchError, match="content_sha256") as caught:
        build_dataset(tmp_path / "d", refit, settings, models=tiny_models)
    assert "quantile" in str(caught.value)
    # The same boundaries in another order are the same boundaries.
    report = build_dataset(tmp_path / "d", ids.shuffled([2, 0, 1]), settings, models=tiny_models)
    assert (report.action, report.shards_written) == ("resumed", 2)


def test_a_build_that_failed_before_its_first_shard_starts_over(tmp_path: Path,
                                                                 tiny_models: Models) -> None:
    ids = make_identities(1)
    settings = replace(SETTINGS, both_sides=False, per_identity=1)
    with pytest.raises(FacelatentError, match="unknown generator 'mobilestylegan-tyni'; did you "
                                              "mean 'mobilestylegan-tiny'"):
        build_dataset(tmp_path / "d", ids, settings, generator="mobilestylegan-tyni")
    assert not (tmp_path / "d" / "dataset.json").exists()       # checked before any write
    with pytest.raises(KeyboardInterrupt):
        build_dataset(tmp_path / "d", ids, settings, engine=StopAfter(0, tiny_models))
    assert (tmp_path / "d" / "dataset.json").exists()
    report = build_dataset(tmp_path / "d", ids, replace(settings, max_off=3.0),
                           models=tiny_models)
    assert report.action == "created"       # nothing was written under the first settings


def test_a_damaged_shard_part_is_rewritten(tmp_path: Path, tiny_models: Models) -> None:
    ids, settings = make_identities(), replace(SETTINGS, classes_per_shard=2)
    build_dataset(tmp_path / "d", ids, settings, models=tiny_models)
    want = table(tmp_path / "d")
    part = tmp_path / "d" / "parts" / "shard-00001.parquet"
    part.write_bytes(part.read_bytes()[:-20])
    report = build_dataset(tmp_path / "d", ids, settings, models=tiny_models)
    assert (report.action, report.shards_written) == ("resumed", 1)
    got = table(tmp_path / "d")
    assert got["path"].tolist() == want["path"].tolist()
    np.testing.assert_array_equal(got["yaw"], want["yaw"])


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="per_identity"):
        DatasetSettings(per_identity=0)
    with pytest.raises(ValueError, match="max_off"):
        DatasetSettings(max_off=float("nan"))
    with pytest.raises(ValueError, match="mode"):
        DatasetSettings(mode="sideways")


def test_local_engine_and_ray_write_the_same_files(tmp_path: Path, tiny_models: Models) -> None:
    pytest.importorskip("ray")
    from facelatent.runs.ray import RayEngine

    ids = make_identities()
    build_dataset(tmp_path / "local", ids, SETTINGS, engine=LocalEngine(tiny_models))
    with RayEngine(workers=2, models=models()) as engine:     # fresh: small to send
        report = build_dataset(tmp_path / "ray", ids, SETTINGS, engine=engine)
    assert report.shards_written == 2
    a, b = table(tmp_path / "local"), table(tmp_path / "ray")
    for name in a:
        if a[name].dtype.kind == "f":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            assert a[name].tolist() == b[name].tolist(), name
    assert files(tmp_path / "local") == files(tmp_path / "ray")
    for name in files(tmp_path / "local"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()


# -- the command, killed for real ----------------------------------------------------------------
def _done_shards(root: Path) -> int:
    try:
        return len(json.loads((root / "dataset.json").read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkilled_dataset_build_resumes_to_the_uninterrupted_one(tmp_path: Path) -> None:
    """`facelatent dataset build` killed twice with SIGKILL, then run again, writes exactly the
    rows of an uninterrupted build (real face networks: they find no face in the tiny
    generator's images, so every row is kept without a crop)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from facelatent.boundaries.identity import IdentityBoundaries

    ids = make_identities(5)
    path = IdentityBoundaries(ids.seeds, ids.normals, ids.intercepts, ids.latents,
                              provenance={"generator": TINY}).save(tmp_path / "ids.npz")
    def command(out: Path) -> list[str]:
        return [sys.executable, "-c", "import sys; from facelatent.cli import main; "
                "sys.exit(main(sys.argv[1:]))", "dataset", "build", "--identities", str(path),
                "--per-identity", "3", "--max-off", "2", "--offset-units", "raw", "--both-sides",
                "--classes-per-shard",
                "1", "--batch", "3", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cut = tmp_path / "cut"
    at_kill = []
    for _ in range(2):
        before = _done_shards(cut)
        proc = subprocess.Popen(command(cut), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _done_shards(cut) <= before and proc.poll() is None:
            assert time.monotonic() < deadline, "no shard written within 120 s"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        at_kill.append(_done_shards(cut))
    assert all(0 < k < 10 for k in at_kill), at_kill
    done = subprocess.run(command(cut), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "(resumed)" in done.stdout
    whole = subprocess.run(command(tmp_path / "whole"), env=env, capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr
    a, b = table(tmp_path / "whole"), table(cut)
    assert b["identity"].tolist() == np.repeat(np.arange(10), 3).tolist()   # none lost or twice
    for name in a:
        if a[name].dtype.kind == "f":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            assert a[name].tolist() == b[name].tolist(), name
