"""face-api's 68-point landmark net and 7-class expression net as native PyTorch modules.

Both nets are face-api's ``FaceLandmark68Net`` and ``FaceExpressionNet``: one feature extractor
(``FaceFeatureExtractor``) followed by a fully connected layer. The weights are face-api's tfjs
weight manifests (asset ``face-api``: ``landmark68.{json,bin}``, ``expression.{json,bin}``, 49
tensors each, the same names in both files, only ``fc`` differs in width). What they compute:

    112x112 RGB crop, values 0-255, minus mean RGB (122.782, 117.001, 104.298), divided by 255
    dense0: conv 3x3/2 (3 -> 32)  + 3 separable convs (32)            112 -> 56 px
    dense1: sepconv 3x3/2 (32 -> 64) + 3 separable convs (64)          56 -> 28
    dense2: sepconv 3x3/2 (64 -> 128) + 3 separable convs (128)        28 -> 14
    dense3: sepconv 3x3/2 (128 -> 256) + 3 separable convs (256)       14 -> 7
    average pool 7x7 (the whole map) -> fc 256 -> 136 (landmarks) or 7 (expression logits)

A separable conv is a 3x3 depthwise conv (no bias) then a 1x1 pointwise conv with bias; all
convs pad like TF "SAME" (stride 2 on an even size pads one pixel at the bottom/right only).
A dense block is densely connected by *sums*, not concatenation: with ``o1 = relu(conv0(x))``,
``o2 = conv1(o1)``, ``o3 = conv2(relu(o1 + o2))``, ``o4 = conv3(relu(o1 + o2 + o3))``, the block
returns ``relu(o1 + o2 + o3 + o4)``. The landmark head has no activation: its 136 outputs are
``x0, y0, x1, y1, ...`` in units of the square network input (0 = left/top edge, 1 =
right/bottom); the expression head is followed by a softmax over :data:`EXPRESSIONS`.

Preprocessing (face-api's tensor path, ``extractFaceTensors`` + ``NetInput.toBatchTensor(112,
true)``), reproduced by :func:`face_crop`:

1. the face box is clipped to the image (``Box.clipAtImageBorders``: ``x = max(x1, 0)``,
   ``w = min(x2 - x, W - x)``, the same for y), then x, y, w and h are each floored;
2. that region is cut out and zero-padded (black) to a square of side ``S = max(w, h)``, the
   shorter side centred (``padToSquare``: ``round(d / 2)`` columns/rows after, the rest before);
3. the square is resized to 112x112 by ``tf.image.resizeBilinear`` with its defaults (no
   corner alignment, no half-pixel centres): output pixel j reads source ``min(j * S / 112,
   S - 1)``; shrinking is not antialiased.

face-api maps the landmark outputs back with ``(out * 112 - pad) / (w or h) * 112 / S``
(``postProcess``), i.e. image pixel = square origin + ``out * S``; :class:`CropTransform` does
the same with the padding actually applied (face-api's ``postProcess`` assumes ``d / 2``, half a
pixel off for an odd difference). Image pixel coordinates here put pixel centres at integers.

Boxes: face-api feeds its detectors' boxes (SSD MobileNet / tiny face detector), which are
larger than dlib's HOG boxes. On the five test photos the landmarks agree best with dlib's
68-point predictor when a dlib box is scaled by 1.3-1.4 about its centre and moved down by
0.1-0.2 of its height (:data:`DLIB_BOX_SCALE`, :data:`DLIB_BOX_SHIFT`, applied with
:func:`scale_boxes`): mean error 0.057 inter-ocular distances (0.043 without the jaw line),
against 0.097 with dlib's box as it is (tests/test_faceapi.py prints the whole table). For
expressions after landmarks face-api uses the landmarks' bounding box padded by 20 % of its
size (``FaceLandmarks.align``); see :func:`landmark_box`.

Checked against face-api 1.7.15 itself (tfjs CPU backend in Node) on the test photos: network
outputs agree to 1e-7, landmarks in image pixels to 0.005 px, probabilities to 2e-5.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import NamedTuple, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.errors import WeightsError
from facelatent.formats.tfjs import read_weights
from facelatent.images import check_images

__all__ = ["DLIB_BOX_SCALE", "DLIB_BOX_SHIFT", "EXPRESSIONS", "INPUT_SIZE", "CropTransform",
           "ExpressionNet", "Landmark68Net", "face_crop", "landmark_box", "scale_boxes"]

INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)  # face-api's FaceFeatureExtractor means, 0-255 scale
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
_WIDTHS = (32, 64, 128, 256)             # channels of dense0..dense3
# dlib HOG box -> landmark-net box: scale_boxes(box, DLIB_BOX_SCALE, DLIB_BOX_SHIFT) (measured
# against dlib's 68-point predictor on the test photos; see the module docstring).
DLIB_BOX_SCALE = 1.3
DLIB_BOX_SHIFT = 0.15


# ------------------------------------------------------------------------------------ crops

class CropTransform(NamedTuple):
    """Where a crop came from: crop unit coordinates ``u`` (0..1 across the 112 px square)
    map to image pixels ``origin + u * side``.

    ``origin``: ``[N, 2]`` image pixel (x, y) of the padded square's top-left pixel;
    ``side``: ``[N]`` the square's side in image pixels (``S = max(w, h)`` of the clipped box).
    """

    origin: Tensor
    side: Tensor

    def to_image(self, points: Tensor) -> Tensor:
        """``[N, K, 2]`` crop unit coordinates -> ``[N, K, 2]`` image pixels (x, y)."""
        return self.origin[:, None, :] + points * self.side[:, None, None]

    def to_crop(self, points: Tensor) -> Tensor:
        """``[N, K, 2]`` image pixels -> ``[N, K, 2]`` crop unit coordinates."""
        return (points - self.origin[:, None, :]) / self.side[:, None, None]


def scale_boxes(boxes: Tensor, scale: float = 1.0, shift_y: float = 0.0) -> Tensor:
    """Enlarge ``[N, 4]`` boxes (x1, y1, x2, y2) about their centres by ``scale`` and move them
    down by ``shift_y`` times their height (negative: up). Differentiable."""
    _check_boxes(boxes, boxes.shape[0])
    size = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + size * size.new_tensor([0.0, shift_y])
    return torch.cat([centre - size * scale / 2, centre + size * scale / 2], dim=1)


def landmark_box(points: Tensor, padding: float = 0.2) -> Tensor:
    """face-api's box for a face with landmarks (``FaceLandmarks.align()``, used for its
    expression, age and gender nets): the landmarks' bounding box grown by ``padding`` times its
    width and height (half on each side). ``[N, K, 2]`` pixels -> ``[N, 4]`` (x1, y1, x2, y2)."""
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape [N, K, 2] (pixel x, y), got "
                         f"{list(points.shape)}")
    low, high = points.amin(dim=1), points.amax(dim=1)
    pad = (high - low) * padding / 2
    return torch.cat([low - pad, high + pad], dim=1)


def _clipped_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """face-api's ``clipAtImageBorders`` + floor: ``[N, 4]`` boxes -> ``[N, 4]`` (x, y, w, h)."""
    b = boxes.detach().double()
    x = b[:, 0].clamp(min=0)
    y = b[:, 1].clamp(min=0)
    w = torch.minimum(b[:, 2] - x, width - x)
    h = torch.minimum(b[:, 3] - y, height - y)
    out = torch.stack([x, y, w, h], dim=1).floor()
    bad = (out[:, 2] < 1) | (out[:, 3] < 1)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"boxes[{i}] = {boxes[i].tolist()} has no pixels inside the "
                         f"{width}x{height} image; pass boxes (x1, y1, x2, y2) in image pixels "
                         "that overlap the image")
    return out


