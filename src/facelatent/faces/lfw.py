"""LFW verification through facelatent's own pipeline (``facelatent verify lfw``): read
``pairs.txt``, embed every photo once, and measure each recogniser with the protocol of
`facelatent.faces.calibration` (which keeps the thresholds this measures)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facelatent.faces.align import ARCFACE_CROP_SIZE, arcface_align
from facelatent.faces.analysis import FaceAnalyzer, FaceGeometry
from facelatent.faces.calibration import best_threshold, cross_validate
from facelatent.faces.registry import IDENTITY_MODELS, MODELS
from facelatent.images import from_uint8, load_rgb, to_uint8
from facelatent.io import load_npz, save_npz

__all__ = ["CACHE_FORMAT", "LfwPairs", "VerificationResult", "align_files", "analyzer_of",
           "embed_files", "fingerprint", "parse_pairs", "read_folds", "read_lfw", "verification_result",
           "verify_lfw"]

CACHE_FORMAT = "facelatent.lfw_embeddings"
ProgressFn = Callable[[int, int], None]     # (images done, images to do)


# -- pairs.txt ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LfwPairs:
    """LFW's verification pairs: image paths relative to the image folder
    (``"Name/Name_0001.jpg"``)."""

    first: tuple[str, ...]     # [P]
    second: tuple[str, ...]    # [P]
    same: np.ndarray           # [P] bool, True for same-person pairs
    fold: np.ndarray           # [P] int, 1-based fold number

    @property
    def folds(self) -> int:
        """How many folds the file has (10 for View 2)."""
        return int(self.fold.max()) if self.fold.size else 0

    def images(self) -> list[str]:
        """Every image named by a pair, once, sorted."""
        return sorted(set(self.first) | set(self.second))

    def select(self, folds: Sequence[int]) -> LfwPairs:
        """The pairs of ``folds`` (1-based numbers), in file order."""
        wanted = sorted({int(k) for k in folds})
        bad = [k for k in wanted if not 1 <= k <= self.folds]
        if bad or not wanted:
            raise ValueError(f"folds must be numbers from 1 to {self.folds}, got "
                             f"{list(folds)}; e.g. 1-{self.folds} or 1,2")
        keep = np.flatnonzero(np.isin(self.fold, wanted))
        return LfwPairs(tuple(self.first[i] for i in keep), tuple(self.second[i] for i in keep),
                        self.same[keep], self.fold[keep])


def _image(name: str, number: str, where: str) -> str:
    if not number.isdigit() or int(number) < 1:
        raise ValueError(f"{where}: image number {number!r} is not a positive integer")
    return f"{name}/{name}_{int(number):04d}.jpg"


def parse_pairs(path: str | Path) -> LfwPairs:
    """Read LFW's ``pairs.txt``: a header ``"<folds> <n>"``, then per fold ``n`` lines
    ``name n1 n2`` (same person) followed by ``n`` lines ``name1 n1 name2 n2`` (different).
    Fields are separated by tabs or spaces. ValueError naming the line for anything else."""
    path = Path(path)
    # (line number, fields) of every non-blank line, so that messages name the file's own line.
    lines = [(i + 1, ln.split()) for i, ln in
             enumerate(path.read_text(encoding="utf-8").splitlines()) if ln.strip()]
    header = lines[0][1] if lines else []
    if len(header) != 2 or not all(v.isdigit() and int(v) > 0 for v in header):
        raise ValueError(f"{path}: line 1 must give the number of folds and of pairs per kind "
                         f"(e.g. '10 300'), got {' '.join(header)!r}; is this LFW's pairs.txt?")
    folds, per_kind = int(header[0]), int(header[1])
    if len(lines) != 1 + folds * 2 * per_kind:
        raise ValueError(f"{path}: the header promises {folds} folds x {2 * per_kind} pairs but "
                         f"the file has {len(lines) - 1} pair lines")
    rows = []                                      # (first, second, same, fold) per pair
    for i, (number, fields) in enumerate(lines[1:]):
        where = f"{path}: line {number}"
        k, within = divmod(i, 2 * per_kind)
        is_same = within < per_kind
        if is_same and len(fields) == 3:
            a, b = _image(fields[0], fields[1], where), _image(fields[0], fields[2], where)
        elif not is_same and len(fields) == 4:
            a, b = _image(fields[0], fields[1], where), _image(fields[2], fields[3], where)
        else:
            kind = "'name n1 n2' (same person)" if is_same else "'name1 n1 name2 n2' (different)"
            raise ValueError(f"{where} must be {kind} in fold {k + 1}, got {' '.join(fields)!r}")
        rows.append((a, b, is_same, k + 1))
    first, second, same, fold = zip(*rows)
    return LfwPairs(first, second, np.array(same, dtype=bool), np.array(fold, dtype=np.int64))


def read_lfw(lfw: str | Path) -> tuple[LfwPairs, Path]:
    """``(pairs, image folder)`` of an LFW folder: its ``pairs.txt`` (:func:`parse_pairs`) and
    the folder, ``lfw`` itself or one below (e.g. ``deepfunneled250/``), holding the images as
    ``Name/Name_0001.jpg``. ValueError naming ``lfw`` when either is missing."""
    root = Path(lfw)
    if not (root / "pairs.txt").is_file():
        raise ValueError(f"lfw: no pairs.txt in {root}; pass the LFW folder that holds pairs.txt "
                         "and the image folders (e.g. ../shared/datasets/lfw)")
    pairs = parse_pairs(root / "pairs.txt")
    probe = pairs.first[0]
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (folder / probe).is_file():
            return pairs, folder
    raise ValueError(f"lfw: no folder in {root} (or one level below) holds {probe}; pass the "
                     "LFW folder whose images sit as Name/Name_0001.jpg")


def read_folds(lfw: str | Path, folds: Sequence[int] | None = None
               ) -> tuple[LfwPairs, Path, list[str]]:
    """``(pairs of folds, image folder, every image they name once)`` of an LFW folder
    (:func:`read_lfw`; ``folds`` default all), checked: ValueError when an image is missing."""
    pairs, images_dir = read_lfw(lfw)
    pairs = pairs.select(range(1, pairs.folds + 1) if folds is None else folds)
    names = pairs.images()
    missing = [n for n in names if not (images_dir / n).is_file()]
    if missing:
        raise ValueError(f"lfw: {len(missing)} of the {len(names)} images the pairs name are "
                         f"missing from {images_dir} (first: {missing[0]}); pass a complete LFW")
    return pairs, images_dir, names


# -- embedding ---------------------------------------------------------------------------------

FACE_CHOICES = ("central", "largest")


def embed_files(paths: Sequence[str | Path], models: Sequence[str], *, face: str = "central",
                analyzer: FaceAnalyzer | None = None, batch_size: int = 32,
                progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """Embed photo files as any photo is embedded: ``{model: [M, 128] float32}``, unit rows,
    NaN rows where no face was found. Each batch of ``batch_size`` files is detected once and
    embedded by every model in ``models``. ``progress(done, total)`` after each batch.

    ``face``: which face of a photo with several: "central" (the one whose box centre is
    nearest the photo's centre: LFW's photos are cut around their subject, and the largest face
    is at times a bystander's) or "largest" (what :meth:`FaceAnalyzer.locate` keeps).
    A file that cannot be read raises (FileFormatError or FileNotFoundError, naming it)."""
    if not models or any(m not in IDENTITY_MODELS for m in models):
        raise ValueError(f"models must name recognisers from {', '.join(IDENTITY_MODELS)}, got "
                         f"{list(models)}")
    if face not in FACE_CHOICES:
        raise ValueError(f"face must be one of {', '.join(FACE_CHOICES)}, got {face!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    analyzer = analyzer_of(analyzer, batch_size)
    out = {m: np.full((len(paths), 128), np.nan, dtype=np.float32) for m in models}
    for rows, batch, geometry in _located_batches(paths, face, analyzer, batch_size, progress):
        for m in models:
            if len(rows):
                out[m][rows] = analyzer.embed(batch, m, geometry=geometry).cpu().numpy()
    return out


def align_files(paths: Sequence[str | Path], *, face: str = "central",
                analyzer: FaceAnalyzer | None = None, batch_size: int = 32,
                progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 112x112 ArcFace-template crops of photo files, found as :func:`embed_files` finds
    the face that SFace embeds (same detection, same ``face`` choice, same five points).

    Returns ``(crops [M, 112, 112, 3] uint8, found [M] bool)``; rows without a face are zero.
    ``progress(done, total)`` after each batch. Unreadable files raise as in embed_files."""
    if face not in FACE_CHOICES:
        raise ValueError(f"face must be one of {', '.join(FACE_CHOICES)}, got {face!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    crops = np.zeros((len(paths), ARCFACE_CROP_SIZE, ARCFACE_CROP_SIZE, 3), dtype=np.uint8)
    found = np.zeros(len(paths), dtype=bool)
    analyzer = analyzer_of(analyzer, batch_size)
    for rows, batch, geometry in _located_batches(paths, face, analyzer, batch_size, progress):
        points = geometry.points5.cpu()
        # One warp per batch where the photos share a size, else one per photo.
        groups = ([(np.arange(len(rows)), batch)] if isinstance(batch, Tensor) else
                  [(np.array([i]), photo[None]) for i, photo in enumerate(batch)])
        for index, photos in groups:
            crops[rows[index]] = to_uint8(arcface_align(photos.cpu(), points[index]))
        found[rows] = True
    return crops, found


def analyzer_of(analyzer: FaceAnalyzer | None, batch_size: int) -> FaceAnalyzer:
    """``analyzer``, or a new CPU one with ``batch_size``."""
    return analyzer if analyzer is not None else FaceAnalyzer(batch_size=batch_size)


def _located_batches(paths: Sequence[str | Path], face: str, analyzer: FaceAnalyzer | None,
                     batch_size: int, progress: ProgressFn | None,
                     ) -> Iterator[tuple[np.ndarray, Tensor | list[Tensor], FaceGeometry]]:
    """Per batch of ``batch_size`` files, the photos with a face: ``(rows [K] into paths,
    photos, geometry [K])``, one face per photo (``face`` chooses which), photo order."""
    analyzer = analyzer_of(analyzer, batch_size)
    for start in range(0, len(paths), batch_size):
        photos = [from_uint8(load_rgb(p)[None])[0] for p in paths[start:start + batch_size]]
        # Photos of one size go as one batch tensor: the recognisers then run once per batch.
        same_size = len({tuple(p.shape) for p in photos}) == 1
        batch: Tensor | list[Tensor] = torch.stack(photos) if same_size else photos
        if face == "central":
            geometry, owner = _central_faces(analyzer, photos)
            batch = batch[owner] if isinstance(batch, Tensor) else [photos[i] for i in owner]
        else:
            geometry = analyzer.locate(batch)
            owner = torch.arange(len(photos))
        # locate() keeps a row per photo (found or not); keep the found rows only.
        keep = torch.nonzero(geometry.found.cpu()).flatten()
        if len(keep) < len(owner):
            geometry = geometry.select(keep.to(geometry.found.device))
            batch = batch[keep] if isinstance(batch, Tensor) else [batch[i] for i in keep]
            owner = owner[keep]
        yield start + owner.numpy(), batch, geometry
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))


