"""StyleGAN3 (Karras et al. 2021, "alias-free"), T and R configs, in plain PyTorch, loaded from
NVIDIA's `.pkl`.

Read top to bottom: the configuration and the layer plan it implies, the Fourier-feature input,
the modulated convolution, the synthesis layer (conv -> filtered leaky ReLU), the synthesis
network, the generator under facelatent's contract, and the loader.

1. Configuration: NVIDIA's pickles record the generator's constructor arguments
   (`facelatent.formats.nvidia_pickle`), read by `StyleGAN3Config.from_init_kwargs`. From them,
   `layer_plan` derives each layer's cutoff, sampling rate, size, channels and resampling
   factors the way the official network does (a geometric progression of cutoffs from
   ``first_cutoff`` to half the resolution, the last ``num_critical`` layers critically
   sampled). Every derived shape is then checked against the checkpoint's tensors.
2. Filters: the low-pass filters are the checkpoint's ``up_filter`` / ``down_filter`` buffers,
   never designed again here: 1-D separable taps in the T config, 2-D radially symmetric
   downsampling filters in the R config (``use_radial_filters``, 1x1 convolutions).
3. Magnitudes: each layer divides its input by sqrt(``magnitude_ema``), the running mean square
   that training recorded; the buffer is used as stored, never updated.
4. Output: the last layer is a 1x1 modulated conv without demodulation or leaky ReLU, clamped;
   the image is multiplied by ``output_scale``.

W+ rows (``num_ws = num_layers + 2``): row 0 drives the input's rotation and translation, row
i + 1 drives layer i, the last row the final (toRGB) layer. There is no noise in StyleGAN3,
so images depend on ws alone. The mapping network is StyleGAN2's (`stylegan2.MappingNetwork`).
Everything runs in float32: ``num_fp16_res`` is a GPU speed setting, ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facelatent.errors import FileFormatError
from facelatent.formats.nvidia_pickle import NetworkRecord, load_generator_record
from facelatent.generators.base import check_ws
from facelatent.generators.stylegan2 import (
    FullyConnected,
    MappingNetwork,
    StyleGAN2,
    StyleGAN2Config,
    copy_tensors,
)
from facelatent.generators.stylegan3_ops import filtered_lrelu

# NVIDIA's constructor arguments -> our config fields. The synthesis network's and its layers'
# arguments arrive flat in the generator's kwargs. Those in _IGNORED only tune training or GPU
# speed; any other argument is refused rather than silently dropped.
_TOP = {"z_dim": "z_dim", "c_dim": "c_dim", "w_dim": "w_dim", "img_resolution": "resolution",
        "img_channels": "img_channels"}
_MAPPING = {"num_layers": "mapping_layers", "lr_multiplier": "lr_multiplier"}
_SYNTHESIS = {"channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff",
              "first_stopband", "last_stopband_rel", "margin_size", "output_scale",
              "conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters",
              "conv_clamp"}
_IGNORED = frozenset({"w_avg_beta", "magnitude_ema_beta", "num_fp16_res"})


@dataclass(frozen=True)
class StyleGAN3Config:
    z_dim: int = 512                    # size of z
    c_dim: int = 0                      # size of the class label; 0 = unconditional
    w_dim: int = 512                    # size of w
    resolution: int = 1024              # output height and width
    img_channels: int = 3               # RGB
    mapping_layers: int = 2             # fully connected layers of the mapping network
    lr_multiplier: float = 0.01         # learning-rate multiplier of the mapping layers
    channel_base: int = 32768           # channels of a layer: min(channel_base / 2 / cutoff, ...)
    channel_max: int = 512              # ... channel_max), rounded
    num_layers: int = 14                # synthesis layers, without the input and the last layer
    num_critical: int = 2               # critically sampled layers at the end
    first_cutoff: float = 2.0           # cutoff frequency of the first layer, cycles per image
    first_stopband: float = 2**2.1      # minimum stopband of the first layer
    last_stopband_rel: float = 2**0.3   # minimum stopband of the last layer, / its cutoff
    margin_size: int = 10               # pixels computed outside the image on each side
    output_scale: float = 0.25          # the image is the last layer's output times this
    conv_kernel: int = 3                # 3 (T config) or 1 (R config); the last layer uses 1
    filter_size: int = 6                # low-pass taps per unit of resampling factor
    lrelu_upsampling: int = 2           # the leaky ReLU runs at this multiple of the rate
    use_radial_filters: bool = False    # 2-D radial downsampling filters (R config)
    conv_clamp: float | None = 256      # clamp each layer's output to +-conv_clamp; None = no

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    def __post_init__(self) -> None:
        checks = {"resolution": self.resolution >= 4, "num_layers": self.num_layers > 0,
                  "num_critical": 0 <= self.num_critical < self.num_layers,
                  "conv_kernel": self.conv_kernel >= 1, "filter_size": self.filter_size >= 1,
                  "lrelu_upsampling": self.lrelu_upsampling >= 1,
                  "margin_size": self.margin_size >= 0}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise FileFormatError(f"StyleGAN3 {bad[0]}={getattr(self, bad[0])!r} is out of range")

    def mapping_config(self) -> StyleGAN2Config:
        """The StyleGAN2 configuration whose mapping network is this one's (same layers, keys
        and normalisation); its synthesis fields are not used."""
        return StyleGAN2Config(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim,
                               resolution=4, img_channels=self.img_channels,
                               mapping_layers=self.mapping_layers,
                               lr_multiplier=self.lr_multiplier)

    @classmethod
    def from_init_kwargs(cls, record: NetworkRecord) -> StyleGAN3Config:
        """The configuration of a pickled StyleGAN3 ``Generator`` from its constructor
        arguments."""
        kwargs = dict(record.init_kwargs)
        for name, value in zip(("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"),
                               record.init_args):
            kwargs.setdefault(name, value)
        values: dict[str, Any] = {}
        for key, value in (kwargs.pop("mapping_kwargs", None) or {}).items():
            if key in _MAPPING:
                values[_MAPPING[key]] = value
            elif key not in _IGNORED:
                raise FileFormatError(f"StyleGAN3 mapping argument {key!r}={value!r} is not "
                                      "supported by facelatent's port")
        for key, value in kwargs.items():
            if key in _TOP or key in _SYNTHESIS:
                values[_TOP.get(key, key)] = value
            elif key not in _IGNORED:
                raise FileFormatError(f"StyleGAN3 generator argument {key!r}={value!r} is not "
                                      "supported by facelatent's port")
        missing = [k for k, name in _TOP.items() if name not in values]
        if missing:
            raise FileFormatError(f"the pickled Generator lacks constructor arguments {missing}")
        for name, value in values.items():   # numpy scalars -> plain numbers, for config.json
            if isinstance(value, np.generic):
                values[name] = value.item()
        return cls(**values)


@dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer as the configuration implies it."""

    name: str                           # NVIDIA's module name, L{index}_{size}_{channels}
    in_channels: int
    out_channels: int
    in_size: int                        # pixels per side, margins included
    out_size: int
    up: int                             # upsampling factor before the leaky ReLU
    down: int                           # downsampling factor after it
    up_taps: int                        # length of the upsampling filter, 1 = none
    down_taps: int
    down_radial: bool                   # the downsampling filter is 2-D
    conv_kernel: int
    padding: tuple[int, int, int, int]  # of the upsampled image: left, right, top, bottom
    is_torgb: bool                      # the last layer: no demodulation, no leaky ReLU


