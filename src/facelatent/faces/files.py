"""Scoring image files: folders expanded, each file read and checked, one result row per input.

:func:`score_files` is what ``facelatent score`` runs. It never raises for one bad input: a
missing, unreadable, empty, corrupt, oversized or too small file, or a folder it cannot list,
becomes a row with an ``error`` string of one line, and the other inputs are scored. With
``all_faces`` a photo gives one row per face, left to right, each with its index and box.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from facelatent.faces.analysis import MIN_SIDE, FaceAnalyzer, Images
from facelatent.faces.registry import ATTRIBUTES, resolve_attributes
from facelatent.images import from_uint8, load_rgb

__all__ = ["IMAGE_SUFFIXES", "expand_paths", "score_files"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Decoded pixels held at once while a batch is read: 2^26 (67 MP, 800 MB as float RGB). With
# images of up to 4096^2 (images.MAX_SIDE) a batch of 32 could otherwise hold 6 GB.
PIXEL_BUDGET = 2**26


def expand_paths(paths: Sequence[str | Path]) -> list[tuple[Path, str | None]]:
    """``(path, error)`` per input: files as given, folders replaced by the image files under
    them (sorted); a folder (or subfolder) that cannot be listed gives one row with its error."""
    out: list[tuple[Path, str | None]] = []
    for raw in paths:
        p = Path(raw)
        out.extend(_walk_folder(p) if p.is_dir() else [(p, None)])
    return out


def _walk_folder(top: Path) -> list[tuple[Path, str | None]]:
    found: list[Path] = []
    failed: list[tuple[Path, str | None]] = []

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else top
        failed.append((where, f"cannot list folder {where}: {exc.strerror or exc}"))

    for folder, _, names in os.walk(top, onerror=unreadable):
        found.extend(Path(folder) / n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES)
    return [(f, None) for f in sorted(found)] + failed


def score_files(paths: Sequence[str | Path], names: Sequence[str] | str | None = None, *,
                generated: bool = False, device: str | torch.device = "cpu",
                batch_size: int = 32, identity: str | None = None, progress: bool = False,
                analyzer: FaceAnalyzer | None = None,
                all_faces: bool = False) -> list[dict[str, object]]:
    """Score image files: one dict per input (per face with ``all_faces``), in input order,
    never raising for a bad input.

    Each dict has ``path``, ``face`` (a face was found), the attribute scores as floats, with
    ``identity`` the embedding as a list, and for photos ``detection_score`` (YuNet's, in
    [0, 1]). By default a photo is scored on its largest face. With ``all_faces`` a photo gives
    one row per face YuNet finds, sorted left to right by the centre of the box, each also with
    ``face_index`` (0, 1, ... in that order: the ``face`` argument of
    :func:`facelatent.faces.align.align_photo_faces`) and ``box`` ``[x0, y0, x1, y1]``
    (YuNet's box in photo pixels, pixel centres at integers; it may reach past the edges).
    Small faces: YuNet reads the photo scaled to 640 px on its longer side, and of LFW faces
    pasted into a 1280 px photo it found every one at least 40 px wide (1/32 of the longer
    side), none under 18 px (1/70), and some between; a photo whose faces are all too small
    gives one row with "no face found" (tests/test_photos_faces.py).

    An input that could not be scored (missing, unreadable, empty or corrupt file, over the
    pixel cap, too small, no face, not square with ``generated``) has one row with an ``error``
    string instead of scores. ``analyzer``: reuse loaded models (default: a new
    :class:`FaceAnalyzer` on ``device`` with ``batch_size``). ValueError only for arguments: no
    image files at all, unknown names, ``all_faces`` with ``generated``.
    """
    wanted = resolve_attributes(names)
    if all_faces and generated:
        raise ValueError("all_faces=True finds every face in photos, but generated=True reads "
                         "one FFHQ-aligned face per image; drop one of them")
    files = expand_paths(paths)
    if not files:
        raise ValueError(f"no image files found in {', '.join(map(str, paths))}; expected files "
                         f"ending in {', '.join(IMAGE_SUFFIXES)} or folders holding them")
    analyzer = analyzer or FaceAnalyzer(device, batch_size)
    landmarks = not generated or any(ATTRIBUTES[n].model == "landmarks68" for n in wanted)
    rows: list[dict[str, object]] = []
    with tqdm(total=len(files), unit="img", desc="score", disable=not progress,
              file=sys.stderr) as bar:
        for part, loaded in _read_batches(files, generated, analyzer.batch_size):
            if all_faces:
                rows.extend(_score_every_face(analyzer, part, loaded, wanted, identity))
            else:
                _score_loaded(analyzer, part, loaded, wanted, generated, landmarks, identity)
                rows.extend(part)
            bar.update(len(part))
    return rows


def _read_batches(files: list[tuple[Path, str | None]], generated: bool, batch_size: int,
                  ) -> Iterator[tuple[list[dict[str, object]], list[tuple[int, Tensor]]]]:
    """Rows of up to ``batch_size`` inputs (and :data:`PIXEL_BUDGET` decoded pixels) with the
    images that could be read: ``(rows, [(row index, [3, H, W] image)])``."""
    part: list[dict[str, object]] = []
    loaded: list[tuple[int, Tensor]] = []
    pixels = 0
    for path, error in files:
        row: dict[str, object] = {"path": str(path)}
        image = None
        if error is None:
            image, error = _read_one(path, generated)
        if image is None:
            row.update(face=False, error=error)
        else:
            loaded.append((len(part), image))
            pixels += image.shape[-1] * image.shape[-2]
        part.append(row)
        if len(part) >= batch_size or pixels >= PIXEL_BUDGET:
            yield part, loaded
            part, loaded, pixels = [], [], 0
    if part:
        yield part, loaded


def _read_one(path: Path, generated: bool) -> tuple[Tensor | None, str | None]:
    """``(image [3, H, W] in [-1, 1], None)`` or ``(None, one-line error)``."""
    try:
        image = from_uint8(load_rgb(path)[None])[0]
    except (ValueError, OSError) as exc:       # FileFormatError is a ValueError
        return None, str(exc).splitlines()[0] if str(exc) else f"cannot read image {path}"
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE:
        return None, f"image is {w}x{h} pixels; a face needs at least {MIN_SIDE}x{MIN_SIDE}"
    if generated and h != w:
        return None, (f"image is {w}x{h}; --generated expects square FFHQ-aligned faces (drop "
                      "--generated for photos)")
    return image, None


def _score_loaded(analyzer: FaceAnalyzer, part: list[dict[str, object]],
                  loaded: list[tuple[int, Tensor]], wanted: tuple[str, ...], generated: bool,
                  landmarks: bool, identity: str | None) -> None:
    """Fill ``part``'s rows with the scores of the images in ``loaded``."""
    groups: dict[tuple[int, ...], list[tuple[int, Tensor]]] = {}
    for i, image in loaded:
        # Generated faces run as one tensor per size; photos go as one list of any sizes.
        key = tuple(image.shape[-2:]) if generated else ()
        groups.setdefault(key, []).append((i, image))
    for members in groups.values():
        batch: Images = (torch.stack([im for _, im in members]) if generated
                         else [im for _, im in members])
        geom = analyzer.locate(batch, generated, landmarks=landmarks)
        scores = analyzer.score(batch, wanted, geometry=geom)
        ids = analyzer.embed(batch, identity, geometry=geom) if identity else None
        for j, (i, _) in enumerate(members):
            row = part[i]
            row["face"] = bool(geom.found[j])
            if geom.detection_score is not None:
                row["detection_score"] = float(geom.detection_score[j])
            if not geom.found[j]:
                row["error"] = "no face found"
                continue
            row.update({n: float(scores[n][j]) for n in wanted})
            if ids is not None:
                row["identity"] = [float(v) for v in ids[j]]


def _score_every_face(analyzer: FaceAnalyzer, part: list[dict[str, object]],
                      loaded: list[tuple[int, Tensor]], wanted: tuple[str, ...],
                      identity: str | None) -> list[dict[str, object]]:
    """``part``'s rows in order, each photo's row replaced by one row per face it holds."""
    photos = [im for _, im in loaded]
    faces: dict[int, list[dict[str, object]]] = {}
    if photos:
        geom, owner = analyzer.locate_faces(photos)
        # Each face row reads its own photo: the list repeats references, it copies nothing.
        per_face = [photos[k] for k in owner.tolist()]
        if per_face:
            scores = analyzer.score(per_face, wanted, geometry=geom)
            ids = analyzer.embed(per_face, identity, geometry=geom) if identity else None
            assert geom.detection_boxes is not None and geom.detection_score is not None
            for f, k in enumerate(owner.tolist()):
                i = loaded[k][0]
                mine = faces.setdefault(i, [])
                row: dict[str, object] = {
                    "path": part[i]["path"], "face": True, "face_index": len(mine),
                    "box": [float(v) for v in geom.detection_boxes[f]],
                    "detection_score": float(geom.detection_score[f])}
                row.update({n: float(scores[n][f]) for n in wanted})
                if ids is not None:
                    row["identity"] = [float(v) for v in ids[f]]
                mine.append(row)
    out: list[dict[str, object]] = []
    read = {i for i, _ in loaded}
    for i, row in enumerate(part):
        if i in faces:
            out.extend(faces[i])
        elif i in read:
            out.append({**row, "face": False, "error": "no face found"})
        else:
            out.append(row)
    return out
