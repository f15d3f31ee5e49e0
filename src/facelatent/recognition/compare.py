"""The comparison that matters (issue 16, item 5): which way of sampling synthetic identities
trains the recogniser that best recognises real people?

    from facelatent.recognition import preset
    from facelatent.recognition.compare import CompareSettings, compare_modes
    result = compare_modes("runs/ident16/ids", "runs/fr-compare", CompareSettings(per_identity=10),
                           preset("cpu", epochs=4), lfw="../shared/datasets/lfw")
    result.verdict["beats_all"]       # varied beyond the fold spread of paper, code and random?

For every sampling mode (paper, code, random, varied), from the same references, with the same
identities x images, the same training settings (epochs, batch, learning rate, seed) and the
same LFW crops:

1. ``dataset``: `facelatent.datasets.build_dataset` into ``OUT/datasets/<mode>`` (it resumes
   itself), then its quality as `facelatent dataset report` measures it (`dataset_quality`, with
   the recogniser that did not label the boundaries): no-face rate, genuine cosine, intra-class
   spread. Build seconds are the shards' own, read from ``dataset.json``, so a dataset built
   earlier by `dataset build` with the same settings is counted too.
2. ``train``: `train_recognizer` into ``OUT/train/<mode>`` (it resumes itself), without the
   per-epoch LFW check: LFW is measured once, in stage 3.
3. ``lfw``: the trained backbone on LFW's cached crops (`lfw_crops`): the 10-fold accuracy by
   the same `verification_result` that `fr evaluate` uses, and every pair's cosine
   (``OUT/stages/<mode>/lfw-scores.npz``) for the DET curve, EER and TAR at fixed FAR.

Each finished stage writes ``OUT/stages/<mode>/<stage>.json``; a re-run reads it instead of
redoing the stage (a killed comparison resumes where it was; modes can be added later).
``OUT/compare.json`` holds what every mode shares (references, dataset and training settings,
LFW folds): a re-run with other settings is refused.

Offsets: ``max_off`` (sigma) is the paper, random and varied modes' |N(0, max_off)| scale.
ExFaceGAN's code mode draws u ~ U(0, c) per latent dimension; its step u * n moves c/2 along
the normal on average, plus an orthogonal jitter of about 0.29 c. Its own c (30 raw units in
StyleGAN2's W) has no meaning in another W, so by default c is chosen to move the same mean
distance along the normal as the paper mode, E|N(0, s)| = s sqrt(2/pi): c = 2 sqrt(2/pi) s
(9.57 sigma at the 6-sigma default; no single step can then pass c, far below the ~20 sigma
where faces ghost). The random mode draws the paper mode's offset norms (same seed, same |a|).

Fold spread: LFW's 10 folds share their pairs across modes, so modes are compared fold by fold.
Mode A beats B "beyond the fold spread" when mean_A - std_A > mean_B + std_B (the one-std bands
do not overlap); the folds A wins are reported beside it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.datasets.quality import dataset_quality, det_curve, eer, fnmr_at_fmr
from facelatent.datasets.sampling import SAMPLE_MODES
from facelatent.datasets.shard import DEFAULT_MAX_OFF
from facelatent.io import load_npz, read_json, save_npz, write_json, writer_lock
from facelatent.recognition.settings import TrainSettings
from facelatent.runs.sharded import Progress, check_resume

__all__ = ["FAILED_SCORE", "STAGES", "CompareSettings", "Comparison", "compare_modes",
           "matched_code_max_off", "operating_points", "pair_rates", "tar_by_bins",
           "verdict"]

FORMAT = "facelatent.fr-comparison"
STAGES = ("dataset", "train", "lfw")
# A pair with a face not found gets this score: below every cosine, so a genuine pair is
# rejected and an impostor pair never accepted at any threshold (counted, never dropped).
FAILED_SCORE = -2.0
FARS = (1e-3, 1e-2)
DEFAULT_MODE = "varied"          # the mode the verdict asks about


def matched_code_max_off(max_off: float) -> float:
    """The code mode's U(0, c) bound that moves, on average, as far along the normal as the
    paper mode's |N(0, max_off)|: c = 2 sqrt(2/pi) max_off, to 0.01 (9.57 for 6)."""
    return round(2.0 * math.sqrt(2.0 / math.pi) * float(max_off), 2)


