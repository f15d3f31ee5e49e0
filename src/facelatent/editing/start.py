"""The faces an edit starts from: latents files written by `facelatent generate` or by
`facelatent invert` (a person's own photo), read back with everything needed to name the
results and to paste an edited face back into its photo.

    start = load_start(["inverted/alice/latents.npz", "inverted/bob"])
    start.latents        # [N, w_dim] or [N, num_ws, w_dim] float32
    start.names          # ["alice_face0", "bob_face0"]: file names of the results
    start.photos[0]      # (photo [3, H, W] in [-1, 1], FFHQTransform) or None
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.errors import FileFormatError
from facelatent.io import load_npz

__all__ = ["EditStart", "load_start"]


@dataclass
class EditStart:
    """Latents to edit and where they came from.

    ``latents``: ``[N, D]`` (w or z) or ``[N, num_ws, D]`` (W+), float32. ``space``: "z", "w"
    or "wp". ``names``: one file stem per face. ``photos``: per face, the source photo (float
    RGB ``[3, H, W]`` in [-1, 1]) and its alignment transform, or None where there is none
    (generated faces). ``generator``: the generator the latents belong to, when recorded.
    """

    latents: np.ndarray
    space: str
    names: list[str]
    photos: list[tuple[Any, Any] | None] = field(default_factory=list)
    generator: str | None = None
    truncation_psi: float | None = None

    def __len__(self) -> int:
        return len(self.names)


def _format_of(path: Path) -> str:
    """The ``format`` header of an .npz we wrote ("facelatent.latents", "facelatent.inversion")."""
    data = load_npz(path, kind="a latents file from `facelatent generate` or `facelatent invert`")
    if "format" not in data:
        raise FileFormatError(f"{path} has no facelatent format header; expected latents.npz "
                              "from `facelatent generate` or `facelatent invert`")
    return str(data["format"])


def load_start(paths: Sequence[str | os.PathLike[str]], space: str = "w", *,
               photos: bool = False) -> EditStart:
    """Read latents files (or the folders `facelatent invert` writes) into one `EditStart`.

    ``space``: the boundary's space: "z" takes z from `generate` files; "w" and "wp" take w,
    and inverted W+ latents (broadcasting plain w to W+ when the files mix both). ``photos``:
    also load each inverted face's source photo and alignment transform (for paste-back);
    a file without them is an error naming it. Every failure is one line naming the file.
    """
    from facelatent.latents.sampling import load_latents

    if not paths:
        raise ValueError("--latents needs at least one file")
    parts: list[np.ndarray] = []
    names: list[str] = []
    sources: list[tuple[Any, Any] | None] = []
    generators: set[str] = set()
    psi: float | None = None
    for given in paths:
        path = Path(given)
        if path.is_dir():
            path = path / "latents.npz"
        kind = _format_of(path)
        if kind == "facelatent.latents":
            lat = load_latents(path)
            value = lat.z if space == "z" else lat.w
            if value is None:
                raise FileFormatError(f"{path} holds no z; a Z-space boundary needs z (write "
                                      "the file again with `facelatent generate`)")
            parts.append(value)
            names.extend(f"seed{int(s):04d}" for s in lat.seeds)
            sources.extend([None] * len(lat.seeds))
            if photos:
                raise ValueError(f"--paste-back needs photos, and {path} holds generated faces "
                                 "(from `facelatent generate`); drop --paste-back")
            if lat.generator:
                generators.add(lat.generator)
            psi = lat.truncation_psi if psi is None else psi
        elif kind == "facelatent.inversion":
            parts.append(_inverted(path, space, names, sources, photos)[None])
        else:
            raise FileFormatError(f"{path} is a {kind!r} file; expected latents.npz from "
                                  "`facelatent generate` or `facelatent invert`")
    latents = _stack(parts, paths)
    kind_space = "z" if space == "z" else ("wp" if latents.ndim == 3 else "w")
    return EditStart(latents, kind_space, names, sources,
                     generators.pop() if len(generators) == 1 else None, psi)


def _inverted(path: Path, space: str, names: list[str],
              sources: list[tuple[Any, Any] | None], photos: bool) -> np.ndarray:
    """One inverted face's latent; appends its name and (with ``photos``) photo + transform."""
    from facelatent.inversion import load_inversion

    face = load_inversion(path)
    if space == "z":
        raise ValueError(f"{path} is an inverted photo, in {face.space.upper()}; a Z-space "
                         "boundary cannot edit it: use a W boundary")
    stem = Path(face.source).stem if face.source else path.parent.name
    names.append(f"{stem}_face{face.face_index or 0}")
    if not photos:
        sources.append(None)
        return face.latent
    if not face.source or face.transform is None:
        raise FileFormatError(f"{path} records no source photo or alignment transform, so its "
                              "face cannot be pasted back; drop --paste-back")
    from facelatent.faces.photo_align import FFHQTransform
    from facelatent.images import from_uint8, load_rgb

    transform = (FFHQTransform.from_json(face.transform) if isinstance(face.transform, dict)
                 else FFHQTransform.from_array(np.asarray(face.transform)))
    photo = from_uint8(load_rgb(face.source)[None])[0]
    if (photo.shape[2], photo.shape[1]) != tuple(transform.photo_size):
        raise FileFormatError(f"{face.source} is {photo.shape[2]}x{photo.shape[1]}, but {path} "
                              f"was aligned on a {transform.photo_size[0]}x"
                              f"{transform.photo_size[1]} photo: the photo has changed")
    sources.append((photo, transform))
    return face.latent


def _stack(parts: list[np.ndarray], paths: Sequence[Any]) -> np.ndarray:
    """One array from [n, D] and [n, L, D] parts (plain w broadcast to W+ where both occur)."""
    dims = {p.shape[-1] for p in parts}
    if len(dims) > 1:
        raise ValueError(f"the latents files {[str(p) for p in paths]} hold latents of different "
                         f"sizes {sorted(dims)}: they come from different generators")
    if any(p.ndim == 3 for p in parts):
        layers = {p.shape[1] for p in parts if p.ndim == 3}
        if len(layers) > 1:
            raise ValueError(f"the W+ latents have different style-input counts {sorted(layers)}")
        L = layers.pop()
        parts = [p if p.ndim == 3 else np.repeat(p[:, None], L, axis=1) for p in parts]
    return np.concatenate(parts).astype(np.float32, copy=False)
