"""Identity boundaries: one hyperplane per reference face that separates the latents of faces
like it from the rest, and sampling along it (ExFaceGAN, Boutros et al., IJCB 2023).

The protocol, as `fit_identity_boundaries` runs it on the samples of a `LatentStore`:

1. Candidates: every sample whose identity embedding is finite (rows with no face hold NaN and
   are dropped), sorted by seed, so the result never depends on the order of the rows.
2. Labels (`identity_labels`): the cosine similarity of each reference's embedding to every
   candidate, all references in one matrix product. "median": the top half of the candidates
   is "same" (1), the bottom half "different" (0), as in the paper (with an odd count the
   middle candidate is left out, -1). "quantile": the top and bottom `quantile` fractions,
   the middle unused (-1). A reference is never a candidate of its own boundary.
3. Split: per reference, each class is shuffled by a generator seeded with
   `(seed, reference seed)`; the first `split` fraction trains, the rest validates. So a
   reference's boundary does not depend on which other references are fitted with it.
4. Solver (below); the normal is scaled to unit length, the intercept with it.
5. Metrics per reference: train and validation accuracy, the number of same and different
   labels, and `reference_distance`, the reference's own signed distance to its boundary
   (positive = on the same side, where it should be).

Sign: normals point TOWARDS the same-identity side, and `latent @ normal + intercept > 0` is
that side, in raw latent units (the space the boundary is applied in). ExFaceGAN labels
"different" as 1, so its saved normals point AWAY from the identity and its sampling subtracts
them; here `sample_identity` adds.

Solvers. Every reference shares the same candidate latents X [N, D] and differs only in labels.

- "lda" (default, closed form): with a shared covariance S, two-class LDA's direction is
  S^-1 (mu_same - mu_diff). For the total covariance S_T of a reference's training set,
  S_T = S_W + p1 p0 d d^T with d = mu_same - mu_diff, so by Sherman-Morrison
  S_T^-1 d = S_W^-1 d / (1 + p1 p0 d^T S_W^-1 d): the same direction as with the within-class
  covariance S_W. S_T barely varies between references (each trains on a random 70 % of the
  same candidates: all of them under the median split; under "quantile" the middle is missing,
  so the shared S is an approximation there), so ONE shrunk covariance of the standardised X
  serves every reference (`shrinkage`: None = Ledoit-Wolf, or a fixed intensity in [0, 1]),
  and every class-mean difference comes from one matrix product
  `(same / n_same - diff / n_diff) @ X`. The intercept puts the hyperplane midway between the
  projected class means of the training set: the Bayes threshold for equal Gaussian classes
  with equal priors, and both label rules give equal class sizes. The best separating
  threshold of the training projections would need a sort per reference and gained nothing
  (runs/ffhq, W, SFace, 500 references: validation accuracy 0.6914 midway, 0.6910 best).
- "logistic": L2-penalised logistic regression for all references at once in torch (weights
  [R, D], logits X @ W.T), by accelerated gradient descent (FISTA, a fixed step from a bound
  on the gradient's Lipschitz constant, so every reference's iterates are independent) in
  the coordinates whitened by that shared covariance, started from the LDA solution; penalty
  `1 / (2 C)` times the squared norm of the whitened weights against the sum of the training
  losses (scikit-learn's `C`). About 50 steps to a gradient norm of 1e-4 on runs/ffhq.
- "linear-svc": ExFaceGAN's solver, one scikit-learn `LinearSVC(dual=False, C)` per reference,
  on latents min-max scaled to [-1, 1] per reference as ExFaceGAN does (`minmax=False` fits
  raw latents). Unlike ExFaceGAN, the normal and the intercept are mapped back to raw latent
  units, so the boundary is applied in the space it was fitted in. Slow: for parity checks.

Measured on runs/ffhq (10,000 MobileStyleGAN faces, W, SFace, median split; bench/identity.py
on 2 busy shared CPU cores): "lda" fits 5,000 boundaries in 8 to 13 s, against 2.4 to 2.6 s
per boundary for "linear-svc" (900 to 1,600x), at the same validation accuracy (0.688 vs 0.689
on the same 50 references; median cosine between the normals 0.96); "logistic" matches
"linear-svc" (cosine 0.998) at 30 to 100 ms per boundary. A fixed `shrinkage=0.2` raised
LDA's mean validation accuracy by about one point over Ledoit-Wolf (which shrinks W's
covariance by only 0.005) with both SFace and dlib labels, and changed nothing in Z.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from facelatent import __version__
from facelatent.boundaries.boundary import jsonable, save_npz_atomic

__all__ = ["IDENTITY_SOLVERS", "LABEL_RULES", "SAMPLE_MODES", "IdentityBoundaries",
           "fit_identity_boundaries", "identity_labels", "sample_identity"]

IDENTITY_SOLVERS = ("lda", "logistic", "linear-svc")
LABEL_RULES = ("median", "quantile")
SAMPLE_MODES = ("paper", "code", "random")
FORMAT = "facelatent.identity-boundaries"
FORMAT_VERSION = 1
METRICS = ("train_accuracy", "val_accuracy", "n_same", "n_different", "reference_distance")
MIN_TRAIN_PER_CLASS = 2
MIN_VAL_PER_CLASS = 1
UNIT_TOLERANCE = 1e-4
_BLOCK_BYTES = 64 * 2**20   # similarity rows per block in identity_labels: about 64 MiB


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
                                  {k: v[rows] for k, v in self.metrics.items()}, self.provenance)

    # --- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write one compressed `.npz` (arrays, `metric.<name>` arrays, JSON provenance) through
        a temporary file and a rename; 19 MB for 5,000 boundaries in W. Returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "format": np.str_(FORMAT), "format_version": np.int64(FORMAT_VERSION),
            "seeds": self.seeds, "normals": self.normals, "intercepts": self.intercepts,
            "latents": self.latents, "space": np.str_(self.space), "model": np.str_(self.model),
            "provenance": np.str_(json.dumps(jsonable(self.provenance), sort_keys=True)),
        }
        arrays.update({f"metric.{k}": v for k, v in self.metrics.items()})
        return save_npz_atomic(path, arrays, compressed=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IdentityBoundaries:
        """Read a file written by `save`. FileNotFoundError if there is none; ValueError naming
        the file for anything else: not an archive, truncated, other keys, wrong shapes."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no identity boundary file at {path}; fit one with "
                                    "fit_identity_boundaries(...).save(path)")
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            with data:
                values = {k: data[k] for k in data.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(f"{path} is not a readable identity boundary file (corrupt or "
                             f"truncated?): {exc}") from exc
        if str(values.get("format", "")) != FORMAT:
            raise ValueError(f"{path} is not an identity boundary file (no '{FORMAT}' format key)")
        if int(values.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{path} has format version {int(values['format_version'])}; this "
                             f"facelatent ({__version__}) reads up to {FORMAT_VERSION}: upgrade it")
        required = ("seeds", "normals", "intercepts", "latents", "space", "model", "provenance")
        missing = [k for k in required if k not in values]
        known = {*required, "format", "format_version"}
        unknown = sorted(k for k in values if k not in known and not k.startswith("metric."))
        if missing or unknown:
            raise ValueError(f"{path}: missing keys {missing}, unknown keys {unknown}")
        try:
            provenance = json.loads(str(values["provenance"]))
            metrics = {k[len("metric."):]: v for k, v in values.items() if k.startswith("metric.")}
            return cls(values["seeds"], values["normals"], values["intercepts"], values["latents"],
                       str(values["space"]), str(values["model"]), metrics, provenance)
        except (ValueError, TypeError) as exc:   # json.JSONDecodeError is a ValueError
            raise ValueError(f"{path}: {exc}") from exc


# --- labels --------------------------------------------------------------------------------
def identity_labels(ref_embeddings: np.ndarray, embeddings: np.ndarray, rule: str = "median",
                    quantile: float = 0.25, exclude: np.ndarray | Sequence[int] | None = None,
                    ) -> np.ndarray:
    """Same / different labels of N candidates for each of R references -> int8 [R, N].

    ref_embeddings [R, E] and embeddings [N, E] are unit identity embeddings (cosine = dot);
    a candidate with a non-finite embedding is unused in every row. `exclude` [R]: the
    candidate index of each reference itself (-1 = not a candidate), unused in its own row.
    Per row, of the n usable candidates: "median" labels the k = n // 2 most similar 1 (same)
    and the k least similar 0 (different); "quantile" does so with k = floor(quantile * n),
    0 < quantile < 0.5. The rest is -1 (unused). Counts are exact, ties broken by position.
    """
    if rule not in LABEL_RULES:
        raise ValueError(f"rule must be one of {LABEL_RULES}, got {rule!r}")
    if rule == "quantile" and not 0.0 < float(quantile) < 0.5:
        raise ValueError(f"quantile must be in (0, 0.5) (0.5 is rule='median'), got {quantile}")
    refs = np.asarray(ref_embeddings, dtype=np.float32)
    cands = np.asarray(embeddings, dtype=np.float32)
    if refs.ndim != 2 or cands.ndim != 2 or refs.shape[1] != cands.shape[1]:
        raise ValueError(f"expected ref_embeddings [R, E] and embeddings [N, E] with the same E, "
                         f"got {list(refs.shape)} and {list(cands.shape)}")
    if not np.isfinite(refs).all():
        bad = np.flatnonzero(~np.isfinite(refs).all(axis=1)).tolist()
        raise ValueError(f"reference embeddings {bad[:10]} are not finite (no face found?); "
                         "pick references that have one")
    r, n = len(refs), len(cands)
    own = np.full(r, -1, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
    if own.shape != (r,) or (own >= n).any() or (own < -1).any():
        raise ValueError(f"exclude must hold one candidate index (or -1) per reference: shape "
                         f"[{r}] with values in [-1, {n}), got shape {list(own.shape)}")
    usable = np.isfinite(cands).all(axis=1)
    cands = np.where(usable[:, None], cands, 0.0)
    labels = np.full((r, n), -1, dtype=np.int8)
    block = max(1, _BLOCK_BYTES // max(1, 4 * n))
    for start in range(0, r, block):
        stop = min(start + block, r)
        sims = refs[start:stop] @ cands.T
        sims[:, ~usable] = np.inf                    # unusable candidates sort last
        rows = np.arange(stop - start)
        mine = own[start:stop]
        sims[rows[mine >= 0], mine[mine >= 0]] = np.inf
        n_ok = int(usable.sum()) - ((mine >= 0) & usable[np.maximum(mine, 0)]).astype(np.int64)
        out = labels[start:stop]
        for count in np.unique(n_ok):
            count = int(count)
            group = _rows(n_ok == count)
            k = count // 2 if rule == "median" else int(math.floor(float(quantile) * count))
            if k < 1:
                continue
            order = np.argpartition(sims[group], sorted({k - 1, count - k, count - 1}), axis=1)
            part = out[group]
            np.put_along_axis(part, order[:, :k], 0, axis=1)
            np.put_along_axis(part, order[:, count - k: count], 1, axis=1)
            out[group] = part
    return labels


# --- fitting -------------------------------------------------------------------------------
def fit_identity_boundaries(
    store_or_arrays: Any,                  # LatentStore, its path, or a mapping (docstring)
    references: int | Sequence[int] = 1000,  # count (seeded random pick) or explicit seeds
    model: str = "sface",                  # identity model of the store ("sface" or "dlib")
    space: str = "w",                      # latent space of the store ("w" or "z")
    rule: str = "median",                  # labels: "median" split or top/bottom "quantile"
    quantile: float = 0.25,                # fraction per class for rule="quantile"
    solver: str = "lda",                   # "lda", "logistic" or "linear-svc" (module docstring)
    split: float = 0.7,                    # training fraction of each class, the rest validates
    seed: int = 0,                         # seeds the reference pick and the splits
    candidates: int | None = None,         # None = every sample with a face; a count = subset
    *,
    C: float = 1.0,                        # inverse L2 penalty: logistic and linear-svc
    minmax: bool = True,                   # linear-svc: scale to [-1, 1] as ExFaceGAN does
    max_iter: int = 200,                   # logistic: gradient steps at most
    tol: float = 1e-4,                     # logistic: stop when every gradient norm is below
    shrinkage: float | None = None,        # covariance shrinkage in [0, 1]; None = Ledoit-Wolf
    block: int = 512,                      # references fitted together (memory, docstring)
) -> IdentityBoundaries:
    """Fit one identity boundary per reference (module docstring) -> `IdentityBoundaries`.

    `store_or_arrays`: a `LatentStore` or its path (opened read-only; `space` and `model`
    pick its arrays), or a mapping with "seeds" int [N], "latents" [N, D] and "embeddings"
    [N, E] (unit rows; NaN rows = no face), optionally "generator" for the provenance.
    `references`: an int R picks the first R seeds of a shuffle (seeded by `seed`) of the
    samples with a face, so a larger R extends a smaller one's pick; a sequence names the
    seeds, and each must have a finite embedding (ValueError naming those that do not).
    `candidates`: None = every sample with a face; an int = a seeded random subset of them.
    Memory: about `block * N * 24` bytes per block besides the [R, N] int8 labels.
    """
    started = time.perf_counter()
    if solver not in IDENTITY_SOLVERS:
        raise ValueError(f"solver must be one of {IDENTITY_SOLVERS}, got {solver!r}")
    if space not in ("w", "z"):
        raise ValueError(f"space must be 'w' or 'z', got {space!r}")
    if not 0.0 < float(split) < 1.0:
        raise ValueError(f"split must be in (0, 1): the training fraction, got {split}")
    if not float(C) > 0.0 or int(block) < 1 or int(max_iter) < 1:
        raise ValueError(f"C, block and max_iter must be positive, got {C}, {block}, {max_iter}")
    if shrinkage is not None and not 0.0 <= float(shrinkage) <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1] (or None for Ledoit-Wolf), got {shrinkage}")
    seeds, x_all, emb, source = _read_samples(store_or_arrays, model, space)
    face = np.isfinite(emb).all(axis=1)
    ref_rows = _pick_references(references, seeds, face, seed)
    cand_rows = _pick_candidates(candidates, face, seed)
    where = np.full(len(seeds), -1, dtype=np.int64)
    where[cand_rows] = np.arange(len(cand_rows))
    labels = identity_labels(emb[ref_rows], emb[cand_rows], rule, quantile, exclude=where[ref_rows])
    _check_counts(labels, split, seeds[ref_rows])

    x = x_all[cand_rows].astype(np.float64)
    shared = _SharedCovariance(x, shrinkage)
    xc = shared.xc
    r, dim = len(ref_rows), x.shape[1]
    normals, intercepts = np.zeros((r, dim)), np.zeros(r)
    metrics = {name: np.zeros(r) for name in METRICS}
    for start in range(0, r, int(block)):
        rows = slice(start, min(start + int(block), r))
        lab = labels[rows]
        train = _train_mask(lab, seeds[ref_rows[rows]], split, seed)
        if solver == "lda":
            w, b, proj = _lda(xc, lab, train, shared)
        else:
            if solver == "logistic":
                w, b = _logistic(xc, lab, train, shared, C, int(max_iter), float(tol))
            else:
                w, b = _linear_svc(xc, lab, train, C, minmax, seed)
            proj = w.astype(np.float32) @ xc.T
        norm = np.linalg.norm(w, axis=1)
        if not (np.isfinite(norm).all() and (norm > 0).all()):
            raise ValueError(f"solver {solver!r} returned a zero or non-finite normal; are the "
                             "latents constant or the labels degenerate?")
        normals[rows] = w / norm[:, None]
        intercepts[rows] = (b - w @ shared.mean) / norm         # centred -> raw latent units
        _evaluate(proj + b[:, None].astype(np.float32), lab, train,
                  {k: v[rows] for k, v in metrics.items()})
    ref_latents = x_all[ref_rows].astype(np.float64)
    metrics["reference_distance"] = np.einsum("rd,rd->r", ref_latents, normals) + intercepts
    provenance = {
        **source, "method": "exfacegan-identity", "space": space, "model": model,
        "labels": {"rule": rule, "quantile": quantile if rule == "quantile" else None},
        "solver": solver, "solver_options": _solver_options(solver, C, minmax, max_iter, tol,
                                                                 shrinkage),
        "split": split, "seed": seed, "n_candidates": int(len(cand_rows)),
        "covariance_shrinkage": shared.shrinkage, "normal_sign": "towards the same identity",
        "command": list(sys.argv), "package": f"facelatent {__version__}",
        "numpy": np.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fit_seconds": time.perf_counter() - started,   # reading the arrays included
    }
    return IdentityBoundaries(seeds[ref_rows], normals, intercepts, x_all[ref_rows], space, model,
                              {k: (v.astype(np.int64) if k.startswith("n_") else v)
                               for k, v in metrics.items()}, provenance)


def _read_samples(source: Any, model: str, space: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(seeds [N] ascending, latents [N, D], embeddings [N, E], provenance of the source)."""
    from facelatent.latents.store import LatentStore

    if isinstance(source, (str, os.PathLike)):
        source = LatentStore.open(source, read_only=True)
    if isinstance(source, LatentStore):
        seeds, x, emb = source.seeds(), source.latents(space), source.identity(model)
        info = {"store": str(source.path), "generator": source.spec.generator}
    elif isinstance(source, Mapping):
        missing = [k for k in ("seeds", "latents", "embeddings") if k not in source]
        if missing:
            raise ValueError(f"store_or_arrays as a mapping needs the keys 'seeds', 'latents' and "
                             f"'embeddings'; missing {missing}")
        seeds, x, emb = (np.asarray(source[k]) for k in ("seeds", "latents", "embeddings"))
        info = {"store": None, "generator": source.get("generator")}
    else:
        raise ValueError(f"store_or_arrays must be a LatentStore, its path, or a mapping of "
                         f"arrays; got {type(source).__name__}")
    if seeds.ndim != 1 or seeds.dtype.kind not in "iu" or len(np.unique(seeds)) != len(seeds):
        raise ValueError(f"seeds must be unique integers of shape [N], got dtype {seeds.dtype}, "
                         f"shape {list(seeds.shape)}")
    if x.ndim != 2 or emb.ndim != 2 or len(x) != len(seeds) or len(emb) != len(seeds):
        raise ValueError(f"expected seeds [N], latents [N, D] and embeddings [N, E]; got "
                         f"{list(seeds.shape)}, {list(x.shape)} and {list(emb.shape)}")
    if not np.isfinite(x).all():
        raise ValueError("latents contain NaN or infinite values; every sample needs its latent")
    order = np.argsort(seeds, kind="stable")
    return seeds[order].astype(np.int64), x[order], emb[order].astype(np.float32), info


def _pick_references(references: int | Sequence[int], seeds: np.ndarray, face: np.ndarray,
                     seed: int) -> np.ndarray:
    if isinstance(references, (int, np.integer)):
        pool = np.flatnonzero(face)
        if not 1 <= int(references) <= len(pool):
            raise ValueError(f"references must be between 1 and the {len(pool)} samples with a "
                             f"face, got {references}")
        return np.sort(np.random.default_rng(seed).permutation(pool)[: int(references)])
    wanted = np.asarray(references, dtype=np.int64).reshape(-1)
    if len(wanted) == 0 or len(np.unique(wanted)) != len(wanted):
        raise ValueError("references must be a non-empty list of distinct seeds")
    rows = np.searchsorted(seeds, wanted)
    found = (rows < len(seeds)) & (seeds[np.minimum(rows, len(seeds) - 1)] == wanted)
    if not found.all():
        raise ValueError(f"reference seeds {wanted[~found][:10].tolist()} are not in the store")
    if not face[rows].all():
        raise ValueError(f"reference seeds {wanted[~face[rows]][:10].tolist()} have no identity "
                         "embedding (NaN: no face found); pick other references")
    return rows


def _pick_candidates(candidates: int | None, face: np.ndarray, seed: int) -> np.ndarray:
    pool = np.flatnonzero(face)
    if candidates is None:
        return pool
    if not isinstance(candidates, (int, np.integer)):
        raise ValueError(f"candidates must be None (every sample) or a count, got "
                         f"{type(candidates).__name__}")
    if not 1 <= int(candidates) <= len(pool):
        raise ValueError(f"candidates must be between 1 and the {len(pool)} samples with a face, "
                         f"got {candidates}")
    return np.sort(np.random.default_rng([seed, 1]).permutation(pool)[: int(candidates)])


def _check_counts(labels: np.ndarray, split: float, ref_seeds: np.ndarray) -> None:
    each = np.minimum((labels == 1).sum(axis=1), (labels == 0).sum(axis=1))
    n_train = np.round(split * each)
    bad = (n_train < MIN_TRAIN_PER_CLASS) | (each - n_train < MIN_VAL_PER_CLASS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"too few candidates: reference seed {int(ref_seeds[i])} gets "
                         f"{int(each[i])} per class, and needs at least {MIN_TRAIN_PER_CLASS} "
                         f"to train and {MIN_VAL_PER_CLASS} to validate at split={split}; use "
                         "more samples, rule='median', or a larger quantile")


def _train_mask(labels: np.ndarray, ref_seeds: np.ndarray, split: float, seed: int) -> np.ndarray:
    """bool [B, N]: the first round(split * n_c) of each class c after a per-reference shuffle."""
    keys = np.stack([np.random.default_rng([seed, int(s)]).random(labels.shape[1])
                     for s in ref_seeds])
    train = np.zeros(labels.shape, dtype=bool)
    for c in (0, 1):
        mine = labels == c
        n_train = np.round(split * mine.sum(axis=1)).astype(np.int64)
        masked = np.where(mine, keys, 2.0)        # keys are in [0, 1)
        cut = np.empty(len(labels))
        for k in np.unique(n_train):
            group = _rows(n_train == k)
            cut[group] = np.partition(masked[group], int(k) - 1, axis=1)[:, int(k) - 1]
        train |= masked <= cut[:, None]
    return train


def _rows(select: np.ndarray) -> slice | np.ndarray:
    """Rows where `select` is true: a slice (a view, no copy) when it is every row."""
    return slice(None) if select.all() else np.flatnonzero(select)


class _SharedCovariance:
    """The candidates X [N, D] centred (`xc`), their mean, spread and shrunk correlation, and
    the whitening that correlation defines."""

    def __init__(self, x: np.ndarray, shrinkage: float | None = None) -> None:
        from sklearn.covariance import ledoit_wolf, shrunk_covariance

        self.mean = x.mean(axis=0)
        self.std = x.std(axis=0)
        self.std[self.std == 0] = 1.0
        # Standardised first: shrinkage towards a multiple of I assumes comparable scales.
        xs = (x - self.mean) / self.std
        if shrinkage is None:
            cov, shrinkage = ledoit_wolf(xs, assume_centered=True)
        else:
            cov = shrunk_covariance(xs.T @ xs / len(xs), float(shrinkage))
        self.shrinkage = float(shrinkage)
        eigval, eigvec = np.linalg.eigh(cov)
        if eigval.min() <= 0:
            raise ValueError("the candidates' latent covariance is singular; are latents repeated?")
        self.whiten = eigvec / np.sqrt(eigval)        # z = ((x - mean) / std) @ whiten, cov(z) = I
        # Centred, the float32 matrix products stay precise however far W is from the origin.
        self.xc = (x - self.mean).astype(np.float32)
        self._z: np.ndarray | None = None
        self._moment: float | None = None

    def whitened(self) -> np.ndarray:
        """The candidates [N, D] in whitened coordinates, float32 (computed once, then kept)."""
        if self._z is None:
            self._z = ((self.xc / self.std) @ self.whiten).astype(np.float32)
        return self._z

    def whitened_moment(self) -> float:
        """Largest eigenvalue of the second moment of [z, 1] over the candidates (z centred)."""
        if self._moment is None:
            z = self.whitened().astype(np.float64)
            self._moment = max(float(np.linalg.eigvalsh(z.T @ z / len(z))[-1]), 1.0)
        return self._moment

    def solve(self, d_std: np.ndarray) -> np.ndarray:
        """cov^-1 d for rows d [B, D] in standardised units."""
        return (d_std @ self.whiten) @ self.whiten.T


def _class_weights(labels: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [B, N] rows averaging over the training same (first) and different (second)."""
    same, diff = train & (labels == 1), train & (labels == 0)
    return ((same / same.sum(axis=1, keepdims=True)).astype(np.float32),
            (diff / diff.sum(axis=1, keepdims=True)).astype(np.float32))


def _lda(xc: np.ndarray, labels: np.ndarray, train: np.ndarray, shared: _SharedCovariance
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred-space (w [B, D], b [B], w @ xc.T [B, N]): w = S^-1 (mu_same - mu_diff), midway
    intercept."""
    a_same, a_diff = _class_weights(labels, train)
    delta = ((a_same - a_diff) @ xc).astype(np.float64)           # [B, D] class-mean differences
    w = shared.solve(delta / shared.std) / shared.std              # standardised -> raw units
    # Midway between the projected class means, from the projections _evaluate needs anyway.
    proj = w.astype(np.float32) @ xc.T                             # [B, N]
    b = -0.5 * (np.einsum("bn,bn->b", a_same, proj) + np.einsum("bn,bn->b", a_diff, proj))
    return w, b.astype(np.float64), proj


def _logistic(xc: np.ndarray, labels: np.ndarray, train: np.ndarray, shared: _SharedCovariance,
              C: float, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Centred-space (w, b) of L2 logistic regression, all references at once (torch, FISTA)."""
    import torch

    z = torch.from_numpy(shared.whitened())                                      # [N, D]
    y = torch.from_numpy((labels == 1).astype(np.float32))
    weight = torch.from_numpy(train / train.sum(axis=1, keepdims=True)).float()    # mean loss
    lam = torch.from_numpy(1.0 / (C * train.sum(axis=1))).float()[:, None]         # [B, 1]
    a_same, a_diff = (torch.from_numpy(a) for a in _class_weights(labels, train))
    # Start from LDA's logistic parameters: the whitened class-mean difference, midway intercept.
    mu_same, mu_diff = a_same @ z, a_diff @ z
    u = mu_same - mu_diff
    c = -0.5 * (u * (mu_same + mu_diff)).sum(dim=1)
    # Step 1 / L, L a Lipschitz bound of the gradient: sigmoid' <= 1/4, and a training set's
    # second moment of [z, 1] is at most (N / n_train) times that of all N candidates.
    spread = shared.whitened_moment() * float((len(xc) / train.sum(axis=1)).max())
    step = 1.0 / (0.25 * spread + float(lam.max()))
    u_prev, c_prev, t = u.clone(), c.clone(), 1.0
    for _ in range(max_iter):
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        mom = (t - 1.0) / t_next
        u_look, c_look = u + mom * (u - u_prev), c + mom * (c - c_prev)
        g = weight * (torch.sigmoid(u_look @ z.T + c_look[:, None]) - y)             # [B, N]
        grad_u, grad_c = g @ z + lam * u_look, g.sum(dim=1)
        u_prev, c_prev, t = u, c, t_next
        u, c = u_look - step * grad_u, c_look - step * grad_c
        if float(grad_u.norm(dim=1).max()) < tol:
            break
    w = (u.double().numpy() @ shared.whiten.T) / shared.std      # whitened -> raw units
    return w, c.double().numpy()


def _linear_svc(xc: np.ndarray, labels: np.ndarray, train: np.ndarray, C: float, minmax: bool,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred-space (w, b) from one LinearSVC(dual=False) per reference (ExFaceGAN's loop)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    w, b = np.zeros((len(labels), xc.shape[1])), np.zeros(len(labels))
    unconverged = 0
    for i in range(len(labels)):
        x = xc[labels[i] >= 0].astype(np.float64)
        scale, shift = np.ones(x.shape[1]), np.zeros(x.shape[1])
        if minmax:     # ExFaceGAN: MinMaxScaler((-1, 1)) on all of the reference's latents
            lo, hi = x.min(axis=0), x.max(axis=0)
            span = np.where(hi > lo, hi - lo, 1.0)
            scale, shift = 2.0 / span, -1.0 - 2.0 * lo / span
        rows = np.flatnonzero(train[i])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            svc = LinearSVC(dual=False, C=C, random_state=seed)
            svc.fit(xc[rows] * scale + shift, (labels[i, rows] == 1).astype(np.int64))
        unconverged += any(issubclass(c.category, ConvergenceWarning) for c in caught)
        coef = svc.coef_.reshape(-1)
        # coef . (x * scale + shift) + b_s = (coef * scale) . x + (b_s + coef . shift)
        w[i] = coef * scale
        b[i] = float(svc.intercept_[0]) + coef @ shift
    if unconverged:
        warnings.warn(f"linear-svc: {unconverged} of {len(labels)} fits did not converge",
                      stacklevel=3)
    return w, b


def _evaluate(decision: np.ndarray, labels: np.ndarray, train: np.ndarray,
              out: dict[str, np.ndarray]) -> None:
    """Fill train/val accuracy and label counts of one block (views into the metric arrays)
    from the decision values [B, N] (> 0 = predicted same) of every candidate."""
    right = (decision > 0) == (labels == 1)
    used = labels >= 0
    val = used & ~train
    out["train_accuracy"][:] = (right & train).sum(axis=1) / train.sum(axis=1)
    out["val_accuracy"][:] = (right & val).sum(axis=1) / val.sum(axis=1)
    out["n_same"][:] = (labels == 1).sum(axis=1)
    out["n_different"][:] = (labels == 0).sum(axis=1)


def _solver_options(solver: str, C: float, minmax: bool, max_iter: int, tol: float,
                    shrinkage: float | None) -> dict[str, Any]:
    covariance = ("shared, standardised, " +
                  ("Ledoit-Wolf shrinkage" if shrinkage is None else f"shrinkage {shrinkage}"))
    if solver == "lda":
        return {"covariance": covariance, "intercept": "midway between the class means"}
    if solver == "logistic":
        return {"C": C, "max_iter": max_iter, "tol": tol, "whitening": covariance, "init": "lda"}
    return {"C": C, "minmax": minmax, "dual": False}


# --- sampling ------------------------------------------------------------------------------
def sample_identity(
    boundary: IdentityBoundaries | tuple[np.ndarray, float, np.ndarray],
    n: int,
    *,
    max_off: float,                     # paper: std of a; code: upper bound of u (ExFaceGAN: 30, W)
    mode: str = "paper",                # "paper", "code" or "random" (the baseline)
    side: str = "same",                 # "same": towards the identity; "other": away from it
    reference: int | None = None,       # seed, when `boundary` holds more than one reference
    rng: np.random.Generator | None = None,
    seed: int | Sequence[int] | None = None,   # e.g. (dataset seed, reference seed)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n latents of one synthetic identity -> (latents [n, D] float32, offsets [n], norms [n]).

    With normal m (unit, towards the same side) and the reference's latent x:

    - "paper": x + s |a| m with a ~ N(0, max_off) (the paper's magnitude), s = +1 for side
      "same", -1 for "other".
    - "code": x + s u * m elementwise, u ~ U(0, max_off) [n, D], each dimension its own
      factor (ExFaceGAN's release, there `latent - u * normal` with its opposite sign).
    - "random": the baseline: x + |a| g, g a random unit direction (normalised isotropic
      Gaussian) and |a| drawn exactly as "paper" draws it, so for the same seed both have the
      same offset norms and only the direction differs. `side` makes no difference here.

    `offsets`: |(latent - x) . m|, the distance moved along the normal; `norms`:
    ||latent - x||. For "paper" both equal |a|. Deterministic given `rng` or `seed` (one of
    them is required); the dataset builder seeds it per (dataset seed, reference seed),
    `seed=(dataset_seed, reference_seed)`, so an identity's images never depend on which
    other identities are built or in what order.
    """
    if isinstance(boundary, IdentityBoundaries):
        if reference is None:
            if len(boundary) != 1:
                raise ValueError(f"these boundaries hold {len(boundary)} references; name one "
                                 "with reference=SEED")
            reference = int(boundary.seeds[0])
        normal, _, latent = boundary[reference]
    else:
        try:
            normal, _, latent = boundary
        except (TypeError, ValueError):
            raise ValueError("boundary must be IdentityBoundaries or a (normal, intercept, latent) "
                             "tuple, as boundaries[seed] returns") from None
    m = np.asarray(normal, dtype=np.float64)
    x = np.asarray(latent, dtype=np.float64)
    if m.ndim != 1 or x.shape != m.shape:
        raise ValueError(f"normal and latent must both have shape [D], got {list(m.shape)} and "
                         f"{list(x.shape)}")
    if not (np.isfinite(m).all() and np.isfinite(x).all()):
        raise ValueError("normal and latent must be finite")
    m = m / np.linalg.norm(m)
    if mode not in SAMPLE_MODES:
        raise ValueError(f"mode must be one of {SAMPLE_MODES}, got {mode!r}")
    if side not in ("same", "other"):
        raise ValueError(f"side must be 'same' or 'other', got {side!r}")
    if int(n) < 1 or not float(max_off) > 0.0:
        raise ValueError(f"n must be at least 1 and max_off positive, got n={n}, max_off={max_off}")
    if (rng is None) == (seed is None):
        raise ValueError("pass exactly one of rng= or seed= (e.g. "
                         "seed=(dataset_seed, reference_seed))")
    gen = rng if rng is not None else np.random.default_rng(seed)   # type: ignore[arg-type]
    sign = 1.0 if side == "same" else -1.0
    if mode == "code":
        step = sign * gen.uniform(0.0, float(max_off), size=(int(n), len(m))) * m
    else:
        a = np.abs(gen.normal(0.0, float(max_off), size=int(n)))
        if mode == "paper":
            step = sign * a[:, None] * m
        else:
            g = gen.standard_normal((int(n), len(m)))
            step = a[:, None] * g / np.linalg.norm(g, axis=1, keepdims=True)
    return (x + step).astype(np.float32), np.abs(step @ m), np.linalg.norm(step, axis=1)
