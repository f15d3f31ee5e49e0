"""`facelatent verify lfw` on a tiny LFW whose embeddings are already in the cache: the command
reads the cache (no model runs), applies the protocol and prints the table or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from facelatent.cli import verify
from facelatent.faces import lfw
from facelatent.io import save_npz

# Two folds of one same and one different pair; person A's two photos embed alike, B and C apart.
PAIRS = "2 1\nA 1 2\nA 1 B 1\nC 1 2\nC 1 B 1\n"
FACES = {"A/A_0001.jpg": [1.0, 0.0], "A/A_0002.jpg": [0.8, 0.6], "B/B_0001.jpg": [0.0, 1.0],
         "C/C_0001.jpg": [-1.0, 0.0], "C/C_0002.jpg": [-0.6, -0.8]}


def tiny_lfw(root: Path, cache: Path, model: str, no_face: str | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pairs.txt").write_text(PAIRS)
    names = sorted(FACES)
    rows = np.zeros((len(names), 128), np.float32)
    for i, name in enumerate(names):
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "images" / name).write_bytes(b"not read: the cache has it")
        rows[i, :2] = FACES[name]
        if name == no_face:
            rows[i] = np.nan
    save_npz(cache / f"lfw-{model}-central.npz", {"paths": np.array(names), "embeddings": rows,
             "fingerprint": np.str_(lfw._fingerprint(model, "central"))},
             format=lfw.CACHE_FORMAT)


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="facelatent")
    verify.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["verify", "lfw", *argv])
    return int(args.func(args))


def test_verify_lfw_from_the_cache_prints_json(tmp_path: Path, capsys) -> None:
    tiny_lfw(tmp_path / "lfw", tmp_path / "cache", "sface")
    assert run("--lfw", str(tmp_path / "lfw"), "--model", "sface", "--cache",
               str(tmp_path / "cache"), "--json") == 0
    out = json.loads(capsys.readouterr().out)["sface"]
    # Same pairs at cosine 0.8 and 0.6, different at 0 and 0: both folds separate.
    assert out["accuracies"] == [1.0, 1.0] and out["accuracy_mean"] == 1.0
    assert out["genuine_mean"] == pytest.approx(0.7) and out["impostor_mean"] == 0.0
    assert 0.0 < out["threshold"] < 0.6
    assert (out["pairs"], out["images"], out["faces_not_found"], out["cached"]) == (4, 5, 0, True)


def test_verify_lfw_counts_a_missing_face_as_a_failed_pair(tmp_path: Path, capsys) -> None:
    tiny_lfw(tmp_path / "lfw", tmp_path / "cache", "dlib", no_face="C/C_0002.jpg")
    assert run("--lfw", str(tmp_path / "lfw"), "--model", "dlib", "--folds", "1-2",
               "--cache", str(tmp_path / "cache")) == 0
    table = capsys.readouterr().out
    assert "75.00 ± 25.00 %" in table        # fold 2 loses its same pair: 1/2
    assert "1/5" in table and "1/4" in table         # 1 face not found, 1 pair failed


def test_verify_lfw_errors_name_the_option(tmp_path: Path) -> None:
    tiny_lfw(tmp_path / "lfw", tmp_path / "cache", "sface")
    with pytest.raises(ValueError, match="folds must be numbers from 1 to 2"):
        run("--lfw", str(tmp_path / "lfw"), "--folds", "3", "--cache", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="--folds"):
        run("--lfw", str(tmp_path / "lfw"), "--folds", "x")
    with pytest.raises(ValueError, match="lfw: no pairs.txt"):
        run("--lfw", str(tmp_path))
    (tmp_path / "lfw" / "images" / "B" / "B_0001.jpg").unlink()
    with pytest.raises(ValueError, match="1 of the 5 images"):
        run("--lfw", str(tmp_path / "lfw"))
