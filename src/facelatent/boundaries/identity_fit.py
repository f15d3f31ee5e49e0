"""Fitting identity boundaries: one hyperplane per reference face that separates the latents of
faces like it from the rest (ExFaceGAN, Boutros et al., IJCB 2023).

The protocol, as `IdentityBoundaryFitter.fit` runs it on the samples of a `LatentStore`:

1. Candidates: every sample whose identity embedding is finite (rows with no face hold NaN and
   are dropped), sorted by seed, so the result never depends on the order of the rows.
2. Labels (`identity_labels`): the cosine similarity of each reference's embedding to every
   candidate, all references in one matrix product. "median": the top half of the candidates
   is "same" (1), the bottom half "different" (0), as in the paper (with an odd count the
   middle candidate is left out, -1). "quantile": the top and bottom `quantile` fractions,
   the middle unused (-1). A reference is never a candidate of its own boundary.
3. Split: per reference, each class is shuffled by a generator seeded with
   `(random_state, reference seed)`; the first `split` fraction trains, the rest validates. So
   a reference's boundary does not depend on which other references are fitted with it.
4. Solver (`facelatent.boundaries.identity_solvers`: "lda", "logistic", "linear-svc"); the
   normal is scaled to unit length, the intercept with it.
5. Metrics per reference: train and validation accuracy, the number of same and different
   labels, and `reference_distance`, the reference's own signed distance to its boundary
   (positive = on the same side, where it should be).
6. `sigma` per reference: the standard deviation of every sample's latent (with a face or
   not: the generator's distribution, not the labels') along the normal, the unit in which
   dataset offsets are counted (`facelatent.datasets`).

Sign: normals point TOWARDS the same-identity side, and `latent @ normal + intercept > 0` is
that side, in raw latent units (the space the boundary is applied in). ExFaceGAN labels
"different" as 1, so its saved normals point AWAY from the identity and its sampling subtracts
them; here `facelatent.datasets.sampling.sample_identity` adds.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from facelatent import __version__
from facelatent.boundaries.identity import (
    METRICS,
    IdentityBoundaries,
    latent_covariance,
    spread_along,
)
from facelatent.boundaries.identity_solvers import (
    IDENTITY_SOLVERS,
    SharedCovariance,
    check_counts,
    evaluate,
    lda,
    linear_svc,
    logistic,
    rows_where,
    solver_options,
    train_mask,
)

__all__ = ["IDENTITY_SOLVERS", "LABEL_RULES", "IdentityBoundaryFitter",
           "fit_identity_boundaries", "identity_labels"]

LABEL_RULES = ("median", "quantile")
_BLOCK_BYTES = 64 * 2**20   # similarity rows per block in identity_labels: about 64 MiB


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
            group = rows_where(n_ok == count)
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
class IdentityBoundaryFitter(BaseEstimator):
    """Fit one identity boundary per reference (module docstring), scikit-learn style.

    Hyperparameters are stored as given and checked in `fit`, which returns self. Learned:
    `boundaries_` (`IdentityBoundaries`), `seeds_` [R], `normals_` [R, D], `intercepts_` [R],
    `sigma_` [R] (the samples' spread along each normal), `n_candidates_`,
    `covariance_shrinkage_` and `fit_seconds_`.
    """

    def __init__(
        self,
        references: int | Sequence[int] = 1000,  # count (seeded random pick) or explicit seeds
        model: str = "sface",                  # identity model of the store ("sface" or "dlib")
        space: str = "w",                      # latent space of the store ("w" or "z")
        rule: str = "median",                  # labels: "median" split or top/bottom "quantile"
        quantile: float = 0.25,                # fraction per class for rule="quantile"
        solver: str = "lda",                   # "lda", "logistic" or "linear-svc"
        split: float = 0.7,                    # training fraction of each class, the rest validates
        random_state: int = 0,                 # seeds the reference pick and the splits
        candidates: int | None = None,         # None = every sample with a face; a count = subset
        C: float = 1.0,                        # inverse L2 penalty: logistic and linear-svc
        minmax: bool = True,                   # linear-svc: scale to [-1, 1] as ExFaceGAN does
        max_iter: int = 200,                   # logistic: gradient steps at most
        tol: float = 1e-4,                     # logistic: stop when every gradient norm is below
        shrinkage: float | None = None,        # covariance shrinkage in [0, 1]; None = Ledoit-Wolf
        block: int = 512,                      # references fitted together (memory, see fit)
    ) -> None:
        self.references = references
        self.model = model
        self.space = space
        self.rule = rule
        self.quantile = quantile
        self.solver = solver
        self.split = split
        self.random_state = random_state
        self.candidates = candidates
        self.C = C
        self.minmax = minmax
        self.max_iter = max_iter
        self.tol = tol
        self.shrinkage = shrinkage
        self.block = block

    def fit(self, samples: Any) -> IdentityBoundaryFitter:
        """Fit on `samples`: a `LatentStore` or its path (opened read-only; `space` and `model`
        pick its arrays), or a mapping with "seeds" int [N], "latents" [N, D] and "embeddings"
        [N, E] (unit rows; NaN rows = no face), optionally "generator" for the provenance.

        `references`: an int R picks the first R seeds of a shuffle (seeded by `random_state`)
        of the samples with a face, so a larger R extends a smaller one's pick; a sequence
        names the seeds, and each must have a finite embedding. Either is checked against the
        number of samples before any array is read. Memory: about `block * N * 24` bytes per
        block besides the [R, N] int8 labels.
        """
        started = time.perf_counter()
        self._check_params()
        source = _open_source(samples)
        _check_request(self.references, source)
        seeds, x_all, emb, info = _read_samples(source, self.model, self.space)
        face = np.isfinite(emb).all(axis=1)
        seed = int(self.random_state)
        ref_rows = _pick_references(self.references, seeds, face, seed)
        cand_rows = _pick_candidates(self.candidates, face, seed)
        where = np.full(len(seeds), -1, dtype=np.int64)
        where[cand_rows] = np.arange(len(cand_rows))
        labels = identity_labels(emb[ref_rows], emb[cand_rows], self.rule, self.quantile,
                                 exclude=where[ref_rows])
        check_counts(labels, self.split, seeds[ref_rows])

        shared = SharedCovariance(x_all[cand_rows].astype(np.float64), self.shrinkage)
        normals, intercepts, metrics = self._solve(shared, labels, seeds[ref_rows])
        ref_latents = x_all[ref_rows].astype(np.float64)
        metrics["reference_distance"] = np.einsum("rd,rd->r", ref_latents, normals) + intercepts
        sigma = spread_along(latent_covariance(x_all), normals)
        self.n_candidates_ = int(len(cand_rows))
        self.covariance_shrinkage_ = shared.shrinkage
        self.fit_seconds_ = time.perf_counter() - started     # reading the arrays included
        self.boundaries_ = IdentityBoundaries(
            seeds[ref_rows], normals, intercepts, x_all[ref_rows], self.space, self.model,
            {k: (v.astype(np.int64) if k.startswith("n_") else v) for k, v in metrics.items()},
            {**info, **self._provenance()}, sigma)
        self.seeds_ = self.boundaries_.seeds
        self.normals_ = self.boundaries_.normals
        self.intercepts_ = self.boundaries_.intercepts
        self.sigma_ = self.boundaries_.sigma
        return self

    # --- steps -----------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.solver not in IDENTITY_SOLVERS:
            raise ValueError(f"solver must be one of {IDENTITY_SOLVERS}, got {self.solver!r}")
        if self.space not in ("w", "z"):
            raise ValueError(f"space must be 'w' or 'z', got {self.space!r}")
        if not 0.0 < float(self.split) < 1.0:
            raise ValueError(f"split must be in (0, 1): the training fraction, got {self.split}")
        if not float(self.C) > 0.0 or int(self.block) < 1 or int(self.max_iter) < 1:
            raise ValueError(f"C, block and max_iter must be positive, got {self.C}, "
                             f"{self.block}, {self.max_iter}")
        if self.shrinkage is not None and not 0.0 <= float(self.shrinkage) <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1] (or None for Ledoit-Wolf), got "
                             f"{self.shrinkage}")

    def _solve(self, shared: SharedCovariance, labels: np.ndarray, ref_seeds: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Raw-space unit normals [R, D], intercepts [R] and the metrics, block by block."""
        xc = shared.xc
        r, dim, block = len(labels), xc.shape[1], int(self.block)
        normals, intercepts = np.zeros((r, dim)), np.zeros(r)
        metrics = {name: np.zeros(r) for name in METRICS}
        for start in range(0, r, block):
            rows = slice(start, min(start + block, r))
            lab = labels[rows]
            train = train_mask(lab, ref_seeds[rows], self.split, int(self.random_state))
            if self.solver == "lda":
                w, b, proj = lda(xc, lab, train, shared)
            else:
                if self.solver == "logistic":
                    w, b = logistic(xc, lab, train, shared, self.C, int(self.max_iter),
                                    float(self.tol))
                else:
                    w, b = linear_svc(xc, lab, train, self.C, self.minmax, int(self.random_state))
                proj = w.astype(np.float32) @ xc.T
            norm = np.linalg.norm(w, axis=1)
            if not (np.isfinite(norm).all() and (norm > 0).all()):
                raise ValueError(f"solver {self.solver!r} returned a zero or non-finite normal; "
                                 "are the latents constant or the labels degenerate?")
            normals[rows] = w / norm[:, None]
            intercepts[rows] = (b - w @ shared.mean) / norm         # centred -> raw latent units
            evaluate(proj + b[:, None].astype(np.float32), lab, train,
                     {k: v[rows] for k, v in metrics.items()})
        return normals, intercepts, metrics

    def _provenance(self) -> dict[str, Any]:
        return {
            "method": "exfacegan-identity", "space": self.space, "model": self.model,
            "labels": {"rule": self.rule,
                       "quantile": self.quantile if self.rule == "quantile" else None},
            "solver": self.solver,
            "solver_options": solver_options(self.solver, self.C, self.minmax, self.max_iter,
                                             self.tol, self.shrinkage),
            "split": self.split, "seed": self.random_state, "n_candidates": self.n_candidates_,
            "covariance_shrinkage": self.covariance_shrinkage_,
            "normal_sign": "towards the same identity",
            "command": list(sys.argv), "package": f"facelatent {__version__}",
            "numpy": np.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "fit_seconds": self.fit_seconds_,
        }


def fit_identity_boundaries(samples: Any, references: int | Sequence[int] = 1000, model: str = "sface",
                            space: str = "w", rule: str = "median", quantile: float = 0.25,
                            solver: str = "lda", split: float = 0.7, seed: int = 0,
                            candidates: int | None = None, **options: Any) -> IdentityBoundaries:
    """`IdentityBoundaryFitter(...).fit(samples).boundaries_`: the function form, with `seed`
    for `random_state`; `**options` are the fitter's C, minmax, max_iter, tol, shrinkage and
    block."""
    fitter = IdentityBoundaryFitter(references=references, model=model, space=space, rule=rule,
                                    quantile=quantile, solver=solver, split=split,
                                    random_state=seed, candidates=candidates, **options)
    return fitter.fit(samples).boundaries_


# --- samples ---------------------------------------------------------------------------------
def _open_source(source: Any) -> Any:
    """A LatentStore (a path is opened read-only) or a mapping of arrays, as given."""
    from facelatent.boundaries.sources import open_store

    if isinstance(source, Mapping):
        return source
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "latents"):
        return open_store(source)
    raise ValueError(f"samples must be a LatentStore, its path, or a mapping of arrays; got "
                     f"{type(source).__name__}")


