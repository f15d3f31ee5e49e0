"""StyleGAN (v1, Karras et al. 2019) in plain PyTorch, loaded from InterFaceGAN's `.pth`.

InterFaceGAN (genforce/interfacegan) converts NVIDIA's TensorFlow StyleGAN into a PyTorch state
dict (``stylegan_ffhq.pth``, ``stylegan_celebahq.pth``); ``stylegan1:PATH`` loads such a file.
The network is rebuilt from the file's tensor names and shapes, never from its name: the
mapping's layers from ``mapping.dense{i}.linear.weight [out, in]`` (z_dim, hidden widths,
w_dim), the blocks from ``synthesis.output{k}`` (one toRGB per resolution 4, 8, ...), the
widths from the convs, and the upsampling of each block from its first conv's key:
``synthesis.layer{2k}.conv.weight [out, in, 3, 3]`` (nearest upsampling, then a conv) or
``synthesis.layer{2k}.weight [3, 3, in, out]`` (one transposed conv, TF's ``fused_scale``, which
the released 1024x1024 networks use from 128x128 up). ``synthesis.lod`` is the level of detail
(0 for a finished network; with lod L the last L blocks are skipped and the image upsampled).

Network: mapping = pixel norm of z, then dense layers (weight ``* sqrt 2 / sqrt(in) * 0.01``,
bias ``* 0.01``: learning-rate multiplier 0.01) each followed by leaky ReLU 0.2. Synthesis =
per layer: [the 4x4 constant | conv | 2x upsampling + conv + [1, 2, 1] blur], then the epilogue:
stored noise times a per-channel strength, bias, leaky ReLU 0.2, instance norm, and the style
``x * (1 + scale) + shift`` from an affine map of that layer's w; toRGB (1x1 conv) at every
block, the last one's image is the output. W+ has ``num_ws = 2 * log2(resolution) - 2`` rows,
one per conv layer.

Z handling, as InterFaceGAN does it: ``mapping(z)`` first rescales z onto the sphere of radius
sqrt(z_dim) (their ``preprocess``), then runs the network, whose pixel norm does it again.

Truncation: ``truncation.w_avg`` (TF's ``dlatent_avg``) is `w_avg`. InterFaceGAN truncates as
NVIDIA's StyleGAN does: rows ``0 .. truncation_layers - 1`` of W+ (8 of 18 at 1024x1024) are
pulled toward w_avg by psi 0.7, the others are not, on its Z and W paths (W+ is used as it is).
That is `truncate_layers(w, 0.7)`, a W+ code; this generator's ``truncation_layers`` is 8.
`mapping(z, truncation_psi)` returns one w ``[N, w_dim]`` under the Generator contract, so
there psi acts on every row; its psi-1 w is InterFaceGAN's ``w`` (their W boundaries' space).
InterFaceGAN's image of z is ``synthesis(truncate_layers(mapping(z), 0.7))``.

Noise: InterFaceGAN's ``randomize_noise=False``: each layer adds its stored noise buffer
(``noise_mode = 'const'``, the default); ``'random'`` draws new noise, ``'none'`` adds none.
A file's ``truncation.truncation`` (InterFaceGAN's per-row psi, which its loader replaces with
its own configuration) is not part of the network and is ignored.
"""

from __future__ import annotations

import itertools
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
from facelatent.generators.stylegan_ops import fir_filter, upfirdn2d

__all__ = ["StyleGAN1", "StyleGAN1Config", "load_stylegan1"]

GAIN = math.sqrt(2.0)        # He initialisation's gain, kept by the equalised learning rate
MAPPING_LR = 0.01            # the mapping layers' learning-rate multiplier (NVIDIA's lrmul)
BLUR_TAPS = (1.0, 2.0, 1.0)  # the low-pass filter after each upsampling
NOISE_MODES = ("const", "random", "none")
TRUNCATION_LAYERS = 8        # InterFaceGAN's STYLEGAN_TRUNCATION_LAYERS (NVIDIA's cutoff)
TRUNCATION_PSI = 0.7         # InterFaceGAN's STYLEGAN_TRUNCATION_PSI


