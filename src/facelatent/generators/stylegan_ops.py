"""Low-level ops of NVIDIA's StyleGAN generators in plain PyTorch (no compiled extensions).

- `fir_filter`: the normalised 2-D low-pass filter built from 1-D taps such as ``[1, 3, 3, 1]``.
- `upfirdn2d`: upsample by zero insertion, pad (or crop), convolve with a FIR filter,
  downsample: the one resampling primitive every StyleGAN up/down step is written in.
- `bias_act`: add a per-channel bias, apply an activation, scale by a gain, clamp.

These are reference implementations: they compute what NVIDIA's CUDA kernels compute, in the
same order of operations, so a port built on them reproduces the official outputs to float32
rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "bias_act", "fir_filter", "upfirdn2d", "upsample2d"]

# name -> (function, default gain). The gain keeps the activations' second moment about 1 for
# unit-variance inputs (sqrt 2 for the ReLU family), as the networks were trained with.
ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2.0)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2.0)),
}


def fir_filter(taps: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """1-D taps `[K]` (made separable: outer product) or a 2-D `[K, K]` filter -> `[K, K]`
    float32, normalised to sum 1 so a flat image keeps its value."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 1:
        f = torch.outer(f, f)
    if f.ndim != 2:
        raise ValueError(f"FIR filter taps must be 1-D or 2-D, got shape {list(f.shape)}")
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample, FIR-filter, downsample `x [N, C, H, W]` channel by channel.

    ``padding`` is (left, right, top, bottom) in upsampled pixels; negative values crop.
    The filter `f [K, K]` is applied as a convolution (flipped), scaled by ``gain``; upsampling
    by ``up`` needs gain ``up ** 2`` to keep the image's brightness, since it inserts zeros.
    """
    n, c, h, w = x.shape
    if up > 1:  # zero insertion: each pixel followed by up - 1 zeros along both axes
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    left, right, top, bottom = padding
    x = F.pad(x, [max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)])
    height, width = x.shape[2], x.shape[3]
    x = x[:, :, max(-top, 0): height - max(-bottom, 0), max(-left, 0): width - max(-right, 0)]
    kernel = (f * gain).flip([0, 1]).to(x.dtype)
    x = F.conv2d(x, kernel.expand(c, 1, *kernel.shape), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """`[N, C, H, W]` -> `[N, C, factor * H, factor * W]` through the FIR filter `f [K, K]`."""
    k = f.shape[-1]
    pad0, pad1 = (k + factor - 1) // 2, (k - factor) // 2
    return upfirdn2d(x, f, up=factor, padding=(pad0, pad1, pad0, pad1), gain=factor * factor)


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, act: str = "linear",
             gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """`act(x + bias) * gain`, then clamped to [-clamp, clamp].

    `x` is `[N, C]` or `[N, C, H, W]`, `bias` `[C]`; ``gain`` None is the activation's default.
    """
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    fn, default_gain = ACTIVATIONS[act]
    x = fn(x)
    gain = default_gain if gain is None else gain
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
