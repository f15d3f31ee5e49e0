"""Tests of facelatent.runs.ray (RayEngine) and `facelatent sample --engine ray`.

One local Ray with two CPUs serves the whole module; each test starts its own two workers on
it. Workers unpickle the functions and classes defined here by reference, as they would a
user's module, so the fixture puts this folder on their PYTHONPATH.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.cli import main
from facelatent.errors import FacelatentError
from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
from facelatent.generators import get_generator, z_from_seeds
from facelatent.latents.fill import SampleSettings, sample_to_store
from facelatent.latents.store import LatentStore
from facelatent.runs import JobError, LocalEngine, Models

ray = pytest.importorskip("ray")
from facelatent.runs.ray import RayEngine  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "mobilestylegan-tiny"
UNSCORED = SampleSettings(TINY, device="cpu", batch=2)
SCORED = SampleSettings(TINY, device="cpu", attributes=("age", "smile", "yaw"),
                        identity=("sface", "dlib"), batch=2)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[RayEngine]:
    """A local Ray with 2 CPUs for the module, shut down at its end."""
    with pytest.MonkeyPatch.context() as mp:
        here = str(Path(__file__).parent)
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get(
            "PYTHONPATH")])))
        engine = RayEngine(workers=2)       # the workers inherit the environment of ray.init
    assert engine.started and engine.cpus == 2
    print(f"\nlocal Ray started in {engine.start_seconds:.1f} s", file=sys.stderr)
    yield engine
    engine.close()
    assert not ray.is_initialized()


def random_models() -> Models:
    """Tiny generator and random-weight face nets; nothing loaded yet, so it pickles small."""
    return Models(get_generator(TINY), FaceAnalyzer(loaders=random_face_loaders()),
                  provenance={"face_models": "random weights (test)"})


def read_all(store: LatentStore) -> dict[str, np.ndarray]:
    return {name: store.read(name) for name in store.spec.arrays()}


def assert_same_store(got: LatentStore, want: LatentStore) -> None:
    assert got.spec == want.spec
    assert set(got.manifest["shards"]) == set(want.manifest["shards"])
    a, b = read_all(got), read_all(want)
    assert set(a) == set(b)
    for name in b:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# -- map ----------------------------------------------------------------------------------------
def where_and_square(job: int, models: Models | None) -> tuple[int, int, int, bool]:
    if job == 13:
        raise ValueError(f"unlucky job {job}")
    return job * job, os.getpid(), torch.get_num_threads(), models is None


def test_map_returns_every_job_once_from_the_workers(local_ray: RayEngine) -> None:
    with RayEngine(workers=2) as engine:
        assert not engine.started and engine.threads_per_worker == 1   # 2 CPUs / 2 workers
        got = list(engine.map(where_and_square, range(9)))
        assert sorted(job for job, _ in got) == list(range(9))
        assert all(result[0] == job * job for job, result in got)
        pids = {result[1] for _, result in got}
        assert len(pids) == 2 and os.getpid() not in pids      # both workers, not the driver
        assert {result[2:] for _, result in got} == {(1, True)}  # one thread each, no models
        with pytest.raises(JobError, match="(?s)^13 failed on Ray worker .*"
                                           "ValueError: unlucky job 13") as info:
            list(engine.map(where_and_square, [11, 12, 13]))
        assert info.value.job == 13 and "Traceback" in info.value.worker_traceback
        # A job that failed in Python leaves the workers alive for the next map.
        assert [r[0] for _, r in engine.map(where_and_square, [3])] == [9]
    assert ray.is_initialized()               # a Ray this engine did not start stays up
    local = list(LocalEngine().map(where_and_square, [2, 1]))
    assert [(job, r[0]) for job, r in local] == [(2, 4), (1, 1)]   # in job order


def test_engine_arguments_and_a_missing_ray_are_explained(monkeypatch) -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        RayEngine(workers=0)
    monkeypatch.setitem(sys.modules, "ray", None)   # import ray fails as if not installed
    with pytest.raises(FacelatentError, match=r"pip install 'facelatent\[ray\]'"):
        RayEngine()


# -- stores -------------------------------------------------------------------------------------
def test_ray_fills_a_scored_store_identical_to_the_local_engine(tmp_path: Path,
                                                                local_ray: RayEngine) -> None:
    sample_to_store(tmp_path / "local", 11, SCORED, shard_size=4, models=random_models())
    counts: list[int] = []

    class Progress:
        def start(self, total: int, done: int) -> None:
            counts.append(-total)

        def update(self, count: int) -> None:
            counts.append(count)

    models = random_models()
    with RayEngine(workers=2, models=models) as engine:
        report = sample_to_store(tmp_path / "ray", 11, SCORED, shard_size=4, engine=engine,
                                 models=models, progress=Progress())
    assert (report.action, report.shards_written, report.samples) == ("created", 3, 11)
    assert counts[0] == -11 and sorted(counts[1:]) == [3, 4, 4]     # per shard, once each
    assert report.stage_seconds["embed"] > 0
    got, want = LatentStore.open(tmp_path / "ray"), LatentStore.open(tmp_path / "local")
    assert_same_store(got, want)
    assert got.manifest["runs"][-1]["engine"] == "ray"
    assert got.manifest["model_assets"] == {"face_models": "random weights (test)"}


class CursedGenerator:
    """The tiny generator, except that mapping a batch holding seed ``cursed``'s z raises."""

    def __init__(self, cursed: int) -> None:
        self.G = get_generator(TINY)
        self.name, self.z_dim, self.w_dim = self.G.name, self.G.z_dim, self.G.w_dim
        self.num_ws, self.resolution, self.device = (self.G.num_ws, self.G.resolution,
                                                     self.G.device)
        self.cursed = z_from_seeds([cursed], self.z_dim)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.G.w_avg

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        if (z == self.cursed).all(dim=1).any():
            raise RuntimeError("this shard holds a cursed seed")
        return self.G.mapping(z, truncation_psi)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws)


