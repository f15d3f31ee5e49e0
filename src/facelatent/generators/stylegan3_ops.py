"""StyleGAN3's filtered leaky ReLU in plain PyTorch, on `stylegan_ops.upfirdn2d`.

An alias-free layer applies its nonlinearity at a higher sampling rate than it stores: add the
bias, upsample through a low-pass filter, leaky ReLU (times a gain, then clamped), low-pass
filter again and keep every ``down``-th pixel. The filters are whatever the checkpoint stores:

- ``None``: no filter (the last layer, which neither upsamples nor downsamples);
- 1-D taps ``[K]``: a separable filter (Kaiser-windowed sinc), applied along the rows and then
  along the columns, which costs 2K multiplications per pixel instead of K^2;
- 2-D ``[K, K]``: a radially symmetric filter (StyleGAN3-R's downsampling), applied as is.

This is the reference path: the same sequence of operations as NVIDIA's fused CUDA kernel, so
the port reproduces the official outputs to float32 rounding.
"""

from __future__ import annotations

import torch

from facelatent.generators.stylegan_ops import bias_act, upfirdn2d

__all__ = ["filter_taps", "filtered_lrelu", "fir_resample"]


def filter_taps(f: torch.Tensor | None) -> int:
    """Length of a filter along each axis (1 for no filter)."""
    return 1 if f is None else int(f.shape[-1])


def fir_resample(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
                 padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                 gain: float = 1.0) -> torch.Tensor:
    """`upfirdn2d` with a filter that may be absent, separable `[K]` or full `[K, K]`.

    `x [N, C, H, W]`; ``padding`` (left, right, top, bottom) is in upsampled pixels, negative
    crops. Output side: ``(side * up + pad_before + pad_after - (K - 1)) // down``, rounded up.
    """
    if f is None:
        f = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    if f.ndim == 2:
        return upfirdn2d(x, f, up=up, down=down, padding=padding, gain=gain)
    # rows first (zero insertion and padding of both axes happen here), then columns; the
    # stride is taken after both, as for the full filter
    x = upfirdn2d(x, f[None, :], up=up, padding=padding, gain=gain)
    return upfirdn2d(x, f[:, None], down=down)


def filtered_lrelu(x: torch.Tensor, bias: torch.Tensor, up_filter: torch.Tensor | None,
                   down_filter: torch.Tensor | None, *, up: int, down: int,
                   padding: tuple[int, int, int, int], gain: float, slope: float,
                   clamp: float | None) -> torch.Tensor:
    """`x [N, C, H, W]` + `bias [C]`, upsampled by ``up`` through ``up_filter`` (gain up^2,
    which zero insertion needs to keep the brightness), ``act(.) * gain`` clamped to
    ``+-clamp``, then filtered by ``down_filter`` and downsampled by ``down``.

    ``slope`` is 0.2 (leaky ReLU) or 1 (no activation, StyleGAN3's last layer).
    """
    if slope not in (0.2, 1.0):
        raise ValueError(f"slope must be 0.2 (leaky ReLU) or 1 (linear), got {slope}")
    x = x + bias.view(1, -1, 1, 1)
    x = fir_resample(x, up_filter, up=up, padding=padding, gain=float(up * up))
    x = bias_act(x, None, "lrelu" if slope == 0.2 else "linear", gain=gain, clamp=clamp)
    return fir_resample(x, down_filter, down=down)
