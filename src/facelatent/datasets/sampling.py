"""Sampling many latents of one synthetic identity along its identity boundary (ExFaceGAN).

The boundaries come from `facelatent.boundaries.identity_fit`; the dataset writer draws each
identity's latents here, seeded per (dataset seed, reference seed), so an identity's images
never depend on which other identities are built or in what order.

Offsets here are in raw latent units; the writer turns `--max-off` in sigma (the store's spread
along each normal) into raw units per identity before it calls in. The attribute directions of
the "varied" mode come from `facelatent.datasets.variation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facelatent.boundaries.identity import IdentityBoundaries

__all__ = ["SAMPLE_MODES", "SIDES", "IdentityDraw", "draw_identity", "sample_identity"]

SAMPLE_MODES = ("paper", "code", "random", "varied")
SIDES = ("same", "other")


@dataclass(frozen=True)
class IdentityDraw:
    """What `draw_identity` gives: the latents and how far each moved, and how."""

    latents: np.ndarray     # [n, D] float32
    offsets: np.ndarray     # [n] |(latent - x) . m|, the distance moved along the normal
    norms: np.ndarray       # [n] ||latent - x||
    strengths: np.ndarray   # [n, K] raw steps along each attribute direction ("varied"; else K = 0)


def sample_identity(
    boundary: IdentityBoundaries | tuple[np.ndarray, float, np.ndarray],
    n: int,
    *,
    max_off: float,                     # paper: std of a; code: upper bound of u (ExFaceGAN: 30, W)
    mode: str = "paper",                # "paper", "code" or "random" (the baseline)
    side: str = "same",                 # "same": towards the identity; "other": away from it
    reference: int | None = None,       # seed, when `boundary` holds more than one reference
    rng: np.random.Generator | None = None,
    seed: int | Sequence[int] | None = None,   # e.g. (dataset seed, reference seed)
    directions: np.ndarray | None = None,      # varied: [K, D] unit, orthogonal to the normal
    spreads: np.ndarray | None = None,         # varied: [K] std of the step along each direction
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n latents of one synthetic identity -> (latents [n, D] float32, offsets [n], norms [n]).
    `draw_identity` takes the same arguments and also returns the attribute strengths.

    With normal m (unit, towards the same side) and the reference's latent x:

    - "paper": x + s |a| m with a ~ N(0, max_off) (the paper's magnitude), s = +1 for side
      "same", -1 for "other".
    - "code": x + s u * m elementwise, u ~ U(0, max_off) [n, D], each dimension its own
      factor (ExFaceGAN's release, there `latent - u * normal` with its opposite sign).
    - "random": the baseline: x + |a| g, g a random unit direction (normalised isotropic
      Gaussian) and |a| drawn exactly as "paper" draws it, so for the same seed both have the
      same offset norms and only the direction differs. `side` makes no difference here.
    - "varied" (attribute-varied): "paper"'s step, the same |a| for the same seed, plus
      sum_k t_k d_k with t_k ~ N(0, spreads[k]) along K attribute `directions` d_k (unit, each
      orthogonal to m, see `facelatent.datasets.variation.class_directions`): pose, expression,
      age and lighting vary while the identity side moves exactly as in "paper".

    `offsets`: |(latent - x) . m|, the distance moved along the normal; `norms`:
    ||latent - x||. For "paper" both equal |a|; for "varied" the offset is |a|. Deterministic given `rng` or `seed` (one of
    them is required); the dataset builder seeds it per (dataset seed, reference seed),
    `seed=(dataset_seed, reference_seed)`, so an identity's images never depend on which
    other identities are built or in what order.
    """
    draw = draw_identity(boundary, n, max_off=max_off, mode=mode, side=side, reference=reference,
                         rng=rng, seed=seed, directions=directions, spreads=spreads)
    return draw.latents, draw.offsets, draw.norms


