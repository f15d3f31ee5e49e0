"""MobileStyleGAN (Belousov 2021), a StyleGAN2 distilled into a light network, in plain PyTorch.

Read top to bottom: the mapping MLP (z -> w), then the synthesis network, whose building blocks
are a modulated depthwise-separable convolution and an inverse Haar wavelet transform (IDWT)
that doubles resolution. Every "style input" is one affine map from w, so W+ is a
`[N, num_ws, w_dim]` tensor with one w per style input, in this order:

    0: the 4x4 input conv;  1 + 3b, 2 + 3b, 3 + 3b: block b's {upsample, conv1, conv2};
    last: the to-image layer.

The 1024x1024 FFHQ weights come from OpenVINO IR files (see `load_ir`). The exported graph has
the equalised-learning-rate scales and the per-layer noise (a fixed tensor at export time)
folded into constants; this module computes exactly what the graph computes.

Layout note: an IDWT's input has 4 sub-bands per output channel. We keep them channel-major,
`[LL, H0, H1, H2]` for channel 0, then channel 1, ..., so the IDWT is one grouped transposed
convolution. The IR keeps them band-major; the loader permutes the rows that produce them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facelatent.errors import WeightsError
from facelatent.generators.base import (
    BufferedGenerator,
    check_ws,
    check_z,
    estimate_w_avg,
    truncate,
)
from facelatent.formats.ir import IRGraph, IRLayer


@dataclass(frozen=True)
class MobileStyleGANConfig:
    z_dim: int = 512                # size of z
    w_dim: int = 512                # size of w (and of every style input)
    mapping_layers: int = 8         # fully connected layers of the mapping MLP
    channels: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128, 64)  # 4x4 conv, then per block
    img_channels: int = 3           # RGB
    lrelu_slope: float = 0.2        # leaky ReLU slope everywhere

    @property
    def num_blocks(self) -> int:
        return len(self.channels) - 1

    @property
    def num_ws(self) -> int:
        return 1 + 3 * self.num_blocks + 1

    @property
    def resolution(self) -> int:
        # 4x4 input, one doubling per block, one more in the final IDWT
        return 4 * 2 ** (self.num_blocks + 1)


FFHQ_1024 = MobileStyleGANConfig()
TINY = MobileStyleGANConfig(z_dim=32, w_dim=32, mapping_layers=2, channels=(32, 32, 16, 8))


def haar_synthesis_kernel(channels: int) -> torch.Tensor:
    """`[4 * channels, 1, 2, 2]` kernel of the inverse Haar transform for grouped conv_transpose.

    Output pixel (2i + p, 2j + q) = 0.5 * (LL + (-1)^p H0 + (-1)^q H1 + (-1)^(p+q) H2).
    """
    p = torch.tensor([1.0, -1.0]).view(2, 1)  # (-1)^p
    q = torch.tensor([1.0, -1.0]).view(1, 2)  # (-1)^q
    bands = torch.stack([torch.ones(2, 2), p.expand(2, 2), q.expand(2, 2), p * q])
    return (0.5 * bands).repeat(channels, 1, 1).unsqueeze(1)


class StyleAffine(nn.Module):
    """w `[N, w_dim]` -> per-channel style `[N, channels]` = (w A^T + b) * scale."""

    def __init__(self, w_dim: int, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels, w_dim))
        self.bias = nn.Parameter(torch.ones(channels))
        self.scale = scale  # equalised-lr scale of the conv it modulates, 1/sqrt(fan_in)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return F.linear(w, self.weight, self.bias) * self.scale


class ModulatedConv(nn.Module):
    """x * style -> [depthwise 3x3 ->] pointwise (or full 3x3) conv -> + noise + bias -> lrelu.

    `depthwise=True` is MobileStyleGAN's separable conv; `depthwise=False` a full 3x3 conv (the
    4x4 input layer). The style scales input channels; for the separable conv it is folded into
    the pointwise weights per sample (a depthwise conv commutes with per-channel scaling), so
    the large activations are touched once less.
    """

    def __init__(self, w_dim: int, in_ch: int, out_ch: int, resolution: int, depthwise: bool,
                 slope: float) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.style = StyleAffine(w_dim, in_ch, 1.0 / math.sqrt(in_ch * 9))
        self.weight_dw = nn.Parameter(torch.zeros(in_ch, 1, 3, 3)) if depthwise else None
        kernel = 1 if depthwise else 3
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.register_buffer("noise", torch.zeros(1, 1, resolution, resolution))  # baked noise
        self.slope = slope

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.style(w)  # [N, in_ch]
        if self.weight_dw is None:
            y = F.conv2d(x * s[:, :, None, None], self.weight, padding=1)
        else:
            n, c, h, wd = x.shape
            x = F.conv2d(x, self.weight_dw, padding=1, groups=c)
            weight = self.weight[None, :, :, 0, 0] * s[:, None, :]  # [N, out, in]
            y = torch.baddbmm(self.bias.view(1, -1, 1), weight, x.reshape(n, c, h * wd))
            y = y.view(n, -1, h, wd)
            return F.leaky_relu_(y.add_(self.noise), self.slope)
        y = y + self.bias + self.noise
        return F.leaky_relu(y, self.slope)


class ModulatedIDWT(nn.Module):
    """x `[N, 4C, H, W]` * style -> inverse Haar transform -> `[N, C, 2H, 2W]`."""

    def __init__(self, w_dim: int, in_ch: int) -> None:
        super().__init__()
        self.style = StyleAffine(w_dim, in_ch, 1.0)
        self.register_buffer("kernel", haar_synthesis_kernel(in_ch // 4))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.style(w)
        x = x * s[:, :, None, None]
        return F.conv_transpose2d(x, self.kernel, stride=2, groups=x.shape[1] // 4)


class ToImage(nn.Module):
    """Modulated 1x1 conv to 4 Haar sub-bands per colour, then IDWT to full resolution."""

    def __init__(self, w_dim: int, in_ch: int, img_channels: int) -> None:
        super().__init__()
        self.style = StyleAffine(w_dim, in_ch, 1.0 / math.sqrt(in_ch))
        self.weight = nn.Parameter(torch.zeros(4 * img_channels, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, 4 * img_channels, 1, 1))
        self.register_buffer("kernel", haar_synthesis_kernel(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, c, h, wd = x.shape
        weight = self.weight[None, :, :, 0, 0] * self.style(w)[:, None, :]
        y = torch.bmm(weight, x.reshape(n, c, h * wd)).view(n, -1, h, wd) + self.bias
        return F.conv_transpose2d(y, self.kernel, stride=2, groups=y.shape[1] // 4)


class MappingNetwork(nn.Module):
    """Pixel norm, then `mapping_layers` x (linear, leaky ReLU, * sqrt 2)."""

    def __init__(self, cfg: MobileStyleGANConfig) -> None:
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.slope = cfg.lrelu_slope

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), self.slope) * math.sqrt(2.0)
        return x


class SynthesisBlock(nn.Module):
    """IDWT upsample (in_ch -> in_ch / 4 at twice the size), then two separable convs."""

    def __init__(self, cfg: MobileStyleGANConfig, in_ch: int, out_ch: int, resolution: int) -> None:
        super().__init__()
        self.up = ModulatedIDWT(cfg.w_dim, in_ch)
        self.conv1 = ModulatedConv(cfg.w_dim, in_ch // 4, out_ch, resolution, True, cfg.lrelu_slope)
        self.conv2 = ModulatedConv(cfg.w_dim, out_ch, out_ch, resolution, True, cfg.lrelu_slope)

    def forward(self, x: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        x = self.up(x, ws[:, 0])
        x = self.conv1(x, ws[:, 1])
        return self.conv2(x, ws[:, 2])


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: MobileStyleGANConfig) -> None:
        super().__init__()
        ch = cfg.channels
        self.input = nn.Parameter(torch.zeros(1, ch[0], 4, 4))
        self.conv1 = ModulatedConv(cfg.w_dim, ch[0], ch[0], 4, False, cfg.lrelu_slope)
        self.blocks = nn.ModuleList(
            SynthesisBlock(cfg, ch[b], ch[b + 1], 8 * 2**b) for b in range(cfg.num_blocks))
        self.to_img = ToImage(cfg.w_dim, ch[-1], cfg.img_channels)

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.input.expand(ws.shape[0], -1, -1, -1), ws[:, 0])
        for b, block in enumerate(self.blocks):
            x = block(x, ws[:, 1 + 3 * b: 4 + 3 * b])
        return self.to_img(x, ws[:, -1])


class MobileStyleGAN(BufferedGenerator):
    """The generator contract (see `facelatent.generators.base.Generator`) for MobileStyleGAN."""

    def __init__(self, cfg: MobileStyleGANConfig = FFHQ_1024, name: str = "mobilestylegan") -> None:
        super().__init__()
        self.cfg = cfg
        self.name = name
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.num_ws, self.resolution = cfg.num_ws, cfg.resolution
        self.mapping_net = MappingNetwork(cfg)
        self.synthesis_net = SynthesisNetwork(cfg)
        self.register_buffer("_w_avg", torch.zeros(cfg.w_dim))

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z `[N, z_dim]` -> w `[N, w_dim]`, truncated toward `w_avg` by `truncation_psi`."""
        check_z(z, self.z_dim)
        w = self.mapping_net(z.to(self.device, torch.float32))
        return truncate(w, self._w_avg, truncation_psi)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """ws `[N, w_dim]` or `[N, num_ws, w_dim]` -> images `[N, 3, res, res]`, about [-1, 1]."""
        ws = check_ws(ws, self.w_dim, self.num_ws)
        return self.synthesis_net(ws.to(self.device, self.synthesis_net.input.dtype))


    @torch.no_grad()
    def estimate_w_avg(self, n: int = 100_000, seed: int = 0) -> torch.Tensor:
        """Mean of `n` mapping outputs of seeded standard-normal z, stored in `w_avg`."""
        w_avg = estimate_w_avg(lambda z: self.mapping_net(z.to(self.device)), self.z_dim, n, seed)
        self._w_avg.copy_(w_avg)
        return self._w_avg

    @classmethod
    def random(cls, cfg: MobileStyleGANConfig = TINY, seed: int = 0) -> MobileStyleGAN:
        """Random weights at sensible scales, for fast tests of the same architecture."""
        model = cls(cfg, name="mobilestylegan-random")
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for pname, param in model.named_parameters():
                if pname.endswith("style.bias"):
                    param.fill_(1.0)
                elif pname.startswith("mapping_net.") and param.ndim == 2 or pname.endswith("style.weight"):
                    fan_in = param[0].numel()
                    param.copy_(torch.randn(param.shape, generator=gen) / math.sqrt(fan_in))
                elif param.ndim >= 2:  # conv weights: the style scale already holds 1/sqrt(fan_in)
                    param.copy_(0.5 * torch.randn(param.shape, generator=gen))
                else:
                    param.copy_(0.1 * torch.randn(param.shape, generator=gen))
            for mod in model.modules():
                if isinstance(mod, ModulatedConv):
                    mod.noise.copy_(0.05 * torch.randn(mod.noise.shape, generator=gen))
            model.estimate_w_avg(n=2_000)
        return model


