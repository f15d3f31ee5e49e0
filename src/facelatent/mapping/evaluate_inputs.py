"""The photo inputs of ``facelatent mapping evaluate``: aligned photos, inverted photos, and the
identity/attribute pairs made from them.

A photo that cannot be read or holds no face is left out with a note, never an error: one bad
file should not stop an evaluation of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facelatent.faces.analysis import FaceAnalyzer
from facelatent.faces.files import expand_paths
from facelatent.generators.base import Generator
from facelatent.images import from_uint8, load_rgb, resize
from facelatent.inversion.files import FILES, load_inversion
from facelatent.mapping.inputs import NoFaceError, align_face

__all__ = ["cross_pairs", "load_inverted_faces", "load_photo_faces"]

MIN_FACES = 2    # a pair needs two different faces


def cross_pairs(faces: int, limit: int | None = None) -> np.ndarray:
    """Ordered pairs ``[P, 2]`` (identity face, attribute face) of ``faces`` faces, never a
    face with itself: offset 1 for every face first (0-1, 1-2, ..., last-0), then offset 2,
    and so on, so that any ``limit`` uses every face about equally often."""
    if faces < MIN_FACES:
        raise ValueError(f"pairs need at least {MIN_FACES} faces, got {faces}")
    if limit is not None and limit < 1:
        raise ValueError(f"the pair limit must be at least 1, got {limit}")
    rows = [(i, (i + d) % faces) for d in range(1, faces) for i in range(faces)]
    return np.asarray(rows[:limit] if limit is not None else rows, dtype=np.int64)


def load_photo_faces(analyzer: FaceAnalyzer, paths: Sequence[str | Path], size: int,
                     ) -> tuple[Tensor, list[str], list[str]]:
    """The largest face of each photo (files, or folders of them), FFHQ-aligned
    (:func:`~facelatent.mapping.inputs.align_face`) to ``[F, 3, size, size]`` in [-1, 1];
    with a label per face (the file name) and notes on the photos left out."""
    faces: list[Tensor] = []
    labels: list[str] = []
    notes: list[str] = []
    for path, error in expand_paths(paths):
        if error is not None:
            notes.append(error)
            continue
        try:
            image = from_uint8(load_rgb(path)[None])[0]
        except (ValueError, OSError) as exc:
            notes.append(f"{path.name}: {str(exc).splitlines()[0]}")
            continue
        try:
            face = align_face(image, size, analyzer, source=path, option="--photos")
        except NoFaceError:
            notes.append(f"{path.name}: no face found; left out")
            continue
        faces.append(face[None])
        labels.append(path.name)
    if len(faces) < MIN_FACES:
        raise ValueError(f"--photos: {len(faces)} face(s) found in {len(labels) + len(notes)} "
                         f"file(s); pairs need at least {MIN_FACES} photos with a face"
                         + (f" ({notes[0]})" if notes else ""))
    return torch.cat(faces), labels, notes


def _inversion_files(paths: Sequence[str | Path]) -> list[Path]:
    """``latents.npz`` of each inversion folder given, or of every one below a folder."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            out.append(p)
        elif (p / FILES["latents"]).is_file():
            out.append(p / FILES["latents"])
        elif p.is_dir():
            out.extend(sorted(p.rglob(FILES["latents"])))
        else:
            raise FileNotFoundError(f"--inversions: no inversion folder or file at {p}")
    return out


def load_inverted_faces(paths: Sequence[str | Path], generator: Generator, size: int,
                        ) -> tuple[Tensor, Tensor, list[str], list[str]]:
    """Faces inverted by ``facelatent invert``: their aligned crops ``[F, 3, size, size]``
    (``aligned.png``, what was inverted) and latents (``[F, w_dim]`` when all are W, else
    ``[F, num_ws, w_dim]`` with W ones broadcast), a label per face and notes."""
    crops: list[Tensor] = []
    latents: list[np.ndarray] = []
    labels: list[str] = []
    num_ws, w_dim = int(generator.num_ws), int(generator.w_dim)
    files = _inversion_files(paths)
    for file in files:
        face = load_inversion(file)
        want = (w_dim,) if face.space == "w" else (num_ws, w_dim)
        if face.latent.shape != want:
            raise ValueError(f"{file}: a {face.space!r} latent of shape {list(face.latent.shape)},"
                             f" but the generator needs {list(want)}: it was inverted with "
                             "another generator; pass --model for that one")
        image = from_uint8(load_rgb(file.parent / FILES["aligned"])[None])
        crops.append(resize(image, size))
        latents.append(face.latent)
        labels.append(file.parent.name)
    if len(crops) < MIN_FACES:
        raise ValueError(f"--inversions: {len(crops)} inversion(s) found; pairs need at least "
                         f"{MIN_FACES} (folders written by facelatent invert, each with "
                         f"{FILES['latents']} and {FILES['aligned']})")
    if all(lat.ndim == 1 for lat in latents):
        stacked = np.stack(latents)
    else:
        stacked = np.stack([np.broadcast_to(lat, (num_ws, w_dim)) for lat in latents])
    return torch.cat(crops), torch.from_numpy(stacked.astype(np.float32)), labels, []
