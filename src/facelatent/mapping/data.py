"""What the mapping trains on: a latent store's renders, their w and identity embeddings.

A store sampled with ``--images SIZE`` keeps every render area-downsampled to ``SIZE`` px
(uint8), beside its w and the recognisers' embeddings of the full-size render:

    facelatent sample --n 4000 --psi 0.7 --images 256 --store runs/map-ffhq

:func:`load_training_data` reads them into memory once (4,000 renders at 256 px are 0.8 GB
of uint8) and splits off the last ``holdout`` rows for validation, so the split never changes
when the store is extended. Batches are float [-1, 1] tensors made on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facelatent.latents.store import LatentStore
from facelatent.mapping.proxies import PROXY_ATTRIBUTES

__all__ = ["TrainingData", "load_training_data"]


@dataclass
class TrainingData:
    """Rows of a store, in memory.

    ``images`` uint8 ``[N, 3, S, S]``; ``w`` float32 ``[N, w_dim]``; ``id_codes`` float32
    ``[N, 128]`` (unit embeddings of the full-size renders by the mapping's E_id); ``seeds``
    int64 ``[N]``; ``scores`` float32 ``[N, K]``: the pose and expression scores of
    :data:`~facelatent.mapping.proxies.PROXY_ATTRIBUTES` (None when the store has none); rows
    ``[0, n_train)`` train, the rest validate.
    """

    images: np.ndarray
    w: Tensor
    id_codes: Tensor
    seeds: np.ndarray
    n_train: int
    source: dict[str, Any]
    scores: Tensor | None = None

    @property
    def key(self) -> dict[str, Any]:
        """What a resumed run must train on again: the source without its path (a store may
        move)."""
        return {k: v for k, v in self.source.items() if k != "store"}

    @property
    def n_val(self) -> int:
        return len(self.seeds) - self.n_train

    def batch(self, rows: Tensor, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """``(images [B, 3, S, S] in [-1, 1], w [B, w_dim], id_codes [B, 128])`` of ``rows``."""
        idx = rows.cpu().numpy()
        images = torch.from_numpy(self.images[idx]).to(device, torch.float32)
        return images.div_(127.5).sub_(1.0), self.w[rows].to(device), self.id_codes[rows].to(device)


def load_training_data(store_path: str | Path, id_model: str = "sface",
                       holdout: int = 256) -> TrainingData:
    """Renders, w and ``id_model`` embeddings of every complete sample of the store.

    ``holdout``: last rows kept for validation (at most a quarter of the store). ValueError
    when the store keeps no renders or no embeddings from ``id_model``, or is too small."""
    store = LatentStore.open(store_path, read_only=True)
    spec = store.spec
    if not spec.image_size:
        raise ValueError(f"store {store_path} keeps no renders; the mapping trains on them: "
                         "sample a store with --images 256 (facelatent sample --images 256 ...)")
    if id_model not in spec.identity:
        raise ValueError(f"store {store_path} has no {id_model!r} embeddings (it has "
                         f"{', '.join(spec.identity) or 'none'}); sample it with --identity "
                         f"{id_model}")
    n = len(store)
    if holdout < 0 or n < 4 * max(holdout, 1):
        raise ValueError(f"store {store_path} holds {n} complete samples; with holdout={holdout} "
                         "it needs at least 4 times as many (extend it with a larger --n, or "
                         "pass a smaller --holdout)")
    images = store.images()
    w = torch.from_numpy(store.latents("w").astype(np.float32))
    ids = torch.from_numpy(store.identity(id_model).astype(np.float32))
    finite = torch.isfinite(w).all(1) & torch.isfinite(ids).all(1)
    if not bool(finite.all()):
        raise ValueError(f"store {store_path} has {int((~finite).sum())} samples without a "
                         f"finite w or {id_model} embedding; run facelatent store verify on it")
    scores = None
    if all(name in spec.attributes for name in PROXY_ATTRIBUTES):
        scores = torch.from_numpy(np.stack([store.scores(a) for a in PROXY_ATTRIBUTES], 1))
        if not bool(torch.isfinite(scores).all()):
            scores = None          # cross steps then refuse, saying why
    source = {"store": str(Path(store_path).resolve()), "generator": spec.generator,
              "truncation_psi": spec.truncation_psi, "seed_start": spec.seed_start,
              "samples": n, "image_size": spec.image_size, "holdout": holdout}
    return TrainingData(images, w, ids, store.seeds(), n - holdout, source, scores)
