"""Tests of the dlib ResNet face recogniser port, its chip alignment and the tfjs reader.

Fast tests use random weights and small manifests written to tmp_path. The chip geometry is
checked against native dlib (no model files needed; skipped without dlib). Slow tests compare
the port with native dlib on the real test photos and print the numbers they assert on.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.errors import WeightsError
from facelatent.faces.align import DLIB_5POINT_TEMPLATE, chip_transform
from facelatent.faces.dlib_resnet import CHIP_PADDING, CHIP_SIZE, DlibResNetEmbedder, dlib_chip
from facelatent.formats.tfjs import read_weights

# The 5 landmarks of a face about 300 px wide (dlib order), from dlib on obama.jpg.
POINTS = np.array([(570, 216), (528, 215), (424, 217), (463, 216), (496, 295)], np.float64)


@pytest.fixture(scope="module")
def net() -> DlibResNetEmbedder:
    torch.manual_seed(0)
    model = DlibResNetEmbedder().eval()
    with torch.no_grad():   # non-trivial folded batch norm, so that every path matters
        for name, p in model.named_parameters():
            if name.endswith(("scale", "offset")):
                p.uniform_(0.5, 1.5) if name.endswith("scale") else p.uniform_(-0.2, 0.2)
    return model


def random_faces(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random 480x640 images in [-1, 1] and jittered landmarks at several face sizes."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 480, 640, generator=gen) * 2 - 1
    scales = torch.tensor([0.4, 1.0, 1.3, 2.0])[torch.arange(n) % 4]      # pyramid depth 0-2
    centre = torch.tensor([320.0, 240.0])
    pts = torch.from_numpy(POINTS).float() - torch.tensor([497.0, 240.0])
    points = centre + scales[:, None, None] * pts + torch.randn(n, 5, 2, generator=gen)
    return images, points


# ------------------------------------------------------------------------------ network, fast

def test_forward_shape_and_unit_norm(net: DlibResNetEmbedder) -> None:
    chips = torch.rand(3, 3, 150, 150) * 2 - 1
    with torch.no_grad():
        emb = net(chips)
        raw = net.descriptor(chips)
    assert emb.shape == (3, 128) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(emb, raw / raw.norm(dim=1, keepdim=True))


def test_embed_batched_equals_one_by_one(net: DlibResNetEmbedder) -> None:
    images, points = random_faces(5)
    with torch.no_grad():
        batched = net.embed(images, points)
        single = torch.cat([net.embed(images[i:i + 1], points[i:i + 1]) for i in range(5)])
    assert (batched - single).abs().max().item() <= 1e-5


def test_gradients_reach_images_and_landmarks(net: DlibResNetEmbedder) -> None:
    images, points = random_faces(2, seed=1)
    images.requires_grad_(True)
    points.requires_grad_(True)
    target = torch.nn.functional.normalize(torch.randn(2, 128), dim=1)
    (net.embed(images, points) * target).sum().backward()
    assert images.grad is not None and points.grad is not None
    assert images.grad.abs().sum() > 0 and torch.isfinite(images.grad).all()
    assert points.grad.abs().sum() > 0 and torch.isfinite(points.grad).all()


def test_inputs_are_validated(net: DlibResNetEmbedder) -> None:
    with pytest.raises(ValueError, match="chips"):
        net(torch.zeros(1, 3, 112, 112))
    with pytest.raises(ValueError, match="chips"):
        net(torch.zeros(3, 150, 150))
    images, points = random_faces(2)
    with pytest.raises(ValueError, match="points5"):
        net.embed(images, points[:1])
    with pytest.raises(ValueError, match="points5"):
        net.embed(images, points[:, :4])
    with pytest.raises(ValueError, match="image"):
        dlib_chip(images[:, :1], points)


def tfjs_tensors(model: DlibResNetEmbedder) -> dict[str, np.ndarray]:
    """The model's parameters under face-api's names and layouts (HWIO filters, fc [in, out])."""
    params = dict(model.named_parameters())
    out = {}
    for tf_name, name in model.tfjs_key_map().items():
        value = params[name].detach().numpy()
        out[tf_name] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    return out


def test_tfjs_loader_maps_every_tensor(net: DlibResNetEmbedder, tmp_path: Path) -> None:
    tensors = tfjs_tensors(net)
    assert len(tensors) == 117          # as many as face-api's recognition manifest holds
    manifest = [{"paths": ["model.bin"], "weights": [
        {"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in tensors.items()]}]
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    (tmp_path / "model.bin").write_bytes(b"".join(v.astype("<f4").tobytes()
                                                  for v in tensors.values()))
    loaded = DlibResNetEmbedder.from_tfjs(tmp_path / "model.json", tmp_path / "model.bin")
    chips = torch.rand(2, 3, 150, 150) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(chips), net(chips))

    fresh = DlibResNetEmbedder()
    with pytest.raises(WeightsError, match="missing tensors.*conv64_1/conv2/scale/biases"):
        fresh.load_tfjs_weights({k: v for k, v in tensors.items()
                                 if k != "conv64_1/conv2/scale/biases"})
    with pytest.raises(WeightsError, match="unused tensors.*extra"):
        fresh.load_tfjs_weights(tensors | {"extra": np.zeros(3, np.float32)})
    with pytest.raises(WeightsError, match="fc"):
        fresh.load_tfjs_weights(tensors | {"fc": np.zeros((128, 256), np.float32)})


# ---------------------------------------------------------------------------- tfjs reader, fast

def write_manifest(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A two-group manifest: float32, uint8-quantised, uint16-quantised and float16 tensors."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    q8 = np.array([[0, 1], [254, 255]], np.uint8)
    q16 = np.array([0, 1000, 65535], np.uint16)
    h = np.array([0.5, -2.0, 1e-3], np.float16)
    groups = [
        {"paths": ["a.bin"], "weights": [
            {"name": "a", "shape": [2, 3], "dtype": "float32"},
            {"name": "q8", "shape": [2, 2], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}}]},
        {"paths": ["b.bin"], "weights": [
            {"name": "q16", "shape": [3], "dtype": "float32",
             "quantization": {"dtype": "uint16", "scale": 0.001, "min": 2.0}},
            {"name": "h", "shape": [3], "dtype": "float32",
             "quantization": {"dtype": "float16"}}]},
    ]
    data = a.tobytes() + q8.tobytes() + q16.astype("<u2").tobytes() + h.astype("<f2").tobytes()
    (tmp_path / "m.json").write_text(json.dumps(groups))
    (tmp_path / "all.bin").write_bytes(data)
    expected = {"a": a, "q8": q8 * np.float32(0.5) - 1, "q16": q16 * 0.001 + 2.0,
                "h": h.astype(np.float32)}
    return tmp_path / "m.json", tmp_path / "all.bin", expected


def test_tfjs_reader_decodes_quantised_tensors(tmp_path: Path) -> None:
    json_path, bin_path, expected = write_manifest(tmp_path)
    weights = read_weights(json_path, bin_path)
    assert list(weights) == ["a", "q8", "q16", "h"]
    for name, value in expected.items():
        assert weights[name].dtype == np.float32 and weights[name].shape == value.shape
        np.testing.assert_allclose(weights[name], value, rtol=1e-6, atol=1e-7)
    assert weights["q8"][1, 1] == pytest.approx(126.5)       # 255 * 0.5 - 1

    # Without bin_paths, the manifest's own paths are read, in order.
    data = bin_path.read_bytes()
    (tmp_path / "a.bin").write_bytes(data[:28])
    (tmp_path / "b.bin").write_bytes(data[28:])
    np.testing.assert_array_equal(read_weights(json_path)["q16"], weights["q16"])


def test_tfjs_reader_rejects_bad_files(tmp_path: Path) -> None:
    json_path, bin_path, _ = write_manifest(tmp_path)
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[:-1])
    with pytest.raises(WeightsError, match="truncated"):
        read_weights(json_path, bin_path)
    bin_path.write_bytes(data + b"\0\0\0\0")
    with pytest.raises(WeightsError, match="describes 40 bytes but the weight data has 44"):
        read_weights(json_path, bin_path)
    json_path.write_text("{not json")
    with pytest.raises(WeightsError, match="cannot read"):
        read_weights(json_path, bin_path)
    json_path.write_text(json.dumps([{"paths": [], "weights": [
        {"name": "s", "shape": [1], "dtype": "string"}]}]))
    with pytest.raises(WeightsError, match="unsupported"):
        read_weights(json_path, bin_path)
    with pytest.raises(WeightsError, match="cannot read tfjs weight data"):
        read_weights(json_path, tmp_path / "missing.bin")


# ------------------------------------------------------------------- chip geometry vs dlib, fast

@pytest.mark.parametrize("scale", [0.5, 1.0, 1.3, 2.2])      # pyramid depth 0, 0, 1, 2
def test_chip_geometry_matches_dlib(scale: float) -> None:
    """Sample images whose pixel values are their own coordinates: each chip pixel then holds
    the image point it was taken from, in dlib's chip and in ours."""
    dlib = pytest.importorskip("dlib")
    height, width = 900, 1300
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(int(scale * 10))
    pts = np.round((POINTS - [497, 240]) * scale + [650, 450] + rng.normal(0, 3, POINTS.shape))
    shape = dlib.full_object_detection(dlib.rectangle(0, 0, width, height),
                                       [dlib.point(int(x), int(y)) for x, y in pts])
    details = dlib.get_face_chip_details(shape, 150, 0.25)
    native = np.stack([dlib.extract_image_chip(xx, details),
                       dlib.extract_image_chip(yy, details)])
    image = torch.from_numpy(np.stack([xx, yy, xx])[None]).double()
    ours = dlib_chip(image, torch.from_numpy(pts)[None].double())[0, :2].numpy()
    inner = (slice(None), slice(8, -8), slice(8, -8))          # away from the image border
    assert np.abs(ours[inner] - native[inner]).max() < 1e-6 * width


