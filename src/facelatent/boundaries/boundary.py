"""The boundary file: a unit normal, an intercept, and where they came from.

A boundary is the hyperplane `normal . x + intercept = 0` in one latent space; the positive side
is the high-attribute side, and `normal . x + intercept` is the signed Euclidean distance of `x`
to the hyperplane (the normal has unit length). Files are `.npz` archives written through
`facelatent.io` (atomic, with the members `format` = "facelatent.boundary" and `format_version`
= 1; files from before the header are read too) and six keys:

    normal      float32 [dim] (Z, W) or [num_ws, dim] (W+, layer-wise; unit Frobenius norm)
    intercept   float64 scalar
    space       "z", "w" or "wp"
    attribute   the attribute's name, e.g. "smile"
    metrics     JSON object (accuracies, eigenvalues, ...)
    provenance  JSON object (command, store, solver, seed, versions, timestamps, ...)

`load_boundary` also reads InterFaceGAN's published `.npy` files: a `(1, 512)` unit normal and
nothing else, so the intercept is unknown (0, with `provenance["intercept_known"] = False`).
The space and attribute come from known tokens of the file name (`parse_boundary_name`), never
from its first dot: `stylegan_ffhq_age_w_boundary.npy` is "age" in "w", InterFaceGAN's own
`pggan_*` and `stylegan_*` names without a space token are "z" (its convention), and
`age_r0.02_w.npy` is "age" in "w". A name that says no space (`boundary.npy`, `age.npy`) needs
the space from the caller (`space=`, `--space`): guessing it would edit in the wrong space.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.errors import FileFormatError
from facelatent.io import check_header, jsonable, load_npy, load_npz, save_npz

SPACES = ("z", "w", "wp")
# Attribute names a boundary file name may hold: InterFaceGAN's and facelatent's scores
# (tests/test_boundaries_files.py checks that every facelatent attribute is here).
KNOWN_ATTRIBUTES = (
    "pose", "smile", "age", "gender", "eyeglasses", "quality",                  # InterFaceGAN
    "gender_logit", "smile_logit", "expression_neutral", "expression_happy", "expression_sad",
    "expression_angry", "expression_fearful", "expression_disgusted", "expression_surprised",
    "yaw", "pitch", "roll", "mouth_open", "eyes_open",
)
# Generators whose InterFaceGAN file names carry no space token for Z (`stylegan_ffhq_age_boundary`).
INTERFACEGAN_MODELS = ("pggan", "stylegan")
NPZ_KEYS = ("normal", "intercept", "space", "attribute", "metrics", "provenance")
FORMAT = "facelatent.boundary"
FORMAT_VERSION = 1
KIND = "a boundary file (.npz from facelatent or an InterFaceGAN .npy)"
UNIT_TOLERANCE = 1e-4      # |norm - 1| above this is an error (constructor) or a warning (.npy load)
MAX_ELEMENTS = 1_000_000   # a normal is num_ws x w_dim at most (18 x 512); refuse more unread
NPY_MAGIC = b"\x93NUMPY"


@dataclass
class Boundary:
    """A linear attribute boundary `normal . x + intercept = 0` in latent space `space`.

    `normal` is float32, unit length, `[dim]` for Z and W or `[num_ws, dim]` for W+ ("wp",
    unit Frobenius norm). The constructor checks, and never rescales by more than rounding:
    use `Boundary.from_direction` for a vector of any length.
    """

    normal: np.ndarray
    intercept: float = 0.0
    space: str = "w"
    attribute: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        normal = np.asarray(self.normal)
        if normal.dtype.kind not in "fiu":
            raise ValueError(f"normal must be a numeric array, got dtype {normal.dtype}")
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.space == "wp" and normal.ndim != 2:
            raise ValueError(f"a W+ ('wp') normal must have shape [num_ws, dim], got {list(normal.shape)}")
        if self.space != "wp" and normal.ndim != 1:
            raise ValueError(f"a {self.space!r}-space normal must have shape [dim], got "
                             f"{list(normal.shape)}; layer-wise normals use space='wp'")
        if normal.size == 0:
            raise ValueError("normal is empty")
        if not np.isfinite(normal).all():
            raise ValueError("normal contains NaN or infinite values")
        norm = float(np.linalg.norm(normal.astype(np.float64)))
        if norm == 0.0:
            raise ValueError("normal is the zero vector; a boundary needs a direction")
        if abs(norm - 1.0) > UNIT_TOLERANCE:
            raise ValueError(f"normal must have unit length, got norm {norm:.6g}; use "
                             "Boundary.from_direction(vector, ...) to normalise (it records the norm)")
        self.normal = (normal.astype(np.float64) / norm).astype(np.float32)
        if not math.isfinite(float(self.intercept)):
            raise ValueError(f"intercept must be a finite number, got {self.intercept}")
        self.intercept = float(self.intercept)
        self.attribute = str(self.attribute)
        self.metrics = dict(self.metrics)
        self.provenance = dict(self.provenance)

    @classmethod
    def from_direction(cls, direction: np.ndarray, intercept: float = 0.0, **kwargs: Any) -> Boundary:
        """A boundary from a direction of any non-zero length.

        The direction is scaled to unit length and the intercept by the same factor (so the
        hyperplane is unchanged); the original norm goes to `provenance["original_norm"]`.
        """
        direction = np.asarray(direction, dtype=np.float64)
        if not np.isfinite(direction).all():
            raise ValueError("direction contains NaN or infinite values")
        norm = float(np.linalg.norm(direction))
        if norm == 0.0:
            raise ValueError("direction is the zero vector; a boundary needs a direction")
        provenance = dict(kwargs.pop("provenance", {}))
        provenance.setdefault("original_norm", norm)
        return cls(direction / norm, float(intercept) / norm, provenance=provenance, **kwargs)

    @property
    def dim(self) -> int:
        """Size of one latent vector (the last axis of `normal`)."""
        return int(self.normal.shape[-1])

    def distance(self, latents: np.ndarray) -> np.ndarray:
        """Signed distance `normal . x + intercept` of latents `[N, *normal.shape]` -> `[N]`."""
        x = np.asarray(latents, dtype=np.float64)
        if x.shape[1:] != self.normal.shape:
            raise ValueError(f"latents must have shape [N, {', '.join(map(str, self.normal.shape))}]"
                             f" for this boundary, got {list(x.shape)}")
        return x.reshape(len(x), -1) @ self.normal.reshape(-1).astype(np.float64) + self.intercept

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the `.npz` file (atomically, with the format header); returns the path."""
        arrays = {
            "normal": self.normal.astype(np.float32),
            "intercept": np.float64(self.intercept),
            "space": np.str_(self.space),
            "attribute": np.str_(self.attribute),
            "metrics": np.str_(json.dumps(jsonable(self.metrics), sort_keys=True)),
            "provenance": np.str_(json.dumps(jsonable(self.provenance), sort_keys=True)),
        }
        return save_npz(path, arrays, format=FORMAT, version=FORMAT_VERSION)


