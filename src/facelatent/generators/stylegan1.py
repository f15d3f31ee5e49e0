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

Truncation, as InterFaceGAN configures it (a module of its generator between mapping and
synthesis): `synthesis` of a single w ``[N, w_dim]`` first pulls the rows ``0 ..
truncation_layers - 1`` of its W+ code toward `w_avg` (``truncation.w_avg``, TF's
``dlatent_avg``) by ``truncation_psi``; the other rows are w itself. W+ codes ``[N, num_ws,
w_dim]`` are used as given (InterFaceGAN's WP path), so inverted and W+-edited codes stay
exact. The default is InterFaceGAN's ``model_settings``: psi 0.7 on the first 8 rows (8 of 18
at 1024x1024, all of them at 32x32 and below). Its `.pth` files carry no setting (its
converter drops ``truncation.truncation``, its loader overwrites one), so a file's
``truncation.truncation`` is ignored; ``stylegan1:PATH?truncation=PSI,LAYERS`` (`parse_spec`;
``PSI`` alone keeps 8 rows, ``off`` is psi 1) chooses another, and `facelatent convert` keeps
it in the config.

So W, what `mapping` returns and stores and boundaries hold, is InterFaceGAN's pre-truncation
w (their ``w``, the space of their W boundaries), and ``synthesis(mapping(z))`` is their image
of z. An edited w is truncated the same way when drawn, as InterFaceGAN draws its W edits.
`truncate_layers(w)` is the W+ code that ``synthesis(w)`` draws: broadcast a w with it before
editing single rows. `mapping(z, truncation_psi)` keeps the contract's meaning (every row
pulled), but only with the configured truncation off: both at once is a `ValueError` rather
than a face truncated twice.

Noise: InterFaceGAN's ``randomize_noise=False``: each layer adds its stored noise buffer
(``noise_mode = 'const'``, the default); ``'random'`` draws new noise, ``'none'`` adds none.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
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

__all__ = ["StyleGAN1", "StyleGAN1Config", "load_stylegan1", "parse_spec"]

GAIN = math.sqrt(2.0)        # He initialisation's gain, kept by the equalised learning rate
MAPPING_LR = 0.01            # the mapping layers' learning-rate multiplier (NVIDIA's lrmul)
BLUR_TAPS = (1.0, 2.0, 1.0)  # the low-pass filter after each upsampling
NOISE_MODES = ("const", "random", "none")
TRUNCATION_LAYERS = 8        # InterFaceGAN's STYLEGAN_TRUNCATION_LAYERS (NVIDIA's cutoff)
TRUNCATION_PSI = 0.7         # InterFaceGAN's STYLEGAN_TRUNCATION_PSI
TRUNCATION_OPTION = "?truncation="   # stylegan1:PATH?truncation=PSI[,LAYERS] or =off


