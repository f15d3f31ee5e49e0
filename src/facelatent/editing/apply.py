"""Editing latents along a boundary, with one semantics in Z, W and W+.

A boundary is the hyperplane `n . x + b = 0` with a unit normal `n`, and `d(x) = n . x + b` is
the signed distance of `x` to it (`facelatent.boundaries.boundary`). The edit moves `x` along a
unit direction `u`: the normal itself, or, with `conditions`, the normal with its components
along the condition normals removed (`facelatent.boundaries.condition`), so that the conditioned
attributes stay where they are. With `t = strength * sigma` (see "units" below):

- relative (default): `x' = x + t u`. Every latent moves the same distance, wherever it starts;
  `d` moves by exactly `t` (by `t (u . n)` with conditions, since part of the move was removed).
- absolute: `x' = x + k u` with `k = (t - d(x)) / (u . n)`, so `d(x') = t` exactly: every face
  lands at the same signed distance from the hyperplane. Needs a fitted intercept; SeFa
  directions, conditional boundaries and InterFaceGAN's `.npy` files have none.

Where the latents live:

- Z boundary: z `[N, z_dim]` is edited; `edit_images` maps the result with the generator,
  with the truncation the store used.
- W boundary: w `[N, w_dim]` is edited. With `layers` (or `num_ws`) w is broadcast to W+
  `[N, num_ws, w_dim]` and only the chosen style inputs are edited, each as a W latent of its
  own (in absolute mode each chosen style input lands at the distance). W+ latents are taken
  as they are.
- W+ boundary (`[L, D]`, space "wp"): the distance runs over all L rows (Frobenius inner
  product); row l of `u` moves style input l. With `layers`, the rows of the other style
  inputs are zeroed: relative moves by `t` along that partial direction (so `d` moves by
  `t (u_layers . n)`), absolute still lands on `t` exactly.

Units: "sigma" (default) measures strength in standard deviations of `d(x)` over the store's
samples, `boundary.metrics["sigma"]` (or `metrics["std"]` of a GANSpace axis) unless `sigma` is
passed; so "+2" means the same for every attribute, however spread out the samples are along
its normal (MODELS.md: std 1.9 for gender, 1.0 for age in W). "raw" is plain latent units.
`distance_spread(boundary, store.latents(space))` computes sigma.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facelatent.boundaries.boundary import Boundary
from facelatent.boundaries.conditional import condition
from facelatent.generators.base import Generator, as_wplus
from facelatent.images import resize
from facelatent.latents.sampling import latents_for_seeds
from facelatent.ranges import parse_layers

__all__ = ["MODES", "UNITS", "base_latents", "distance_spread", "edit_direction", "edit_images",
           "edit_latents", "resolve_sigma", "strengths_array", "synthesize"]

EDIT_FORMAT = "facelatent.edit"        # the header of edit.json
EDIT_FORMAT_VERSION = 1
MODES = ("relative", "absolute")
UNITS = ("sigma", "raw")
MIN_RATE = 1e-6  # |u . n| below this: the edit direction cannot move the distance

Latents = Tensor | np.ndarray
Layers = str | Sequence[int] | None


# -- inputs ---------------------------------------------------------------------------------------
def strengths_array(strengths: float | Sequence[float] | np.ndarray | Tensor) -> np.ndarray:
    """Strengths as float64 `[S]` (a scalar gives S = 1); ValueError when empty or not finite."""
    if isinstance(strengths, Tensor):
        strengths = strengths.detach().cpu().numpy()
    s = np.atleast_1d(np.asarray(strengths, dtype=np.float64))
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"strengths must be a number or a 1-D list of numbers, got shape {list(s.shape)}")
    if not np.isfinite(s).all():
        raise ValueError(f"strengths must be finite, got {s.tolist()}")
    return s


def resolve_sigma(boundary: Boundary, sigma: float | None = None) -> float:
    """The "sigma" unit of `boundary` in latent units: `sigma` if given, else its metrics'
    "sigma" (or "std", which GANSpace records). ValueError naming the fix when there is none."""
    value = sigma
    if value is None:
        value = boundary.metrics.get("sigma", boundary.metrics.get("std"))
    if value is None:
        raise ValueError(f"unit='sigma' needs the spread of the samples along the normal of "
                         f"{boundary.attribute or 'this boundary'!r}, and its metrics record none: pass "
                         "sigma=distance_spread(boundary, store.latents(space)) (CLI: --sigma or "
                         "--store), or edit in latent units with unit='raw' (--unit raw)")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"sigma must be a positive number, got {value}")
    return value


def distance_spread(boundary: Boundary, latents: Latents) -> float:
    """Standard deviation of the signed distance `n . x + b` over latents `[N, D]` (or
    `[N, L, D]` for a W+ boundary; `[N, D]` is broadcast to every row): the "sigma" unit."""
    x = np.asarray(latents.detach().cpu() if isinstance(latents, Tensor) else latents, np.float64)
    if boundary.space == "wp" and x.ndim == 2:
        x = np.broadcast_to(x[:, None], (len(x), *boundary.normal.shape))
    if len(x) < 2:
        raise ValueError(f"distance_spread needs at least 2 latents, got {len(x)}")
    return float(boundary.distance(x).std())


def edit_direction(boundary: Boundary, conditions: Sequence[Boundary] = ()) -> np.ndarray:
    """The unit edit direction `u` (float64, the normal's shape): the normal, or with
    `conditions` the normal made orthogonal to every condition normal."""
    for c in conditions:
        if c.space != boundary.space or c.normal.shape != boundary.normal.shape:
            raise ValueError(f"condition {c.attribute!r} is a {c.space!r} boundary of shape "
                             f"{list(c.normal.shape)}, the edited {boundary.attribute!r} a "
                             f"{boundary.space!r} one of shape {list(boundary.normal.shape)}; "
                             "condition on boundaries of the same space")
    return condition(boundary.normal, [c.normal for c in conditions])


def as_latent_tensor(latents: Latents) -> Tensor:
    if isinstance(latents, np.ndarray):
        latents = torch.from_numpy(latents)
    if not isinstance(latents, Tensor):
        raise ValueError(f"latents must be a tensor or array [N, D] or [N, num_ws, D], got "
                         f"{type(latents).__name__}")
    if not latents.is_floating_point() or not torch.isfinite(latents).all():
        raise ValueError("latents must be finite floating-point values")
    return latents


def _check_latents(x: Tensor, boundary: Boundary, space: str | None) -> None:
    name = boundary.attribute or "the boundary"
    if space is not None:
        compatible = {"z": ("z",), "w": ("w", "wp"), "wp": ("w", "wp")}
        if space not in compatible:
            raise ValueError(f"space must be 'z', 'w' or 'wp', got {space!r}")
        if space not in compatible[boundary.space]:
            raise ValueError(f"{name!r} is a {boundary.space!r}-space boundary, but the latents are "
                             f"{space!r}; edit {boundary.space!r} latents (edit_images picks them for "
                             "you), or use a boundary fitted in that space")
    if x.ndim not in (2, 3) or x.shape[0] == 0:
        raise ValueError(f"latents must have shape [N, D] or [N, num_ws, D] with N >= 1, got "
                         f"{list(x.shape)}")
    if x.shape[-1] != boundary.dim:
        raise ValueError(f"latents have dimension {x.shape[-1]}, but {name!r} is a "
                         f"{boundary.space!r}-space boundary of dimension {boundary.dim}: the "
                         "boundary belongs to another generator or latent space")
    if x.ndim == 3 and boundary.space == "z":
        raise ValueError(f"{name!r} is a Z-space boundary; W+ latents [N, num_ws, D] cannot be "
                         "edited in Z. Pass z [N, z_dim]")


def _layer_mask(layers: Layers, num_ws: int) -> Tensor:
    """`[num_ws]` float64 mask with ones on the chosen style inputs (all when `layers` is None)."""
    chosen = parse_layers(layers, num_ws, option="layers")
    mask = torch.zeros(num_ws, dtype=torch.float64)
    mask[chosen if chosen is not None else slice(None)] = 1.0
    return mask


# -- the edit -------------------------------------------------------------------------------------
def edit_latents(latents: Latents, boundary: Boundary,
                 strengths: float | Sequence[float] | np.ndarray | Tensor, *,
                 mode: str = "relative", layers: Layers = None,
                 conditions: Sequence[Boundary] = (), num_ws: int | None = None,
                 unit: str = "sigma", sigma: float | None = None,
                 space: str | None = None) -> Tensor:
    """Move `latents` along `boundary` by each of `strengths` (module docstring: semantics).

    latents: z or w `[N, D]`, or W+ `[N, num_ws, D]`, in the boundary's space (`space`, if
    given, is checked against it). strengths: `[S]` numbers, in `unit`s ("sigma" or "raw").
    layers: style inputs to edit ("0-7", "0-3,8" or a list), W and W+ only; `num_ws` is the
    generator's style-input count, needed to broadcast `[N, D]` w to W+ (given alone, it
    returns W+ with every style input edited).

    Returns `[N, S, D]` for Z, and for W without layers; `[N, S, num_ws, D]` for W+ (a "wp"
    boundary, W+ latents, or `layers`). Float32 (float64 for float64 input), on the latents'
    device. Raises ValueError for an unknown mode or unit, absolute mode without a known
    intercept, a sigma unit without a sigma, layers out of range or in Z, and latents of
    another dimension or space than the boundary.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if mode == "absolute" and not boundary.provenance.get("intercept_known", True):
        kind = boundary.provenance.get("method") or boundary.provenance.get("format") or "a direction"
        raise ValueError(f"absolute mode needs the boundary's intercept, and {boundary.attribute!r}"
                         f" ({kind}) has none: use mode='relative', or a boundary fitted with "
                         "`facelatent boundary fit`")
    x = as_latent_tensor(latents)
    _check_latents(x, boundary, space)
    scale = resolve_sigma(boundary, sigma) if unit == "sigma" else 1.0
    target = torch.from_numpy(strengths_array(strengths) * scale)            # [S]
    u = torch.from_numpy(edit_direction(boundary, conditions))
    n = torch.from_numpy(boundary.normal.astype(np.float64))
    b = boundary.intercept
    out_dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    x64 = x.detach().to("cpu", torch.float64)
    N, S = x64.shape[0], target.shape[0]

    if boundary.space == "wp":
        L = n.shape[0]
        if x64.ndim == 2:
            x64 = x64[:, None].expand(N, L, -1)
        if x64.shape[1] != L or (num_ws is not None and num_ws != L):
            raise ValueError(f"{boundary.attribute!r} is a W+ boundary for {L} style inputs; got "
                             f"latents of {x64.shape[1]} and num_ws={num_ws}")
        um = u * _layer_mask(layers, L)[:, None]                             # [L, D]
        rate = float((um * n).sum())
        dist = (x64 * n).sum(dim=(1, 2)) + b                                 # [N]
        k = _steps(mode, target, dist, rate, boundary)                       # [N, S]
        out = x64[:, None] + k[..., None, None] * um
        return out.to(x.device, out_dtype)

    rate = float(u @ n)
    if x64.ndim == 2 and layers is None and num_ws is None:                  # Z, or plain W
        k = _steps(mode, target, x64 @ n + b, rate, boundary)                # [N, S]
        return (x64[:, None] + k[..., None] * u).to(x.device, out_dtype)
    if boundary.space == "z":
        raise ValueError("layers and num_ws apply to the style inputs of W+; a Z-space boundary "
                         "edits z before the mapping network. Drop layers, or use a W boundary")
    if x64.ndim == 2:
        if num_ws is None:
            raise ValueError("layers need num_ws (the generator's style inputs, G.num_ws) to "
                             "broadcast w [N, D] to W+")
        x64 = x64[:, None].expand(N, int(num_ws), -1)
    elif num_ws is not None and num_ws != x64.shape[1]:
        raise ValueError(f"num_ws={num_ws}, but the W+ latents have {x64.shape[1]} style inputs")
    L = x64.shape[1]
    mask = _layer_mask(layers, L)                                            # [L]
    dist = x64 @ n + b                                                       # [N, L]
    if mode == "relative":
        k = target[None, :, None].expand(N, S, L)
    else:
        _check_rate(rate, boundary)
        k = (target[None, :, None] - dist[:, None, :]) / rate                # [N, S, L]
    out = x64[:, None] + (k * mask)[..., None] * u
    return out.to(x.device, out_dtype)


