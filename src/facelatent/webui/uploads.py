"""Uploads from the browser, taken as bytes and checked before anything is decoded.

The editor never opens a path that came from the browser: the front end hands over the
uploaded bytes and a display name, and the name is only ever shown. Each check below runs
before the next costs anything:

1. size in bytes (:attr:`UploadLimits.max_bytes`), before the bytes are looked at;
2. the type, by the file's first bytes (PNG, JPEG or WebP for photos; an .npz, i.e. a zip,
   for latents), whatever the name says;
3. for images, the pixel count the header claims (:attr:`UploadLimits.max_pixels`), before
   decoding;
4. then the bytes go to a private temporary file and are read the way `facelatent score`
   reads a photo (`facelatent.images.load_rgb` through `facelatent.faces.files`: EXIF
   orientation, every PIL mode, decompression-bomb guard, large images averaged down, faces
   need 16 px) or the way `facelatent edit --latents` reads latents (no pickles).

Every failure is a `ValueError` with one line that names the upload, never the temporary path.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from torch import Tensor

if TYPE_CHECKING:
    from facelatent.editing.start import EditStart

__all__ = ["DEFAULT_LIMITS", "IMAGE_TYPES", "UploadLimits", "clean_name", "read_latents_upload",
           "read_photo_upload"]

IMAGE_TYPES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}    # + WebP (RIFF....WEBP)
_ZIP = b"PK\x03\x04"
T = TypeVar("T")


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be. The defaults fit any phone photo (12 MP, a few MB)."""

    max_bytes: int = 20 * 2**20          # 20 MiB per file; the server refuses more at upload
    max_pixels: int = 40_000_000         # 40 MP, from the header, before decoding
    max_latent_bytes: int = 4 * 2**20    # a latents file holds a few W+ codes (47 KB each)

    def megabytes(self, n: int) -> str:
        return f"{n / 2**20:.0f} MB"


DEFAULT_LIMITS = UploadLimits()


def clean_name(name: str | None, default: str = "upload") -> str:
    """A display name and file stem from an upload's name: its last path part without the
    suffix, letters, digits, '-' and '_' only, at most 40 characters."""
    stem = Path(str(name or "")).name.rsplit(".", 1)[0] if name else ""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:40]
    return stem or default


def _image_type(data: bytes) -> str | None:
    for kind, magic in IMAGE_TYPES.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _check_size(data: bytes, name: str, limit: int, limits: UploadLimits) -> None:
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{name}: expected the uploaded file's bytes")
    if len(data) == 0:
        raise ValueError(f"{name} is empty (0 bytes)")
    if len(data) > limit:
        raise ValueError(f"{name} is {len(data) / 2**20:.1f} MB, over the "
                         f"{limits.megabytes(limit)} this editor accepts; shrink it first")


def _check_pixels(data: bytes, name: str, limits: UploadLimits) -> None:
    """Refuse an image whose header claims more than ``limits.max_pixels``, before decoding.
    A header PIL cannot read is left for the full read, which reports it in score's words."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Image.DecompressionBombError as exc:     # PIL's own cap, above ours
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(claimed[1]) / 1e6:.0f} MP" if claimed else "too large"
        raise ValueError(f"{name} is {size}, over the {limits.max_pixels / 1e6:.0f} MP this "
                         "editor accepts; shrink it first") from None
    except Exception:  # noqa: BLE001 - PIL raises many kinds; the full read names the fault
        return
    if w * h > limits.max_pixels:
        raise ValueError(f"{name} is {w}x{h} pixels ({w * h / 1e6:.0f} MP), over the "
                         f"{limits.max_pixels / 1e6:.0f} MP this editor accepts; shrink it first")


def _through_file(data: bytes, name: str, suffix: str, read: Callable[[Path], T]) -> T:
    """``read(path)`` of a private temporary copy of ``data``, with the temporary path replaced
    by ``name`` in any error message."""
    fd, tmp = tempfile.mkstemp(prefix="facelatent-upload-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            return read(Path(tmp))
        except (ValueError, OSError) as exc:
            text = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ValueError(text.replace(tmp, name)) from None
    finally:
        os.unlink(tmp)


def read_photo_upload(data: bytes, name: str, limits: UploadLimits = DEFAULT_LIMITS) -> Tensor:
    """An uploaded photo as float RGB ``[3, H, W]`` in [-1, 1] (module docstring: the checks)."""
    # `facelatent score`'s own reader of one file: the same decoding and the same checks
    from facelatent.faces.files import _read_one

    _check_size(data, name, limits.max_bytes, limits)
    kind = _image_type(bytes(data[:16]))
    if kind is None:
        raise ValueError(f"{name} is not a PNG, JPEG or WebP image; upload a photo in one of "
                         "those formats")
    _check_pixels(bytes(data), name, limits)

    def read(path: Path) -> Tensor:
        image, error = _read_one(path, generated=False)
        if image is None:
            raise ValueError(error)
        return image

    return _through_file(bytes(data), name, "." + kind.lower(), read)


def read_latents_upload(data: bytes, name: str, space: str = "w",
                        limits: UploadLimits = DEFAULT_LIMITS) -> tuple[EditStart, str]:
    """An uploaded latents file (``latents.npz`` from `facelatent generate`, `facelatent
    invert` or this editor), read as `facelatent edit --latents` reads it: its
    `facelatent.editing.EditStart` and its format ("facelatent.latents" or
    "facelatent.inversion")."""
    from facelatent.editing.start import load_start
    from facelatent.io import load_npz

    _check_size(data, name, limits.max_latent_bytes, limits)
    if not bytes(data[:4]) == _ZIP:
        raise ValueError(f"{name} is not an .npz file; upload latents.npz from `facelatent "
                         "generate`, `facelatent invert` or this editor's latent download")

    def read(path: Path) -> tuple[EditStart, str]:
        start = load_start([path], space)            # every check; then the header it passed
        return start, str(load_npz(path)["format"])

    return _through_file(bytes(data), name, ".npz", read)
