"""Attribute variation inside a synthetic identity: the directions of the "varied" dataset mode.

A class of "paper" mode lies on one line through its reference, so its images share pose and
expression. The "varied" mode also moves each sample along the store's attribute boundaries
(yaw, pitch, smile, age; SeFa directions for lighting or hair where given), and keeps the
person by keeping those moves off the identity normal:

1. Directions: the boundary files of a folder (`facelatent boundary fit`, `directions sefa`),
   or, without one, InterFaceGAN boundaries fitted here on the identity boundaries' own store
   (`LinearBoundary`, the same fit as `facelatent boundary fit`) for `DEFAULT_ATTRIBUTES`.
2. Per identity, each direction is conditioned on the identity normal m
   (`facelatent.boundaries.condition`: the component along m removed, then renormalised), so
   a step along it leaves the distance along m, the identity side, unchanged.
3. Strengths: each conditioned direction's step is drawn from N(0, factor x s), s the spread
   (std) of the store's latents along that direction: one store-sized variation at factor 1.
   s comes from the store's covariance C as sqrt(d^T C d) (`spread_along`), so it is exact
   for every identity's own conditioned direction without projecting the store again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.boundaries.boundary import Boundary, load_boundary
from facelatent.boundaries.conditional import condition
from facelatent.boundaries.identity import spread_along

__all__ = ["BOUNDARY_SUFFIXES", "DEFAULT_ATTRIBUTES", "AttributeDirections", "attribute_directions",
           "class_directions", "fit_store_directions", "read_directions"]

# Fitted on the store when no folder is given: pose, expression and age. "smile" falls back to
# "smile_logit" in a store that scored only the logit.
DEFAULT_ATTRIBUTES = ("yaw", "pitch", "smile", "age")
BOUNDARY_SUFFIXES = (".npz", ".npy")
FIT_RATIO = 0.1   # top and bottom 10 % of the store as the classes: stores here hold 10^3-10^5


@dataclass(frozen=True, eq=False)
class AttributeDirections:
    """Attribute normals and the store covariance that measures the spread along them."""

    names: tuple[str, ...]       # [K] attribute names, e.g. ("age", "pitch", "smile", "yaw")
    normals: np.ndarray          # [K, D] float64 unit primal normals (not yet conditioned)
    covariance: np.ndarray       # [D, D] float64 covariance (ddof 0) of the store's latents
    source: str                  # the folder read, or "fitted on <store>"

    def key(self) -> dict[str, Any]:
        """What a resumed build must share: names, source and a sha256 of the normals."""
        digest = hashlib.sha256(np.ascontiguousarray(self.normals, np.float64).tobytes())
        digest.update(np.ascontiguousarray(self.covariance, np.float64).tobytes())
        return {"names": list(self.names), "source": self.source, "sha256": digest.hexdigest()}


def read_directions(folder: str | Path, space: str) -> list[Boundary]:
    """Every boundary file (`.npz`, `.npy`) of `folder`, sorted by attribute name; each must be
    in `space` ("w" or "z": the identity boundaries' space) with a [D] normal."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--attributes: {root} is not a folder of boundary files (from "
                         "`facelatent boundary fit` or `directions sefa`)")
    files = sorted(p for p in root.iterdir() if p.suffix in BOUNDARY_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"--attributes: {root} holds no .npz or .npy boundary file")
    out = [load_boundary(p, space=space) for p in files]
    for path, b in zip(files, out):
        if b.space != space or b.normal.ndim != 1:
            raise ValueError(f"--attributes: {path} is a boundary in {b.space!r} with a normal of "
                             f"shape {list(b.normal.shape)}; the identity boundaries are in "
                             f"{space!r}, so give [D] boundaries of that space")
    names = [b.attribute or p.stem for p, b in zip(files, out)]
    if len(set(names)) != len(names):
        raise ValueError(f"--attributes: {root} holds two boundaries of one attribute "
                         f"({min(n for n in names if names.count(n) > 1)!r}); keep one")
    return [b for _, b in sorted(zip(names, out), key=lambda nb: nb[0])]


def fit_store_directions(store: Any, space: str, names: Sequence[str] = DEFAULT_ATTRIBUTES,
                         seed: int = 0) -> list[Boundary]:
    """InterFaceGAN boundaries of `names` fitted on the store (`LinearBoundary` with the top
    and bottom `FIT_RATIO` of the samples, as `facelatent boundary fit --ratio 0.1` fits);
    a name the store did not score is skipped ("smile" falls back to "smile_logit")."""
    from facelatent.boundaries.linear import LinearBoundary
    from facelatent.boundaries.sources import open_store, store_latents

    opened = open_store(store)
    scored = set(opened.manifest.get("attributes", ()))
    latents = store_latents(opened, space)
    out = []
    for name in names:
        column = name if name in scored else f"{name}_logit"
        if column not in scored:
            continue
        scores = opened.scores(column)
        ok = np.isfinite(scores)
        est = LinearBoundary(ratio=FIT_RATIO, random_state=seed).fit(latents[ok], scores[ok])
        out.append(est.to_boundary(name, space, {"store": str(opened.path), "scores": column}))
    if not out:
        raise ValueError(f"the store {opened.path} scored none of {', '.join(names)}; give "
                         "boundary files with --attributes DIR")
    return out


def attribute_directions(identities: Any, attributes: str | Path | None = None,
                         seed: int = 0) -> AttributeDirections:
    """The directions of the "varied" mode for `IdentityBoundaries` `identities`: the boundary
    files of the folder `attributes`, or fitted on the identities' store when None. The store
    named in their provenance must be there either way: its covariance gives the spreads."""
    from facelatent.boundaries.identity import store_covariance

    store = (identities.provenance or {}).get("store")
    if not store or not Path(str(store)).exists():
        raise ValueError(f"mode 'varied' draws its strengths from the spread of the identity "
                         f"boundaries' store, and that store ({store or 'not named'}) is not "
                         "there; build from boundaries whose store is present")
    if attributes is None:
        found, source = fit_store_directions(store, identities.space, seed=seed), f"fitted on {store}"
    else:
        found, source = read_directions(attributes, identities.space), str(Path(attributes))
    normals = np.stack([np.asarray(b.normal, np.float64) for b in found])
    if normals.shape[1] != identities.dim:
        raise ValueError(f"the attribute boundaries have {normals.shape[1]} dimensions, the "
                         f"identity boundaries {identities.dim}; use boundaries of one generator")
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return AttributeDirections(tuple(b.attribute for b in found), normals,
                               store_covariance(store, identities.space), source)


def class_directions(directions: AttributeDirections, normal: np.ndarray,
                     factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One identity's (conditioned directions [K, D] float64 unit and orthogonal to `normal`,
    strength stds [K] = factor x the store's spread along each conditioned direction)."""
    if not (np.isfinite(factor) and factor >= 0):
        raise ValueError(f"factor (--attribute-scale) must be >= 0, got {factor}")
    m = np.asarray(normal, dtype=np.float64)
    dirs = np.stack([condition(d, [m]) for d in directions.normals])
    return dirs, float(factor) * spread_along(directions.covariance, dirs)
