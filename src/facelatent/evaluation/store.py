"""`evaluate_edit` on samples of a `LatentStore`: the store's generator, truncation, attributes
and identity rule, and the sigma unit from the boundary's metrics or the store's spread.

    ev = evaluate_store("runs/ffhq", load_boundary("smile_w.npz"), np.linspace(-3, 3, 7), n=64)

The boundary (and every condition) is checked against the store's latent sizes first, and the
store's latents for NaN (a damaged store), before any network is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelatent.boundaries.boundary import Boundary
from facelatent.evaluation.metrics import (
    EditEvaluation,
    check_run,
    evaluate_edit,
    evaluation_identity_model,
)
from facelatent.faces.analysis import FaceAnalyzer
from facelatent.generators.base import Generator

__all__ = ["compare_store", "evaluate_store", "pick_rows"]


def pick_rows(total: int, n: int, how: str = "first", seed: int = 0) -> np.ndarray:
    """Row indices of `n` of `total` samples: the first n, or a seeded random choice (sorted)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n > total:
        raise ValueError(f"n={n} is more than the {total} samples in the store; pass --n {total} or less")
    if how == "first":
        return np.arange(n)
    if how == "random":
        return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    raise ValueError(f"pick must be 'first' or 'random', got {how!r}")


def store_score_sd(store: Any, names: Sequence[str]) -> dict[str, float]:
    """The standard deviation of each named score over all of the store's samples (NaN for a
    score with no finite value): the unit edit quality puts attribute changes in."""
    out = {}
    for name in names:
        values = store.scores(name)
        out[name] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
    return out


def evaluate_store(store_path: str | Path, boundary: Boundary, strengths: Sequence[float] | np.ndarray,
                   conditions: Sequence[Boundary] = (), *, n: int = 64, pick: str = "first",
                   seed: int = 0, identity_model: str | None = None,
                   attributes: Sequence[str] | str | None = None, sigma: float | None = None,
                   generator: Generator | None = None, analyzer: FaceAnalyzer | None = None,
                   device: str = "cpu", seeds: Sequence[int] | None = None,
                   **kwargs: Any) -> EditEvaluation:
    """`evaluate_edit` on `n` samples of a LatentStore, with the store's generator, truncation,
    attributes and the identity rule. The sigma unit defaults to the boundary's metrics, else
    the spread of all the store's samples along the normal. `seeds`: evaluate these seeds
    (made as the store makes its samples) instead of store rows, e.g. held-out seeds that no
    boundary was fitted on (`n`, `pick` are then unused). `generator`, `analyzer`: networks
    to use instead of loading them (tests inject random ones). `**kwargs`: evaluate_edit's."""
    from facelatent.boundaries.sources import store_latents
    from facelatent.editing.settings import check_fits, sigma_for
    from facelatent.generators import get_generator
    from facelatent.latents.store import LatentStore

    check_run(kwargs.get("keep", 4), kwargs.get("batch", 8))
    store = LatentStore.open(store_path, read_only=True)
    spec = store.spec
    for b in (boundary, *conditions):
        check_fits(b, spec, f"the store {store_path} ({spec.generator})")
    latents = store_latents(store, "z" if boundary.space == "z" else "w")
    rows = pick_rows(len(latents), n, pick, seed) if seeds is None else None
    if seeds is not None:
        seeds = [int(v) for v in seeds]
        if not seeds:
            raise ValueError("seeds must hold at least one seed")
    unit = kwargs.get("unit", "sigma")
    sigma_source = "--sigma"
    if unit == "sigma":
        sigma, sigma_source = sigma_for(boundary, sigma, latents=latents)
    G = generator or get_generator(spec.generator, device=device)
    an = analyzer or FaceAnalyzer(device, batch_size=kwargs.get("batch", 8))
    if seeds is not None:
        start = latents_or_seeds = seeds
    else:
        latents_or_seeds = torch.from_numpy(latents[rows])
        start = store.seeds()[rows].tolist()
    ev = evaluate_edit(G, an, boundary, latents_or_seeds, strengths, conditions,
                       identity_model or evaluation_identity_model(spec.identity),
                       attributes=attributes if attributes is not None else (spec.attributes or None),
                       sigma=sigma, truncation_psi=spec.truncation_psi,
                       truncation_space=spec.truncation_space, seeds=start,
                       **kwargs)
    score_sd = store_score_sd(store, [n for n in ev.reference_scores if n in spec.attributes])
    ev.settings.update(store=str(store_path), pick=pick if seeds is None else "seeds",
                       pick_seed=seed, score_sd=score_sd,
                       held_out=seeds is not None and not np.isin(seeds, store.seeds()).any(),
                       sigma_source=sigma_source if unit == "sigma" else None,
                       store_identity=list(spec.identity))
    return ev


