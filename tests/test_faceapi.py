"""Tests of the face-api landmark and expression ports, their crops and their weight loader.

Fast tests use random weights and small manifests written to tmp_path; the crop is checked
against a straight-line numpy rendition of face-api's steps (clip and floor the box, cut, pad to
a square, tfjs' legacy bilinear resize). Slow tests use the real weights and photos: they
compare with numbers face-api 1.7.15 itself produced, and with native dlib's 68 landmarks, and
print the numbers they assert on.

The reference numbers in FACEAPI_JS were made by running ``@vladmandic/face-api@1.7.15``
(``dist/face-api.esm.js``, tfjs CPU backend, in Node 20) on the same photos as uint8 tensors:
``extractFaceTensors(image, [box])``, then ``faceLandmark68Net.detectLandmarks`` (positions
shifted by the box origin) and ``faceExpressionNet.predictExpressions``. The boxes are square,
so face-api's half-pixel padding convention (see facelatent.faces.faceapi) plays no part.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.errors import WeightsError
from facelatent.faces.faceapi import (
    DLIB_BOX_SCALE,
    DLIB_BOX_SHIFT,
    EXPRESSIONS,
    ExpressionNet,
    Landmark68Net,
    face_crop,
    landmark_box,
    scale_boxes,
)



@pytest.fixture(scope="module")
def landmark_net() -> Landmark68Net:
    torch.manual_seed(0)
    return Landmark68Net().eval()


@pytest.fixture(scope="module")
def expression_net() -> ExpressionNet:
    torch.manual_seed(1)
    return ExpressionNet().eval()


def random_images(n: int, height: int = 150, width: int = 200, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, height, width, generator=gen, dtype=torch.float64) * 2 - 1


# ------------------------------------------------------------------------------- crops, fast

def reference_crop(image: np.ndarray, box: tuple[float, float, float, float],
                   size: int = 112) -> np.ndarray:
    """face-api's steps on one ``[H, W, 3]`` image (0-255): -> ``[size, size, 3]``."""
    height, width = image.shape[:2]
    x, y = max(box[0], 0), max(box[1], 0)
    w, h = min(box[2] - x, width - x), min(box[3] - y, height - y)
    x, y, w, h = (math.floor(v) for v in (x, y, w, h))
    face = image[y:y + h, x:x + w]
    diff = abs(w - h)
    after = math.floor(diff / 2 + 0.5)                  # JS Math.round
    pad = [(0, 0), (0, 0), (0, 0)]
    pad[1 if h > w else 0] = (diff - after, after)
    square = np.pad(face, pad)
    side = square.shape[0]
    out = np.zeros((size, size, 3))
    for i in range(size):                               # tfjs resizeBilinear, legacy mode
        sy = i * side / size
        y0, y1 = math.floor(sy), min(math.ceil(sy), side - 1)
        for j in range(size):
            sx = j * side / size
            x0, x1 = math.floor(sx), min(math.ceil(sx), side - 1)
            top = square[y0, x0] + (square[y0, x1] - square[y0, x0]) * (sx - x0)
            bottom = square[y1, x0] + (square[y1, x1] - square[y1, x0]) * (sx - x0)
            out[i, j] = top + (bottom - top) * (sy - y0)
    return out


@pytest.mark.parametrize("box", [
    (40.0, 20.0, 140.0, 130.0),       # taller than wide, shrunk: odd padding split
    (30.7, 25.2, 150.9, 110.6),       # fractional, wider than tall
    (60.0, 50.0, 110.0, 100.0),       # 50 px square, enlarged to 112
    (-25.5, -10.0, 70.0, 90.0),       # clipped at the top-left corner
    (150.0, 100.0, 230.0, 170.0),     # clipped at the bottom-right corner
])
def test_crop_matches_faceapi_steps(box: tuple[float, float, float, float]) -> None:
    images = random_images(1)
    crops, _ = face_crop(images, torch.tensor([box], dtype=torch.float64))
    pixels = ((images[0] + 1) * 127.5).permute(1, 2, 0).numpy()
    expected = reference_crop(pixels, box) / 127.5 - 1
    np.testing.assert_allclose(crops[0].permute(1, 2, 0).numpy(), expected, atol=1e-9)


