"""`facelatent invert` and facelatent.inversion.invert_photos on photo files, with the tiny
generator and random face networks: a stand-in detector finds a face in bright images only, and
a stand-in landmark net places the average FFHQ face's landmarks, so alignment is exact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facelatent.cli import invert as invert_cli
from facelatent.faces import align, analysis
from facelatent.faces.detect import Detections
from facelatent.generators import get_generator, z_from_seeds
from facelatent.images import load_rgb, save_png, to_uint8
from facelatent.inversion import Inverter, invert_photos, load_inversion

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "mobilestylegan-tiny"


class BrightFaceDetector(nn.Module):
    """A face where FFHQ puts it in every image whose mean is above -0.5; none elsewhere."""

    def detect(self, images: list[torch.Tensor], **_: object) -> list[Detections]:
        out = []
        for im in images:
            if float(im.mean()) > -0.5:
                h, w = im.shape[-2:]
                pts = align.arcface5_from_landmarks68(align.generated_landmarks68(im[None]))
                box = torch.tensor([[0.2 * w, 0.25 * h, 0.8 * w, 0.95 * h]])
                out.append(Detections(box, torch.tensor([0.9]), pts))
            else:
                out.append(Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)))
        return out


class AverageFaceLandmarks(nn.Module):
    """The average FFHQ face's 68 landmarks on each image, whatever the box."""

    def landmarks(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return align.generated_landmarks68(images.expand(len(boxes), -1, -1, -1))


def loaders() -> dict[str, object]:
    return {**analysis.random_face_loaders(), "yunet": BrightFaceDetector,
            "landmarks68": AverageFaceLandmarks}


@pytest.fixture()
def photos(tmp_path: Path) -> dict[str, Path]:
    """A generated face, a black image (no face), a corrupt file and a text file."""
    G = get_generator(TINY)
    with torch.no_grad():
        face = G.synthesis(G.mapping(z_from_seeds([5], G.z_dim), 0.7)).clamp(-1, 1)
    out = {"face": tmp_path / "in" / "face.png", "black": tmp_path / "in" / "black.png",
           "corrupt": tmp_path / "in" / "corrupt.jpg"}
    out["face"].parent.mkdir()
    save_png(to_uint8(face)[0], out["face"])
    save_png(np.zeros((64, 64, 3), np.uint8), out["black"])
    out["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return out


def test_invert_photos_reports_bad_photos_and_goes_on(photos, tmp_path: Path) -> None:
    G = get_generator(TINY)
    analyzer = analysis.FaceAnalyzer(loaders=loaders())
    seen: list[tuple[int, int]] = []
    rows = invert_photos([photos["black"], photos["face"], photos["corrupt"]], tmp_path / "out",
                         G, Inverter("wp", 3), size=64, analyzer=analyzer,
                         progress=lambda d, t: seen.append((d, t)))
    assert [Path(str(r["path"])).name for r in rows] == ["black.png", "face.png", "corrupt.jpg"]
    assert rows[0]["error"] == "no face found"
    assert "cannot read image" in str(rows[2]["error"])
    assert "error" not in rows[1] and rows[1]["face"] == 0
    assert seen[-1] == (9, 9) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    folder = tmp_path / "out" / "face_face0"
    assert Path(str(rows[1]["folder"])) == folder
    face = load_inversion(folder)
    assert face.space == "wp" and face.latent.shape == (G.num_ws, G.w_dim)
    assert face.source == str(photos["face"]) and face.face_index == 0
    assert face.transform["kind"] == "ffhq_quad" and face.transform["photo_size"] == [64, 64]
    assert len(face.loss_curve) == 3 and face.metrics["msssim"] > 0
    assert load_rgb(folder / "side_by_side.png").shape == (64, 128, 3)
    assert sorted(p.name for p in folder.iterdir()) == [
        "aligned.png", "latents.npz", "reconstruction.png", "side_by_side.png"]


def test_a_face_index_beyond_the_faces_found_is_an_error_row(photos, tmp_path: Path) -> None:
    rows = invert_photos([photos["face"]], tmp_path / "out", get_generator(TINY),
                         Inverter("w", 1), face=3, size=64,
                         analyzer=analysis.FaceAnalyzer(loaders=loaders()))
    assert rows == [{"path": str(photos["face"]), "face": 3,
                     "error": "face 3 asked, but 1 face(s) found (0 = the leftmost)"}]


def run_cli(argv: list[str]) -> int:
    # The command as `facelatent` registers it (cli/__init__.py lists invert among its modules).
    parser = argparse.ArgumentParser(prog="facelatent")
    invert_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_goes_on_past_bad_photos_and_exits_1(photos, tmp_path: Path, monkeypatch,
                                                 capsys) -> None:
    monkeypatch.setattr(analysis, "_default_loaders", loaders)
    out = tmp_path / "out"
    code = run_cli(["invert", str(photos["corrupt"]), str(photos["face"]), str(photos["black"]),
                    "--out", str(out), "--steps", "2", "--size", "64", "--model", TINY,
                    "--device", "cpu", "--space", "w+", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [("error" in r) for r in rows] == [True, False, True]
    assert "2 of 3 photos failed" in captured.err
    assert load_inversion(out / "face_face0").space == "wp"


@pytest.mark.parametrize(("argv", "expect"), [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--face", "-1"], "--face must be >= 0"),
    (["--size", "16"], "--size must be at least 64"),
    (["--init", "encoder"], "go together"),
    (["--mapping", "m.npz"], "go together"),
])
def test_cli_checks_options_before_loading(argv, expect, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=expect):
        run_cli(["invert", "x.jpg", "--out", str(tmp_path), "--model", "no-such-model", *argv])


def test_cli_starts_from_a_mapping_encoder(photos, tmp_path: Path, monkeypatch, capsys) -> None:
    from facelatent.mapping import Checkpoint, MapperConfig, build, save_checkpoint

    monkeypatch.setattr(analysis, "_default_loaders", loaders)
    G = get_generator(TINY)
    config = MapperConfig(w_dim=G.w_dim, num_ws=G.num_ws, attr_init="random", hidden=(32,))
    net, _ = build(config)
    ckpt = save_checkpoint(tmp_path / "m.npz", Checkpoint(
        config, {"name": TINY, "w_dim": G.w_dim, "num_ws": G.num_ws}, net))
    out = tmp_path / "out"
    code = run_cli(["invert", str(photos["face"]), "--out", str(out), "--steps", "1", "--size",
                    "64", "--model", TINY, "--device", "cpu", "--space", "w", "--init",
                    "encoder", "--mapping", str(ckpt), "--json"])
    assert code == 0, capsys.readouterr().err
    assert load_inversion(out / "face_face0").settings["init"] == "encoder"