def face_crop(images: Tensor, boxes: Tensor, size: int = INPUT_SIZE
              ) -> tuple[Tensor, CropTransform]:
    """Cut face-api's square network inputs from face boxes, differentiably in ``images``.

    ``images``: ``[N, 3, H, W]`` float RGB in [-1, 1] (or ``[1, 3, H, W]``, shared by all
    boxes); ``boxes``: ``[N, 4]`` (x1, y1, x2, y2) image pixels. Returns ``crops [N, 3, size,
    size]`` in [-1, 1] (padding black, -1) and the :class:`CropTransform` from crop unit
    coordinates back to image pixels. The box is clipped and floored as face-api does (see the
    module docstring), so no gradient reaches ``boxes``.
    """
    check_images(images, "images", values=False)
    n = boxes.shape[0] if isinstance(boxes, Tensor) and boxes.ndim == 2 else images.shape[0]
    _check_boxes(boxes, n)
    if images.shape[0] not in (1, n):
        raise ValueError(f"images must hold one image per box ({n}) or a single image, got "
                         f"{images.shape[0]}")
    if size < 2:
        raise ValueError(f"size must be at least 2 pixels, got {size}")
    height, width = images.shape[-2:]
    crops, origins, sides = [], [], []
    for i, (x, y, w, h) in enumerate(_clipped_boxes(boxes, height, width).long().tolist()):
        side = max(w, h)
        before = (side - min(w, h)) - _round_half_up((side - min(w, h)) / 2)  # padToSquare
        before_x, before_y = (before, 0) if w < h else (0, before if h < w else 0)
        region = images[i if images.shape[0] > 1 else 0, :, y:y + h, x:x + w] + 1  # black = 0
        rows = _resize_matrix(size, side, before_y, h, images)
        cols = _resize_matrix(size, side, before_x, w, images)
        crops.append(rows @ region @ cols.T - 1)
        origins.append((x - before_x, y - before_y))
        sides.append(side)
    transform = CropTransform(images.new_tensor(origins), images.new_tensor(sides))
    return torch.stack(crops), transform


