"""The way back from an FFHQ-aligned crop to its photo: :class:`FFHQTransform`, which records
where the crop came from, and :func:`paste_back`, which puts a (edited) crop back in its place.

    crops, transforms = align_photo_faces(photo)             # every face, left to right
    edited = ...                                             # [3, S, S], e.g. a generator output
    out = paste_back(photo, edited, transforms[0])           # [3, H, W], the photo edited

Coordinates: photo pixels (x, y) with pixel centres at integers, as everywhere in
:mod:`facelatent.faces.align`. A crop of side S samples the square ``quad`` so that its pixel
``(u, v)`` (centre) sits at the fraction ``((u + 0.5) / S, (v + 0.5) / S)`` of the square:

    photo point = TL + fu * (TR - TL) + fv * (BL - TL),     fu, fv in [0, 1] inside the quad

Working in fractions rather than crop pixels makes the transform independent of the crop's
resolution, so a 256 px alignment can take back a 1024 px generator output.

Why a soft ellipse: the generator's reconstruction never matches the photo's background, hair
or the square's edges; only the face itself is meant to change. The blend weight is 1 on the
face (:data:`FACE_ELLIPSE`, chosen on the average FFHQ face's landmarks: forehead to chin, jaw
to jaw) and falls smoothly to 0 before the ellipse's edge, so no seam shows and every pixel
outside the ellipse, hence outside the quad, keeps its exact value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facelatent.images import check_images

__all__ = ["DEFAULT_FEATHER", "FACE_ELLIPSE", "FFHQTransform", "align_photo_faces", "face_mask", "paste_back"]

# The blended region (centre x, centre y, radius x, radius y) in fractions of the aligned
# crop's side. FFHQ_LANDMARKS68 puts the jaw at x 0.20-0.78, the brows at y 0.39 and the chin
# at y 0.93. With the default feather (0.2) the weight is 1 on every landmark but the jaw's
# two ends at ear height (0.75 and 0.91) and the chin (0.94), so an edit that moves the jaw
# is not ghosted; the ellipse ends at y 0.995, inside the square, so the weight is 0 on the
# crop's border.
FACE_ELLIPSE = (0.5, 0.6, 0.37, 0.395)
DEFAULT_FEATHER = 0.2
ARRAY_LENGTH = 11   # to_array: 4 corners (x, y), size, photo width, photo height


@dataclass(frozen=True)
class FFHQTransform:
    """Where an FFHQ-aligned crop lies in its photo.

    ``quad``: the crop square's corners in photo pixels (x, y; pixel centres at integers),
    top-left, bottom-left, bottom-right, top-right: the square's outer pixel edges, as
    :func:`facelatent.faces.align.ffhq_quad` gives them (parts may lie outside the photo).
    ``size``: the crop's side in pixels when it was cut. ``photo_size``: (width, height) of the
    photo. Saved with :meth:`to_array` (11 floats, for npz) or :meth:`to_json` (a dict).
    """

    quad: tuple[tuple[float, float], tuple[float, float], tuple[float, float],
                tuple[float, float]]
    size: int
    photo_size: tuple[int, int]

    def __post_init__(self) -> None:
        corners = np.asarray(self.quad, dtype=np.float64)
        if corners.shape != (4, 2) or not np.isfinite(corners).all():
            raise ValueError(f"quad must be 4 finite (x, y) corners (TL, BL, BR, TR), got "
                             f"{self.quad!r}")
        edge_x, edge_y = corners[3] - corners[0], corners[1] - corners[0]
        if abs(edge_x[0] * edge_y[1] - edge_x[1] * edge_y[0]) < 1e-6:
            raise ValueError(f"quad {self.quad!r} has no area; pass the corners ffhq_quad gives")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"size must be an int >= 8 (the crop's side), got {self.size!r}")
        w, h = self.photo_size
        if min(w, h) < 1 or int(w) != w or int(h) != h:
            raise ValueError(f"photo_size must be (width, height) in whole pixels, got "
                             f"{self.photo_size!r}")

    @classmethod
    def from_quad(cls, quad: Tensor | np.ndarray, size: int, photo_size: tuple[int, int],
                  ) -> FFHQTransform:
        """From corners ``[4, 2]`` (TL, BL, BR, TR photo pixels), the crop side and (W, H)."""
        q = np.asarray(quad.detach().cpu() if isinstance(quad, Tensor) else quad, np.float64)
        if q.shape != (4, 2):
            raise ValueError(f"quad must have shape [4, 2] (TL, BL, BR, TR), got {list(q.shape)}")
        corners = tuple((float(x), float(y)) for x, y in q)
        return cls(corners, int(size), (int(photo_size[0]), int(photo_size[1])))  # type: ignore

    # -- geometry --------------------------------------------------------------------------
    def _axes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(origin [2], axes [2, 2])``: photo point = origin + axes @ (fu, fv)."""
        q = np.asarray(self.quad, dtype=np.float64)
        return q[0], np.stack([q[3] - q[0], q[1] - q[0]], axis=1)

    def fractions(self, points: Tensor) -> Tensor:
        """Photo pixels ``[..., 2]`` -> fractions ``(fu, fv)`` of the square ``[..., 2]``, in
        [0, 1] inside the quad (crop pixel = fraction * crop side - 0.5)."""
        origin, axes = self._axes()
        o, inv = (points.new_tensor(v) for v in (origin, np.linalg.inv(axes)))
        return (points - o) @ inv.T

    def to_photo(self, points: Tensor, crop_size: int | None = None) -> Tensor:
        """Crop pixels ``[..., 2]`` (x, y, of a crop of side ``crop_size``, default
        :attr:`size`) -> photo pixels ``[..., 2]``."""
        origin, axes = self._axes()
        o, a = (points.new_tensor(v) for v in (origin, axes))
        return o + ((points + 0.5) / (crop_size or self.size)) @ a.T

    def to_crop(self, points: Tensor, crop_size: int | None = None) -> Tensor:
        """Photo pixels ``[..., 2]`` -> crop pixels ``[..., 2]`` (of side ``crop_size``,
        default :attr:`size`); points outside the quad land outside ``[-0.5, S - 0.5]``."""
        return self.fractions(points) * (crop_size or self.size) - 0.5

    @property
    def side(self) -> float:
        """The square's side in photo pixels."""
        return float(np.linalg.norm(self._axes()[1][:, 0]))

    # -- saving ----------------------------------------------------------------------------
    def to_array(self) -> np.ndarray:
        """``[11]`` float64: TL, BL, BR, TR corners (x, y), size, photo width, photo height."""
        return np.array([*np.asarray(self.quad, np.float64).ravel(), self.size,
                         *self.photo_size], dtype=np.float64)

    @classmethod
    def from_array(cls, array: np.ndarray | Tensor) -> FFHQTransform:
        """The inverse of :meth:`to_array`."""
        a = np.asarray(array.detach().cpu() if isinstance(array, Tensor) else array, np.float64)
        if a.shape != (ARRAY_LENGTH,):
            raise ValueError(f"an FFHQTransform array has shape [{ARRAY_LENGTH}] (quad, size, "
                             f"photo width, height), got {list(a.shape)}; save it with to_array")
        if not np.isfinite(a).all() or (a[8:] != np.round(a[8:])).any():
            raise ValueError(f"an FFHQTransform array needs finite corners and whole-pixel "
                             f"size and photo size, got {a.tolist()}")
        return cls.from_quad(a[:8].reshape(4, 2), int(a[8]), (int(a[9]), int(a[10])))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict: ``{"kind": "ffhq_quad", "quad": [[x, y] * 4], "size": S,
        "photo_size": [W, H]}``."""
        return {"kind": "ffhq_quad", "quad": [list(c) for c in self.quad], "size": self.size,
                "photo_size": list(self.photo_size)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str) -> FFHQTransform:
        """The inverse of :meth:`to_json` (the dict, or its JSON text)."""
        data = json.loads(value) if isinstance(value, str) else value
        if not isinstance(data, Mapping) or data.get("kind", "ffhq_quad") != "ffhq_quad":
            raise ValueError(f"expected the dict FFHQTransform.to_json gives (kind 'ffhq_quad'),"
                             f" got {str(value)[:80]!r}")
        missing = {"quad", "size", "photo_size"} - set(data)
        if missing:
            raise ValueError(f"FFHQTransform JSON lacks {', '.join(sorted(missing))}; save it "
                             "with to_json")
        return cls.from_quad(np.asarray(data["quad"], np.float64), data["size"],
                             tuple(data["photo_size"]))       # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ the mask

def _ellipse_weight(fu: Tensor, fv: Tensor, feather: float) -> Tensor:
    """Blend weight at crop fractions ``(fu, fv)``: 1 inside, smooth fall to 0 at the edge of
    :data:`FACE_ELLIPSE` over the outer ``feather`` of its radius, 0 beyond."""
    cx, cy, rx, ry = FACE_ELLIPSE
    r = torch.sqrt(((fu - cx) / rx) ** 2 + ((fv - cy) / ry) ** 2)
    t = ((1 - r) / feather).clamp(0, 1)
    return t * t * (3 - 2 * t)          # smoothstep: no kink where the ramp starts or ends


def _check_feather(feather: float) -> float:
    if not 0 < feather <= 1:
        raise ValueError(f"feather must be in (0, 1] (the fraction of the ellipse's radius over "
                         f"which the blend fades), got {feather!r}")
    return float(feather)


def face_mask(size: int, feather: float = DEFAULT_FEATHER, device: str | torch.device = "cpu") -> Tensor:
    """The blend weight :func:`paste_back` uses, on an aligned crop: ``[size, size]`` in [0, 1].

    ``feather``: the outer fraction of :data:`FACE_ELLIPSE`'s radius over which it fades."""
    feather = _check_feather(feather)
    f = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) / size
    return _ellipse_weight(f[None, :], f[:, None], feather)


