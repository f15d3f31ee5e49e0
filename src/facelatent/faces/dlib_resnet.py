"""dlib's ResNet face recogniser (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The weights are face-api's copy of dlib's net (a tfjs weight manifest, uint8-quantised per
tensor); the forward pass reproduces face-api's ``FaceRecognitionNet``, which reproduces dlib's:

    150x150 RGB chip, (x - mean RGB) / 256
    conv 7x7/2 valid (32) -> maxpool 3x3/2 valid                       72 -> 35 px
    3 residual blocks of 32, then down + 3 of 64, down + 2 of 128,
    down + 2 of 256, a last down block of 256                          35 -> 17 -> 8 -> 4 -> 1
    global average pool -> fc 256 -> 128 (no bias)

Every conv is conv + bias followed by a per-channel scale and offset (dlib's ``affine`` layer,
i.e. batch norm folded for inference). A residual block is ``relu(conv2(relu(conv1(x))) + x)``
with 3x3 'same' convs; a down block runs conv1 with stride 2 and no padding and adds a 2x2/2
average pool of its input, zero-padded where the two differ in channels or size (dlib's
``add_prev`` takes the larger of each dimension and fills with zeros: in the last block the
conv branch is 1x1 and the pool 2x2).

Descriptors: dlib's native descriptor is *not* L2-normalised: its norm was 1.36-1.41 on the
test photos, and dlib's rule "same person if the Euclidean distance < 0.6" is stated in that
native space. :meth:`DlibResNetEmbedder.forward` returns unit vectors (for cosine scores and
losses); :meth:`DlibResNetEmbedder.descriptor` returns the native ones. Measured on the test
photos, native distances are 1.37-1.41 times unit-vector distances, so dlib's 0.6 corresponds
to a unit-vector distance of about 0.43, i.e. a cosine of about 0.91 (same person: cosine
0.95-0.99; Obama vs Biden: 0.81-0.84).

Alignment (:func:`dlib_chip`) reproduces ``dlib.get_face_chip_details(shape, 150, 0.25)`` +
``extract_image_chip`` for 5-point shapes; its docstring says how the template was obtained.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.errors import WeightsError
from facelatent.faces.align import chip_transform
from facelatent.formats.tfjs import read_weights
from facelatent.images import check_images

__all__ = ["CHIP_PADDING", "CHIP_SIZE", "DlibResNetEmbedder", "dlib_chip"]

CHIP_SIZE = 150
CHIP_PADDING = 0.25
MEAN_RGB = (122.782, 117.001, 104.298)  # dlib's input_rgb_image_sized<150> means, 0-255 scale

# ------------------------------------------------------------------------------------ alignment

def dlib_chip(image: Tensor, points5: Tensor, size: int = CHIP_SIZE,
              padding: float = CHIP_PADDING) -> Tensor:
    """Aligned face chips as dlib cuts them for its recogniser, differentiable and batched.

    ``image``: ``[N, 3, H, W]`` float RGB in [-1, 1]; ``points5``: ``[N, 5, 2]`` pixel (x, y)
    coordinates from dlib's 5-point shape predictor (or a detector giving the same points, in
    the same order). Returns ``[N, 3, size, size]`` in [-1, 1]; pixels outside the image are
    black (-1), as in dlib.

    Like dlib's ``extract_image_chip``, a face more than about twice the chip's width is first
    shrunk with dlib's 5x5 Gaussian pyramid (one level per halving, with dlib's own mapping of
    coordinates between levels), then sampled bilinearly: sampling the full image instead
    aliases and costs up to 0.002 in cosine against native dlib. Gradients flow to ``image``
    and ``points5``; the pyramid depth is chosen without gradient.
    """
    check_images(image, "image", values=False)
    if points5.ndim != 3 or points5.shape[1:] != (5, 2) or points5.shape[0] != image.shape[0]:
        raise ValueError(f"points5 must have shape [N, 5, 2] with N = {image.shape[0]} (one row "
                         f"of 5 landmarks per image), got {list(points5.shape)}")
    if size < 2 or padding < 0:
        raise ValueError(f"size must be >= 2 and padding >= 0, got size={size}, "
                         f"padding={padding}")
    A, t = chip_transform(points5.to(image.dtype), size, padding)
    depths = _pyramid_depths(A, size)
    regions = _pyramid_regions(A, t, size, depths, image.shape[-2:])
    chips = image.new_empty(image.shape[0], 3, size, size)
    for key in sorted(set(zip(depths, regions))):
        depth, (x0, y0, x1, y1) = key
        idx = [i for i, k in enumerate(zip(depths, regions)) if k == key]
        # Like dlib, shrink only the part of the image around the chip: the pyramid's pixel grid
        # starts at the region's corner, so the same crop gives the same pixels as dlib.
        level = image[idx, :, y0:y1, x0:x1] + 1               # +1: black (0) outside the image
        need = 2 ** (depth + 2) + 1   # every level must stay at least 5 px for the 5x5 filter
        if depth and min(level.shape[-2:]) < need:            # a face almost off the image
            level = F.pad(level, (0, max(need - level.shape[-1], 0),
                                  0, max(need - level.shape[-2], 0)))
        A_d, t_d = A[idx], t[idx] - t.new_tensor([x0, y0])
        for _ in range(depth):
            level = _pyramid_down(level)
            # dlib's pyramid_down<2>::point_down: p / 2 - (1.25, 0.75). (Its filter centres
            # output pixel j on input pixel 2j + 2, so this is a quarter pixel off; dlib's
            # chips carry that offset and so do these.)
            A_d, t_d = A_d / 2, t_d / 2 - t_d.new_tensor([1.25, 0.75])
        chips[idx] = _sample(level, A_d, t_d, size) - 1
    return chips


def _pyramid_depths(A: Tensor, size: int) -> list[int]:
    """How many pyramid levels dlib's extract_image_chips uses for each chip.

    The chip's rectangle is ``w = size * pitch + 1`` image pixels wide (pitch: image pixels per
    chip pixel); dlib halves it with rect_down (``w -> (w + 1) / 2``) and goes one level deeper
    while the halved rectangle is still larger than the chip.
    """
    pitch = torch.sqrt(torch.det(A.detach().double()).abs())
    depths = []
    for w in ((size - 1) * pitch + 1).tolist():
        depth, w = 0, (w + 1) / 2
        while w * w > size * size:
            depth, w = depth + 1, (w + 1) / 2
        depths.append(depth)
    return depths


def _pyramid_regions(A: Tensor, t: Tensor, size: int, depths: list[int],
                     hw: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The image region (x0, y0, x1, y1) dlib shrinks for each chip with a pyramid.

    dlib cuts the chip's rotated rectangle, grown by a margin that covers the pyramid filter at
    every level (2, 6, 14, 30, ... pixels: 2 ** (depth + 2) - 2), out of the image (clipped to
    it) before building the pyramid. Chips without a pyramid read the whole image (bilinear
    sampling does not depend on where the crop starts), which keeps a batch of differently
    placed faces in one call.
    """
    height, width = hw
    corners = A.new_tensor([[0.0, 0.0], [size - 1.0, 0.0], [0.0, size - 1.0],
                            [size - 1.0, size - 1.0]])
    pts = (A.detach()[:, None] @ corners[None, :, :, None]).squeeze(-1) + t.detach()[:, None]
    lo, hi = pts.amin(dim=1).tolist(), pts.amax(dim=1).tolist()
    regions = []
    for depth, (ax, ay), (bx, by) in zip(depths, lo, hi):
        if depth == 0:
            regions.append((0, 0, width, height))
            continue
        g = 2 ** (depth + 2) - 2
        x0 = min(max(round(ax - g), 0), width - 1)
        y0 = min(max(round(ay - g), 0), height - 1)
        x1 = max(min(round(bx + g) + 1, width), x0 + 1)
        y1 = max(min(round(by + g) + 1, height), y0 + 1)
        regions.append((x0, y0, x1, y1))
    return regions


