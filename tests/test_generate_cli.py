"""`facelatent generate` against hostile options, and the latents file it writes.

Issue 10: defect 7 (`--seeds 0-100000000` ground at 4 GB), defect 10 (`--psi 1e30` gave a
black image with exit 0, `--size 0` meant full size, `--device banana` gave a traceback,
`--batch 0`), a typo in `--model`, and `latents.npz` as a checked ``facelatent.latents`` file.
All on the tiny random generator: no model files.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.cli import main
from facelatent.errors import FacelatentError, FileFormatError
from facelatent.generators import get_generator, resolve_device
from facelatent.io import save_npz
from facelatent.latents.sampling import (
    check_truncation_psi,
    generate_to_dir,
    latents_for_seeds,
    load_latents,
)


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return get_generator("mobilestylegan-tiny")


def run_generate(tmp_path: Path, *options: str) -> tuple[int, str]:
    argv = ["generate", "--model", "mobilestylegan-tiny", "--out", str(tmp_path / "out"),
            *options]
    if "--seeds" not in options:
        argv += ["--seeds", "0-1"]
    if "--device" not in options:
        argv += ["--device", "cpu"]
    return main(argv), str(tmp_path / "out")


@pytest.mark.parametrize("options,message", [
    (("--seeds", "0-100000000"),
     "--seeds '0-100000000' names 100,000,001 seeds, more than the 10,000 this command takes"),
    (("--seeds", "0-10000"), "names 10,001 seeds, more than the 10,000"),
    (("--seeds", "4294967296"), "--seeds: seed 4294967296 is out of range; seeds are 0 to "),
    (("--psi", "1e30"), ("--psi must be a finite number from -2 to 2 (1 = no truncation, 0.7 is "
                        "typical), got 1e+30")),
    (("--psi", "nan"), "--psi must be a finite number from -2 to 2"),
    (("--psi=-inf",), "--psi must be a finite number from -2 to 2"),
    (("--psi", "2.5"), "got 2.5"),
    (("--size", "0"), ("--size must be an image side from 16 to 4096 pixels (leave it out for "
                      "the generator's own size), got 0")),
    (("--size", "-64"), "--size must be an image side from 16 to 4096 pixels"),
    (("--size", "100000"), "--size must be an image side from 16 to 4096 pixels"),
    (("--batch", "0"), "--batch must be a number of images from 1 to 512, got 0"),
    (("--batch", "-3"), "--batch must be a number of images from 1 to 512, got -3"),
    (("--batch", "100000"), "--batch must be a number of images from 1 to 512"),
    (("--device", "banana"), ("--device 'banana' is not a device; expected 'auto', 'cpu', "
                             "'cuda', 'cuda:N' (N = GPU index) or 'mps'")),
    (("--device", "cuda:banana"), "--device 'cuda:banana' is not a device"),
    (("--device", "meta"), "--device 'meta' is not supported; expected 'auto', 'cpu'"),
    (("--model", "mobilestylegan-tyni"),
     ("unknown generator 'mobilestylegan-tyni'; did you mean 'mobilestylegan-tiny'? (available: "
     "mobilestylegan-ffhq, mobilestylegan-tiny)")),
])
def test_bad_options_fail_in_one_line_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], options: tuple[str, ...],
        message: str) -> None:
    started = time.perf_counter()
    code, out = run_generate(tmp_path, *options)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("facelatent: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not Path(out).exists()
    assert time.perf_counter() - started < 5  # defect 7: no grinding through 1e8 seeds


def test_a_cuda_device_this_machine_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="^--device 'cuda': this machine has no CUDA GPU; use "
                                         "'auto' or 'cpu'$"):
        resolve_device("cuda", "--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="^device 'cuda:2': this machine has 2 CUDA GPU"):
        resolve_device("cuda:2")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("psi", [-2.0, -0.5, 0.0, 0.7, 1.0, 2.0, 1])
def test_psi_in_range_is_accepted(psi: float) -> None:
    assert check_truncation_psi(psi) == float(psi)


@pytest.mark.parametrize("psi", ["0.5", None, 1e30, float("nan"), -2.0001])
def test_psi_out_of_range_names_the_argument(psi: object) -> None:
    with pytest.raises(ValueError, match="^truncation_psi must be "):
        check_truncation_psi(psi)  # type: ignore[arg-type]


def test_library_checks_options_before_writing(G: torch.nn.Module, tmp_path: Path) -> None:
    for kwargs in ({"truncation_psi": 1e30}, {"size": 0}, {"batch": 0}, {"space": "y"},
                   {"size": 64.0}, {"batch": True}):
        with pytest.raises(ValueError):
            generate_to_dir(G, [0], tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seeds: 0 given; generate_to_dir writes 1 to 10,000"):
        generate_to_dir(G, [], tmp_path / "out")
    assert not (tmp_path / "out").exists()


class Broken:
    """A generator whose synthesis returns NaN for one sample, as a broken w_avg or device does."""

    def __init__(self, G: torch.nn.Module, bad_row: int | None, bad_w: bool = False) -> None:
        self.G, self.bad_row, self.bad_w = G, bad_row, bad_w
        self.name, self.z_dim, self.w_dim = "broken", G.z_dim, G.w_dim
        self.num_ws, self.resolution, self.w_avg = G.num_ws, G.resolution, G.w_avg

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        w = self.G.mapping(z, truncation_psi)
        if self.bad_w:
            w[-1, 0] = float("inf")
        return w

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        images = self.G.synthesis(ws)
        if self.bad_row is not None and len(images) > self.bad_row:
            images[self.bad_row, 1, 3, 3] = float("nan")
        return images


def test_non_finite_images_are_an_error_not_a_black_face(G: torch.nn.Module,
                                                         tmp_path: Path) -> None:
    """Defect 10: a NaN image became a black PNG with exit 0."""
    with pytest.raises(FacelatentError, match="generator 'broken' produced NaN or infinite "
                                              "pixels for seed 7"):
        generate_to_dir(Broken(G, bad_row=1), [3, 7, 9], tmp_path / "a", batch=2)
    assert not (tmp_path / "a" / "seed0007.png").exists()
    with pytest.raises(FacelatentError, match=r"NaN or infinite latents \(w\) for seed 9"):
        generate_to_dir(Broken(G, bad_row=None, bad_w=True), [3, 7, 9], tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_grid_shows_at_most_100_faces(G: torch.nn.Module, tmp_path: Path) -> None:
    from PIL import Image

    result = generate_to_dir(G, list(range(101)), tmp_path, size=16, batch=64)
    assert len(result.images) == 101
    with Image.open(result.grid) as grid:
        assert grid.size == (10 * 16 + 9 * 2, 10 * 16 + 9 * 2)


# --------------------------------------------------------------------------------------------
# latents.npz


def test_cli_writes_a_latents_file_that_reads_back(G: torch.nn.Module, tmp_path: Path) -> None:
    code, out = run_generate(tmp_path, "--seeds", "4,2", "--psi", "0.5", "--size", "32")
    assert code == 0
    with zipfile.ZipFile(Path(out) / "latents.npz") as zf:
        assert zf.namelist()[:2] == ["format.npy", "format_version.npy"]
    latents = load_latents(Path(out) / "latents.npz")
    z, w = latents_for_seeds(G, [4, 2], truncation_psi=0.5)
    assert latents.seeds.tolist() == [4, 2] and latents.seeds.dtype == np.int64
    assert latents.z is not None and np.array_equal(latents.z, z.numpy())
    assert np.array_equal(latents.w, w.numpy())
    assert (latents.truncation_psi, latents.space) == (0.5, "w")
    assert latents.generator == "mobilestylegan-random"
    assert [p.name for p in Path(out).iterdir() if p.name.startswith(".")] == []


def good_members(n: int = 3, d: int = 4) -> dict[str, np.ndarray]:
    return {"seeds": np.arange(n, dtype=np.int64), "z": np.zeros((n, d), np.float32),
            "w": np.ones((n, d), np.float32), "truncation_psi": np.float32(0.7),
            "space": np.str_("w"), "generator": np.str_("g")}


def test_load_latents_minimal_and_wplus(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "l.npz", {"seeds": np.array([5], np.uint32),
                                         "w": np.ones((1, 11, 4), np.float64)},
                    format="facelatent.latents")
    latents = load_latents(path)
    assert latents.w.shape == (1, 11, 4) and latents.w.dtype == np.float32
    assert latents.z is None and latents.truncation_psi is None and latents.generator is None


@pytest.mark.parametrize("change,message", [
    ({"seeds": None}, "no seeds"),
    ({"w": None}, "no w"),
    ({"extra": np.zeros(3)}, "unexpected members ['extra']"),
    ({"seeds": np.zeros((3, 1), np.int64)}, ("'seeds' must be a non-empty 1-D integer array, "
                                            "got int64 [3, 1]")),
    ({"seeds": np.arange(3.0)}, "'seeds' must be a non-empty 1-D integer array, got float64"),
    ({"seeds": np.array([0, -1, 2])}, "'seeds' must lie in [0, 2**32), got -1 to 2"),
    ({"w": np.ones((2, 4), np.float32)}, ("'w' must be floats of shape [3, D] or [3, D, D] for "
                                         "3 seeds, got float32 [2, 4]")),
    ({"w": np.ones((3, 4), np.int64)}, "'w' must be floats"),
    ({"w": np.ones((3, 0), np.float32)}, "'w' must be floats"),
    ({"w": np.ones((3, 2, 2, 2), np.float32)}, "'w' must be floats"),
    ({"z": np.ones((3, 2, 4), np.float32)}, "'z' must be floats of shape [3, D] for 3 seeds"),
    ({"w": np.full((3, 4), np.nan, np.float32)}, "'w' holds NaN or infinite values"),
    ({"z": np.full((3, 4), np.inf, np.float32)}, "'z' holds NaN or infinite values"),
    ({"truncation_psi": np.ones(2)}, "'truncation_psi' must be a single value, got shape [2]"),
    ({"truncation_psi": np.str_("x")}, "'truncation_psi' must be a finite number"),
    ({"truncation_psi": np.float32(np.nan)}, "'truncation_psi' must be a finite number"),
])
def test_load_latents_rejects(tmp_path: Path, change: dict[str, np.ndarray | None],
                              message: str) -> None:
    members = good_members()
    for key, value in change.items():
        if value is None:
            del members[key]
        else:
            members[key] = value
    path = save_npz(tmp_path / "l.npz", members, format="facelatent.latents")
    with pytest.raises(FileFormatError) as info:
        load_latents(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text
    assert "write it again with `facelatent generate`" in text


def test_load_latents_rejects_other_files(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.npz"
    np.savez(legacy, **good_members())  # no header: a file from facelatent 0.1, or anyone's
    with pytest.raises(FileFormatError, match="has no facelatent format header; expected a "
                                              "latents file written by `facelatent generate`"):
        load_latents(legacy)
    other = save_npz(tmp_path / "b.npz", good_members(), format="facelatent.boundary")
    with pytest.raises(FileFormatError, match="has a 'facelatent.boundary' file"):
        load_latents(other)
    newer = save_npz(tmp_path / "n.npz", good_members(), format="facelatent.latents", version=2)
    with pytest.raises(FileFormatError, match="reads up to 1: upgrade facelatent"):
        load_latents(newer)
    text = tmp_path / "t.npz"
    text.write_text("seeds,w\n")
    with pytest.raises(FileFormatError, match="it is a text file"):
        load_latents(text)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_latents(tmp_path / "missing.npz")