# --- loading the OpenVINO IR ------------------------------------------------------------------

def _band_major_to_channel_major(channels: int) -> torch.Tensor:
    """Row order that turns the IR's [LL_0..LL_C-1, (c, j) highs] into our [(c, band)] order."""
    c = torch.arange(channels)
    highs = channels + 3 * c[:, None] + torch.arange(3)[None, :]
    return torch.cat([c[:, None], highs], dim=1).reshape(-1)


def _load_affine(g: IRGraph, affine: StyleAffine, prefix: str, scaled: bool) -> None:
    weight_layer = g.const_layer(f"{prefix}.modulation.weight")
    affine.weight.copy_(torch.from_numpy(g.take(weight_layer)))
    affine.bias.copy_(torch.from_numpy(g.take_named(f"{prefix}.modulation.bias")).view(-1))
    if scaled:  # MatMul -> Add(bias) -> Reshape -> Multiply(scale)
        node = g.only_consumer(weight_layer, "MatMul")
        node = g.only_consumer(g.only_consumer(node, "Add"), "Reshape")
        scale = g.only_consumer(node, "Multiply")
        affine.scale = g.take_scalar(g.const_input(scale), affine.scale, f"{prefix} style scale")


def _load_conv(g: IRGraph, conv: ModulatedConv, prefix: str) -> None:
    """Map one modulated conv, anchored on its named bias: conv -> +noise -> +bias -> PReLU."""
    _load_affine(g, conv.style, f"{prefix}.conv", scaled=True)
    bias_layer = g.const_layer(f"{prefix}.bias")
    add_bias = g.only_consumer(bias_layer, "Add")
    add_noise = g.other_input(add_bias, bias_layer)
    conv_op = next(g.producer(add_noise, p) for p in range(2)
                   if g.producer(add_noise, p).type == "Convolution")
    conv.weight.copy_(torch.from_numpy(g.take(g.const_input(conv_op))).view_as(conv.weight))
    conv.noise.copy_(torch.from_numpy(g.take(g.const_input(add_noise))).view_as(conv.noise))
    conv.bias.copy_(torch.from_numpy(g.take(bias_layer)).view_as(conv.bias))
    prelu = g.only_consumer(add_bias, "PReLU")
    g.take_scalar(g.const_input(prelu), conv.slope, f"{prefix} leaky ReLU slope")
    if conv.weight_dw is not None:
        dw = g.const_layer(f"{prefix}.conv.weight_dw")
        if g.only_consumer(dw, "GroupConvolution").id != g.producer(conv_op, 0).id:
            raise WeightsError(f"{g.path}: {prefix}: depthwise conv does not feed its pointwise conv")
        conv.weight_dw.copy_(torch.from_numpy(g.take(dw)).view_as(conv.weight_dw))


