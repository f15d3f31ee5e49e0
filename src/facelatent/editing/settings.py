"""What an edit starts from: the boundary file, the store it was fitted on, and the sigma unit.

A boundary fitted by `facelatent boundary fit` records its store (provenance "store", and the
store's manifest under "store_manifest"), so an edit can start from the faces the boundary was
fitted on: the same generator and truncation (`generator_settings`), and strengths in units of
the spread of that store's samples along the normal (`sigma_for`). A conditional boundary
records its primal's provenance, which is looked through.

    b = load_edit_boundary("smile_w.npz")
    check_fits(b, G)                              # one line naming the file on a mismatch
    sigma, source = sigma_for(b)                  # metrics, else the store's spread
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.boundaries.boundary import Boundary, load_boundary
from facelatent.editing.apply import distance_spread, resolve_sigma

__all__ = ["DEFAULT_GENERATOR", "check_fits", "generator_settings", "load_edit_boundary",
           "sefa_layers", "sigma_for", "store_settings"]

DEFAULT_GENERATOR = "mobilestylegan-ffhq"   # when neither the caller nor the boundary names one


def load_edit_boundary(path: str | os.PathLike[str], space: str | None = None) -> Boundary:
    """The boundary file at `path` (`.npz`, or InterFaceGAN `.npy`), with `space` overriding the
    file's own (a `.npy` name does not always say). The path is kept in
    `provenance["file"]`, so later errors can name it."""
    b = load_boundary(path, space)
    if space is not None and space != b.space:
        b = Boundary(b.normal, b.intercept, space=space, attribute=b.attribute,
                     metrics=b.metrics, provenance=b.provenance)
    b.provenance.setdefault("file", str(path))
    return b


def _name(boundary: Boundary) -> str:
    prov = boundary.provenance
    return str(prov.get("file") or prov.get("source") or repr(boundary.attribute or "boundary"))


def check_fits(boundary: Boundary, target: Any, what: str | None = None) -> None:
    """Raise one ValueError naming the boundary's file when its normal does not fit `target`,
    anything with `z_dim` and `w_dim` (and `num_ws` for W+): a generator or a `StoreSpec`.
    `what` names the target in the message (default: its `name` or `generator`)."""
    label = what or getattr(target, "name", None) or getattr(target, "generator", None) or "it"
    if boundary.space == "z":
        checks = [("dimension", boundary.dim, int(target.z_dim), "z_dim")]
    else:
        checks = [("dimension", boundary.dim, int(target.w_dim), "w_dim")]
        num_ws = getattr(target, "num_ws", None)
        if boundary.space == "wp" and num_ws is not None:
            checks.append(("style inputs", boundary.normal.shape[0], int(num_ws), "num_ws"))
    for kind, have, want, field in checks:
        if have != want:
            raise ValueError(f"{_name(boundary)}: a {boundary.space!r}-space boundary of {kind} "
                             f"{have}, but {label} has {field} {want}: the boundary belongs to "
                             "another generator or latent space")


def store_settings(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of the store a boundary was fitted on, with its path under "path"; looks
    through a conditional boundary's primal. Empty when the provenance names no store."""
    for prov in (provenance, (provenance.get("primal") or {}).get("provenance") or {}):
        if prov.get("store"):
            manifest = dict(prov.get("store_manifest") or {})
            if "generator" not in manifest and Path(prov["store"]).exists():
                from facelatent.latents.store import LatentStore

                manifest = LatentStore.open(prov["store"], read_only=True).manifest
            return {**manifest, "path": prov["store"]}
    return {}


def generator_settings(boundary: Boundary, generator: str | None = None,
                       truncation_psi: float | None = None,
                       truncation_space: str | None = None) -> dict[str, Any]:
    """`{"generator", "truncation_psi", "truncation_space"}`: each as given, else the boundary's
    store's, else `DEFAULT_GENERATOR`, psi 1 and truncation in W."""
    settings = store_settings(boundary.provenance)
    return {
        "generator": generator or settings.get("generator") or DEFAULT_GENERATOR,
        "truncation_psi": (float(truncation_psi) if truncation_psi is not None
                           else float(settings.get("truncation_psi", 1.0))),
        "truncation_space": truncation_space or settings.get("truncation_space", "w"),
    }


def sefa_layers(boundary: Boundary, num_ws: int) -> list[int] | None:
    """The style inputs a SeFa direction was found on, when they are fewer than all `num_ws`:
    it edits those (None for every other boundary)."""
    prov = boundary.provenance
    layers = prov.get("layers") if prov.get("method") == "sefa" else None
    if layers and len(layers) < num_ws:
        return [int(i) for i in layers]
    return None


def sigma_for(boundary: Boundary, sigma: float | None = None,
              store: str | os.PathLike[str] | None = None,
              latents: np.ndarray | None = None) -> tuple[float, str]:
    """The "sigma" unit of an edit and where it came from: `sigma` itself ("--sigma"), the
    boundary's metrics ("boundary metrics"), else the spread along the normal of `latents`
    `[N, D]` or of the samples of `store` (default: the store the boundary was fitted on).
    ValueError naming the fixes when there is none of these."""
    from facelatent.boundaries.sources import open_store, store_latents

    if sigma is not None or "sigma" in boundary.metrics or "std" in boundary.metrics:
        return resolve_sigma(boundary, sigma), "--sigma" if sigma is not None else "boundary metrics"
    if latents is not None:
        return distance_spread(boundary, latents), f"{len(latents)} store samples"
    path = store or store_settings(boundary.provenance).get("path")
    if path is None or not Path(path).exists():
        resolve_sigma(boundary, None)  # raises, naming the fixes
    opened = open_store(path)
    check_fits(boundary, opened.spec, f"the store {path}")
    samples = store_latents(opened, "z" if boundary.space == "z" else "w")
    return distance_spread(boundary, samples), f"{len(samples)} samples of {path}"