@dataclass(frozen=True)
class CompareSettings:
    """What every mode's dataset shares (the training settings come separately)."""

    modes: tuple[str, ...] = SAMPLE_MODES  # which modes, in this order in the table
    per_identity: int = 10                 # images per class
    identities_max: int | None = None      # the first K references by seed (None: all)
    max_off: float = DEFAULT_MAX_OFF       # sigma: paper, random and varied's |N(0, max_off)|
    code_max_off: float | None = None      # sigma: code's U(0, c) bound; None: matched (above)
    both_sides: bool = False               # each boundary's other side as a second class
    attribute_scale: float = 1.0           # varied: strength std in store spreads
    attributes: str | None = None          # varied: a folder of boundary files (None: fitted)
    seed: int = 0                          # the datasets' (the training has its own)
    classes_per_shard: int = 4
    batch: int = 8                         # images per generator pass (does not change results)
    device: str = "cpu"                    # datasets, training and LFW (bookkeeping)
    folds: tuple[int, ...] | None = None   # LFW folds (None: all ten)

    def __post_init__(self) -> None:
        if not self.modes:
            raise ValueError("modes is empty; give some of " + ", ".join(SAMPLE_MODES))
        bad = [m for m in self.modes if m not in SAMPLE_MODES]
        if bad or len(set(self.modes)) != len(self.modes):
            raise ValueError(f"modes must be distinct names from {', '.join(SAMPLE_MODES)}, got "
                             f"{', '.join(self.modes)}")
        if self.per_identity < 2:
            raise ValueError(f"per_identity must be at least 2 (a class needs two images to "
                             f"teach anything), got {self.per_identity}")
        if self.identities_max is not None and self.identities_max < 2:
            raise ValueError(f"identities_max must be at least 2 (a recogniser needs two "
                             f"classes), got {self.identities_max}")
        if self.both_sides and "random" in self.modes:
            raise ValueError("random directions have no side, so --both-sides would give random "
                             "a second class of the same face; compare random without "
                             "--both-sides, or leave it out of --modes")
        for name in ("max_off", "code_max_off"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of sigma, got {value}")

    def offset(self, mode: str) -> float:
        """The max_off (sigma) that ``mode``'s dataset is built with."""
        if mode != "code":
            return self.max_off
        return self.code_max_off if self.code_max_off is not None else \
            matched_code_max_off(self.max_off)

    def dataset_settings(self, mode: str) -> Any:
        from facelatent.datasets import DatasetSettings

        return DatasetSettings(per_identity=self.per_identity, max_off=self.offset(mode),
                               mode=mode, offset_units="sigma",
                               attribute_scale=self.attribute_scale, both_sides=self.both_sides,
                               seed=self.seed, classes_per_shard=self.classes_per_shard,
                               batch=self.batch, device=self.device)

    def key(self) -> dict[str, Any]:
        """What every mode of one comparison shares (modes may be added later)."""
        data = asdict(self)
        for name in ("modes", "batch", "device"):
            data.pop(name)
        data["code_max_off"] = self.offset("code")
        data["folds"] = None if self.folds is None else sorted(self.folds)
        return data


@dataclass
class Comparison:
    """What :func:`compare_modes` found: per mode its stages' records, and the verdict."""

    out: str
    modes: dict[str, dict[str, Any]]         # mode -> {"dataset": {...}, "train": ..., "lfw": ...}
    verdict: dict[str, Any] | None           # see :func:`verdict`
    stages_run: list[str] = field(default_factory=list)    # "<mode>/<stage>" done in this call
    files: dict[str, str] = field(default_factory=dict)    # "json", "table", "html"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


StageFn = Callable[[str, str, str], None]    # (mode, stage, "start" | "done" | "read")


def compare_modes(identities: str | Path | Any, out: str | Path, settings: CompareSettings,
                  train: TrainSettings, *, lfw: str | Path, cache: str | Path | None = None,
                  generator: str | None = None, models: Any = None, analyzer: Any = None,
                  on_stage: StageFn | None = None,
                  progress: Callable[[str], Progress] | None = None) -> Comparison:
    """Build, train and measure every mode of ``settings`` in ``out`` (resumable; see the
    module docstring), then write ``comparison.json``, ``table.md`` and ``comparison.html``.

    ``identities``: an `identity fit` folder, its ``.npz`` or `IdentityBoundaries`. ``train``:
    the one training budget of every mode (run on ``settings.device``). ``lfw``: LFW's folder;
    ``cache``: where its crops are kept (default: ``OUT/lfw-cache``). ``models`` (generator and face models for the builds) and ``analyzer``
    (face models for LFW's alignment): tests pass tiny ones. ``on_stage(mode, stage, what)``
    is told each stage's start and end, or that it was read; ``progress(description)`` makes a
    progress bar for each build and training run."""
    from facelatent.boundaries import boundaries_path
    from facelatent.boundaries.identity import IdentityBoundaries
    from facelatent.datasets.writer import identities_key
    from facelatent.faces.lfw import read_lfw

    root = Path(out)
    pairs, _ = read_lfw(lfw)      # the cheap checks first: LFW, folds, the boundaries
    pairs.select(range(1, pairs.folds + 1) if settings.folds is None else settings.folds)
    if isinstance(identities, (str, Path)):
        source: str | Path = boundaries_path(identities)
        ids = IdentityBoundaries.load(source)
    else:
        ids, source = identities, "(given in Python)"
    chosen = ids
    if settings.identities_max is not None:
        chosen = ids.select(np.sort(np.asarray(ids.seeds))[:settings.identities_max])
    if len(chosen) * (2 if settings.both_sides else 1) < 2:
        raise ValueError(f"{source} holds {len(chosen)} reference; a recogniser needs at least "
                         "two classes: fit more references, or add --both-sides")
    train = replace(train, device=settings.device)
    key = {"identities": identities_key(chosen), "datasets": settings.key(),
           "train": train.resume_key(), "lfw": str(Path(lfw).resolve())}
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} is a file; --out must be a folder")
    root.mkdir(parents=True, exist_ok=True)
    cache = root / "lfw-cache" if cache is None else Path(cache)
    tell = on_stage or (lambda mode, stage, what: None)
    result = Comparison(str(root), {}, None)
    with writer_lock(root, "comparison"):
        _open(root, key)
        crops: list[Any] = []        # LFW's crops, read once and only when a stage needs them

        def lfw_crops_once() -> Any:
            if not crops:
                from facelatent.recognition.lfw import lfw_crops

                crops.append(lfw_crops(lfw, folds=settings.folds, cache=cache, analyzer=analyzer,
                                       device=settings.device))
            return crops[0]

        for mode in settings.modes:
            stages = root / "stages" / mode
            record: dict[str, Any] = {}
            for stage in STAGES:
                file = stages / f"{stage}.json"
                if file.is_file():
                    held = read_json(file, format=f"{FORMAT}.{stage}", max_version=1,
                                     kind=f"a comparison's {stage} record")
                    record[stage] = {k: v for k, v in held.items()
                                     if k not in ("format", "format_version")}
                    tell(mode, stage, "read")
                    continue
                tell(mode, stage, "start")
                bar = progress(f"{mode}: {stage}") if progress and stage != "lfw" else None
                try:
                    if stage == "dataset":
                        record[stage] = _dataset_stage(root, mode, ids, settings, generator,
                                                       models, str(source), bar)
                    elif stage == "train":
                        record[stage] = _train_stage(root, mode, train, bar)
                    else:
                        record[stage] = _lfw_stage(root, mode, lfw_crops_once(),
                                                   settings.device)
                finally:
                    if bar is not None and hasattr(bar, "close"):
                        bar.close()
                write_json(file, record[stage], format=f"{FORMAT}.{stage}")
                result.stages_run.append(f"{mode}/{stage}")
                tell(mode, stage, "done")
            result.modes[mode] = record
        result.verdict = verdict({m: r["lfw"] for m, r in result.modes.items()})
        from facelatent.recognition.compare_report import write_outputs

        result.files = write_outputs(result, settings, train, key)
    return result


