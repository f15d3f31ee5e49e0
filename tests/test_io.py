"""Tests of facelatent.io: atomic writes, format headers, safe reads, the writer lock."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from facelatent import io
from facelatent.errors import FacelatentError, FileFormatError


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = io.write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_json_header_round_trip_and_refusals(tmp_path: Path) -> None:
    path = io.write_json(tmp_path / "m.json", {"a": float("nan"), "b": np.float32(2.5)},
                         format="facelatent.test", version=2)
    data = io.read_json(path, format="facelatent.test", max_version=2)
    assert data == {"format": "facelatent.test", "format_version": 2, "a": None, "b": 2.5}
    assert list(json.loads(path.read_text()))[:2] == ["format", "format_version"]
    with pytest.raises(FileFormatError, match="reads up to 1: upgrade facelatent"):
        io.read_json(path, format="facelatent.test", max_version=1)
    with pytest.raises(FileFormatError, match="has a 'facelatent.test' file; expected x"):
        io.read_json(path, format="facelatent.other", kind="x")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(FileFormatError, match="holds a JSON list, not an object"):
        io.read_json(tmp_path / "list.json")
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(FileFormatError, match="bad.json is not valid JSON"):
        io.read_json(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="no such file: .*none.json"):
        io.read_json(tmp_path / "none.json")


def test_npz_round_trip_with_header(tmp_path: Path) -> None:
    path = io.save_npz(tmp_path / "a.npz", {"x": np.arange(4.0), "s": np.str_("hi")},
                       format="facelatent.test", compressed=True)
    got = io.load_npz(path, format="facelatent.test", max_version=1)
    assert set(got) == {"x", "s"} and str(got["s"]) == "hi"
    np.testing.assert_array_equal(got["x"], np.arange(4.0))
    np.savez(tmp_path / "plain.npz", x=np.zeros(2))
    with pytest.raises(FileFormatError, match="has no facelatent format header"):
        io.load_npz(tmp_path / "plain.npz", format="facelatent.test")


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("hello"), "it is a text file"),
    (lambda p: p.write_bytes(b""), "it is empty"),
    (lambda p: p.write_bytes(pickle.dumps([1, 2])), "it is a Python pickle"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros(2)) or
     p.write_bytes(p.with_suffix(".npy").read_bytes()), "a single .npy array"),
    (lambda p: np.savez(p, a=np.array([None], dtype=object)), "Python objects"),
    (lambda p: np.savez_compressed(p, a=np.zeros(10**8, np.uint8)), "over the limit"),
    (lambda p: p.write_bytes(_zip_with(b"\x93NUMPY\x01\x00garbage")), "is damaged"),
    (lambda p: p.mkdir(), "is a folder"),
])
def test_malformed_npz_is_one_file_format_error(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "x.npz"
    make(path)
    with pytest.raises(FileFormatError, match=message) as caught:
        io.load_npz(path, max_elements=10**7)
    assert "x.npz" in str(caught.value) and "\n" not in str(caught.value)


def _zip_with(member: bytes) -> bytes:
    import io as stdio

    buf = stdio.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.npy", member)
    return buf.getvalue()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_a_huge_npz_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A 389 KB archive that claims 1e8 floats (400 MB): refused from its header alone."""
    path = tmp_path / "big.npz"
    np.savez_compressed(path, a=np.zeros(10**8, np.float32))
    # VmHWM is the peak resident size of this process image (ru_maxrss would carry the
    # parent's peak across exec).
    code = ("import sys; from facelatent import io\n"
            "try:\n    io.load_npz(sys.argv[1])\nexcept io.FileFormatError:\n    pass\n"
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    rss_kb = int(subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                                capture_output=True, text=True).stdout)
    assert rss_kb < 300_000, f"peak RSS {rss_kb / 1e3:.0f} MB"


def test_load_npy_checks_its_header(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones(3))
    np.testing.assert_array_equal(io.load_npy(tmp_path / "a.npy"), np.ones(3))
    np.save(tmp_path / "o.npy", np.array([{}], dtype=object))
    with pytest.raises(FileFormatError, match="o.npy holds Python objects"):
        io.load_npy(tmp_path / "o.npy")
    with pytest.raises(FileFormatError, match="over the limit of 2"):
        io.load_npy(tmp_path / "a.npy", max_elements=2)


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_the_writer_lock_is_exclusive_and_dies_with_its_process(tmp_path: Path) -> None:
    with io.writer_lock(tmp_path, "dataset"):
        with pytest.raises(FacelatentError, match=f"dataset {tmp_path} is being written"):
            with io.writer_lock(tmp_path, "dataset"):
                pass
    # A process holding the lock is killed: the lock is free again.
    code = ("import os, sys, time; from facelatent import io\n"
            "with io.writer_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    with pytest.raises(FacelatentError, match="another process"):
        with io.writer_lock(tmp_path):
            pass
    proc.kill()
    proc.wait()
    with io.writer_lock(tmp_path):
        pass
    assert os.path.exists(tmp_path / io.LOCK_NAME)