def _round_half_up(value: float) -> int:
    """JavaScript's ``Math.round`` (halves round up), which face-api's padding uses."""
    return math.floor(value + 0.5)


def _resize_matrix(size: int, side: int, before: int, length: int, like: Tensor) -> Tensor:
    """``[size, length]`` weights of tfjs' legacy bilinear resize along one axis.

    The axis is ``length`` image pixels zero-padded with ``before`` pixels in front to
    ``side``; output ``j`` reads padded position ``s = j * side / size`` as
    ``(1 - f) * p[floor(s)] + f * p[min(ceil(s), side - 1)]``, ``f = s - floor(s)``. Padding
    pixels are zeros, so their columns are simply dropped.
    """
    weights = torch.zeros(size, length, dtype=torch.float64)
    j = torch.arange(size, dtype=torch.float64)
    src = j * side / size
    low = src.floor()
    high = torch.minimum(src.ceil(), torch.tensor(side - 1.0))
    frac = src - low
    for index, weight in ((low, 1 - frac), (high, frac)):
        index = index.long() - before
        keep = (index >= 0) & (index < length)
        weights.index_put_((j.long()[keep], index[keep]), weight[keep], accumulate=True)
    return weights.to(dtype=like.dtype, device=like.device)


def _check_boxes(boxes: Tensor, n: int) -> None:
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape != (n, 4):
        got = list(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a tensor [N, 4] of (x1, y1, x2, y2) pixels with N = "
                         f"{n} (one box per image), got {got}")


# -------------------------------------------------------------------------------------- network

