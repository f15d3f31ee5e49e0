"""The generator contract shared by every backend, input validation, and the registry.

Contract (DESIGN.md): `z_dim`, `w_dim`, `num_ws`, `resolution`, `w_avg`;
`mapping(z, truncation_psi) -> w [N, w_dim]`; `synthesis(ws) -> images [N, 3, H, W]` with
`ws` either `[N, w_dim]` (one style for every layer) or `[N, num_ws, w_dim]` (W+).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from facelatent import weights
from facelatent.errors import FacelatentError, WeightsError


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


class BufferedGenerator(nn.Module):
    """Base of the PyTorch generators that keep `w_avg` in a `_w_avg` buffer (which the
    subclass registers, `[w_dim]`): the contract's `device` and `w_avg`, and `forward(z)`, the
    image of z. Subclasses provide `mapping` and `synthesis`."""

    _w_avg: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self._w_avg.device

    @property
    def w_avg(self) -> torch.Tensor:
        return self._w_avg

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi))  # type: ignore[attr-defined]


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


def as_wplus(generator: Generator, ws: torch.Tensor) -> torch.Tensor:
    """The W+ code `[N, num_ws, w_dim]` that ``generator.synthesis(ws)`` draws: a single w
    `[N, w_dim]` repeated per style input, or, for a generator that truncates its first rows
    itself (StyleGAN v1 as InterFaceGAN draws it, ``truncate_layers``), those rows pulled
    toward `w_avg` as its synthesis would. W+ codes are returned as given. Layer-wise edits
    start from this, so strength 0 draws the unedited face."""
    if ws.ndim == 3:
        return ws
    own = getattr(generator, "truncate_layers", None)
    if own is not None:
        return own(ws).to(ws.device, ws.dtype)
    return ws[:, None].expand(-1, int(generator.num_ws), -1)


def truncate(w: torch.Tensor, w_avg: torch.Tensor, truncation_psi: float) -> torch.Tensor:
    """`w_avg + psi * (w - w_avg)`; psi = 1 returns w unchanged."""
    if not np.isfinite(truncation_psi):
        raise ValueError(f"truncation_psi must be a finite number, got {truncation_psi}")
    if truncation_psi == 1.0:
        return w
    return torch.lerp(w_avg.to(w), w, float(truncation_psi))


_DEVICE_FORMS = "'auto', 'cpu', 'cuda', 'cuda:N' (N = GPU index) or 'mps'"


def resolve_device(device: str | torch.device | None, option: str = "device") -> torch.device:
    """'auto' (or None) picks CUDA, then MPS, then CPU; 'cpu', 'cuda', 'cuda:N' and 'mps' are
    taken as they are, once checked to exist on this machine.

    Raises ValueError naming ``option`` (e.g. "--device") for any other value, or for a device
    this machine does not have.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{option} {str(device)!r} is not a device; expected {_DEVICE_FORMS}") \
            from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{option} {str(device)!r}: this machine has no CUDA GPU; use "
                             "'auto' or 'cpu'")
        if (dev.index or 0) >= count:
            raise ValueError(f"{option} {str(device)!r}: this machine has {count} CUDA GPU(s), "
                             f"cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{option} 'mps': this machine has no Apple GPU; use 'auto' or 'cpu'")
    elif dev.type != "cpu":
        raise ValueError(f"{option} {str(device)!r} is not supported; expected {_DEVICE_FORMS}")
    return dev


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


W_AVG_FILE = "w_avg.npy"
W_AVG_SAMPLES = 100_000   # mapping outputs averaged; the estimate's noise is far below 1e-2
W_AVG_SEED = 0


class StaleCacheWarning(UserWarning):
    """A cached value did not pass its checks and is being computed again."""


def _check_w_avg(value: np.ndarray, w_dim: int) -> str | None:
    """Why ``value`` cannot be a `w_avg` of ``w_dim`` elements, or None if it can."""
    if value.shape != (w_dim,):
        return f"it has shape {list(value.shape)}, expected [{w_dim}]"
    if not np.isfinite(value).all():
        return "it holds NaN or infinite values"
    return None