def load_boundary(path: str | os.PathLike[str], space: str | None = None) -> Boundary:
    """Read one of our `.npz` boundary files (with or without the format header), or an
    InterFaceGAN `.npy` normal.

    `space` ("z", "w" or "wp") is the space of a file that does not say one: a `.npy` whose
    name holds no space token (`parse_boundary_name`) or an old `.npz` without a `space` key.
    What the file says wins (`editing.load_edit_boundary` overrides it on request). A file whose
    space can be told neither way is a `FileFormatError` asking for it.

    Every way a file can be wrong (missing, a folder, empty, truncated, text, pickled, other
    keys, a bad shape, NaN or zero normals) is one `FileFormatError` (a ValueError) naming the
    file, or FileNotFoundError. A `.npy` normal whose norm is off by more than 1e-4 is
    normalised with a warning; its norm is always kept in `provenance["original_norm"]`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no boundary file at {path}")
    if space is not None and space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if _head(path) == NPY_MAGIC:
        return _from_npy(path, load_npy(path, max_elements=MAX_ELEMENTS, kind=KIND), space)
    values = load_npz(path, max_elements=MAX_ELEMENTS, kind=KIND)
    if "format" in values or "format_version" in values:
        version = values.pop("format_version", None)
        check_header(path, str(values.pop("format", "")), None if version is None else
                     version.item(), FORMAT, FORMAT_VERSION, KIND)
    unknown = sorted(set(values) - set(NPZ_KEYS))
    if unknown:
        raise FileFormatError(f"{path}: unknown keys {unknown} in a boundary file; expected "
                              f"{list(NPZ_KEYS)}")
    missing = [k for k in ("normal", "intercept") if k not in values]
    if missing:
        raise FileFormatError(f"{path}: a boundary file needs the keys {missing}")
    normal = values["normal"]
    intercept = values["intercept"]
    if intercept.size != 1 or intercept.dtype.kind not in "fiu":
        raise FileFormatError(f"{path}: intercept must be a number, got dtype {intercept.dtype} "
                              f"and shape {list(intercept.shape)}")
    guess_space, guess_attribute, _ = parse_boundary_name(path.name)
    if "space" in values:
        space = str(values["space"])
    elif normal.ndim == 2:
        space = "wp"
    else:
        space = guess_space or space
    try:
        boundary = Boundary(
            normal=normal,
            intercept=float(intercept.reshape(())),
            space=space or "w",           # checked below, once the contents are known to be sound
            attribute=str(values["attribute"]) if "attribute" in values else guess_attribute,
            metrics=_json_field(path, values, "metrics"),
            provenance=_json_field(path, values, "provenance"),
        )
    except FileFormatError:
        raise
    except ValueError as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    _required_space(path, space)
    return boundary


def _head(path: Path) -> bytes:
    """The first bytes of ``path`` (b"" for a folder or an unreadable file: `load_npz` then
    says what is wrong)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(NPY_MAGIC))
    except OSError:
        return b""


