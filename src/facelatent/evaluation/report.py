"""`facelatent report`: one self-contained HTML page about a store and what was made from it.

    build_report("runs/ffhq", "report.html", boundaries=["runs/boundaries"],
                 evaluations=["runs/eval"], edits=["runs/edits/smile"])

Sections: the store (manifest, models and versions, runs, timings and throughput from the
shard records), score histograms, the boundary metrics beside InterFaceGAN's published PGGAN
validation accuracies, the cosine heatmap between boundaries of each space, edit grids (from
`facelatent edit` and `facelatent evaluate` folders) and the evaluations' re-scoring and
identity curves. CSS is inline and every image is a base64 `data:` URI, so the file opens
anywhere, offline, and makes no request.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from facelatent import __version__

__all__ = ["INTERFACEGAN_PGGAN_VAL", "Results", "build_report", "collect_boundary_files"]

# Validation accuracy (%) of InterFaceGAN's PGGAN-CelebA-HQ boundaries (Shen et al. 2020,
# Table 1): a reference for what a good boundary reaches, not a number to tune to.
INTERFACEGAN_PGGAN_VAL = {"pose": 100.0, "smile": 96.9, "age": 97.9, "gender": 98.7, "eyeglasses": 95.6}
_REFERENCE_NAME = {"yaw": "pose", "pose": "pose", "smile": "smile", "smile_logit": "smile",
                   "age": "age", "gender": "gender", "gender_logit": "gender",
                   "eyeglasses": "eyeglasses"}

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; } figure { margin: 1em 0; }
figcaption { font-size: .85em; color: #555; } code { font-size: .85em; }
.note { color: #666; font-size: .85em; }
"""


# -- small helpers --------------------------------------------------------------------------------
def _e(value: Any) -> str:
    """Escaped text. A "://" (a URL in a model's provenance) gets a zero-width space, so the page
    shows it as text and nothing reads it as an address to fetch."""
    return html.escape(str(value)).replace("://", ":&#8203;//")


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return fmt.format(value) if isinstance(value, (int, float)) else _e(value)


def _pct(value: Any) -> str:
    return "-" if value is None or value != value else f"{100 * float(value):.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """Cells are HTML already (escape text with `_e`); columns in `numeric` align right."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes, caption: str = "", alt: str = "figure") -> str:
    """A figure with the PNG inline as a data URI; `caption` is HTML (escape text with `_e`)."""
    from facelatent.evaluation.plots import data_uri

    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri(png)}" alt="{_e(alt)}">{cap}</figure>'


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


# -- sections -------------------------------------------------------------------------------------
def _store_section(store: Any) -> str:
    m = store.manifest
    spec = store.spec
    rows = [
        ("path", _e(store.path)), ("generator", _e(spec.generator)),
        ("latent sizes", f"z {spec.z_dim}, w {spec.w_dim}"),
        ("truncation", f"psi {spec.truncation_psi:g} in {_e(spec.truncation_space)}"),
        ("backend", _e(spec.backend)),
        ("samples", f"{len(store)} complete of {store.size} planned (seeds {spec.seed_start}.."
                    f"{spec.seed_start + store.size - 1}), shards of {spec.shard_size}"),
        ("attributes", _e(", ".join(spec.attributes) or "none")),
        ("identity embeddings", _e(", ".join(spec.identity) or "none")),
        ("created / updated", f"{_e(m.get('created'))} / {_e(m.get('updated'))}"),
        ("facelatent", _e(m.get("facelatent_version"))),
        ("command", f"<code>{_e(' '.join(map(str, m.get('command', []))))}</code>"),
    ]
    out = [_table(["field", "value"], rows)]
    assets = spec.model_assets
    if isinstance(assets, Mapping) and assets:
        face = assets.get("face_models")
        if isinstance(face, Mapping):
            out.append("<p>Face models: " + _e(", ".join(f"{k} from {v}" for k, v in face.items())) + "</p>")
        elif face:
            out.append(f"<p>Face models: {_e(face)}</p>")
        files = assets.get("assets")
        if isinstance(files, Mapping) and files:
            rows = [(_e(k), _e(v.get("source", "")), _e(v.get("licence", "")),
                     "<br>".join(f"{_e(f)} {_e(str(h)[:16])}" for f, h in (v.get("sha256") or {}).items()))
                    for k, v in files.items()]
            out.append(_table(["asset", "source (package and version)", "licence",
                               "files (sha256, first 16)"], rows))
    out.append(_throughput(m))
    return "\n".join(out)


