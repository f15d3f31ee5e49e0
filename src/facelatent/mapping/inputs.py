"""Faces for the mapping's encoders, from seed lists, image files and folders.

    faces = load_faces(["0-5", "photos/"], G, truncation_psi=0.7)   # Faces: images [N, 3, S, S]
    face = align_face(from_uint8(load_rgb("me.jpg")[None])[0], 256, analyzer)   # [3, 256, 256]

A spec is a seed list ("0-5,9": faces the generator makes at the given truncation), an image
file, or a folder of images (sorted). The encoders were trained on generated faces, which are
FFHQ-aligned, so photos are detected and cut the same way (the largest face,
``FaceAnalyzer.ffhq_align``); an image that is an aligned face already (a generated one) may
skip detection with ``aligned=True``. Faces are held at :data:`FACE_SIZE` px, the size the
training store keeps renders at and more than either encoder reads (E_id a 112-150 px crop,
E_attr the whole face at 128 px).

Every spec is checked (:func:`plan_inputs`) before any image is read, so a typo in the last
one fails at once. :func:`load_faces` raises on the first bad image; a caller that should go
on without it (``facelatent mapping evaluate``) reads each file and calls :func:`align_face`,
catching :class:`NoFaceError`.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from facelatent.errors import FileFormatError
from facelatent.faces.analysis import FaceAnalyzer, get_analyzer
from facelatent.faces.files import IMAGE_SUFFIXES, expand_paths
from facelatent.generators.base import Generator
from facelatent.images import from_uint8, load_rgb, resize
from facelatent.latents.sampling import latents_for_seeds
from facelatent.mapping.mapper import MIN_SIDE
from facelatent.ranges import parse_seeds

__all__ = ["FACE_SIZE", "MAX_IMAGES", "Faces", "NoFaceError", "Specs", "align_face",
           "load_faces", "load_planned", "plan_inputs", "render_faces"]

FACE_SIZE = 256       # px of input faces (less for a smaller generator); see the docstring
MAX_IMAGES = 400      # faces a side, and renders a call: a 20 x 20 grid is 5,000 px at 256 px
_SEEDS = re.compile(r"^[\d\s,-]+$")   # "0-5,9"; a file named like that is given as ./0-5


@dataclass
class Faces:
    """Faces ready for the mapping, in the order given.

    ``images``: ``[N, 3, S, S]`` FFHQ-aligned float RGB in [-1, 1], on the CPU. ``names``: a
    short unique label each ("seed0003", a file's stem). ``sources``: where each came from
    ("seed 3" or the file's path). ``w``: ``[N, w_dim]`` the generator's w of faces made from
    seeds (NaN rows for images), None when no face came from a seed.
    """

    images: Tensor
    names: list[str]
    sources: list[str]
    w: Tensor | None = None

    def __len__(self) -> int:
        return len(self.names)


Specs = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]   # see load_faces


class NoFaceError(ValueError):
    """An image holds no face the analyzer can find; the message names the file."""


def plan_inputs(specs: Specs, option: str) -> list[int | Path]:
    """The inputs of specs in order, a seed (int) or an image file (Path) each, checked without
    reading any image: malformed seeds, a missing path or an empty folder fail here, at once.
    ``option`` names the inputs in messages ("--identity")."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    if not specs:
        raise ValueError(f"{option} needs at least one input: seeds like 0-5, an image file or "
                         "a folder of images")
    plan: list[int | Path] = []
    for spec in specs:
        text, path = os.fspath(spec), Path(spec)
        if not text.strip():                # Path("") is the current folder: never meant
            raise ValueError(f"{option} got an empty input; give seeds like 0-5, an image "
                             "file or a folder of images")
        if isinstance(spec, str) and _SEEDS.match(text):
            plan += parse_seeds(text, limit=MAX_IMAGES, option=option)
        elif path.is_dir():
            found = expand_paths([path])
            for _, error in found:
                if error:
                    raise FileFormatError(f"{option} {path}: {error}")
            if not found:
                raise ValueError(f"{option} {path}: the folder holds no image files "
                                 f"({', '.join(IMAGE_SUFFIXES)})")
            plan += [p for p, _ in found]
        elif path.exists():
            plan.append(path)
        else:
            raise FileNotFoundError(f"{option} {text}: no such file or folder (expected seeds "
                                    "like 0-5,9, an image file or a folder of images)")
    return plan


def load_faces(specs: Specs, generator: Generator, *, truncation_psi: float = 1.0,
               aligned: bool = False, analyzer: FaceAnalyzer | None = None,
               size: int | None = None, batch: int = 4, option: str = "inputs",
               progress: Callable[[int], None] | None = None) -> Faces:
    """Faces from seed lists, image files and folders (see the module docstring).

    ``truncation_psi``: of faces from seeds. ``aligned``: image files are FFHQ-aligned faces
    already (square; only resized), else each is a photo whose largest face is detected and
    aligned by ``analyzer`` (default: the shared one on the generator's device). ``size``: the
    faces' side (default :data:`FACE_SIZE`, or the generator's resolution if smaller).
    ``option`` names the inputs in messages ("--identity"). ``progress(n)``: after each face
    or batch of faces. One-line errors: a missing or unreadable file, a photo without a face.
    """
    return load_planned(plan_inputs(specs, option), generator, truncation_psi, aligned,
                        analyzer, size, batch, option, progress)


def load_planned(plan: list[int | Path], generator: Generator, truncation_psi: float = 1.0,
                 aligned: bool = False, analyzer: FaceAnalyzer | None = None,
                 size: int | None = None, batch: int = 4, option: str = "inputs",
                 progress: Callable[[int], None] | None = None) -> Faces:
    """:func:`load_faces` of a :func:`plan_inputs` already made (its arguments as there)."""
    size = size or min(FACE_SIZE, int(generator.resolution))
    if size < MIN_SIDE:
        raise ValueError(f"size must be at least {MIN_SIDE} px (the mapping's smallest input), "
                         f"got {size}")
    images: list[Tensor] = []
    ws: list[Tensor] = []
    for seeded, run in itertools.groupby(plan, key=lambda item: isinstance(item, int)):
        items = list(run)
        if seeded:                          # a run of seeds: rendered a batch at a time
            for start in range(0, len(items), batch):
                w = latents_for_seeds(generator, items[start:start + batch],
                                      truncation_psi)[1].float()
                images.append(render_faces(generator, w, size))
                ws.append(w)                                             # [B, w_dim]
                if progress:
                    progress(len(w))
            continue
        if analyzer is None and not aligned:    # made only when a photo needs it
            analyzer = get_analyzer(generator.device)
        for path in items:
            image = from_uint8(load_rgb(path)[None])[0]                  # [3, H, W]
            images.append(align_face(image, size, analyzer, aligned=aligned, source=path,
                                     option=option)[None])
            ws.append(torch.full((1, int(generator.w_dim)), float("nan")))
            if progress:
                progress(1)
    names = [f"seed{v:04d}" if isinstance(v, int) else v.stem for v in plan]
    sources = [f"seed {v}" if isinstance(v, int) else str(v) for v in plan]
    seeded_w = torch.cat(ws) if any(isinstance(v, int) for v in plan) else None
    return Faces(torch.cat(images), _unique(names), sources, seeded_w)


def align_face(image: Tensor, size: int, analyzer: FaceAnalyzer | None = None, *,
               aligned: bool = False, source: str | os.PathLike[str] = "the image",
               option: str = "input") -> Tensor:
    """One image ``[3, H, W]`` float RGB in [-1, 1] (``from_uint8(load_rgb(path)[None])[0]``)
    as an FFHQ-aligned face ``[3, size, size]``, on the CPU.

    ``aligned``: the image is an aligned face already (square; only resized), else its largest
    face is detected and aligned by ``analyzer`` (needed then). ``source`` (the file) and
    ``option`` name it in messages. Raises :class:`NoFaceError` (a ValueError) for an image
    without a face, ValueError for a non-square ``aligned`` one.
    """
    h, w = image.shape[-2:]
    if aligned:
        if h != w:
            raise ValueError(f"{option} {source} is {w}x{h}; aligned inputs (--aligned) must be "
                             "square FFHQ-aligned faces: drop --aligned to detect and align "
                             "the face")
        return resize(image[None], size)[0]
    if analyzer is None:
        raise ValueError("align_face needs an analyzer to detect the face, or aligned=True for "
                         "an image that is an FFHQ-aligned face already")
    with torch.no_grad():
        crops, found = analyzer.ffhq_align([image], size)
    if not bool(found[0]):
        raise NoFaceError(f"{option} {source}: no face found; give a photo with a clear, "
                          "unoccluded face, or --aligned if it is an FFHQ-aligned face already")
    return crops[0].cpu()


def render_faces(generator: Generator, ws: Tensor, size: int) -> Tensor:
    """The generator's images of w ``[B, w_dim]`` (or ``[B, num_ws, w_dim]``) at ``size``:
    ``[B, 3, size, size]`` in [-1, 1] (clipped, as a saved image is), on the CPU."""
    with torch.no_grad():
        images = generator.synthesis(ws.to(generator.device))
        return resize(images, size).clamp(-1, 1).cpu()


def _unique(names: list[str]) -> list[str]:
    """``names`` with ``-2``, ``-3`` appended to repeats, so every face has its own label."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out