@dataclass(frozen=True)
class InputSpec:
    channels: int
    size: int
    sampling_rate: float
    bandwidth: float


def layer_plan(cfg: StyleGAN3Config) -> tuple[InputSpec, list[LayerSpec]]:
    """The input's and every layer's geometry (see the module docstring), in float64 as the
    official code computes it, so that rounded sizes and channel counts agree with it."""
    n = cfg.num_layers
    last_cutoff = cfg.resolution / 2
    # exponent 0 at the first layer, 1 from the first critically sampled layer on
    t = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** t
    last_stopband = last_cutoff * cfg.last_stopband_rel
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** t
    # the smallest power of two that holds the stopband, at most the image's resolution
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, cfg.resolution))))
    sizes = rates + 2 * cfg.margin_size
    sizes[-2:] = cfg.resolution          # the last two layers have no margin
    channels = np.rint(np.minimum(cfg.channel_base / 2 / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    first = InputSpec(int(channels[0]), int(sizes[0]), float(rates[0]), float(cutoffs[0]))
    layers = []
    for i in range(n + 1):
        prev = max(i - 1, 0)
        torgb = i == n
        in_rate, out_rate = int(rates[prev]), int(rates[i])
        work_rate = max(in_rate, out_rate) * (1 if torgb else cfg.lrelu_upsampling)
        up, down = work_rate // in_rate, work_rate // out_rate
        up_taps = cfg.filter_size * up if up > 1 and not torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not torgb else 1
        kernel = 1 if torgb else cfg.conv_kernel
        in_size, out_size = int(sizes[prev]), int(sizes[i])
        # padding that makes the filtered output exactly out_size, split so that samples sit
        # at the centres of the pixels of both rates (the paper's symmetric interpretation)
        total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        layers.append(LayerSpec(
            name=f"L{i}_{out_size}_{int(channels[i])}", in_channels=int(channels[prev]),
            out_channels=int(channels[i]), in_size=in_size, out_size=out_size, up=up, down=down,
            up_taps=up_taps, down_taps=down_taps,
            down_radial=cfg.use_radial_filters and i < n - cfg.num_critical,
            conv_kernel=kernel, padding=(lo, total - lo, lo, total - lo), is_torgb=torgb))
    return first, layers


class SynthesisInput(nn.Module):
    """w -> Fourier features `[N, C, size, size]`: sinusoids of fixed frequencies and phases,
    rotated and translated per sample by an affine map of w, after the stored ``transform``
    (a user's inverse transform of the image; identity as trained), mixed by a C x C matrix."""

    def __init__(self, cfg: StyleGAN3Config, spec: InputSpec) -> None:
        super().__init__()
        c = spec.channels
        self.weight = nn.Parameter(torch.zeros(c, c))
        self.affine = FullyConnected(cfg.w_dim, 4)        # w -> (cos, sin, tx, ty), unnormalised
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", torch.zeros(c, 2))   # cycles per unit of the image
        self.register_buffer("phases", torch.zeros(c))     # cycles
        self.sampling_rate, self.bandwidth = spec.sampling_rate, spec.bandwidth
        # pixel centres in image units: the image spans [-0.5, 0.5] of the sampling grid's
        # size / sampling_rate (the margins lie beyond it)
        theta = torch.zeros(1, 2, 3)
        theta[0, 0, 0] = theta[0, 1, 1] = 0.5 * spec.size / spec.sampling_rate
        grid = F.affine_grid(theta, [1, 1, spec.size, spec.size], align_corners=False)
        self.register_buffer("grid", grid[0], persistent=False)   # [size, size, 2] as (x, y)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(1)
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        rotate = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1),
                              torch.stack([zero, zero, one], 1)], 1)
        shift = torch.stack([torch.stack([one, zero, -tx], 1), torch.stack([zero, one, -ty], 1),
                             torch.stack([zero, zero, one], 1)], 1)
        m = rotate @ shift @ self.transform                  # [N, 3, 3], applied to coordinates
        phases = self.phases + (self.freqs @ m[:, :2, 2:]).squeeze(2)     # [N, C]
        freqs = self.freqs @ m[:, :2, :2]                                 # [N, C, 2]
        # fade out frequencies that the user transform pushed beyond the band
        amplitudes = 1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2
                                                                 - self.bandwidth)
        x = torch.einsum("hwk,nck->nhwc", self.grid, freqs) + phases[:, None, None, :]
        x = torch.sin(x * (2 * math.pi)) * amplitudes.clamp(0, 1)[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.weight.shape[0])).t()
        return x.permute(0, 3, 1, 2)


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                   input_gain: torch.Tensor, *, demodulate: bool) -> torch.Tensor:
    """`x [N, I, H, W]`, `weight [O, I, k, k]`, `styles [N, I]` -> `[N, O, H + k - 1, ...]`
    (a 'full' convolution: StyleGAN3 pads by k - 1 and crops later, in the filtered ReLU).

    ``input_gain`` scales the input after demodulation (1 / sqrt of the magnitude EMA).
    """
    if demodulate:
        # NVIDIA first brings weight and styles to unit mean square (for float16 range); the
        # demodulation cancels both scales, so per sample here is the same up to its 1e-8
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
    x = F.conv2d(x * (styles * input_gain)[:, :, None, None], weight,
                 padding=weight.shape[-1] - 1)
    if demodulate:
        norms = styles.square() @ weight.square().sum(dim=[2, 3]).t()     # [N, O]
        x = x * (norms + 1e-8).rsqrt()[:, :, None, None]
    return x