def _central_faces(analyzer: FaceAnalyzer, photos: list[Tensor]) -> tuple[FaceGeometry, Tensor]:
    """The face nearest each photo's centre: ``(geometry, photo index [K])``, one row per photo
    with a face (K <= len(photos)), in photo order."""
    geometry, owner = analyzer.locate_faces(photos)
    assert geometry.detection_boxes is not None
    box = geometry.detection_boxes.cpu()
    middle = torch.tensor([[p.shape[-1] / 2, p.shape[-2] / 2] for p in photos])
    distance = ((box[:, :2] + box[:, 2:]) / 2 - middle[owner]).norm(dim=1)
    keep = [int(rows[distance[rows].argmin()]) for rows in
            (torch.nonzero(owner == i).flatten() for i in owner.unique().tolist())]
    index = torch.tensor(keep, dtype=torch.long)
    return geometry.select(index.to(geometry.found.device)), owner[index]


def fingerprint(models: Sequence[str], face: str) -> str:
    """What a cached result of the LFW pipeline depends on: facelatent's version, the hashes of
    the detector's, the landmarker's and ``models``' files, and the choice of face."""
    from facelatent import __version__
    from facelatent.weights import MANIFEST

    digest = hashlib.sha256(f"{__version__} {face}".encode())
    for name in ("yunet", "landmarks68", *models):
        for member in MANIFEST[MODELS[name].asset].members:
            digest.update(member.sha256.encode())
    return digest.hexdigest()


