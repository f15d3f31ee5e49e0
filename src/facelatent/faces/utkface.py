"""The age and gender scorers on UTKFace's labelled photos (``facelatent verify utkface``).

1. Read ``labels.csv`` (``filename,age,gender,race``; UTKFace's codes: gender 0 male, 1 female;
   race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others) and find each photo in ``images/``.
2. Score every photo exactly as ``facelatent score`` does (:func:`score_files`: YuNet, the
   68-point landmarks, dlib chips, Cydral's age and gender nets, the largest face of a photo).
3. Compare with the labels. A photo without a face is a miss, never dropped: gender counts it
   wrong (so the accuracy is that of the whole pipeline), while age, which has no wrong value
   to count, is averaged over the faces found and the misses are reported beside it.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facelatent.faces.analysis import FaceAnalyzer
from facelatent.faces.files import score_files
from facelatent.faces.registry import MODELS
from facelatent.io import jsonable, load_npz, save_npz

__all__ = ["AGE_BANDS", "CACHE_FORMAT", "RACES", "GroupScore", "UtkfaceLabels",
           "UtkfaceResult", "evaluate_scores", "parse_labels", "read_utkface", "score_photos",
           "verify_utkface"]

CACHE_FORMAT = "facelatent.utkface_scores"
CACHE_NAME = "utkface-scores.npz"
COLUMNS = ("filename", "age", "gender", "race")
RACES = ("White", "Black", "Asian", "Indian", "Others")      # UTKFace's race codes 0-4
# (label, lowest age, highest age) in whole years; the last band is open.
AGE_BANDS = tuple((f"{lo}-{lo + 9}", lo, lo + 9) for lo in range(0, 70, 10)) + (("70+", 70, 999),)
ProgressFn = Callable[[int, int], None]     # (photos done, photos to do)


# -- labels.csv --------------------------------------------------------------------------------

@dataclass(frozen=True)
class UtkfaceLabels:
    """UTKFace's labels, one entry per photo, in file order."""

    files: tuple[str, ...]     # [N] file names inside images/
    age: np.ndarray            # [N] int, years
    gender: np.ndarray         # [N] int, 0 male, 1 female
    race: np.ndarray           # [N] int, 0-4 (RACES)

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, limit: int) -> UtkfaceLabels:
        """``limit`` photos with the ages in the proportions of the whole: rows sorted by (age,
        file name), then every (N / limit)-th taken (the ages' quantiles). Deterministic."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1 photo, got {limit}")
        if limit >= len(self):
            return self
        order = sorted(range(len(self)), key=lambda i: (int(self.age[i]), self.files[i]))
        keep = [order[int(k)] for k in np.linspace(0, len(self) - 1, limit).round()]
        return UtkfaceLabels(tuple(self.files[i] for i in keep), self.age[keep],
                             self.gender[keep], self.race[keep])


def parse_labels(path: str | Path) -> UtkfaceLabels:
    """Read ``labels.csv``: a header ``filename,age,gender,race``, then one row per photo with
    age in years (0-130), gender 0 (male) or 1 (female) and race 0-4. ValueError naming the file
    and line for anything else, and for a file name given twice."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(c.strip() for c in rows[0]) != COLUMNS:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise ValueError(f"{path}: line 1 must be the header {','.join(COLUMNS)}, got "
                         f"{found!r}; is this UTKFace's labels.csv?")
    ranges = {"age": (0, 130), "gender": (0, 1), "race": (0, len(RACES) - 1)}
    files: list[str] = []
    values: list[list[int]] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(COLUMNS):
            raise ValueError(f"{path}: line {number} must have {len(COLUMNS)} fields "
                             f"({','.join(COLUMNS)}), got {','.join(row)!r}")
        numbers = []
        for column, text in zip(COLUMNS[1:], row[1:]):
            lo, hi = ranges[column]
            if not text.strip().isdigit() or not lo <= int(text) <= hi:
                raise ValueError(f"{path}: line {number}: {column} must be an integer from {lo} "
                                 f"to {hi}, got {text!r}")
            numbers.append(int(text))
        files.append(row[0].strip())
        values.append(numbers)
    if len(set(files)) != len(files):
        twice = next(f for f in files if files.count(f) > 1)
        raise ValueError(f"{path}: {twice} is listed more than once")
    table = np.array(values, dtype=np.int64).reshape(-1, 3)
    return UtkfaceLabels(tuple(files), table[:, 0], table[:, 1], table[:, 2])