def _pyramid_down(x: Tensor) -> Tensor:
    """dlib's pyramid_down<2>: 5x5 binomial filter, keep every other row and column.

    ``[N, C, H, W] -> [N, C, (H - 3) // 2, (W - 3) // 2]``; output pixel (i, j) is centred on
    input pixel (2i + 2, 2j + 2).
    """
    taps = x.new_tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = (taps[:, None] * taps[None, :]).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(x, kernel, stride=2, groups=x.shape[1])


def _sample(image: Tensor, A: Tensor, t: Tensor, size: int) -> Tensor:
    """Bilinear chips: chip pixel (u, v) takes image pixel ``A @ (u, v) + t`` (zeros outside)."""
    height, width = image.shape[-2:]
    # affine_grid works in normalised coordinates (align_corners=False): chip pixel u sits at
    # u_n = (2u + 1) / size - 1, i.e. u = (size - 1) / 2 + u_n * size / 2, and image pixel x at
    # x_n = (2x + 1) / W - 1.
    wh = image.new_tensor([width, height])
    centre = A @ A.new_tensor([(size - 1) / 2] * 2) + t                   # image of the middle
    theta = torch.cat([A * (size / wh)[:, None], ((2 * centre + 1) / wh - 1)[..., None]], dim=2)
    grid = F.affine_grid(theta, [image.shape[0], image.shape[1], size, size],
                         align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# -------------------------------------------------------------------------------------- network

class ConvScale(nn.Module):
    """conv + bias, then a per-channel scale and offset (dlib's folded batch norm)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        # stride 1: TF 'same' (odd kernel -> symmetric padding); stride 2: 'valid', as dlib.
        pad = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad)
        self.scale = nn.Parameter(torch.ones(out_ch))
        self.offset = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * self.scale[:, None, None] + self.offset[:, None, None]


class Residual(nn.Module):
    """``relu(conv2(relu(conv1(x))) + x)``; with ``down``, conv1 has stride 2 and the skip is
    a 2x2/2 average pool, zero-padded to the larger channel count and size."""

    def __init__(self, in_ch: int, out_ch: int, down: bool = False) -> None:
        super().__init__()
        if not down and in_ch != out_ch:
            raise ValueError("a residual block without 'down' keeps its channel count")
        self.down = down
        self.conv1 = ConvScale(in_ch, out_ch, 3, stride=2 if down else 1)
        self.conv2 = ConvScale(out_ch, out_ch, 3, stride=1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        if out.shape != skip.shape:
            c, h, w = (max(a, b) for a, b in zip(out.shape[1:], skip.shape[1:], strict=True))
            out = F.pad(out, (0, w - out.shape[3], 0, h - out.shape[2], 0, c - out.shape[1]))
            skip = F.pad(skip, (0, w - skip.shape[3], 0, h - skip.shape[2], 0, c - skip.shape[1]))
        return F.relu(out + skip)


# (name, in channels, out channels, down) of each residual block, in order; face-api's names.
_BLOCKS = (
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False),
    ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False),
    ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
)


class DlibResNetEmbedder(nn.Module):
    """dlib's 128-d face descriptor net. Random weights until loaded (:meth:`load`).

    ``forward(chips)`` takes ``[N, 3, 150, 150]`` RGB chips in [-1, 1] (cut by
    :func:`dlib_chip`) and returns ``[N, 128]`` unit vectors; ``descriptor`` returns dlib's
    native, unnormalised descriptors; ``embed(images, points5)`` cuts and embeds in one call.
    """

    input_size = CHIP_SIZE
    embedding_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1),
                             persistent=False)
        self.conv32_down = ConvScale(3, 32, 7, stride=2)
        self.blocks = nn.ModuleDict({name: Residual(cin, cout, down)
                                     for name, cin, cout, down in _BLOCKS})
        self.fc = nn.Linear(256, self.embedding_dim, bias=False)

    # ---- loading

    @classmethod
    def from_tfjs(cls, json_path: str | os.PathLike[str],
                  bin_path: str | os.PathLike[str]) -> DlibResNetEmbedder:
        """Build the net from face-api's weight manifest and binary (``face_recognition_model``).

        Every manifest tensor is mapped to one parameter; a missing, unused or misshapen tensor
        raises WeightsError. Returns the net in eval mode, float32, on the CPU.
        """
        model = cls()
        model.load_tfjs_weights(read_weights(json_path, bin_path), source=str(json_path))
        return model.eval()

    @classmethod
    def load(cls) -> DlibResNetEmbedder:
        """The net with face-api's weights from the facelatent cache (asset ``face-api``)."""
        from facelatent.weights import file_path
        return cls.from_tfjs(file_path("face-api", "recognition.json"),
                             file_path("face-api", "recognition.bin"))

    def tfjs_key_map(self) -> dict[str, str]:
        """face-api tensor name -> parameter name, for every parameter of the net."""
        def conv_scale(tf_prefix: str, prefix: str) -> dict[str, str]:
            return {f"{tf_prefix}/conv/filters": f"{prefix}.conv.weight",
                    f"{tf_prefix}/conv/bias": f"{prefix}.conv.bias",
                    f"{tf_prefix}/scale/weights": f"{prefix}.scale",
                    f"{tf_prefix}/scale/biases": f"{prefix}.offset"}
        keys = conv_scale("conv32_down", "conv32_down")
        for name, *_ in _BLOCKS:
            keys |= conv_scale(f"{name}/conv1", f"blocks.{name}.conv1")
            keys |= conv_scale(f"{name}/conv2", f"blocks.{name}.conv2")
        keys["fc"] = "fc.weight"
        return keys

    @torch.no_grad()
    def load_tfjs_weights(self, tensors: OrderedDict[str, np.ndarray] | dict[str, np.ndarray],
                          source: str = "weights") -> None:
        """Copy face-api tensors (HWIO filters, [in, out] fc) into the net's parameters."""
        key_map = self.tfjs_key_map()
        params = dict(self.named_parameters())
        assert sorted(key_map.values()) == sorted(params), "key map must cover every parameter"
        missing = [k for k in key_map if k not in tensors]
        unused = [k for k in tensors if k not in key_map]
        if missing or unused:
            raise WeightsError(f"{source} does not match the dlib ResNet: missing tensors "
                               f"{missing or 'none'}, unused tensors {unused or 'none'}")
        for tf_name, param_name in key_map.items():
            value = torch.from_numpy(np.asarray(tensors[tf_name], dtype=np.float32))
            if value.ndim == 4:       # conv filters: [kh, kw, in, out] -> [out, in, kh, kw]
                value = value.permute(3, 2, 0, 1)
            elif value.ndim == 2:     # fc: x @ W with W [in, out] -> nn.Linear weight [out, in]
                value = value.t()
            param = params[param_name]
            if value.shape != param.shape:
                raise WeightsError(f"{source}: tensor {tf_name!r} has shape "
                                   f"{list(tensors[tf_name].shape)}, which does not fit "
                                   f"{param_name} {list(param.shape)}")
            param.copy_(value)

    # ---- inference

    def descriptor(self, chips: Tensor) -> Tensor:
        """dlib's native descriptor: ``[N, 3, 150, 150]`` chips in [-1, 1] -> ``[N, 128]``,
        not normalised (its norm is near 1 but varies per face)."""
        check_images(chips, "chips", size=CHIP_SIZE, values=False,
                     fix="cut them with dlib_chip(image, points5)")
        x = ((chips + 1) * 127.5 - self.mean_rgb) / 256
        x = F.relu(self.conv32_down(x))
        x = F.max_pool2d(x, 3, 2)
        for block in self.blocks.values():
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, chips: Tensor) -> Tensor:
        """``[N, 3, 150, 150]`` chips in [-1, 1] -> ``[N, 128]`` L2-normalised embeddings."""
        return F.normalize(self.descriptor(chips), dim=1)

    def embed(self, images: Tensor, points5: Tensor) -> Tensor:
        """Cut dlib chips from ``images [N, 3, H, W]`` in [-1, 1] at ``points5 [N, 5, 2]``
        (dlib 5-point order, pixel x, y) and embed them: ``[N, 128]`` unit vectors."""
        return self(dlib_chip(images, points5))

