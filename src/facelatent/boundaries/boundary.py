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
nothing else, so the intercept is unknown (0, with `provenance["intercept_known"] = False`), and
the space and attribute are guessed from the file name (`stylegan_ffhq_age_w_boundary.npy` is
"age" in "w"; a name without a `w` token is "z").
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


def load_boundary(path: str | os.PathLike[str]) -> Boundary:
    """Read one of our `.npz` boundary files (with or without the format header), or an
    InterFaceGAN `.npy` normal.

    Every way a file can be wrong (missing, a folder, empty, truncated, text, pickled, other
    keys, a bad shape, NaN or zero normals) is one `FileFormatError` (a ValueError) naming the
    file, or FileNotFoundError. A `.npy` normal whose norm is off by more than 1e-4 is
    normalised with a warning; its norm is always kept in `provenance["original_norm"]`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no boundary file at {path}")
    if _head(path) == NPY_MAGIC:
        return _from_npy(path, load_npy(path, max_elements=MAX_ELEMENTS, kind=KIND))
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
    guess_space, guess_attribute, _ = _parse_name(path)
    space = str(values["space"]) if "space" in values else ("wp" if normal.ndim == 2 else guess_space)
    try:
        return Boundary(
            normal=normal,
            intercept=float(intercept.reshape(())),
            space=space,
            attribute=str(values["attribute"]) if "attribute" in values else guess_attribute,
            metrics=_json_field(path, values, "metrics"),
            provenance=_json_field(path, values, "provenance"),
        )
    except FileFormatError:
        raise
    except ValueError as exc:
        raise FileFormatError(f"{path}: {exc}") from None


def _head(path: Path) -> bytes:
    """The first bytes of ``path`` (b"" for a folder or an unreadable file: `load_npz` then
    says what is wrong)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(NPY_MAGIC))
    except OSError:
        return b""


def _from_npy(path: Path, array: np.ndarray) -> Boundary:
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
    if abs(norm - 1.0) > UNIT_TOLERANCE:
        warnings.warn(f"{path}: the normal has norm {norm:.6g}, not 1; normalising it "
                      "(the original norm is kept in provenance['original_norm'])", stacklevel=3)
    space, attribute, extra = _parse_name(path)
    if array.ndim == 2:
        space = "wp"
    provenance = {"source": str(path), "format": "interfacegan-npy", "intercept_known": False,
                  "original_norm": norm, **extra}
    return Boundary(array.astype(np.float64) / norm, 0.0, space=space, attribute=attribute,
                    provenance=provenance)


def _parse_name(path: Path) -> tuple[str, str, dict[str, Any]]:
    """Space, attribute and extra provenance guessed from an InterFaceGAN-style file name.

    `{model}_{attr}[_w][_c_{cond}...]_boundary` -> ("w" or "z", attr, {model, conditions}).
    """
    stem = path.name.split(".")[0]
    if stem.endswith("_boundary"):
        stem = stem[: -len("_boundary")]
    extra: dict[str, Any] = {}
    head, _, conds = stem.partition("_c_")
    if conds:
        extra["conditions"] = conds.split("_")
    tokens = head.split("_")
    space = "z"
    for tag in ("wp", "w", "z"):
        if len(tokens) > 1 and tokens[-1] == tag:
            space = tag
            tokens = tokens[:-1]
            break
    if len(tokens) > 1:
        extra["model"] = "_".join(tokens[:-1])
    return space, tokens[-1], extra


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