def compare_store(store_path: str | Path, boundaries: Sequence[Boundary],
                  strengths: Sequence[float] | np.ndarray, *, labels: Sequence[str] | None = None,
                  n: int = 64, pick: str = "first", seed: int = 0,
                  seeds: Sequence[int] | None = None, unit: str = "sigma",
                  sigma: float | None = None, identity_model: str | None = None,
                  attributes: Sequence[str] | str | None = None, batch: int = 8,
                  generator: Generator | None = None, analyzer: FaceAnalyzer | None = None,
                  device: str = "cpu", **kwargs: Any) -> dict[str, Any]:
    """`quality.compare_boundaries` on a store's faces (`n` rows, or `seeds`, e.g. held out):
    every boundary edits the same faces by the same latent distances, `strengths` in latent
    units (`unit="raw"`) or in the FIRST boundary's sigma (its metrics, else the store's spread
    along it) so that all are moved as far as the first. Score spreads are the store's."""
    from facelatent.boundaries.sources import store_latents
    from facelatent.editing.settings import check_fits, sigma_for
    from facelatent.evaluation.quality import compare_boundaries
    from facelatent.generators import get_generator
    from facelatent.latents.store import LatentStore

    check_run(0, batch)
    if unit not in ("sigma", "raw"):
        raise ValueError(f"unit must be 'sigma' or 'raw', got {unit!r}")
    store = LatentStore.open(store_path, read_only=True)
    spec = store.spec
    for b in boundaries:
        check_fits(b, spec, f"the store {store_path} ({spec.generator})")
    space = boundaries[0].space if boundaries else "w"
    latents = store_latents(store, "z" if space == "z" else "w")
    if seeds is not None:
        faces: Any = [int(v) for v in seeds]
        if not faces:
            raise ValueError("seeds must hold at least one seed")
        face_seeds = faces
    else:
        rows = pick_rows(len(latents), n, pick, seed)
        faces, face_seeds = torch.from_numpy(latents[rows]), store.seeds()[rows].tolist()
    scale, source = 1.0, "raw"
    if unit == "sigma" and boundaries:
        scale, source = sigma_for(boundaries[0], sigma, latents=latents)
    score_sd = store_score_sd(store, spec.attributes)
    G = generator or get_generator(spec.generator, device=device)
    an = analyzer or FaceAnalyzer(device, batch_size=batch)
    result = compare_boundaries(
        G, an, boundaries, faces, np.asarray(strengths, dtype=np.float64) * scale,
        identity_model=identity_model or evaluation_identity_model(spec.identity),
        score_sd=score_sd, labels=labels, truncation_psi=spec.truncation_psi,
        truncation_space=spec.truncation_space, batch=batch,
        attributes=attributes if attributes is not None else (spec.attributes or None), **kwargs)
    result["settings"].update(
        store=str(store_path), unit=unit, sigma=scale if unit == "sigma" else None,
        sigma_source=source if unit == "sigma" else None,
        strengths=[float(v) for v in strengths],
        seeds=face_seeds, held_out=seeds is not None and not np.isin(face_seeds, store.seeds()).any())
    return result
