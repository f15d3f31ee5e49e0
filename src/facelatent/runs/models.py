"""The networks a worker process uses, loaded once per process.

Every stage that renders and analyses faces (sampling a store, building a dataset, the
benchmarks) asks `load_models` for its generator and face analyzer; a worker that runs many
shards loads them once, and two stages in one process share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from facelatent.faces.analysis import FaceAnalyzer
from facelatent.generators import Generator, get_generator, resolve_device

__all__ = ["Models", "clear_models", "load_models"]


@dataclass
class Models:
    """A generator and a face analyzer (which loads each face network on first use)."""

    generator: Generator
    analyzer: FaceAnalyzer | None = None  # None: the work only renders latents
    provenance: dict[str, Any] | None = None  # model files for a manifest; None = weights'


_CACHE: dict[tuple[str, str, str], Models] = {}


def load_models(generator: str, *, backend: str = "torch", device: str = "cpu") -> Models:
    """The generator ``generator`` (registry name) on ``backend`` and a face analyzer on
    ``device``, cached for the life of the process under ``(generator, backend, device)``."""
    key = (generator, backend, str(device))
    if key not in _CACHE:
        where = resolve_device(device)
        # OpenVINO runs the generator on the CPU; the face nets may still use a GPU.
        gen_device = torch.device("cpu") if backend == "openvino" else where
        G = get_generator(generator, device=gen_device, backend=backend)
        _CACHE[key] = Models(G, FaceAnalyzer(where, batch_size=64))
    return _CACHE[key]


def clear_models() -> None:
    """Forget every cached network (tests; freeing memory between stages)."""
    _CACHE.clear()