def _check_rate(rate: float, boundary: Boundary) -> None:
    if abs(rate) < MIN_RATE:
        raise ValueError(f"the edit direction is orthogonal to {boundary.attribute!r}'s normal on "
                         "the chosen layers, so no move reaches a given distance: choose layers "
                         "where the normal is non-zero, or use mode='relative'")


def _steps(mode: str, target: Tensor, dist: Tensor, rate: float, boundary: Boundary) -> Tensor:
    """Step lengths `[N, S]` along the direction: `t` (relative) or `(t - d) / (u . n)`."""
    if mode == "relative":
        return target[None].expand(dist.shape[0], -1)
    _check_rate(rate, boundary)
    return (target[None] - dist[:, None]) / rate


# -- images ---------------------------------------------------------------------------------------
def is_seeds(value: object) -> bool:
    if isinstance(value, (Tensor, np.ndarray)):
        return value.ndim == 1 and not torch.is_floating_point(torch.as_tensor(value))
    return isinstance(value, (range, Sequence)) and all(isinstance(v, (int, np.integer)) for v in value)


def base_latents(generator: Generator, seeds_or_latents: Sequence[int] | Latents, space: str,
                 truncation_psi: float = 1.0, truncation_space: str = "w") -> Tensor:
    """The latents an edit in `space` starts from: for integer seeds z (space "z") or w (else)
    as `facelatent sample` makes them (`truncation_psi` acting in `truncation_space`); latents
    are returned as they are (checked to be a float tensor or array)."""
    if is_seeds(seeds_or_latents):
        seeds = [int(s) for s in seeds_or_latents]  # type: ignore[union-attr]
        z, w = latents_for_seeds(generator, seeds, truncation_psi, truncation_space)
        return z if space == "z" else w
    return as_latent_tensor(seeds_or_latents)  # type: ignore[arg-type]


