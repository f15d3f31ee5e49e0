"""FFHQ alignment of photos that keeps its transform, and pasting an aligned face back:
facelatent.faces.photo_align (re-exported from facelatent.faces.align).

Fast tests work on synthetic photos: a linear ramp, which bilinear resampling reproduces
exactly, so any error in the geometry shows; and a stand-in detector for align_photo_faces.
Slow tests measure the round trip on the package's real test photos and on an LFW composite.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_photos_faces import GROUPS, ShuffledFacesDetector, composite

from facelatent.faces import align, analysis
from facelatent.faces.photo_align import FFHQTransform, align_photo_faces, face_mask, paste_back
from facelatent.images import from_uint8, load_rgb
from facelatent.io import load_npz, save_npz


def ramp_photo(h: int = 600, w: int = 500) -> torch.Tensor:
    """[3, h, w] in [-0.8, 0.5]: each channel linear in x and y."""
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.stack([xs / w * 1.3 - 0.8, ys / h * 1.3 - 0.8, (xs + ys) / (h + w) - 0.5])


def turned_points(degrees: float = 20.0, cx: float = 250.0, cy: float = 280.0,
                  scale: float = 1.0) -> torch.Tensor:
    """Five points [1, 5, 2] of an upright face (eyes 80 px apart) turned by ``degrees``."""
    a = math.radians(degrees)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    base = torch.tensor([[-40.0, -20.0], [40.0, -20.0], [0.0, 10.0], [-30.0, 50.0], [30.0, 50.0]])
    return (base * scale @ rot.T + torch.tensor([cx, cy]))[None]


def weight_in_photo(photo: torch.Tensor, transform: FFHQTransform) -> torch.Tensor:
    """paste_back's blend weight at every photo pixel: [H, W] in [0, 1]."""
    ones = torch.ones(3, transform.size, transform.size)
    return (paste_back(torch.full_like(photo, -1.0), ones, transform)[0] + 1) / 2


# ------------------------------------------------------------------------------ the transform

def test_ffhq_align_returns_the_transform_of_each_face() -> None:
    photo = ramp_photo()
    points = torch.cat([turned_points(20.0), turned_points(-5.0, 150.0, 200.0, 0.5)])
    crops, transforms = align.ffhq_align(photo.expand(2, -1, -1, -1), points, 128,
                                         return_transform=True)
    assert crops.shape == (2, 3, 128, 128) and len(transforms) == 2
    for k, t in enumerate(transforms):
        assert isinstance(t, align.FFHQTransform)
        assert t.size == 128 and t.photo_size == (500, 600)
        assert np.allclose(t.quad, align.ffhq_quad(points)[k].numpy(), atol=1e-4)
    t = transforms[0]
    assert t.side == pytest.approx(320.0, abs=1e-3)     # half side max(2 * 80, 1.8 * 70) = 160
    # The crop's corner pixel centres are half a pixel inside the quad's corners, and the
    # mapping and its inverse agree.
    corner = t.to_photo(torch.tensor([[-0.5, -0.5], [127.5, 127.5]]))
    assert torch.allclose(corner, torch.tensor([t.quad[0], t.quad[2]]), atol=1e-3)
    pts = torch.rand(10, 2) * 400
    assert torch.allclose(t.to_photo(t.to_crop(pts)), pts, atol=1e-3)
    assert torch.allclose(t.to_crop(pts, 1024), (t.to_crop(pts) + 0.5) * 8 - 0.5, atol=1e-3)
    # Without return_transform the crops alone, as before.
    assert torch.equal(align.ffhq_align(photo[None], points[:1], 128), crops[:1])


