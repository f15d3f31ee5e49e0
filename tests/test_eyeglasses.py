"""Eyeglasses classifier: the PyTorch port, its crops, and (slow) the real TFLite weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.faces.eyeglasses import (
    CROP_SIZE, FFHQ_EYE_BOX_1024, EyeglassesClassifier, crop_boxes, eye_box_from_eyes,
    eye_box_from_landmarks68, ffhq_eye_boxes, tf_same_padding,
)

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "glasses_photos"


@pytest.fixture(scope="module")
def random_model() -> EyeglassesClassifier:
    torch.manual_seed(0)
    return EyeglassesClassifier().eval()


# --- fast: random weights ---------------------------------------------------------------------

def test_tf_same_padding_puts_the_odd_pixel_after() -> None:
    assert tf_same_padding(64, 3, 2) == (0, 1)
    assert tf_same_padding(65, 3, 2) == (1, 1)
    assert tf_same_padding(8, 3, 1) == (1, 1)
    assert tf_same_padding(8, 1, 1) == (0, 0)


def test_forward_shape_and_batched_equals_one_by_one(random_model: EyeglassesClassifier) -> None:
    crops = torch.rand(5, 3, *CROP_SIZE, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        batched = random_model(crops)
        single = torch.cat([random_model(c[None]) for c in crops])
    assert batched.shape == (5,)
    assert torch.allclose(batched, single, atol=1e-5, rtol=0)


def test_score_is_minus_logit_of_the_fixed_box_crop(random_model: EyeglassesClassifier) -> None:
    images = torch.rand(3, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        scores = random_model.score(images)
        crops = crop_boxes(images, ffhq_eye_boxes(images))
        logits = random_model((crops + 1) * 127.5)
    assert scores.shape == (3,)
    assert torch.allclose(scores, -logits, atol=1e-6)


def test_score_is_differentiable(random_model: EyeglassesClassifier) -> None:
    images = (torch.rand(2, 3, 128, 128) * 1.6 - 0.8).requires_grad_(True)
    random_model.score(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 3, 64, 64) * 255, r"crops must have shape \[N, 3, 64, 128\]"),
    (torch.rand(3, 64, 128) * 255, r"crops must have shape"),
    (torch.full((1, 3, 64, 128), float("nan")), r"crops holds NaN"),
    (torch.zeros(1, 3, 64, 128, dtype=torch.uint8), r"crops must be a float tensor"),
])
def test_forward_rejects_bad_crops(random_model: EyeglassesClassifier, bad: torch.Tensor,
                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        random_model(bad)


def test_score_rejects_bad_input(random_model: EyeglassesClassifier) -> None:
    with pytest.raises(ValueError, match=r"images must have shape \[N, 3, H, W\]"):
        random_model.score(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="images holds NaN"):
        random_model.score(torch.full((1, 3, 64, 64), float("nan")))
    with pytest.raises(ValueError, match=r"images must be float RGB in \[-1, 1\].*127.5"):
        random_model.score(torch.full((1, 3, 64, 64), 200.0))
    images = torch.zeros(2, 3, 64, 64)
    with pytest.raises(ValueError, match=r"boxes must have shape \[2, 4\]"):
        random_model.score(images, torch.zeros(1, 4))
    with pytest.raises(ValueError, match="right > left"):
        random_model.score(images, torch.tensor([[10.0, 10, 5, 20], [0, 0, 8, 8]]))
    with pytest.raises(ValueError, match="boxes must be finite"):
        random_model.score(images, torch.tensor([[0.0, 0, float("nan"), 8], [0, 0, 8, 8]]))


def test_fixed_box_scales_with_the_image() -> None:
    boxes = ffhq_eye_boxes(torch.zeros(2, 3, 256, 512))
    assert boxes.shape == (2, 4)
    x0, y0, x1, y1 = FFHQ_EYE_BOX_1024
    expected = torch.tensor([x0 / 2, y0 / 4, x1 / 2, y1 / 4])
    assert torch.allclose(boxes, expected.expand(2, 4))


def test_crop_maps_pixel_centres_with_half_pixel_offsets() -> None:
    # An image whose value is its x coordinate (pixel centres at integers): a crop of box
    # [left, right) resampled to 128 columns must read x = left + (j + 0.5) * w / 128 - 0.5.
    h, w = 100, 300
    xs = torch.arange(w, dtype=torch.float32).expand(1, 3, h, w).clone()
    ys = torch.arange(h, dtype=torch.float32)[:, None].expand(1, 3, h, w).clone()
    box = torch.tensor([[40.0, 20.0, 296.0, 52.0]])  # 256 x 32: 2x down in x, 2x up in y
    j = torch.arange(128, dtype=torch.float32)
    i = torch.arange(64, dtype=torch.float32)
    cx = crop_boxes(xs, box)[0, 0]
    cy = crop_boxes(ys, box)[0, 0]
    assert torch.allclose(cx[0], 40 + (j + 0.5) * 2 - 0.5, atol=1e-3)
    assert torch.allclose(cy[:, 0], 20 + (i + 0.5) * 0.5 - 0.5, atol=1e-3)
    # Whole image, same size: the identity.
    img = torch.rand(1, 3, 64, 128)
    same = crop_boxes(img, torch.tensor([[0.0, 0.0, 128.0, 64.0]]))
    assert torch.allclose(same, img, atol=1e-5)


def test_eye_box_from_landmarks68_on_hand_made_points() -> None:
    pts = torch.zeros(1, 68, 2)
    pts[:, :, 0], pts[:, :, 1] = 150.0, 150.0  # everything else sits inside the box
    pts[0, 17:27, 0] = torch.linspace(100, 190, 10)             # eyebrows span x 100..190
    pts[0, 17:27, 1] = torch.tensor([60.0, 55, 52, 54, 58, 58, 53, 50, 56, 61])
    pts[0, 31:36, 0] = torch.tensor([130.0, 140, 145, 150, 160])  # nose-tip row
    pts[0, 31:36, 1] = torch.tensor([118.0, 121, 123, 121, 119])
    box = eye_box_from_landmarks68(pts)
    assert torch.allclose(box, torch.tensor([[100 - 30.0, 50.0, 190 + 30.0, 123.0]]))
    with pytest.raises(ValueError, match=r"points must have shape \[N, 68, 2\]"):
        eye_box_from_landmarks68(torch.zeros(68, 2))


def test_eye_box_from_eyes_reproduces_the_fixed_box_on_ffhq_eyes() -> None:
    from facelatent.faces.eyeglasses import FFHQ_EYE_CENTRES_1024
    eyes = torch.tensor([FFHQ_EYE_CENTRES_1024])
    assert torch.allclose(eye_box_from_eyes(eyes), torch.tensor([FFHQ_EYE_BOX_1024]), atol=1e-3)
    # Half the size, shifted: the box follows; eye order does not matter.
    moved = eyes.flip(1) / 2 + torch.tensor([10.0, 20.0])
    expected = torch.tensor([FFHQ_EYE_BOX_1024]) / 2 + torch.tensor([10.0, 20.0, 10.0, 20.0])
    assert torch.allclose(eye_box_from_eyes(moved), expected, atol=1e-3)


# --- slow: the real weights -------------------------------------------------------------------

def _reference_logits(path: Path, crops_nhwc: np.ndarray) -> np.ndarray:
    """The TFLite interpreter's logits, float32 builtin kernels (no XNNPACK delegate)."""
    interp_mod = pytest.importorskip("ai_edge_litert.interpreter")
    interp = interp_mod.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.float32
    logits = []
    for crop in crops_nhwc.astype(np.float32):
        interp.set_tensor(inp["index"], crop[None])
        interp.invoke()
        logits.append(float(interp.get_tensor(out["index"]).reshape(-1)[0]))
    return np.array(logits)