def _take_haar_filters(g: IRGraph) -> None:
    """The graph's IDWTs are transposed convs with 2-tap Haar filters: check, then mark them used."""
    for layer in g.layers.values():
        if layer.type == "GroupConvolutionBackpropData":
            taps = g.take(g.const_input(layer)).reshape(-1, 2)
            s = 1.0 / math.sqrt(2.0)
            if not (np.allclose(taps, [s, s], atol=1e-6) or np.allclose(taps, [s, -s], atol=1e-6)):
                raise WeightsError(f"{g.path}: {layer.name} is not a Haar synthesis filter")


def _load_mapping(g: IRGraph, net: MappingNetwork) -> None:
    """The mapping IR has anonymous constant names: walk it from the input, layer by layer."""
    (param,) = [l for l in g.layers.values() if l.type == "Parameter"]
    node = g.only_consumer(param, "Multiply")
    _take_pixel_norm_constants(g, param)
    for i, layer in enumerate(net.layers):
        matmul = g.only_consumer(node, "MatMul")
        layer.weight.copy_(torch.from_numpy(g.take(g.const_input(matmul))))
        add = g.only_consumer(matmul, "Add")
        reshape = g.other_input(add, matmul)
        layer.bias.copy_(torch.from_numpy(g.take(g.producer(reshape, 0))).view(-1))
        prelu = g.only_consumer(add, "PReLU")
        g.take_scalar(g.const_input(prelu), net.slope, f"mapping layer {i} slope")
        node = g.only_consumer(prelu, "Multiply")
        g.take_scalar(g.const_input(node), math.sqrt(2.0), f"mapping layer {i} gain")


