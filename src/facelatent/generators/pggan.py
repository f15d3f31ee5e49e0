"""Progressive GAN (Karras et al. 2018) in plain PyTorch, loaded from InterFaceGAN's `.pth`.

InterFaceGAN (genforce/interfacegan) converts NVIDIA's TensorFlow PGGAN into a PyTorch state
dict (``pggan_celebahq.pth``); ``pggan:PATH`` loads such a file. The network is rebuilt from the
file's tensor names and shapes, never from its name:

- ``layer0.conv.weight [c4, z_dim, 4, 4]``: z_dim and the 4x4 width;
- one ``output{k}`` (toRGB) per block: the resolution ``4 * 2**k`` of the last;
- ``layer{2k}.conv.weight [out, in, 3, 3]`` (nearest upsampling, then a conv) or
  ``layer{2k}.weight [3, 3, in, out]`` (the two as one transposed conv, TF's ``fused_scale``),
  block by block: the widths and the upsampling;
- ``lod``: the level of detail the file was saved at (0 for a finished network; with lod L the
  last L blocks are skipped and the image upsampled, as InterFaceGAN's module does).

Every layer is: pixel norm of its input, [2x upsampling], conv, ``* gain / sqrt(fan_in)`` (gain
sqrt 2; 1 for toRGB), bias, leaky ReLU 0.2 (none for toRGB). The first layer is the TF "Dense"
written as a 4x4 conv (padding 3) of z seen as a 1x1 image, so its pixel norm is PGGAN's own
normalisation of z.

Z, W and the Generator contract: PGGAN has no mapping network. Here ``w_dim = z_dim``,
``num_ws = 1`` and ``mapping(z)`` is InterFaceGAN's ``preprocess``: z rescaled onto the sphere of
radius sqrt(z_dim) (sqrt 512 for the released networks). ``synthesis(w)`` is the network itself.
InterFaceGAN's PGGAN boundaries are directions in that space: an edit moves w and synthesises it
(their edit.py does the same, without normalising again). ``w_avg`` is zero (the centre of the
sphere) and ``truncation_psi`` pulls w toward it as the contract says; since the first layer
normalises its input, any psi > 0 only changes w's length, not the image: PGGAN has no
truncation trick (psi 0 gives the zero input, one flat image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facelatent.errors import FileFormatError
from facelatent.generators.base import BufferedGenerator, check_ws, check_z, truncate
from facelatent.generators.interfacegan import (
    Layout,
    StateDict,
    fused_upsample_conv,
    onto_sphere,
    pixel_norm,
    read_layout,
    read_state_dict,
    shown_blocks,
    upsample_nearest,
)

__all__ = ["PGGAN", "PGGANConfig", "load_pggan"]

GAIN = math.sqrt(2.0)    # He initialisation's gain, kept by the equalised learning rate


@dataclass(frozen=True)
class PGGANConfig:
    z_dim: int                  # size of z (the first layer's input channels)
    layout: Layout              # the blocks: widths, upsampling, level of detail

    @property
    def resolution(self) -> int:
        return self.layout.resolution


class Conv(nn.Module):
    """pixel norm -> [2x upsampling] -> conv -> ``* gain / sqrt(fan_in) + bias`` -> [lrelu]."""

    def __init__(self, cin: int, cout: int, kernel: int, *, padding: int, up: str | None = None,
                 gain: float = GAIN, act: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin * kernel * kernel)
        self.padding, self.up, self.act = padding, up, act   # up: None, "nearest" or "fused"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(x)
        if self.up == "fused":
            x = fused_upsample_conv(x, self.weight)
        else:
            if self.up == "nearest":
                x = upsample_nearest(x)
            x = F.conv2d(x, self.weight, padding=self.padding)
        x = x * self.scale + self.bias.reshape(1, -1, 1, 1)
        return F.leaky_relu(x, 0.2) if self.act else x


class Block(nn.Module):
    """Two convs at one resolution (the first upsamples, or reads z for 4x4) and a toRGB."""

    def __init__(self, cin: int, cout: int, first: str, img_channels: int) -> None:
        super().__init__()
        if first == "dense":
            self.conv0 = Conv(cin, cout, 4, padding=3)
        else:
            self.conv0 = Conv(cin, cout, 3, padding=1, up=first)
        self.conv1 = Conv(cout, cout, 3, padding=1)
        self.torgb = Conv(cout, img_channels, 1, padding=0, gain=1.0, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.conv0(x))


class PGGAN(BufferedGenerator):
    """The generator contract (see `facelatent.generators.base.Generator`) for PGGAN; Z-only:
    ``w`` is z on its sphere, ``num_ws`` 1 (see the module docstring)."""

    def __init__(self, cfg: PGGANConfig, name: str = "pggan") -> None:
        super().__init__()
        self.cfg, self.name = cfg, name
        self.z_dim = self.w_dim = cfg.z_dim
        self.num_ws, self.resolution = 1, cfg.resolution
        widths = cfg.layout.widths
        firsts = ("dense", *("fused" if f else "nearest" for f in cfg.layout.fused))
        self.blocks = nn.ModuleList(Block(i, o, f, cfg.layout.img_channels)
                                    for i, o, f in zip((cfg.z_dim, *widths), widths, firsts))
        self.register_buffer("_w_avg", torch.zeros(cfg.z_dim))

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z `[N, z_dim]` -> w `[N, z_dim]`: z rescaled to length sqrt(z_dim) (InterFaceGAN's
        preprocess), then pulled toward zero by `truncation_psi` (no effect on the image)."""
        check_z(z, self.z_dim)
        return truncate(onto_sphere(z.to(self.device, torch.float32)), self.w_avg, truncation_psi)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """ws `[N, z_dim]` or `[N, 1, z_dim]` -> images `[N, 3, res, res]`, nominally [-1, 1]."""
        ws = check_ws(ws, self.w_dim, self.num_ws)
        x = ws[:, 0].to(self.device, torch.float32)[:, :, None, None]
        shown = shown_blocks(len(self.blocks), self.cfg.layout.lod)
        for block in self.blocks[:shown]:
            x = block(x)
        img = self.blocks[shown - 1].torgb(x)
        for _ in range(len(self.blocks) - shown):
            img = upsample_nearest(img)
        return img