def _throughput(m: Mapping[str, Any]) -> str:
    shards = m.get("shards", {})
    if not shards:
        return "<p class='note'>No complete shards yet.</p>"
    rows_total = sum(int(r.get("rows", 0)) for r in shards.values())
    stages: dict[str, float] = {}
    for rec in shards.values():
        for k, v in (rec.get("seconds") or {}).items():
            stages[k] = stages.get(k, 0.0) + float(v)
    compute = sum(stages.values())
    devices = sorted({str(r.get("device")) for r in shards.values() if r.get("device")})
    parts = [f"<p>{rows_total} samples in {len(shards)} complete shards; compute time "
             + ", ".join(f"{_e(k)} {v:.1f} s" for k, v in stages.items())
             + (f" = {compute:.1f} s, {rows_total / compute:.2f} samples/s" if compute > 0 else "")
             + (f" on {_e(', '.join(devices))}" if devices else "") + ".</p>"]
    runs = sorted(m.get("runs", []), key=lambda r: str(r.get("started", "")))
    done = sorted(((_parse_time(r.get("completed")), int(r.get("rows", 0))) for r in shards.values()),
                  key=lambda t: (t[0] is None, t[0] or datetime.min))
    table = []
    for i, run in enumerate(runs):
        start = _parse_time(run.get("started"))
        stop = _parse_time(runs[i + 1].get("started")) if i + 1 < len(runs) else None
        mine = [(t, r) for t, r in done if t is not None and start is not None and t >= start
                and (stop is None or t < stop)]
        rows = sum(r for _, r in mine)
        wall = (max(t for t, _ in mine) - start).total_seconds() if mine and start else None
        rate = rows / wall if wall else None
        command = " ".join(map(str, run.get("command", [])))
        table.append((_e(run.get("started", "")), f"<code>{_e(command)}</code>",
                      _e(f"{run.get('engine', '')} {run.get('device', '')} batch {run.get('batch', '')}"),
                      str(rows), _num(wall, "{:.0f}"), _num(rate, "{:.2f}")))
    if table:
        parts.append(_table(["run started", "command", "engine, device", "samples recorded",
                             "wall s (to last shard)", "samples/s"], table, numeric=(3, 4, 5)))
    return "\n".join(parts)


def _scores_section(store: Any) -> str:
    from facelatent.evaluation.plots import histograms_png

    if not store.spec.attributes or len(store) == 0:
        return "<p class='note'>The store holds no attribute scores.</p>"
    scores = {a: store.scores(a) for a in store.spec.attributes}
    return _img(histograms_png(scores), f"score histograms over {len(store)} samples",
                alt="score histograms")


def collect_boundary_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the .npz and .npy files in them (sorted)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        out.extend(sorted(f for f in p.iterdir() if f.suffix in (".npz", ".npy")) if p.is_dir() else [p])
    return out


def _boundaries_section(files: Sequence[Path]) -> tuple[str, str]:
    """The metrics table and the correlation heatmaps (one per space and shape)."""
    from facelatent.boundaries import correlation_matrix, load_boundary
    from facelatent.evaluation.plots import correlation_png

    if not files:
        none = "<p class='note'>No boundary files given (<code>--boundaries</code>).</p>"
        return none, none
    loaded, rows, errors = [], [], []
    for f in files:
        try:
            b = load_boundary(f)
        except (ValueError, OSError) as exc:
            errors.append(f"<li>{_e(f.name)}: {_e(exc)}</li>")
            continue
        loaded.append((f, b))
        m, prov = b.metrics, b.provenance
        ref = INTERFACEGAN_PGGAN_VAL.get(_REFERENCE_NAME.get(b.attribute, ""), None)
        rows.append((_e(f.name), _e(b.attribute), _e(b.space),
                     _e(prov.get("solver") or prov.get("method") or prov.get("format", "")),
                     _pct(m.get("val_accuracy")), _pct(m.get("remaining_accuracy")),
                     _pct(m.get("remaining_accuracy_interfacegan")), _num(m.get("stability")), _num(ref, "{:.1f}"),
                     _e(m.get("n_train", "")), _num(m.get("sigma", m.get("std")), "{:.3g}"),
                     "yes" if prov.get("intercept_known", True) else "no"))
    table = _table(["file", "attribute", "space", "solver", "val acc %",
                    "remaining acc % (median labels)", "remaining acc % (InterFaceGAN's midpoint labels)",
                    "stability (cos)", "InterFaceGAN PGGAN val % (reference)", "n train", "sigma",
                    "intercept"], rows, numeric=(4, 5, 6, 7, 8, 9, 10))
    table += ("<p class='note'>Reference: InterFaceGAN's published validation accuracies of its "
              "PGGAN (CelebA-HQ) boundaries, pose / smile / age / gender / eyeglasses = 100 / 96.9 / "
              "97.9 / 98.7 / 95.6: another generator and other attribute models, shown for scale, "
              "not a target. Remaining accuracy is measured on the samples between the two "
              "extremes, labelled positive above the median of all scores (ours) or at or above "
              "the midpoint (max + min) / 2 (InterFaceGAN's): only the second can be set beside "
              "InterFaceGAN's printed figures.</p>")
    if errors:
        table += f"<p>Unreadable boundary files:</p><ul>{''.join(errors)}</ul>"
    groups: dict[tuple[str, tuple[int, ...]], list[tuple[Path, Any]]] = {}
    for f, b in loaded:
        groups.setdefault((b.space, b.normal.shape), []).append((f, b))
    heat = []
    for (space, _), items in groups.items():
        if len(items) < 2:
            continue
        labels = [b.attribute or f.stem for f, b in items]
        if len(set(labels)) < len(labels):
            labels = [f.name.split(".")[0] for f, _ in items]
        cos = correlation_matrix([b for _, b in items])
        heat.append(_img(correlation_png(cos, labels, title=f"cosine between {space}-space normals"),
                         f"{space} space: cosine between boundary normals", alt="cosine heatmap"))
    return table, "\n".join(heat) or "<p class='note'>Fewer than two boundaries of one space.</p>"


