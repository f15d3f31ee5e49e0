"""Boundary files on facelatent.io: the format header, old header-less files, and a table of
malformed files that every command must refuse in one line naming the file (exit 2, never an
"unexpected error"), including a normal of the wrong dimension for the generator or store.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from facelatent.boundaries import Boundary, IdentityBoundaries, load_boundary
from facelatent.cli import main
from facelatent.errors import FileFormatError
from facelatent.latents.store import LatentStore, StoreSpec

TINY = "mobilestylegan-tiny"      # z_dim = w_dim = 32, num_ws = 11
D = 32

pytestmark = pytest.mark.usefixtures("one_thread")


def unit(dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v)


def good(path: Path, dim: int = D) -> Path:
    return Boundary(unit(dim), 0.1, space="w", attribute="smile", metrics={"sigma": 1.0}).save(path)


def huge_member(path: Path) -> Path:
    """A 200-byte .npz whose member claims 10^8 floats: refused before any allocation."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**8,)})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("normal.npy", header.getvalue())
        zf.writestr("intercept.npy", b"")
    return path


def make(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.npz"
    if kind == "text":
        path.write_text("normal = [0.1, 0.2]\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        blob = good(tmp_path / "whole.npz").read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    elif kind == "pickled":
        np.savez(path, normal=np.array([{"evil": 1}], dtype=object), intercept=0.0)
    elif kind == "folder":
        path.mkdir()
    elif kind == "shape":
        np.savez(path, normal=np.full((2, 2, 2), 0.5 / np.sqrt(2)), intercept=0.0, space="w")
    elif kind == "nan":
        np.savez(path, normal=np.full(D, np.nan), intercept=0.0)
    elif kind == "nan-npy":
        path = tmp_path / "nan_boundary.npy"
        np.save(path, np.full((1, D), np.nan))
    elif kind == "huge":
        huge_member(path)
    elif kind == "other-format":
        IdentityBoundaries(np.array([1]), unit(D)[None], np.zeros(1), np.zeros((1, D))).save(path)
    return path


HOSTILE = {   # kind -> words the one line must hold besides the file's name
    "text": "text file", "empty": "empty", "truncated": "damaged or truncated",
    "pickled": "pickled", "folder": "folder", "shape": "shape", "nan": "NaN",
    "nan-npy": "NaN", "huge": "over the limit", "other-format": "facelatent.identity-boundaries",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_malformed_boundary_files_give_one_line_naming_the_file(tmp_path: Path, kind: str,
                                                                 capsys) -> None:
    path = make(tmp_path, kind)
    with pytest.raises(FileFormatError, match=HOSTILE[kind]):
        load_boundary(path)
    capsys.readouterr()
    code = main(["boundary", "correlate", str(path), str(good(tmp_path / "ok.npz"))])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and "unexpected" not in err and "Traceback" not in err
    assert str(path) in err and HOSTILE[kind] in err


def test_files_carry_a_format_header_and_old_files_still_load(tmp_path: Path) -> None:
    path = good(tmp_path / "smile_w.npz")
    with np.load(path) as raw:
        assert (str(raw["format"]), int(raw["format_version"])) == ("facelatent.boundary", 1)
    np.savez(tmp_path / "old.npz", normal=unit(D), intercept=np.float64(0.5), space="w",
             attribute="age", metrics='{"sigma": 2.0}', provenance="{}")
    old = load_boundary(tmp_path / "old.npz")
    assert (old.attribute, old.intercept, old.metrics["sigma"]) == ("age", 0.5, 2.0)
    with np.load(path) as raw:                  # a newer facelatent's file: refused by name
        members = {k: raw[k] for k in raw.files}
    np.savez(path, **{**members, "format_version": np.int64(7)})
    with pytest.raises(FileFormatError, match="format version 7.*upgrade"):
        load_boundary(path)


def test_edit_with_a_boundary_of_another_dimension_is_one_line(tmp_path: Path, capsys) -> None:
    path = good(tmp_path / "wide_w.npz", dim=7)
    code = main(["edit", "--model", TINY, "--seeds", "0", "--boundary", str(path), "--steps", "2",
                 "--size", "16", "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert str(path) in err and "dimension 7" in err and "w_dim 32" in err, err
    assert not (tmp_path / "out" / "edit.json").exists()


def test_evaluate_with_a_boundary_of_another_dimension_is_one_line(tmp_path: Path, capsys) -> None:
    spec = StoreSpec(generator=TINY, z_dim=D, w_dim=D, shard_size=4)
    store = LatentStore.create(tmp_path / "store", spec, n=4, command=["test"])
    rng = np.random.default_rng(0)
    store.write_shard(0, {"seeds": np.arange(4), "w": rng.normal(size=(4, D)).astype(np.float32),
                          "z": rng.normal(size=(4, D)).astype(np.float32)})
    path = Boundary(unit(7), 0.0, space="w", attribute="smile").save(tmp_path / "b.npz")  # no sigma
    code = main(["evaluate", "--store", str(tmp_path / "store"), "--boundary", str(path),
                 "--n", "2", "--steps", "2", "--out", str(tmp_path / "ev"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert str(path) in err and "dimension 7" in err and "w_dim 32" in err, err
    assert "broadcast" not in err