def synthesize(generator: Generator, latents: Tensor, space: str, truncation_psi: float = 1.0,
               truncation_space: str = "w", batch: int = 8,
               size: int | None = None) -> Iterator[Tensor]:
    """Images of latents `[M, D]` or `[M, num_ws, D]` in `space`, `batch` at a time: each
    `[k, 3, H, W]` float on the CPU (resized to `size` when given). z is mapped first, with
    `truncation_psi` when truncation acts in W (in Z the store's z is already scaled)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    with torch.no_grad():
        for start in range(0, latents.shape[0], batch):
            part = latents[start:start + batch].to(generator.device, torch.float32)
            if space == "z":
                psi = truncation_psi if truncation_space == "w" else 1.0
                part = generator.mapping(part, truncation_psi=psi)
            images = generator.synthesis(part).float().cpu()
            yield resize(images, size) if size else images


def edit_images(generator: Generator, seeds_or_latents: Sequence[int] | Latents, boundary: Boundary,
                strengths: float | Sequence[float] | np.ndarray | Tensor, *,
                truncation_psi: float = 1.0, truncation_space: str = "w", size: int | None = None,
                batch: int = 8, progress: Callable[[int], None] | None = None,
                **edit: Any) -> Tensor:
    """Edited faces `[N, S, 3, H, W]` (float RGB in [-1, 1], CPU) for N faces and S strengths.

    seeds_or_latents: integer seeds (z from `z_from_seeds`, w from the mapping with
    `truncation_psi` acting in `truncation_space`, as `facelatent sample` makes them), or
    latents in the boundary's space: z `[N, z_dim]` for a Z boundary (truncated the store's
    way), w `[N, w_dim]` or W+ `[N, num_ws, w_dim]` otherwise. `**edit`: the keywords of
    `edit_latents` (mode, layers, conditions, unit, sigma). An edited z is mapped with
    `truncation_psi` when truncation acts in W (in Z the store's z is already scaled).
    `size` resizes to `size` x `size` (default: the generator's resolution); `batch` images
    per synthesis pass; `progress(k)` after each. Holds every image in memory: pass `size`
    for many faces of a large generator.
    """
    base = base_latents(generator, seeds_or_latents, boundary.space, truncation_psi,
                        truncation_space)
    wide = boundary.space != "z" and edit.get("layers") is not None
    if wide:
        base = as_wplus(generator, base)
    edited = edit_latents(base, boundary, strengths, num_ws=generator.num_ws if wide else None,
                          **edit)
    N, S = edited.shape[:2]
    out: list[Tensor] = []
    for images in synthesize(generator, edited.flatten(0, 1), boundary.space, truncation_psi,
                             truncation_space, batch, size):
        out.append(images)
        if progress is not None:
            progress(images.shape[0])
    images = torch.cat(out)
    return images.reshape(N, S, *images.shape[1:])


# -- files ----------------------------------------------------------------------------------------
