"""Inverting the faces in photo files: read, find faces, FFHQ-align, invert, write a folder each.

:func:`invert_photos` is what ``facelatent invert`` runs. It never raises for one bad photo: a
missing, corrupt or unreadable file, or a photo without a face (or without face ``face``),
becomes a row with a one-line ``error``, and the other photos are inverted. Output layout:
``OUT/<photo stem>_face<K>/`` per face (:func:`facelatent.inversion.save_inversion`), with
``-2``, ``-3`` appended to the stem when two inputs share one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from facelatent.faces.analysis import FaceAnalyzer
from facelatent.faces.files import expand_paths
from facelatent.faces.photo_align import align_photo_faces
from facelatent.generators import Generator
from facelatent.images import from_uint8, load_rgb
from facelatent.inversion.files import save_inversion
from facelatent.inversion.optimize import Inverter

__all__ = ["AlignedFace", "align_photo", "invert_photos"]

ALIGN_SIZE = 256   # px of the aligned crop: the loss size, so nothing is resampled twice


@dataclass
class AlignedFace:
    """One face cut from a photo the way FFHQ was made.

    ``crop``: ``[3, S, S]`` in [-1, 1]. ``transform``: JSON-serialisable; ``quad`` is the crop
    square's corners in photo pixels (top-left, bottom-left, bottom-right, top-right), enough
    to paste a result back.
    """

    index: int
    crop: Tensor
    transform: dict[str, object]


def align_photo(analyzer: FaceAnalyzer, image: Tensor, size: int = ALIGN_SIZE,
                ) -> list[AlignedFace]:
    """Every face found in ``image`` [3, H, W] (in [-1, 1]), FFHQ-aligned to ``size``, left to
    right (:func:`facelatent.faces.photo_align.align_photo_faces`), each with its transform
    as JSON (``FFHQTransform.to_json``: what ``facelatent edit --paste-back`` reads)."""
    crops, transforms = align_photo_faces(image, None, size, analyzer=analyzer)
    return [AlignedFace(k, crop, t.to_json()) for k, (crop, t) in enumerate(zip(crops,
                                                                              transforms))]


def invert_photos(paths: Sequence[str | Path], out_dir: str | Path, generator: Generator,
                  inverter: Inverter, *, face: int | None = None, size: int = ALIGN_SIZE,
                  analyzer: FaceAnalyzer | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  ) -> list[dict[str, object]]:
    """Invert the faces in image files (folders are searched) into ``out_dir``.

    ``face``: which face of each photo (0 = leftmost); None: every face found. ``size``: side of
    the aligned crops. ``progress(done, total)`` counts optimisation steps of all photos (a
    failed photo advances it by its share at once). Returns one row per written face, and one
    per failed photo: ``path``, ``face``, and ``folder`` plus the metrics, or ``error``.
    """
    files = expand_paths(paths)
    if not files:
        raise ValueError(f"no image files found in {', '.join(map(str, paths))}")
    if face is not None and face < 0:
        raise ValueError(f"face must be >= 0 (0 = the leftmost face), got {face}")
    analyzer = analyzer or FaceAnalyzer(generator.device)
    total, done = len(files) * inverter.steps, 0
    rows: list[dict[str, object]] = []
    stems: dict[str, int] = {}
    pending: list[tuple[Path, str, AlignedFace]] = []
    order = {str(p): i for i, (p, _) in enumerate(files)}

    def flush() -> None:
        # Faces of several photos are inverted together (inverter.batch_size per step); each
        # photo counts for inverter.steps steps of the progress.
        nonlocal done
        photos = len({p for p, _, _ in pending})
        base = done

        def report(step: int, steps: int, _: Tensor) -> None:
            if progress:
                progress(base + round(step / steps * photos * inverter.steps), total)

        crops = torch.stack([f.crop for _, _, f in pending])
        result = inverter.fit(generator, crops, analyzer, progress=report).result_
        for i, (path, stem, f) in enumerate(pending):
            folder = Path(out_dir) / f"{stem}_face{f.index}"
            save_inversion(result, folder, i, source=path, face_index=f.index,
                           transform=f.transform)
            rows.append({"path": str(path), "face": f.index, "folder": str(folder),
                         "seconds": result.seconds / len(pending),
                         **{k: float(v[i]) for k, v in result.metrics.items()}})
        done = base + photos * inverter.steps
        pending.clear()

    for path, error in files:
        stems[path.stem] = stems.get(path.stem, 0) + 1
        stem = path.stem if stems[path.stem] == 1 else f"{path.stem}-{stems[path.stem]}"
        faces: list[AlignedFace] = []
        if error is None:
            faces, error = _faces_of(analyzer, path, face, size)
        if error is not None:
            rows.append({"path": str(path), "face": face, "error": error})
            done += inverter.steps
            if progress:
                progress(done, total)
            continue
        pending.extend((path, stem, f) for f in faces)
        if len(pending) >= inverter.batch_size:
            flush()
    if pending:
        flush()
    # Photos that failed were reported at once, the others when their batch finished: rows
    # go back into the order of the inputs (faces of a photo stay left to right).
    rows.sort(key=lambda r: order[str(r["path"])])
    return rows


def _faces_of(analyzer: FaceAnalyzer, path: Path, face: int | None, size: int,
              ) -> tuple[list[AlignedFace], str | None]:
    """The aligned faces wanted from one file, or a one-line error."""
    try:
        image = from_uint8(load_rgb(path)[None])[0]
        found = align_photo(analyzer, image, size)
    except (ValueError, OSError) as exc:      # FileFormatError is a ValueError
        return [], str(exc).splitlines()[0] if str(exc) else f"cannot read image {path}"
    if not found:
        return [], "no face found"
    if face is None:
        return found, None
    if face >= len(found):
        return [], f"face {face} asked, but {len(found)} face(s) found (0 = the leftmost)"
    return [found[face]], None
