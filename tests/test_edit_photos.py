"""`facelatent edit --latents` (faces from `generate` or `invert` files) and `--paste-back`
(the edited face put back into the person's own photo), on the tiny random generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facelatent.boundaries import Boundary
from facelatent.cli import main
from facelatent.editing.start import load_start
from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
from facelatent.faces.photo_align import FFHQTransform
from facelatent.generators import get_generator
from facelatent.images import from_uint8, load_rgb, save_png
from facelatent.inversion import Inverter, save_inversion

TINY = "mobilestylegan-tiny"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def boundary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    b = Boundary.from_direction(rng.standard_normal(32), attribute="x", space="w",
                                provenance={"generator": TINY})
    return b.save(tmp_path_factory.mktemp("b") / "x_w.npz")


def edit(boundary: Path, out: Path, *start: str) -> int:
    return main(["edit", "--model", TINY, *start, "--boundary", str(boundary), "--steps", "3",
                 "--range", "-2", "2", "--unit", "raw", "--size", "64", "--out", str(out)])


def test_latents_from_generate_edit_like_their_seeds(tmp_path: Path, boundary: Path) -> None:
    assert main(["generate", "--model", TINY, "--seeds", "3,5", "--out", str(tmp_path / "g"),
                 "--device", "cpu"]) == 0
    assert edit(boundary, tmp_path / "a", "--seeds", "3,5") == 0
    assert edit(boundary, tmp_path / "b", "--latents", str(tmp_path / "g" / "latents.npz")) == 0
    for name in ("seed0003.png", "seed0005.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / name)),
                                      np.asarray(Image.open(tmp_path / "b" / name)))
    summary = json.loads((tmp_path / "b" / "edit.json").read_text())
    assert summary["faces"] == ["seed0003", "seed0005"]


@pytest.fixture(scope="module")
def inverted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 'inverted photo': a 96x80 photo holding a tiny generated face at a known place,
    inverted for a few steps, saved with its transform as `facelatent invert` does."""
    root = tmp_path_factory.mktemp("inv")
    G = get_generator(TINY)
    analyzer = FaceAnalyzer(loaders=random_face_loaders())
    with torch.no_grad():
        face = G.synthesis(G.w_avg[None]).clamp(-1, 1)                 # [1, 3, 64, 64]
    photo = torch.full((3, 80, 96), -0.5)
    photo[:, 8:72, 16:80] = face[0]                                    # the crop's square
    save_png(np.asarray((photo.permute(1, 2, 0) + 1) * 127.5, np.uint8), root / "person.png")
    transform = FFHQTransform.from_quad(
        np.array([[15.5, 7.5], [15.5, 71.5], [79.5, 71.5], [79.5, 7.5]]), 64, (96, 80))
    result = Inverter("wp", 2).fit(G, face, analyzer).result_
    save_inversion(result, root / "person_face0", source=root / "person.png", face_index=0,
                   transform=transform.to_array())
    return root / "person_face0"


def test_inverted_faces_are_edited_and_pasted_back(tmp_path: Path, boundary: Path,
                                                   inverted: Path) -> None:
    start = load_start([inverted], "w", photos=True)
    assert start.latents.shape == (1, 11, 32) and start.names == ["person_face0"]
    assert edit(boundary, tmp_path / "e", "--latents", str(inverted), "--paste-back") == 0
    strip = np.asarray(Image.open(tmp_path / "e" / "person_face0_photo.png"))
    assert (tmp_path / "e" / "person_face0_photo.gif").is_file()
    assert (tmp_path / "e" / "person_face0.png").is_file()
    photo = load_rgb(json.loads((tmp_path / "e" / "edit.json").read_text())["files"]["faces"]
                     ["person_face0"]["photo_grid"])
    assert photo.shape == strip.shape
    # Outside the face's square, the photo's own pixels are kept.
    original = np.asarray(Image.open(inverted.parent / "person.png"))
    header = strip.shape[0] - 80 - 2
    first = strip[header:header + 80, 0:96]
    np.testing.assert_array_equal(first[:, :10], original[:, :10])


def test_paste_back_needs_photos_and_latents(tmp_path: Path, boundary: Path, capsys) -> None:
    assert edit(boundary, tmp_path / "e", "--seeds", "1", "--paste-back") == 2
    assert "--paste-back" in capsys.readouterr().err
    main(["generate", "--model", TINY, "--seeds", "1", "--out", str(tmp_path / "g"),
          "--device", "cpu"])
    assert edit(boundary, tmp_path / "e", "--latents", str(tmp_path / "g" / "latents.npz"),
                "--paste-back") == 2
    assert "holds generated faces" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_text("no")
    assert edit(boundary, tmp_path / "e", "--latents", str(tmp_path / "bad.npz")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.npz" in err[0]


def test_a_moved_photo_is_refused_for_paste_back(tmp_path: Path, inverted: Path) -> None:
    moved = tmp_path / "inv"
    import shutil

    shutil.copytree(inverted.parent, moved)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(inverted.parent / "person.png")
    try:
        with pytest.raises(ValueError, match="the photo has changed"):
            load_start([inverted], "w", photos=True)
    finally:
        shutil.copy(moved / "person.png", inverted.parent / "person.png")
    assert from_uint8(load_rgb(inverted.parent / "person.png")[None]).shape == (1, 3, 80, 96)
