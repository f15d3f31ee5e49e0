"""The command line against hostile and malformed input: every case must end in one line on
stderr that names the problem, a non-zero exit, and no traceback.

A table of cases, each a function that builds its inputs in a temporary folder and returns the
command's arguments and a fragment the error line must contain. Malformed boundary files,
stores, dataset folders, images and options; the generator is the tiny random one, so no model
file is needed.
"""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelatent.cli import main
from facelatent.latents.fill import SampleSettings, sample_to_store

TINY = "mobilestylegan-tiny"
pytestmark = pytest.mark.usefixtures("one_thread")

Case = Callable[[Path], tuple[list[str], str]]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn
    return register


def good_boundary(tmp: Path, dim: int = 32) -> Path:
    from facelatent.boundaries.boundary import Boundary

    rng = np.random.default_rng(0)
    return Boundary.from_direction(rng.standard_normal(dim), attribute="x").save(tmp / "good.npz")


def edit_with(boundary: Path, tmp: Path) -> list[str]:
    return ["edit", "--model", TINY, "--seeds", "0", "--boundary", str(boundary), "--steps", "2",
            "--unit", "raw", "--out", str(tmp / "edits")]


# -- boundary files -----------------------------------------------------------------------------
def bad_boundary(name: str, make: Callable[[Path], None], expect: str) -> None:
    @case(f"boundary: {name}")
    def build(tmp: Path) -> tuple[list[str], str]:
        path = tmp / "b.npz"
        make(path)
        return edit_with(path, tmp), expect


bad_boundary("text file", lambda p: p.write_text("this is not an archive"), "text file")
bad_boundary("empty file", lambda p: p.write_bytes(b""), "empty")
bad_boundary("pickle", lambda p: p.write_bytes(pickle.dumps({"normal": [1.0]})), "pickle")
bad_boundary("object array", lambda p: np.savez(p, normal=np.array([{}], dtype=object)),
             "Python objects")
bad_boundary("folder", lambda p: p.mkdir(), "folder")
bad_boundary("huge member", lambda p: np.savez_compressed(
    p, normal=np.zeros(100_000_000, np.float32)), "over the limit")
bad_boundary("nan normal", lambda p: np.savez(p, normal=np.full(32, np.nan), intercept=0.0),
             "NaN")
bad_boundary("wrong dimension", lambda p: np.savez(p, normal=np.ones(31) / 31 ** 0.5,
                                                   intercept=0.0, space="w"), "31")
bad_boundary("missing", lambda p: None, "b.npz")


@case("boundary: truncated")
def _(tmp: Path) -> tuple[list[str], str]:
    path = good_boundary(tmp)
    path.write_bytes(path.read_bytes()[:100])
    return edit_with(path, tmp), "good.npz"


@case("boundary: zip of other things")
def _(tmp: Path) -> tuple[list[str], str]:
    path = tmp / "b.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("normal.npy", b"\x93NUMPY garbage")
    return edit_with(path, tmp), "b.npz"


# -- stores -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
    from facelatent.generators import get_generator
    from facelatent.runs import Models

    path = tmp_path_factory.mktemp("store") / "st"
    models = Models(get_generator(TINY), FaceAnalyzer(loaders=random_face_loaders()),
                    provenance={"face_models": "random weights (test)"})
    sample_to_store(path, 8, SampleSettings(TINY, device="cpu", batch=4, attributes=("age",),
                                            identity=("sface",)), shard_size=4, models=models)
    return path


def store_case(name: str, damage: Callable[[Path], None], expect: str,
               command: Callable[[Path], list[str]] | None = None) -> None:
    @case(f"store: {name}")
    def build(tmp: Path) -> tuple[list[str], str]:
        path = tmp / "st"
        shutil.copytree(CASES_STORE[0], path)
        damage(path)
        argv = command(path) if command else ["boundary", "fit", "--store", str(path),
                                              "--attribute", "age", "--out", str(tmp / "b.npz")]
        return argv, expect


CASES_STORE: list[Path] = []
store_case("no zarr.json", lambda p: (p / "zarr.json").unlink(), "no latent store")
store_case("garbage zarr.json", lambda p: (p / "zarr.json").write_text("{not json"), "st")
store_case("manifest of another kind", lambda p: (p / "zarr.json").write_text(json.dumps(
    {"zarr_format": 3, "node_type": "group", "attributes": {"format": "x"}})),
    "not a facelatent latent store")
store_case("array deleted", lambda p: (p / "w" / "zarr.json").unlink(), "missing",
           lambda p: ["store", "verify", str(p)])
store_case("flipped bit", lambda p: _flip(p / "w" / "c" / "1" / "0"), "shard 1",
           lambda p: ["identity", "fit", "--store", str(p), "--references", "2",
                      "--out", str(p.parent / "ids")])
