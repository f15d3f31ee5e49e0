"""rosinality's StyleGAN2 (github:rosinality/stylegan2-pytorch) `.pt` checkpoints, run on the
StyleGAN2 port of `facelatent.generators.stylegan2`.

rosinality's network computes what NVIDIA's does; only the layout differs. This module is an
adapter, not a second network:

1. `read_checkpoint` opens the file with ``torch.load(weights_only=True)``: torch's restricted
   reader, which builds tensors and plain containers and refuses every other global before
   calling it. Training snapshots also hold ``args``, an ``argparse.Namespace``; it is read as
   a `TrainingArgs` stand-in (plain values only), never as the real class.
2. `RosinalityArchitecture.from_state_dict` derives size, style_dim, n_mlp and the channel
   widths from the ``g_ema`` tensors' names and shapes (never from the file name), and the
   port's `StyleGAN2Config` from them.
3. `to_nvidia_state` maps every tensor onto the port's (NVIDIA-named) parameters, which
   `load_nvidia_state` checks key by key and shape by shape. Tensors the port does not use are
   an error.

Correspondence, rosinality -> port: ``style.{i+1}`` (after PixelNorm; EqualLinear, lr_mul 0.01,
fused leaky ReLU with bias and gain sqrt 2) -> ``mapping.fc{i}``; ``input`` / ``conv1`` /
``to_rgb1`` -> the 4x4 block; ``convs.{2k}``, ``convs.{2k+1}``, ``to_rgbs.{k}`` -> the block at
``8 * 2**k`` (upsampling conv, conv, toRGB); ``noises.noise_{j}`` -> the stored noise of the
j-th conv. Their upsampling conv (stride-2 transposed conv, then the [1, 3, 3, 1] blur padded
(1, 1)) and their ToRGB's upsampling of the skip image are the port's ops; the blur kernels they
store are checked against [1, 3, 3, 1] and dropped. A conv weight is stored here already
multiplied by rosinality's equalised-learning-rate scale 1/sqrt(fan_in), so that demodulation
sees the very weights theirs does (with the same 1e-8).

The mapping's learning-rate multiplier is 0.01, the constructor's default: it is not in the
file, and rosinality's training script never changes it.

w_avg (the truncation centre): checkpoints converted from NVIDIA's (rosinality's
convert_weight.py) store it as ``latent_avg``, which is used as it is. Training snapshots do
not; it is then estimated, like their ``mean_latent``, as the mean mapping output of
`W_AVG_SAMPLES` standard-normal z drawn from ``torch.Generator().manual_seed(W_AVG_SEED)``, the
same for every load of the same file. Truncation acts on every layer, as their
``truncation_latent``. Noise is the stored ``noises`` (their ``randomize_noise=False``) by default.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from facelatent.errors import FileFormatError
from facelatent.generators.base import estimate_w_avg
from facelatent.generators.stylegan2 import (
    StyleGAN2,
    StyleGAN2Config,
    load_nvidia_state,
)
from facelatent.generators.stylegan_ops import fir_filter
from facelatent.generators.torch_checkpoint import read_torch_checkpoint

__all__ = ["RosinalityArchitecture", "TrainingArgs", "load_rosinality", "read_checkpoint",
           "to_nvidia_state"]

W_AVG_SAMPLES = 10_000   # rosinality's generate.py averages 4096; more makes it steadier
W_AVG_SEED = 0
LR_MLP = 0.01            # rosinality's Generator(lr_mlp=0.01); not recorded in checkpoints
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
_PLAIN = (str, int, float, bool, type(None))


class TrainingArgs:
    """Stands in for ``argparse.Namespace`` while reading a training snapshot's ``args``: it
    keeps the plain values (str, int, float, bool, None) as the dict ``values`` and nothing
    else; it has no behaviour to trigger."""

    values: Mapping[str, Any] = MappingProxyType({})   # until the pickle's state arrives

    def __setstate__(self, state: object) -> None:
        items = state.items() if isinstance(state, dict) else ()
        self.values = {str(k): v for k, v in items if isinstance(v, _PLAIN)}


def _namespace_as_training_args() -> contextlib.AbstractContextManager[object]:
    """Within the block, torch's weights-only reader builds ``argparse.Namespace`` as
    `TrainingArgs`. Torch before 2.5 has no such mapping: a snapshot's ``args`` is then refused
    like any other object (its ``g_ema`` alone, or a newer torch, loads)."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:
        return contextlib.nullcontext()
    return safe_globals([(TrainingArgs, "argparse.Namespace")])  # type: ignore[no-any-return]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The top-level dict of a rosinality checkpoint, read with ``torch.load(weights_only=True)``.

    Raises `FileFormatError` naming the file for a global the restricted reader refuses (any
    code the file asks to run: nothing runs), a damaged file, or one that is not a dict.
    """
    path = Path(path)
    data = read_torch_checkpoint(path, "a rosinality StyleGAN2 checkpoint (.pt)",
                                 allowed=_namespace_as_training_args())
    if not isinstance(data, dict):
        raise FileFormatError(f"{path} holds a {type(data).__name__}; expected a dict such as "
                              "{'g_ema': state_dict, ...}")
    return data


def _generator_tensors(data: Mapping[str, Any], where: str) -> dict[str, torch.Tensor]:
    """``g_ema``'s state dict (or the top level, if the file is a bare state dict)."""
    state = data.get("g_ema", data if "input.input" in data else None)
    if not isinstance(state, Mapping):
        keys = ", ".join(sorted(map(str, data))[:8])
        raise FileFormatError(f"{where} has no 'g_ema' state dict (its keys: {keys})")
    tensors = {str(k): v for k, v in state.items()}
    bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise FileFormatError(f"{where}: g_ema entries {bad[:3]} are not tensors")
    return tensors


