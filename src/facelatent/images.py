"""Images at the I/O boundary and the one check of the in-memory convention.

Between modules images are float NCHW RGB in [-1, 1] (DESIGN.md); uint8 HWC exists only here:
:func:`load_rgb` reads a file of any mode PIL opens, :func:`to_uint8` / :func:`from_uint8`
convert, :func:`save_png` writes. :func:`check_images` is the single validation of the float
convention that every face model and alignment runs on its inputs, so a wrong input gets the
same one-line message (argument, expectation, what came, the fix) wherever it enters.

Reading guards memory before decoding: the header's size is checked against
:data:`MAX_PIXELS`, JPEGs are decoded at a reduced scale (``Image.draft``) and anything larger
than :data:`MAX_SIDE` is box-averaged down, so a small file that claims a huge image cannot
cost gigabytes.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from facelatent.errors import FileFormatError
from facelatent.io import open_checked

__all__ = ["MAX_ABS", "MAX_PIXELS", "MAX_SIDE", "check_image_list", "check_images",
           "from_uint8", "grid", "load_rgb", "resize", "save_png", "to_uint8"]

# Longest side an image is read at. 4096 keeps every ordinary photo (a 12 MP phone camera gives
# 4032 x 3024) at full resolution, so scores do not change; larger images are averaged down by
# an integer factor. Nothing downstream needs more: YuNet reads the photo letterboxed to 640 px,
# and the largest crop any model reads is 150 px, so a face big enough to be found at 640 px is
# still 6x its detection size here. The decoded result is at most 4096^2 x 3 bytes (50 MB).
MAX_SIDE = 4096
# Images with more pixels are refused before decoding (decompression bombs). 2^27 = 134 MP is
# above the sensors of nearly every camera (medium format reaches 100 MP); a full decode at
# 4 bytes per pixel stays under 540 MB. PNG and other formats without a scaled decoder must
# decode the whole image once before it is averaged down, so this is the bound on their cost.
MAX_PIXELS = 2**27
# Values beyond this are not a generator's overshoot of [-1, 1] (MobileStyleGAN at psi 1 reaches
# about 3) but 0-255 images passed by mistake.
MAX_ABS = 8.0

_BAND_ROWS = 512        # rows converted at a time by _grey_to_l
_ORIENTATION = 0x0112  # EXIF tag
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


# -- the float convention ----------------------------------------------------------------------

def check_images(images: object, name: str = "images", *, size: int | tuple[int, int] | None = None,
                 min_side: int = 1, what: str = "float RGB in [-1, 1]",
                 max_abs: float | None = MAX_ABS, values: bool = True, fix: str = "") -> Tensor:
    """``images`` unchanged if it is a float tensor ``[N, 3, H, W]`` (N >= 1) of ``what``, or a
    one-line ValueError that names ``name``, what was expected, what came and the fix.

    ``size``: required ``H, W`` (an int for square). ``min_side``: smallest ``H`` and ``W``.
    ``values``: also check for NaN/inf and, unless ``max_abs`` is None, that no value is beyond
    ``max_abs`` (0-255 images given for [-1, 1]); one pass over the data. ``fix``: how to make a
    right input, appended to shape errors (e.g. which function cuts the crops).
    """
    hw = (size, size) if isinstance(size, int) else size
    want = f"[N, 3, {hw[0]}, {hw[1]}]" if hw else "[N, 3, H, W]"
    hint = f"; {fix}" if fix else ""
    if not isinstance(images, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {want} of {what}, got "
                         f"{type(images).__name__}{hint}")
    shape = list(images.shape)
    if images.ndim != 4 or shape[1] != 3:
        if images.ndim == 3 and shape[0] == 3:
            hint = f"; add a batch axis with {name}[None] for one image"
        elif images.ndim == 4 and shape[3] == 3:
            hint = f"; for channels-last [N, H, W, 3] use {name}.permute(0, 3, 1, 2)"
        raise ValueError(f"{name} must have shape {want} ({what}), got {shape}{hint}")
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch {shape}; pass N >= 1 images")
    if hw and tuple(shape[2:]) != tuple(hw):
        raise ValueError(f"{name} must have shape {want} ({what}), got {shape}{hint}")
    if min(shape[2:]) < max(min_side, 1):
        raise ValueError(f"{name} is {shape[3]}x{shape[2]} pixels (W x H); expected at least "
                         f"{max(min_side, 1)}x{max(min_side, 1)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor ({what}), got {images.dtype}; convert "
                         "uint8 images with facelatent.images.from_uint8 (x / 127.5 - 1)")
    if values:
        lo, hi = (float(v) for v in torch.aminmax(images.detach()))   # NaN propagates
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} holds NaN or infinite values; drop or repair those images")
        if max_abs is not None and max(-lo, hi) > max_abs:
            raise ValueError(f"{name} must be {what}, got values from {lo:.1f} to {hi:.1f}; "
                             "convert 0-255 images with x / 127.5 - 1")
    return images


def check_image_list(images: object, name: str = "images", **kwargs: object) -> list[Tensor]:
    """A batch ``[N, 3, H, W]`` or a sequence of ``[3, H, W]`` (photos of different sizes), each
    checked by :func:`check_images` (keyword arguments as there); returns the list of
    ``[3, H, W]`` tensors (views of a batch, no copy)."""
    if isinstance(images, Tensor):
        check_images(images, name, **kwargs)  # type: ignore[arg-type]
        return list(images.unbind(0))
    if not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
        raise ValueError(f"{name} must be a tensor [N, 3, H, W] or a list of [3, H, W] tensors, "
                         f"got {type(images).__name__}")
    items = list(images)
    for i, im in enumerate(items):
        if not isinstance(im, Tensor) or im.ndim != 3 or im.shape[0] != 3:
            got = list(im.shape) if isinstance(im, Tensor) else type(im).__name__
            hint = ("; for channels-last [H, W, 3] use .permute(2, 0, 1)"
                    if isinstance(im, Tensor) and im.ndim == 3 and im.shape[2] == 3 else "")
            raise ValueError(f"{name}[{i}] must be a tensor [3, H, W] (float RGB in [-1, 1]), "
                             f"got {got}{hint}")
        check_images(im[None], f"{name}[{i}]", **kwargs)  # type: ignore[arg-type]
    return items


# -- conversions -------------------------------------------------------------------------------

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
    check_images(images, values=False)
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def from_uint8(arrays: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """`[N, H, W, 3]` (or a list of `[H, W, 3]`) uint8 -> `[N, 3, H, W]` float in [-1, 1]."""
    arr = np.stack(list(arrays)) if not isinstance(arrays, np.ndarray) else arrays
    if arr.ndim != 4 or arr.shape[-1] != 3 or 0 in arr.shape:
        raise ValueError(f"expected uint8 images of shape [N, H, W, 3] with N, H, W >= 1, got "
                         f"{list(arr.shape)}")
    # One float buffer, scaled in place: a photo of 4096^2 is 200 MB as float. Arrays read from
    # PIL are read-only, which torch only warns about; the uint8 copy is a quarter of the float.
    arr = np.array(arr) if not arr.flags.writeable else np.ascontiguousarray(arr)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float()
    return x.div_(127.5).sub_(1.0)


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


# -- files -------------------------------------------------------------------------------------

def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write one `[H, W, 3]` uint8 image."""
    Image.fromarray(image).save(path, format="PNG")