@pytest.fixture(scope="module")
def model_path() -> Path:
    from facelatent.weights import file_path
    return file_path("eyeglasses-mobilenetv3", "fp16_model.tflite")


@pytest.fixture(scope="module")
def real_model(model_path: Path) -> EyeglassesClassifier:
    return EyeglassesClassifier.from_tflite(model_path)


def _photo_files(sub: str) -> list[Path]:
    if not PHOTOS.is_dir():
        pytest.skip(f"glasses photo fixtures not found at {PHOTOS} (shared/fixtures beside "
                    "the checkout)")
    return sorted((PHOTOS / sub).glob("*.jpg"), key=lambda p: int(p.stem))


@pytest.mark.slow
def test_port_matches_tflite_on_random_crops(real_model: EyeglassesClassifier,
                                             model_path: Path) -> None:
    crops = np.random.default_rng(0).uniform(0, 255, (8, *CROP_SIZE, 3)).astype(np.float32)
    expected = _reference_logits(model_path, crops)
    with torch.no_grad():
        got = real_model(torch.from_numpy(crops).permute(0, 3, 1, 2)).numpy()
    assert np.abs(got - expected).max() <= 1e-3


@pytest.mark.slow
def test_port_matches_tflite_on_real_crops(real_model: EyeglassesClassifier,
                                           model_path: Path) -> None:
    from facelatent.images import from_uint8, load_rgb
    files = _photo_files("with_glasses")[:2] + _photo_files("without_glasses")[:2]
    crops = []
    for f in files:
        img = from_uint8(load_rgb(f)[None])
        h, w = img.shape[-2:]
        box = torch.tensor([[0.1 * w, 0.25 * h, 0.9 * w, 0.55 * h]])
        crops.append((crop_boxes(img, box) + 1) * 127.5)
    crops_t = torch.cat(crops)
    expected = _reference_logits(model_path, crops_t.permute(0, 2, 3, 1).numpy())
    with torch.no_grad():
        got = real_model(crops_t).numpy()
    assert np.abs(got - expected).max() <= 1e-3
    assert np.abs(expected).max() > 1.0  # real crops give confident logits, not ~0


