"""LFW's own intra-class spread of pose, expression and age: the reference that a synthetic
dataset's spread is read against (`facelatent dataset report --lfw DIR`).

    ref = lfw_spread("../shared/datasets/lfw")       # scored once, then read from the cache
    ref.spreads["yaw"], ref.people, ref.images

1. The images are those of LFW's pair list (`pairs.txt`, read by `facelatent.faces.lfw`), kept
   for the people with at least 2 of them; `people` takes an evenly spaced subset by name.
2. Each photo is scored as `facelatent score` scores a photo (`score_files`: YuNet, the 68
   landmarks, the largest face), with the scorers that write a dataset's metadata
   (`DATASET_ATTRIBUTES`), so both spreads come from the same models. The photos are read in
   place, never copied.
3. The spread is `attribute_spreads`: per person the standard deviation of each score over
   their photos with a face, averaged over the people.

The scores are cached in one `.npz` under facelatent's user cache (`facelatent.weights.
cache_root`, or `cache=`), keyed by image path and made again when facelatent or a model file
changes; a later call scores only the photos the cache lacks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.datasets.quality import attribute_spreads
from facelatent.datasets.shard import DATASET_ATTRIBUTES
from facelatent.io import jsonable, load_npz, save_npz

__all__ = ["CACHE_FORMAT", "CACHE_NAME", "LfwScores", "LfwSpread", "lfw_people", "lfw_scores",
           "lfw_spread"]

CACHE_FORMAT = "facelatent.lfw_attribute_scores"
CACHE_NAME = "lfw-attribute-scores.npz"
ProgressFn = Callable[[int, int], None]     # (photos scored, photos to score)
SAVE_EVERY = 256                            # photos scored between two writes of the cache


@dataclass(frozen=True)
class LfwSpread:
    """LFW's intra-class spread of every score, and what it was measured on."""

    spreads: dict[str, float]    # score name -> mean over people of the within-person std
    people: int                  # people with at least 2 photos in the pair list (or `people`)
    images: int                  # their photos
    faces_found: int             # photos with a face (only these count)
    seconds: float               # scoring (or reading the cache) and the spreads
    scored: int                  # photos scored in this call (0: all from the cache)
    cache: str | None            # the cache file

    def as_dict(self) -> dict[str, Any]:
        """Every field, for JSON (NaN as null)."""
        out: dict[str, Any] = jsonable(asdict(self))
        return out


def lfw_people(paths: Sequence[str], minimum: int = 2) -> dict[str, list[str]]:
    """Person -> their image paths ("Name/Name_0001.jpg"), for people with >= `minimum`."""
    groups: dict[str, list[str]] = {}
    for p in sorted(set(paths)):
        groups.setdefault(p.split("/")[0], []).append(p)
    return {name: files for name, files in groups.items() if len(files) >= minimum}


def _fingerprint() -> str:
    """What cached scores depend on: facelatent's version and every face model file's hash."""
    from facelatent import __version__
    from facelatent.faces.registry import MODELS
    from facelatent.weights import MANIFEST

    digest = hashlib.sha256(__version__.encode())
    for asset in sorted({MODELS[m].asset for m in MODELS}):
        for member in MANIFEST[asset].members:
            digest.update(member.sha256.encode())
    return digest.hexdigest()


def _read_cache(path: Path | None, fingerprint: str) -> dict[str, np.ndarray]:
    """Cached rows, path -> [A] scores in DATASET_ATTRIBUTES order; empty when the cache is
    missing or from other code or models."""
    if path is None or not path.is_file():
        return {}
    held = load_npz(path, format=CACHE_FORMAT, max_version=1, kind="an LFW attribute cache")
    names = [str(n) for n in held.get("names", np.array([])).tolist()]
    if str(held.get("fingerprint")) != fingerprint or names != list(DATASET_ATTRIBUTES):
        return {}
    return dict(zip(held["paths"].tolist(), held["scores"]))


def _score(files: list[Path], analyzer: Any, chunk: int,
           progress: ProgressFn | None) -> np.ndarray:
    """[M, A] scores of photo files (NaN rows where no face was found)."""
    from facelatent.faces.files import score_files

    out = np.full((len(files), len(DATASET_ATTRIBUTES)), np.nan)
    for start in range(0, len(files), chunk):
        rows = score_files(files[start:start + chunk], DATASET_ATTRIBUTES, analyzer=analyzer)
        for i, row in enumerate(rows, start=start):
            if "error" not in row:
                out[i] = [float(row.get(a, np.nan)) for a in DATASET_ATTRIBUTES]   # type: ignore[arg-type]
        if progress is not None:
            progress(min(start + chunk, len(files)), len(files))
    return out


