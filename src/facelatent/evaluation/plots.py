"""Plots for evaluations and reports, as PNG bytes (matplotlib, Agg backend, no display).

Each function takes plain numbers (an evaluation's JSON, score arrays, a cosine matrix) and
returns the PNG file's bytes, so a report can embed them and a command can write them.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["correlation_png", "curves_png", "data_uri", "histograms_png"]

VARIANT_STYLE = {"plain": {"color": "tab:blue", "linestyle": "-"},
                 "conditional": {"color": "tab:orange", "linestyle": "--"}}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    return buf.getvalue()


def data_uri(image: bytes) -> str:
    """`data:image/png;base64,...` (or jpeg, by the bytes' signature) for an `<img src>`: the
    image travels inside the HTML."""
    import base64

    mime = "image/jpeg" if image[:3] == b"\xff\xd8\xff" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(image).decode("ascii")


def photo_jpeg(path: str | Path, max_side: int = 1400, quality: int = 88) -> bytes:
    """An image file (edit grids, face crops) as JPEG bytes at most `max_side` pixels on its
    longer side: photographs cost a tenth of their PNG size in a report, with no visible loss
    at screen size."""
    import io

    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _grid(k: int, cols: int = 4, size: float = 3.0) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    cols = min(cols, k)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * 0.8 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[k:]:
        ax.axis("off")
    return fig, flat[:k]


def _band(ax: Any, x: np.ndarray, mean: Sequence[float | None], std: Sequence[float | None] | None,
          label: str, style: Mapping[str, Any]) -> None:
    m = np.array([np.nan if v is None else v for v in mean], dtype=np.float64)
    ax.plot(x, m, marker="o", markersize=3, label=label, **style)
    if std is not None:
        sd = np.array([np.nan if v is None else v for v in std], dtype=np.float64)
        ax.fill_between(x, m - sd, m + sd, color=style["color"], alpha=0.15, linewidth=0)


def curves_png(evaluation: Mapping[str, Any]) -> bytes:
    """Re-scoring curves of an evaluation's JSON: the identity cosine, the target, the
    conditioned attributes, then every other attribute, mean +- std over faces against the
    strength; plain edits solid, conditional ones dashed."""
    x = np.asarray(evaluation["strengths"], dtype=np.float64)
    variants: Mapping[str, Any] = evaluation["variants"]
    first = next(iter(variants.values()))
    target = evaluation.get("target")
    conds = [c["score"] for c in evaluation.get("conditions", []) if c.get("score")]
    lead = [n for n in [target, *conds] if n]
    names = lead + [n for n in first["curves"] if n not in lead]
    fig, axes = _grid(1 + len(names))
    unit = "σ" if evaluation.get("unit") == "sigma" else "raw"
    title = f"{evaluation['boundary'].get('attribute', '')} ({evaluation['boundary'].get('space', '')})"
    for variant, data in variants.items():
        style = VARIANT_STYLE.get(variant, {"color": "tab:green", "linestyle": ":"})
        _band(axes[0], x, data["identity"]["mean"], data["identity"]["std"], variant, style)
        for ax, name in zip(axes[1:], names):
            curve = data["curves"].get(name)
            if curve is not None:
                _band(ax, x, curve["mean"], curve["std"], variant, style)
    axes[0].set_title(f"identity ({evaluation.get('identity_model', '')} cos)", fontsize=9)
    axes[0].legend(fontsize=7)
    for ax, name in zip(axes[1:], names):
        role = " [target]" if name == target else " [condition]" if name in conds else ""
        ax.set_title(f"{name}{role}", fontsize=9, fontweight="bold" if role == " [target]" else None)
    for ax in axes:
        ax.set_xlabel(f"strength ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    fig.suptitle(f"edit along {title}: re-scoring over {evaluation.get('n', '?')} faces", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def histograms_png(scores: Mapping[str, np.ndarray], bins: int = 50) -> bytes:
    """One histogram per attribute score (NaNs dropped), with its mean and std in the title."""
    names = list(scores)
    if not names:
        raise ValueError("histograms_png needs at least one score array")
    fig, axes = _grid(len(names), cols=4, size=3.0)
    for ax, name in zip(axes, names):
        v = np.asarray(scores[name], dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            ax.hist(v, bins=bins, color="tab:blue", alpha=0.8)
            ax.set_title(f"{name}\nmean {v.mean():.3g}, std {v.std():.3g}, n {v.size}", fontsize=8)
        else:
            ax.set_title(f"{name}: no finite values", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def correlation_png(cos: np.ndarray, labels: Sequence[str],
                    title: str = "cosine between boundary normals") -> bytes:
    """The annotated heatmap of `facelatent boundary correlate`, as PNG bytes."""
    from facelatent.boundaries.conditional import save_correlation_heatmap

    with tempfile.TemporaryDirectory() as tmp:
        path = save_correlation_heatmap(cos, labels, Path(tmp) / "heatmap.png", title=title)
        return path.read_bytes()