def load_rgb(path: str | Path, max_side: int = MAX_SIDE) -> np.ndarray:
    """Read an image file as ``[H, W, 3]`` uint8 RGB, upright by its EXIF orientation.

    Every mode PIL opens is mapped to 8-bit RGB by its meaning: 16-bit greys (``I;16*``) by
    ``v / 257``; 32-bit ``I`` as 16-bit when a value exceeds 255, else as 8-bit; float ``F`` as
    [0, 1] when its maximum is at most 1, else as 0-255 (clipped); transparency (``LA``,
    ``RGBA``, ``P`` with a transparent colour) composited over white, as a viewer shows it.
    Images whose longer side exceeds ``max_side`` come back averaged down by the smallest integer
    factor that fits (JPEGs decoded at a reduced scale to begin with). Raises
    :class:`FileFormatError` (a ValueError) naming the file for a folder, an unreadable,
    truncated or non-image file, or one over :data:`MAX_PIXELS` pixels; FileNotFoundError if
    it does not exist.
    """
    path = Path(path)
    with open_checked(path, "an image") as handle:
        try:
            with warnings.catch_warnings():
                # MAX_PIXELS below is the cap; PIL's own warning would fire under it.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(handle) as img:
                    return _decode(img, path, max_side)
        except Image.DecompressionBombError as exc:     # PIL's own cap, far above ours
            claimed = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(claimed[1]) / 1e6:.0f} MP" if claimed else "too large"
            raise FileFormatError(_too_large(path, size)) from None
        except UnidentifiedImageError:
            raise FileFormatError(f"cannot read image {path}: empty, damaged, or not in an image "
                                  "format PIL reads") from None
        except (OSError, ValueError, SyntaxError) as exc:   # PIL raises all three on bad data
            if isinstance(exc, FileFormatError):
                raise
            raise FileFormatError(f"cannot read image {path}: {exc}") from None


