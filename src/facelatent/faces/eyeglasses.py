"""An eyeglasses classifier (Keras MobileNetV3-Small, minimalistic) as a native PyTorch module.

The network is SlinkoIgor/glasses_detector's ``fp16_model.tflite`` (Apache-2.0), read with
:mod:`facelatent.formats.tflite` and rebuilt here layer by layer. What the graph computes:

    input: [1, 64, 128, 3] RGB eye-region crop, values 0-255. The graph has no rescaling op:
        the first conv's weights are ~1/127.5 of the others' scale and its biases are large,
        so Keras' ``Rescaling(1/127.5, -1)`` was most likely folded into it by the converter.
        The module takes 0-255 as the file does.
    Conv 3x3 stride 2 (16 ch), ReLU
    11 inverted-residual blocks ("expanded_conv", "_1" .. "_10"): optional 1x1 expansion + ReLU,
        3x3 depthwise + ReLU, 1x1 projection (linear), residual add when the shape allows.
        Minimalistic variant: every kernel is 3x3, every activation ReLU, no squeeze-excite and
        no hard-swish (checked on load: the graph has none of those ops).
    Conv_1 1x1 (576 ch) ReLU -> Conv_2 1x1 (1024 ch, bias) ReLU -> mean over H, W
    dense: 1024 -> 1 logit; below 0 means glasses.

Batch-norms are already folded into the convs in the file. Convolutions pad like TF "SAME":
``pad_total = max((ceil(n / s) - 1) * s + k - n, 0)`` split with the extra pixel at the bottom /
right, so a stride-2 3x3 conv on an even size pads (0, 1). The file spells the stride-2
depthwise pads as explicit PAD ops; the loader checks those equal the SAME padding used here.

Crops follow the reference preprocessing (``tf.image.resize`` bilinear, half-pixel centres, no
antialiasing): output pixel j samples the image at ``x = left + (j + 0.5) * (right - left) / 128
- 0.5`` (pixel centres at integers), by ``grid_sample(align_corners=False)`` with border
clamping. For an integer box this equals crop-then-resize except within half a source pixel of
the box edge, where the neighbouring pixel outside the box is read instead of the edge pixel.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.errors import WeightsError
from facelatent.formats.tflite import TFLiteGraph, TFLiteOperator
from facelatent.images import check_images
from facelatent.weights import file_path

__all__ = ["CROP_SIZE", "FFHQ_EYE_BOX_1024", "EyeglassesClassifier", "crop_boxes",
           "eye_box_from_eyes", "eye_box_from_landmarks68", "ffhq_eye_boxes"]

CROP_SIZE = (64, 128)  # (height, width) of the crop the network reads
# Eye-region box (left, top, right, bottom) on FFHQ-aligned 1024x1024 faces: the mean of 96
# generated faces' landmark boxes (see shared/models/README.md).
FFHQ_EYE_BOX_1024 = (118.0, 394.0, 899.0, 681.0)
# Mean eye centres (image-left eye, image-right eye) on the same faces: dlib's 5-point predictor
# (eye = mean of its two corners) on 31 MobileStyleGAN faces, seeds 0-31 at psi 0.7 (one face
# not detected); standard deviation 3-5 px.
FFHQ_EYE_CENTRES_1024 = ((386.0, 489.5), (636.0, 489.0))


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block."""

    expand: int | None  # channels after the 1x1 expansion; None = no expansion (first block)
    out: int            # channels after the 1x1 projection
    stride: int         # stride of the 3x3 depthwise conv (1 or 2)