def _fingerprint(model: str, face: str) -> str:
    """What a cached embedding of ``model`` depends on (:func:`fingerprint`)."""
    return fingerprint((model,), face)


def _cached_embeddings(cache: Path | None, model: str, face: str,
                       wanted: list[str]) -> np.ndarray | None:
    """The cached ``[M, 128]`` rows of ``wanted`` for ``model``, or None when the cache lacks
    one of them or was made by other code or model files (it is then made again)."""
    path = None if cache is None else cache / f"lfw-{model}-{face}.npz"
    if path is None or not path.is_file():
        return None
    held = load_npz(path, format=CACHE_FORMAT, max_version=1, kind="an LFW embeddings cache")
    if str(held.get("fingerprint")) != _fingerprint(model, face):
        return None
    index = {p: i for i, p in enumerate(held["paths"].tolist())}
    if any(p not in index for p in wanted):
        return None
    return held["embeddings"][[index[p] for p in wanted]]


# -- the measurement ---------------------------------------------------------------------------

@dataclass(frozen=True)
class VerificationResult:
    """One recogniser on LFW: per held-out fold the threshold chosen on the other folds and
    the accuracy; the threshold chosen on all of them; mean cosines; failures."""

    model: str
    face: str                        # which face of a photo with several (embed_files)
    folds: tuple[int, ...]           # [F] fold numbers, ascending
    thresholds: tuple[float, ...]    # [F] chosen on the other folds
    accuracies: tuple[float, ...]    # [F] on the held-out fold, in [0, 1]
    threshold: float                 # chosen on every pair of `folds` (what the library keeps)
    genuine_mean: float              # mean cosine of same-person pairs with both faces found
    impostor_mean: float             # the same for different-person pairs
    pairs: int
    pairs_failed: int                # pairs with a face not found (counted wrong)
    accuracy_mean: float             # over the held-out folds
    accuracy_std: float              # over the held-out folds (population, ddof=0)
    images: int
    faces_not_found: int             # images in which no face was found
    seconds: float                   # embedding and protocol, shared detection included
    cached: bool                     # the embeddings came from the cache

    def as_dict(self) -> dict[str, object]:
        """Every field, for JSON."""
        return asdict(self)