@dataclass(frozen=True)
class StyleGAN1Config:
    mapping_widths: tuple[int, ...]  # z_dim, then each dense layer's output; the last is w_dim
    layout: Layout                   # the synthesis blocks: widths, upsampling, level of detail
    truncation_psi: float = TRUNCATION_PSI  # pull of a single w's first rows; 1 = off
    truncation_layers: int | None = None    # rows it pulls; None = 8, at most num_ws

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
        psi, layers = self.truncation_psi, self.truncation_layers
        if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not math.isfinite(psi):
            raise ValueError(f"truncation_psi must be a finite number (1 = off), got {psi!r}")
        if layers is None:       # frozen: the resolved default is written once, here
            object.__setattr__(self, "truncation_layers", min(TRUNCATION_LAYERS, self.num_ws))
        elif isinstance(layers, bool) or not isinstance(layers, int) \
                or not 0 <= layers <= self.num_ws:
            raise ValueError(f"truncation_layers must be an integer from 0 to {self.num_ws} "
                             f"(this network's num_ws), got {layers!r}")
        object.__setattr__(self, "truncation_psi", float(psi))


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

    @property
    def truncation_psi(self) -> float:
        """How far `synthesis` pulls a single w's first rows toward `w_avg` (1 = not at all)."""
        return float(self.cfg.truncation_psi)

    @property
    def truncation_layers(self) -> int:
        """How many rows of a single w's W+ code `synthesis` pulls (the first ones)."""
        assert self.cfg.truncation_layers is not None   # resolved by the config
        return self.cfg.truncation_layers

    @property
    def truncates(self) -> bool:
        """Whether `synthesis` changes a single w at all (InterFaceGAN's default: yes)."""
        return self.truncation_psi != 1.0 and self.truncation_layers > 0

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z `[N, z_dim]` -> w `[N, w_dim]`: z onto its sphere (InterFaceGAN's preprocess), the
        mapping network, then pulled toward `w_avg` by `truncation_psi` on every row (the
        contract's truncation). With the configured truncation on (`truncates`), psi must
        stay 1: `synthesis` truncates w's first rows, and pulling w here as well would
        truncate twice; a `ValueError` says so (load ``?truncation=off`` to use psi here)."""
        check_z(z, self.z_dim)
        if truncation_psi != 1.0 and self.truncates:
            raise ValueError(
                f"truncation_psi (--psi) is {truncation_psi!r}, but {self.name} truncates "
                f"already: its synthesis pulls the first {self.truncation_layers} of "
                f"{self.num_ws} style rows of each w toward w_avg by psi "
                f"{self.truncation_psi:g} (InterFaceGAN's setting), and both would truncate "
                f"twice; keep --psi 1 for InterFaceGAN's images, or {self._off_hint()}")
        w = self.mapping_net(onto_sphere(z.to(self.device, torch.float32)))
        return truncate(w, self.w_avg, truncation_psi)

    def _off_hint(self) -> str:
        if self.name.startswith("stylegan1:"):
            path = parse_spec(self.name.partition(":")[2])[0]
            return f"load stylegan1:{path}{TRUNCATION_OPTION}off to truncate with --psi alone"
        return (f"convert the checkpoint again from stylegan1:PATH{TRUNCATION_OPTION}off to "
                "truncate with --psi alone")

    def truncate_layers(self, w: torch.Tensor, truncation_psi: float | None = None,
                        layers: int | None = None) -> torch.Tensor:
        """w `[N, w_dim]` (or W+ `[N, num_ws, w_dim]`) -> W+ `[N, num_ws, w_dim]` whose rows
        below ``layers`` are pulled toward `w_avg` by ``truncation_psi`` and the others are
        unchanged. The defaults are the configured ones, so ``truncate_layers(w)`` is the W+
        code that ``synthesis(w)`` draws (psi 0.7 on 8 rows by default, InterFaceGAN's)."""
        ws = check_ws(w, self.w_dim, self.num_ws).to(self.device, torch.float32)
        psi = self.truncation_psi if truncation_psi is None else truncation_psi
        cut = self.truncation_layers if layers is None else max(0, int(layers))
        return torch.cat([truncate(ws[:, :cut], self.w_avg, psi), ws[:, cut:]], dim=1)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """ws `[N, w_dim]` or `[N, num_ws, w_dim]` -> images `[N, 3, res, res]`, nominally
        [-1, 1]. A single w is drawn as `truncate_layers(w)` (the configured truncation of its
        first rows, as InterFaceGAN draws its Z and W codes, edited ones included); W+ rows are
        used as given."""
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        single = isinstance(ws, torch.Tensor) and ws.ndim == 2
        ws = check_ws(ws, self.w_dim, self.num_ws).to(self.device, torch.float32)
        if single and self.truncates:
            ws = self.truncate_layers(ws)
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


def parse_spec(spec: str) -> tuple[str, float | None, int | None]:
    """The PATH of ``stylegan1:PATH`` and its truncation option: ``PATH`` (None, None: the
    default), ``PATH?truncation=PSI`` (psi on the default rows), ``PATH?truncation=PSI,LAYERS``
    or ``PATH?truncation=off`` (1.0, 0). Returns (path, psi, layers); a malformed option is a
    `ValueError` that shows the accepted forms. The rows are checked against the network when
    it is built."""
    path, found, value = spec.rpartition(TRUNCATION_OPTION)
    if not found:
        return spec, None, None
    if not path:
        raise ValueError(f"stylegan1:{spec} names no file; expected stylegan1:PATH or "
                         f"stylegan1:PATH{TRUNCATION_OPTION}PSI,LAYERS")
    if value.strip().lower() == "off":
        return path, 1.0, 0
    psi_text, comma, layers_text = value.partition(",")
    try:
        psi = float(psi_text)
        layers = int(layers_text) if comma else None
    except ValueError:
        psi = math.nan
    if not math.isfinite(psi):
        raise ValueError(f"stylegan1:{spec}: the truncation option must be PSI, PSI,LAYERS or "
                         f"off (e.g. {TRUNCATION_OPTION}0.7,8, InterFaceGAN's), got {value!r}")
    return path, psi, layers


def spec_name(path: str | Path, cfg: StyleGAN1Config) -> str:
    """``stylegan1:PATH``, with the truncation option when ``cfg``'s is not the default, so
    that the name (which stores record) builds the same generator again."""
    default = StyleGAN1Config(cfg.mapping_widths, cfg.layout)
    psi, layers = cfg.truncation_psi, cfg.truncation_layers
    if (psi, layers) == (default.truncation_psi, default.truncation_layers):
        return f"stylegan1:{path}"
    option = "off" if (psi, layers) == (1.0, 0) else f"{psi!r},{layers}"
    return f"stylegan1:{path}{TRUNCATION_OPTION}{option}"


def load_stylegan1(path: str | Path, *, truncation_psi: float | None = None,
                   truncation_layers: int | None = None) -> StyleGAN1:
    """Build the StyleGAN generator saved in an InterFaceGAN ``.pth`` (e.g.
    ``stylegan_ffhq.pth``), float32 on the CPU, read with ``torch.load(weights_only=True)``.

    ``truncation_psi`` and ``truncation_layers``: the truncation `synthesis` applies to a
    single w's first rows (module docstring); None = InterFaceGAN's, psi 0.7 on 8 rows (at
    most num_ws). psi 1.0 switches it off. Named ``stylegan1:PATH``, followed by
    ``?truncation=PSI,LAYERS`` (or ``=off``) when not the default (`parse_spec`)."""
    path = Path(path)
    kind = "an InterFaceGAN StyleGAN checkpoint (.pth)"
    tensors = StateDict(read_state_dict(path, kind), str(path))
    if "layer0.conv.weight" in tensors.left:
        raise FileFormatError(f"{path} is an InterFaceGAN PGGAN checkpoint; load it as "
                              f"pggan:{path}")
    cfg = config_from_state_dict(tensors)
    cfg = replace(
        cfg, truncation_psi=cfg.truncation_psi if truncation_psi is None else truncation_psi,
        truncation_layers=truncation_layers)
    model = StyleGAN1(cfg, name=spec_name(path, cfg))
    load_state(model, tensors)
    return model.eval().requires_grad_(False)
