"""Requests checked before any work (defects 7 and 10 in boundaries, editing and evaluation):
`identity fit --references` sized against the store, `evaluate --keep -1`, `edit --size 0`, and
the advice for a store whose complete shards hold NaN latents."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from facelatent.boundaries import Boundary
from facelatent.cli import main
from facelatent.latents.store import LatentStore, StoreSpec

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "mobilestylegan-tiny"
D = 32
N = 64


def make_store(path: Path, nan_rows: int = 0) -> Path:
    """N complete samples with smile scores and SFace embeddings; the first `nan_rows` latents
    NaN (what a damaged chunk reads back as)."""
    spec = StoreSpec(generator=TINY, z_dim=D, w_dim=D, shard_size=32, attributes=("smile",),
                     identity=("sface",))
    store = LatentStore.create(path, spec, n=N, command=["test"])
    rng = np.random.default_rng(0)
    w = rng.normal(size=(N, D)).astype(np.float32)
    w[:nan_rows] = np.nan
    emb = rng.normal(size=(N, 128))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    for i in range(2):
        rows = slice(32 * i, 32 * (i + 1))
        store.write_shard(i, {"seeds": np.arange(N)[rows], "w": w[rows], "z": w[rows],
                              "scores/smile": rng.normal(size=32).astype(np.float32),
                              "identity/sface": emb[rows].astype(np.float32)})
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("checks") / "store")


def error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize("request_", ["0-100000000", "0-999", "100"])
def test_identity_references_are_sized_against_the_store_first(store: Path, tmp_path: Path,
                                                               request_: str, capsys) -> None:
    started = time.perf_counter()
    code = main(["identity", "fit", "--store", str(store), "--references", request_,
                 "--out", str(tmp_path / "ids")])
    err = error(capsys)
    assert code == 2 and time.perf_counter() - started < 10
    assert "--references" in err and f"holds {N} samples" in err, err
    assert not (tmp_path / "ids").exists()


def test_evaluate_keep_must_not_be_negative(store: Path, tmp_path: Path, capsys) -> None:
    path = Boundary(np.eye(D)[0], 0.0, attribute="smile", metrics={"sigma": 1.0}).save(
        tmp_path / "smile_w.npz")
    code = main(["evaluate", "--store", str(store), "--boundary", str(path), "--keep", "-1",
                 "--n", "2", "--steps", "2", "--out", str(tmp_path / "ev"), "--device", "cpu"])
    err = error(capsys)
    assert code == 2 and "--keep" in err and "0 for no grids" in err, err
    assert not (tmp_path / "ev").exists()


def test_edit_size_zero_is_refused_by_name(tmp_path: Path, capsys) -> None:
    path = Boundary(np.eye(D)[0], 0.0, attribute="smile", metrics={"sigma": 1.0}).save(
        tmp_path / "smile_w.npz")
    code = main(["edit", "--model", TINY, "--seeds", "0", "--boundary", str(path), "--size", "0",
                 "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "e")])
    err = error(capsys)
    assert code == 2 and "--size" in err and "reshape" not in err, err


@pytest.mark.parametrize("command", [
    ["boundary", "fit", "--attribute", "smile", "--ratio", "0.2"],
    ["directions", "ganspace", "--k", "2"],
    ["identity", "fit", "--references", "3"],
])
def test_nan_latents_of_complete_shards_point_to_store_verify(tmp_path: Path, command: list[str],
                                                              capsys) -> None:
    path = make_store(tmp_path / "store", nan_rows=3)
    code = main([*command, "--store", str(path), "--out", str(tmp_path / "out")])
    err = error(capsys)
    assert code == 2
    assert f"store verify {path}" in err and "NaN" in err, err
    assert "incomplete" not in err