def test_transform_round_trips_through_npz_and_json(tmp_path) -> None:
    _, (t,) = align.ffhq_align(ramp_photo()[None], turned_points(), 256, return_transform=True)
    array = t.to_array()
    assert array.shape == (11,) and array.dtype == np.float64
    save_npz(tmp_path / "latents.npz", {"transform": array}, format="test")
    assert FFHQTransform.from_array(load_npz(tmp_path / "latents.npz")["transform"]) == t
    text = json.dumps(t.to_json())
    assert json.loads(text)["kind"] == "ffhq_quad"
    assert FFHQTransform.from_json(text) == FFHQTransform.from_json(json.loads(text)) == t
    assert FFHQTransform.from_array(torch.from_numpy(array)) == t


@pytest.mark.parametrize("bad, match", [
    (np.zeros(10), r"shape \[11\]"),
    (np.r_[np.zeros(8), 256, 500, 600], "no area"),
    (np.r_[[0, 0, 0, 10, 10, 10, 10, 0], 256.5, 500, 600], "whole-pixel"),
    (np.r_[[0, 0, 0, 10, 10, 10, 10, 0], 4, 500, 600], "size must be an int >= 8"),
    (np.r_[[0, 0, 0, 10, 10, 10, np.nan, 0], 256, 500, 600], "finite"),
])
def test_bad_transform_arrays_are_refused(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FFHQTransform.from_array(bad)


def test_bad_transform_json_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks photo_size"):
        FFHQTransform.from_json({"quad": [[0, 0], [0, 9], [9, 9], [9, 0]], "size": 64})
    with pytest.raises(ValueError, match="kind 'ffhq_quad'"):
        FFHQTransform.from_json({"kind": "arcface"})


# ------------------------------------------------------------------------------- paste-back

@pytest.mark.parametrize("size", [64, 256, 1024])
def test_paste_back_of_the_unchanged_crop_reproduces_the_photo(size: int) -> None:
    """A linear ramp survives both bilinear resamplings exactly, so what is left is the
    geometry's error; every pixel the blend does not touch keeps its exact value."""
    photo = ramp_photo()
    crops, (t,) = align.ffhq_align(photo[None], turned_points(), size, return_transform=True)
    out = paste_back(photo, crops[0], t)
    weight = weight_in_photo(photo, t)
    assert (out - photo).abs()[:, weight > 0].max() < 1e-3
    assert torch.equal(out[:, weight == 0], photo[:, weight == 0])
    # Half weight where the smoothstep is half way down the feather (0.2 of the radius): an
    # ellipse of radii 0.9 * (0.37, 0.395) of the quad's 320 px side.
    half = math.pi * (0.9 * 0.37 * 320) * (0.9 * 0.395 * 320)
    assert float((weight > 0.5).sum()) == pytest.approx(half, rel=0.01)


def test_paste_back_changes_only_the_masked_region() -> None:
    photo = ramp_photo()
    original = photo.clone()
    crops, (t,) = align.ffhq_align(photo[None], turned_points(), 256, return_transform=True)
    shifted = crops[0].clone()
    shifted[0] += 0.4                                   # redder: the ramp's red stays below 1
    out = paste_back(photo, shifted, t)
    assert torch.equal(photo, original)                 # the input is not changed
    weight = weight_in_photo(photo, t)
    change = out - photo
    assert torch.equal(change[:, weight == 0], torch.zeros_like(change[:, weight == 0]))
    full = weight == 1
    assert full.sum() > 20_000
    assert torch.allclose(change[0, full], torch.tensor(0.4), atol=1e-3)
    assert change[1:, full].abs().max() < 1e-3
    # In the feathered ring the change is the weight times the shift.
    ring = (weight > 0) & (weight < 1)
    assert torch.allclose(change[0, ring], 0.4 * weight[ring], atol=1e-3)
    # Outside the quad's bounding box nothing at all is touched.
    x0, y0 = (math.floor(v) for v in np.min(t.quad, axis=0))
    assert torch.equal(out[:, :y0], photo[:, :y0]) and torch.equal(out[:, :, :x0], photo[:, :, :x0])


def test_paste_back_takes_a_face_of_any_resolution_and_a_custom_mask() -> None:
    photo = ramp_photo()
    crops, (t,) = align.ffhq_align(photo[None], turned_points(), 256, return_transform=True)
    big = torch.nn.functional.interpolate(crops, size=(1024, 1024), mode="bilinear",
                                          align_corners=False)[0]
    weight = weight_in_photo(photo, t)
    out = paste_back(photo, big, t)
    assert (out - photo).abs()[:, weight > 0].max() < 2e-3
    # A mask that is 1 on the crop's left half changes the left half of the quad only.
    mask = torch.zeros(64, 64)
    mask[:, :32] = 1
    left = paste_back(photo, torch.ones(3, 64, 64), t, mask=mask)
    changed = (left != photo).any(0)
    ys, xs = torch.nonzero(changed, as_tuple=True)
    frac = t.fractions(torch.stack([xs, ys], dim=1).float())
    assert frac[:, 0].max() < 0.52 and frac[:, 0].min() > -0.02
    weight = ((left - photo) / (1 - photo))[0]          # the mask's weight at each pixel
    assert float((weight > 0.5).sum()) == pytest.approx(320**2 / 2, rel=0.01)


def test_paste_back_of_a_quad_past_the_photo_edge_and_bad_arguments() -> None:
    photo = ramp_photo(200, 240)
    crops, (t,) = align.ffhq_align(photo[None], turned_points(10.0, 20.0, 20.0), 64,
                                   return_transform=True)
    assert min(np.min(t.quad, axis=0)) < 0                 # partly outside the photo
    out = paste_back(photo, crops[0], t)
    # Exact away from the photo's edges; within about 1.5 crop pixels (8 photo px) of them the
    # area-averaged photo ends half a step early and its mirror is flat there.
    error = (out - photo).abs()
    assert error[:, 8:, 8:].max() < 1e-3 and error.max() < 0.02
    far = FFHQTransform(((1e4, 1e4), (1e4, 1e4 + 50), (1e4 + 50, 1e4 + 50), (1e4 + 50, 1e4)),
                        64, (240, 200))
    assert torch.equal(paste_back(photo, crops[0], far), photo)
    with pytest.raises(ValueError, match="photo is 500x600 but the transform .* 240x200"):
        paste_back(ramp_photo(), crops[0], t)
    with pytest.raises(ValueError, match="square"):
        paste_back(photo, crops[0][:, :, :60], t)
    with pytest.raises(ValueError, match="single images"):
        paste_back(photo, crops, t)
    with pytest.raises(ValueError, match=r"feather must be in \(0, 1\]"):
        paste_back(photo, crops[0], t, feather=0.0)
    with pytest.raises(ValueError, match="0-255"):
        paste_back(photo * 200, crops[0], t)


def test_face_mask_is_one_on_the_face_and_zero_on_the_border() -> None:
    m = face_mask(256)
    assert m.shape == (256, 256) and m.min() == 0 and m.max() == 1
    assert m[0].max() == 0 and m[-1].max() == 0 and m[:, 0].max() == 0 and m[:, -1].max() == 0
    # Brows, eyes, nose and mouth of the average FFHQ face are fully inside, the jaw nearly.
    points = align.generated_landmarks68(torch.zeros(1, 3, 256, 256))[0].round().long()
    weight = m[points[:, 1], points[:, 0]]
    assert bool((weight[17:] == 1).all()) and weight[1:16].min() > 0.9
    assert weight[[0, 16]].min() > 0.7


# ------------------------------------------------------------------------- align_photo_faces

@pytest.fixture(scope="module")
def stub_analyzer() -> analysis.FaceAnalyzer:
    loaders = {**analysis.random_face_loaders(), "yunet": ShuffledFacesDetector}
    return analysis.FaceAnalyzer(loaders=loaders)  # type: ignore[arg-type]


def test_align_photo_faces_every_face_or_one(stub_analyzer) -> None:
    wide = torch.rand(3, 100, 200) * 0.5
    crops, transforms = align_photo_faces(wide, size=32, analyzer=stub_analyzer)
    assert crops.shape == (3, 3, 32, 32) and len(transforms) == 3
    centres = [float(np.mean(t.quad, axis=0)[0]) for t in transforms]
    assert centres == sorted(centres)
    one, (t1,) = align_photo_faces(wide, face=1, size=32, analyzer=stub_analyzer)
    assert torch.equal(one[0], crops[1]) and t1 == transforms[1]
    with pytest.raises(ValueError, match=r"face=3 but the photo has 3 faces found \(0 to 2"):
        align_photo_faces(wide, face=3, size=32, analyzer=stub_analyzer)
    dark = torch.full((3, 64, 64), -0.9)
    none, empty = align_photo_faces(dark, size=32, analyzer=stub_analyzer)
    assert none.shape == (0, 3, 32, 32) and empty == []
    with pytest.raises(ValueError, match="photo has 0 faces"):
        align_photo_faces(dark, face=0, size=32, analyzer=stub_analyzer)
    with pytest.raises(ValueError, match="one image"):
        align_photo_faces(wide[None], analyzer=stub_analyzer)


# ------------------------------------------------------------------------------ real photos

@pytest.fixture(scope="module")
def real_analyzer() -> analysis.FaceAnalyzer:
    return analysis.FaceAnalyzer()


# Mean |error| (levels of 255) of align then paste-back inside the full-weight face region,
# measured: obama.jpg (face square 416 px) 4.01 at 256 and 2.24 at 1024; biden.jpg (476 px)
# 2.99 and 1.61. At 256 the crop holds less detail than the photo; at 1024 two bilinear
# resamplings (up, then back down through the area-averaged face) blur it slightly.
ROUND_TRIP_LIMIT = {256: 5.0, 1024: 3.0}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg"])
@pytest.mark.parametrize("size", [256, 1024])
def test_real_photo_round_trip_error(real_analyzer, name: str, size: int) -> None:
    from facelatent.weights import file_path

    photo = from_uint8(load_rgb(file_path("test-photos", name))[None])[0]
    crops, (t,) = align_photo_faces(photo, size=size, analyzer=real_analyzer)
    out = paste_back(photo, crops[0], t)
    weight = weight_in_photo(photo, t)
    error = (out - photo).abs()[:, weight == 1].mean() * 127.5
    assert error < ROUND_TRIP_LIMIT[size], float(error)
    assert torch.equal(out[:, weight == 0], photo[:, weight == 0])


@pytest.mark.slow
def test_every_face_of_a_composite_pastes_back_into_its_own_place(real_analyzer) -> None:
    specs, size, noise = GROUPS["five"]
    canvas, truth = composite(specs, size, noise)
    crops, transforms = align_photo_faces(canvas, size=256, analyzer=real_analyzer)
    assert len(transforms) == 5
    out = canvas
    for crop, t in zip(crops, transforms):
        out = paste_back(out, (crop + 0.5).clamp(-1, 1), t)     # every face brightened
    changed = (out != canvas).any(0)
    # Each face's box (in left-to-right order) is mostly changed; nothing far from any face is.
    near = torch.zeros_like(changed)
    for box in truth[torch.argsort((truth[:, 0] + truth[:, 2]) / 2)]:
        x0, y0, x1, y1 = (int(v) for v in box)
        inner = changed[y0 + (y1 - y0) // 4:y1 - (y1 - y0) // 4, x0 + (x1 - x0) // 4:
                        x1 - (x1 - x0) // 4]
        assert inner.float().mean() > 0.95
        w, h = x1 - x0, y1 - y0
        near[max(y0 - h // 2, 0):y1 + h // 2, max(x0 - w // 2, 0):x1 + w // 2] = True
    assert not changed[~near].any()