@dataclass(frozen=True)
class StyleGAN1Config:
    mapping_widths: tuple[int, ...]  # z_dim, then each dense layer's output; the last is w_dim
    layout: Layout                   # the synthesis blocks: widths, upsampling, level of detail

    @property
    def z_dim(self) -> int:
        return self.mapping_widths[0]

    @property
    def w_dim(self) -> int:
        return self.mapping_widths[-1]

    @property
    def resolution(self) -> int:
        return self.layout.resolution

    @property
    def num_ws(self) -> int:
        return 2 * len(self.layout.widths)

    def __post_init__(self) -> None:
        if len(self.mapping_widths) < 2:
            raise FileFormatError("StyleGAN needs at least one mapping layer")


class MappingNetwork(nn.Module):
    """z `[N, z_dim]` -> w `[N, w_dim]`: pixel norm, then dense + leaky ReLU layers."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(torch.zeros(o, i))
                                        for i, o in itertools.pairwise(widths))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(o)) for o in widths[1:])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(z)
        for weight, bias in zip(self.weights, self.biases):
            scale = GAIN / math.sqrt(weight.shape[1]) * MAPPING_LR
            x = F.leaky_relu(F.linear(x, weight) * scale + bias * MAPPING_LR, 0.2)
        return x


class StyleLayer(nn.Module):
    """One synthesis layer: [constant | conv | upsampling conv + blur], then noise, bias, leaky
    ReLU, instance norm and the style of its row of W+."""

    def __init__(self, cin: int, cout: int, res: int, w_dim: int, kind: str) -> None:
        super().__init__()
        self.kind = kind                 # "const", "conv", "nearest" or "fused" (upsampling)
        if kind == "const":
            self.const = nn.Parameter(torch.zeros(1, cout, 4, 4))
        else:
            self.weight = nn.Parameter(torch.zeros(cout, cin, 3, 3))
            self.scale = GAIN / math.sqrt(cin * 9)
        self.register_buffer("noise_const", torch.zeros(1, 1, res, res))
        self.noise_strength = nn.Parameter(torch.zeros(cout))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.affine_weight = nn.Parameter(torch.zeros(2 * cout, w_dim))
        self.affine_bias = nn.Parameter(torch.zeros(2 * cout))
        self.register_buffer("blur", fir_filter(BLUR_TAPS))

    def forward(self, x: torch.Tensor | None, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if self.kind == "const":
            x = self.const.expand(w.shape[0], -1, -1, -1)
        else:
            assert x is not None
            if self.kind == "fused":
                x = fused_upsample_conv(x, self.weight) * self.scale
            else:
                x = upsample_nearest(x) if self.kind == "nearest" else x
                x = F.conv2d(x, self.weight, padding=1) * self.scale
            if self.kind in ("nearest", "fused"):
                x = upfirdn2d(x, self.blur, padding=(1, 1, 1, 1))
        if noise_mode != "none":
            noise = self.noise_const if noise_mode == "const" else \
                torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.reshape(1, -1, 1, 1)
        x = F.leaky_relu(x + self.bias.reshape(1, -1, 1, 1), 0.2)
        x = x - x.mean(dim=(2, 3), keepdim=True)                       # instance norm
        x = x / torch.sqrt(x.square().mean(dim=(2, 3), keepdim=True) + 1e-8)
        style = F.linear(w, self.affine_weight) / math.sqrt(w.shape[1]) + self.affine_bias
        scale, shift = style[:, :, None, None].chunk(2, dim=1)
        return x * (scale + 1) + shift


class ToRGB(nn.Module):
    def __init__(self, cin: int, img_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(img_channels, cin, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight) / math.sqrt(self.weight.shape[1])
        return x + self.bias.reshape(1, -1, 1, 1)


class StyleGAN1(BufferedGenerator):
    """The generator contract (see `facelatent.generators.base.Generator`) for StyleGAN v1."""

    def __init__(self, cfg: StyleGAN1Config, name: str = "stylegan1") -> None:
        super().__init__()
        self.cfg, self.name = cfg, name
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.num_ws, self.resolution = cfg.num_ws, cfg.resolution
        self.truncation_layers = TRUNCATION_LAYERS   # rows truncate_layers pulls (see above)
        self.noise_mode = "const"                     # see the module docstring
        self.mapping_net = MappingNetwork(cfg.mapping_widths)
        layers, torgbs = [], []
        widths, fused = cfg.layout.widths, cfg.layout.fused
        for b, cout in enumerate(widths):
            res = 4 * 2**b
            cin = widths[b - 1] if b else cout
            first = "const" if b == 0 else ("fused" if fused[b - 1] else "nearest")
            layers += [StyleLayer(cin, cout, res, cfg.w_dim, first),
                       StyleLayer(cout, cout, res, cfg.w_dim, "conv")]
            torgbs.append(ToRGB(cout, cfg.layout.img_channels))
        self.layers, self.torgbs = nn.ModuleList(layers), nn.ModuleList(torgbs)
        self.register_buffer("_w_avg", torch.zeros(cfg.w_dim))

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z `[N, z_dim]` -> w `[N, w_dim]`: z onto its sphere (InterFaceGAN's preprocess), the
        mapping network, then pulled toward `w_avg` by `truncation_psi` (every row; see
        `truncate_layers` for InterFaceGAN's first-rows truncation)."""
        check_z(z, self.z_dim)
        w = self.mapping_net(onto_sphere(z.to(self.device, torch.float32)))
        return truncate(w, self.w_avg, truncation_psi)

    def truncate_layers(self, w: torch.Tensor, truncation_psi: float = TRUNCATION_PSI
                        ) -> torch.Tensor:
        """w `[N, w_dim]` -> W+ `[N, num_ws, w_dim]` with rows below `truncation_layers` pulled
        toward `w_avg` by `truncation_psi` and the rest equal to w: InterFaceGAN's truncation
        (psi 0.7, 8 rows by default)."""
        ws = check_ws(w, self.w_dim, self.num_ws).to(self.device, torch.float32)
        cut = max(0, int(self.truncation_layers))
        return torch.cat([truncate(ws[:, :cut], self.w_avg, truncation_psi), ws[:, cut:]], dim=1)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """ws `[N, w_dim]` or `[N, num_ws, w_dim]` -> images `[N, 3, res, res]`, nominally
        [-1, 1]. Rows are used as given (no truncation: apply `truncate_layers` first)."""
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        ws = check_ws(ws, self.w_dim, self.num_ws).to(self.device, torch.float32)
        shown = shown_blocks(len(self.torgbs), self.cfg.layout.lod)
        x = None
        for i, layer in enumerate(self.layers[: 2 * shown]):
            x = layer(x, ws[:, i], self.noise_mode)
        assert x is not None
        img = self.torgbs[shown - 1](x)
        for _ in range(len(self.torgbs) - shown):
            img = upsample_nearest(img)
        return img