def read_utkface(folder: str | Path) -> tuple[UtkfaceLabels, Path]:
    """``(labels, image folder)`` of a UTKFace folder holding ``labels.csv`` and ``images/``.
    ValueError naming ``dir`` when either is missing or a labelled photo is not there."""
    root = Path(folder)
    if not (root / "labels.csv").is_file():
        raise ValueError(f"dir: no labels.csv in {root}; pass the UTKFace folder that holds "
                         "labels.csv and images/ (e.g. ../shared/datasets/utkface)")
    images = root / "images"
    if not images.is_dir():
        raise ValueError(f"dir: no images/ folder in {root}; the photos named in labels.csv "
                         "must lie in images/")
    labels = parse_labels(root / "labels.csv")
    missing = [f for f in labels.files if not (images / f).is_file()]
    if missing:
        raise ValueError(f"dir: {len(missing)} of the {len(labels)} photos in labels.csv are "
                         f"missing from {images} (first: {missing[0]}); pass a complete UTKFace")
    return labels, images


# -- scoring -----------------------------------------------------------------------------------

def score_photos(paths: Sequence[str | Path], *, analyzer: FaceAnalyzer | None = None,
                 chunk: int = 64, progress: ProgressFn | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(age [N], p_male [N])`` float64 of photo files, scored as ``facelatent score`` scores
    them (:func:`score_files`, the largest face); NaN where no face was found or the file could
    not be read. ``progress(done, total)`` after every ``chunk`` photos."""
    analyzer = analyzer or FaceAnalyzer()
    age = np.full(len(paths), np.nan)
    p_male = np.full(len(paths), np.nan)
    for start in range(0, len(paths), chunk):
        rows = score_files(paths[start:start + chunk], ("age", "gender"), analyzer=analyzer)
        for i, row in enumerate(rows, start=start):
            years, male = row.get("age"), row.get("gender")     # absent in a row with "error"
            if isinstance(years, float) and isinstance(male, float):
                age[i], p_male[i] = years, male
        if progress is not None:
            progress(min(start + chunk, len(paths)), len(paths))
    return age, p_male


def _fingerprint() -> str:
    """What cached scores depend on: facelatent's version and the model files' hashes."""
    from facelatent import __version__
    from facelatent.weights import MANIFEST

    digest = hashlib.sha256(__version__.encode())
    for asset in sorted({MODELS[m].asset for m in ("yunet", "landmarks68", "age", "gender")}):
        for member in MANIFEST[asset].members:
            digest.update(member.sha256.encode())
    return digest.hexdigest()


def _cached_scores(cache: Path | None, wanted: Sequence[str],
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached ``(age, p_male)`` of ``wanted``, or None when the cache lacks one of them or
    was made by other code or model files (the photos are then scored again)."""
    path = None if cache is None else cache / CACHE_NAME
    if path is None or not path.is_file():
        return None
    held = load_npz(path, format=CACHE_FORMAT, max_version=1, kind="a UTKFace scores cache")
    if str(held.get("fingerprint")) != _fingerprint():
        return None
    index = {f: i for i, f in enumerate(held["files"].tolist())}
    if any(f not in index for f in wanted):
        return None
    rows = [index[f] for f in wanted]
    return held["age"][rows], held["p_male"][rows]


# -- the measurement ---------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupScore:
    """One age band or race: how many photos, faces found, and the figure over them."""

    group: str
    photos: int
    found: int
    value: float        # age MAE in years (found faces) or gender accuracy in [0, 1]; NaN: none


@dataclass(frozen=True)
class UtkfaceResult:
    """Age and gender scorers against UTKFace's labels."""

    photos: int
    faces_found: int
    age_mae: float                       # years, mean |predicted - labelled| over found faces
    age_bias: float                      # years, mean (predicted - labelled) over found faces
    gender_accuracy: float               # in [0, 1], a photo without a face counted wrong
    gender_accuracy_found: float         # in [0, 1], over found faces only
    age_by_band: tuple[GroupScore, ...]  # MAE per AGE_BANDS band
    gender_by_race: tuple[GroupScore, ...]   # accuracy (misses wrong) per race code 0-4
    seconds: float                       # scoring (or reading the cache) and the metrics
    cached: bool                         # the scores came from the cache

    def as_dict(self) -> dict[str, object]:
        """Every field, for JSON (NaN as null)."""
        out: dict[str, object] = jsonable(asdict(self))
        return out


def evaluate_scores(labels: UtkfaceLabels, age: np.ndarray, p_male: np.ndarray, *,
                    seconds: float = 0.0, cached: bool = False) -> UtkfaceResult:
    """Compare scores with ``labels``. ``age [N]`` predicted years and ``p_male [N]`` in
    [0, 1], NaN in both where no face was found. Predicted male where ``p_male > 0.5``."""
    age = np.asarray(age, dtype=np.float64)
    p_male = np.asarray(p_male, dtype=np.float64)
    if age.shape != (len(labels),) or p_male.shape != (len(labels),):
        raise ValueError(f"age and p_male must have one value per photo ({len(labels)}), got "
                         f"shapes {age.shape} and {p_male.shape}")
    found = ~np.isnan(age) & ~np.isnan(p_male)
    error = age - labels.age
    # NaN > 0.5 is False: a miss is predicted female, so it is made wrong explicitly.
    right = ((p_male > 0.5) == (labels.gender == 0)) & found

    def mae(rows: np.ndarray) -> float:
        rows = rows & found
        return float(np.abs(error[rows]).mean()) if rows.any() else float("nan")

    bands = tuple(GroupScore(name, int(rows.sum()), int((rows & found).sum()), mae(rows))
                  for name, lo, hi in AGE_BANDS
                  for rows in [(labels.age >= lo) & (labels.age <= hi)])
    races = tuple(GroupScore(f"{code} {name}", int(rows.sum()), int((rows & found).sum()),
                             float(right[rows].mean()) if rows.any() else float("nan"))
                  for code, name in enumerate(RACES) for rows in [labels.race == code])
    return UtkfaceResult(
        photos=len(labels), faces_found=int(found.sum()), age_mae=mae(np.ones_like(found)),
        age_bias=float(error[found].mean()) if found.any() else float("nan"),
        gender_accuracy=float(right.mean()) if len(labels) else float("nan"),
        gender_accuracy_found=float(right[found].mean()) if found.any() else float("nan"),
        age_by_band=bands, gender_by_race=races, seconds=seconds, cached=cached)


def verify_utkface(folder: str | Path, *, limit: int | None = None,
                   cache: str | Path | None = None, analyzer: FaceAnalyzer | None = None,
                   device: str = "cpu", batch_size: int = 32,
                   progress: ProgressFn | None = None) -> UtkfaceResult:
    """Age MAE and gender accuracy of the scorers on a UTKFace folder (:func:`read_utkface`).

    ``limit``: score only that many photos, their ages in the proportions of the whole
    (:meth:`UtkfaceLabels.subset`; default all). ``cache``: a folder where
    :data:`CACHE_NAME` keeps the scores, so a re-run scores nothing; it is rewritten when
    facelatent or a model file changes. ``analyzer``: reuse loaded models (default: a new one
    on ``device`` with ``batch_size``). ``progress(done, total)``: photos scored so far.
    """
    labels, images = read_utkface(folder)
    if limit is not None:
        labels = labels.subset(limit)
    cache_dir = None if cache is None else Path(cache)
    start = time.perf_counter()
    held = _cached_scores(cache_dir, labels.files)
    if held is None:
        age, p_male = score_photos([images / f for f in labels.files],
                                   analyzer=analyzer or FaceAnalyzer(device, batch_size),
                                   progress=progress)
        if cache_dir is not None:
            save_npz(cache_dir / CACHE_NAME, {
                "files": np.array(labels.files), "age": age, "p_male": p_male,
                "fingerprint": np.str_(_fingerprint())}, format=CACHE_FORMAT)
    else:
        age, p_male = held
    return evaluate_scores(labels, age, p_male, seconds=time.perf_counter() - start,
                           cached=held is not None)
