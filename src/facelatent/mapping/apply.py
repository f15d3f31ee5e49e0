"""Applying a trained mapping: the identity of one face with the pose, expression, lighting and
the rest of another, for every pair of two sets of faces, or along a path between two faces.

    mapper = Mapper.from_checkpoint("runs/mapping/checkpoint.npz")
    G = get_generator(mapper.generator["name"])
    report = apply_to_dir(mapper, G, ["0-5"], ["photos/"], "out/")      # seeds x photos
    ids = load_faces("0-5", G, truncation_psi=0.7)                       # or in memory
    ws, images = swap_grid(mapper, G, ids.images, attrs.images)          # [N, M, w_dim], ...

The steps, and why each is so:

1. **Inputs.** Seeds, image files and folders, aligned as the encoders' training faces were:
   see :mod:`facelatent.mapping.inputs`.
2. **Codes.** E_id runs once per identity face and E_attr once per attribute face; an N x M
   grid then costs N * M passes of the small MLP M, not of the encoders.
3. **Paths.** Identity codes are unit vectors, so an identity path follows the great circle
   (:func:`slerp`) and stays on the sphere E_id's codes live on; attribute codes are
   unconstrained, so they move on a line. A path's ends are the inputs' own codes, so its
   first and last columns are the plain swaps.
4. **Rendering.** One generator batch at a time; each image is written at ``size`` and only a
   tile of at most :data:`GRID_TILE` px is kept for the grid, so memory does not grow with
   the generator's resolution.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facelatent import __version__
from facelatent.errors import FacelatentError
from facelatent.faces.analysis import FaceAnalyzer
from facelatent.generators.base import Generator
from facelatent.images import resize, save_png, to_uint8
from facelatent.io import atomic_path, save_npz, writer_lock
from facelatent.latents.sampling import check_generate_options
from facelatent.mapping.inputs import (  # FACE_SIZE, load_faces: for __all__
    FACE_SIZE,
    MAX_IMAGES,
    Faces,
    Specs,
    load_faces,
    load_planned,
    plan_inputs,
    render_faces,
)
from facelatent.mapping.mapper import Mapper
from facelatent.runs.sharded import Progress

__all__ = ["APPLY_FORMAT", "FACE_SIZE", "MAX_IMAGES", "MODES", "Faces", "apply_to_dir",
           "check_apply_options", "interpolate", "load_faces", "render", "slerp", "swap_grid",
           "swap_latents"]

APPLY_FORMAT = "facelatent.mapping.apply"
APPLY_FORMAT_VERSION = 1
MODES = ("swap", "identity", "attributes")   # swap: every pair; else the side that moves
GRID_TILE = 256       # px, at most, of a grid tile
MAX_STEPS = 64        # columns of an interpolation
CODE_BATCH = 32       # faces per encoder pass
_LABEL = 16           # characters of an input's name shown on the grid


# -- options ------------------------------------------------------------------------------------
def check_apply_options(mode: str = "swap", steps: int = 7, size: int = 256, batch: int = 4,
                        truncation_psi: float | None = None) -> None:
    """ValueError naming the option for anything :func:`apply_to_dir` would refuse, checked
    before any model is loaded or file read."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'swap' (every pair), or 'identity' or 'attributes' "
                         f"(--interpolate: the side that moves), got {mode!r}")
    if mode != "swap" and (isinstance(steps, bool) or not isinstance(steps, int)
                           or not 2 <= steps <= MAX_STEPS):
        raise ValueError(f"steps (--steps) must be a whole number from 2 (the two ends) to "
                         f"{MAX_STEPS}, got {steps!r}")
    check_generate_options(1.0 if truncation_psi is None else truncation_psi, size, batch,
                           psi_option="truncation_psi (--psi)", size_option="size (--size)",
                           batch_option="batch (--batch)")


# -- latents ------------------------------------------------------------------------------------
def _codes(mapper: Mapper, faces: Tensor, kind: str) -> Tensor:
    """E_id (``kind`` "identity") or E_attr codes of ``faces`` [N, 3, H, W], in batches."""
    encode = mapper.identity_codes if kind == "identity" else mapper.attribute_codes
    return torch.cat([encode(faces[i:i + CODE_BATCH]) for i in range(0, len(faces), CODE_BATCH)])