def _from_npy(path: Path, array: np.ndarray, space: str | None = None) -> Boundary:
    """An InterFaceGAN normal: `(1, dim)` or `(dim,)`; `(num_ws, dim)` with num_ws > 1 is W+."""
    if array.dtype.kind != "f":
        raise FileFormatError(f"{path}: a boundary .npy must hold floats, got dtype {array.dtype}")
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (1, 2) or array.size == 0:
        raise FileFormatError(f"{path}: a boundary .npy must have shape (1, dim), (dim,) or "
                              f"(num_ws, dim), got {array.shape}")
    if not np.isfinite(array).all():
        raise FileFormatError(f"{path}: the normal contains NaN or infinite values")
    norm = float(np.linalg.norm(array.astype(np.float64)))
    if norm == 0.0:
        raise FileFormatError(f"{path}: the normal is the zero vector")
    named_space, attribute, extra = parse_boundary_name(path.name)
    if array.ndim == 2:
        space = "wp"
    else:
        space = _required_space(path, named_space or space)
    if abs(norm - 1.0) > UNIT_TOLERANCE:
        warnings.warn(f"{path}: the normal has norm {norm:.6g}, not 1; normalising it "
                      "(the original norm is kept in provenance['original_norm'])", stacklevel=3)
    provenance = {"source": str(path), "format": "interfacegan-npy", "intercept_known": False,
                  "original_norm": norm, **extra}
    return Boundary(array.astype(np.float64) / norm, 0.0, space=space, attribute=attribute,
                    provenance=provenance)


def _required_space(path: Path, space: str | None) -> str:
    if space is None:
        raise FileFormatError(
            f"{path}: cannot tell the latent space from the file name (no _z, _w or _wp token, "
            "and not one of InterFaceGAN's pggan_/stylegan_ files); give it with --space z|w|wp "
            "(space= in Python) or rename the file like age_w.npy")
    return space


def parse_boundary_name(name: str) -> tuple[str | None, str, dict[str, Any]]:
    """(space or None, attribute, extra provenance) read from a boundary file's name.

    Only the file extension is cut (`age_r0.02_w.npy` keeps its dot); a trailing `_boundary` and
    everything after `_c_` (the conditions, InterFaceGAN's `{model}_{attr}_c_{cond}_..`) are set
    apart. The space is the last token that is exactly `z`, `w` or `wp`; without one, InterFaceGAN's
    own names (first token `pggan` or `stylegan`) are "z", and any other name None (the caller
    must say). The attribute is the longest run of tokens that is a known attribute
    (:data:`KNOWN_ATTRIBUTES`), else the token before the space token in an InterFaceGAN name,
    else the name's remaining tokens joined by `_`. `extra` holds `model` (the tokens before
    the attribute in an InterFaceGAN name) and `conditions`.

    >>> parse_boundary_name("stylegan_ffhq_age_w_boundary.npy")[:2]
    ('w', 'age')
    >>> parse_boundary_name("age_r0.02_w.npy")[:2]
    ('w', 'age')
    >>> parse_boundary_name("boundary.npy")[0] is None
    True
    """
    stem = name
    for ext in (".npy", ".npz"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    if stem.endswith("_boundary"):
        stem = stem[: -len("_boundary")]
    elif stem.startswith("boundary_"):
        stem = stem[len("boundary_"):]
    extra: dict[str, Any] = {}
    head, _, conds = stem.partition("_c_")
    if conds:
        extra["conditions"] = [c for c in conds.split("_") if c]
    tokens = [t for t in head.split("_") if t]
    interfacegan = bool(tokens) and tokens[0].lower() in INTERFACEGAN_MODELS
    space = None
    for i in range(len(tokens) - 1, -1, -1):
        if tokens[i].lower() in SPACES:
            space = tokens.pop(i).lower()
            break
    if space is None and interfacegan:
        space = "z"
    lowered = [t.lower() for t in tokens]
    best: tuple[int, int] | None = None
    for i in range(len(lowered)):
        for j in range(len(lowered), i, -1):
            if "_".join(lowered[i:j]) in KNOWN_ATTRIBUTES:
                if best is None or j - i > best[1] - best[0]:
                    best = (i, j)
                break
    if best is not None:
        attribute = "_".join(lowered[best[0]:best[1]])
        start = best[0]
    elif interfacegan and len(tokens) > 1:
        attribute, start = tokens[-1], len(tokens) - 1
    else:
        attribute, start = "_".join(tokens) or "boundary", 0
    if interfacegan and start > 0:
        extra["model"] = "_".join(tokens[:start])
    return space, attribute, extra


def _json_field(path: Path, values: dict[str, np.ndarray], key: str) -> dict[str, Any]:
    if key not in values:
        return {}
    try:
        parsed = json.loads(str(values[key]))
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}: {key} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise FileFormatError(f"{path}: {key} must be a JSON object, got {type(parsed).__name__}")
    return parsed