def _shape(tensors: Mapping[str, torch.Tensor], key: str, ndim: int, where: str) -> list[int]:
    if key not in tensors:
        raise FileFormatError(f"{where} has no tensor {key!r}; is it a rosinality StyleGAN2 "
                              "generator (not SWAGAN, not a discriminator)?")
    shape = list(tensors[key].shape)
    if len(shape) != ndim:
        raise FileFormatError(f"{where}: {key} has shape {shape}, expected {ndim} dimensions")
    return shape


@dataclass(frozen=True)
class RosinalityArchitecture:
    """What rosinality's ``Generator(size, style_dim, n_mlp, channel_multiplier)`` was built
    with, read from its tensors."""

    size: int                    # output height and width
    style_dim: int               # size of z and of w
    n_mlp: int                   # fully connected layers of the mapping network
    widths: tuple[int, ...]      # channels at 4, 8, ..., size

    @property
    def channel_multiplier(self) -> int | None:
        """Their constructor argument, where the widths tell it (an output of 64 or more with
        the official table: 512 up to 32, then 256 x multiplier at 64, halving); else None."""
        if self.size < 64 or self.widths[0] != 512 or self.widths[4] % 256:
            return None
        return self.widths[4] // 256

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor],
                        where: str = "checkpoint") -> RosinalityArchitecture:
        style_dim = _shape(tensors, "style.1.weight", 2, where)[1]
        n_mlp = 0
        while f"style.{n_mlp + 1}.weight" in tensors:
            n_mlp += 1
        blocks = 0
        while f"to_rgbs.{blocks}.conv.weight" in tensors:
            blocks += 1
        widths = [_shape(tensors, "input.input", 4, where)[1]]
        widths += [_shape(tensors, f"convs.{2 * k}.conv.weight", 5, where)[1]
                   for k in range(blocks)]
        return cls(size=2 ** (blocks + 2), style_dim=style_dim, n_mlp=n_mlp, widths=tuple(widths))

    def config(self) -> StyleGAN2Config:
        """The port's configuration. Its widths are ``min(channel_base // res, channel_max)``;
        rosinality's table is that with channel_max 512 and channel_base 16384 x multiplier."""
        channel_max = self.widths[0]
        narrower = [(w, 2 ** (i + 2)) for i, w in enumerate(self.widths) if w < channel_max]
        channel_base = narrower[0][0] * narrower[0][1] if narrower else channel_max * self.size
        cfg = StyleGAN2Config(z_dim=self.style_dim, w_dim=self.style_dim, resolution=self.size,
                              mapping_layers=self.n_mlp, lr_multiplier=LR_MLP,
                              channel_base=channel_base, channel_max=channel_max,
                              resample_filter=BLUR_TAPS)
        if tuple(cfg.channels(r) for r in cfg.block_resolutions) != self.widths:
            raise FileFormatError(f"channel widths {list(self.widths)} (at 4, 8, ...) do not "
                                  "follow one table min(base / resolution, max), which the "
                                  "StyleGAN2 port needs")
        return cfg