def swap_latents(mapper: Mapper, identity_faces: Tensor, attribute_faces: Tensor) -> Tensor:
    """w of every pair: faces ``[N, 3, H, W]`` and ``[M, 3, H', W']`` -> ``[N, M, w_dim]`` (or
    ``[N, M, num_ws, w_dim]`` for a W+ mapping), on the CPU; ``[i, j]`` is
    ``mapper.swap(identity_faces[i:i+1], attribute_faces[j:j+1])``."""
    ids = _codes(mapper, identity_faces, "identity")
    attrs = _codes(mapper, attribute_faces, "attributes")
    n, m = len(ids), len(attrs)
    w = mapper.mix(ids.repeat_interleave(m, dim=0), attrs.repeat(n, 1))
    return w.reshape(n, m, *w.shape[1:]).cpu()


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Points on the great circle from ``a`` to ``b`` (``[D]`` each, made unit length) at
    fractions ``t`` ``[K]`` in [0, 1] -> ``[K, D]``, unit length; ``t = 0`` gives ``a``."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    omega = torch.arccos((a * b).sum().clamp(-1.0, 1.0))
    t = t.to(a)[:, None]
    if float(omega) > torch.pi - 1e-4:
        raise ValueError("the two identity codes point in opposite directions, so no single "
                         "great circle joins them; interpolate between other faces")
    if float(omega) < 1e-4:
        # Nearly the same code: sin(omega) is about 0, and the line is the circle to 1e-8.
        path = torch.lerp(a.expand(len(t), -1), b.expand(len(t), -1), t)
    else:
        path = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    return F.normalize(path, dim=-1)


def interpolate(mapper: Mapper, what: str, ends: Tensor, others: Tensor,
                steps: int = 7) -> Tensor:
    """w along a path between two faces' codes, for each of ``others``.

    ``what``: "identity" (``ends`` are two identity faces, slerp of their E_id codes;
    ``others`` give the attributes) or "attributes" (``ends`` are two attribute faces, lerp of
    their E_attr codes; ``others`` give the identities). ``ends`` ``[2, 3, H, W]``, ``others``
    ``[R, 3, H', W']`` -> w ``[R, steps, w_dim]`` (or W+), CPU; columns go from ``ends[0]``
    (exactly its swap with each row's face) to ``ends[1]``."""
    if what not in ("identity", "attributes"):
        raise ValueError(f"what must be 'identity' or 'attributes', got {what!r}")
    if len(ends) != 2:
        raise ValueError(f"interpolating {what} needs exactly 2 {what} faces (the two ends), "
                         f"got {len(ends)}")
    t = torch.linspace(0.0, 1.0, steps)
    if what == "identity":
        a, b = _codes(mapper, ends, "identity").cpu()
        moving, fixed = slerp(a, b, t), _codes(mapper, others, "attributes").cpu()
    else:
        a, b = _codes(mapper, ends, "attributes").cpu()
        moving, fixed = torch.lerp(a, b, t[:, None]), _codes(mapper, others, "identity").cpu()
    rows = len(fixed)
    moving, fixed = moving.repeat(rows, 1), fixed.repeat_interleave(steps, dim=0)
    ids, attrs = (moving, fixed) if what == "identity" else (fixed, moving)
    w = mapper.mix(ids, attrs)
    return w.reshape(rows, steps, *w.shape[1:]).cpu()


# -- rendering ----------------------------------------------------------------------------------
def render(generator: Generator, ws: Tensor, each: Callable[[int, Tensor], None], *,
           size: int = 256, batch: int = 4, progress: Callable[[int], None] | None = None) -> None:
    """Render latents ``[R, C, w_dim]`` (or ``[R, C, num_ws, w_dim]``) row by row, ``batch``
    at a time: ``each(k, images)`` gets the flat index ``k = r * C + c`` of the first image
    and the batch ``[B, 3, size, size]`` (CPU, [-1, 1]); nothing else is kept."""
    flat = ws.reshape(-1, *ws.shape[2:])
    if not torch.isfinite(flat).all():
        raise FacelatentError("the mapping produced NaN or infinite latents; the checkpoint is "
                              "damaged or its training diverged: use an earlier checkpoint")
    for start in range(0, len(flat), batch):
        images = render_faces(generator, flat[start:start + batch], size)
        each(start, images)
        if progress:
            progress(len(images))


def swap_grid(mapper: Mapper, generator: Generator, identity_faces: Tensor,
              attribute_faces: Tensor, *, size: int = 256, batch: int = 4,
              ) -> tuple[Tensor, Tensor]:
    """Every identity with every set of attributes, in memory: faces ``[N, 3, H, W]`` and
    ``[M, 3, H', W']`` -> ``(w [N, M, ...], images [N, M, 3, size, size])``, images float in
    [-1, 1]. At most :data:`MAX_IMAGES` pairs; :func:`apply_to_dir` writes larger renders."""
    mapper.check_generator(generator)
    _check_count(len(identity_faces), len(attribute_faces), ("identities", "attribute faces"))
    ws = swap_latents(mapper, identity_faces, attribute_faces)
    n, m = ws.shape[:2]
    images = torch.empty(n * m, 3, size, size)

    def keep(start: int, part: Tensor) -> None:
        images[start:start + len(part)] = part

    render(generator, ws, keep, size=size, batch=batch)
    return ws, images.view(n, m, 3, size, size)