# --- loading InterFaceGAN's .pth ----------------------------------------------------------------

def config_from_state_dict(tensors: StateDict) -> StyleGAN1Config:
    """The architecture an InterFaceGAN StyleGAN state dict was saved from (module docstring)."""
    mapping = [tensors.shape("mapping.dense0.linear.weight", 2)[1]]
    while f"mapping.dense{len(mapping) - 1}.linear.weight" in tensors.left:
        key = f"mapping.dense{len(mapping) - 1}.linear.weight"
        out, cin = tensors.shape(key, 2)
        if cin != mapping[-1]:
            raise FileFormatError(f"{tensors.where}: {key} takes {cin} inputs, but the layer "
                                  f"before gives {mapping[-1]}")
        mapping.append(out)
    width4 = tensors.shape("synthesis.layer0.first_layer", 4)[1]
    return StyleGAN1Config(mapping_widths=tuple(mapping),
                           layout=read_layout(tensors, "synthesis.", width4, "StyleGAN"))


@torch.no_grad()
def load_state(model: StyleGAN1, tensors: StateDict) -> None:
    """Copy InterFaceGAN's tensors into ``model``, every key mapped and its shape checked."""
    for i, (weight, bias) in enumerate(zip(model.mapping_net.weights, model.mapping_net.biases)):
        weight.copy_(tensors.take(f"mapping.dense{i}.linear.weight", weight.shape))
        bias.copy_(tensors.take(f"mapping.dense{i}.wscale.bias", bias.shape))
    for i, layer in enumerate(model.layers):
        assert isinstance(layer, StyleLayer)
        theirs = f"synthesis.layer{i}"
        if layer.kind == "const":
            layer.const.copy_(tensors.take(f"{theirs}.first_layer", layer.const.shape))
        elif layer.kind == "fused":   # stored [3, 3, in, out]
            cout, cin = layer.weight.shape[:2]
            layer.weight.copy_(tensors.take(f"{theirs}.weight", [3, 3, cin, cout])
                               .permute(3, 2, 0, 1))
        else:
            layer.weight.copy_(tensors.take(f"{theirs}.conv.weight", layer.weight.shape))
        if layer.kind in ("nearest", "fused"):
            blur = tensors.take(f"{theirs}.blur.kernel", [layer.weight.shape[0], 1, 3, 3])
            if not torch.allclose(blur, layer.blur.expand_as(blur), atol=1e-6):
                raise FileFormatError(f"{tensors.where}: {theirs}.blur.kernel is not the "
                                      "[1, 2, 1] blur, the only one StyleGAN uses")
        epilogue = f"{theirs}.epilogue"
        layer.noise_const.copy_(tensors.take(f"{epilogue}.apply_noise.noise",
                                             layer.noise_const.shape))
        for ours, key in ((layer.noise_strength, "apply_noise.weight"), (layer.bias, "bias"),
                          (layer.affine_weight, "style_mod.dense.linear.weight"),
                          (layer.affine_bias, "style_mod.dense.wscale.bias")):
            ours.copy_(tensors.take(f"{epilogue}.{key}", ours.shape))
    for k, torgb in enumerate(model.torgbs):
        assert isinstance(torgb, ToRGB)
        torgb.weight.copy_(tensors.take(f"synthesis.output{k}.conv.weight", torgb.weight.shape))
        torgb.bias.copy_(tensors.take(f"synthesis.output{k}.bias", torgb.bias.shape))
    model._w_avg.copy_(tensors.take("truncation.w_avg", model._w_avg.shape))
    tensors.left.pop("truncation.truncation", None)   # InterFaceGAN's setting, not a weight
    tensors.finish()


def load_stylegan1(path: str | Path) -> StyleGAN1:
    """Build the StyleGAN generator saved in an InterFaceGAN ``.pth`` (e.g.
    ``stylegan_ffhq.pth``), float32 on the CPU, named ``stylegan1:PATH``. Read with
    ``torch.load(weights_only=True)``."""
    path = Path(path)
    kind = "an InterFaceGAN StyleGAN checkpoint (.pth)"
    tensors = StateDict(read_state_dict(path, kind), str(path))
    if "layer0.conv.weight" in tensors.left:
        raise FileFormatError(f"{path} is an InterFaceGAN PGGAN checkpoint; load it as "
                              f"pggan:{path}")
    model = StyleGAN1(config_from_state_dict(tensors), name=f"stylegan1:{path}")
    load_state(model, tensors)
    return model.eval().requires_grad_(False)