def _photo_eye_box(rgb: np.ndarray, detector: object, predictor: object) -> torch.Tensor:
    """dlib HOG face (largest; upsampled 1x, then 2x if none) -> 5 points -> eye box."""
    faces = detector(rgb, 1) or detector(rgb, 2)
    if not faces:
        pytest.fail("dlib found no face")
    face = max(faces, key=lambda r: r.area())
    pts = np.array([[p.x, p.y] for p in predictor(rgb, face).parts()], dtype=np.float32)
    eyes = torch.from_numpy(np.stack([pts[0:2].mean(0), pts[2:4].mean(0)]))[None]
    return eye_box_from_eyes(eyes)


@pytest.mark.slow
def test_real_photos_with_glasses_rank_above_those_without(
        real_model: EyeglassesClassifier) -> None:
    dlib = pytest.importorskip("dlib")
    from facelatent.images import from_uint8, load_rgb
    from facelatent.weights import file_path
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        str(file_path("dlib-models", "shape_predictor_5_face_landmarks.dat")))
    scores: dict[str, dict[str, float]] = {}
    for sub in ("with_glasses", "without_glasses"):
        scores[sub] = {}
        for f in _photo_files(sub):
            rgb = load_rgb(f)
            with torch.no_grad():
                s = real_model.score(from_uint8(rgb[None]), _photo_eye_box(rgb, detector, predictor))
            scores[sub][f.name] = float(s)
    pos, neg = scores["with_glasses"], scores["without_glasses"]
    assert len(pos) == len(neg) == 20
    misses = [(p, n) for p, sp in pos.items() for n, sn in neg.items() if sp <= sn]
    assert not misses, f"with-glasses photos not above without-glasses ones: {misses}"
    # Measured: with-glasses >= 3.4, without <= -1.5; every photo on the right side of 0.
    assert min(pos.values()) > 0 > max(neg.values())
    assert min(pos.values()) - max(neg.values()) > 3.0
