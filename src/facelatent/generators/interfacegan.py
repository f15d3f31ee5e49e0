"""What InterFaceGAN's PGGAN and StyleGAN (v1) PyTorch checkpoints share: how the `.pth` file is
read, the tensors it holds are taken one by one, and the layers both networks are built from.

genforce/interfacegan converts NVIDIA's TensorFlow pickles into PyTorch state dicts
(``torch.save(model.state_dict())``): an ordered dict of tensors and nothing else, which
`read_state_dict` opens with ``torch.load(weights_only=True)``, torch's restricted reader. It
builds tensors and plain containers and refuses any other global before calling it, so a file
that asks to run code is refused and nothing from it runs.

Layers (Karras et al.'s equalised learning rate: a weight is stored unit-scale and multiplied by
``gain / sqrt(fan_in)`` when used):

- `pixel_norm`: each pixel's feature vector divided by its root mean square (plus 1e-8).
- `onto_sphere`: z rescaled to length sqrt(z_dim), InterFaceGAN's ``preprocess`` of Z codes.
- `upsample_nearest`: 2x nearest-neighbour upsampling.
- `fused_upsample_conv`: a 3x3 conv after 2x upsampling written as one stride-2 transposed conv
  (the TF code's ``fused_scale``): the kernel is padded to 5x5 and its four 4x4 corners summed.
- `shown_blocks`: the blocks a level of detail ``lod`` runs (the others are nearest upsampling).

`read_layout` reads what both files say the same way: one toRGB per block, each block's first
conv stored as ``{prefix}layer{2k}.conv.weight [out, in, 3, 3]`` (nearest upsampling, then a
conv) or ``{prefix}layer{2k}.weight [3, 3, in, out]`` (TF's ``fused_scale``), and the level of
detail ``lod``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from facelatent.errors import FileFormatError
from facelatent.generators.torch_checkpoint import read_torch_checkpoint

__all__ = [
    "Layout",
    "StateDict",
    "fused_upsample_conv",
    "onto_sphere",
    "pixel_norm",
    "read_layout",
    "read_state_dict",
    "shown_blocks",
    "upsample_nearest",
]

PIXEL_NORM_EPS = 1e-8


def read_state_dict(path: str | Path, kind: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``kind`` names the expected file in errors), read with
    ``torch.load(weights_only=True)``. `FileFormatError` naming the file for a global the reader
    refuses (nothing from the file runs), a damaged file, or one that is not a dict of tensors.
    """
    path = Path(path)
    data = read_torch_checkpoint(path, kind)
    if not isinstance(data, Mapping):
        raise FileFormatError(f"{path} holds a {type(data).__name__}; expected {kind}, a state "
                              "dict of tensors")
    bad = [str(k) for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if bad:
        hint = "; a rosinality StyleGAN2 checkpoint loads as rosinality:PATH" \
            if "g_ema" in bad else ""
        raise FileFormatError(f"{path}: entries {bad[:3]} are not tensors; expected {kind}{hint}")
    return {str(k): v for k, v in data.items()}


class StateDict:
    """A checkpoint's tensors, handed out once each: `take` checks the shape and removes the
    tensor, and `finish` fails on any the loader did not take."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], where: str) -> None:
        self.left, self.where = dict(tensors), where

    def shape(self, key: str, ndim: int) -> list[int]:
        """The shape of ``key`` (not taken), which must have ``ndim`` dimensions."""
        if key not in self.left:
            raise FileFormatError(f"{self.where} has no tensor {key!r}")
        shape = list(self.left[key].shape)
        if len(shape) != ndim:
            raise FileFormatError(f"{self.where}: {key} has shape {shape}, expected {ndim} "
                                  "dimensions")
        return shape

    def take(self, key: str, shape: tuple[int, ...] | list[int]) -> torch.Tensor:
        """Tensor ``key`` as float32, which must have ``shape``; it is taken out."""
        if key not in self.left:
            raise FileFormatError(f"{self.where} has no tensor {key!r}")
        value = self.left.pop(key)
        if list(value.shape) != list(shape):
            raise FileFormatError(f"{self.where}: {key} has shape {list(value.shape)}, expected "
                                  f"{list(shape)} for the architecture its other tensors give")
        if not torch.isfinite(value).all():
            raise FileFormatError(f"{self.where}: {key} holds NaN or infinite values")
        return value.float()

    def finish(self) -> None:
        if self.left:
            raise FileFormatError(f"{self.where} has tensors this network does not use: "
                                  f"{', '.join(sorted(self.left)[:5])}")


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """`x [N, C, ...]` divided by the root mean square over C (plus 1e-8) at each position."""
    return x / torch.sqrt(x.square().mean(dim=1, keepdim=True) + PIXEL_NORM_EPS)


def onto_sphere(z: torch.Tensor) -> torch.Tensor:
    """`z [N, D]` rescaled to length sqrt(D): InterFaceGAN's ``preprocess`` of Z codes."""
    return z / z.norm(dim=1, keepdim=True) * math.sqrt(z.shape[1])


def upsample_nearest(x: torch.Tensor) -> torch.Tensor:
    """`[N, C, H, W]` -> `[N, C, 2H, 2W]`, each pixel repeated 2x2."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def fused_upsample_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """2x upsampling and the 3x3 conv ``weight [out, in, 3, 3]`` in one transposed conv:
    `x [N, in, H, W]` -> `[N, out, 2H, 2W]`. Summing the four 4x4 corners of the kernel padded
    to 5x5 is what makes the stride-2 transposed conv equal upsample-then-conv (with the
    upsampling's pixels spread over 2x2); the result is the TF code's ``fused_scale``."""
    k = F.pad(weight, (1, 1, 1, 1))
    k = k[:, :, 1:, 1:] + k[:, :, :-1, 1:] + k[:, :, 1:, :-1] + k[:, :, :-1, :-1]
    return F.conv_transpose2d(x, k.transpose(0, 1), stride=2, padding=1)


def shown_blocks(num_blocks: int, lod: float) -> int:
    """How many of ``num_blocks`` blocks (4x4 first) run at level of detail ``lod``: block
    ``b`` (1-based) runs while ``b + lod < num_blocks + 1``, as InterFaceGAN's PyTorch modules
    decide; the image of the last one is then upsampled to full size. lod 0 runs them all."""
    return sum(1 for b in range(1, num_blocks + 1) if b + lod < num_blocks + 1)


@dataclass(frozen=True)
class Layout:
    """The blocks of a PGGAN or StyleGAN synthesis network, as its tensors give them."""

    widths: tuple[int, ...]      # channels of the blocks at 4x4, 8x8, ..., resolution
    fused: tuple[bool, ...]      # per block from 8x8: upsampling fused into a transposed conv
    lod: float = 0.0             # level of detail; 0 = every block runs
    img_channels: int = 3        # RGB

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.widths) - 1)

    def __post_init__(self) -> None:
        if len(self.fused) != len(self.widths) - 1:
            raise ValueError(f"fused needs one flag per block after the first "
                             f"({len(self.widths) - 1}), got {len(self.fused)}")
        if not 0 <= self.lod <= len(self.widths) - 1:
            raise FileFormatError(f"lod {self.lod} is outside [0, {len(self.widths) - 1}] for "
                                  f"a network of {len(self.widths)} blocks")


def read_layout(tensors: StateDict, prefix: str, width4: int, family: str) -> Layout:
    """The `Layout` of the network whose keys start with ``prefix`` (``""`` or
    ``"synthesis."``), given the 4x4 width ``width4``; takes the ``lod`` tensor."""
    num_blocks = 0
    while f"{prefix}output{num_blocks}.conv.weight" in tensors.left:
        num_blocks += 1
    if num_blocks == 0:
        raise FileFormatError(f"{tensors.where} has no toRGB layer {prefix}output0.conv.weight; "
                              f"is it an InterFaceGAN {family} generator?")
    widths, fused = [width4], []
    for b in range(1, num_blocks):
        key = f"{prefix}layer{2 * b}"
        fused.append(f"{key}.weight" in tensors.left)
        widths.append(tensors.shape(f"{key}.weight", 4)[3] if fused[-1]
                      else tensors.shape(f"{key}.conv.weight", 4)[0])
    img_channels = tensors.shape(f"{prefix}output0.conv.weight", 4)[0]
    if img_channels != 3:
        raise FileFormatError(f"{tensors.where}: the network makes {img_channels}-channel "
                              "images; only RGB (3) is supported")
    lod = float(tensors.take(f"{prefix}lod", []))
    return Layout(widths=tuple(widths), fused=tuple(fused), lod=lod, img_channels=img_channels)
