"""Every face in a photo: FaceAnalyzer.locate_faces, score_files(all_faces=True) and
`facelatent score --all-faces`.

Fast tests use a stand-in detector that reports faces at known boxes in a shuffled order, so
they check the plumbing (order, indices, boxes, one row per bad input) without model files.
Slow tests run the real YuNet on composites built from LFW photos (read in place from
../shared), so the true faces and their places are known.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_file
from PIL import Image
from torch import nn

from facelatent.cli import main
from facelatent.faces import align, analysis
from facelatent.faces.detect import Detections, box_iou
from facelatent.faces.files import score_files
from facelatent.images import from_uint8, load_rgb

# ------------------------------------------------------------------ stand-in detector (fast)

# Boxes of the stand-in's faces in photos wider than tall, as fractions of (w, h, w, h), in the
# order it reports them (by "score"), which is not left to right.
WIDE_BOXES = ((0.70, 0.30, 0.95, 0.80), (0.05, 0.20, 0.30, 0.70), (0.35, 0.20, 0.65, 0.85))


def _face_at(box: torch.Tensor) -> torch.Tensor:
    """The average FFHQ face's five points placed in ``box`` (x0, y0, x1, y1): [5, 2]."""
    unit = align.arcface5_from_landmarks68(align.generated_landmarks68(torch.zeros(1, 3, 1, 1)))
    unit = (unit[0] + 0.5)      # fractions of a 1-pixel image, back to fractions of the side
    return box[:2] + unit * (box[2:] - box[:2])


class ShuffledFacesDetector(nn.Module):
    """Stand-in for YuNet: no face in dark photos (mean below -0.5), three faces at
    :data:`WIDE_BOXES` in photos wider than tall, one face in the others."""

    def detect(self, images: list[torch.Tensor]) -> list[Detections]:
        out = []
        for im in images:
            h, w = im.shape[-2:]
            if float(im.mean()) < -0.5:
                out.append(Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)))
                continue
            fractions = WIDE_BOXES if w > h else ((0.2, 0.2, 0.8, 0.9),)
            boxes = torch.tensor(fractions) * torch.tensor([w, h, w, h])
            points = torch.stack([_face_at(b) for b in boxes])
            scores = torch.linspace(0.95, 0.7, len(boxes))
            out.append(Detections(boxes, scores, points))
        return out


def _loaders() -> dict[str, object]:
    return {**analysis.random_face_loaders(), "yunet": ShuffledFacesDetector}


