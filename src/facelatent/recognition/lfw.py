"""LFW verification of any recogniser: the pretrained SFace and dlib nets, or one trained by
`facelatent fr train`.

1. Every photo the chosen folds' pairs name is located once by facelatent's own pipeline (YuNet,
   68 landmarks; the face nearest the photo's centre), exactly as `facelatent verify lfw` does.
2. SFace and dlib embed those faces themselves (:func:`facelatent.faces.lfw.verify_lfw`). A
   trained recogniser reads 112x112 ArcFace-template crops of the same five points
   (:func:`lfw_crops`), kept in an ``.npz`` cache keyed by a fingerprint of the code and the
   detector's files, so that the evaluation after each training epoch only runs the network.
   Its embeddings are flip-averaged (crop and mirror image; see `Recognizer`).
3. LFW's 10-fold protocol (`facelatent.faces.calibration.cross_validate`): the threshold chosen
   on nine folds, the accuracy measured on the tenth, mean and std over the ten. A photo with
   no face found gives its pairs no score: they are wrong at every threshold, counted as
   failures, never dropped (``faces_not_found`` and ``pairs_failed`` say how many).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facelatent.faces.analysis import FaceAnalyzer
from facelatent.faces.lfw import (
    LfwPairs,
    VerificationResult,
    align_files,
    fingerprint,
    read_folds,
    read_lfw,
    verification_result,
    verify_lfw,
)
from facelatent.images import from_uint8
from facelatent.io import load_npz, save_npz
from facelatent.recognition.checkpoint import Recognizer, load_recognizer
from facelatent.runtime import keep_freed_memory

__all__ = ["CROP_CACHE_FORMAT", "PRETRAINED", "PUBLISHED", "LfwCrops", "crop_embeddings", "evaluate_crops",
           "evaluate_lfw", "lfw_crops"]

CROP_CACHE_FORMAT = "facelatent.lfw_crops"
PRETRAINED = ("sface", "dlib")
# Published LFW accuracy (%) of the pretrained recognisers, for comparison with ours: dlib's
# model page (dlib_face_recognition_resnet_model_v1: 99.38 %) and OpenCV Zoo's SFace card
# (about 99.4 % for the fp32 model; the int8 graph we run is its block-quantised copy).
PUBLISHED = {"sface": 99.40, "dlib": 99.38}
ProgressFn = Callable[[int, int], None]


@dataclass
class LfwCrops:
    """The ArcFace-template crops of the images of some LFW pairs."""

    pairs: LfwPairs
    face: str                    # which face of a photo with several ("central", "largest")
    names: list[str]             # [M] image paths relative to the image folder, sorted
    crops: np.ndarray            # [M, 112, 112, 3] uint8 RGB; zero where no face was found
    found: np.ndarray            # [M] bool
    seconds: float               # to read (or make) them
    cached: bool                 # every crop came from the cache


def _cache_file(cache: Path, images_dir: Path, face: str) -> Path:
    # One file per image folder: two copies of LFW (e.g. funneled and deep-funneled) never mix.
    tag = hashlib.sha256(str(images_dir.resolve()).encode()).hexdigest()[:12]
    return cache / f"lfw-crops-{face}-{tag}.npz"


def lfw_crops(lfw: str | Path, *, folds: Sequence[int] | None = None, face: str = "central",
              cache: str | Path | None = None, analyzer: FaceAnalyzer | None = None,
              device: str = "cpu", batch_size: int = 32,
              progress: ProgressFn | None = None) -> LfwCrops:
    """The crops of every image named by the pairs of ``folds`` (default: all) of the LFW
    folder ``lfw``. With ``cache`` (a folder), crops already there are read and only missing
    ones are made and added; the file is remade when facelatent or the detector's files change.
    ``progress(done, total)`` while photos are aligned."""
    pairs, images_dir, names = read_folds(lfw, folds)
    start = time.perf_counter()
    key = fingerprint((), face)
    file = None if cache is None else _cache_file(Path(cache), images_dir, face)
    held: dict[str, tuple[np.ndarray, bool]] = {}
    if file is not None and file.is_file():
        stored = load_npz(file, format=CROP_CACHE_FORMAT, max_version=1,
                          kind="an LFW crop cache", max_elements=10**9)
        if str(stored.get("fingerprint")) == key:
            held = {str(n): (c, bool(f)) for n, c, f in
                    zip(stored["paths"], stored["crops"], stored["found"])}
    todo = [n for n in names if n not in held]
    if todo:
        crops, found = align_files([images_dir / n for n in todo], face=face,
                                   analyzer=analyzer or FaceAnalyzer(device, batch_size),
                                   batch_size=batch_size, progress=progress)
        held.update({n: (c, bool(f)) for n, c, f in zip(todo, crops, found)})
        if file is not None:
            every = sorted(held)
            save_npz(file, {"paths": np.array(every),
                            "crops": np.stack([held[n][0] for n in every]),
                            "found": np.array([held[n][1] for n in every]),
                            "fingerprint": np.str_(key)}, format=CROP_CACHE_FORMAT,
                     compressed=True)
    return LfwCrops(pairs, face, names, np.stack([held[n][0] for n in names]),
                    np.array([held[n][1] for n in names], dtype=bool),
                    time.perf_counter() - start, cached=not todo)


@torch.no_grad()
def crop_embeddings(recognizer: Recognizer, crops: LfwCrops, batch_size: int = 128) -> np.ndarray:
    """``[len(crops.names), dim]`` float32 embeddings of the crops, NaN rows where no face was
    found (``crops.found`` False)."""
    device = next(recognizer.parameters()).device
    if device.type == "cpu":
        keep_freed_memory()      # reuse activation memory, not page-fault it in per batch
    embeddings = np.full((len(crops.names), recognizer.dim), np.nan, dtype=np.float32)
    rows = np.flatnonzero(crops.found)
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        x = from_uint8(crops.crops[chunk]).to(device)
        embeddings[chunk] = recognizer.embed(x, batch_size).float().cpu().numpy()
    return embeddings


def evaluate_crops(recognizer: Recognizer, crops: LfwCrops, *, name: str = "checkpoint",
                   batch_size: int = 128) -> VerificationResult:
    """LFW's protocol for ``recognizer`` on prepared ``crops`` (see the module docstring)."""
    start = time.perf_counter()
    embeddings = crop_embeddings(recognizer, crops, batch_size)
    seconds = crops.seconds + time.perf_counter() - start
    return verification_result(name, crops.face, embeddings, crops.names, crops.pairs,
                               seconds=seconds, cached=crops.cached)


