"""Image conversion at the I/O boundary: float NCHW RGB in [-1, 1] <-> uint8 HWC files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize `[N, C, H, W]` to `[N, C, size, size]` (antialiased when shrinking)."""
    if size <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    shrink = size < images.shape[-1]
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shrink)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """`[N, 3, H, W]` float in [-1, 1] (clipped) -> `[N, H, W, 3]` uint8."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape [N, 3, H, W], got {list(images.shape)}")
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def from_uint8(arrays: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """`[N, H, W, 3]` (or a list of `[H, W, 3]`) uint8 -> `[N, 3, H, W]` float in [-1, 1]."""
    arr = np.stack(list(arrays)) if not isinstance(arrays, np.ndarray) else arrays
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape [N, H, W, 3], got {list(arr.shape)}")
    return torch.from_numpy(arr.astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1.0


def grid(images: np.ndarray, cols: int | None = None, pad: int = 0) -> np.ndarray:
    """Tile `[N, H, W, 3]` uint8 images row by row into one `[rows*H, cols*W, 3]` image."""
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        out[r * (h + pad): r * (h + pad) + h, k * (w + pad): k * (w + pad) + w] = img
    return out


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write one `[H, W, 3]` uint8 image."""
    Image.fromarray(image).save(path, format="PNG")


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as `[H, W, 3]` uint8 RGB, turned upright by its EXIF orientation; a
    clear error for unreadable, truncated or absurdly large files."""
    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