class Results:
    """The `edit.json` or `evaluation.json` files under the given folders, each read safely,
    with a path check for every file they name.

    Nothing outside the given folders is read: a JSON file, or an image it names (`../x.png`,
    an absolute path, or a symlink that leads out), is checked after resolving symlinks and
    skipped with a note in the report when it lies outside the folder it was found under.
    """

    def __init__(self, paths: Sequence[str | Path], name: str) -> None:
        from facelatent.io import read_json

        self.found: list[tuple[Path, Path, dict[str, Any]]] = []   # (folder, root, data)
        self.notes: list[str] = []
        for root, folder in _find(paths, name):
            if not _inside(root, folder / name):
                self.notes.append(f"skipped {folder / name}: it leads outside {root}")
                continue
            try:
                self.found.append((folder, root, read_json(folder / name, kind=name)))
            except (ValueError, OSError) as exc:
                self.notes.append(f"skipped {folder / name}: {exc}")

    def image(self, folder: Path, root: Path, name: Any) -> Path | None:
        """``folder / name`` when it is a file inside ``root`` (symlinks resolved), else None
        (with a note when it was refused for lying outside)."""
        if not isinstance(name, str) or not name:
            return None
        path = folder / name
        if not _inside(root, path):
            self.notes.append(f"skipped {name!r} named in {folder}: it lies outside {root}")
            return None
        return path if path.is_file() else None


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path``, symlinks resolved, lies under the folder ``root`` (also resolved)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):     # a symlink loop
        return False