def evaluate_lfw(lfw: str | Path, model: str | Path = "sface", *,
                 folds: Sequence[int] | None = None, cache: str | Path | None = None,
                 device: str = "cpu", batch_size: int = 32, flip: bool = True,
                 analyzer: FaceAnalyzer | None = None,
                 progress: ProgressFn | None = None) -> VerificationResult:
    """LFW verification of ``model``: "sface", "dlib" (embedded as `facelatent verify lfw`
    does) or the folder of a recogniser trained by `facelatent fr train` (its crops cached in
    ``cache``, its embeddings flip-averaged unless ``flip`` is False). ``folds``: 1-based LFW
    folds (default all ten), each held out in turn. Returns a `VerificationResult`."""
    if str(model) in PRETRAINED:
        return verify_lfw(lfw, (str(model),), folds=folds, cache=cache, analyzer=analyzer,
                          device=device, batch_size=batch_size, progress=progress)[str(model)]
    pairs, _ = read_lfw(lfw)                # the cheap checks first: LFW, then the folds
    pairs.select(range(1, pairs.folds + 1) if folds is None else folds)
    recognizer = load_recognizer(model, device, flip=flip)
    crops = lfw_crops(lfw, folds=folds, cache=cache, analyzer=analyzer, device=device,
                      batch_size=batch_size, progress=progress)
    return evaluate_crops(recognizer, crops, name=str(model), batch_size=max(batch_size, 64))