def _open(root: Path, key: Mapping[str, Any]) -> None:
    file = root / "compare.json"
    if not file.exists():
        write_json(file, {"key": key}, format=FORMAT)
        return
    held = read_json(file, format=FORMAT, max_version=1, kind="a comparison's settings")
    check_resume(f"comparison {root}", held.get("key", {}), key,
                 "Use the settings it was started with, or a new --out folder.")


# -- stages ---------------------------------------------------------------------------------------
def _dataset_stage(root: Path, mode: str, ids: Any, settings: CompareSettings,
                   generator: str | None, models: Any, source: str,
                   bar: Progress | None) -> dict[str, Any]:
    from facelatent.datasets import build_dataset
    from facelatent.datasets.quality import measuring_model, read_dataset

    path = root / "datasets" / mode
    report = build_dataset(path, ids, settings.dataset_settings(mode),
                           attributes=settings.attributes if mode == "varied" else None,
                           generator=generator, limit=settings.identities_max, models=models,
                           source=source, progress=bar)
    table = read_dataset(path)
    model, why = measuring_model(table.manifest)
    q = dataset_quality(table, model)
    shards = table.manifest.get("shards", {})
    by_stage: dict[str, float] = {}
    for rec in shards.values():
        for name, sec in (rec.get("seconds") or {}).items():
            by_stage[name] = by_stage.get(name, 0.0) + float(sec)
    rows = int(q["rows"])
    return {"path": str(path), "mode": mode, "max_off_sigma": settings.offset(mode),
            "action": report.action, "classes": q["classes"], "rows": rows,
            "images": q["images"], "no_face": q["images_without_face"],
            "no_face_rate": q["images_without_face"] / rows if rows else None,
            "seconds": sum(by_stage.values()), "stage_seconds": by_stage,
            "measured_with": model, "measured_why": why,
            "genuine": q["genuine"], "impostor": {k: q["impostor"][k] for k in ("pairs", "mean",
                                                                                 "std")},
            "eer": q["eer"], "identity_kept": q["identity_kept"],
            "intra_class_spread": q["intra_class_spread"]}


