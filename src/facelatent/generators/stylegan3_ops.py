"""StyleGAN3's filtered leaky ReLU in plain PyTorch, computed polyphase.

An alias-free layer applies its nonlinearity at a higher sampling rate than it stores: add the
bias, upsample through a low-pass filter, leaky ReLU (times a gain, then clamped), low-pass
filter again and keep every ``down``-th pixel. This is what `stylegan_ops.upfirdn2d` computes
twice over (zero insertion, pad, convolve; convolve, subsample), but most of that work would
multiply inserted zeros or compute pixels the subsampling drops. Here instead:

- upsampling is a transposed convolution of stride ``up`` (each input pixel spreads the filter
  over the output), then the padding or cropping, which gives the same samples as zero
  insertion + padding + convolution without multiplying a zero;
- downsampling is a convolution of stride ``down``, which computes only the kept pixels.

Both take the filters the checkpoint stores: ``None`` (no filter, the last layer), 1-D taps
``[K]`` (separable: along the rows, then the columns) or 2-D ``[K, K]`` (StyleGAN3-R's radially
symmetric downsampling filters). The results equal `upfirdn2d`'s to float32 rounding (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facelatent.generators.stylegan_ops import bias_act

__all__ = ["filtered_lrelu", "fir_downsample", "fir_upsample"]


def _per_channel(f: torch.Tensor, channels: int, shape: tuple[int, int]) -> torch.Tensor:
    """``f`` as the weight of a per-channel (grouped) convolution: `[channels, 1, *shape]`."""
    return f.reshape(1, 1, *shape).expand(channels, 1, *shape)


def fir_upsample(x: torch.Tensor, f: torch.Tensor | None, up: int,
                 padding: tuple[int, int, int, int], gain: float = 1.0) -> torch.Tensor:
    """`x [N, C, H, W]` upsampled by ``up`` and filtered by ``f`` (times ``gain``), padded by
    ``padding`` (left, right, top, bottom; negative crops) in upsampled pixels as
    ``upfirdn2d(x, f, up=up, padding=padding, gain=gain)`` does: output side
    ``side * up + before + after - (K - 1)``."""
    c = x.shape[1]
    if f is None:
        f = torch.ones(1, device=x.device)
    k = f.shape[-1]
    f = f.to(x.dtype)
    # the transposed conv gives the full convolution of the zero-inserted image, less its last
    # up - 1 samples (zeros); sample m of the padded result is sample m + k - 1 - before of it
    if f.ndim == 1:
        x = F.conv_transpose2d(x, _per_channel(f * gain, c, (1, k)), stride=(1, up), groups=c)
        x = F.conv_transpose2d(x, _per_channel(f, c, (k, 1)), stride=(up, 1), groups=c)
    else:
        x = F.conv_transpose2d(x, _per_channel(f * gain, c, (k, k)), stride=up, groups=c)
    left, right, top, bottom = padding
    return F.pad(x, [left - k + 1, right + up - k, top - k + 1, bottom + up - k])


def fir_downsample(x: torch.Tensor, f: torch.Tensor | None, down: int) -> torch.Tensor:
    """`x [N, C, H, W]` filtered by ``f`` (no padding) keeping every ``down``-th pixel, as
    ``upfirdn2d(x, f, down=down)``: output side ``ceil((side - (K - 1)) / down)``."""
    if f is None:
        return x[:, :, ::down, ::down]
    c, k = x.shape[1], f.shape[-1]
    f = f.flip(list(range(f.ndim))).to(x.dtype)    # upfirdn2d convolves: the filter flipped
    if f.ndim == 1:
        x = F.conv2d(x, _per_channel(f, c, (1, k)), stride=(1, down), groups=c)
        return F.conv2d(x, _per_channel(f, c, (k, 1)), stride=(down, 1), groups=c)
    return F.conv2d(x, _per_channel(f, c, (k, k)), stride=down, groups=c)


def filtered_lrelu(x: torch.Tensor, bias: torch.Tensor, up_filter: torch.Tensor | None,
                   down_filter: torch.Tensor | None, *, up: int, down: int,
                   padding: tuple[int, int, int, int], gain: float, slope: float,
                   clamp: float | None) -> torch.Tensor:
    """`x [N, C, H, W]` + `bias [C]`, upsampled by ``up`` through ``up_filter`` (gain up^2,
    which zero insertion needs to keep the brightness) and padded by ``padding``,
    ``act(.) * gain`` clamped to ``+-clamp``, then filtered by ``down_filter`` and downsampled
    by ``down``.

    ``slope`` is 0.2 (leaky ReLU) or 1 (no activation, StyleGAN3's last layer).
    """
    if slope not in (0.2, 1.0):
        raise ValueError(f"slope must be 0.2 (leaky ReLU) or 1 (linear), got {slope}")
    x = x + bias.view(1, -1, 1, 1)
    if up_filter is not None or up > 1 or any(padding):
        x = fir_upsample(x, up_filter, up, padding, gain=float(up * up))
    x = bias_act(x, None, "lrelu" if slope == 0.2 else "linear", gain=gain, clamp=clamp)
    if down_filter is not None or down > 1:
        x = fir_downsample(x, down_filter, down)
    return x