# --- loading InterFaceGAN's .pth ----------------------------------------------------------------

def config_from_state_dict(tensors: StateDict) -> PGGANConfig:
    """The architecture an InterFaceGAN PGGAN state dict was saved from (module docstring)."""
    c4, z_dim, kh, kw = tensors.shape("layer0.conv.weight", 4)
    if (kh, kw) != (4, 4):
        raise FileFormatError(f"{tensors.where}: layer0.conv.weight is {kh}x{kw}, expected the "
                              "4x4 first layer of PGGAN")
    return PGGANConfig(z_dim=z_dim, layout=read_layout(tensors, "", c4, "PGGAN"))


@torch.no_grad()
def load_state(model: PGGAN, tensors: StateDict) -> None:
    """Copy InterFaceGAN's tensors into ``model``, every key mapped and its shape checked."""
    def conv(ours: Conv, theirs: str, fused: bool = False) -> None:
        if fused:   # stored [k, k, in, out]
            k = ours.weight.shape[-1]
            weight = tensors.take(f"{theirs}.weight", [k, k, *ours.weight.shape[1::-1]])
            ours.weight.copy_(weight.permute(3, 2, 0, 1))
        else:
            ours.weight.copy_(tensors.take(f"{theirs}.conv.weight", ours.weight.shape))
        ours.bias.copy_(tensors.take(f"{theirs}.wscale.bias", ours.bias.shape))

    for b, block in enumerate(model.blocks):
        assert isinstance(block, Block)
        conv(block.conv0, f"layer{2 * b}", fused=block.conv0.up == "fused")
        conv(block.conv1, f"layer{2 * b + 1}")
        conv(block.torgb, f"output{b}")
    tensors.finish()


def load_pggan(path: str | Path) -> PGGAN:
    """Build the PGGAN generator saved in an InterFaceGAN ``.pth`` (e.g. ``pggan_celebahq.pth``),
    float32 on the CPU, named ``pggan:PATH``. Read with ``torch.load(weights_only=True)``."""
    path = Path(path)
    tensors = StateDict(read_state_dict(path, "an InterFaceGAN PGGAN checkpoint (.pth)"), str(path))
    if "truncation.w_avg" in tensors.left:
        raise FileFormatError(f"{path} is an InterFaceGAN StyleGAN checkpoint; load it as "
                              f"stylegan1:{path}")
    model = PGGAN(config_from_state_dict(tensors), name=f"pggan:{path}")
    load_state(model, tensors)
    return model.eval().requires_grad_(False)
