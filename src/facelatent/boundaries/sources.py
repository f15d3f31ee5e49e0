"""Where the data of a fit come from: a `LatentStore`, or an `.npz` of plain arrays.

A store's readers return complete shards only, so a NaN or infinite latent there is not a
sample still being written: the store is damaged. `store_latents` says so, and names the
command that finds the bad shard, instead of advising to drop incomplete samples.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.errors import FacelatentError
from facelatent.io import jsonable, load_npz

__all__ = ["MANIFEST_FIELD_LIMIT", "open_store", "read_fit_data", "store_latents"]

MANIFEST_FIELD_LIMIT = 500    # manifest fields longer than this (as JSON) stay out of provenance


def open_store(store: Any) -> Any:
    """A `LatentStore` (returned as it is) or the path of one, opened read-only."""
    from facelatent.latents.store import LatentStore

    if isinstance(store, LatentStore):
        return store
    return LatentStore.open(store, read_only=True)


def store_latents(store: Any, space: str) -> np.ndarray:
    """The store's latents `[N, D]` of `space` ("z" or "w"), checked to be finite.

    A non-finite value in complete shards means a damaged store: FacelatentError naming the
    store and `facelatent store verify`.
    """
    latents = store.latents(space)
    bad = ~np.isfinite(latents).all(axis=1)
    if bad.any():
        raise FacelatentError(
            f"the store {store.path} holds NaN/inf latents ({int(bad.sum())} of {len(latents)} "
            f"samples in {space}); run `facelatent store verify {store.path}`")
    return latents


def read_fit_data(*, store: str | os.PathLike[str] | None = None,
                  npz: str | os.PathLike[str] | None = None, space: str = "w",
                  attribute: str | None = None) -> tuple[np.ndarray, np.ndarray | None,
                                                         dict[str, Any]]:
    """Latents `[N, D]` of `space`, the scores `[N]` of `attribute` (None when not asked) and
    a provenance naming the source, from exactly one of `store` or `npz`.

    The `.npz` holds an array named like the space ("w" or "z") and `scores_<attribute>`; it is
    read through `facelatent.io.load_npz` (no pickles, every malformed file one error).
    """
    if (store is None) == (npz is None):
        raise ValueError("give exactly one of store= (a LatentStore folder) or npz= (arrays)")
    if npz is not None:
        data = load_npz(npz, kind=f"an .npz with an array {space!r} and scores_<attribute>")
        if space not in data:
            raise ValueError(f"{npz} has no array {space!r} (has {sorted(data)})")
        scores = None
        if attribute is not None:
            key = f"scores_{attribute}"
            if key not in data:
                have = sorted(k[len("scores_"):] for k in data if k.startswith("scores_"))
                raise ValueError(f"{npz} has no {key!r}; scores present: {have}")
            scores = data[key]
        return data[space], scores, {"npz": str(Path(npz).resolve())}
    opened = open_store(store)
    latents = store_latents(opened, space)
    scores = opened.scores(attribute) if attribute is not None else None
    manifest = {k: v for k, v in dict(opened.manifest).items()
                if len(json.dumps(jsonable(v))) <= MANIFEST_FIELD_LIMIT}
    return latents, scores, {"store": str(Path(str(store)).resolve()), "store_manifest": manifest}