def _pad_same(x: Tensor, stride: int) -> Tensor:
    """TF "SAME" padding for a 3x3 kernel: 1 px each side at stride 1; at stride 2 the total is
    ``max(2 - (n - 1) % 2, 0)`` split with the extra pixel at the bottom/right."""
    if stride == 1:
        return F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    ph, pw = max((-(-h // 2) - 1) * 2 + 3 - h, 0), max((-(-w // 2) - 1) * 2 + 3 - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class SeparableConv(nn.Module):
    """3x3 depthwise conv (no bias, carries the stride) then 1x1 pointwise conv with bias."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, stride=stride, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(_pad_same(x, self.stride)))


class PlainConv(nn.Module):
    """3x3 conv with bias (the first layer of dense0), TF "SAME" padding."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(_pad_same(x, self.stride))


class DenseBlock(nn.Module):
    """face-api's ``denseBlock4``: a stride-2 conv then three separable convs, each fed the
    rectified sum of every earlier output in the block."""

    def __init__(self, in_ch: int, out_ch: int, first: bool) -> None:
        super().__init__()
        self.conv0: nn.Module = (PlainConv(in_ch, out_ch, stride=2) if first
                                 else SeparableConv(in_ch, out_ch, stride=2))
        self.conv1 = SeparableConv(out_ch, out_ch)
        self.conv2 = SeparableConv(out_ch, out_ch)
        self.conv3 = SeparableConv(out_ch, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + out2 + out3))
        return F.relu(out1 + out2 + out3 + out4)


class _FaceApiNet(nn.Module):
    """FaceFeatureExtractor + fc head; subclasses name the weight files and the head width."""

    asset_files: tuple[str, str] = ("", "")   # (manifest, binary) in the ``face-api`` asset
    num_outputs = 0
    input_size = INPUT_SIZE

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1),
                             persistent=False)
        widths = (3, *_WIDTHS)
        self.dense = nn.ModuleList(DenseBlock(widths[i], widths[i + 1], first=i == 0)
                                   for i in range(4))
        self.fc = nn.Linear(_WIDTHS[-1], self.num_outputs)

    # ---- loading

    @classmethod
    def from_tfjs(cls, json_path: str | os.PathLike[str],
                  bin_path: str | os.PathLike[str]) -> Self:
        """Build the net from a face-api weight manifest and its binary. Every tensor is mapped
        to one parameter; a missing, unused or misshapen tensor raises WeightsError. Returns
        the net in eval mode, float32, on the CPU."""
        model = cls()
        model.load_tfjs_weights(read_weights(json_path, bin_path), source=str(json_path))
        return model.eval()

    @classmethod
    def load(cls) -> Self:
        """The net with face-api's weights from the facelatent cache (asset ``face-api``)."""
        from facelatent.weights import file_path
        manifest, binary = cls.asset_files
        return cls.from_tfjs(file_path("face-api", manifest), file_path("face-api", binary))

    def tfjs_key_map(self) -> dict[str, tuple[str, str]]:
        """face-api tensor name -> (parameter name, face-api layout), for every parameter.

        Layouts: ``hwio`` conv filters [kh, kw, in, out]; ``depthwise`` [kh, kw, in, 1];
        ``fc`` [in, out]; ``vector`` biases."""
        keys: dict[str, tuple[str, str]] = {}
        for i in range(4):
            tf, pt = f"dense{i}", f"dense.{i}"
            if i == 0:
                keys[f"{tf}/conv0/filters"] = (f"{pt}.conv0.conv.weight", "hwio")
                keys[f"{tf}/conv0/bias"] = (f"{pt}.conv0.conv.bias", "vector")
            for k in range(1 if i == 0 else 0, 4):
                keys[f"{tf}/conv{k}/depthwise_filter"] = (f"{pt}.conv{k}.depthwise.weight",
                                                          "depthwise")
                keys[f"{tf}/conv{k}/pointwise_filter"] = (f"{pt}.conv{k}.pointwise.weight",
                                                          "hwio")
                keys[f"{tf}/conv{k}/bias"] = (f"{pt}.conv{k}.pointwise.bias", "vector")
        keys["fc/weights"] = ("fc.weight", "fc")
        keys["fc/bias"] = ("fc.bias", "vector")
        return keys

    @torch.no_grad()
    def load_tfjs_weights(self, tensors: OrderedDict[str, np.ndarray] | dict[str, np.ndarray],
                          source: str = "weights") -> None:
        """Copy face-api tensors into the net's parameters (layouts in :meth:`tfjs_key_map`)."""
        key_map = self.tfjs_key_map()
        params = dict(self.named_parameters())
        assert sorted(p for p, _ in key_map.values()) == sorted(params), \
            "key map must cover every parameter"
        missing = [k for k in key_map if k not in tensors]
        unused = [k for k in tensors if k not in key_map]
        if missing or unused:
            raise WeightsError(f"{source} does not match face-api's {type(self).__name__}: "
                               f"missing tensors {missing or 'none'}, unused tensors "
                               f"{unused or 'none'}")
        permute = {"hwio": (3, 2, 0, 1),        # [kh, kw, in, out] -> [out, in, kh, kw]
                   "depthwise": (2, 3, 0, 1),   # [kh, kw, in, 1] -> [in, 1, kh, kw]
                   "fc": (1, 0)}                # x @ W, W [in, out] -> nn.Linear [out, in]
        for tf_name, (param_name, layout) in key_map.items():
            value = np.asarray(tensors[tf_name], dtype=np.float32)
            param = params[param_name]
            if layout in permute and value.ndim == len(permute[layout]):
                value = value.transpose(permute[layout])
            if tuple(value.shape) != tuple(param.shape):
                raise WeightsError(f"{source}: tensor {tf_name!r} has shape "
                                   f"{list(np.shape(tensors[tf_name]))}, which does not fit "
                                   f"{param_name} {list(param.shape)}")
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))

    # ---- inference

    def head(self, crops: Tensor) -> Tensor:
        """``[N, 3, 112, 112]`` crops in [-1, 1] -> ``[N, num_outputs]`` raw fc outputs."""
        check_images(crops, "crops", size=self.input_size, values=False,
                     fix="cut them with face_crop(images, boxes)")
        x = ((crops + 1) * 127.5 - self.mean_rgb) / 255
        for block in self.dense:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))   # avgPool 7x7/2 'valid' on a 7x7 map = the mean


