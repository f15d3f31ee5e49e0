"""Conditional boundaries and the cosine matrix between boundaries (InterFaceGAN, Sec. 2.2).

Editing along a boundary's normal also moves every attribute whose normal is not orthogonal to
it. The conditional direction removes that: project the primal normal onto the orthogonal
complement of the span of the condition normals, then renormalise. The projection is solved by
least squares (`numpy.linalg.lstsq`, an SVD with a minimum-norm solution), so any number of
conditions works, including duplicated or linearly dependent ones, where a plain normal-equation
solve would be singular. InterFaceGAN's published `_c_` files are reproduced to a cosine above
0.999999 (tests/test_boundaries_fixtures.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from facelatent.boundaries.boundary import Boundary
from facelatent.boundaries.linear import LinearBoundary

# Below this fraction of its norm left after projection, the primal lies in the conditions' span.
MIN_RESIDUAL = 1e-6


def condition(primal: np.ndarray, conditions: Sequence[np.ndarray]) -> np.ndarray:
    """Unit direction of `primal` with its component in `span(conditions)` removed.

    primal `[D]` or layer-wise `[L, D]`; each condition the same shape (layer-wise arrays are
    flattened, so orthogonality is in the Frobenius inner product). Returns float64 of the
    primal's shape, unit length, orthogonal to every condition. The result does not depend on
    the conditions' signs or lengths. Raises `ValueError` when shapes differ, values are not
    finite, or the primal lies (numerically) in the span of the conditions.
    """
    p = np.asarray(primal, dtype=np.float64)
    if p.ndim not in (1, 2) or p.size == 0:
        raise ValueError(f"primal must have shape [D] or [L, D], got {list(p.shape)}")
    if not np.isfinite(p).all():
        raise ValueError("primal contains NaN or infinite values")
    p_norm = float(np.linalg.norm(p))
    if p_norm == 0.0:
        raise ValueError("primal is the zero vector")
    if len(conditions) == 0:
        return p / p_norm
    cols = []
    for i, c in enumerate(conditions):
        c = np.asarray(c, dtype=np.float64)
        if c.shape != p.shape:
            raise ValueError(f"condition {i} has shape {list(c.shape)}, the primal {list(p.shape)}; "
                             "all normals must live in the same space")
        if not np.isfinite(c).all():
            raise ValueError(f"condition {i} contains NaN or infinite values")
        cols.append(c.reshape(-1))
    basis = np.stack(cols, axis=1)                          # [D, k]
    coef, *_ = np.linalg.lstsq(basis, p.reshape(-1), rcond=None)
    residual = p.reshape(-1) - basis @ coef                 # the part orthogonal to the span
    r_norm = float(np.linalg.norm(residual))
    if r_norm <= MIN_RESIDUAL * p_norm:
        raise ValueError("the primal direction lies in the span of the conditions: nothing is "
                         "left after removing them; drop a condition")
    return (residual / r_norm).reshape(p.shape)


def condition_boundary(primal: Boundary, conditions: Sequence[Boundary]) -> Boundary:
    """`condition` on boundaries: same space and attribute as `primal`, intercept 0.

    The intercept is set to 0 and `provenance["intercept_known"]` to False: a conditional
    direction is for relative edits; it is not a classifier's hyperplane.
    """
    for c in conditions:
        if c.space != primal.space:
            raise ValueError(f"condition {c.attribute!r} is in space {c.space!r}, the primal "
                             f"{primal.attribute!r} in {primal.space!r}; use boundaries of one space")
    direction = condition(primal.normal, [c.normal for c in conditions])
    names = [c.attribute for c in conditions]
    provenance = {
        "method": "conditional",
        "primal": {"attribute": primal.attribute, "provenance": primal.provenance},
        "conditions": names,
        "intercept_known": False,
        "cos_to_primal": float(direction.reshape(-1) @ primal.normal.reshape(-1).astype(np.float64)),
    }
    return Boundary(direction, 0.0, space=primal.space, attribute=primal.attribute,
                    metrics={"cos_to_primal": provenance["cos_to_primal"]}, provenance=provenance)


class ConditionalBoundary(BaseEstimator):
    """Fit a primal boundary on `(latents, scores)` and condition it on fixed boundaries: the
    edit direction for one attribute that leaves the `conditions` where they are.

    `fit` fits a clone of `estimator` (its learned values are in `primal_`) and sets `normal_`
    (unit, the primal's shape, orthogonal to every condition), `cos_to_primal_` and
    `intercept_` (0: a conditional direction has no classifier hyperplane). Returns self.
    """

    def __init__(
        self,
        estimator: LinearBoundary | None = None,  # fits the primal; None = LinearBoundary()
        conditions: Sequence[Boundary] = (),      # boundaries of the same space to keep fixed
    ) -> None:
        self.estimator = estimator
        self.conditions = conditions

    def fit(self, latents: np.ndarray, scores: np.ndarray) -> ConditionalBoundary:
        """Latents `[N, D]` (or `[N, num_ws, D]`) and scores `[N]`, as `LinearBoundary.fit`."""
        est = clone(self.estimator) if self.estimator is not None else LinearBoundary()
        self.primal_ = est.fit(latents, scores)
        direction = condition(self.primal_.normal_, [c.normal for c in self.conditions])
        self.normal_ = direction.astype(np.float32)
        self.intercept_ = 0.0
        self.cos_to_primal_ = float(direction.reshape(-1) @ self.primal_.normal_.reshape(-1)
                                    .astype(np.float64))
        return self

    def to_boundary(self, attribute: str, space: str,
                    provenance: dict[str, Any] | None = None) -> Boundary:
        """The conditioned direction as a `Boundary` (what `condition_boundary` gives for the
        primal's boundary and the conditions)."""
        if not hasattr(self, "primal_"):
            raise ValueError("this ConditionalBoundary is not fitted yet; call fit(latents, "
                             "scores) first")
        primal = self.primal_.to_boundary(attribute, space, provenance)
        return condition_boundary(primal, list(self.conditions))


def correlation_matrix(boundaries: Sequence[Boundary | np.ndarray], absolute: bool = False) -> np.ndarray:
    """Cosines between boundary normals, `[K, K]` float64 with ones on the diagonal.

    Accepts `Boundary` objects or arrays (any length; each is normalised) of one shape.
    `absolute=True` returns |cos|, for "how entangled" regardless of the normals' signs.
    """
    if len(boundaries) == 0:
        raise ValueError("correlation_matrix needs at least one boundary")
    vectors = []
    for i, b in enumerate(boundaries):
        v = np.asarray(b.normal if isinstance(b, Boundary) else b, dtype=np.float64)
        if i and v.shape != vectors[0].shape:
            raise ValueError(f"boundary {i} has shape {list(v.shape)}, boundary 0 "
                             f"{list(vectors[0].shape)}; compare boundaries of one space")
        norm = float(np.linalg.norm(v))
        if norm == 0.0 or not np.isfinite(norm):
            raise ValueError(f"boundary {i} is zero or not finite")
        vectors.append(v / norm)
    flat = np.stack([v.reshape(-1) for v in vectors])
    cos = np.clip(flat @ flat.T, -1.0, 1.0)
    np.fill_diagonal(cos, 1.0)
    return np.abs(cos) if absolute else cos


def save_correlation_heatmap(cos: np.ndarray, labels: Sequence[str], path: str | Path,
                             title: str = "cosine between boundary normals") -> Path:
    """Write a `[K, K]` cosine matrix as an annotated heatmap PNG (matplotlib, else PIL).

    Colours: red for +1, white for 0, blue for -1 (a matrix of |cos| stays white to red).
    """
    cos = np.asarray(cos, dtype=np.float64)
    if cos.ndim != 2 or cos.shape[0] != cos.shape[1] or cos.shape[0] != len(labels):
        raise ValueError(f"cos must be [K, K] with K = len(labels) = {len(labels)}, got {list(cos.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _heatmap_pil(cos, list(labels), path)
        return path
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * k, 1.0 + 0.6 * k))
    im = ax.imshow(cos, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cos[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(cos[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _heatmap_pil(cos: np.ndarray, labels: list[str], path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    cell, pad = 44, 6
    label_w = max(int(font.getlength(s)) for s in labels) + 2 * pad
    k = len(labels)
    img = Image.new("RGB", (label_w + k * cell + pad, label_w + k * cell + pad), "white")
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(labels):
        draw.text((pad, label_w + i * cell + cell // 2), name, fill="black", font=font, anchor="lm")
        column = Image.new("RGB", (label_w, cell), "white")
        ImageDraw.Draw(column).text((label_w - pad, cell // 2), name, fill="black", font=font,
                                    anchor="rm")
        img.paste(column.rotate(90, expand=True), (label_w + i * cell, 0))
    for i in range(k):
        for j in range(k):
            v = float(np.clip(cos[i, j], -1.0, 1.0))
            fade = int(round(255 * (1.0 - abs(v))))
            colour = (255, fade, fade) if v >= 0 else (fade, fade, 255)
            x0, y0 = label_w + j * cell, label_w + i * cell
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=colour, outline="grey")
            draw.text((x0 + cell // 2, y0 + cell // 2), f"{v:.2f}", font=font, anchor="mm",
                      fill="white" if abs(v) > 0.6 else "black")
    img.save(path)