@pytest.fixture(scope="module")
def stub_analyzer() -> analysis.FaceAnalyzer:
    return analysis.FaceAnalyzer(batch_size=2, loaders=_loaders())  # type: ignore[arg-type]


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    low = g.integers(60, 200, size=(4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(low).resize((w, h), Image.BILINEAR))


def write_batch(folder: Path) -> list[Path]:
    """A group photo, a dark photo, a corrupt file, a CMYK JPEG, a 16-bit PNG, a portrait."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / n for n in ("a_group.png", "b_dark.png", "c_corrupt.jpg", "d_cmyk.jpg",
                                  "e_grey16.png", "f_portrait.png")]
    Image.fromarray(_photo(120, 300, 1)).save(paths[0])
    Image.fromarray(np.full((80, 80, 3), 8, np.uint8)).save(paths[1])
    paths[2].write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    Image.fromarray(_photo(100, 240, 2)).convert("CMYK").save(paths[3])
    grey = _photo(110, 90, 3)[..., 0].astype(np.uint16) * 257
    Image.fromarray(grey).save(paths[4])
    Image.fromarray(_photo(128, 96, 4)).save(paths[5])
    assert Image.open(paths[3]).mode == "CMYK" and Image.open(paths[4]).mode == "I;16"
    return paths


def test_locate_faces_orders_every_face_left_to_right(stub_analyzer) -> None:
    wide, dark, tall = (torch.rand(3, 100, 200) * 0.5, torch.full((3, 64, 64), -0.9),
                        torch.rand(3, 90, 60) * 0.5)
    geom, owner = stub_analyzer.locate_faces([wide, dark, tall])
    assert owner.tolist() == [0, 0, 0, 2]
    assert geom.found.all() and geom.detection_boxes is not None
    expected = torch.tensor(sorted(WIDE_BOXES)) * torch.tensor([200, 100, 200, 100])
    assert torch.allclose(geom.detection_boxes[:3], expected)
    assert geom.detection_score is not None
    assert geom.detection_score[:3].tolist() == pytest.approx([0.825, 0.7, 0.95])
    assert torch.isfinite(geom.points68).all() and geom.points68.shape == (4, 68, 2)
    # Each face's landmarks were read in its own box, not all in the largest face's.
    net = stub_analyzer.model("landmarks68")
    own = net.landmarks(wide[None], align.landmark_box_from_detection(expected))
    assert torch.allclose(geom.points68[:3], own, atol=1e-4)
    # The default still picks one (the largest) face per photo.
    one = stub_analyzer.locate([wide, dark, tall])
    assert one.found.tolist() == [True, False, True]
    assert torch.allclose(one.detection_boxes[0], expected[1])


def test_score_files_all_faces_gives_a_row_per_face_and_per_bad_input(tmp_path,
                                                                      stub_analyzer) -> None:
    paths = write_batch(tmp_path)
    rows = score_files(paths, "age,yaw", analyzer=stub_analyzer, all_faces=True)
    names = [Path(str(r["path"])).name for r in rows]
    assert names == ["a_group.png"] * 3 + [p.name for p in paths[1:4]] + ["d_cmyk.jpg"] * 2 + [
        "e_grey16.png", "f_portrait.png"]
    by_file: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        by_file.setdefault(Path(str(r["path"])).name, []).append(r)
    for name, count in (("a_group.png", 3), ("d_cmyk.jpg", 3), ("e_grey16.png", 1),
                        ("f_portrait.png", 1)):
        faces = by_file[name]
        assert [r["face_index"] for r in faces] == list(range(count)), name
        lefts = [r["box"][0] for r in faces]                        # type: ignore[index]
        assert lefts == sorted(lefts), name
        for r in faces:
            assert r["face"] is True and "error" not in r
            assert math.isfinite(r["age"]) and 0 < r["detection_score"] <= 1  # type: ignore
            assert len(r["box"]) == 4                                # type: ignore[arg-type]
    assert by_file["a_group.png"][0]["box"] == pytest.approx([15.0, 24.0, 90.0, 84.0])
    assert by_file["b_dark.png"] == [{"path": str(paths[1]), "face": False,
                                      "error": "no face found"}]
    assert "cannot read image" in str(by_file["c_corrupt.jpg"][0]["error"])
    assert by_file["c_corrupt.jpg"][0]["face"] is False


def test_score_files_default_keeps_one_row_per_photo(tmp_path, stub_analyzer) -> None:
    paths = write_batch(tmp_path)
    rows = score_files(paths, "age", analyzer=stub_analyzer)
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    assert all("face_index" not in r and "box" not in r for r in rows)
    with pytest.raises(ValueError, match="all_faces=True .* generated=True"):
        score_files(paths, "age", analyzer=stub_analyzer, all_faces=True, generated=True)


def test_score_cli_all_faces_json_csv_and_table(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(analysis, "_default_loaders", _loaders)
    paths = write_batch(tmp_path)
    args = ["score", str(paths[0]), str(paths[1]), "--attributes", "age", "--all-faces"]
    assert main([*args, "--json"]) == 1           # the dark photo is an error
    rows = json.loads(capsys.readouterr().out)
    assert [r.get("face_index") for r in rows] == [0, 1, 2, None]
    assert [len(r["box"]) for r in rows[:3]] == [4, 4, 4] and rows[3]["error"] == "no face found"

    assert main([*args, "--csv"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "path,face,face_index,box,detection_score,age,error"
    assert lines[1].split(",")[2:4] == ["0", "15.0 24.0 90.0 84.0"]
    assert lines[4].endswith(",False,,,,,no face found")

    assert main(args) == 1
    table = capsys.readouterr().out.splitlines()
    assert "face" in table[0] and "box (x0 y0 x1 y1)" in table[0]
    assert table[1].split()[1:6] == ["0", "15", "24", "90", "84"]
    assert table[3].split()[1] == "2" and "error: no face found" in table[4]


# ------------------------------------------------------------- real YuNet on LFW composites

LFW = "datasets/lfw/deepfunneled250"
# The face box (x0, y0, x1, y1) in the centre crop [50:200, 55:195] of a deep-funneled LFW
# photo: the mean of YuNet's boxes on 30 such crops (their corners vary by about 10 px).
LFW_CROP = (50, 200, 55, 195)
LFW_FACE = torch.tensor([22.0, 17.0, 117.0, 137.0])


def lfw_tile(file: str, width: float, gain: float = 1.0, degrees: float = 0.0,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre crop of an LFW photo scaled so its face is ``width`` px wide, its brightness
    times ``gain``, turned by ``degrees`` (clockwise on screen) about its centre: ``([3, h, w]
    in [-1, 1], face box [4])``; the box of a turned face is its turned box's bounding box."""
    person = file.rsplit("_", 1)[0]
    y0, y1, x0, x1 = LFW_CROP
    image = from_uint8(load_rgb(shared_file(f"{LFW}/{person}/{file}"))[None])[:, :, y0:y1, x0:x1]
    scale = width / float(LFW_FACE[2] - LFW_FACE[0])
    h, w = round((y1 - y0) * scale), round((x1 - x0) * scale)
    image = F.interpolate(image, size=(h, w), mode="bilinear", antialias=True,
                          align_corners=False)
    box = LFW_FACE * torch.tensor([w / (x1 - x0), h / (y1 - y0)] * 2)
    if degrees:
        a = math.radians(degrees)
        cos, sin = math.cos(a), math.sin(a)
        # affine_grid maps output to input in normalised units; the aspect ratio keeps it a
        # rotation in pixels.
        theta = torch.tensor([[[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]]])
        grid = F.affine_grid(theta, [1, 3, h, w], align_corners=False)
        image = F.grid_sample(image, grid, padding_mode="border", align_corners=False)
        centre = torch.tensor([w / 2, h / 2])
        corners = torch.tensor([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]],
                                [box[2], box[3]]]) - centre
        turned = corners @ torch.tensor([[cos, -sin], [sin, cos]]) + centre
        box = torch.cat([turned.min(0).values, turned.max(0).values])
    return ((image[0] + 1) * gain - 1).clamp(-1, 1), box