def _decode(img: Image.Image, path: Path, max_side: int) -> np.ndarray:
    """Header checks, then a decode no larger than needed; see :func:`load_rgb`."""
    w, h = img.size
    if w < 1 or h < 1:
        raise FileFormatError(f"cannot read image {path}: it is {w}x{h} pixels")
    if w * h > MAX_PIXELS:
        raise FileFormatError(_too_large(path, f"{w}x{h} ({w * h / 1e6:.0f} MP)"))
    orientation = img.getexif().get(_ORIENTATION)
    factor = math.ceil(max(w, h) / max_side)
    if factor > 1 and img.format == "JPEG":
        # The decoder scales by 1/2, 1/4 or 1/8 while decoding, to no less than the size asked.
        img.draft("RGB" if img.mode != "CMYK" else img.mode, (-(-w // factor), -(-h // factor)))
        factor = math.ceil(max(img.size) / max_side)
    img = _eight_bit(img)
    if factor > 1:
        img = img.reduce(factor)          # box average: no aliasing, one output-sized buffer
    if orientation in _TRANSPOSE:
        img = img.transpose(_TRANSPOSE[orientation])
    if img.mode in ("LA", "RGBA"):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img.convert("RGBA"))
    return np.asarray(img.convert("RGB"))


def _too_large(path: Path, size: str) -> str:
    return (f"image {path} is {size}, over the {MAX_PIXELS / 1e6:.0f} MP that facelatent "
            "decodes (a guard against decompression bombs); shrink it first")


def _eight_bit(img: Image.Image) -> Image.Image:
    """``img`` in a mode with 8 bits per channel that ``Image.reduce`` takes (L, LA, RGB, RGBA,
    CMYK), values mapped as :func:`load_rgb` describes."""
    mode = img.mode
    if mode.startswith("I;16"):
        return _grey_to_l(img, lambda v: (v.astype(np.uint32) + 128) // 257)
    if mode == "I":
        top = 65535 if int(img.getextrema()[1]) > 255 else 255    # type: ignore[arg-type]
        return _grey_to_l(img, lambda v: np.round(np.clip(v, 0, top) * (255 / top)))
    if mode == "F":
        high = float(img.getextrema()[1])                         # type: ignore[arg-type]
        scale = 255.0 if high <= 1.0 else 1.0
        return _grey_to_l(img, lambda v: np.clip(np.round(np.nan_to_num(v) * scale), 0, 255))
    if mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return img
    return img.convert("RGBA" if "A" in mode else "RGB")   # 1, PA, La, RGBa, YCbCr, LAB, HSV...


def _grey_to_l(img: Image.Image, to_8bit: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    """An "L" image from a wide grey one, mapped band by band: a full-size copy at 4-8 bytes per
    pixel would cost more than the decoded image itself."""
    w, h = img.size
    out = np.empty((h, w), np.uint8)
    for top in range(0, h, _BAND_ROWS):
        bottom = min(h, top + _BAND_ROWS)
        out[top:bottom] = to_8bit(np.asarray(img.crop((0, top, w, bottom))))
    return Image.fromarray(out, "L")