# ------------------------------------------------------------------------------- paste-back

def paste_back(photo: Tensor, face: Tensor, transform: FFHQTransform,
               feather: float = DEFAULT_FEATHER,
               mask: Tensor | None = None) -> Tensor:
    """Put an aligned face back into its photo: ``[3, H, W]``, ``[3, S, S]`` -> ``[3, H, W]``.

    ``photo``: the photo the face was aligned from, float RGB in [-1, 1], ``(W, H)`` =
    ``transform.photo_size``. ``face``: an aligned face in [-1, 1] of any square size (the
    crop, a generator's 1024 px output, an edit); it is warped through the inverse of
    ``transform`` (bilinear, first area-averaged to twice its place in the photo where it
    is larger) and blended with :func:`face_mask`'s soft ellipse (``feather`` as there), or
    with ``mask`` ``[S', S']`` in [0, 1] on the crop if given. Pixels where the weight is 0,
    among them every pixel outside the quad, are the photo's own, bit for bit. Returns a new
    tensor; ``photo`` is not changed. Differentiable in ``face``.
    """
    check_images(photo[None] if isinstance(photo, Tensor) and photo.ndim == 3 else photo,
                 "photo", fix="pass one photo [3, H, W]")
    check_images(face[None] if isinstance(face, Tensor) and face.ndim == 3 else face, "face",
                 fix="pass one aligned face [3, S, S]")
    if photo.ndim != 3 or face.ndim != 3:
        raise ValueError(f"photo and face must be single images [3, H, W] and [3, S, S], got "
                         f"{list(photo.shape)} and {list(face.shape)}; paste faces one by one")
    if face.shape[1] != face.shape[2]:
        raise ValueError(f"face must be square [3, S, S] (an aligned crop), got "
                         f"{list(face.shape)}")
    h, w = photo.shape[-2:]
    if (w, h) != tuple(transform.photo_size):
        raise ValueError(f"photo is {w}x{h} but the transform was made on a "
                         f"{transform.photo_size[0]}x{transform.photo_size[1]} photo; paste "
                         "into the photo the face was aligned from")
    if mask is not None and (mask.ndim != 2 or mask.shape[0] != mask.shape[1]):
        raise ValueError(f"mask must be a square [S, S] weight in [0, 1], got "
                         f"{list(mask.shape)}")
    feather = _check_feather(feather)
    out = photo.clone()
    # Only the quad's bounding box (within the photo) can change.
    corners = np.asarray(transform.quad)
    x0, y0 = (max(math.floor(v), 0) for v in corners.min(axis=0))
    x1, y1 = (math.ceil(v) + 1 for v in corners.max(axis=0))
    x1, y1 = min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return out
    face = face.to(device=photo.device, dtype=photo.dtype)
    # A face more than twice the size of its place is area-averaged down to twice it first,
    # so bilinear sampling (which reads 2x2 pixels) skips no detail and does not alias it;
    # shrinking all the way to its place would blur it twice over.
    place = 2 * max(math.ceil(transform.side), 8)
    if face.shape[-1] > place:
        face = F.interpolate(face[None], size=(place, place), mode="area")[0]
    ys = torch.arange(y0, y1, dtype=photo.dtype, device=photo.device)
    xs = torch.arange(x0, x1, dtype=photo.dtype, device=photo.device)
    pixels = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)    # [h', w', 2]
    frac = transform.fractions(pixels)                                     # [h', w', 2]
    grid = (frac * 2 - 1)[None]                # grid_sample's -1 and 1 are the outer edges
    warped = F.grid_sample(face[None], grid, mode="bilinear", padding_mode="border",
                           align_corners=False)[0]
    if mask is None:
        weight = _ellipse_weight(frac[..., 0], frac[..., 1], feather)
    else:
        m = mask.to(device=photo.device, dtype=photo.dtype)[None, None]
        weight = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)[0, 0].clamp(0, 1)
    region = photo[:, y0:y1, x0:x1]
    blended = region + weight * (warped - region)
    out[:, y0:y1, x0:x1] = torch.where(weight > 0, blended, region)
    return out