Spec = tuple[str, float, float, float, tuple[int, int]]   # file, width, gain, degrees, (x, y)


def composite(specs: list[Spec], size: tuple[int, int], noise: float, seed: int = 0,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiles pasted at (x, y) on a grey canvas ``size`` (h, w) with uniform noise of ``noise``:
    ``([3, h, w], true face boxes [K, 4] in the order of specs)``."""
    g = torch.Generator().manual_seed(seed)
    canvas = (torch.rand(3, *size, generator=g) - 0.5) * noise
    boxes = []
    for file, width, gain, degrees, (x, y) in specs:
        tile, box = lfw_tile(file, width, gain, degrees)
        h, w = tile.shape[-2:]
        canvas[:, y:y + h, x:x + w] = tile
        boxes.append(box + torch.tensor([x, y, x, y]))
    return canvas, torch.stack(boxes)


GROUPS: dict[str, tuple[list[Spec], tuple[int, int], float]] = {
    # Five people, faces 60 to 250 px wide, one darkened, one brightened, one turned 12 degrees,
    # listed out of left-to-right order, on a noisy canvas.
    "five": ([("Bill_Clinton_0002.jpg", 250, 1.0, 0.0, (420, 120)),
              ("Emma_Watson_0002.jpg", 60, 1.0, 0.0, (60, 300)),
              ("AJ_Lamas_0001.jpg", 120, 0.45, 0.0, (220, 60)),
              ("Gregorio_Honasan_0001.jpg", 90, 1.0, 12.0, (860, 350)),
              ("Irina_Yatchenko_0001.jpg", 170, 1.5, 0.0, (1100, 100))], (640, 1400), 0.3),
    # Three people on a flat grey canvas, one dark and turned the other way, one large.
    "three": ([("Kristin_Davis_0001.jpg", 200, 1.0, 0.0, (520, 40)),
               ("Jamie_Cooke_0001.jpg", 80, 0.6, -10.0, (40, 200)),
               ("Lena_Olin_0001.jpg", 110, 1.25, 0.0, (250, 120))], (480, 900), 0.0),
}


@pytest.fixture(scope="module")
def real_analyzer() -> analysis.FaceAnalyzer:
    return analysis.FaceAnalyzer()


def _matches(found: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """IoU of each found box with the true box in the same left-to-right place."""
    order = torch.argsort((truth[:, 0] + truth[:, 2]) / 2)
    return [float(box_iou(f, truth[k][None])[0]) for f, k in zip(found, order)]


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_real_yunet_finds_every_face_of_a_composite_in_order(real_analyzer, group) -> None:
    specs, size, noise = GROUPS[group]
    canvas, truth = composite(specs, size, noise)
    geom, owner = real_analyzer.locate_faces([canvas])
    assert geom.detection_boxes is not None
    assert len(owner) == len(specs), geom.detection_boxes      # every face, nothing else
    ious = _matches(geom.detection_boxes, truth)
    assert min(ious) > 0.5, ious


@pytest.mark.slow
def test_real_score_all_faces_on_composite_files(tmp_path, real_analyzer) -> None:
    specs, size, noise = GROUPS["five"]
    canvas, truth = composite(specs, size, noise)
    group = tmp_path / "group.png"
    Image.fromarray(((canvas.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
                    ).save(group)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))
    rows = score_files([group, tmp_path / "broken.jpg"], "age,gender", analyzer=real_analyzer,
                       all_faces=True)
    assert [r.get("face_index") for r in rows] == [0, 1, 2, 3, 4, None]
    ious = _matches(torch.tensor([r["box"] for r in rows[:5]]), truth)
    assert min(ious) > 0.5, ious
    # Left to right: Emma Watson (a girl) is face 0, Bill Clinton face 2, Irina Yatchenko 4.
    assert rows[0]["gender"] < 0.5 < rows[2]["gender"], rows           # type: ignore[operator]
    assert "cannot read image" in str(rows[5]["error"])


@pytest.mark.slow
def test_real_yunet_misses_a_face_below_its_reach(tmp_path, real_analyzer) -> None:
    """YuNet reads a photo scaled to 640 px on its longer side. A face 12 px wide in a 1280 px
    photo (6 px there) is not found: beside a normal face only that one is reported, and a
    photo holding only the tiny face gives one row, "no face found"."""
    tiny = ("AJ_Lamas_0001.jpg", 12, 1.0, 0.0, (300, 300))
    normal = ("Lena_Olin_0001.jpg", 120, 1.0, 0.0, (800, 200))
    both, truth = composite([tiny, normal], (640, 1280), 0.3)
    geom, owner = real_analyzer.locate_faces([both])
    assert len(owner) == 1 and geom.detection_boxes is not None
    assert float(box_iou(geom.detection_boxes[0], truth[1:])[0]) > 0.5
    alone, _ = composite([tiny], (640, 1280), 0.3)
    path = tmp_path / "tiny_face.png"
    Image.fromarray(((alone.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
                    ).save(path)
    assert score_files([path], "age", analyzer=real_analyzer, all_faces=True) == [
        {"path": str(path), "face": False, "error": "no face found"}]