def test_crop_transform_maps_back_to_the_image() -> None:
    """A bright pixel in the image lands on the crop pixel that maps back onto it."""
    images = -torch.ones(2, 3, 300, 400, dtype=torch.float64)
    spots = [(123, 87), (250, 199)]
    for i, (x, y) in enumerate(spots):
        images[i, :, y, x] = 1.0
    boxes = torch.tensor([[60.0, 40.0, 200.0, 150.0], [220.0, 150.0, 276.0, 220.0]],
                         dtype=torch.float64)           # shrunk 140 -> 112; enlarged 70 -> 112
    crops, transform = face_crop(images, boxes)
    for i, (x, y) in enumerate(spots):
        row, col = divmod(int(crops[i, 0].argmax()), 112)
        found = transform.to_image(torch.tensor([[[col / 112, row / 112]]],
                                                dtype=torch.float64))[i, 0]
        step = float(transform.side[i]) / 112
        assert abs(found[0] - x) <= step and abs(found[1] - y) <= step
    points = torch.rand(2, 5, 2, dtype=torch.float64)
    torch.testing.assert_close(transform.to_crop(transform.to_image(points)), points)


def test_one_image_serves_many_boxes() -> None:
    image = random_images(1)
    boxes = torch.tensor([[10.0, 10.0, 90.0, 100.0], [100.0, 30.0, 190.0, 140.0]],
                         dtype=torch.float64)
    shared, _ = face_crop(image, boxes)
    expanded, _ = face_crop(image.expand(2, -1, -1, -1), boxes)
    torch.testing.assert_close(shared, expanded)


def test_box_helpers() -> None:
    boxes = torch.tensor([[10.0, 20.0, 110.0, 70.0]])
    torch.testing.assert_close(scale_boxes(boxes, 1.5, 0.1),
                               torch.tensor([[-15.0, 12.5, 135.0, 87.5]]))
    points = torch.tensor([[[0.0, 0.0], [100.0, 50.0], [30.0, 20.0]]])
    torch.testing.assert_close(landmark_box(points), torch.tensor([[-10.0, -5.0, 110.0, 55.0]]))


# ----------------------------------------------------------------------------- networks, fast

