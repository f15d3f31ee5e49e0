"""Unsupervised directions in W: SeFa (Shen & Zhou 2021) and GANSpace (Harkonen et al. 2020).

SeFa, closed form from the generator's weights. Every style input i is an affine map
`s_i = A_i w + b_i` (`StyleAffine`, `A_i` of shape `[channels_i, w_dim]`). Moving w by `t n`
changes the styles by `t A n`, where A stacks the chosen `A_i`. SeFa picks the unit n that
changes them most, `argmax ||A n||^2`: the top eigenvectors of `A^T A` (`[w_dim, w_dim]`).
Before stacking, each row of A (one output channel's weights) is scaled to unit length, so
every channel counts the same whatever its layer's scale. Eigenvectors have no sign of their
own; we fix it so that each direction's largest-magnitude component is positive.

Style inputs of MobileStyleGAN (see `facelatent.generators.mobilestylegan`), 23 at 1024 px:
index 0 the 4x4 input conv; 1 + 3b, 2 + 3b, 3 + 3b block b's upsample (IDWT), conv1 and conv2
(b = 0..6, 8x8 to 512x512 before the final IDWT); 22 the to-image layer. Low indices act on
coarse structure (pose, face shape), high ones on colour and texture.

GANSpace: PCA of w samples, computed with an SVD of the centred samples (closed form, no
randomness). The directions are the principal axes, each through the sample mean (intercept
`-axis . mean`, so the signed distance is the coordinate along the axis), with the
explained-variance ratio and the standard deviation along the axis in `metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from facelatent import __version__
from facelatent.boundaries.boundary import Boundary


def style_affines(generator: Any) -> list[nn.Module]:
    """The affine map of every style input, in W+ row order (`[num_ws]` modules with `.weight`).

    Uses `generator.style_affines()` when the generator has it; otherwise walks a torch
    MobileStyleGAN's synthesis network in the order the module docstring gives.
    """
    if hasattr(generator, "style_affines"):
        return list(generator.style_affines())
    net = getattr(generator, "synthesis_net", None)
    if net is None or not hasattr(net, "blocks"):
        raise ValueError(f"SeFa needs the generator's style weights; {type(generator).__name__} does "
                         "not expose them. Use the torch backend (get_generator(name, backend='torch'))")
    affines = [net.conv1.style]
    for block in net.blocks:
        affines += [block.up.style, block.conv1.style, block.conv2.style]
    affines.append(net.to_img.style)
    if len(affines) != generator.num_ws:
        raise ValueError(f"found {len(affines)} style affines, the generator has {generator.num_ws} "
                         "style inputs")
    return affines


def sefa(generator: Any, layers: Iterable[int] | None = None, k: int = 5) -> list[Boundary]:
    """Top-`k` SeFa directions in W for the style inputs `layers` (default: all).

    Returns `k` unit `Boundary`s (space "w", intercept 0) ordered by eigenvalue, mutually
    orthogonal; metrics hold the eigenvalue and its share of the trace, provenance the layers.
    """
    affines = style_affines(generator)
    chosen = list(range(len(affines))) if layers is None else [int(i) for i in layers]
    if not chosen:
        raise ValueError("layers is empty; give style-input indices, e.g. range(0, 8)")
    bad = [i for i in chosen if not 0 <= i < len(affines)]
    if bad:
        raise ValueError(f"layers {bad} out of range: the generator has style inputs "
                         f"0..{len(affines) - 1}")
    chosen = sorted(set(chosen))
    with torch.no_grad():
        weights = [affines[i].weight.detach().to("cpu", torch.float64).numpy() for i in chosen]
    a = np.concatenate(weights, axis=0)                   # [sum of channels, w_dim]
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    if not 0 < k <= a.shape[1]:
        raise ValueError(f"k must be in 1..{a.shape[1]} (w_dim), got {k}")
    eigvals, eigvecs = np.linalg.eigh(a.T @ a)            # ascending
    order = np.argsort(eigvals)[::-1][:k]
    total = float(eigvals.sum())
    name = getattr(generator, "name", type(generator).__name__)
    out = []
    for rank, j in enumerate(order):
        v = _fix_sign(eigvecs[:, j])
        out.append(Boundary(
            v, 0.0, space="w", attribute=f"sefa_{rank}",
            metrics={"eigenvalue": float(eigvals[j]), "eigenvalue_share": float(eigvals[j]) / total},
            provenance={"method": "sefa", "generator": name, "layers": chosen, "rank": rank,
                        "intercept_known": False, "package": f"facelatent {__version__}"}))
    return out


def ganspace(w_samples: np.ndarray, k: int = 10, space: str = "w") -> list[Boundary]:
    """Top-`k` principal axes of latent samples `[N, D]` as unit boundaries (PCA via SVD).

    Each boundary's hyperplane passes through the sample mean; metrics hold the explained
    variance ratio, the cumulative ratio and the standard deviation along the axis.
    """
    x = np.asarray(w_samples, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"w_samples must have shape [N, D], got {list(x.shape)}")
    if len(x) < 2:
        raise ValueError(f"GANSpace needs at least 2 samples, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError("w_samples contain NaN or infinite values")
    if not 0 < k <= min(len(x) - 1, x.shape[1]):
        raise ValueError(f"k must be in 1..{min(len(x) - 1, x.shape[1])} for {len(x)} samples of "
                         f"{x.shape[1]} dimensions, got {k}")
    mean = x.mean(axis=0)
    _, sing, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = sing**2 / (len(x) - 1)
    ratio = var / var.sum()
    out = []
    for rank in range(k):
        v = _fix_sign(vt[rank])
        out.append(Boundary(
            v, float(-v @ mean), space=space, attribute=f"pca_{rank}",
            metrics={"explained_variance_ratio": float(ratio[rank]),
                     "cumulative_ratio": float(ratio[: rank + 1].sum()), "std": float(np.sqrt(var[rank]))},
            provenance={"method": "ganspace", "n_samples": len(x), "rank": rank,
                        "intercept_known": True, "package": f"facelatent {__version__}"}))
    return out


def parse_layers(spec: str | Sequence[int] | None, num_ws: int) -> list[int] | None:
    """'0-3,7' -> [0, 1, 2, 3, 7] (inclusive ranges); None or 'all' -> None (every layer)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return None
    if not isinstance(spec, str):
        return [int(i) for i in spec]
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise ValueError(f"bad layer list {spec!r}: expected ranges like '0-3,7'") from None
        if b < a or a < 0 or b >= num_ws:
            raise ValueError(f"bad layer range {part.strip()!r}: layers are 0..{num_ws - 1}")
        out.extend(range(a, b + 1))
    return out


def _fix_sign(v: np.ndarray) -> np.ndarray:
    return v if v[np.argmax(np.abs(v))] >= 0 else -v