def draw_identity(
    boundary: IdentityBoundaries | tuple[np.ndarray, float, np.ndarray],
    n: int,
    *,
    max_off: float,
    mode: str = "paper",
    side: str = "same",
    reference: int | None = None,
    rng: np.random.Generator | None = None,
    seed: int | Sequence[int] | None = None,
    directions: np.ndarray | None = None,
    spreads: np.ndarray | None = None,
) -> IdentityDraw:
    """`sample_identity` (the same arguments and draws) with the attribute strengths [n, K] of
    mode "varied" (K = 0 for the other modes), as an `IdentityDraw`."""
    if isinstance(boundary, IdentityBoundaries):
        if reference is None:
            if len(boundary) != 1:
                raise ValueError(f"these boundaries hold {len(boundary)} references; name one "
                                 "with reference=SEED")
            reference = int(boundary.seeds[0])
        normal, _, latent = boundary[reference]
    else:
        try:
            normal, _, latent = boundary
        except (TypeError, ValueError):
            raise ValueError("boundary must be IdentityBoundaries or a (normal, intercept, latent) "
                             "tuple, as boundaries[seed] returns") from None
    m = np.asarray(normal, dtype=np.float64)
    x = np.asarray(latent, dtype=np.float64)
    if m.ndim != 1 or x.shape != m.shape:
        raise ValueError(f"normal and latent must both have shape [D], got {list(m.shape)} and "
                         f"{list(x.shape)}")
    if not (np.isfinite(m).all() and np.isfinite(x).all()):
        raise ValueError("normal and latent must be finite")
    m = m / np.linalg.norm(m)
    if mode not in SAMPLE_MODES:
        raise ValueError(f"mode must be one of {SAMPLE_MODES}, got {mode!r}")
    if side not in SIDES:
        raise ValueError(f"side must be 'same' or 'other', got {side!r}")
    if int(n) < 1 or not float(max_off) > 0.0:
        raise ValueError(f"n must be at least 1 and max_off positive, got n={n}, max_off={max_off}")
    if (rng is None) == (seed is None):
        raise ValueError("pass exactly one of rng= or seed= (e.g. "
                         "seed=(dataset_seed, reference_seed))")
    dirs, sd = _check_directions(mode, directions, spreads, m)
    gen = rng if rng is not None else np.random.default_rng(seed)   # type: ignore[arg-type]
    sign = 1.0 if side == "same" else -1.0
    strengths = np.zeros((int(n), len(dirs)))
    if mode == "code":
        step = sign * gen.uniform(0.0, float(max_off), size=(int(n), len(m))) * m
    else:
        a = np.abs(gen.normal(0.0, float(max_off), size=int(n)))
        if mode in ("paper", "varied"):
            step = sign * a[:, None] * m
        else:
            g = gen.standard_normal((int(n), len(m)))
            step = a[:, None] * g / np.linalg.norm(g, axis=1, keepdims=True)
        if mode == "varied":
            # Drawn after |a|, so "paper" and "varied" move the same distances along m.
            strengths = gen.standard_normal((int(n), len(dirs))) * sd
            step = step + strengths @ dirs
    return IdentityDraw((x + step).astype(np.float32), np.abs(step @ m),
                        np.linalg.norm(step, axis=1), strengths)


def _check_directions(mode: str, directions: np.ndarray | None, spreads: np.ndarray | None,
                      m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([K, D] unit directions, [K] spreads) for "varied"; ([0, D], [0]) for the other modes."""
    if mode != "varied":
        if directions is not None or spreads is not None:
            raise ValueError(f"directions and spreads are for mode 'varied', not {mode!r}")
        return np.zeros((0, len(m))), np.zeros(0)
    if directions is None or spreads is None:
        raise ValueError("mode 'varied' needs directions [K, D] and spreads [K] (see "
                         "facelatent.datasets.variation.class_directions)")
    d = np.asarray(directions, dtype=np.float64)
    sd = np.asarray(spreads, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != len(m) or sd.shape != (len(d),):
        raise ValueError(f"directions must be [K, {len(m)}] and spreads [K], got "
                         f"{list(d.shape)} and {list(sd.shape)}")
    if not (np.isfinite(d).all() and np.isfinite(sd).all() and (sd >= 0).all()):
        raise ValueError("directions must be finite and spreads finite and >= 0")
    if len(d) and np.abs(np.linalg.norm(d, axis=1) - 1.0).max() > 1e-4:
        raise ValueError("directions must have unit length")
    if len(d) and np.abs(d @ m).max() > 1e-4:
        raise ValueError("directions must be orthogonal to the identity normal (condition them "
                         "on it: facelatent.boundaries.condition)")
    return d, sd