def verify_lfw(lfw: str | Path, models: Sequence[str] = ("sface", "dlib"), *,
               folds: Sequence[int] | None = None, face: str = "central",
               cache: str | Path | None = None,
               analyzer: FaceAnalyzer | None = None, device: str = "cpu", batch_size: int = 32,
               progress: ProgressFn | None = None) -> dict[str, VerificationResult]:
    """LFW verification of each recogniser in ``models`` through facelatent's own pipeline.

    ``lfw``: the folder with ``pairs.txt`` and the images (:func:`read_lfw`). ``folds``: the
    1-based folds to use (default all ten); each is held out in turn against the others
    (:func:`cross_validate`). ``face``: which face of a photo with several (see
    :func:`embed_files`). ``cache``: a folder where ``lfw-<model>-<face>.npz`` keeps the
    embeddings, so a re-run embeds nothing; it is rewritten when facelatent or a model file
    changes. ``analyzer``: reuse loaded models (default: a new one on ``device``).
    ``progress(done, total)``: images embedded so far. Returns ``{model: VerificationResult}``.
    """
    pairs, images_dir, names = read_folds(lfw, folds)
    cache_dir = None if cache is None else Path(cache)
    start = time.perf_counter()
    embeddings = {m: _cached_embeddings(cache_dir, m, face, names) for m in models}
    todo = [m for m in models if embeddings[m] is None]
    if todo:
        made = embed_files([images_dir / n for n in names], todo, face=face,
                           batch_size=batch_size,
                           analyzer=analyzer or FaceAnalyzer(device, batch_size),
                           progress=progress)
        for m in todo:
            embeddings[m] = made[m]
            if cache_dir is not None:
                save_npz(cache_dir / f"lfw-{m}-{face}.npz", {
                    "paths": np.array(names), "embeddings": made[m],
                    "fingerprint": np.str_(_fingerprint(m, face))}, format=CACHE_FORMAT)
    seconds = time.perf_counter() - start
    return {m: verification_result(m, face, embeddings[m], names, pairs, seconds=seconds,
                                   cached=m not in todo)
            for m in models}


