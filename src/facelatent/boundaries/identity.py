"""Identity boundaries, the container and its file: one hyperplane per reference face, keyed by
the reference's seed (ExFaceGAN, Boutros et al., IJCB 2023).

`latent @ normal + intercept > 0` is the side of faces like the reference: normals point
towards the same identity, in raw latent units of the space they were fitted in. ExFaceGAN's
saved normals point away; here sampling adds them (`facelatent.datasets.sampling`).

The file is one compressed `.npz` written through `facelatent.io` (atomic, with the members
`format` = "facelatent.identity-boundaries" and `format_version` = 1):

    seeds         int64 [R]       unique reference seeds
    normals       float32 [R, D]  unit length
    intercepts    float32 [R]
    latents       float32 [R, D]  each reference's own latent
    sigma         float32 [R]     optional: std of the store's latents along each normal (raw
                                  units); files written before it existed load without it
    space, model  str             "w" or "z"; the recogniser that labelled the candidates
    provenance    JSON object     store, command, solver, labels, ...
    metric.<name> [R]             one array per name of `METRICS`

`identity fit` writes a folder: `boundaries.npz` (`BOUNDARIES_FILE`) and `summary.json`.
`IdentityBoundaries.load` and `save` take the folder or the file (`boundaries_path`). The fitting
is `facelatent.boundaries.identity_fit`; `ensure_sigma` fills `sigma` of an older file from the
store its provenance names.

`sigma` is the unit of offsets along a normal: how far the store's own samples spread along
it. In MobileStyleGAN's W that is about 0.2 raw units, so a raw offset means nothing until it
is read against it; `facelatent dataset build --max-off` counts in sigma by default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.errors import FileFormatError
from facelatent.io import jsonable, load_npz, save_npz, write_json

__all__ = ["BOUNDARIES_FILE", "FORMAT", "METRICS", "SUMMARY_FILE", "IdentityBoundaries",
           "MissingSpreadError", "boundaries_path", "ensure_sigma", "latent_covariance",
           "spread_along", "store_covariance"]

FORMAT = "facelatent.identity-boundaries"
FORMAT_VERSION = 1
BOUNDARIES_FILE = "boundaries.npz"     # the file in a folder written by `identity fit`
SUMMARY_FILE = "summary.json"          # beside it: counts and accuracies, for people
METRICS = ("train_accuracy", "val_accuracy", "n_same", "n_different", "reference_distance")
UNIT_TOLERANCE = 1e-4
_KIND = "an identity boundary file (from `facelatent identity fit`)"
_REQUIRED = ("seeds", "normals", "intercepts", "latents", "space", "model", "provenance")
_OPTIONAL = ("sigma",)


def boundaries_path(path: str | os.PathLike[str]) -> Path:
    """The `.npz` of an identity fit: ``path`` itself when it ends in `.npz`, else the folder's
    `boundaries.npz`."""
    path = Path(path)
    return path if path.suffix == ".npz" else path / BOUNDARIES_FILE


@dataclass(eq=False)   # arrays: compare fields explicitly (np.array_equal), not with ==
class IdentityBoundaries:
    """One identity boundary per reference seed: `latent @ normal + intercept > 0` is the side of
    faces like the reference (normals point towards it; ExFaceGAN's point away).

    Arrays are row-aligned and keyed by `seeds` (never by position: use `index(seed)`,
    `self[seed]` or `select(seeds)`). `metrics` maps each name of `METRICS` to an array [R].
    """

    seeds: np.ndarray           # int64 [R], unique reference seeds
    normals: np.ndarray         # float32 [R, D], unit length, towards the same-identity side
    intercepts: np.ndarray      # float32 [R], raw latent units
    latents: np.ndarray         # float32 [R, D], each reference's own latent
    space: str = "w"            # "w" or "z"
    model: str = "sface"        # the face recogniser that labelled the candidates
    metrics: dict[str, np.ndarray] = field(default_factory=dict)   # name -> [R]
    provenance: dict[str, Any] = field(default_factory=dict)       # store, command, solver, ...
    sigma: np.ndarray | None = None   # float32 [R], store's std along each normal; None = unknown

    def __post_init__(self) -> None:
        seeds = np.asarray(self.seeds)
        if seeds.ndim != 1 or seeds.dtype.kind not in "iu":
            raise ValueError(f"seeds must be a 1-D integer array, got dtype {seeds.dtype} and "
                             f"shape {list(seeds.shape)}")
        r = len(seeds)
        if len(np.unique(seeds)) != r:
            raise ValueError("seeds must be unique: each reference seed keys one boundary")
        normals = np.asarray(self.normals, dtype=np.float64)
        if normals.ndim != 2 or len(normals) != r:
            raise ValueError(f"normals must have shape [R, D] with R = {r} seeds, got "
                             f"{list(normals.shape)}")
        latents = np.asarray(self.latents)
        if latents.shape != normals.shape:
            raise ValueError(f"latents must have the shape of normals {list(normals.shape)}, got "
                             f"{list(latents.shape)}")
        intercepts = np.asarray(self.intercepts)
        if intercepts.shape != (r,):
            raise ValueError(f"intercepts must have shape [{r}], got {list(intercepts.shape)}")
        for name, array in (("normals", normals), ("intercepts", intercepts), ("latents", latents)):
            if not np.isfinite(array).all():
                raise ValueError(f"{name} contain NaN or infinite values")
        norms = np.linalg.norm(normals, axis=1)
        if r and np.abs(norms - 1.0).max() > UNIT_TOLERANCE:
            worst = int(np.argmax(np.abs(norms - 1.0)))
            raise ValueError(f"normals must have unit length; seed {int(seeds[worst])} has norm "
                             f"{norms[worst]:.6g}")
        if self.space not in ("w", "z"):
            raise ValueError(f"space must be 'w' or 'z', got {self.space!r}")
        metrics = {}
        for name, values in dict(self.metrics).items():
            values = np.asarray(values)
            if values.shape != (r,):
                raise ValueError(f"metric {name!r} must have shape [{r}], got {list(values.shape)}")
            metrics[str(name)] = values
        if self.sigma is not None:
            sigma = np.asarray(self.sigma, dtype=np.float64)
            if sigma.shape != (r,) or not (np.isfinite(sigma).all() and (sigma > 0).all()):
                raise ValueError(f"sigma must hold {r} positive finite spreads (one per "
                                 f"reference), got shape {list(sigma.shape)}")
            self.sigma = sigma.astype(np.float32)
        self.seeds = seeds.astype(np.int64)
        self.normals = (normals / np.maximum(norms, 1e-12)[:, None]).astype(np.float32)
        self.intercepts = intercepts.astype(np.float32)
        self.latents = latents.astype(np.float32)
        self.model = str(self.model)
        self.metrics = metrics
        self.provenance = dict(self.provenance)
        self._rows = {int(s): i for i, s in enumerate(self.seeds)}

    # --- lookup ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.seeds)

    def __repr__(self) -> str:
        return (f"IdentityBoundaries({len(self)} references, dim={self.dim}, space={self.space!r}, "
                f"model={self.model!r}, solver={self.provenance.get('solver')!r})")

    @property
    def dim(self) -> int:
        """Size of one latent vector."""
        return int(self.normals.shape[1])

    def index(self, seed: int) -> int:
        """Row of reference `seed`; KeyError naming the seed if there is no boundary for it."""
        try:
            return self._rows[int(seed)]
        except KeyError:
            span = (f"seeds {int(self.seeds.min())}..{int(self.seeds.max())}" if len(self)
                    else "none")
            raise KeyError(f"no identity boundary for seed {int(seed)}; this set holds {len(self)} "
                           f"references ({span})") from None

    def __getitem__(self, seed: int) -> tuple[np.ndarray, float, np.ndarray]:
        """`(normal [D], intercept, latent [D])` of reference `seed`."""
        i = self.index(seed)
        return self.normals[i], float(self.intercepts[i]), self.latents[i]

    def select(self, seeds: Sequence[int] | np.ndarray) -> IdentityBoundaries:
        """The boundaries of `seeds`, in that order (KeyError for a seed that has none)."""
        rows = np.array([self.index(s) for s in np.asarray(seeds).reshape(-1)], dtype=np.int64)
        return IdentityBoundaries(self.seeds[rows], self.normals[rows], self.intercepts[rows],
                                  self.latents[rows], self.space, self.model,
                                  {k: v[rows] for k, v in self.metrics.items()}, self.provenance,
                                  None if self.sigma is None else self.sigma[rows])

    def summary(self) -> dict[str, Any]:
        """Counts, space, labelling model, validation accuracy (median, mean, min, max), the
        spread along the normals (median, min, max; empty when unknown) and the fit's time, as
        plain JSON values."""
        val = np.asarray(self.metrics.get("val_accuracy", []), dtype=np.float64)
        stats = ({"median": float(np.median(val)), "mean": float(val.mean()),
                  "min": float(val.min()), "max": float(val.max())} if val.size else {})
        sigma = ({} if self.sigma is None else
                 {"median": float(np.median(self.sigma)), "min": float(self.sigma.min()),
                  "max": float(self.sigma.max())})
        return {"references": len(self), "space": self.space, "label_model": self.model,
                "solver": self.provenance.get("solver"), "val_accuracy": stats, "sigma": sigma,
                "fit_seconds": float(self.provenance.get("fit_seconds", 0.0))}

    # --- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the compressed `.npz` (module docstring); returns its path. ``path`` is the
        file, or (without the `.npz` suffix) a folder that gets `boundaries.npz` and
        `summary.json`. 19 MB for 5,000 boundaries in W."""
        target = boundaries_path(path)
        arrays: dict[str, np.ndarray] = {
            "seeds": self.seeds, "normals": self.normals, "intercepts": self.intercepts,
            "latents": self.latents, "space": np.str_(self.space), "model": np.str_(self.model),
            "provenance": np.str_(json.dumps(jsonable(self.provenance), sort_keys=True)),
        }
        arrays.update({f"metric.{k}": v for k, v in self.metrics.items()})
        if self.sigma is not None:
            arrays["sigma"] = self.sigma
        save_npz(target, arrays, format=FORMAT, version=FORMAT_VERSION, compressed=True)
        if target != Path(path):
            write_json(target.parent / SUMMARY_FILE,
                       {"path": str(target), **self.summary(), "bytes": target.stat().st_size})
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IdentityBoundaries:
        """Read what `save` wrote: the `.npz`, or the folder holding `boundaries.npz`.
        FileNotFoundError if there is none; `FileFormatError` (a ValueError) naming the file for
        anything else: not an archive, truncated, other keys, wrong shapes."""
        path = boundaries_path(path)
        if not path.is_file() and not path.is_dir():
            raise FileNotFoundError(f"no identity boundary file at {path}; fit one with "
                                    "`facelatent identity fit` (or fit_identity_boundaries)")
        values = load_npz(path, format=FORMAT, max_version=FORMAT_VERSION, kind=_KIND)
        missing = [k for k in _REQUIRED if k not in values]
        unknown = sorted(k for k in values if k not in _REQUIRED + _OPTIONAL
                         and not k.startswith("metric."))
        if missing or unknown:
            raise FileFormatError(f"{path}: missing keys {missing}, unknown keys {unknown}")
        try:
            provenance = json.loads(str(values["provenance"]))
            metrics = {k[len("metric."):]: v for k, v in values.items() if k.startswith("metric.")}
            return cls(values["seeds"], values["normals"], values["intercepts"], values["latents"],
                       str(values["space"]), str(values["model"]), metrics, provenance,
                       values.get("sigma"))
        except (ValueError, TypeError) as exc:   # json.JSONDecodeError is a ValueError
            raise FileFormatError(f"{path}: {exc}") from None


# --- the spread along a normal ---------------------------------------------------------------
def spread_along(covariance: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Standard deviation of samples along each direction -> float64 [K].

    covariance [D, D]: the samples' covariance (population, ddof 0); directions [K, D] or [D],
    renormalised here. `sqrt(d^T C d)` equals `np.std(latents @ d)` without the [N, K]
    projections, so the spread of thousands of directions costs one [K, D] x [D, D] product.
    """
    c = np.asarray(covariance, dtype=np.float64)
    d = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    if c.ndim != 2 or c.shape[0] != c.shape[1] or d.shape[1] != c.shape[0]:
        raise ValueError(f"expected covariance [D, D] and directions [K, D], got "
                         f"{list(c.shape)} and {list(d.shape)}")
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return np.sqrt(np.maximum(np.einsum("kd,de,ke->k", d, c, d), 0.0))


class MissingSpreadError(ValueError):
    """Identity boundaries without `sigma` whose store is gone: offsets in sigma cannot be
    resolved."""


def latent_covariance(latents: np.ndarray) -> np.ndarray:
    """Population covariance (ddof 0) [D, D] float64 of latents [N, D]: with
    `spread_along`, the standard deviation of the samples along any direction."""
    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"latents must have shape [N, D] with N >= 2, got {list(x.shape)}")
    xc = x - x.mean(axis=0)
    return (xc.T @ xc) / len(x)


def store_covariance(store: Any, space: str) -> np.ndarray:
    """`latent_covariance` of a `LatentStore` (or its path) in `space` ("w" or "z")."""
    from facelatent.boundaries.sources import open_store, store_latents

    return latent_covariance(store_latents(open_store(store), space))


def ensure_sigma(boundaries: IdentityBoundaries) -> IdentityBoundaries:
    """`boundaries` with `sigma` [R]: as they are when they hold it (fitted since it exists),
    else computed from the store named in their provenance (files written before it).

    MissingSpreadError (a ValueError) in one line when they hold none and that store is not
    there: offsets can then be given in raw latent units, or the boundaries refitted.
    """
    if boundaries.sigma is not None:
        return boundaries
    store = (boundaries.provenance or {}).get("store")
    if not store or not Path(str(store)).exists():
        where = f"its store {store} is not there" if store else "they name no store"
        raise MissingSpreadError(
            f"these identity boundaries predate the stored spread (sigma) and {where}; pass "
            "--offset-units raw (offsets in latent units) or refit them with `facelatent "
            "identity fit`")
    sigma = spread_along(store_covariance(store, boundaries.space), boundaries.normals)
    return IdentityBoundaries(boundaries.seeds, boundaries.normals, boundaries.intercepts,
                              boundaries.latents, boundaries.space, boundaries.model,
                              boundaries.metrics,
                              {**boundaries.provenance, "sigma_source": f"computed from {store}"},
                              sigma)