def test_a_failed_shard_names_its_job_keeps_the_others_and_resumes(tmp_path: Path,
                                                                   local_ray: RayEngine) -> None:
    path = tmp_path / "st"
    cursed = Models(CursedGenerator(cursed=5))     # seed 5 lies in shard 1 of 5
    with RayEngine(workers=2, models=cursed) as engine:
        with pytest.raises(JobError, match=r"(?s)ShardJob\(index=1, seeds=\(4, 5, 6, 7\).*"
                                           "RuntimeError: this shard holds a cursed seed"):
            sample_to_store(path, 20, UNSCORED, shard_size=4, engine=engine)
    done = LatentStore.open(path).complete_shards()
    # Shards 0, 2 and 3 were under way when shard 1 failed (two per worker) and were written;
    # shard 4 runs only if a worker finished one of them before shard 1 failed.
    assert 1 not in done and {0, 2, 3} <= set(done), done
    report = sample_to_store(path, 20, UNSCORED)           # resume with the local engine
    assert report.action == "resumed" and report.shards_written == 5 - len(done)
    sample_to_store(tmp_path / "whole", 20, UNSCORED, shard_size=4)
    assert_same_store(LatentStore.open(path), LatentStore.open(tmp_path / "whole"))


# -- the command --------------------------------------------------------------------------------
def test_cli_sample_with_the_ray_engine(tmp_path: Path, local_ray: RayEngine, capsys) -> None:
    args = ["sample", "--model", TINY, "--n", "10", "--shard-size", "4", "--attributes",
            "none", "--identity", "none", "--device", "cpu", "--batch", "2"]
    assert main([*args, "--store", str(tmp_path / "ray"), "--engine", "ray",
                 "--workers", "2"]) == 0
    out = capsys.readouterr()
    assert "(created): 10 samples; wrote 3 shards, 10 samples" in out.out
    assert "10/10" in out.err                                       # the progress bar
    assert ray.is_initialized()                 # the command used this Ray and left it up
    assert main([*args, "--store", str(tmp_path / "local")]) == 0
    got, want = LatentStore.open(tmp_path / "ray"), LatentStore.open(tmp_path / "local")
    assert_same_store(got, want)
    assert [r["engine"] for r in got.manifest["runs"]] == ["ray"]
    assert main([*args, "--store", str(tmp_path / "x"), "--workers", "2"]) == 2
    assert "options of the Ray engine; add --engine ray" in capsys.readouterr().err