# ------------------------------------------------------------------------- aligning photos

def align_photo_faces(photo: Tensor, face: int | None = None, size: int = 1024, *,
                      analyzer: Any = None, device: str | torch.device = "cpu",
                      ) -> tuple[Tensor, list[FFHQTransform]]:
    """FFHQ-aligned crops of the faces in a photo, with the transforms to paste them back.

    ``photo``: ``[3, H, W]`` float RGB in [-1, 1]. ``face``: which face (0 = leftmost, the
    ``face_index`` of ``score --all-faces``), or None for every face. ``size``: the crops'
    side. ``analyzer``: a :class:`facelatent.faces.analysis.FaceAnalyzer` (default: the shared
    one on ``device``). Returns ``(crops [F, 3, size, size], transforms)``, F faces left to
    right (F = 0 where none is found and ``face`` is None; a ValueError naming the count
    where face ``face`` is not there). Faces are cut by :func:`facelatent.faces.align.
    ffhq_align` from FFHQ's own points (eye centres from six landmarks each, mouth corners).
    """
    # Imported here: analysis imports align, which re-exports this module.
    from facelatent.faces.align import arcface5_from_landmarks68, ffhq_align
    from facelatent.faces.analysis import get_analyzer

    check_images(photo[None] if isinstance(photo, Tensor) and photo.ndim == 3 else photo,
                 "photo", fix="pass one photo [3, H, W]")
    if photo.ndim != 3:
        raise ValueError(f"photo must be one image [3, H, W], got {list(photo.shape)}; call "
                         "align_photo_faces once per photo")
    analyzer = analyzer or get_analyzer(device)
    geom, _ = analyzer.locate_faces([photo])
    count = len(geom.found)
    if face is not None and not 0 <= face < count:
        raise ValueError(f"face={face} but the photo has {count} faces found"
                         + (f" (0 to {count - 1}, left to right)" if count else ""))
    rows = list(range(count)) if face is None else [face]
    if not rows:
        return photo.new_empty(0, 3, size, size), []
    points5 = arcface5_from_landmarks68(geom.points68[rows]).to(photo.device)
    crops, transforms = ffhq_align(photo[None].expand(len(rows), -1, -1, -1), points5, size,
                                   return_transform=True)
    return crops, transforms
