"""The generator contract shared by every backend, input validation, and the registry.

Contract (DESIGN.md): `z_dim`, `w_dim`, `num_ws`, `resolution`, `w_avg`;
`mapping(z, truncation_psi) -> w [N, w_dim]`; `synthesis(ws) -> images [N, 3, H, W]` with
`ws` either `[N, w_dim]` (one style for every layer) or `[N, num_ws, w_dim]` (W+).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from facelatent.errors import FacelatentError


@runtime_checkable
class Generator(Protocol):
    """What every generator backend provides. Images are float RGB NCHW, nominally [-1, 1]."""

    name: str
    z_dim: int
    w_dim: int
    num_ws: int
    resolution: int
    device: torch.device

    @property
    def w_avg(self) -> torch.Tensor:
        """Mean of the mapping network's output, `[w_dim]`, the centre of truncation."""
        ...

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """`z [N, z_dim]` -> `w [N, w_dim]`, pulled toward `w_avg` by `truncation_psi`."""
        ...

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """`ws [N, w_dim]` or `[N, num_ws, w_dim]` -> images `[N, 3, resolution, resolution]`."""
        ...


def z_from_seeds(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """Latent codes for integer seeds, `[len(seeds), z_dim]` float32 on the CPU.

    Each seed's z comes from its own `numpy.random.RandomState(seed)` (the convention of
    NVIDIA's StyleGAN scripts), so it is the same in any batch and on any device.
    """
    rows = []
    for seed in seeds:
        if not 0 <= int(seed) < 2**32:
            raise ValueError(f"seeds must be integers in [0, 2**32), got {seed}")
        rows.append(np.random.RandomState(int(seed)).randn(z_dim))
    if not rows:
        raise ValueError("seeds is empty; pass at least one seed, e.g. 0-15")
    return torch.from_numpy(np.stack(rows).astype(np.float32))


def check_z(z: torch.Tensor, z_dim: int) -> None:
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"z must be a torch.Tensor of shape [N, {z_dim}], got {type(z).__name__}")
    if z.ndim != 2 or z.shape[1] != z_dim:
        raise ValueError(f"z must have shape [N, {z_dim}], got {list(z.shape)}; "
                         f"for one latent use z.reshape(1, {z_dim})")
    if not torch.isfinite(z).all():
        raise ValueError("z contains NaN or infinite values")


def check_ws(ws: torch.Tensor, w_dim: int, num_ws: int) -> torch.Tensor:
    """Validate `ws` and return it as W+ `[N, num_ws, w_dim]` (a view for `[N, w_dim]`)."""
    if not isinstance(ws, torch.Tensor):
        raise ValueError(f"ws must be a torch.Tensor, got {type(ws).__name__}")
    if ws.ndim == 2 and ws.shape[1] == w_dim:
        ws = ws.unsqueeze(1).expand(-1, num_ws, -1)
    elif not (ws.ndim == 3 and ws.shape[1] == num_ws and ws.shape[2] == w_dim):
        raise ValueError(f"ws must have shape [N, {w_dim}] (W) or [N, {num_ws}, {w_dim}] (W+), "
                         f"got {list(ws.shape)}")
    if not torch.isfinite(ws).all():
        raise ValueError("ws contains NaN or infinite values")
    return ws


def truncate(w: torch.Tensor, w_avg: torch.Tensor, truncation_psi: float) -> torch.Tensor:
    """`w_avg + psi * (w - w_avg)`; psi = 1 returns w unchanged."""
    if not np.isfinite(truncation_psi):
        raise ValueError(f"truncation_psi must be a finite number, got {truncation_psi}")
    if truncation_psi == 1.0:
        return w
    return torch.lerp(w_avg.to(w), w, float(truncation_psi))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; anything else is passed to torch.device."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def estimate_w_avg(mapping_raw: Callable[[torch.Tensor], torch.Tensor], z_dim: int,
                   n: int = 100_000, seed: int = 0, batch: int = 10_000) -> torch.Tensor:
    """Mean of `mapping_raw(z)` over `n` seeded standard-normal z, `[w_dim]` float32 on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    total: torch.Tensor | None = None
    with torch.no_grad():
        for start in range(0, n, batch):
            w = mapping_raw(torch.randn(min(batch, n - start), z_dim, generator=gen))
            part = w.double().sum(0).cpu()
            total = part if total is None else total + part
    assert total is not None
    return (total / n).float()


def cached_w_avg(path: Path, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Load `w_avg` from `path`, or compute it once and write it there atomically."""
    if path.exists():
        try:
            value = np.load(path)
            if value.ndim == 1 and np.isfinite(value).all():
                return torch.from_numpy(value.astype(np.float32))
        except (OSError, ValueError, EOFError):  # np.load raises EOFError on an empty file
            pass  # unreadable cache: recompute below
    value = compute().detach().cpu().float()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, value.numpy())
    os.replace(tmp, path)
    return value


# --- registry ---------------------------------------------------------------------------
GeneratorFactory = Callable[..., Generator]
_REGISTRY: dict[tuple[str, str], GeneratorFactory] = {}


def register_generator(name: str, backend: str) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Decorator: make `factory(device=...)` available as `get_generator(name, backend=...)`."""

    def decorate(factory: GeneratorFactory) -> GeneratorFactory:
        _REGISTRY[(name, backend)] = factory
        return factory

    return decorate


def available_generators() -> dict[str, list[str]]:
    """Registered generator names, each with its backends."""
    out: dict[str, list[str]] = {}
    for name, backend in sorted(_REGISTRY):
        out.setdefault(name, []).append(backend)
    return out


def get_generator(name: str, device: str | torch.device | None = "cpu",
                  backend: str = "torch", **kwargs: object) -> Generator:
    """Build a registered generator; model files must have been fetched already."""
    names = available_generators()
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FacelatentError(f"unknown generator {name!r}{hint} (available: {', '.join(names)})")
    if backend not in names[name]:
        raise FacelatentError(f"generator {name!r} has no backend {backend!r} "
                              f"(available: {', '.join(names[name])})")
    return _REGISTRY[(name, backend)](device=resolve_device(device), **kwargs)