class Landmark68Net(_FaceApiNet):
    """face-api's 68-point landmark net (iBUG / dlib point order). Random weights until
    loaded (:meth:`load`).

    ``forward(crops)``: ``[N, 3, 112, 112]`` crops in [-1, 1] (from :func:`face_crop`) ->
    ``[N, 68, 2]`` points (x, y) in crop unit coordinates (the net's 136 outputs, reshaped);
    ``landmarks(images, boxes)``: crop and map back to image pixels.
    """

    asset_files = ("landmark68.json", "landmark68.bin")
    num_outputs = 136

    def forward(self, crops: Tensor) -> Tensor:
        return self.head(crops).view(-1, 68, 2)

    def landmarks(self, images: Tensor, boxes: Tensor) -> Tensor:
        """``images [N, 3, H, W]`` in [-1, 1] (or one image for all boxes), face ``boxes
        [N, 4]`` (x1, y1, x2, y2 pixels) -> ``[N, 68, 2]`` landmarks in image pixels."""
        crops, transform = face_crop(images, boxes, self.input_size)
        return transform.to_image(self(crops))


class ExpressionNet(_FaceApiNet):
    """face-api's expression net: softmax over :data:`EXPRESSIONS`. Random weights until
    loaded (:meth:`load`).

    ``forward(crops)``: ``[N, 3, 112, 112]`` crops in [-1, 1] -> ``[N, 7]`` probabilities;
    ``logits(crops)`` the pre-softmax scores; ``probabilities(images, boxes)`` crops first.
    """

    asset_files = ("expression.json", "expression.bin")
    num_outputs = len(EXPRESSIONS)

    def logits(self, crops: Tensor) -> Tensor:
        return self.head(crops)

    def forward(self, crops: Tensor) -> Tensor:
        return torch.softmax(self.head(crops), dim=1)

    def probabilities(self, images: Tensor, boxes: Tensor) -> Tensor:
        """``images [N, 3, H, W]`` in [-1, 1] (or one image for all boxes), face ``boxes
        [N, 4]`` (x1, y1, x2, y2 pixels) -> ``[N, 7]`` probabilities over EXPRESSIONS."""
        crops, _ = face_crop(images, boxes, self.input_size)
        return self(crops)
