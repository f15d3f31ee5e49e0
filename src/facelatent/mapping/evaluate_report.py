"""The summary and the files of a mapping evaluation: ``summary.json`` (format
``facelatent.mapping-evaluation``), ``index.html`` (tables and grids, self-contained, from
:func:`facelatent.evaluation.report.write_page`) and a PNG per grid.

Every mean is over the pairs whose faces were found (NaN rows left out), with its standard
error; the same-person fractions count a face not found as not the same person
(:func:`facelatent.faces.calibration.identity_report`). Each baseline is compared with the
mapping pair by pair: the mean of the paired differences (mapping minus baseline) and its
standard error.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.evaluation.report import _e, _img, _num, _pct, _table, write_page
from facelatent.faces.calibration import identity_report
from facelatent.io import jsonable, write_json
from facelatent.mapping.baselines import CROSSOVER_RULE
from facelatent.mapping.evaluate import (
    METHODS,
    METRICS,
    MappingEvaluation,
    PairSetEvaluation,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "summarise_set", "write_mapping_evaluation"]

FORMAT = "facelatent.mapping-evaluation"
FORMAT_VERSION = 1
BASELINES = ("style_mix", "boundary_walk")
_LABELS = {"identity_cosine": "identity cos to identity face (higher)",
           "attribute_cosine": "identity cos to attribute face (lower)",
           "landmark_error": "landmark error / IOD (lower)", "yaw_error": "|Δyaw| deg (lower)",
           "pitch_error": "|Δpitch| deg (lower)",
           "expression_distance": "expression TV distance (lower)"}
_METHOD_NAMES = {"mapping": "mapping", "style_mix": "style mixing", "boundary_walk":
                 "boundary walk", "identity_image": "identity face itself (reference)",
                 "attribute_image": "attribute face itself (reference)",
                 "average_face": "average face, w_avg (reference)"}


def _stat(values: np.ndarray) -> dict[str, float | int]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "sem": float("nan"), "n": 0}
    sem = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
    return {"mean": float(v.mean()), "sem": sem, "n": int(v.size)}


def _verdict(name: str, diff: dict[str, dict[str, float | int]]) -> tuple[bool, str]:
    """Whether the mapping beats a baseline (higher identity at no higher landmark error, in
    the means), and one sentence that says how."""
    did, dlm = float(diff["identity_cosine"]["mean"]), float(diff["landmark_error"]["mean"])
    base = _METHOD_NAMES[name]
    if not (np.isfinite(did) and np.isfinite(dlm)):
        return False, f"{base}: not comparable (faces not found)"
    numbers = f"identity cos {did:+.3f}, landmark error {dlm:+.3f} (mapping minus {base})"
    if did > 0 and dlm <= 0:
        text = f"the mapping beats {base}: higher identity at equal or lower landmark error"
    elif did > 0:
        text = (f"trade-off: the mapping keeps identity better than {base} but matches the "
                "landmarks less well")
    elif dlm <= 0:
        text = (f"trade-off: {base} keeps identity better, the mapping matches the landmarks "
                "better")
    else:
        text = f"{base} beats the mapping on identity and landmarks"
    return did > 0 and dlm <= 0, f"{text}; {numbers}"


def summarise_set(result: PairSetEvaluation, identity_model: str) -> dict[str, Any]:
    """The JSON summary of one pair set (module docstring)."""
    methods: dict[str, Any] = {}
    for method in sorted(result.metrics, key=lambda m: METHODS.index(m) if m in METHODS
                         else len(METHODS)):
        metrics = result.metrics[method]
        entry: dict[str, Any] = {k: _stat(v) for k, v in metrics.items()}
        for key in ("identity_cosine", "attribute_cosine"):
            entry[key]["fraction_same"] = identity_report(metrics[key],
                                                          identity_model)["fraction_same"]
        methods[method] = entry
    comparison: dict[str, Any] = {}
    mapping = result.metrics.get("mapping")
    for base in BASELINES:
        if mapping is None or base not in result.metrics:
            continue
        diff = {k: _stat(mapping[k] - result.metrics[base][k]) for k in METRICS}
        wins, text = _verdict(base, diff)
        comparison[base] = {"difference": diff, "mapping_wins": wins, "verdict": text}
    out: dict[str, Any] = {
        "faces": len(result.labels), "pairs": len(result.pairs), "methods": methods,
        "comparison": comparison, "notes": list(result.notes),
        "reconstruction": {k: _stat(v) for k, v in result.reconstruction.items()}}
    if "identity_cosine" in result.reconstruction:
        out["reconstruction"]["identity_cosine"]["fraction_same"] = identity_report(
            result.reconstruction["identity_cosine"], identity_model)["fraction_same"]
    if result.sweep:
        out["crossover"] = {"chosen": result.crossover, "rule": CROSSOVER_RULE,
                            "sweep": {str(k): {m: _stat(v)["mean"] for m, v in metrics.items()}
                                      for k, metrics in result.sweep.items()}}
    if result.walk:
        out["walk"] = result.walk
    return out


# -- grids ---------------------------------------------------------------------------------------
def _png(tiles: np.ndarray, columns: list[str], rows: list[str]) -> bytes:
    from PIL import Image

    from facelatent.editing.folder import labelled_grid

    buffer = io.BytesIO()
    Image.fromarray(labelled_grid(tiles, columns, rows)).save(buffer, format="PNG")
    return buffer.getvalue()


def _grids(result: PairSetEvaluation) -> dict[str, tuple[bytes, str]]:
    """``{file stem: (png, caption)}`` for the pairs, the crossover sweep and the
    reconstructions; empty where no thumbnails were kept."""
    th, faces = result.thumbnails, result.thumbnails.get("faces")
    out: dict[str, tuple[bytes, str]] = {}
    kept = len(th.get("mapping", ()))
    if faces is None or kept == 0:
        return out
    pairs = result.pairs[:kept]
    rows = [f"{result.labels[i]} / {result.labels[j]}" for i, j in pairs]
    columns = [("identity face", faces[pairs[:, 0]]), ("attribute face", faces[pairs[:, 1]]),
               ("mapping", th["mapping"])]
    if result.crossover is not None:
        columns.append((f"style mix k={result.crossover}", th[f"style_mix_{result.crossover}"]))
    if "boundary_walk" in th:
        columns.append(("boundary walk", th["boundary_walk"]))
    tiles = np.stack([c[1] for c in columns], axis=1)
    out["pairs"] = (_png(tiles, [c[0] for c in columns], rows),
                    "rows: identity face / attribute face; columns: the inputs, then each method")
    if result.sweep:
        sweep = [faces[pairs[:, 0]], faces[pairs[:, 1]],
                 *(th[f"style_mix_{k}"] for k in result.sweep)]
        labels = ["identity", "attributes", *(f"k={k}" for k in result.sweep)]
        out["crossover"] = (_png(np.stack(sweep, axis=1), labels, rows),
                            "style mixing: the first k style inputs from the attribute face")
    recon = th.get("reconstruction")
    if recon is not None and len(recon):
        n = len(recon)
        out["reconstruction"] = (_png(np.stack([faces[:n], recon], axis=1),
                                      ["face", "mapping(face, face)"], result.labels[:n]),
                                 "reconstruction: each face as both identity and attributes")
    return out


# -- the page ------------------------------------------------------------------------------------
def _cell(stat: dict[str, Any]) -> str:
    text = _num(stat.get("mean"))
    if stat.get("sem") == stat.get("sem") and stat.get("sem") is not None:
        text += f" ± {_num(stat['sem'])}"
    if "fraction_same" in stat:
        text += f" ({_pct(stat['fraction_same'])} % same)"
    return text


def _set_section(name: str, s: dict[str, Any], grids: dict[str, tuple[bytes, str]]) -> str:
    parts = [f"<p>{s['pairs']} pairs of {s['faces']} faces.</p>"]
    rows = [[_e(_METHOD_NAMES.get(m, m)), *(_cell(s["methods"][m].get(k, {})) for k in METRICS)]
            for m in METHODS if m in s["methods"]]
    parts.append(_table(["method", *(_e(_LABELS[k]) for k in METRICS)], rows,
                        numeric=tuple(range(1, len(METRICS) + 1))))
    if s["comparison"]:
        parts.append("<ul>" + "".join(f"<li>{_e(c['verdict'])}</li>"
                                      for c in s["comparison"].values()) + "</ul>")
    rec = s["reconstruction"]
    if rec:
        parts.append(f"<p>Reconstruction (each face as both inputs): MS-SSIM "
                     f"{_cell(rec['msssim'])}, identity cos {_cell(rec['identity_cosine'])}.</p>")
    if "crossover" in s:
        c = s["crossover"]
        rows = [[f"<b>{k}</b>" if int(k) == c["chosen"] else k,
                 *(_num(v.get(m)) for m in METRICS)] for k, v in c["sweep"].items()]
        parts.append(f"<p>Style mixing crossover sweep; chosen k = {c['chosen']}: "
                     f"{_e(c['rule'])}.</p>")
        parts.append(_table(["k", *(_e(_LABELS[m]) for m in METRICS)], rows,
                            numeric=tuple(range(1, len(METRICS) + 1))))
    if "walk" in s:
        w = s["walk"]
        rows = [[_e(n), _num(w["gap_start"][n]), _num(w["gap_end"][n]),
                 _num(w["mean_abs_step_sigma"][n])] for n in w["scores"]]
        parts.append(f"<p>Boundary walk: {w['iterations']} renders per pair, at most "
                     f"{w['max_strength_sigma']:g} sigma per direction; held fixed: "
                     f"{_e(', '.join(w['held']) or 'nothing')}.</p>")
        parts.append(_table(["score", "mean |gap| at start", "mean |gap| after",
                             "mean |step| (sigma)"], rows, numeric=(1, 2, 3)))
        parts.extend(f"<p class='note'>{_e(n)}</p>" for n in w.get("notes", []))
    parts.extend(f"<p class='note'>{_e(n)}</p>" for n in s["notes"])
    parts.extend(_img(png, _e(caption), alt=f"{name} {key}")
                 for key, (png, caption) in grids.items())
    return "\n".join(parts)


def write_mapping_evaluation(evaluation: MappingEvaluation, out_dir: str | Path,
                             info: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``summary.json`` (:meth:`MappingEvaluation.summary` plus ``info``, e.g. the
    checkpoint path), ``index.html`` and ``<set>_<grid>.png`` to ``out_dir`` (created);
    returns ``{name: path}``."""
    from facelatent.io import write_bytes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = evaluation.summary()
    summary.update(jsonable(info or {}))
    paths: dict[str, Path] = {}
    sections = []
    settings = summary["settings"]
    rows = [[_e(k), _e(v)] for k, v in {**(info or {}), **settings}.items()
            if k not in ("seeds",)]
    seeds = settings.get("seeds") or []
    if seeds:
        rows.append(["seeds", _e(f"{seeds[0]}..{seeds[-1]} ({len(seeds)})")])
    rows.append(["identity judged by", _e(f"{evaluation.identity_model} (same person above "
                                          f"{summary['same_person_threshold']:.4f})")])
    verdicts = [f"<li>{_e(k)}: {_e(c['verdict'])}</li>" for k, s in summary["sets"].items()
                for c in s["comparison"].values()]
    sections.append(("settings", "Settings and verdicts", _table(["setting", "value"], rows)
                     + ("<ul>" + "".join(verdicts) + "</ul>" if verdicts else "")))
    for name, result in evaluation.sets.items():
        grids = _grids(result)
        for key, (png, _) in grids.items():
            paths[f"{name}_{key}"] = write_bytes(out / f"{name}_{key}.png", png)
        sections.append((name, f"{name} pairs", _set_section(name, summary["sets"][name], grids)))
    paths["html"] = write_page(out / "index.html", "Mapping evaluation", sections)
    summary["files"] = {k: p.name for k, p in paths.items()}
    paths["json"] = write_json(out / "summary.json", summary, format=FORMAT,
                               version=FORMAT_VERSION)
    return paths