def _check_request(references: Any, source: Any) -> None:
    """Refuse more references than there are samples before any array is read (a seed list
    of 10^8 must not cost gigabytes first)."""
    if isinstance(references, str):
        raise ValueError(f"references must be a count or a sequence of seeds, got the text "
                         f"{references!r}; parse it with facelatent.ranges.parse_count_or_seeds")
    if isinstance(source, Mapping):
        if "seeds" not in source:
            return                          # _read_samples names the missing keys
        n, where = len(np.asarray(source["seeds"])), "the arrays hold"
    else:
        n, where = len(source), f"the store {source.path} holds"
    count = int(references) if isinstance(references, (int, np.integer)) else len(references)
    if count > n:
        raise ValueError(f"references asks for {count:,} reference faces, but {where} {n:,} "
                         "samples; ask for fewer (at most the samples with a face)")


def _read_samples(source: Any, model: str, space: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(seeds [N] ascending, latents [N, D], embeddings [N, E], provenance of the source)."""
    from facelatent.boundaries.sources import store_latents

    if isinstance(source, Mapping):
        missing = [k for k in ("seeds", "latents", "embeddings") if k not in source]
        if missing:
            raise ValueError(f"samples as a mapping needs the keys 'seeds', 'latents' and "
                             f"'embeddings'; missing {missing}")
        seeds, x, emb = (np.asarray(source[k]) for k in ("seeds", "latents", "embeddings"))
        info = {"store": None, "generator": source.get("generator")}
    else:
        emb = source.identity(model)        # first: a store without `model` fails cheaply
        seeds, x = source.seeds(), store_latents(source, space)
        info = {"store": str(source.path), "generator": source.spec.generator}
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

