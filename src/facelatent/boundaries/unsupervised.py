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

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
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


class SeFa(BaseEstimator):
    """SeFa directions in W (module docstring), scikit-learn style: `fit(generator)` reads the
    style weights and returns self.

    Learned: `components_` float64 `[k, w_dim]` (unit rows, mutually orthogonal, by eigenvalue),
    `eigenvalues_` `[k]`, `eigenvalue_share_` `[k]` (share of the trace), `layers_` (the style
    inputs used, ascending) and `generator_` (the generator's name).
    """

    def __init__(
        self,
        layers: Iterable[int] | None = None,  # style inputs whose affines count; None = all
        k: int = 5,                           # directions to keep, 1..w_dim
    ) -> None:
        self.layers = layers
        self.k = k

    def fit(self, generator: Any) -> SeFa:
        affines = style_affines(generator)
        chosen = list(range(len(affines))) if self.layers is None else [int(i) for i in self.layers]
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
        if not 0 < int(self.k) <= a.shape[1]:
            raise ValueError(f"k must be in 1..{a.shape[1]} (w_dim), got {self.k}")
        eigvals, eigvecs = np.linalg.eigh(a.T @ a)            # ascending
        order = np.argsort(eigvals)[::-1][: int(self.k)]
        self.components_ = np.stack([_fix_sign(eigvecs[:, j]) for j in order])
        self.eigenvalues_ = eigvals[order]
        self.eigenvalue_share_ = self.eigenvalues_ / float(eigvals.sum())
        self.layers_ = chosen
        self.generator_ = getattr(generator, "name", type(generator).__name__)
        return self

    def to_boundaries(self) -> list[Boundary]:
        """The `k` directions as unit `Boundary`s (space "w", intercept 0, `sefa_<rank>`)."""
        if not hasattr(self, "components_"):
            raise ValueError("this SeFa is not fitted yet; call fit(generator) first")
        return [Boundary(
            v, 0.0, space="w", attribute=f"sefa_{rank}",
            metrics={"eigenvalue": float(self.eigenvalues_[rank]),
                     "eigenvalue_share": float(self.eigenvalue_share_[rank])},
            provenance={"method": "sefa", "generator": self.generator_, "layers": self.layers_,
                        "rank": rank, "intercept_known": False,
                        "package": f"facelatent {__version__}"})
            for rank, v in enumerate(self.components_)]


class GANSpace(BaseEstimator):
    """GANSpace (module docstring): PCA of latent samples via an SVD, scikit-learn style.

    `fit(latents [N, D])` returns self. Learned: `components_` float64 `[k, D]` (unit rows,
    sign-fixed), `mean_` `[D]`, `explained_variance_` `[k]`, `explained_variance_ratio_` `[k]`
    (of the total variance) and `n_samples_`.
    """

    def __init__(
        self,
        k: int = 10,          # principal axes to keep, 1..min(N - 1, D)
        space: str = "w",     # space of the samples, recorded in the boundaries ("w" or "z")
    ) -> None:
        self.k = k
        self.space = space

    def fit(self, latents: np.ndarray) -> GANSpace:
        x = np.asarray(latents, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"latents must have shape [N, D], got {list(x.shape)}")
        if len(x) < 2:
            raise ValueError(f"GANSpace needs at least 2 samples, got {len(x)}")
        if not np.isfinite(x).all():
            raise ValueError("latents contain NaN or infinite values")
        top = min(len(x) - 1, x.shape[1])
        if not 0 < int(self.k) <= top:
            raise ValueError(f"k must be in 1..{top} for {len(x)} samples of {x.shape[1]} "
                             f"dimensions, got {self.k}")
        self.mean_ = x.mean(axis=0)
        _, sing, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
        var = sing**2 / (len(x) - 1)
        k = int(self.k)
        self.components_ = np.stack([_fix_sign(v) for v in vt[:k]])
        self.explained_variance_ = var[:k]
        self.explained_variance_ratio_ = var[:k] / var.sum()
        self.n_samples_ = len(x)
        return self

    def transform(self, latents: np.ndarray) -> np.ndarray:
        """Coordinates `[N, k]` of latents `[N, D]` along the axes (through the mean)."""
        if not hasattr(self, "components_"):
            raise ValueError("this GANSpace is not fitted yet; call fit(latents) first")
        return (np.asarray(latents, dtype=np.float64) - self.mean_) @ self.components_.T

    def to_boundaries(self) -> list[Boundary]:
        """The axes as unit `Boundary`s through the mean (`pca_<rank>`; metrics: explained
        variance ratio, its cumulative sum, and the std along the axis)."""
        if not hasattr(self, "components_"):
            raise ValueError("this GANSpace is not fitted yet; call fit(latents) first")
        cumulative = np.cumsum(self.explained_variance_ratio_)
        return [Boundary(
            v, float(-v @ self.mean_), space=self.space, attribute=f"pca_{rank}",
            metrics={"explained_variance_ratio": float(self.explained_variance_ratio_[rank]),
                     "cumulative_ratio": float(cumulative[rank]),
                     "std": float(np.sqrt(self.explained_variance_[rank]))},
            provenance={"method": "ganspace", "n_samples": self.n_samples_, "rank": rank,
                        "intercept_known": True, "package": f"facelatent {__version__}"})
            for rank, v in enumerate(self.components_)]


def sefa(generator: Any, layers: Iterable[int] | None = None, k: int = 5) -> list[Boundary]:
    """`SeFa(layers, k).fit(generator).to_boundaries()`: the top-`k` SeFa directions in W as
    unit boundaries ordered by eigenvalue; metrics hold the eigenvalue and its share of the
    trace, provenance the layers."""
    return SeFa(layers=layers, k=k).fit(generator).to_boundaries()


def ganspace(w_samples: np.ndarray, k: int = 10, space: str = "w") -> list[Boundary]:
    """`GANSpace(k, space).fit(w_samples).to_boundaries()`: the top-`k` principal axes of
    latent samples `[N, D]` as unit boundaries through the sample mean."""
    return GANSpace(k=k, space=space).fit(w_samples).to_boundaries()


def _fix_sign(v: np.ndarray) -> np.ndarray:
    return v if v[np.argmax(np.abs(v))] >= 0 else -v