def test_chip_transform_of_the_template_itself() -> None:
    """Landmarks exactly on the template at scale 1 give a unit-pitch, unrotated chip."""
    q = (0.25 + torch.tensor(DLIB_5POINT_TEMPLATE, dtype=torch.float64)) / 1.5 * 150
    A, t = chip_transform(q[None] + torch.tensor([10.0, 20.0], dtype=torch.float64), CHIP_SIZE,
                          CHIP_PADDING)
    torch.testing.assert_close(A[0], torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(t[0], torch.tensor([10.5, 20.5], dtype=torch.float64))


# ------------------------------------------------------------------- real weights vs dlib, slow

PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg",
          "obama_partial_face.jpg", "obama_partial_face2.jpg"]


@pytest.fixture(scope="module")
def real_faces() -> dict[str, dict[str, object]]:
    """Per photo: image, dlib 5-point landmarks, dlib's native descriptor, our embedding."""
    dlib = pytest.importorskip("dlib")
    from facelatent.images import from_uint8, load_rgb
    from facelatent.weights import file_path
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(file_path("dlib-models",
                                                   "shape_predictor_5_face_landmarks.dat")))
    recogniser = dlib.face_recognition_model_v1(
        str(file_path("dlib-models", "dlib_face_recognition_resnet_model_v1.dat")))
    net = DlibResNetEmbedder.load()
    faces: dict[str, dict[str, object]] = {}
    for name in PHOTOS:
        img = load_rgb(file_path("test-photos", name))
        dets = detector(img, 1)
        if not dets:
            continue                    # partial faces may be missed; the tests say which ran
        box = max(dets, key=lambda d: d.area())
        shape = predictor(img, box)
        native = np.array(recogniser.compute_face_descriptor(img, shape))
        points = torch.tensor([[[p.x, p.y] for p in shape.parts()]], dtype=torch.float32)
        with torch.no_grad():
            chip = dlib_chip(from_uint8(img[None]), points)
            ours = net(chip)[0].numpy()
            raw = net.descriptor(chip)[0].numpy()
        faces[name] = {"native": native, "ours": ours, "raw": raw}
    return faces