def test_shapes_and_ranges(landmark_net: Landmark68Net, expression_net: ExpressionNet) -> None:
    crops = torch.rand(3, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        points = landmark_net(crops)
        probs = expression_net(crops)
    assert points.shape == (3, 68, 2) and points.dtype == torch.float32
    assert probs.shape == (3, len(EXPRESSIONS)) == (3, 7)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    torch.testing.assert_close(probs, torch.softmax(expression_net.logits(crops), 1))


def test_batched_equals_one_by_one(landmark_net: Landmark68Net,
                                   expression_net: ExpressionNet) -> None:
    images = random_images(4, seed=2).float()
    boxes = torch.tensor([[20.0, 10.0, 120.0, 130.0], [50.5, 40.0, 170.0, 140.5],
                          [-10.0, 30.0, 90.0, 160.0], [60.0, 60.0, 100.0, 100.0]])
    with torch.no_grad():
        points = landmark_net.landmarks(images, boxes)
        probs = expression_net.probabilities(images, boxes)
        single_points = torch.cat([landmark_net.landmarks(images[i:i + 1], boxes[i:i + 1])
                                   for i in range(4)])
        single_probs = torch.cat([expression_net.probabilities(images[i:i + 1], boxes[i:i + 1])
                                  for i in range(4)])
    assert points.shape == (4, 68, 2) and probs.shape == (4, 7)
    assert (points - single_points).abs().max() <= 1e-3          # pixels
    assert (probs - single_probs).abs().max() <= 1e-5


def test_gradients_reach_the_images(landmark_net: Landmark68Net,
                                    expression_net: ExpressionNet) -> None:
    images = random_images(2, seed=3).float().requires_grad_(True)
    boxes = torch.tensor([[20.0, 10.0, 120.0, 130.0], [50.0, 40.0, 170.0, 140.0]])
    loss = landmark_net.landmarks(images, boxes).sum() + expression_net.probabilities(
        images, boxes)[:, 1].sum()
    loss.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad[:, :, 10:130, 20:120].abs().sum() > 0
    assert images.grad[:, :, :5, :].abs().sum() == 0              # outside both boxes


def test_inputs_are_validated(landmark_net: Landmark68Net) -> None:
    with pytest.raises(ValueError, match="crops"):
        landmark_net(torch.zeros(1, 3, 150, 150))
    with pytest.raises(ValueError, match="crops"):
        landmark_net(torch.zeros(3, 112, 112))
    images = random_images(2).float()
    with pytest.raises(ValueError, match="boxes"):
        face_crop(images, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="one image per box"):
        face_crop(images, torch.tensor([[0.0, 0, 10, 10]] * 3))
    with pytest.raises(ValueError, match="no pixels inside"):
        face_crop(images, torch.tensor([[0.0, 0, 10, 10], [300.0, 0, 400, 100]]))
    with pytest.raises(ValueError, match="images"):
        face_crop(images[:, :1], torch.zeros(2, 4))


# ------------------------------------------------------------------------------- loader, fast

def tfjs_tensors(model: Landmark68Net | ExpressionNet) -> dict[str, np.ndarray]:
    """The model's parameters under face-api's names and layouts."""
    params = dict(model.named_parameters())
    inverse = {"hwio": (2, 3, 1, 0), "depthwise": (2, 3, 0, 1), "fc": (1, 0)}
    out = {}
    for tf_name, (name, layout) in model.tfjs_key_map().items():
        value = params[name].detach().numpy()
        out[tf_name] = value.transpose(inverse[layout]) if layout in inverse else value
    return out


def write_manifest(tensors: dict[str, np.ndarray], folder: Path) -> tuple[Path, Path]:
    manifest = [{"paths": ["model.bin"], "weights": [
        {"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in tensors.items()]}]
    (folder / "model.json").write_text(json.dumps(manifest))
    (folder / "model.bin").write_bytes(b"".join(v.astype("<f4").tobytes()
                                                for v in tensors.values()))
    return folder / "model.json", folder / "model.bin"


def test_tfjs_loader_maps_every_tensor(landmark_net: Landmark68Net,
                                       expression_net: ExpressionNet, tmp_path: Path) -> None:
    tensors = tfjs_tensors(landmark_net)
    assert len(tensors) == 49                          # as many as face-api's manifests hold
    assert tensors["dense1/conv0/depthwise_filter"].shape == (3, 3, 32, 1)
    assert tensors["dense1/conv0/pointwise_filter"].shape == (1, 1, 32, 64)
    assert tensors["fc/weights"].shape == (256, 136)
    loaded = Landmark68Net.from_tfjs(*write_manifest(tensors, tmp_path))
    crops = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(crops), landmark_net(crops))

    fresh = Landmark68Net()
    with pytest.raises(WeightsError, match="missing tensors.*dense2/conv3/bias"):
        fresh.load_tfjs_weights({k: v for k, v in tensors.items() if k != "dense2/conv3/bias"})
    with pytest.raises(WeightsError, match="unused tensors.*dense4/conv0/bias"):
        fresh.load_tfjs_weights(tensors | {"dense4/conv0/bias": np.zeros(3, np.float32)})
    # The landmark head (136 outputs) does not fit the expression net (7).
    with pytest.raises(WeightsError, match="fc/weights"):
        ExpressionNet().load_tfjs_weights(tensors)
    assert set(tfjs_tensors(expression_net)) == set(tensors)


# --------------------------------------------------------------------- real weights, slow

PHOTOS = [("test-photos", "obama.jpg"), ("test-photos", "obama2.jpg"),
          ("test-photos", "obama3.jpg"), ("test-photos", "biden.jpg"),
          ("skimage-photos", "astronaut.png")]

# name: (box x1, y1, x2, y2; face-api's 7 probabilities; its landmarks 8, 30, 36, 45, 48, 54)
FACEAPI_JS = {
    "obama.jpg": ((309, 142, 658, 491), (0.000000, 1.000000, 0.000000, 0.000000, 0.000000,
                                         0.000000, 0.000000),
                  ((493.71, 418.77), (496.51, 277.72), (422.88, 214.07), (563.99, 214.83),
                   (437.14, 320.34), (551.27, 319.05))),
    "obama2.jpg": ((131, 290, 479, 638), (0.002933, 0.017939, 0.000007, 0.891505, 0.003353,
                                          0.000999, 0.083264),
                   ((293.45, 626.49), (283.23, 449.59), (228.72, 370.12), (391.60, 385.50),
                    (243.49, 519.87), (352.15, 528.18))),
    "obama3.jpg": ((585, 277, 1003, 695), (0.462277, 0.527622, 0.008217, 0.000784, 0.000412,
                                           0.000592, 0.000096),
                   ((784.03, 611.59), (807.51, 441.58), (711.65, 386.33), (878.01, 405.41),
                    (736.18, 515.31), (846.44, 524.63))),
    "biden.jpg": ((371, 241, 789, 659), (0.367765, 0.005972, 0.624367, 0.001654, 0.000015,
                                         0.000183, 0.000043),
                  ((559.41, 561.60), (598.93, 404.09), (511.43, 320.29), (674.26, 355.85),
                   (521.27, 459.35), (630.07, 479.37))),
    "astronaut.png": ((161, 76, 280, 195), (0.000000, 1.000000, 0.000000, 0.000000, 0.000000,
                                            0.000000, 0.000000),
                      ((221.50, 177.36), (223.04, 127.82), (195.30, 100.16), (253.28, 103.27),
                       (201.99, 141.13), (244.79, 142.58))),
}


@pytest.fixture(scope="module")
def nets() -> tuple[Landmark68Net, ExpressionNet]:
    return Landmark68Net.load(), ExpressionNet.load()


@pytest.fixture(scope="module")
def real_faces() -> dict[str, dict[str, object]]:
    """Per photo: the image, its flipped copy, dlib's face box and dlib's 68 landmarks."""
    dlib = pytest.importorskip("dlib")
    from facelatent.images import from_uint8, load_rgb
    from facelatent.weights import file_path
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(file_path("dlib-models",
                                                   "shape_predictor_68_face_landmarks.dat")))
    faces: dict[str, dict[str, object]] = {}
    for asset, name in PHOTOS:
        img = load_rgb(file_path(asset, name))
        dets = detector(img, 1)
        assert dets, f"dlib found no face in {name}"
        rect = max(dets, key=lambda d: d.area())
        points = np.array([[p.x, p.y] for p in predictor(img, rect).parts()], np.float64)
        faces[name] = {
            "image": from_uint8(img[None]),
            "box": torch.tensor([[rect.left(), rect.top(), rect.right() + 1,
                                  rect.bottom() + 1]], dtype=torch.float32),
            "dlib": points,
        }
    return faces


def interocular_error(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-point distance in units of the distance between the reference's eye centres."""
    iod = np.linalg.norm(reference[36:42].mean(0) - reference[42:48].mean(0))
    return np.linalg.norm(points - reference, axis=1) / iod


@pytest.mark.slow
def test_port_matches_faceapi_js(nets: tuple[Landmark68Net, ExpressionNet]) -> None:
    from facelatent.images import from_uint8, load_rgb
    from facelatent.weights import file_path
    landmark_net, expression_net = nets
    for asset, name in PHOTOS:
        box, probs, points = FACEAPI_JS[name]
        image = from_uint8(load_rgb(file_path(asset, name))[None])
        boxes = torch.tensor([box], dtype=torch.float32)
        with torch.no_grad():
            ours = landmark_net.landmarks(image, boxes)[0, [8, 30, 36, 45, 48, 54]].numpy()
            our_probs = expression_net.probabilities(image, boxes)[0].numpy()
        print(f"{name:14s} landmarks max |port - face-api| {np.abs(ours - points).max():.3f} px"
              f"  probabilities {np.abs(our_probs - probs).max():.2e}")
        assert np.abs(ours - np.array(points)).max() < 0.02           # printed to 0.01 px
        assert np.abs(our_probs - np.array(probs)).max() < 2e-5       # printed to 1e-6


@pytest.mark.slow
def test_landmarks_agree_with_dlib(nets: tuple[Landmark68Net, ExpressionNet],
                                   real_faces: dict[str, dict[str, object]]) -> None:
    landmark_net = nets[0]
    print(f"\nbox: dlib's, x{DLIB_BOX_SCALE} about its centre, moved down "
          f"{DLIB_BOX_SHIFT} of its height; error in inter-ocular distances")
    means = []
    for name, face in real_faces.items():
        boxes = scale_boxes(face["box"], DLIB_BOX_SCALE, DLIB_BOX_SHIFT)
        with torch.no_grad():
            points = landmark_net.landmarks(face["image"], boxes)[0].numpy()
        error = interocular_error(points, np.asarray(face["dlib"]))
        means.append(error.mean())
        print(f"{name:14s} all 68 {error.mean():.4f}  without the jaw {error[17:].mean():.4f}"
              f"  eyes {error[36:48].mean():.4f}  jaw {error[:17].mean():.4f}")
        assert error.mean() < 0.09, name
        assert error[17:].mean() < 0.06, name
    assert np.mean(means) < 0.065


@pytest.mark.slow
def test_box_enlargement_study(nets: tuple[Landmark68Net, ExpressionNet],
                               real_faces: dict[str, dict[str, object]]) -> None:
    """Landmark error against dlib as the dlib box grows (and moves down): dlib's boxes are
    tighter than the detector boxes face-api's net was made for."""
    landmark_net = nets[0]
    scales, shifts = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6), (0.0, 0.1, 0.15, 0.2)
    table = np.zeros((len(scales), len(shifts)))
    for face in real_faces.values():
        boxes = torch.cat([scale_boxes(face["box"], s, d) for s in scales for d in shifts])
        with torch.no_grad():
            points = landmark_net.landmarks(face["image"], boxes).numpy()
        errors = [interocular_error(p, np.asarray(face["dlib"])).mean() for p in points]
        table += np.array(errors).reshape(table.shape) / len(real_faces)
    print("\nmean error (inter-ocular) over the photos; rows: scale, columns: shift down")
    print("      " + " ".join(f"{d:7.2f}" for d in shifts))
    for s, row in zip(scales, table, strict=True):
        print(f"{s:5.2f} " + " ".join(f"{e:7.4f}" for e in row))
    best = table[scales.index(DLIB_BOX_SCALE), shifts.index(DLIB_BOX_SHIFT)]
    assert best < 0.8 * table[0, 0]                 # far better than dlib's own box
    assert best <= table.min() + 0.003              # and within noise of the best in the grid


@pytest.mark.slow
def test_expressions(nets: tuple[Landmark68Net, ExpressionNet],
                     real_faces: dict[str, dict[str, object]]) -> None:
    landmark_net, expression_net = nets
    happy = {}
    print()
    for name, face in real_faces.items():
        boxes = scale_boxes(face["box"], DLIB_BOX_SCALE, DLIB_BOX_SHIFT)
        with torch.no_grad():
            probs = expression_net.probabilities(face["image"], boxes)[0]
            points = landmark_net.landmarks(face["image"], boxes)
            aligned = expression_net.probabilities(face["image"], landmark_box(points))[0]
        happy[name] = float(probs[1])
        top = ", ".join(f"{EXPRESSIONS[i]} {float(aligned[i]):.2f}"
                        for i in aligned.argsort(descending=True)[:2])
        print(f"{name:14s} P(happy) {probs[1]:.3f} (enlarged dlib box), "
              f"{aligned[1]:.3f} (landmark box: {top})")
    assert happy["astronaut.png"] > 0.8              # she smiles
    assert happy["obama.jpg"] > 0.8                  # so does he, broadly
    assert happy["biden.jpg"] < 0.2                  # lips closed, no smile


@pytest.mark.slow
def test_pose_of_flipped_photos(nets: tuple[Landmark68Net, ExpressionNet],
                                real_faces: dict[str, dict[str, object]]) -> None:
    from facelatent.faces.pose import head_pose, openness
    landmark_net = nets[0]
    mouths = {}
    print(f"\n{'photo':14s} {'yaw':>6s} {'pitch':>6s} {'roll':>6s} | flipped "
          f"{'yaw':>6s} {'pitch':>6s} {'roll':>6s} | dlib points {'yaw':>6s} {'pitch':>6s} "
          f"{'roll':>6s} | mouth   eyes")
    for name, face in real_faces.items():
        image = face["image"]
        box = scale_boxes(face["box"], DLIB_BOX_SCALE, DLIB_BOX_SHIFT)
        width = image.shape[-1]
        flipped_box = torch.stack([width - box[:, 2], box[:, 1], width - box[:, 0], box[:, 3]],
                                  dim=1)
        with torch.no_grad():
            points = landmark_net.landmarks(image, box)
            flipped = landmark_net.landmarks(image.flip(-1), flipped_box)
        pose, pose_f = head_pose(points), head_pose(flipped)
        pose_d = head_pose(torch.tensor(np.asarray(face["dlib"])[None], dtype=torch.float32))
        opened = openness(points)

        def angles(p: dict[str, torch.Tensor]) -> str:
            return " ".join(f"{float(p[k]):6.1f}" for k in ("yaw", "pitch", "roll"))
        print(f"{name:14s} {angles(pose)} |         {angles(pose_f)} |             "
              f"{angles(pose_d)} | {float(opened['mouth_openness']):.3f}  "
              f"{float(opened['eye_openness']):.3f}")
        assert abs(float(pose["yaw"] + pose_f["yaw"])) < 5, name
        assert abs(float(pose["roll"] + pose_f["roll"])) < 5, name
        assert abs(float(pose["yaw"] - pose_d["yaw"])) < 8, name       # dlib's points agree
        mouths[name] = float(opened["mouth_openness"])
    assert mouths["obama2.jpg"] > 0.25                # speaking, mouth open
    assert mouths["biden.jpg"] < 0.1                  # lips closed
