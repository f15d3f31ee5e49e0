"""One self-contained HTML page about a synthetic dataset's quality, beside a baseline dataset.

    summary = build_quality_report("runs/exfacegan", "quality.html", baseline="runs/exfacegan_random")

Sections: the verification metrics of both datasets side by side (EER, FNMR at FMR = 1e-3 and
1e-2, genuine and impostor score statistics, identity collisions), their genuine and impostor
score histograms in one figure, their DET curves, the intra-class spread of every attribute
(beside LFW's own when its folder is given), the share of pairs the measuring recogniser takes
for one person at its LFW-calibrated threshold, for a varied dataset how much identity each kind
of move costs, a grid of crops of each, with ``comparison`` an `fr compare`'s LFW table, verdict
and DET curves, and the manifest facts (sampling mode, offsets, label model, counts).
Both datasets are measured with one recogniser, the one that did not label the dataset's
identity boundaries (see `facelatent.datasets.quality.measuring_model`). Like
`facelatent.evaluation.report`, CSS is inline and every image is a base64 `data:` URI.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.datasets.quality import (
    DatasetTable,
    dataset_quality,
    det_curve,
    measuring_model,
    read_dataset,
    verification_scores,
)
from facelatent.evaluation.report import _e, _img, _num, _table, write_page

__all__ = ["build_quality_report", "crop_grid_png", "det_png", "score_histograms_png"]

COLORS = ("tab:blue", "tab:orange")


@dataclass(frozen=True)
class Measured:
    """One dataset with its scores and metrics, as the report draws them."""

    label: str               # "dataset: <folder>" or "baseline: <folder>"
    table: DatasetTable
    genuine: np.ndarray      # [G] float64 genuine cosines
    impostor: np.ndarray     # [I] float64 impostor cosines
    quality: dict[str, Any]  # dataset_quality(...)


def _measure(role: str, table: DatasetTable, model: str, max_impostor: int, seed: int) -> Measured:
    emb = table.embedding(model)
    ok = np.isfinite(emb).all(axis=1)
    genuine, impostor = verification_scores(emb[ok], table.labels[ok], max_impostor=max_impostor,
                                            seed=seed)
    q = dataset_quality(table, model, scores=(genuine, impostor))
    return Measured(f"{role}: {table.path.name}", table, genuine, impostor, q)


# -- figures --------------------------------------------------------------------------------------
def score_histograms_png(measured: Sequence[Measured], bins: int = 100) -> bytes:
    """Genuine (filled) and impostor (dashed) cosine histograms of every dataset, one colour each,
    as densities on one axis, with each dataset's EER threshold dotted."""
    from facelatent.evaluation.plots import _png, _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    every = [s for m in measured for s in (m.genuine, m.impostor) if s.size]
    edges = (np.linspace(min(s.min() for s in every), max(s.max() for s in every), bins + 1)
             if every else bins)
    for m, color in zip(measured, COLORS):
        if m.genuine.size:
            ax.hist(m.genuine, bins=edges, density=True, histtype="stepfilled", alpha=0.25, color=color,
                    label=f"{m.label} genuine ({m.genuine.size})")
        if m.impostor.size:
            ax.hist(m.impostor, bins=edges, density=True, histtype="step", linestyle="--", color=color,
                    label=f"{m.label} impostor ({m.impostor.size})")
        if m.quality["eer"]:
            ax.axvline(m.quality["eer"]["threshold"], color=color, linestyle=":", linewidth=1)
    ax.set_xlabel(f"cosine similarity ({measured[0].quality['model']})")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def det_png(measured: Sequence[Measured]) -> bytes:
    """DET curves, FNMR against FMR on a log axis, with each dataset's EER point."""
    from facelatent.evaluation.plots import _png, _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m, color in zip(measured, COLORS):
        if not (m.genuine.size and m.impostor.size):
            continue
        fmr, fnmr = det_curve(m.genuine, m.impostor)
        ax.plot(fmr, fnmr, color=color, label=m.label, drawstyle="steps-post")
        e = m.quality["eer"]["rate"]
        if e > 0:
            ax.plot([e], [e], "o", color=color, markersize=4)
    for level in (1e-3, 1e-2):
        ax.axvline(level, color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("FMR (impostor pairs accepted)")
    ax.set_ylabel("FNMR (genuine pairs rejected)")
    ax.set_title(f"DET, {measured[0].quality['model']} cosine; dots: EER", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _png(fig)


def crop_grid_png(table: DatasetTable, identities: int = 8, images: int = 8) -> tuple[bytes | None, int]:
    """(PNG bytes, unreadable count): the first `images` crops of the first `identities`
    identities, one identity per row, crops resized to the first one's size where they differ.
    Missing or unreadable crops are grey, empty slots white; None when there is nothing to show."""
    from PIL import Image

    from facelatent.images import grid, load_rgb

    if identities < 0 or images < 0:
        raise ValueError(f"grid_identities and grid_images must be >= 0, got {identities} and {images}")
    ids = np.unique(table.labels)[:identities]
    if ids.size == 0 or images == 0:
        return None, 0
    root = table.path.resolve()
    cells: list[np.ndarray | int] = []   # an image, or the grey level of an empty slot
    for ident in ids:
        rows = np.flatnonzero(table.labels == ident)[:images]
        for r in rows:
            file = (root / str(table.paths[r])).resolve()
            try:
                if not table.paths[r] or not file.is_relative_to(root):
                    raise ValueError(f"crop path {table.paths[r]!r} is not inside the dataset folder")
                cells.append(load_rgb(file))
            except (ValueError, OSError):     # missing, unreadable or damaged: a grey cell
                cells.append(128)
        cells.extend([255] * (images - rows.size))
    shape = next((c.shape for c in cells if isinstance(c, np.ndarray)), (112, 112, 3))
    tiles = [np.full(shape, c, dtype=np.uint8) if isinstance(c, int)
             else c if c.shape == shape else np.asarray(Image.fromarray(c).resize((shape[1], shape[0])))
             for c in cells]
    buf = io.BytesIO()
    Image.fromarray(grid(np.stack(tiles), cols=images, pad=2)).save(buf, format="PNG")
    return buf.getvalue(), sum(1 for c in cells if isinstance(c, int) and c == 128)


# -- sections -------------------------------------------------------------------------------------
def _pct(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _metric_rows(q: Mapping[str, Any]) -> list[str]:
    g, i, per = q["genuine"], q["impostor"], q["images_per_class"]
    cells = [
        str(q["classes"]), str(q["images"]), str(q["images_without_face"]),
        f"{per['min']} / {_num(per['median'], '{:g}')} / {per['max']}",
        f"{g['pairs']}", f"{_num(g['mean'])} ± {_num(g['std'])}",
        f"{i['pairs']}" + (f" sampled of {i['total_pairs']}" if i["sampled"] else ""),
        f"{_num(i['mean'])} ± {_num(i['std'])}",
    ]
    e = q["eer"]
    cells.append(f"{_pct(e['rate'])} at cos {_num(e['threshold'])}" if e else "-")
    for key in ("0.001", "0.01"):
        p = q["fnmr_at_fmr"].get(key)
        cells.append("-" if p is None else f"{_pct(p['fnmr'])} at cos {_num(p['threshold'])}"
                     + ("" if p["resolved"] else f" <span class='note'>(unresolved: fewer than "
                                                 f"{10 / float(key):.0f} impostor pairs)</span>"))
    c = q["collisions"]
    pairs = q["classes"] * (q["classes"] - 1) // 2
    cells.append("-" if c is None else
                 f"{c['count']} of {pairs} class pairs (cos >= {_num(c['threshold'])})")
    kept = q.get("identity_kept")
    cells.append("-" if not kept else f"{_pct(kept['genuine_same'])} of genuine, "
                 f"{_pct(kept['impostor_same'])} of impostor pairs (cos > {kept['threshold']:.4g})")
    return cells


METRIC_NAMES = ("classes", "images with a face", "images without a face",
                "images per class (min / median / max)", "genuine pairs", "genuine cos (mean ± std)",
                "impostor pairs", "impostor cos (mean ± std)", "EER", "FNMR at FMR = 1e-3",
                "FNMR at FMR = 1e-2", "identity collisions (at the FMR = 1e-3 threshold)",
                "same person at the LFW-calibrated threshold")


def _metrics_section(measured: Sequence[Measured]) -> str:
    columns = [_metric_rows(m.quality) for m in measured]
    rows = [[_e(name)] + [col[k] for col in columns] for k, name in enumerate(METRIC_NAMES)]
    out = [_table(["metric"] + [_e(m.label) for m in measured], rows, numeric=range(1, len(measured) + 1))]
    for m in measured:
        c = m.quality["collisions"]
        if c and c["top"]:
            out.append(f"<p>{_e(m.label)}: the closest class pairs (cosine of the class means)</p>")
            out.append(_table(["class a", "class b", "cos"],
                              [(_e(a), _e(b), _num(s)) for a, b, s in c["top"]], numeric=(2,)))
        if m.quality.get("note"):
            out.append(f"<p class='note'>{_e(m.label)}: {_e(m.quality['note'])}</p>")
    out.append("<p class='note'>A pair is accepted when its cosine is >= the threshold; FMR is the "
               "share of impostor pairs accepted, FNMR the share of genuine pairs rejected. A "
               "collision is a pair of classes whose renormalised mean embeddings are as close as "
               "an accepted pair at FMR = 1e-3.</p>")
    return "\n".join(out)


def _spread_section(measured: Sequence[Measured], lfw: Mapping[str, Any] | None = None) -> str:
    names: list[str] = []
    for m in measured:
        names += [n for n in m.quality["intra_class_spread"] if n not in names]
    if not names:
        return "<p class='note'>No attribute scores in the metadata.</p>"
    heads = ["attribute"] + [_e(m.label) for m in measured]
    rows = [[_e(n)] + [_num(m.quality["intra_class_spread"].get(n), "{:.4g}") for m in measured]
            for n in names]
    note = ""
    if lfw is not None:
        heads.append(_e(f"LFW ({lfw['people']} people, {lfw['faces_found']} photos)"))
        for row, n in zip(rows, names):
            row.append(_num(lfw["spreads"].get(n), "{:.4g}"))
        note = (" LFW: the same scorers on LFW's pair-list photos of people with at least two, "
                "the largest face of each photo: how much one real person varies.")
    return (_table(heads, rows, numeric=range(1, len(heads)))
            + "<p class='note'>Mean over classes of the within-class standard deviation (NaNs "
              "ignored, classes with fewer than 2 values skipped): how much an identity varies in "
              "pose, expression, age and the other scores. Higher = more varied classes."
            + _e(note) + "</p>")


def _moves_section(measured: Sequence[Measured]) -> str:
    parts = []
    for m in measured:
        cost = m.quality.get("identity_cost_of_moves")
        if not cost:
            continue
        rows = [[_e(n), f"{c['slope']:+.4f}", f"{c['se']:.4f}"] for n, c in cost["per_sd"].items()]
        parts.append(f"<h3>{_e(m.label)}</h3>" + _table(
            ["move", "change of genuine cosine per sd of the move", "standard error"], rows,
            numeric=(1, 2)) + f"<p class='note'>{cost['images']} images, intercept "
            f"{cost['intercept']:.4f} (the cosine of an unmoved image), R² {cost['r2']:.3f}.</p>")
    return "".join(parts) + (
        "<p class='note'>A least-squares fit of each image's mean cosine to the other images of its "
        "class against the size of each of its moves (|step| / the step's std over the dataset, "
        "all moves at once, with an intercept), measured with the same recogniser. Negative: that "
        "move blurs the class; the largest ones are where a smaller --attribute-scale pays.</p>")


def _grids_section(measured: Sequence[Measured], identities: int, images: int) -> str:
    parts = []
    for m in measured:
        png, bad = crop_grid_png(m.table, identities, images)
        if png is None:
            parts.append(f"<p class='note'>{_e(m.label)}: no crops to show.</p>")
            continue
        shown = ", ".join(str(v) for v in np.unique(m.table.labels)[:identities])
        note = f"; {bad} crops missing or unreadable (grey)" if bad else ""
        parts.append(_img(png, f"{_e(m.label)}: identities {_e(shown)} (one per row), their first "
                               f"{images} crops{_e(note)}", alt="crop grid"))
    return "\n".join(parts)


def _fact(value: Any) -> str:
    return _e(json.dumps(value) if isinstance(value, (dict, list)) else value)


def _facts_section(measured: Sequence[Measured]) -> str:
    parts = []
    for m in measured:
        man, t = m.table.manifest, m.table
        offsets = {k: v for k, v in man.items()
                   if (k == "max_off" or "offset" in k.lower()) and k != "max_off_raw"}
        raw = np.asarray(man.get("max_off_raw") or [], dtype=np.float64)
        if raw.size:     # one per class: summarised, not listed
            offsets["max_off_raw (min / median / max over classes)"] = (
                f"{raw.min():.4g} / {np.median(raw):.4g} / {raw.max():.4g}")
        finite = t.offset_norm[np.isfinite(t.offset_norm)]
        sides = dict(zip(*np.unique(t.side[t.side != ""], return_counts=True))) if t.side.size else {}
        rows = [("folder", _e(t.path)), ("sampling", _fact(man.get("sampling", "-"))),
                ("label model (boundaries)", _fact(man.get("label_model", "-")))]
        rows += [(_e(k), _fact(v)) for k, v in offsets.items()]
        rows += [(_e(f"{k} (planned)"), _fact(man[k])) for k in ("classes", "per_identity") if k in man]
        rows += [("largest offset_norm in the metadata", _num(finite.max() if finite.size else None)),
                 ("rows / images with a face / classes",
                  f"{t.row_labels.size} / {t.labels.size} / {np.unique(t.row_labels).size}"),
                 ("images by side", _e(", ".join(f"{k} {v}" for k, v in sides.items()) or "-")),
                 ("metadata", _e(t.source))]
        manifest = _e(json.dumps(man, indent=1, default=str))
        parts.append(f"<h3>{_e(m.label)}</h3>" + _table(["fact", "value"], rows)
                     + f"<details><summary>dataset.json</summary><pre>{manifest}</pre></details>")
    return "\n".join(parts)


def build_quality_report(dataset: str | Path, out: str | Path, *, baseline: str | Path | None = None,
                         model: str | None = None, grid_identities: int = 8, grid_images: int = 8,
                         max_impostor: int = 2_000_000, seed: int = 0,
                         lfw: str | Path | Mapping[str, Any] | None = None,
                         comparison: str | Path | None = None) -> dict[str, Any]:
    """Write the quality report of the dataset folder `dataset` (beside `baseline` when given) to
    the HTML file `out`; returns the summary: {"report", "model", "model_reason", "dataset",
    "baseline"} with each dataset's `dataset_quality` dict (baseline None when not given).

    model: the recogniser that measures both datasets; None = the one that did not label
    `dataset`'s identity boundaries ("dlib" when its label_model is "sface", else "sface").
    grid_identities x grid_images: the crops shown per dataset. max_impostor and seed: the
    impostor pair sampling of `verification_scores`. lfw: LFW's folder (its spread measured by
    `facelatent.datasets.lfw.lfw_spread`, cached) or that function's `as_dict()`, shown beside
    the datasets' intra-class spread and returned as "lfw". comparison: the folder of a finished
    `facelatent fr compare` whose table, verdict, LFW DET curves and per-fold accuracies become
    sections of the report (see `facelatent.recognition.compare_report.comparison_sections`).
    """
    extra: list[tuple[str, str, str]] = []
    if comparison is not None:        # read first: a wrong folder fails before any measuring
        from facelatent.recognition.compare_report import comparison_sections

        extra = comparison_sections(comparison)
    table = read_dataset(dataset)
    if lfw is not None and not isinstance(lfw, Mapping):
        from facelatent.datasets.lfw import lfw_spread

        lfw = lfw_spread(lfw).as_dict()
    model, why = measuring_model(table.manifest) if model is None else (model, "chosen by the caller")
    measured = [_measure("dataset", table, model, max_impostor, seed)]
    if baseline is not None:
        measured.append(_measure("baseline", read_dataset(baseline, models=[model]), model,
                                 max_impostor, seed))
    warn = [f"<p><b>Warning</b>: {_e(m.label)} was labelled with {_e(model)} itself, so its scores "
            "are not independent of the labelling.</p>"
            for m in measured if m.table.manifest.get("label_model") == model]
    lead = (f"<p>Measured with <b>{_e(model)}</b> embeddings: {_e(why)}. Impostor pairs: every one "
            f"up to {max_impostor}, else a uniform sample of that many (seed {seed}).</p>" + "".join(warn))
    pairs = [m for m in measured if m.genuine.size and m.impostor.size]
    sections = [("metrics", "Verification metrics", lead + _metrics_section(measured)),
                ("scores", "Score distributions", _img(score_histograms_png(measured), "genuine "
                 "(filled) and impostor (dashed) cosines; dotted: EER threshold", alt="histograms")
                 if pairs else "<p class='note'>No pairs to plot.</p>"),
                ("det", "DET curves", _img(det_png(pairs), "FNMR against FMR (log axis); grey lines "
                 "at FMR 1e-3 and 1e-2", alt="DET curves") if pairs else "<p class='note'>No pairs.</p>"),
                ("spread", "Intra-class spread", _spread_section(measured, lfw)),
                ("crops", "Crops", _grids_section(measured, grid_identities, grid_images)),
                ("manifest", "Manifest facts", _facts_section(measured))]
    if any(m.quality.get("identity_cost_of_moves") for m in measured):   # after the spread
        after = [key for key, _, _ in sections].index("spread") + 1
        sections.insert(after, ("moves", "Identity cost of each move", _moves_section(measured)))
    sections[-1:-1] = extra                                             # before the manifest
    title = f"facelatent dataset quality: {measured[0].table.path.name}"
    if baseline is not None:
        title += f" vs {measured[1].table.path.name}"
    write_page(out, title, sections)
    return {"report": str(out), "model": model, "model_reason": why, "dataset": measured[0].quality,
            "baseline": measured[1].quality if baseline is not None else None,
            "lfw": None if lfw is None else dict(lfw),
            "comparison": None if comparison is None else str(comparison)}
