"""Sampling many latents of one synthetic identity along its identity boundary (ExFaceGAN).

The boundaries come from `facelatent.boundaries.identity_fit`; the dataset writer draws each
identity's latents here, seeded per (dataset seed, reference seed), so an identity's images
never depend on which other identities are built or in what order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facelatent.boundaries.identity import IdentityBoundaries

__all__ = ["SAMPLE_MODES", "SIDES", "sample_identity"]

SAMPLE_MODES = ("paper", "code", "random")
SIDES = ("same", "other")


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n latents of one synthetic identity -> (latents [n, D] float32, offsets [n], norms [n]).

    With normal m (unit, towards the same side) and the reference's latent x:

    - "paper": x + s |a| m with a ~ N(0, max_off) (the paper's magnitude), s = +1 for side
      "same", -1 for "other".
    - "code": x + s u * m elementwise, u ~ U(0, max_off) [n, D], each dimension its own
      factor (ExFaceGAN's release, there `latent - u * normal` with its opposite sign).
    - "random": the baseline: x + |a| g, g a random unit direction (normalised isotropic
      Gaussian) and |a| drawn exactly as "paper" draws it, so for the same seed both have the
      same offset norms and only the direction differs. `side` makes no difference here.

    `offsets`: |(latent - x) . m|, the distance moved along the normal; `norms`:
    ||latent - x||. For "paper" both equal |a|. Deterministic given `rng` or `seed` (one of
    them is required); the dataset builder seeds it per (dataset seed, reference seed),
    `seed=(dataset_seed, reference_seed)`, so an identity's images never depend on which
    other identities are built or in what order.
    """
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
    gen = rng if rng is not None else np.random.default_rng(seed)   # type: ignore[arg-type]
    sign = 1.0 if side == "same" else -1.0
    if mode == "code":
        step = sign * gen.uniform(0.0, float(max_off), size=(int(n), len(m))) * m
    else:
        a = np.abs(gen.normal(0.0, float(max_off), size=int(n)))
        if mode == "paper":
            step = sign * a[:, None] * m
        else:
            g = gen.standard_normal((int(n), len(m)))
            step = a[:, None] * g / np.linalg.norm(g, axis=1, keepdims=True)
    return (x + step).astype(np.float32), np.abs(step @ m), np.linalg.norm(step, axis=1)
