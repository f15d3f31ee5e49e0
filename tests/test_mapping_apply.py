"""`facelatent mapping apply` and facelatent.mapping.apply: every identity with every set of
attributes, paths between two faces, inputs from seeds, files and folders, and hostile inputs.

The tiny random generator, random face models and a random mapping: what is tested is the
plumbing (shapes, order, files, the ends of paths, one-line errors), not a real mapping's
quality. Stand-ins: a detector that finds a face in every image that is not dark, a landmark
net that puts the average FFHQ face's landmarks there (so aligning a generated face gives it
back), and a recogniser that projects the 8x8 face (a random SFace gives nearly the same code
for every face, which would hide a swapped row or column).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facelatent.cli import main
from facelatent.faces import align, analysis
from facelatent.faces.detect import Detections
from facelatent.generators import get_generator
from facelatent.images import load_rgb, resize, save_png, to_uint8
from facelatent.io import load_npz
from facelatent.latents.sampling import latents_for_seeds
from facelatent.mapping import Checkpoint, Mapper, MapperConfig, build, save_checkpoint
from facelatent.mapping.apply import (
    APPLY_FORMAT,
    MAX_IMAGES,
    apply_to_dir,
    interpolate,
    load_faces,
    slerp,
    swap_grid,
    swap_latents,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "mobilestylegan-tiny"
PSI = 0.7


class LitFaceDetector(nn.Module):
    """One face where FFHQ puts it in every image whose mean is above -0.9; none in darker."""

    def detect(self, images: list[torch.Tensor], **_: object) -> list[Detections]:
        out = []
        for im in images:
            if float(im.mean()) <= -0.9:
                out.append(Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)))
                continue
            h, w = im.shape[-2:]
            points = align.arcface5_from_landmarks68(align.generated_landmarks68(im[None]))
            out.append(Detections(torch.tensor([[0.2 * w, 0.25 * h, 0.8 * w, 0.95 * h]]),
                                  torch.tensor([0.9]), points))
        return out


class AverageFaceLandmarks(nn.Module):
    """The average FFHQ face's 68 landmarks, whatever the box."""

    def landmarks(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return align.generated_landmarks68(images.expand(len(boxes), -1, -1, -1))


class PixelIdentity(nn.Module):
    """Unit codes [N, 128]: a fixed random projection of the face averaged down to 8x8."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(3 * 8 * 8, 128, generator=generator))

    def embed(self, images: torch.Tensor, points5: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(images, 8).flatten(1)
        return F.normalize((x - x.mean(dim=1, keepdim=True)) @ self.proj, dim=1)


def loaders() -> dict[str, object]:
    return {**analysis.random_face_loaders(), "yunet": LitFaceDetector,
            "landmarks68": AverageFaceLandmarks, "sface": PixelIdentity}


def write_checkpoint(path: Path, G, num_ws: int | None = None) -> Path:
    """A random mapping; E_attr's output and M's first layer are scaled up so that different
    faces give clearly different w (at their initial scale they differ by 1e-5)."""
    num_ws = num_ws or G.num_ws
    cfg = MapperConfig(w_dim=G.w_dim, num_ws=num_ws, attr_init="random", hidden=(64, 64))
    torch.manual_seed(0)
    net, disc = build(cfg)
    with torch.no_grad():
        net.encoder.proj.weight.mul_(100)
        net.mlp.layers[0].weight.mul_(10)
    generator = {"name": TINY, "w_dim": G.w_dim, "num_ws": num_ws, "truncation_psi": PSI}
    return save_checkpoint(path, Checkpoint(cfg, generator, net, disc))


@pytest.fixture(scope="module")
def G():
    return get_generator(TINY)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, G) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.npz", G)


@pytest.fixture(scope="module")
def mapper(checkpoint) -> Mapper:
    return Mapper.from_checkpoint(checkpoint, analyzer=analysis.FaceAnalyzer(loaders=loaders()))


@pytest.fixture(scope="module")
def files(tmp_path_factory, G) -> dict[str, Path]:
    """photos/{b,a}.png: the faces of seeds 8 and 7 (sorted: a first); a dark image, a corrupt
    one, a non-square one, an empty folder and a text file."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "photos").mkdir()
    (root / "empty").mkdir()
    _, w = latents_for_seeds(G, [7, 8], PSI)
    with torch.no_grad():
        faces = to_uint8(G.synthesis(w))
    save_png(faces[0], root / "photos" / "a.png")
    save_png(faces[1], root / "photos" / "b.png")
    save_png(np.zeros((64, 64, 3), np.uint8), root / "dark.png")
    save_png(np.full((64, 96, 3), 200, np.uint8), root / "wide.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not a checkpoint\n")
    return {name: root / name for name in ("photos", "empty", "dark.png", "wide.png",
                                           "corrupt.jpg", "notes.txt")}


# -- the library ---------------------------------------------------------------------------------
def test_swap_grid_is_every_pair_of_plain_swaps(mapper, G) -> None:
    ids = load_faces("0-2", G, truncation_psi=PSI)
    attrs = load_faces(["3", "4"], G, truncation_psi=PSI)
    assert ids.names == ["seed0000", "seed0001", "seed0002"] and ids.images.shape == (3, 3, 64, 64)
    assert torch.equal(ids.w, latents_for_seeds(G, [0, 1, 2], PSI)[1])
    ws, images = swap_grid(mapper, G, ids.images, attrs.images, size=48)
    assert ws.shape == (3, 2, G.w_dim) and images.shape == (3, 2, 3, 48, 48)
    for i in range(3):
        for j in range(2):
            one = mapper.swap(ids.images[i:i + 1], attrs.images[j:j + 1])[0]
            torch.testing.assert_close(ws[i, j], one, atol=1e-5, rtol=1e-5)
    # Rows differ in identity and columns in attributes (by about 0.02-0.05 here).
    assert (ws[0, 0] - ws[1, 0]).abs().max() > 1e-3 and (ws[0, 0] - ws[0, 1]).abs().max() > 1e-3
    with torch.no_grad():
        want = resize(G.synthesis(ws[1, 0][None]), 48).clamp(-1, 1)[0]
    torch.testing.assert_close(images[1, 0], want, atol=1e-5, rtol=1e-5)


def test_paths_start_and_end_at_the_plain_swaps(mapper, G) -> None:
    ids = load_faces("0,1", G, truncation_psi=PSI).images
    attrs = load_faces("2-4", G, truncation_psi=PSI).images
    swaps = swap_latents(mapper, ids, attrs)                       # [2, 3, w_dim]
    path = interpolate(mapper, "identity", ids, attrs, steps=5)    # [3 attribute rows, 5, w_dim]
    assert path.shape == (3, 5, G.w_dim)
    torch.testing.assert_close(path[:, 0], swaps[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(path[:, -1], swaps[1], atol=1e-5, rtol=1e-5)
    assert (path[:, 2] - swaps[0]).abs().max() > 1e-3 and (path[:, 2] - swaps[1]).abs().max() > 1e-3
    path = interpolate(mapper, "attributes", attrs[:2], ids, steps=4)   # [2 identity rows, 4]
    assert path.shape == (2, 4, G.w_dim)
    torch.testing.assert_close(path[:, 0], swaps[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(path[:, -1], swaps[:, 1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="exactly 2 identity faces"):
        interpolate(mapper, "identity", attrs, ids)


def test_slerp_stays_on_the_sphere() -> None:
    e0, e1 = torch.eye(3)[0], torch.eye(3)[1]
    path = slerp(e0, e1, torch.tensor([0.0, 0.5, 1.0]))
    half = 1 / math.sqrt(2)
    torch.testing.assert_close(path, torch.tensor([[1, 0, 0], [half, half, 0], [0, 1, 0.0]]))
    close = slerp(e0, e0 + 1e-7 * e1, torch.linspace(0, 1, 3))      # no division by ~0
    assert torch.isfinite(close).all() and torch.allclose(close.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="opposite directions"):
        slerp(e0, -e0, torch.linspace(0, 1, 3))


def test_seeds_files_and_folders_give_the_same_face(mapper, G, files) -> None:
    seeded = load_faces("7", G, truncation_psi=PSI).images[0]
    folder = load_faces(files["photos"], G, analyzer=mapper.analyzer)
    assert folder.names == ["a", "b"] and folder.w is None
    assert folder.sources == [str(files["photos"] / "a.png"), str(files["photos"] / "b.png")]
    as_file = load_faces([str(files["photos"] / "a.png")], G, aligned=True).images[0]
    assert (as_file - seeded).abs().max() <= 1 / 127.5 + 1e-6       # 8-bit rounding only
    # Detected and aligned: FFHQ's crop of the average face is the generated frame to within
    # about a pixel, which moves the tiny generator's fine texture but not the face at 8x8
    # (0.005 apart there; another seed's face is 0.28 away).
    coarse = F.avg_pool2d(torch.cat([folder.images, seeded[None]]), 8)
    assert (coarse[0] - coarse[2]).abs().mean() < 0.02 < (coarse[1] - coarse[2]).abs().mean()
    twice = load_faces(["7", str(files["photos"] / "a.png"), str(files["photos"] / "a.png")],
                       G, aligned=True, truncation_psi=PSI)
    assert twice.names == ["seed0007", "a", "a-2"]
    assert torch.isnan(twice.w[1:]).all() and torch.isfinite(twice.w[0]).all()


class Recorder:
    def __init__(self) -> None:
        self.total, self.done = -1, 0

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def update(self, count: int) -> None:
        self.done += count


def test_apply_to_dir_writes_images_grid_and_latents(mapper, G, files, checkpoint,
                                                     tmp_path) -> None:
    progress = Recorder()
    report = apply_to_dir(mapper, G, "0-2", [files["photos"]], tmp_path, size=64,
                          checkpoint=checkpoint, progress=progress)
    assert (progress.total, progress.done) == (3 + 2 + 6, 11)
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names == sorted([f"id{i:02d}_attr{j:02d}.png" for i in range(3) for j in range(2)]
                           + ["grid.png", "latents.npz"])
    assert report["shape"] == [3, 2, G.w_dim] and report["images"] == 6
    assert report["row_names"] == ["seed0000", "seed0001", "seed0002"]
    assert report["column_names"] == ["a", "b"] and report["truncation_psi"] == PSI
    saved = load_npz(tmp_path / "latents.npz", format=APPLY_FORMAT)
    assert saved["w"].shape == (3, 2, G.w_dim)
    assert list(saved["identity_names"]) == report["row_names"]
    np.testing.assert_allclose(saved["identity_w"], latents_for_seeds(G, [0, 1, 2], PSI)[1])
    assert "attributes_w" not in saved                     # photos have no generator w
    meta = json.loads(str(saved["meta"]))
    assert meta["checkpoint"] == str(checkpoint) and meta["mode"] == "swap"
    with torch.no_grad():
        want = to_uint8(G.synthesis(torch.from_numpy(saved["w"][2, 1])[None]))[0]
    got = load_rgb(tmp_path / "id02_attr01.png")
    assert np.abs(got.astype(int) - want).max() <= 1
    grid = load_rgb(report["grid"])                        # 4 rows x 3 columns of 64 px tiles
    assert grid.shape[0] >= 4 * 64 and grid.shape[1] >= 3 * 64
    assert grid.shape[0] < 5 * 64 and grid.shape[1] < 4 * 64 + 100


# -- the command ---------------------------------------------------------------------------------
@pytest.fixture()
def stand_in_models(monkeypatch) -> None:
    """The CLI's face models are the random ones with the stand-ins, whatever was loaded."""
    monkeypatch.setattr(analysis, "_default_loaders", loaders)
    monkeypatch.setattr(analysis, "_ANALYZERS", {})


def apply_args(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["mapping", "apply", "--checkpoint", str(checkpoint), "--out", str(out),
            "--size", "64", "--device", "cpu", *extra]


def test_cli_interpolates_and_prints_the_report(stand_in_models, checkpoint, files, tmp_path,
                                                capsys) -> None:
    out = tmp_path / "out"
    code = main(apply_args(checkpoint, out, "--identity", "0-2", "--attributes", "5",
                           str(files["photos"] / "b.png"), "--interpolate", "attributes",
                           "--steps", "4", "--psi", "0.5", "--json"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["shape"][:2] == [3, 4] and report["truncation_psi"] == 0.5
    assert report["column_names"] == ["seed0005", "t=0.33", "t=0.67", "b"]
    assert (out / "id02_step03.png").is_file() and not (out / "id03_step00.png").exists()
    assert main(apply_args(checkpoint, tmp_path / "plain", "--identity", "0",
                           "--attributes", "1")) == 0
    assert "wrote 1 images" in capsys.readouterr().out


def _hostile(name: str) -> object:
    return pytest.param(name, id=name)


HOSTILE = {
    "missing checkpoint": (lambda f, c: ["--checkpoint", str(f["photos"] / "none.npz")],
                           "no such file"),
    "text file as checkpoint": (lambda f, c: ["--checkpoint", str(f["notes.txt"])], "text file"),
    "corrupt image": (lambda f, c: ["--identity", str(f["corrupt.jpg"])], "cannot read image"),
    "empty folder": (lambda f, c: ["--attributes", str(f["empty"])], "holds no image files"),
    "photo without a face": (lambda f, c: ["--identity", str(f["dark.png"])], "no face found"),
    "missing input": (lambda f, c: ["--identity", "nobody.png"], "no such file or folder"),
    "not square with --aligned": (lambda f, c: ["--identity", str(f["wide.png"]), "--aligned"],
                                  "square"),
    "seed out of range": (lambda f, c: ["--identity", "4294967296"], "out of range"),
    "too many images": (lambda f, c: ["--identity", "0-20", "--attributes", "0-19"],
                        f"more than the {MAX_IMAGES}"),
    "three ends of a path": (lambda f, c: ["--identity", "0-2", "--interpolate", "identity"],
                             "exactly 2 faces"),
    "one step": (lambda f, c: ["--interpolate", "attributes", "--steps", "1"], "--steps"),
    "another generator": (lambda f, c: ["--checkpoint", str(c)], "trained for"),
}


@pytest.mark.parametrize("name", [_hostile(n) for n in HOSTILE])
def test_cli_hostile_inputs_give_one_line(name, stand_in_models, checkpoint, files, G,
                                          tmp_path, capsys) -> None:
    other = write_checkpoint(tmp_path / "other.npz", G, num_ws=G.num_ws + 1)
    build_args, expect = HOSTILE[name]
    given = build_args(files, other)
    base = {"--checkpoint": str(checkpoint), "--identity": "0", "--attributes": "1,2"}
    argv = ["mapping", "apply", "--out", str(tmp_path / "out"), "--size", "64",
            "--device", "cpu"]
    for option, value in base.items():
        if option not in given:
            argv += [option, value]
    code = main(argv + given)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # no bars
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("facelatent: error: "), err
    assert expect in lines[0] and "Traceback" not in err