def _offset(progress: ProgressFn, start: int, total: int) -> ProgressFn:
    return lambda done, _: progress(start + done, total)


def _write_cache(path: Path, held: dict[str, np.ndarray], fingerprint: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = sorted(held)
    save_npz(path, {"paths": np.array(kept), "scores": np.stack([held[p] for p in kept]),
                    "names": np.array(DATASET_ATTRIBUTES), "fingerprint": np.str_(fingerprint)},
             format=CACHE_FORMAT, version=1, compressed=True)


class LfwScores(dict):
    """path -> [A] float32 scores in `DATASET_ATTRIBUTES` order (NaN: no face), and how many of
    them this call scored (the rest came from the cache)."""

    scored: int = 0


def _cache_file(cache: str | Path | None) -> Path:
    from facelatent.weights import cache_root

    return (Path(cache) if cache is not None else cache_root()) / CACHE_NAME


def lfw_scores(images: str | Path, paths: Sequence[str], *, cache: str | Path | None = None,
               use_cache: bool = True, analyzer: Any = None, device: str = "cpu",
               batch_size: int = 32, progress: ProgressFn | None = None) -> LfwScores:
    """The dataset scores (yaw, pitch, expression, age, ...) of LFW photos: ``paths`` relative
    to the image folder ``images`` ("Name/Name_0001.jpg"), the largest face of each, read from
    the cache where it has them and scored (and cached, in blocks) where it does not. Arguments
    as `lfw_spread`. ``DATASET_ATTRIBUTES.index(name)`` picks a score."""
    images = Path(images)
    cache_file = _cache_file(cache) if use_cache else None
    fingerprint = _fingerprint()
    held = _read_cache(cache_file, fingerprint)
    todo = list(dict.fromkeys(p for p in paths if p not in held))
    if todo:
        from facelatent.faces.analysis import FaceAnalyzer

        analyzer = analyzer or FaceAnalyzer(device, batch_size)
        # In blocks, each saved as it is done: an interrupted run keeps what it scored.
        for start in range(0, len(todo), SAVE_EVERY):
            block = todo[start:start + SAVE_EVERY]
            done = None if progress is None else _offset(progress, start, len(todo))
            held.update(zip(block, _score([images / p for p in block], analyzer, batch_size,
                                          done)))
            if cache_file is not None:
                _write_cache(cache_file, held, fingerprint)
    out = LfwScores((p, held[p]) for p in paths)
    out.scored = len(todo)
    return out


def lfw_spread(lfw: str | Path, *, people: int | None = None, cache: str | Path | None = None,
               use_cache: bool = True, analyzer: Any = None, device: str = "cpu",
               batch_size: int = 32, progress: ProgressFn | None = None) -> LfwSpread:
    """LFW's intra-class spread of the dataset scores (module docstring).

    ``lfw``: the folder holding pairs.txt and the images (e.g. ../shared/datasets/lfw).
    ``people``: measure that many people, evenly spaced by name (None: all with >= 2 photos in
    the pair list, 1,680 in View 2). ``cache``: the folder of the scores' cache (None:
    facelatent's user cache); ``use_cache=False`` neither reads nor writes one. ``analyzer``:
    a `FaceAnalyzer` to reuse (default: a new one on ``device`` with ``batch_size``).
    """
    from facelatent.faces.lfw import read_lfw

    start = time.perf_counter()
    pairs, images = read_lfw(lfw)
    groups = lfw_people(pairs.images())
    names = sorted(groups)
    if people is not None:
        if people < 1:
            raise ValueError(f"people must be >= 1, got {people}")
        keep = np.unique(np.linspace(0, len(names) - 1, min(people, len(names))).round())
        names = [names[int(i)] for i in keep]
    paths = [p for n in names for p in groups[n]]
    labels = np.array([names.index(p.split("/")[0]) for p in paths])
    held = lfw_scores(images, paths, cache=cache, use_cache=use_cache, analyzer=analyzer,
                      device=device, batch_size=batch_size, progress=progress)
    cache_file = _cache_file(cache) if use_cache else None
    table = np.stack([held[p] for p in paths]) if paths else np.zeros((0, len(DATASET_ATTRIBUTES)))
    found = np.isfinite(table).any(axis=1)
    spreads = attribute_spreads({a: table[:, k] for k, a in enumerate(DATASET_ATTRIBUTES)}, labels)
    return LfwSpread(spreads, len(names), len(paths), int(found.sum()),
                     time.perf_counter() - start, held.scored,
                     None if cache_file is None else str(cache_file))
