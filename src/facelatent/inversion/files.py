"""One folder per inverted face: the aligned crop, the reconstruction, both side by side, and
``latents.npz`` with everything needed to edit the face and put it back into its photo.

``latents.npz`` (format ``facelatent.inversion``, read by :func:`load_inversion`):

    w [w_dim] or wp [num_ws, w_dim]   the latent, under the name of its space
    space                             "w" or "wp"
    loss_curve [steps]                total loss per optimisation step
    metric_<name>                     msssim, psnr, identity_sface, identity_dlib
    settings                          JSON: steps, lr, loss weights, generator, ...
    source, face_index                the photo and which face in it ("" and -1 when unknown)
    transform or transform_json       the alignment transform, as the caller gave it (absent
                                      when not given): an array, or JSON text
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.errors import FileFormatError
from facelatent.images import grid, save_png, to_uint8
from facelatent.inversion.optimize import InversionResult
from facelatent.io import atomic_path, load_npz, save_npz

__all__ = ["FORMAT", "FORMAT_VERSION", "InvertedFace", "load_inversion", "save_inversion"]

FORMAT = "facelatent.inversion"
FORMAT_VERSION = 1
FILES = {"aligned": "aligned.png", "reconstruction": "reconstruction.png",
         "side_by_side": "side_by_side.png", "latents": "latents.npz"}
_KIND = "an inversion file (latents.npz from facelatent invert)"


@dataclass
class InvertedFace:
    """One inverted face read back by :func:`load_inversion`.

    ``latent``: ``[w_dim]`` (space "w") or ``[num_ws, w_dim]`` ("wp"), float32.
    ``transform``: the alignment transform as saved (an array, a JSON value, or None).
    """

    path: Path
    space: str
    latent: np.ndarray
    loss_curve: np.ndarray
    metrics: dict[str, float]
    settings: dict[str, Any]
    source: str | None = None
    face_index: int | None = None
    transform: np.ndarray | dict[str, Any] | list[Any] | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def save_inversion(result: InversionResult, out_dir: str | Path, index: int = 0, *,
                   source: str | Path | None = None, face_index: int | None = None,
                   transform: np.ndarray | dict[str, Any] | list[Any] | str | None = None,
                   ) -> dict[str, Path]:
    """Write face ``index`` of ``result`` into ``out_dir`` (created): ``aligned.png``,
    ``reconstruction.png``, ``side_by_side.png`` and ``latents.npz``. Returns their paths.

    ``source``, ``face_index``: the photo and which face in it. ``transform``: the alignment
    transform, stored as given: a numeric array, or a JSON-serialisable value (or JSON text).
    """
    one = result.face(index)
    out = Path(out_dir)
    paths = {k: out / name for k, name in FILES.items()}
    aligned, recon = to_uint8(one.targets)[0], to_uint8(one.images)[0]
    for key, image in (("aligned", aligned), ("reconstruction", recon),
                       ("side_by_side", grid(np.stack([aligned, recon]), cols=2))):
        with atomic_path(paths[key]) as tmp:
            save_png(image, tmp)
    arrays: dict[str, Any] = {
        one.space: one.latents[0].numpy().astype(np.float32),
        "space": np.str_(one.space),
        "loss_curve": one.loss_curve[0].astype(np.float32),
        "settings": np.str_(json.dumps(one.settings, default=str)),
        "source": np.str_("" if source is None else str(source)),
        "face_index": np.int64(-1 if face_index is None else face_index),
        **{f"metric_{k}": np.float64(v[0]) for k, v in one.metrics.items()},
    }
    arrays.update(_transform_members(transform))
    save_npz(paths["latents"], arrays, format=FORMAT, version=FORMAT_VERSION)
    return paths


def _transform_members(transform: object) -> dict[str, Any]:
    if transform is None:
        return {}
    if isinstance(transform, np.ndarray) or hasattr(transform, "numpy"):
        arr = np.asarray(transform.detach().cpu().numpy() if hasattr(transform, "detach")
                         else transform)
        if arr.dtype.hasobject or arr.dtype.kind not in "biuf":
            raise ValueError(f"transform must be a numeric array or a JSON value, got an array "
                             f"of {arr.dtype}")
        return {"transform": arr}
    try:
        text = transform if isinstance(transform, str) else json.dumps(transform, allow_nan=False)
        json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"transform must be a numeric array or a JSON-serialisable value: "
                         f"{exc}") from None
    return {"transform_json": np.str_(text)}


def load_inversion(path: str | Path) -> InvertedFace:
    """Read ``latents.npz`` written by :func:`save_inversion` (or the folder holding it).

    Every way the file can be wrong (missing, not an npz, another format, a member missing or
    of the wrong shape) is one `FileFormatError` or `FileNotFoundError` naming the file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / FILES["latents"]
    data = load_npz(p, format=FORMAT, max_version=FORMAT_VERSION, kind=_KIND)
    space = _text(data, "space", p)
    if space not in ("w", "wp"):
        raise FileFormatError(f"{p}: space is {space!r}, expected 'w' or 'wp'")
    if space not in data:
        raise FileFormatError(f"{p} has no {space!r} member; expected {_KIND}")
    latent = data.pop(space)
    want = 1 if space == "w" else 2
    if latent.ndim != want or latent.dtype.kind != "f" or not np.isfinite(latent).all():
        raise FileFormatError(f"{p}: {space} has shape {list(latent.shape)} ({latent.dtype}); "
                              f"expected {'[w_dim]' if want == 1 else '[num_ws, w_dim]'} finite "
                              "floats")
    curve = data.pop("loss_curve", np.zeros(0, np.float32))
    try:
        settings = json.loads(_text(data, "settings", p)) if "settings" in data else {}
        transform: Any = (json.loads(_text(data, "transform_json", p))
                          if "transform_json" in data else data.pop("transform", None))
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{p}: a JSON member is damaged ({exc})") from None
    metrics = {k[len("metric_"):]: float(data.pop(k)) for k in list(data)
               if k.startswith("metric_") and data[k].ndim == 0}
    source = _text(data, "source", p) if "source" in data else ""
    face = int(data.pop("face_index")) if "face_index" in data else -1
    for key in ("space", "settings", "transform_json"):
        data.pop(key, None)
    return InvertedFace(p, space, latent.astype(np.float32), curve, metrics, settings,
                        source or None, None if face < 0 else face, transform, data)


def _text(data: dict[str, np.ndarray], key: str, path: Path) -> str:
    if key not in data:
        raise FileFormatError(f"{path} has no {key!r} member; expected {_KIND}")
    value = data[key]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise FileFormatError(f"{path}: {key} is not a text value")
    return str(value)