def _train_stage(root: Path, mode: str, train: TrainSettings,
                 bar: Progress | None) -> dict[str, Any]:
    from facelatent.recognition import read_log, train_recognizer

    run = root / "train" / mode
    report = train_recognizer(root / "datasets" / mode, run, train, progress=bar)
    lines = list(read_log(run / "log.jsonl"))
    return {"path": str(run), "epochs": report.epoch, "images": report.images,
            "classes": report.classes, "skipped": report.skipped,
            "parameters": report.parameters,
            "seconds": sum(float(ln.get("seconds", 0.0)) for ln in lines),
            "loss": [ln["loss"] for ln in lines],
            "train_accuracy": [ln["train_accuracy"] for ln in lines]}


def _lfw_stage(root: Path, mode: str, crops: Any, device: str) -> dict[str, Any]:
    from facelatent.faces.lfw import verification_result
    from facelatent.recognition.checkpoint import load_recognizer
    from facelatent.recognition.lfw import crop_embeddings

    start = time.perf_counter()
    run = root / "train" / mode
    # The embeddings once, then both the protocol (as `evaluate_crops` computes it) and each
    # pair's cosine, which `evaluate_crops` does not return.
    emb = crop_embeddings(load_recognizer(run, device), crops)
    r = verification_result(f"{mode}: {run}", crops.face, emb, crops.names, crops.pairs)
    index = {n: i for i, n in enumerate(crops.names)}
    a = np.array([index[n] for n in crops.pairs.first])
    b = np.array([index[n] for n in crops.pairs.second])
    cosines = (emb[a].astype(np.float64) * emb[b]).sum(axis=1)
    stages = root / "stages" / mode
    save_npz(stages / "lfw-scores.npz", {"cosines": cosines, "same": crops.pairs.same,
                                         "fold": crops.pairs.fold},
             format=f"{FORMAT}.lfw-scores")
    rates = pair_rates(cosines, crops.pairs.same)
    return {"path": str(run), "accuracy": r.accuracy_mean, "std": r.accuracy_std,
            "fold_accuracies": list(r.accuracies), "folds": list(r.folds),
            "threshold": r.threshold, "pairs": r.pairs, "pairs_failed": r.pairs_failed,
            "images": r.images, "faces_not_found": r.faces_not_found,
            "genuine_mean": r.genuine_mean, "impostor_mean": r.impostor_mean, **rates,
            "seconds": time.perf_counter() - start}