# MobileNetV3-Small, minimalistic, alpha 1.0: the blocks "expanded_conv", "expanded_conv_1", ...
MOBILENET_V3_SMALL_MINIMAL = (
    BlockSpec(None, 16, 2),
    BlockSpec(72, 24, 2), BlockSpec(88, 24, 1),
    BlockSpec(96, 40, 2), BlockSpec(240, 40, 1), BlockSpec(240, 40, 1),
    BlockSpec(120, 48, 1), BlockSpec(144, 48, 1),
    BlockSpec(288, 96, 2), BlockSpec(576, 96, 1), BlockSpec(576, 96, 1),
)
STEM_CHANNELS = 16
LAST_CHANNELS = 576    # Keras "Conv_1"
EMBED_CHANNELS = 1024  # Keras "Conv_2"


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) along one axis: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` (with bias, no built-in padding) that pads exactly like TF "SAME"."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = tf_same_padding(x.shape[-2], k, s)
        left, right = tf_same_padding(x.shape[-1], k, s)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU) -> 3x3 depthwise (ReLU) -> 1x1 project, plus the input when shapes match."""

    def __init__(self, in_ch: int, spec: BlockSpec) -> None:
        super().__init__()
        mid = spec.expand or in_ch
        self.expand = SameConv2d(in_ch, mid, 1) if spec.expand else None
        self.depthwise = SameConv2d(mid, mid, 3, stride=spec.stride, groups=mid)
        self.project = SameConv2d(mid, spec.out, 1)
        self.residual = spec.stride == 1 and in_ch == spec.out

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu(self.depthwise(y)))
        return x + y if self.residual else y


class EyeglassesClassifier(nn.Module):
    """Eyeglasses classifier: eye-region crops [N, 3, 64, 128] RGB 0-255 -> logits [N].

    A logit below 0 means glasses; :meth:`score` returns ``-logit`` (higher = glasses) straight
    from project-convention images. ``EyeglassesClassifier()`` has random weights (for tests);
    ``EyeglassesClassifier.load()`` reads the fetched model (``facelatent weights fetch
    eyeglasses-mobilenetv3``). CPU and float32; move it with ``.to()``. Differentiable in the
    input; call ``requires_grad_(False)`` when only input gradients are wanted.
    """

    def __init__(self, blocks: Sequence[BlockSpec] = MOBILENET_V3_SMALL_MINIMAL) -> None:
        super().__init__()
        self.stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        layers, ch = [], STEM_CHANNELS
        for spec in blocks:
            layers.append(InvertedResidual(ch, spec))
            ch = spec.out
        self.blocks = nn.Sequential(*layers)
        self.last_conv = SameConv2d(ch, LAST_CHANNELS, 1)
        self.embed = SameConv2d(LAST_CHANNELS, EMBED_CHANNELS, 1)
        self.classifier = nn.Linear(EMBED_CHANNELS, 1)

    @classmethod
    def load(cls) -> EyeglassesClassifier:
        """The pretrained classifier from the ``eyeglasses-mobilenetv3`` asset (WeightsError if
        it has not been fetched)."""
        return cls.from_tflite(file_path("eyeglasses-mobilenetv3", "fp16_model.tflite"))

    @classmethod
    def from_tflite(cls, path: str | Path) -> EyeglassesClassifier:
        """Build from the TFLite file (fp16 weights become float32); in eval mode.

        Every weight is mapped by op order with its layer name and shape checked; a file with
        another layout, or any constant left unused, raises WeightsError.
        """
        try:
            graph = TFLiteGraph.from_file(path)
        except ValueError as exc:
            raise WeightsError(str(exc)) from exc
        model = cls()
        _TFLiteLoader(graph, str(path)).load_into(model)
        return model.eval()

    def forward(self, crops: Tensor) -> Tensor:
        """Logits [N] for crops [N, 3, 64, 128]: float RGB, values 0-255 (the file's input)."""
        check_images(crops, "crops", size=CROP_SIZE, what="float RGB 0-255", max_abs=None,
                     fix="cut them from images with crop_boxes(...) * 127.5 + 127.5 or call "
                         "score(images)")
        x = F.relu(self.stem(crops))
        x = self.blocks(x)
        x = F.relu(self.embed(F.relu(self.last_conv(x))))
        return self.classifier(x.mean(dim=(2, 3))).squeeze(1)

    def score(self, images: Tensor, boxes: Tensor | None = None) -> Tensor:
        """Eyeglasses scores [N] (``-logit``; above 0 = glasses) for images [N, 3, H, W].

        ``images``: float RGB in [-1, 1], any size. Values are clamped to [-1, 1] as when saving
        (no gradient flows through clamped pixels); values beyond +-3 (0-255 input by mistake)
        raise ValueError. Only the pixels the crops read are checked for NaN.
        ``boxes``: [N, 4] eye-region boxes (left, top, right, bottom) in pixels, e.g. from
        :func:`eye_box_from_landmarks68`; None = FFHQ-aligned faces (generator output): the
        fixed :data:`FFHQ_EYE_BOX_1024` scaled to the image size.
        """
        check_images(images, "images", values=False)
        if boxes is None:
            boxes = ffhq_eye_boxes(images)
        region, boxes = _region(images, boxes)
        check_images(region, "images")          # only the pixels the crops read are checked
        crops = _sample(region.clamp(-1.0, 1.0), boxes, CROP_SIZE)
        return -self((crops + 1.0) * 127.5)


# --- crops ------------------------------------------------------------------------------------

def ffhq_eye_boxes(images: Tensor) -> Tensor:
    """The fixed FFHQ eye box scaled to images [N, 3, H, W]: [N, 4] (left, top, right, bottom)."""
    check_images(images, "images", values=False)
    h, w = images.shape[-2:]
    scale = torch.tensor([w, h, w, h], dtype=images.dtype, device=images.device) / 1024.0
    box = torch.tensor(FFHQ_EYE_BOX_1024, dtype=images.dtype, device=images.device) * scale
    return box.expand(images.shape[0], 4).clone()


def crop_boxes(images: Tensor, boxes: Tensor, size: tuple[int, int] = CROP_SIZE) -> Tensor:
    """Cut boxes out of images and resize them: [N, C, H, W], [N, 4] -> [N, C, size].

    ``boxes``: (left, top, right, bottom) in pixels, edges of the pixel grid (a box (0, 0, W, H)
    is the whole image). Bilinear, half-pixel centres, no antialiasing (like ``tf.image.resize``);
    samples outside the image repeat the border pixel. Differentiable in images and boxes.
    Only the pixels the boxes read are checked for NaN (and, in score, for range).
    """
    check_images(images, "images", what="float images", values=False)
    images, boxes = _region(images, boxes)
    check_images(images, "images", what="float images", max_abs=None)
    return _sample(images, boxes, size)


def _sample(images: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """crop_boxes without the checks."""
    n, _, h, w = images.shape
    out_h, out_w = size
    boxes = boxes.to(images.dtype)
    left, top, right, bottom = boxes.unbind(1)
    # Output pixel j's centre maps to x = left + (j + 0.5) * (right - left) / out_w - 0.5 in
    # pixel-index coordinates; grid_sample(align_corners=False) wants (2x + 1) / W - 1.
    j = (torch.arange(out_w, dtype=images.dtype, device=images.device) + 0.5) / out_w
    i = (torch.arange(out_h, dtype=images.dtype, device=images.device) + 0.5) / out_h
    gx = (2.0 * (left[:, None] + j[None] * (right - left)[:, None])) / w - 1.0   # [N, out_w]
    gy = (2.0 * (top[:, None] + i[None] * (bottom - top)[:, None])) / h - 1.0    # [N, out_h]
    grid = torch.stack([gx[:, None, :].expand(n, out_h, out_w),
                        gy[:, :, None].expand(n, out_h, out_w)], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def eye_box_from_landmarks68(points: Tensor) -> Tensor:
    """Eye-region boxes from 68 landmarks (iBUG / dlib order): [N, 68, 2] (x, y) -> [N, 4].

    The reference crop: over the eyebrows (17-26) and the nose-tip row (31-35), top = the
    highest point (an eyebrow), bottom = the lowest (the nose tip row), and the horizontal
    extent (the eyebrows' in practice) widened by a third of its width on each side. Returns
    (left, top, right, bottom) in the points' pixel units; the box may extend past the image,
    where :func:`crop_boxes` repeats the border.
    """
    if not isinstance(points, Tensor):
        raise ValueError(f"points must be a torch.Tensor [N, 68, 2], got {type(points).__name__}")
    if points.ndim != 3 or tuple(points.shape[1:]) != (68, 2):
        raise ValueError(f"points must have shape [N, 68, 2] (x, y in pixels), got "
                         f"{list(points.shape)}; add a batch axis with points[None] for one face")
    if not points.is_floating_point() or not torch.isfinite(points).all():
        raise ValueError("points must be finite float coordinates; got "
                         f"{points.dtype} with non-finite values or an integer type")
    keys = torch.cat([points[:, 17:27], points[:, 31:36]], dim=1)
    x0, y0 = keys.amin(dim=1).unbind(1)
    x1, y1 = keys.amax(dim=1).unbind(1)
    margin = (x1 - x0) / 3.0
    return torch.stack([x0 - margin, y0, x1 + margin, y1], dim=1)


def _region(images: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """The rows and columns that crops of ``boxes`` read (all boxes together), and the boxes in
    that region's coordinates: sampling the region gives the same values as sampling the
    image, since it keeps every pixel a sample can touch and the image's own borders."""
    _check_boxes(boxes, images.shape[0])
    h, w = images.shape[-2:]
    with torch.no_grad():
        lo = boxes[:, :2].amin(dim=0).floor().long() - 2
        hi = boxes[:, 2:].amax(dim=0).ceil().long() + 2
    c0 = min(max(int(lo[0]), 0), w - 1)
    r0 = min(max(int(lo[1]), 0), h - 1)
    c1 = max(min(int(hi[0]), w), c0 + 1)
    r1 = max(min(int(hi[1]), h), r0 + 1)
    shift = torch.tensor([c0, r0, c0, r0], dtype=boxes.dtype, device=boxes.device)
    return images[:, :, r0:r1, c0:c1], boxes - shift


def eye_box_from_eyes(eyes: Tensor) -> Tensor:
    """Eye-region boxes from two eye centres: [N, 2, 2] (x, y) in pixels -> [N, 4].

    For detectors with 5 landmarks (no eyebrows): the fixed FFHQ box is carried over by the
    scale and shift that take :data:`FFHQ_EYE_CENTRES_1024` onto ``eyes`` (eye distance and
    midpoint; in-plane rotation is ignored, as the axis-aligned reference crop does). Order of
    the two eyes does not matter. Returns (left, top, right, bottom).
    """
    if not isinstance(eyes, Tensor):
        raise ValueError(f"eyes must be a torch.Tensor [N, 2, 2], got {type(eyes).__name__}")
    if eyes.ndim != 3 or tuple(eyes.shape[1:]) != (2, 2):
        raise ValueError(f"eyes must have shape [N, 2, 2] (two eye centres, x and y in pixels), "
                         f"got {list(eyes.shape)}")
    if not eyes.is_floating_point() or not torch.isfinite(eyes).all():
        raise ValueError("eyes must be finite float coordinates; got "
                         f"{eyes.dtype} with non-finite values or an integer type")
    ref = torch.tensor(FFHQ_EYE_CENTRES_1024, dtype=eyes.dtype, device=eyes.device)
    scale = (eyes[:, 1] - eyes[:, 0]).norm(dim=1) / (ref[1] - ref[0]).norm()
    if not (scale > 0).all():
        raise ValueError("eyes must hold two distinct points per face")
    box = torch.tensor(FFHQ_EYE_BOX_1024, dtype=eyes.dtype, device=eyes.device).view(2, 2)
    corners = eyes.mean(dim=1)[:, None] + scale[:, None, None] * (box - ref.mean(dim=0))
    return corners.reshape(-1, 4)


def _check_boxes(boxes: object, n: int) -> None:
    if not isinstance(boxes, Tensor):
        raise ValueError(f"boxes must be a torch.Tensor [N, 4], got {type(boxes).__name__}")
    if boxes.ndim != 2 or tuple(boxes.shape) != (n, 4):
        raise ValueError(f"boxes must have shape [{n}, 4] (left, top, right, bottom in pixels, "
                         f"one per image), got {list(boxes.shape)}")
    if not boxes.is_floating_point() or not torch.isfinite(boxes).all():
        raise ValueError("boxes must be finite float pixel coordinates, got "
                         f"{boxes.dtype} with non-finite values or an integer type")
    if not ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all():
        raise ValueError("boxes must have right > left and bottom > top, got "
                         f"{boxes.tolist()}")


# --- loading ----------------------------------------------------------------------------------

_TRANSPOSE = {
    "conv": (0, 3, 1, 2),       # TFLite [out, kh, kw, in] -> torch [out, in, kh, kw]
    "depthwise": (3, 0, 1, 2),  # TFLite [1, kh, kw, ch]   -> torch [ch, 1, kh, kw]
}


class _TFLiteLoader:
    """Walks the folded TFLite operators in order, checks each against the module, copies."""

    def __init__(self, graph: TFLiteGraph, source: str) -> None:
        self.graph = graph
        self.source = source
        self._ops: Iterator[TFLiteOperator] = iter(graph.operators)
        self._used: set[int] = set()
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            self._fail(f"expected one input and one output, found {graph.inputs} -> "
                       f"{graph.outputs}")
        x = graph.tensors[graph.inputs[0]]
        if x.shape != (1, *CROP_SIZE, 3) or x.dtype != "FLOAT32":
            self._fail(f"input is {x.dtype} {list(x.shape)}, expected FLOAT32 [1, 64, 128, 3]")
        self._current = x.index
        self._size = CROP_SIZE  # spatial size of the current activation

    def _fail(self, message: str) -> None:
        raise WeightsError(f"{self.source}: {message}; the file is not the eyeglasses "
                           "MobileNetV3 this module rebuilds")

    def _next(self, op: str, what: str, **options: object) -> TFLiteOperator:
        """The next operator: it must be ``op`` reading the current activation, with ``options``."""
        node = next(self._ops, None)
        reads = node is not None and (node.inputs[0] == self._current
                                      or (op == "ADD" and self._current in node.inputs))
        if node is None or node.op != op or not reads:
            found = "the end of the graph" if node is None else f"{node.op} (#{node.index})"
            self._fail(f"expected {op} ({what}) reading tensor {self._current}, found {found}")
        for key, want in options.items():
            if node.options.get(key) != want:
                self._fail(f"{what}: {op} #{node.index} has {key}={node.options.get(key)!r}, "
                           f"expected {want!r}")
        self._current = node.outputs[0]
        return node

    def _take(self, index: int, name: str, shape: tuple[int, ...], what: str) -> np.ndarray:
        """The constant at ``index``: its name must contain ``name``, its shape must be ``shape``."""
        t = self.graph.tensors[index]
        if t.data is None:
            self._fail(f"{what}: tensor {index} {t.name!r} holds no data")
        if name not in t.name:
            self._fail(f"{what}: tensor {index} is {t.name!r}, expected a name with {name!r}")
        if t.shape != shape:
            self._fail(f"{what}: {t.name!r} has shape {list(t.shape)}, expected {list(shape)}")
        self._used.add(index)
        return t.data

    def _conv(self, conv: SameConv2d, layer: str, kind: str, relu: bool,
              weight_name: str = "") -> None:
        """One CONV_2D or DEPTHWISE_CONV_2D (after an explicit PAD op for stride 2 depthwise)."""
        k, s = conv.kernel_size[0], conv.stride[0]
        pads = [tf_same_padding(n, k, s) for n in self._size]
        if kind == "depthwise" and s == 2:
            node = self._next("PAD", f"{layer} pad")
            # One paddings constant serves every such PAD op; it is named after one of them.
            got = self._take(node.inputs[1], "depthwise/pad", (4, 2), f"{layer} paddings")
            if got.tolist() != [[0, 0], list(pads[0]), list(pads[1]), [0, 0]]:
                self._fail(f"{layer} pads {got.tolist()}, not TF SAME {pads}")
            padding = "VALID"
        else:
            padding = "SAME"
        act = "RELU" if relu else "NONE"
        if kind == "depthwise":
            node = self._next("DEPTHWISE_CONV_2D", layer, padding=padding, stride_h=s, stride_w=s,
                              depth_multiplier=1, dilation_hfactor=1, dilation_wfactor=1,
                              fused_activation_function=act)
        else:
            node = self._next("CONV_2D", layer, padding=padding, stride_h=s, stride_w=s,
                              dilation_hfactor=1, dilation_wfactor=1,
                              fused_activation_function=act)
        perm = _TRANSPOSE[kind]
        tf_shape = tuple(conv.weight.shape[perm.index(d)] for d in range(4))
        weight = self._take(node.inputs[1], weight_name or f"{layer}/Conv2D", tf_shape,
                            f"{layer} weight")
        bias_name = "BiasAdd" if layer.endswith("Conv_2") else "BatchNorm"
        bias = self._take(node.inputs[2], f"{layer}/{bias_name}", (conv.out_channels,),
                          f"{layer} bias")
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.transpose(perm))))
            conv.bias.copy_(torch.from_numpy(bias))
        self._size = tuple(-(-n // s) for n in self._size)  # type: ignore[assignment]

    def load_into(self, model: EyeglassesClassifier) -> None:
        unsupported = set(self.graph.op_counts()) - {"CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "ADD",
                                                      "MEAN", "FULLY_CONNECTED"}
        if unsupported:  # e.g. HARD_SWISH, MUL or LOGISTIC: the full (not minimalistic) model
            self._fail(f"the graph has {sorted(unsupported)} ops")
        root = "MobilenetV3small"
        self._conv(model.stem, f"{root}/Conv", "conv", relu=True)
        for i, block in enumerate(model.blocks):
            layer = f"{root}/expanded_conv" + (f"_{i}" if i else "")
            block_input = self._current
            if block.expand is not None:
                self._conv(block.expand, f"{layer}/expand", "conv", relu=True)
            self._conv(block.depthwise, f"{layer}/depthwise", "depthwise", relu=True,
                       weight_name=f"{layer}/depthwise/depthwise")
            self._conv(block.project, f"{layer}/project", "conv", relu=False)
            project_out = self._current
            if block.residual:
                node = self._next("ADD", f"{layer} residual", fused_activation_function="NONE")
                if sorted(node.inputs) != sorted((block_input, project_out)):
                    self._fail(f"{layer}: ADD #{node.index} adds tensors {node.inputs}, not the "
                               f"block input {block_input} and projection {project_out}")
        self._conv(model.last_conv, f"{root}/Conv_1", "conv", relu=True)
        self._conv(model.embed, f"{root}/Conv_2", "conv", relu=True)
        node = self._next("MEAN", "global average pool", keep_dims=False)
        axes = self._take(node.inputs[1], "Mean", (2,), "pooling axes")
        if axes.tolist() != [1, 2]:
            self._fail(f"global pool averages axes {axes.tolist()}, expected [1, 2] (H, W)")
        head = model.classifier
        node = self._next("FULLY_CONNECTED", "dense", fused_activation_function="NONE",
                          weights_format=0, keep_num_dims=False)
        weight = self._take(node.inputs[1], "MatMul", tuple(head.weight.shape), "dense weight")
        bias = self._take(node.inputs[2], "BiasAdd", (1,), "dense bias")
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(weight))
            head.bias.copy_(torch.from_numpy(bias))
        if next(self._ops, None) is not None or self._current != self.graph.outputs[0]:
            self._fail("operators are left after the dense layer")
        unused = [t.name for t in self.graph.constants() if t.index not in self._used]
        if unused:
            self._fail(f"{len(unused)} constant tensor(s) were not used: {unused[:5]}")
        if not all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters()):
            self._fail("weights hold non-finite values")
