"""StyleGAN2 / StyleGAN2-ADA (Karras et al. 2020) in plain PyTorch, loaded from NVIDIA's `.pkl`.

Read top to bottom: the equalised-learning-rate fully connected layer, the mapping network
(z -> w), the modulated convolution, the synthesis layers and blocks, the generator under
facelatent's contract, and the loader.

The architecture comes from the checkpoint: NVIDIA's pickles record each network's constructor
arguments (`facelatent.formats.nvidia_pickle`), which `StyleGAN2Config.from_init_kwargs` reads.
The state-dict keys are NVIDIA's (``mapping.fc0.weight``, ``synthesis.b64.conv0.affine.bias``),
under ``mapping_net.`` / ``synthesis_net.blocks.`` here.

W+ rows, in order (``num_ws = 2 * log2(resolution) - 2``): the 4x4 block's conv, then for each
block at 8, 16, ... its upsampling conv and its second conv. A block's toRGB layer reads the row
after its last conv (the next block's first row, the final extra row for the last block), as in
NVIDIA's code.

Noise: the layers add their stored constant noise (``noise_const``, NVIDIA's
``noise_mode='const'``, InterFaceGAN's ``RANDOMIZE_NOISE=False``) by default; set
``noise_mode`` to ``'random'`` or ``'none'`` on the generator for the other two behaviours.
Everything runs in float32: the checkpoints' ``num_fp16_res`` is a GPU speed setting, ignored.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facelatent.errors import FileFormatError
from facelatent.formats.nvidia_pickle import NetworkRecord, load_generator_record
from facelatent.generators.base import check_ws, check_z, truncate
from facelatent.generators.stylegan_ops import (
    ACTIVATIONS,
    bias_act,
    fir_filter,
    upfirdn2d,
    upsample2d,
)

NOISE_MODES = ("const", "random", "none")


# NVIDIA's constructor arguments -> our config fields. Those in _IGNORED only tune training or
# GPU speed; any other argument is refused rather than silently dropped.
_TOP = {"z_dim": "z_dim", "c_dim": "c_dim", "w_dim": "w_dim", "img_resolution": "resolution",
        "img_channels": "img_channels"}
_MAPPING = {"num_layers": "mapping_layers", "embed_features": "embed_features",
            "layer_features": "layer_features", "activation": "mapping_activation",
            "lr_multiplier": "lr_multiplier"}
_SYNTHESIS = {"channel_base": "channel_base", "channel_max": "channel_max",
              "architecture": "architecture", "resample_filter": "resample_filter",
              "conv_clamp": "conv_clamp", "activation": "synthesis_activation",
              "use_noise": "use_noise"}
_IGNORED = frozenset({"w_avg_beta", "num_fp16_res", "fp16_channels_last", "channels_last"})


@dataclass(frozen=True)
class StyleGAN2Config:
    z_dim: int = 512                    # size of z
    c_dim: int = 0                      # size of the class label; 0 = unconditional
    w_dim: int = 512                    # size of w
    resolution: int = 1024              # output height and width, a power of two >= 4
    img_channels: int = 3               # RGB
    mapping_layers: int = 8             # fully connected layers of the mapping network
    embed_features: int | None = None   # label embedding size; None = w_dim (c_dim > 0 only)
    layer_features: int | None = None   # hidden width of the mapping network; None = w_dim
    mapping_activation: str = "lrelu"   # activation of the mapping layers
    lr_multiplier: float = 0.01         # learning-rate multiplier of the mapping layers
    channel_base: int = 32768           # channels at resolution r: min(channel_base // r, ...)
    channel_max: int = 512              # ... channel_max)
    architecture: str = "skip"          # only 'skip' (toRGB at every block, summed) is built
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)  # FIR taps of every 2x upsample
    conv_clamp: float | None = None     # clamp conv outputs to +-conv_clamp; None = no clamp
    synthesis_activation: str = "lrelu" # activation of the synthesis convs
    use_noise: bool = True              # layers have noise inputs

    @property
    def log2_res(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, self.log2_res + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * self.log2_res - 2

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def __post_init__(self) -> None:
        if self.resolution < 4 or 2**self.log2_res != self.resolution:
            raise FileFormatError(f"StyleGAN2 resolution must be a power of two >= 4, got "
                                  f"{self.resolution}")
        if self.architecture != "skip":
            raise FileFormatError(f"StyleGAN2 architecture {self.architecture!r} is not supported;"
                                  " only 'skip' (NVIDIA's default generator) is")
        for name in ("mapping_activation", "synthesis_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise FileFormatError(f"StyleGAN2 {name} {getattr(self, name)!r} is not supported;"
                                      f" expected one of {', '.join(ACTIVATIONS)}")

    @classmethod
    def from_init_kwargs(cls, record: NetworkRecord) -> StyleGAN2Config:
        """The configuration of a pickled ``Generator`` from its constructor arguments."""
        kwargs = dict(record.init_kwargs)
        for name, value in zip(("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"),
                               record.init_args):
            kwargs.setdefault(name, value)
        values: dict[str, Any] = {}
        groups = ((kwargs, _TOP), (kwargs.get("mapping_kwargs") or {}, _MAPPING),
                  (kwargs.get("synthesis_kwargs") or {}, _SYNTHESIS))
        for group, table in groups:
            for key, value in group.items():
                if key in table:
                    values[table[key]] = value
                elif key not in _IGNORED and key not in ("mapping_kwargs", "synthesis_kwargs"):
                    raise FileFormatError(f"StyleGAN2 generator argument {key!r}={value!r} is not "
                                          "supported by facelatent's port")
        missing = [k for k, field_name in _TOP.items() if field_name not in values]
        if missing:
            raise FileFormatError(f"the pickled Generator lacks constructor arguments {missing}")
        if "resample_filter" in values:
            values["resample_filter"] = tuple(float(v) for v in values["resample_filter"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


class FullyConnected(nn.Module):
    """`x [N, in] -> act(x W^T * weight_gain + b * lr_multiplier)`: equalised learning rate."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_multiplier: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.activation = activation
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square (z onto the sphere of radius sqrt(dim))."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z (and label c) -> w: normalise, then `mapping_layers` fully connected layers."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        embed = (cfg.embed_features or cfg.w_dim) if cfg.c_dim > 0 else 0
        hidden = cfg.layer_features or cfg.w_dim
        dims = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        self.embed = FullyConnected(cfg.c_dim, embed) if cfg.c_dim > 0 else None
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            layer = FullyConnected(a, b, cfg.mapping_activation, cfg.lr_multiplier)
            self.add_module(f"fc{i}", layer)
        self.num_layers = cfg.mapping_layers
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))  # truncation centre, from training

    def forward(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = normalize_2nd_moment(z) if z.shape[1] > 0 else None
        if self.embed is not None:
            assert c is not None
            y = normalize_2nd_moment(self.embed(c))
            x = y if x is None else torch.cat([x, y], dim=1)
        assert x is not None
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *,
                   demodulate: bool, up: bool = False,
                   fir: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2's convolution whose input channels are scaled per sample by ``styles``.

    `x [N, I, H, W]`, `weight [O, I, k, k]`, `styles [N, I]` -> `[N, O, H', W']`. With
    ``demodulate`` each output channel is divided by the norm its modulated weights would have,
    which is the same as demodulating the weights and cheaper with a shared weight. ``up``
    doubles the size: a stride-2 transposed conv, then the FIR filter ``fir``.
    """
    x = x * styles[:, :, None, None]
    if up:
        assert fir is not None
        x = F.conv_transpose2d(x, weight.transpose(0, 1).contiguous(), stride=2)
        x = upfirdn2d(x, fir, padding=(1, 1, 1, 1), gain=4.0)
    else:
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demodulate:
        # |weight[o] * styles[n]|^2 summed over inputs and taps, without the [N, O, I, k, k]
        # tensor of modulated weights: sum_i styles[n, i]^2 * sum_taps weight[o, i]^2
        norms = styles.square() @ weight.square().sum(dim=[2, 3]).t()     # [N, O]
        x = x * (norms + 1e-8).rsqrt()[:, :, None, None]
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling) -> + noise -> bias, activation, clamp."""

    def __init__(self, cfg: StyleGAN2Config, in_ch: int, out_ch: int, resolution: int,
                 up: bool) -> None:
        super().__init__()
        self.affine = FullyConnected(cfg.w_dim, in_ch)
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.use_noise = cfg.use_noise
        if cfg.use_noise:
            self.register_buffer("noise_const", torch.zeros(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("resample_filter", fir_filter(cfg.resample_filter), persistent=False)
        self.up, self.resolution = up, resolution
        self.activation, self.conv_clamp = cfg.synthesis_activation, cfg.conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        x = modulated_conv(x, self.weight, self.affine(w), demodulate=True, up=self.up,
                           fir=self.resample_filter)
        # noise and bias summed first, so the large activation tensor sees one addition
        shift = self.bias.view(-1, 1, 1)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "const":
                noise = self.noise_const
            else:
                size = (x.shape[0], 1, self.resolution, self.resolution)
                noise = torch.randn(size, device=x.device)
            shift = shift + noise * self.noise_strength
        return bias_act(x + shift, None, self.activation, clamp=self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to colours, not demodulated, + bias, clamped."""

    def __init__(self, cfg: StyleGAN2Config, in_ch: int) -> None:
        super().__init__()
        self.affine = FullyConnected(cfg.w_dim, in_ch)
        self.weight = nn.Parameter(torch.zeros(cfg.img_channels, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(cfg.img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_ch)
        self.conv_clamp = cfg.conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = modulated_conv(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: [const input | upsampling conv0], conv1, toRGB added to the upsampled
    image of the previous blocks (the 'skip' architecture)."""

    def __init__(self, cfg: StyleGAN2Config, resolution: int) -> None:
        super().__init__()
        out_ch = cfg.channels(resolution)
        self.first = resolution == 4
        if self.first:
            self.const = nn.Parameter(torch.zeros(out_ch, 4, 4))
        else:
            in_ch = cfg.channels(resolution // 2)
            self.conv0 = SynthesisLayer(cfg, in_ch, out_ch, resolution, up=True)
        self.conv1 = SynthesisLayer(cfg, out_ch, out_ch, resolution, up=False)
        self.torgb = ToRGB(cfg, out_ch)
        self.register_buffer("resample_filter", fir_filter(cfg.resample_filter), persistent=False)
        self.num_conv = 1 if self.first else 2

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """`ws [N, num_conv + 1, w_dim]`: one row per conv, then the toRGB row."""
        if self.first:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            assert x is not None
            x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        blocks = {f"b{res}": SynthesisBlock(cfg, res) for res in cfg.block_resolutions}
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        x = img = None
        row = 0
        for block in self.blocks.values():
            assert isinstance(block, SynthesisBlock)
            x, img = block(x, img, ws[:, row: row + block.num_conv + 1], noise_mode)
            row += block.num_conv
        assert img is not None
        return img


class StyleGAN2(nn.Module):
    """The generator contract (see `facelatent.generators.base.Generator`) for StyleGAN2(-ADA)."""

    def __init__(self, cfg: StyleGAN2Config, name: str = "stylegan2") -> None:
        super().__init__()
        self.cfg, self.name = cfg, name
        self.z_dim, self.w_dim, self.c_dim = cfg.z_dim, cfg.w_dim, cfg.c_dim
        self.num_ws, self.resolution = cfg.num_ws, cfg.resolution
        self.mapping_net = MappingNetwork(cfg)
        self.synthesis_net = SynthesisNetwork(cfg)
        self.noise_mode = "const"  # see the module docstring

    @property
    def device(self) -> torch.device:
        return self.mapping_net.w_avg.device

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping_net.w_avg

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0,
                c: torch.Tensor | None = None) -> torch.Tensor:
        """z `[N, z_dim]` (and label c `[N, c_dim]` for a conditional network) -> w
        `[N, w_dim]`, pulled toward `w_avg` by `truncation_psi` (every layer, as NVIDIA's
        default ``truncation_cutoff=None``)."""
        check_z(z, self.z_dim)
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape != (z.shape[0], self.c_dim):
                raise ValueError(f"c must have shape [{z.shape[0]}, {self.c_dim}] for this "
                                 f"class-conditional generator, got "
                                 f"{None if c is None else list(c.shape)}")
            c = c.to(self.device, torch.float32)
        w = self.mapping_net(z.to(self.device, torch.float32), c)
        return truncate(w, self.w_avg, truncation_psi)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """ws `[N, w_dim]` or `[N, num_ws, w_dim]` -> images `[N, img_channels, res, res]`,
        nominally [-1, 1]."""
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        ws = check_ws(ws, self.w_dim, self.num_ws)
        return self.synthesis_net(ws.to(self.device, torch.float32), self.noise_mode)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi))


# --- loading NVIDIA's pickles -------------------------------------------------------------------

def _our_key(key: str) -> str:
    """NVIDIA's state-dict key -> ours (``synthesis.b8.conv0.weight`` ->
    ``synthesis_net.blocks.b8.conv0.weight``)."""
    head, _, rest = key.partition(".")
    if head == "mapping":
        return f"mapping_net.{rest}"
    if head == "synthesis":
        return f"synthesis_net.blocks.{rest}"
    return key


def nvidia_state_dict(model: StyleGAN2) -> dict[str, torch.Tensor]:
    """``model``'s tensors under NVIDIA's keys (the inverse of `_our_key`), e.g. to load into
    their ``Generator`` with ``strict=False`` (their FIR filter buffers are not ours)."""
    out = {}
    for key, value in model.state_dict().items():
        for ours, theirs in (("mapping_net.", "mapping."), ("synthesis_net.blocks.", "synthesis.")):
            if key.startswith(ours):
                out[theirs + key[len(ours):]] = value
    return out


def copy_tensors(ours: Mapping[str, torch.Tensor], theirs: dict[str, torch.Tensor], where: str,
                 missing_hint: str = "") -> None:
    """Copy ``theirs[key]`` as float32 into each tensor of ``ours`` (a model's ``state_dict``,
    which shares the model's storage), taking it out of ``theirs``. A key ``theirs`` lacks
    (``missing_hint`` is added to that message) or a tensor of another shape is a
    `FileFormatError` naming ``where``; what is left in ``theirs`` is the caller's to check."""
    for key, param in ours.items():
        if key not in theirs:
            raise FileFormatError(f"{where} has no tensor for {key!r}{missing_hint}")
        value = theirs.pop(key)
        if tuple(value.shape) != tuple(param.shape):
            raise FileFormatError(f"{where}: {key} has shape {list(value.shape)}, expected "
                                  f"{list(param.shape)} for this configuration")
        param.copy_(value.float())


@torch.no_grad()
def load_nvidia_state(model: StyleGAN2, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Copy NVIDIA-keyed ``tensors`` (a ``state_dict`` of their ``Generator``) into ``model``.

    Every parameter and buffer of ours must be there with its shape; the FIR filters are checked
    against the configured taps; any tensor left over is a `FileFormatError` naming ``where``.
    """
    theirs = {_our_key(k): v for k, v in tensors.items()}
    copy_tensors(model.state_dict(), theirs, where)
    expected_fir = fir_filter(model.cfg.resample_filter)
    for key in [k for k in theirs if k.endswith("resample_filter")]:
        if not torch.allclose(theirs.pop(key).float(), expected_fir, atol=1e-6):
            raise FileFormatError(f"{where}: {key} is not the filter of taps "
                                  f"{model.cfg.resample_filter}")
    if theirs:
        raise FileFormatError(f"{where} has tensors this port does not use: "
                              f"{', '.join(sorted(theirs)[:5])}")


def load_stylegan2_pickle(path: str | Path, network: str = "G_ema") -> StyleGAN2:
    """Build the generator ``network`` of an NVIDIA StyleGAN2-ADA pickle, float32 on the CPU.

    The pickle is read without running any of its code (`load_network_pickle`); the
    architecture comes from the network's constructor arguments, and every tensor is mapped by
    `load_nvidia_state`.
    """
    path = Path(path)
    record = load_generator_record(path, network)
    model = StyleGAN2(StyleGAN2Config.from_init_kwargs(record), name=f"stylegan2:{path}")
    load_nvidia_state(model, record.tensors(), f"{path}: {network}")
    return model.eval().requires_grad_(False)