def cached_w_avg(asset: str, compute: Callable[[int, int], torch.Tensor], w_dim: int, *,
                 samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> torch.Tensor:
    """The generator's `w_avg`, `[w_dim]` float32 on the CPU, from the cache of model ``asset``.

    ``compute(samples, seed)`` makes it (e.g. with `estimate_w_avg`) the first time; it is then
    cached as ``w_avg.npy`` with a record of its sha256, the sha256 of the model files it was
    made from, ``samples`` and ``seed`` (`facelatent.weights.write_derived`). A cached value is
    used only if all of these match and it is finite with shape ``[w_dim]``; a file that fails
    any check (edited, truncated, 511 long, NaN, made from other model files or with other
    settings) is never used: it is computed again, with a `StaleCacheWarning` naming the file
    and why. A computed value that fails the checks is a `WeightsError` and is not cached.
    """
    recipe = {"samples": int(samples), "seed": int(seed)}
    path = weights.derived_path(asset, W_AVG_FILE)
    why = weights.check_derived(asset, W_AVG_FILE, recipe)
    if why is None:
        try:
            value = np.load(path, allow_pickle=False)
            why = _check_w_avg(value, w_dim)
        except (OSError, ValueError, EOFError) as exc:
            why = f"it cannot be read ({exc})"
        if why is None:
            return torch.from_numpy(value.astype(np.float32))
    if why != weights.NOT_MADE:
        warnings.warn(f"{path}: {why}; computing it again from {samples:,} samples",
                      StaleCacheWarning, stacklevel=2)
    value = compute(int(samples), int(seed)).detach().cpu().float().numpy()
    bad = _check_w_avg(value, w_dim)
    if bad is not None:
        raise WeightsError(f"w_avg computed for {asset!r} is unusable: {bad}; the model files "
                           f"may be damaged: run `facelatent weights verify {asset}`")
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a handle: np.save would append .npy to a bare name
            np.save(fh, value)

    weights.write_derived(asset, W_AVG_FILE, write, recipe)
    return torch.from_numpy(value)


# --- registry ---------------------------------------------------------------------------
GeneratorFactory = Callable[..., Generator]
_REGISTRY: dict[tuple[str, str], GeneratorFactory] = {}


def register_generator(name: str, backend: str) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Decorator: make `factory(device=...)` available as `get_generator(name, backend=...)`."""

    def decorate(factory: GeneratorFactory) -> GeneratorFactory:
        _REGISTRY[(name, backend)] = factory
        return factory

    return decorate


_PREFIXES: dict[str, GeneratorFactory] = {}


def register_generator_prefix(prefix: str) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Decorator: make `factory(path, device=...)` available as `get_generator("prefix:PATH")`,
    a generator read from the user's checkpoint file (torch backend only)."""

    def decorate(factory: GeneratorFactory) -> GeneratorFactory:
        _PREFIXES[prefix] = factory
        return factory

    return decorate


def available_generators() -> dict[str, list[str]]:
    """Registered generator names, each with its backends."""
    out: dict[str, list[str]] = {}
    for name, backend in sorted(_REGISTRY):
        out.setdefault(name, []).append(backend)
    return out


def check_generator_name(name: str) -> None:
    """FacelatentError unless ``name`` is a registered generator or ``PREFIX:PATH`` of a
    registered checkpoint family (the file itself is read later); nothing is loaded, so a typo
    fails before any work is written."""
    prefix, colon, path = name.partition(":")
    if colon and prefix in _PREFIXES:
        if not path:
            raise FacelatentError(f"generator {name!r} names no file; expected {prefix}:PATH")
        return
    names = available_generators()
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        files = ", ".join(f"{p}:PATH" for p in sorted(_PREFIXES))
        files = f"; or a checkpoint file: {files}" if files else ""
        raise FacelatentError(f"unknown generator {name!r}{hint} (available: {', '.join(names)})"
                              f"{files}")


def get_generator(name: str, device: str | torch.device | None = "cpu",
                  backend: str = "torch", **kwargs: object) -> Generator:
    """Build a registered generator; model files must have been fetched already.

    ``name`` is a registered name or ``PREFIX:PATH`` for a checkpoint file of a registered
    family, e.g. ``"stylegan2:/models/ffhq.pkl"``.
    """
    check_generator_name(name)
    prefix, colon, path = name.partition(":")
    if colon and prefix in _PREFIXES:
        if backend != "torch":
            raise FacelatentError(f"generator {name!r} has no backend {backend!r} (available: torch)")
        return _PREFIXES[prefix](path, device=resolve_device(device), **kwargs)
    names = available_generators()
    if backend not in names[name]:
        raise FacelatentError(f"generator {name!r} has no backend {backend!r} "
                              f"(available: {', '.join(names[name])})")
    return _REGISTRY[(name, backend)](device=resolve_device(device), **kwargs)