class SynthesisLayer(nn.Module):
    """Modulated conv, then bias and the filtered leaky ReLU (up, lrelu, clamp, down)."""

    def __init__(self, cfg: StyleGAN3Config, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.affine = FullyConnected(cfg.w_dim, spec.in_channels)
        k = spec.conv_kernel
        self.weight = nn.Parameter(torch.zeros(spec.out_channels, spec.in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        # the checkpoint's low-pass filters; None (no buffer to load) for a single tap
        down_shape = [spec.down_taps] * (2 if spec.down_radial else 1)
        self.register_buffer("up_filter", torch.zeros(spec.up_taps) if spec.up_taps > 1 else None)
        self.register_buffer("down_filter",
                             torch.zeros(down_shape) if spec.down_taps > 1 else None)
        self.conv_clamp = cfg.conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.spec
        styles = self.affine(w)
        if s.is_torgb:
            styles = styles * (1 / math.sqrt(s.in_channels * s.conv_kernel**2))
        x = modulated_conv(x, self.weight, styles, self.magnitude_ema.rsqrt(),
                           demodulate=not s.is_torgb)
        return filtered_lrelu(x, self.bias, self.up_filter, self.down_filter, up=s.up,
                              down=s.down, padding=s.padding,
                              gain=1.0 if s.is_torgb else math.sqrt(2),
                              slope=1.0 if s.is_torgb else 0.2, clamp=self.conv_clamp)


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN3Config) -> None:
        super().__init__()
        first, specs = layer_plan(cfg)
        self.input = SynthesisInput(cfg, first)
        self.layer_names = [spec.name for spec in specs]
        for spec in specs:
            self.add_module(spec.name, SynthesisLayer(cfg, spec))
        self.output_scale = cfg.output_scale

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        rows = ws.unbind(dim=1)
        x = self.input(rows[0])
        for name, w in zip(self.layer_names, rows[1:], strict=True):
            x = getattr(self, name)(x, w)
        return x * self.output_scale if self.output_scale != 1 else x


class StyleGAN3(nn.Module):
    """The generator contract (see `facelatent.generators.base.Generator`) for StyleGAN3."""

    def __init__(self, cfg: StyleGAN3Config, name: str = "stylegan3") -> None:
        super().__init__()
        self.cfg, self.name = cfg, name
        self.z_dim, self.w_dim, self.c_dim = cfg.z_dim, cfg.w_dim, cfg.c_dim
        self.num_ws, self.resolution = cfg.num_ws, cfg.resolution
        self.mapping_net = MappingNetwork(cfg.mapping_config())
        self.synthesis_net = SynthesisNetwork(cfg)

    # z -> w is StyleGAN2's: the same mapping network under the same attribute names
    device = StyleGAN2.device
    w_avg = StyleGAN2.w_avg
    mapping = StyleGAN2.mapping
    forward = StyleGAN2.forward

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """ws `[N, w_dim]` or `[N, num_ws, w_dim]` -> images `[N, img_channels, res, res]`,
        nominally [-1, 1]."""
        ws = check_ws(ws, self.w_dim, self.num_ws)
        return self.synthesis_net(ws.to(self.device, torch.float32))


# --- loading NVIDIA's pickles -------------------------------------------------------------------

def nvidia_state_dict(model: StyleGAN3) -> dict[str, torch.Tensor]:
    """``model``'s tensors under NVIDIA's keys (``mapping.fc0.weight``,
    ``synthesis.L3_44_48.down_filter``)."""
    out = {}
    for key, value in model.state_dict().items():
        head, _, rest = key.partition(".")
        out[{"mapping_net": "mapping", "synthesis_net": "synthesis"}[head] + "." + rest] = value
    return out


@torch.no_grad()
def load_nvidia_state(model: StyleGAN3, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Copy NVIDIA-keyed ``tensors`` into ``model``: every parameter and buffer of ours must be
    there with its shape (the layer names and filter shapes encode the layer plan, so a plan
    that differs from the checkpoint's fails here); any tensor left over is a
    `FileFormatError` naming ``where``."""
    theirs = dict(tensors)
    copy_tensors(nvidia_state_dict(model), theirs, where,
                 missing_hint=" (the layer plan derived from its constructor arguments does not "
                              "match its layers)")
    if theirs:
        raise FileFormatError(f"{where} has tensors this port does not use: "
                              f"{', '.join(sorted(theirs)[:5])}")


def load_stylegan3_pickle(path: str | Path, network: str = "G_ema") -> StyleGAN3:
    """Build the generator ``network`` of an NVIDIA StyleGAN3 pickle (T or R config), float32
    on the CPU, read without running any of its code (`load_network_pickle`)."""
    path = Path(path)
    record = load_generator_record(path, network)
    synthesis = record.state.get("_modules", {}).get("synthesis")
    if not (isinstance(synthesis, NetworkRecord)
            and "input" in (synthesis.state.get("_modules") or {})):
        raise FileFormatError(f"{path}: {network!r} is not a StyleGAN3 generator (its synthesis "
                              "network has no Fourier-feature input); for StyleGAN2 / 2-ADA "
                              "pickles use stylegan2:PATH")
    model = StyleGAN3(StyleGAN3Config.from_init_kwargs(record), name=f"stylegan3:{path}")
    load_nvidia_state(model, record.tensors(), f"{path}: {network}")
    return model.eval().requires_grad_(False)