def verification_result(model: str, face: str, embeddings: np.ndarray, names: Sequence[str],
                        pairs: LfwPairs, *, seconds: float = 0.0,
                        cached: bool = False) -> VerificationResult:
    """LFW's protocol on unit ``embeddings`` ``[M, D]`` of the images ``names`` ``[M]`` (every
    image ``pairs`` names must be there): cosine per pair, thresholds chosen on the other folds
    (:func:`cross_validate`). A NaN row (no face found) makes its pairs wrong at every
    threshold: counted as failures, never dropped."""
    row = {n: i for i, n in enumerate(names)}
    missing = [n for n in dict.fromkeys([*pairs.first, *pairs.second]) if n not in row]
    if missing:
        raise ValueError(f"embeddings lack {len(missing)} images the pairs name (first: "
                         f"{missing[0]}); pass one row per image of pairs.images()")
    a = np.array([row[n] for n in pairs.first])
    b = np.array([row[n] for n in pairs.second])
    e = np.asarray(embeddings, dtype=np.float64)
    # Unit rows: the dot product is the cosine; NaN rows (no face) give NaN.
    cosines = (e[a] * e[b]).sum(axis=1)
    fold_ids, thresholds, accuracies = cross_validate(cosines, pairs.same, pairs.fold)
    threshold, _ = best_threshold(cosines, pairs.same)
    found = ~np.isnan(cosines)
    return VerificationResult(
        model=model, face=face, folds=tuple(int(k) for k in fold_ids),
        thresholds=tuple(map(float, thresholds)), accuracies=tuple(map(float, accuracies)),
        threshold=threshold, accuracy_mean=float(accuracies.mean()),
        accuracy_std=float(accuracies.std()),
        genuine_mean=_mean(cosines[found & pairs.same]),
        impostor_mean=_mean(cosines[found & ~pairs.same]),
        pairs=len(cosines), pairs_failed=int((~found).sum()), images=len(names),
        faces_not_found=int(np.isnan(e[:, 0]).sum()), seconds=seconds, cached=cached)


def _mean(values: np.ndarray) -> float:
    """The mean, NaN (without numpy's warning) when there is nothing to average."""
    return float(values.mean()) if values.size else float("nan")