def _take_pixel_norm_constants(g: IRGraph, param: IRLayer) -> None:
    power = g.only_consumer(param, "Power")
    g.take_scalar(g.const_input(power), 2.0, "pixel norm exponent")
    mean = g.only_consumer(power, "ReduceMean")
    add = g.only_consumer(mean, "Add")
    g.take_scalar(g.const_input(add), 1e-8, "pixel norm epsilon", rtol=1e-3)
    sqrt = g.only_consumer(add, "Power")
    g.take_scalar(g.const_input(sqrt), 0.5, "pixel norm sqrt")
    recip = g.only_consumer(sqrt, "Power")
    g.take_scalar(g.const_input(recip), -1.0, "pixel norm reciprocal")
    div = g.only_consumer(recip, "Multiply")
    g.take_scalar(g.const_input(div), 1.0, "pixel norm numerator")


@torch.no_grad()
def load_ir(model: MobileStyleGAN, mapping: tuple[Path, Path], synthesis: tuple[Path, Path]) -> None:
    """Copy every constant of the (xml, bin) IR pairs into `model`; fail on any left unused."""
    gm = IRGraph(*mapping)
    _load_mapping(gm, model.mapping_net)
    gm.check_all_taken()

    g = IRGraph(*synthesis)
    net = model.synthesis_net
    net.input.copy_(torch.from_numpy(g.take_named("m.input.input")))
    _load_conv(g, net.conv1, "m.conv1")
    for b, block in enumerate(net.blocks):
        _load_affine(g, block.up.style, f"m.layers.{b}.up", scaled=False)
        _load_conv(g, block.conv1, f"m.layers.{b}.conv1")
        _load_conv(g, block.conv2, f"m.layers.{b}.conv2")
    _load_affine(g, net.to_img.style, f"m.layers.{len(net.blocks) - 1}.to_img.conv", scaled=True)
    net.to_img.weight.copy_(torch.from_numpy(
        g.take_named(f"m.layers.{len(net.blocks) - 1}.to_img.conv.weight")))
    net.to_img.bias.copy_(torch.from_numpy(
        g.take_named(f"m.layers.{len(net.blocks) - 1}.to_img.bias")).view_as(net.to_img.bias))
    _take_haar_filters(g)
    g.check_all_taken()

    # The IR produces IDWT inputs band-major; reorder those rows to our channel-major layout.
    producers = [net.conv1] + [block.conv2 for block in net.blocks]
    for prev, up in zip(producers, [block.up for block in net.blocks]):
        perm = _band_major_to_channel_major(prev.weight.shape[0] // 4)
        prev.weight.copy_(prev.weight[perm])
        prev.bias.copy_(prev.bias[:, perm])
        up.style.weight.copy_(up.style.weight[perm])
        up.style.bias.copy_(up.style.bias[perm])
    perm = _band_major_to_channel_major(net.to_img.weight.shape[0] // 4)
    net.to_img.weight.copy_(net.to_img.weight[perm])
    net.to_img.bias.copy_(net.to_img.bias[:, perm])