def to_nvidia_state(tensors: Mapping[str, torch.Tensor], arch: RosinalityArchitecture,
                    where: str) -> dict[str, torch.Tensor]:
    """rosinality's ``g_ema`` tensors under the port's NVIDIA-style keys (see the module
    docstring), conv weights scaled by 1/sqrt(fan_in). Every tensor is used or checked: any
    left over is a `FileFormatError`."""
    left = dict(tensors)
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        if key not in left:
            raise FileFormatError(f"{where} has no tensor {key!r}")
        return left.pop(key).float()

    for i in range(arch.n_mlp):
        out[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")

    def styled_conv(ours: str, theirs: str, noise: int) -> None:
        weight = take(f"{theirs}.conv.weight")
        if weight.shape[0] != 1:
            raise FileFormatError(f"{where}: {theirs}.conv.weight has shape "
                                  f"{list(weight.shape)}, expected [1, out, in, k, k]")
        fan_in = weight.shape[2] * weight.shape[3] * weight.shape[4]
        out[f"{ours}.weight"] = weight[0] / math.sqrt(fan_in)
        out[f"{ours}.affine.weight"] = take(f"{theirs}.conv.modulation.weight")
        out[f"{ours}.affine.bias"] = take(f"{theirs}.conv.modulation.bias")
        out[f"{ours}.bias"] = take(f"{theirs}.activate.bias")
        out[f"{ours}.noise_strength"] = take(f"{theirs}.noise.weight").reshape(())
        noise_map = take(f"noises.noise_{noise}")
        out[f"{ours}.noise_const"] = noise_map.reshape(noise_map.shape[-2:])

    def to_rgb(ours: str, theirs: str) -> None:
        # their 1x1 conv's scale 1/sqrt(in) is the port's ToRGB weight_gain: stored unscaled
        out[f"{ours}.weight"] = take(f"{theirs}.conv.weight")[0]
        out[f"{ours}.affine.weight"] = take(f"{theirs}.conv.modulation.weight")
        out[f"{ours}.affine.bias"] = take(f"{theirs}.conv.modulation.bias")
        out[f"{ours}.bias"] = take(f"{theirs}.bias").reshape(-1)

    out["synthesis.b4.const"] = take("input.input")[0]
    styled_conv("synthesis.b4.conv1", "conv1", 0)
    to_rgb("synthesis.b4.torgb", "to_rgb1")
    blur = fir_filter(BLUR_TAPS) * 4
    for k in range(int(math.log2(arch.size)) - 2):
        block = f"synthesis.b{8 * 2**k}"
        styled_conv(f"{block}.conv0", f"convs.{2 * k}", 2 * k + 1)
        styled_conv(f"{block}.conv1", f"convs.{2 * k + 1}", 2 * k + 2)
        to_rgb(f"{block}.torgb", f"to_rgbs.{k}")
        for key in (f"convs.{2 * k}.conv.blur.kernel", f"to_rgbs.{k}.upsample.kernel"):
            if not torch.allclose(take(key), blur, atol=1e-6):
                raise FileFormatError(f"{where}: {key} is not the [1, 3, 3, 1] blur kernel, the "
                                      "only one the port supports")
    if left:
        raise FileFormatError(f"{where} has tensors the StyleGAN2 port does not use: "
                              f"{', '.join(sorted(left)[:5])}")
    return out


def load_rosinality(path: str | Path) -> StyleGAN2:
    """Build the ``g_ema`` generator of a rosinality StyleGAN2 checkpoint, float32 on the CPU,
    as the port `StyleGAN2` (named ``rosinality:PATH``). See the module docstring for w_avg."""
    path = Path(path)
    data = read_checkpoint(path)
    where = f"{path}: g_ema"
    args = data.get("args")
    arch_name = args.values.get("arch") if isinstance(args, TrainingArgs) else None
    if arch_name not in (None, "stylegan2"):
        raise FileFormatError(f"{path} was trained with --arch {arch_name}; only rosinality's "
                              "'stylegan2' generator is supported")
    tensors = _generator_tensors(data, str(path))
    arch = RosinalityArchitecture.from_state_dict(tensors, where)
    model = StyleGAN2(arch.config(), name=f"rosinality:{path}")
    state = to_nvidia_state(tensors, arch, where)
    latent_avg = data.get("latent_avg")
    if latent_avg is None:
        state["mapping.w_avg"] = torch.zeros(arch.style_dim)    # estimated below
    elif isinstance(latent_avg, torch.Tensor) and latent_avg.numel() == arch.style_dim:
        state["mapping.w_avg"] = latent_avg.reshape(-1).float()
    else:
        raise FileFormatError(f"{path}: latent_avg is not a tensor of {arch.style_dim} values")
    load_nvidia_state(model, state, where)
    model.w_avg_source = "the checkpoint's latent_avg"
    if latent_avg is None:
        w_avg = estimate_w_avg(lambda z: model.mapping_net(z, None), arch.style_dim,
                               n=W_AVG_SAMPLES, seed=W_AVG_SEED)
        model.mapping_net.w_avg.copy_(w_avg)
        model.w_avg_source = (f"estimated: the mean mapping of {W_AVG_SAMPLES} normal z from "
                              f"torch.Generator().manual_seed({W_AVG_SEED})")
    return model.eval().requires_grad_(False)