# -- measures -------------------------------------------------------------------------------------
def _scores(cosines: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(cosines, dtype=np.float64)
    s = np.asarray(same, dtype=bool)
    if c.shape != s.shape or c.ndim != 1:
        raise ValueError(f"cosines and same must both be [P], got {list(c.shape)} and "
                         f"{list(s.shape)}")
    c = np.where(np.isnan(c), FAILED_SCORE, c)
    return c[s], c[~s]


def pair_rates(cosines: np.ndarray, same: np.ndarray) -> dict[str, Any]:
    """EER and TAR at FAR 1e-3 and 1e-2 of verification pairs: ``cosines`` [P] (NaN where a
    face was not found: such a pair is rejected at every threshold), ``same`` [P] bool. A FAR
    is "resolved" when at least 10 / FAR impostor pairs measure it: LFW's 3,000 resolve 1e-2
    (30 accepted) but not 1e-3 (3 accepted)."""
    return operating_points(*_scores(cosines, same))


def operating_points(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, Any]:
    """EER (and its threshold) and TAR at each of `FARS` of genuine [G] and impostor [I]
    scores, with the pair counts; what `pair_rates` and `fr evaluate-dataset` report."""
    rate, threshold = eer(genuine, impostor)
    tar = {}
    for far in FARS:
        p = fnmr_at_fmr(genuine, impostor, far)
        tar[f"{far:g}"] = {"tar": 1.0 - p.fnmr, "threshold": p.threshold,
                           "resolved": p.resolved}
    return {"eer": rate, "eer_threshold": threshold, "tar_at_far": tar,
            "genuine_pairs": int(genuine.size), "impostor_pairs": int(impostor.size)}


def tar_by_bins(cosines: np.ndarray, same: np.ndarray, key: np.ndarray,
                edges: Sequence[float], far: float = 0.1) -> dict[str, Any]:
    """Genuine pairs accepted, bin by bin of ``key`` [P] (e.g. the two photos' yaw difference),
    at the one threshold that accepts ``far`` of all impostor pairs: where a recogniser loses
    the same person. ``edges``: increasing bin edges, bins [e_i, e_i+1); genuine pairs whose key
    is NaN or outside go to "outside". Returns {"far", "threshold", "resolved", "bins": [{"low",
    "high", "pairs", "tar"}], "outside": pairs}; tar is None for an empty bin."""
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
        raise ValueError(f"edges must be at least two increasing numbers, got {edges.tolist()}")
    genuine, impostor = _scores(cosines, same)
    k = np.asarray(key, dtype=np.float64)
    if k.shape != np.shape(same):
        raise ValueError(f"key must be [P] like same, got {list(k.shape)}")
    k = k[np.asarray(same, dtype=bool)]
    point = fnmr_at_fmr(genuine, impostor, far)
    accepted = genuine >= point.threshold
    bins, placed = [], np.zeros(genuine.size, bool)
    for low, high in itertools.pairwise(edges):
        inside = (k >= low) & (k < high)
        placed |= inside
        n = int(inside.sum())
        bins.append({"low": float(low), "high": float(high), "pairs": n,
                     "tar": float(accepted[inside].mean()) if n else None})
    return {"far": far, "threshold": point.threshold, "resolved": point.resolved, "bins": bins,
            "outside": int((~placed).sum())}


def det_points(stages: Path) -> tuple[np.ndarray, np.ndarray]:
    """(FMR [K], FNMR [K]) of the LFW pairs saved by a mode's ``lfw`` stage."""
    held = load_npz(stages / "lfw-scores.npz", format=f"{FORMAT}.lfw-scores", max_version=1,
                    kind="a comparison's LFW scores")
    return det_curve(*_scores(held["cosines"], held["same"]))


def verdict(lfw: Mapping[str, Mapping[str, Any]], mode: str = DEFAULT_MODE) -> dict[str, Any] | None:
    """Does ``mode`` beat every other mode on LFW beyond the fold spread? ``lfw``: each mode's
    ``lfw`` record (accuracy, std, fold_accuracies). None when ``mode`` or every other is
    missing. Per other mode: the difference of the means, whether the one-std bands are apart
    (mean - std above the other's mean + std) and how many folds ``mode`` wins outright."""
    if mode not in lfw or len(lfw) < 2:
        return None
    me = lfw[mode]
    against = {}
    for other, r in lfw.items():
        if other == mode:
            continue
        wins = sum(a > b for a, b in zip(me["fold_accuracies"], r["fold_accuracies"]))
        against[other] = {"difference": me["accuracy"] - r["accuracy"],
                          "beyond_spread": me["accuracy"] - me["std"] > r["accuracy"] + r["std"],
                          "folds_won": int(wins), "folds": len(me["fold_accuracies"])}
    won = [o for o, v in against.items() if v["beyond_spread"]]
    lost = [o for o in against if o not in won]
    beats = not lost
    text = (f"{mode} beats {', '.join(won)} on LFW beyond the fold spread" if beats else
            (f"{mode} beats {', '.join(won)}, but " if won else f"{mode} ")
            + f"does not beat {', '.join(lost)} beyond the fold spread (mean - std above the "
              "other's mean + std)")
    return {"mode": mode, "beats_all": beats, "against": against, "text": text}