@pytest.mark.slow
def test_port_matches_native_dlib(real_faces: dict[str, dict[str, object]]) -> None:
    assert {"obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"} <= set(real_faces)
    for name, face in real_faces.items():
        native = np.asarray(face["native"])
        cosine = float(np.asarray(face["ours"]) @ native / np.linalg.norm(native))
        ratio = float(np.linalg.norm(np.asarray(face["raw"])) / np.linalg.norm(native))
        print(f"{name:24s} cosine(port, dlib) {cosine:.5f}  |dlib| {np.linalg.norm(native):.3f}"
              f"  |port raw| / |dlib| {ratio:.4f}")
        assert cosine >= 0.999, name
        assert abs(ratio - 1) < 0.02, name


@pytest.mark.slow
def test_same_person_closer_than_different(real_faces: dict[str, dict[str, object]]) -> None:
    names = list(real_faces)
    same, different = [], []
    print(f"\n{'pair':48s} {'cos port':>9s} {'L2 port':>8s} {'L2 dlib native':>15s}")
    for a, b in itertools.combinations(names, 2):
        ea, eb = np.asarray(real_faces[a]["ours"]), np.asarray(real_faces[b]["ours"])
        na, nb = np.asarray(real_faces[a]["native"]), np.asarray(real_faces[b]["native"])
        distance = float(np.linalg.norm(ea - eb))
        print(f"{a + ' / ' + b:48s} {float(ea @ eb):9.4f} {distance:8.4f} "
              f"{float(np.linalg.norm(na - nb)):15.4f}")
        (different if "biden" in a + b else same).append(distance)
    assert same and different
    assert max(same) < min(different)