store_case("a file, not a folder", lambda p: (shutil.rmtree(p), p.write_text("x")), "st",
           lambda p: ["store", "info", str(p)])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


# -- images -------------------------------------------------------------------------------------
def image_case(name: str, make: Callable[[Path], None], expect: str) -> None:
    @case(f"image: {name}")
    def build(tmp: Path) -> tuple[list[str], str]:
        path = tmp / "face.png"
        make(path)
        return ["score", str(path), "--attributes", "age", "--json"], expect


image_case("text file", lambda p: p.write_text("no image here"), "face.png")
image_case("empty", lambda p: p.write_bytes(b""), "face.png")
image_case("truncated", lambda p: (Image.new("RGB", (64, 64), "gray").save(p),
                                   p.write_bytes(p.read_bytes()[:60])), "face.png")
image_case("folder", lambda p: p.mkdir(), "face.png")


# -- options ------------------------------------------------------------------------------------
def option_case(name: str, argv: Callable[[Path], list[str]], expect: str) -> None:
    @case(f"option: {name}")
    def build(tmp: Path) -> tuple[list[str], str]:
        return argv(tmp), expect


def generate(*extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["generate", "--model", TINY, "--seeds", "0", "--out", str(tmp / "g"),
                        *extra]


option_case("100 million seeds", lambda tmp: ["generate", "--model", TINY, "--seeds",
                                              "0-100000000", "--out", str(tmp / "g")], "seeds")
option_case("seed out of range", generate("--seeds", "4294967296"), "out of range")
option_case("bad device", generate("--device", "banana"), "--device")
option_case("psi 1e30", generate("--psi", "1e30"), "psi")
option_case("size 0", generate("--size", "0"), "size")
option_case("typo in a generator", lambda tmp: ["generate", "--model", "mobilestylegan-tyni",
                                                "--seeds", "0", "--out", str(tmp / "g")],
            "did you mean 'mobilestylegan-tiny'")
option_case("layers out of range", lambda tmp: [*edit_with(good_boundary(tmp), tmp),
                                                "--layers", "0-99"], "layer")
option_case("negative n", lambda tmp: ["sample", "--model", TINY, "--n", "-5", "--store",
                                       str(tmp / "st")], "n")
option_case("dataset from a missing folder", lambda tmp: [
    "dataset", "build", "--identities", str(tmp / "nope"), "--out", str(tmp / "d")], "nope")
def identities(tmp: Path) -> Path:
    from facelatent.boundaries import IdentityBoundaries

    rng = np.random.default_rng(0)
    normals = rng.standard_normal((3, 32)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    ids = IdentityBoundaries(np.array([1, 2, 3]), normals, np.zeros(3, np.float32),
                             rng.standard_normal((3, 32)).astype(np.float32),
                             provenance={"generator": TINY})
    ids.save(tmp / "ids")
    return tmp / "ids"


option_case("identities-max -1", lambda tmp: [
    "dataset", "build", "--identities", str(identities(tmp)), "--identities-max", "-1",
    "--out", str(tmp / "d")], "--identities-max")
option_case("typo in the dataset's generator", lambda tmp: [
    "dataset", "build", "--identities", str(identities(tmp)), "--model", "mobilestylegan-tyni",
    "--out", str(tmp / "d")], "did you mean")


def damaged_parquet(tmp: Path) -> list[str]:
    (tmp / "d").mkdir()
    (tmp / "d" / "dataset.json").write_text(json.dumps({"format": "facelatent.synthetic-dataset",
                                                        "format_version": 2}))
    (tmp / "d" / "metadata.parquet").write_bytes(b"PAR1 not really")
    return ["dataset", "report", str(tmp / "d")]


option_case("dataset with a damaged parquet", damaged_parquet, "metadata.parquet")
option_case("report on a text file", lambda tmp: (
    (tmp / "d").mkdir(), (tmp / "d" / "dataset.json").write_text("[]"),
    ["dataset", "report", str(tmp / "d")])[-1], "dataset.json")


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_gives_one_line(name: str, tmp_path: Path, store: Path, capsys) -> None:
    CASES_STORE[:] = [store]
    argv, expect = CASES[name](tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0, f"exit 0 for {name}: {err}"
    assert "Traceback" not in err, err
    if argv[0] == "score" and out.strip():
        # `score` reports each input that could not be scored in its own row and goes on.
        [row] = json.loads(out)
        assert expect in row["error"] and "\n" not in row["error"], row
        return
    lines = [line for line in err.splitlines() if line.strip() and not _progress(line)]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("facelatent: error:"), lines[0]
    assert expect in lines[0], f"{expect!r} not in {lines[0]!r}"


def _progress(line: str) -> bool:
    """tqdm bars and warnings are not error lines."""
    return "it/s" in line or "img/s" in line or "%|" in line or "Warning" in line
