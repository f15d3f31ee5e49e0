"""The outputs of `facelatent.recognition.compare`: ``comparison.json`` (every record), ``table.md``
(one row per mode) and ``comparison.html`` (the table, the LFW DET curves of every mode, the
datasets' quality figures and the verdict), self-contained like `facelatent dataset report`:
CSS inline, figures as base64 ``data:`` URIs, drawn with `facelatent.evaluation.plots`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from facelatent.evaluation.report import _e, _img, _table, write_page
from facelatent.io import atomic_path, read_json, write_json

__all__ = ["comparison_sections", "det_png", "table_rows", "write_outputs"]

COLORS = {"paper": "tab:blue", "code": "tab:orange", "random": "tab:gray", "varied": "tab:green"}
SPREADS = (("yaw", "{:.2f}"), ("pitch", "{:.2f}"), ("age", "{:.2f}"),
           ("expression_happy", "{:.3f}"))
HEADER = ("mode", "max_off (sigma)", "classes × images", "no face", "genuine cos (dataset)",
          "yaw / pitch / age / P(happy) spread", "build s", "train s", "LFW accuracy",
          "LFW EER", "TAR @ FAR 1e-3", "TAR @ FAR 1e-2", "LFW s")


def _fmt(value: Any, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _pct(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f} %"


def table_rows(modes: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """One row of plain text per mode, in the order of ``HEADER``."""
    rows = []
    for mode, r in modes.items():
        d, t, v = r["dataset"], r["train"], r["lfw"]
        spread = d["intra_class_spread"]
        tar = v["tar_at_far"]
        rows.append([
            mode, _fmt(d["max_off_sigma"], "{:g}"),
            f"{d['classes']} × {d['rows'] // max(1, d['classes'])}",
            f"{d['no_face']} of {d['rows']} ({_pct(d['no_face_rate'], 1)})",
            f"{_fmt(d['genuine']['mean'])} ± {_fmt(d['genuine']['std'])} ({d['measured_with']})",
            " / ".join(_fmt(spread.get(n), f) for n, f in SPREADS),
            f"{d['seconds']:.0f}", f"{t['seconds']:.0f}",
            f"{100 * v['accuracy']:.2f} ± {100 * v['std']:.2f} %",
            _pct(v["eer"]),
            _pct(tar["0.001"]["tar"]) + ("" if tar["0.001"]["resolved"] else " *"),
            _pct(tar["0.01"]["tar"]) + ("" if tar["0.01"]["resolved"] else " *"),
            f"{v['seconds']:.0f}"])
    return rows


def _notes(result: Any, settings: Any, train: Any) -> list[str]:
    first = next(iter(result.modes.values()))
    v = first["lfw"]
    accepted = int(v["impostor_pairs"] * 1e-3)
    notes = [
        (f"Same references, {settings.per_identity} images per class, "
         f"{'both sides of each boundary, ' if settings.both_sides else ''}dataset seed "
         f"{settings.seed}; training: {train.model.arch} ({train.model.embedding}-d), "
         f"{train.loss}, {train.epochs} epochs, batch {train.batch}, lr {train.lr} "
         f"({train.schedule}), seed {train.seed}, the same for every mode."),
        (f"LFW: {v['pairs']} pairs ({v['genuine_pairs']} genuine, {v['impostor_pairs']} "
         f"impostor) over {len(v['folds'])} folds; accuracy is mean ± std over the held-out "
         "folds. * unresolved: a FAR is measured only with at least 10 / FAR impostor pairs; "
         f"here TAR at FAR 1e-3 rests on the {accepted} highest impostor scores."),
        ("Dataset columns as `dataset report` measures them, with the recogniser that did not "
         "label the boundaries; spreads are the mean within-class std (degrees, degrees, "
         "years, probability). Seconds: the shards' own build time, the training epochs, the "
         "LFW embedding."),
    ]
    return notes


def _markdown(result: Any, settings: Any, train: Any) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result.modes)]
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in _notes(result, settings, train))
    if result.verdict is not None:
        text += "\n\n**" + result.verdict["text"] + ".**\n\n" + _verdict_markdown(result.verdict)
    return text + "\n"


def _verdict_markdown(v: Mapping[str, Any]) -> str:
    lines = [f"| {v['mode']} against | accuracy difference | beyond the fold spread | folds won |",
             "| --- | --- | --- | --- |"]
    for other, a in v["against"].items():
        lines.append(f"| {other} | {100 * a['difference']:+.2f} points | "
                     f"{'yes' if a['beyond_spread'] else 'no'} | {a['folds_won']} of {a['folds']} |")
    return "\n".join(lines) + "\n"


def det_png(curves: Mapping[str, tuple[Any, Any]], eers: Mapping[str, float]) -> bytes:
    """LFW DET curves, FNMR against FMR on log axes, one per mode, with each one's EER point."""
    import numpy as np

    from facelatent.evaluation.plots import _png, _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    floor = 1.0
    for mode, (fmr, fnmr) in curves.items():
        color = COLORS.get(mode, None)
        # A log axis has no 0: an FNMR of 0 is drawn at 1e-4, the axis's floor.
        shown = np.maximum(np.asarray(fnmr, dtype=np.float64), 1e-4)
        floor = min(floor, float(shown.min()))
        ax.plot(fmr, shown, color=color, label=f"{mode} (EER {100 * eers[mode]:.1f} %)",
                drawstyle="steps-post")
        if eers[mode] > 0:
            ax.plot([eers[mode]], [eers[mode]], "o", color=color, markersize=4)
    for level in (1e-3, 1e-2):
        ax.axvline(level, color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(max(floor * 0.8, 1e-4), 1.05)
    ax.set_xlabel("FMR (impostor pairs accepted)")
    ax.set_ylabel("FNMR (genuine pairs rejected)")
    ax.set_title("LFW pairs, recognisers trained on each mode's dataset; dots: EER", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _png(fig)


def _html(result: Any, settings: Any, train: Any) -> list[tuple[str, str, str]]:
    from facelatent.recognition.compare import det_points

    root = Path(result.out)
    rows = [[_e(c) for c in row] for row in table_rows(result.modes)]
    notes = "".join(f"<p class='note'>{_e(n)}</p>" for n in _notes(result, settings, train))
    verdict = ("<p class='note'>No verdict: the varied mode and one other are needed.</p>"
               if result.verdict is None else f"<p><b>{_e(result.verdict['text'])}.</b></p>"
               + _table(["against", "accuracy difference", "beyond the fold spread", "folds won"],
                        [[_e(o), f"{100 * a['difference']:+.2f} points",
                          "yes" if a["beyond_spread"] else "no",
                          f"{a['folds_won']} of {a['folds']}"]
                         for o, a in result.verdict["against"].items()], numeric=(1, 3)))
    curves = {m: det_points(root / "stages" / m) for m in result.modes}
    det = _img(det_png(curves, {m: r["lfw"]["eer"] for m, r in result.modes.items()}),
               "FNMR against FMR on LFW's pairs (log axes; a pair with a face not found counts "
               "as rejected); grey lines at FMR 1e-3 and 1e-2", alt="DET curves")
    folds = _table(["fold"] + [_e(m) for m in result.modes],
                   [[str(k)] + [f"{100 * r['lfw']['fold_accuracies'][i]:.2f}"
                                for r in result.modes.values()]
                    for i, k in enumerate(next(iter(result.modes.values()))["lfw"]["folds"])],
                   numeric=range(1, len(result.modes) + 1))
    spread_names = list(dict.fromkeys(n for r in result.modes.values()
                                      for n in r["dataset"]["intra_class_spread"]))
    spreads = _table(["attribute"] + [_e(m) for m in result.modes],
                     [[_e(n)] + [_fmt(r["dataset"]["intra_class_spread"].get(n), "{:.4g}")
                                 for r in result.modes.values()] for n in spread_names],
                     numeric=range(1, len(result.modes) + 1))
    return [("table", "Comparison", _table([_e(h) for h in HEADER], rows,
                                           numeric=range(1, len(HEADER))) + notes + verdict),
            ("det", "DET curves on LFW", det),
            ("folds", "LFW accuracy per fold (%)", folds),
            ("spread", "Intra-class spread of each dataset", spreads)]


def write_outputs(result: Any, settings: Any, train: Any, key: Mapping[str, Any]) -> dict[str, str]:
    """Write ``comparison.json``, ``table.md`` and ``comparison.html`` into ``result.out``;
    returns their paths by kind."""
    root = Path(result.out)
    files = {"json": str(root / "comparison.json"), "table": str(root / "table.md"),
             "html": str(root / "comparison.html")}
    write_json(root / "comparison.json", {"key": key, "settings": asdict(settings),
                                          "train": train.to_json(), "modes": result.modes,
                                          "verdict": result.verdict, "files": files},
               format="facelatent.fr-comparison.result")
    with atomic_path(root / "table.md") as tmp:
        tmp.write_text(_markdown(result, settings, train), encoding="utf-8")
    write_page(root / "comparison.html", f"facelatent: sampling modes on LFW ({root.name})",
               _html(result, settings, train))
    return files


RESULT_FORMAT = "facelatent.fr-comparison.result"


def comparison_sections(folder: str | Path) -> list[tuple[str, str, str]]:
    """The sections of ``comparison.html`` (table and verdict, DET curves, accuracy per fold,
    spreads) for another page, read back from a finished comparison folder: how
    `facelatent dataset report --comparison DIR` puts the LFW comparison into a dataset's
    report. A folder without its ``comparison.json`` (not run, or not finished) is refused in one
    line."""
    from types import SimpleNamespace

    from facelatent.recognition.compare import CompareSettings
    from facelatent.recognition.settings import TrainSettings

    root = Path(folder)
    if not (root / "comparison.json").is_file():
        raise FileNotFoundError(f"{root} holds no comparison.json: give the --out folder of a "
                                "finished `facelatent fr compare`")
    data = read_json(root / "comparison.json", format=RESULT_FORMAT, max_version=1,
                     kind="an fr compare result")
    settings = dict(data["settings"])
    settings["modes"] = tuple(settings["modes"])
    if settings.get("folds") is not None:
        settings["folds"] = tuple(settings["folds"])
    result = SimpleNamespace(out=str(root), modes=data["modes"], verdict=data["verdict"])
    sections = _html(result, CompareSettings(**settings), TrainSettings.from_json(data["train"]))
    return [(f"fr-{key}", f"Trained on each mode, measured on LFW: {title}", html)
            for key, title, html in sections]