def _find(paths: Sequence[str | Path], name: str) -> list[tuple[Path, Path]]:
    """``(root, folder)`` of each folder holding `name`: each given folder that has it, else
    those below it; ``root`` is the folder as given (the file's folder for a file)."""
    out: list[tuple[Path, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file() and p.name == name:
            out.append((p.parent, p.parent))
        elif (p / name).is_file():
            out.append((p, p))
        elif p.is_dir():
            out.extend((p, f.parent) for f in sorted(p.rglob(name)))
    return out


def _notes(results: Sequence[Results]) -> str:
    notes = [n for r in results for n in r.notes]
    return "".join(f"<p class='note'>{_e(n)}</p>" for n in dict.fromkeys(notes))


def _edits_section(edits: Results, evals: Results) -> str:
    from facelatent.evaluation.plots import photo_jpeg

    parts = []
    for d, root, info in edits.found:
        grid = edits.image(d, root, "grid.png")
        if grid is not None:
            b = info.get("boundary") or {}
            conds = ", ".join(map(str, info.get("conditions") or [])) or "none"
            parts.append(_img(photo_jpeg(grid),
                              f"{_e(b.get('attribute'))} ({_e(b.get('space'))}), {_e(info.get('mode'))}, "
                              f"unit {_e(info.get('unit'))}, layers {_e(info.get('layers') or 'all')}, "
                              f"conditions {_e(conds)}; {_e(d)}", alt="edit grid"))
    for d, root, data in evals.found:
        files = data.get("files")
        for key, name in (files.items() if isinstance(files, Mapping) else ()):
            grid = evals.image(d, root, name) if str(key).startswith("grid_") else None
            if grid is not None:
                parts.append(_img(photo_jpeg(grid),
                                  f"{_e((data.get('boundary') or {}).get('attribute'))}, "
                                  f"{_e(str(key)[5:])} edit ({_e(data.get('unit'))} units); {_e(d)}",
                                  alt="edit grid"))
    return ("\n".join(parts) or ("<p class='note'>No edit grids given (<code>--edits</code>, "
                                 "<code>--evaluations</code>).</p>")) + _notes([edits, evals])


def _evaluations_section(evals: Results) -> str:
    from facelatent.evaluation.plots import curves_png

    if not evals.found:
        return "<p class='note'>No evaluations given (<code>--evaluations</code>).</p>"
    rows, figures, conds = [], [], []
    for d, _, data in evals.found:
        if not isinstance(data.get("variants"), Mapping):
            continue                # not an evaluation.json of ours (skipped, no table row)
        b = data.get("boundary") or {}
        s = data["strengths"]
        for variant, v in data["variants"].items():
            ident = v["identity"]["mean"]
            unit = f"{data.get('unit')} (sigma {_num(data.get('sigma'), '{:.3g}')})"
            rows.append((_e(b.get("attribute")), _e(b.get("space")), _e(variant),
                         _e(data.get("target") or "-"), _num(v.get("monotonicity")),
                         f"{_num(ident[0])} at {s[0]:+g}", f"{_num(ident[-1])} at {s[-1]:+g}",
                         _e(data.get("identity_model")), str(data.get("n")), _e(unit)))
        for name, c in (data.get("condition_drift") or {}).items():
            conds.append((_e(b.get("attribute")), _e(name), _num(c.get("plain_mean_abs"), "{:.3g}"),
                          _num(c.get("conditional_mean_abs"), "{:.3g}"),
                          _num(c.get("plain_mean_abs_sd"), "{:.3g}"),
                          _num(c.get("conditional_mean_abs_sd"), "{:.3g}"),
                          _num(None if c.get("reduction") is None else 100 * c["reduction"], "{:.0f}%")))
        figures.append(_img(curves_png(data), f"{_e(b.get('attribute'))}: re-scoring and identity "
                                              f"curves over {data.get('n')} faces; {_e(d)}",
                            alt="re-scoring and identity curves"))
    out = [_table(["boundary", "space", "edit", "target score", "monotonicity (Spearman)",
                   "identity, low end", "identity, high end", "recogniser", "faces", "unit"],
                  rows, numeric=(4,)),
           "<p class='note'>Identity: mean cosine to the unedited face, measured with the recogniser "
           "that did not make the store's embeddings.</p>"]
    quality = [(_e((data.get("boundary") or {}).get("attribute")), _e(variant),
                *_quality_cells(v.get("quality")),
                "held out" if data.get("held_out") else "store rows")
               for _, _, data in evals.found if isinstance(data.get("variants"), Mapping)
               for variant, v in data["variants"].items() if v.get("quality")]
    if quality:
        out.append("<h3>Edit quality</h3>")
        out.append(_table(["boundary", "edit", *QUALITY_HEADER, "faces"], quality,
                          numeric=tuple(range(2, 2 + len(QUALITY_HEADER)))))
        out.append(QUALITY_NOTE)
    if conds:
        out.append("<h3>Drift of the conditioned attributes</h3>")
        out.append(_table(["boundary", "conditioned score", "plain mean |drift|",
                           "conditional mean |drift|", "plain (in score std)",
                           "conditional (in score std)", "reduction"], conds, numeric=(2, 3, 4, 5, 6)))
    return "\n".join(out + figures)


QUALITY_HEADER = ("change per latent unit (sd)", "change per sigma (sd)",
                  "identity loss per sd of change", "drift per sd of change",
                  "same person, edited faces", "identity loss at 1 sd", "distance for 1 sd")
QUALITY_NOTE = ("<p class='note'>Edit quality (<code>facelatent.evaluation.quality</code>): the "
                "target's mean change per latent unit and per sigma in units of its standard "
                "deviation; identity loss (1 − cosine, independent recogniser) and the mean |change| "
                "of the other attributes (yaw, pitch, smile, age, gender, eyeglasses, each in its "
                "sd), both per sd of target change, ± bootstrap standard error over faces (lower is "
                "better); the fraction of edited faces above the recogniser's LFW-calibrated "
                "same-person threshold; and identity loss and latent distance where the mean change "
                "reaches 1 sd.</p>")


def _quality_cells(q: Mapping[str, Any] | None) -> list[str]:
    if not q:
        return ["-"] * len(QUALITY_HEADER)
    at = q.get("at_change") or {}

    def se(key: str) -> str:
        err = q.get(f"{key}_se")
        return _num(q.get(key)) + ("" if err is None else f" ± {_num(err)}")

    return [_num(q.get("change_per_unit_sd")), _num(q.get("change_per_sigma")),
            se("identity_loss_per_change"), se("drift_per_change"), _pct(q.get("same_person_edited")),
            _num(at.get("identity_loss")), _num(at.get("distance"))]


def _comparisons_section(comparisons: Results) -> str:
    """One table per `facelatent evaluate --compare` run (comparison.json)."""
    if not comparisons.found:
        return ("<p class='note'>No boundary comparisons given (<code>facelatent evaluate "
                "--compare</code> output under <code>--evaluations</code>).</p>")
    out = []
    for d, _, data in comparisons.found:
        rows_in = data.get("rows")
        settings = data.get("settings") or {}
        if not isinstance(rows_in, list):
            continue
        rows = []
        for r in rows_in:
            if not isinstance(r, Mapping):
                continue
            m = r.get("metrics") or {}
            rows.append((_e(r.get("label")), _e(r.get("target") or "-"),
                         _pct(m.get("val_accuracy")), _pct(m.get("remaining_accuracy")),
                         _pct(m.get("remaining_accuracy_interfacegan")),
                         _num(r.get("cos_to_first")), *_quality_cells(r.get("quality"))))
        dist = ", ".join(f"{v:+g}" for v in settings.get("distances") or [])
        out.append(f"<p>{_e(d)}: {_e(settings.get('n'))} faces, latent distances {_e(dist)}, "
                   f"identity by {_e(settings.get('identity_model'))}.</p>")
        out.append(_table(["boundary", "target", "val acc %", "remaining % (median)",
                           "remaining % (InterFaceGAN)", "cos to first", *QUALITY_HEADER], rows,
                          numeric=tuple(range(2, 6 + len(QUALITY_HEADER)))))
    return "\n".join(out) + QUALITY_NOTE + _notes([comparisons])


def build_report(store_path: str | Path, out: str | Path, boundaries: Sequence[str | Path] = (),
                 evaluations: Sequence[str | Path] = (), edits: Sequence[str | Path] = (),
                 title: str | None = None) -> Path:
    """Write the report of the store at `store_path` to the HTML file `out`; returns its path.

    boundaries: boundary files or folders of them; evaluations: `facelatent evaluate` output
    folders (or folders above them); edits: `facelatent edit` output folders (or above). No
    file outside the given folders is read, whatever their JSON files name (`Results`).
    """
    from facelatent.latents.store import LatentStore

    store = LatentStore.open(store_path, read_only=True)
    evals = Results(evaluations, "evaluation.json")
    comparisons = Results(evaluations, "comparison.json")
    edit_results = Results(edits, "edit.json")
    boundary_table, heatmaps = _boundaries_section(collect_boundary_files(boundaries))
    sections = [
        ("store", "Store", _store_section(store)),
        ("scores", "Score distributions", _scores_section(store)),
        ("boundaries", "Boundaries", boundary_table),
        ("correlations", "Correlations", heatmaps),
        ("edits", "Edit grids", _edits_section(edit_results, evals)),
        ("evaluation", "Edit evaluation", _evaluations_section(evals)),
        ("comparison", "Boundary comparison", _comparisons_section(comparisons)),
    ]
    title = title or f"facelatent report: {Path(str(store_path)).name}"
    return write_page(out, title, sections)


def write_page(out: str | Path, title: str, sections: Sequence[tuple[str, str, str]]) -> Path:
    """One self-contained HTML file: a title, a navigation line and ``(id, heading, html)``
    sections."""
    nav = " · ".join(f'<a href="#{key}">{name}</a>' for key, name, _ in sections)
    body = "\n".join(f'<section id="{key}"><h2>{name}</h2>\n{content}\n</section>'
                     for key, name, content in sections)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n"
            f"<h1>{_e(title)}</h1><p class='note'>made by facelatent {_e(__version__)} on "
            f"{datetime.now().astimezone().isoformat(timespec='seconds')}</p><nav>{nav}</nav>\n"
            f"{body}\n</body></html>\n")
    from facelatent.io import write_bytes

    return write_bytes(out, page.encode("utf-8"))