def _check_count(rows: int, cols: int, what: tuple[str, str]) -> None:
    if rows * cols > MAX_IMAGES:
        raise ValueError(f"{rows} {what[0]} x {cols} {what[1]} = {rows * cols} images, more than "
                         f"the {MAX_IMAGES} one run renders; pass fewer faces, or split the "
                         "inputs over several runs")


# -- a folder of results ------------------------------------------------------------------------
# Per mode: what the rows and the columns hold (the grid's corner labels, ``meta``).
_AXES = {"swap": ("identity", "attributes"), "identity": ("attributes", "identity path"),
         "attributes": ("identity", "attributes path")}


def apply_to_dir(mapper: Mapper, generator: Generator, identity: Faces | Specs,
                 attributes: Faces | Specs, out: str | os.PathLike[str], *, mode: str = "swap",
                 steps: int = 7, truncation_psi: float | None = None, aligned: bool = False,
                 size: int = 256, batch: int = 4, analyzer: FaceAnalyzer | None = None,
                 checkpoint: str | os.PathLike[str] | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Swap or interpolate and write the results to ``out``; returns a report.

    ``identity``, ``attributes``: :class:`Faces`, or specs for :func:`load_faces` (seed lists,
    image files, folders; ``aligned`` as there; photos aligned by ``analyzer``, default the
    mapper's). ``mode``: "swap" renders every pair (rows: identities, columns: attribute
    faces); "identity" a path between exactly two identity faces (rows: attribute faces,
    columns: ``steps`` points); "attributes" a path between exactly two attribute faces (rows:
    identities). ``truncation_psi``: of faces from seeds (default: the checkpoint's).
    ``size``: side of the written images. ``checkpoint``: its path, recorded. ``progress``:
    told the total of faces to load and images to render, then each count done. At most
    :data:`MAX_IMAGES` images; every input is checked before any is loaded.

    Writes one PNG per image (``id{i:02d}_attr{j:02d}.png``; ``attr{j:02d}_step{k:02d}.png``
    or ``id{i:02d}_step{k:02d}.png`` for paths), ``grid.png`` (the column inputs as a header
    row, the row inputs as a header column, tiles of at most 256 px) and ``latents.npz``
    (format :data:`APPLY_FORMAT`: ``w`` ``[R, C, w_dim]`` or W+, each side's ``*_names``,
    ``*_sources`` and, for seeds, ``*_w``, and JSON ``meta``), each atomically and under the
    folder's writer lock. The report is ``meta`` plus the paths, names and shape.
    """
    began = time.perf_counter()
    check_apply_options(mode, steps, size, batch, truncation_psi)
    mapper.check_generator(generator)
    psi = float(mapper.generator.get("truncation_psi", 1.0) if truncation_psi is None
                else truncation_psi)
    sides = [x if isinstance(x, Faces) else plan_inputs(x, f"--{name}")
             for x, name in ((identity, "identity"), (attributes, "attributes"))]
    counts = [len(x) for x in sides]
    if mode == "swap":
        (rows, cols), nouns = counts, ("identities", "attribute faces")
    else:
        moving = 0 if mode == "identity" else 1
        if counts[moving] != 2:
            raise ValueError(f"--interpolate {mode} moves between two faces: give --{mode} "
                             f"exactly 2 faces, got {counts[moving]}")
        (rows, cols), nouns = (counts[1 - moving], steps), ("rows", "steps")
    _check_count(rows, cols, nouns)
    if progress is not None:
        to_load = sum(c for x, c in zip(sides, counts) if not isinstance(x, Faces))
        progress.start(to_load + rows * cols, 0)
    tick = progress.update if progress is not None else None
    ids, attrs = (x if isinstance(x, Faces) else
                  load_planned(x, generator, psi, aligned, analyzer or mapper.analyzer,
                               batch=batch, option=f"--{name}", progress=tick)
                  for x, name in zip(sides, ("identity", "attributes")))
    ws, row_faces, head, pattern = _layout(mapper, mode, ids, attrs, steps)
    meta = {"mode": mode, "rows": _AXES[mode][0], "columns": _AXES[mode][1],
            "t": np.linspace(0.0, 1.0, steps).tolist() if mode != "swap" else None,
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "stage": getattr(mapper, "stage", None), "step": getattr(mapper, "step", None),
            "generator": getattr(generator, "name", type(generator).__name__),
            "checkpoint_generator": mapper.generator.get("name"), "truncation_psi": psi,
            "aligned": aligned, "size": size, "facelatent_version": __version__}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out, "output folder"):
        grid_path = _write_images(generator, ws, out, pattern, row_faces, head, _AXES[mode],
                                  size, batch, tick)
        latents = _save_latents(out / "latents.npz", ws, ids, attrs, meta)
    return {**meta, "folder": str(out), "grid": str(grid_path), "latents": str(latents),
            "images": rows * cols, "shape": list(ws.shape), "row_names": row_faces.names,
            "column_names": head[1], "seconds": round(time.perf_counter() - began, 2)}


def _layout(mapper: Mapper, mode: str, ids: Faces, attrs: Faces, steps: int,
            ) -> tuple[Tensor, Faces, tuple[Tensor, list[str]], str]:
    """The latents ``[R, C, ...]`` of ``mode``, the faces of its rows, its header row (faces
    ``[C, 3, S, S]`` and labels) and the pattern of its file names."""
    if mode == "swap":
        ws = swap_latents(mapper, ids.images, attrs.images)
        return ws, ids, (attrs.images, attrs.names), "id{:02d}_attr{:02d}.png"
    ends, rows = (ids, attrs) if mode == "identity" else (attrs, ids)
    ws = interpolate(mapper, mode, ends.images, rows.images, steps)
    blank = torch.ones_like(ends.images[:1])                       # white in the header row
    faces = torch.cat([ends.images[:1], *[blank] * (steps - 2), ends.images[1:]])
    labels = [ends.names[0], *(f"t={v:.2f}" for v in np.linspace(0, 1, steps)[1:-1]),
              ends.names[1]]
    pattern = ("attr" if mode == "identity" else "id") + "{:02d}_step{:02d}.png"
    return ws, rows, (faces, labels), pattern


def _write_images(generator: Generator, ws: Tensor, out: Path, pattern: str, row_faces: Faces,
                  head: tuple[Tensor, list[str]], what: tuple[str, str], size: int, batch: int,
                  progress: Callable[[int], None] | None) -> Path:
    """Each image of ``ws`` as a PNG, then ``grid.png`` with the row inputs as its first
    column and ``head`` (column faces ``[C, 3, S, S]`` and labels) as its first row, ``what``
    the rows and the columns hold labelling the corner; returns the grid's path."""
    from PIL import Image

    from facelatent.editing.folder import labelled_grid

    rows, cols = ws.shape[:2]
    tile = min(size, GRID_TILE)
    tiles = np.full((rows + 1, cols + 1, tile, tile, 3), 255, np.uint8)   # white corner
    tiles[0, 1:] = to_uint8(resize(head[0], tile))
    tiles[1:, 0] = to_uint8(resize(row_faces.images, tile))

    def write(start: int, images: Tensor) -> None:
        small = to_uint8(resize(images, tile))
        for k, image in enumerate(to_uint8(images)):
            r, c = divmod(start + k, cols)
            with atomic_path(out / pattern.format(r, c)) as tmp:
                save_png(image, tmp)
            tiles[1 + r, 1 + c] = small[k]

    render(generator, ws, write, size=size, batch=batch, progress=progress)
    col_labels = [what[0], *(name[:_LABEL] for name in head[1])]
    row_labels = [what[1], *(name[:_LABEL] for name in row_faces.names)]
    grid_path = out / "grid.png"
    with atomic_path(grid_path) as tmp:
        Image.fromarray(labelled_grid(tiles, col_labels, row_labels)).save(tmp, format="PNG")
    return grid_path


def _save_latents(path: Path, ws: Tensor, ids: Faces, attrs: Faces,
                  meta: dict[str, Any]) -> Path:
    arrays: dict[str, Any] = {"w": ws.numpy().astype(np.float32),
                              "meta": np.str_(json.dumps(meta))}
    for side, faces in (("identity", ids), ("attributes", attrs)):
        arrays[f"{side}_names"] = np.array(faces.names, dtype=str)
        arrays[f"{side}_sources"] = np.array(faces.sources, dtype=str)
        if faces.w is not None:
            arrays[f"{side}_w"] = faces.w.numpy().astype(np.float32)
    return save_npz(path, arrays, format=APPLY_FORMAT, version=APPLY_FORMAT_VERSION)
