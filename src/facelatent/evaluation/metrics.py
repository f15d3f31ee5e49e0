"""How good is an edit: re-scoring, monotonicity, identity preservation and attribute drift.

    ev = evaluate_edit(G, analyzer, smile, w[:64], np.linspace(-3, 3, 7), conditions=[gender],
                       identity_model="dlib", sigma=1.4)
    ev.monotonicity("plain"), ev.identity_curve("plain")["mean"], ev.condition_drift()

Every face is edited at every strength (N x S images per variant: "plain", and "conditional"
when conditions are given), re-scored with every attribute model and embedded with one
recogniser. The figures:

- curves: each attribute's mean and std over the faces, per strength. Where an attribute has
  a log-odds version ("smile_logit", "gender_logit") it is scored too: probabilities saturate,
  log-odds keep ranking, so they are what monotonicity reads.
- monotonicity: Spearman's rank correlation between strength and the target's score, per face,
  averaged over faces (1 = the score rises with every step for every face).
- identity: cosine between the embedding of the edited face and of the unedited face (strength
  0 in relative mode), per strength. Identity rule: it is measured with the recogniser that did
  NOT make the store's embeddings, so the evaluation is independent of whatever was fitted on
  them: `evaluation_identity_model(store.spec.identity)` gives "dlib" when the store's first
  (primary) embeddings are SFace's or when it has none, and "sface" when they are dlib's.
- drift: mean change of every other attribute's score against the unedited face, per strength,
  in score units and in units of the scores' std over the unedited faces ("drift_sd").
- condition drift: for each condition, the drift of its attribute in the plain and in the
  conditional edit, side by side, with the mean |drift| of each and the reduction.

Images are clamped to [-1, 1] before scoring: a generator may overshoot, and the face that a
person sees (and that a saved file holds) is the clamped one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelatent.boundaries.boundary import Boundary
from facelatent.editing.apply import (
    base_latents,
    edit_latents,
    resolve_sigma,
    strengths_array,
    synthesize,
)
from facelatent.faces.analysis import (
    ATTRIBUTES,
    DEFAULT_ATTRIBUTES,
    FaceAnalyzer,
    resolve_attributes,
)
from facelatent.generators.base import Generator, as_wplus
from facelatent.images import resize, to_uint8
from facelatent.io import jsonable, write_json

__all__ = ["EVALUATION_FORMAT", "IDENTITY_RULE", "EditEvaluation", "check_run", "evaluate_edit",
           "evaluation_identity_model", "score_names", "spearman_rows", "target_score",
           "write_evaluation"]

EVALUATION_FORMAT = "facelatent.edit-evaluation"   # the header of evaluation.json
EVALUATION_FORMAT_VERSION = 1
IDENTITY_RULE = ("identity is measured with the recogniser that did not make the store's "
                 "(primary, first-listed) embeddings: dlib for an SFace store or one without "
                 "embeddings, SFace for a dlib store")


def evaluation_identity_model(store_identity: Sequence[str]) -> str:
    """The recogniser for identity preservation given the store's identity models (see
    IDENTITY_RULE): "sface" when the first is "dlib", else "dlib"."""
    return "sface" if list(store_identity)[:1] == ["dlib"] else "dlib"


def score_names(attributes: Sequence[str] | str | None = None) -> tuple[str, ...]:
    """Attribute names (groups expanded; default DEFAULT_ATTRIBUTES), each followed by its
    log-odds version where there is one ("smile" -> "smile", "smile_logit")."""
    out: list[str] = []
    for name in resolve_attributes(attributes):
        for n in (name, f"{name}_logit"):
            if n in ATTRIBUTES and n not in out:
                out.append(n)
    return tuple(out)


def target_score(attribute: str, names: Sequence[str]) -> str | None:
    """The score an edit of `attribute` should move: its log-odds version if scored, else the
    attribute itself ("pose" reads "yaw"); None when it is not scored (e.g. a SeFa direction)."""
    base = attribute.removesuffix("_logit")
    base = "yaw" if base == "pose" else base
    for candidate in (f"{base}_logit", base):
        if candidate in names:
            return candidate
    return None


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation between `x` `[S]` and each row of `y` `[N, S]` -> `[N]` (ties get
    average ranks; NaN for a constant or non-finite row)."""
    from scipy.stats import rankdata

    rx = rankdata(x)
    rx = rx - rx.mean()
    out = np.full(len(y), np.nan)
    for i, row in enumerate(np.asarray(y, dtype=np.float64)):
        if not np.isfinite(row).all():
            continue
        ry = rankdata(row)
        ry = ry - ry.mean()
        denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
        if denom > 0:
            out[i] = float(rx @ ry) / denom
    return out


def _nanmean(a: np.ndarray, axis: int | None = None) -> Any:
    a = np.asarray(a, dtype=np.float64)
    if axis is None:
        finite = a[np.isfinite(a)]
        return float(finite.mean()) if finite.size else float("nan")
    count = np.isfinite(a).sum(axis=axis)
    total = np.where(np.isfinite(a), a, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass
class EditEvaluation:
    """The raw numbers of `evaluate_edit`, with the summaries computed from them.

    scores[variant][name]: `[N, S]` per face and strength; reference_scores[name]: `[N]` of the
    unedited faces; identity[variant]: `[N, S]` cosines to the unedited face. Variants are
    "plain", and "conditional" when conditions were given. thumbnails[variant]: uint8
    `[k, S, h, w, 3]` of the first k faces (not saved in JSON).
    """

    boundary: dict[str, Any]
    strengths: np.ndarray
    scores: dict[str, dict[str, np.ndarray]]
    reference_scores: dict[str, np.ndarray]
    identity: dict[str, np.ndarray]
    identity_model: str
    target: str | None
    conditions: list[dict[str, Any]] = field(default_factory=list)  # attribute, score
    settings: dict[str, Any] = field(default_factory=dict)          # unit, sigma, mode, ...
    seeds: list[int] | None = None
    seconds: float = 0.0
    images: int = 0
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        return list(self.scores)

    @property
    def n(self) -> int:
        return int(next(iter(self.identity.values())).shape[0])

    def curves(self, variant: str = "plain") -> dict[str, dict[str, list[float]]]:
        """`{name: {"mean": [S], "std": [S]}}` over faces."""
        out = {}
        for name, v in self.scores[variant].items():
            out[name] = {"mean": _nanmean(v, 0).tolist(),
                         "std": [float(np.nanstd(col)) if np.isfinite(col).any() else float("nan")
                                 for col in v.T]}
        return out

    def monotonicity(self, variant: str = "plain") -> float:
        """Mean Spearman correlation of the target's score with strength (NaN: no target)."""
        if self.target is None or len(self.strengths) < 2:
            return float("nan")
        return _nanmean(spearman_rows(self.strengths, self.scores[variant][self.target]))

    def identity_curve(self, variant: str = "plain") -> dict[str, list[float]]:
        """`{"mean", "std", "min"}` of the cosine to the unedited face, each `[S]`."""
        c = self.identity[variant]
        return {"mean": c.mean(0).tolist(), "std": c.std(0).tolist(), "min": c.min(0).tolist()}

    def identity_at(self, strength: float, variant: str = "plain") -> float:
        """Mean identity cosine at the strength closest to `strength`."""
        i = int(np.argmin(np.abs(self.strengths - strength)))
        return float(self.identity[variant][:, i].mean())

    def drift(self, variant: str = "plain", normalised: bool = False) -> dict[str, list[float]]:
        """Mean change of each non-target score against the unedited face, `[S]` per name;
        `normalised` divides by the std of the unedited faces' scores."""
        skip = set() if self.target is None else {self.target, self.target.removesuffix("_logit")}
        out = {}
        for name, v in self.scores[variant].items():
            if name in skip:
                continue
            ref = self.reference_scores[name]
            d = _nanmean(v - ref[:, None], 0)
            if normalised:
                sd = float(np.nanstd(ref)) if np.isfinite(ref).any() else float("nan")
                d = d / sd if sd > 0 else np.full_like(d, np.nan)
            out[name] = d.tolist()
        return out

    def condition_drift(self) -> dict[str, dict[str, Any]]:
        """Per condition score: drift `[S]` in the plain and conditional edits, their mean
        |drift| and the reduction `1 - conditional / plain` (both in score units and in units
        of the unedited scores' std)."""
        out: dict[str, dict[str, Any]] = {}
        if "conditional" not in self.scores:
            return out
        for cond in self.conditions:
            name = cond.get("score")
            if name is None:
                continue
            entry: dict[str, Any] = {"attribute": cond["attribute"]}
            for variant in ("plain", "conditional"):
                d = np.asarray(self.drift(variant)[name])
                d_sd = np.asarray(self.drift(variant, normalised=True)[name])
                entry[variant] = d.tolist()
                entry[f"{variant}_sd"] = d_sd.tolist()
                entry[f"{variant}_mean_abs"] = _nanmean(np.abs(d))
                entry[f"{variant}_mean_abs_sd"] = _nanmean(np.abs(d_sd))
            plain = entry["plain_mean_abs"]
            entry["reduction"] = 1.0 - entry["conditional_mean_abs"] / plain if plain > 0 else float("nan")
            out[name] = entry
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything a report needs, JSON-safe (NaN -> null); per-face arrays are left out."""
        from facelatent.evaluation.quality import evaluation_quality

        s = self.strengths
        variants = {}
        score_sd = self.settings.get("score_sd")
        for v in self.variants:
            ident = self.identity_curve(v)
            variants[v] = {
                "curves": self.curves(v), "identity": ident, "monotonicity": self.monotonicity(v),
                "identity_at_extremes": {f"{s[0]:g}": ident["mean"][0], f"{s[-1]:g}": ident["mean"][-1]},
                "drift": self.drift(v), "drift_sd": self.drift(v, normalised=True),
                "quality": evaluation_quality(self, v, score_sd=score_sd),
            }
        return jsonable({
            "format": EVALUATION_FORMAT, "format_version": EVALUATION_FORMAT_VERSION,
            "boundary": self.boundary,
            "conditions": self.conditions, "strengths": s.tolist(), **self.settings,
            "n": self.n, "seeds": self.seeds, "identity_model": self.identity_model,
            "identity_rule": IDENTITY_RULE, "target": self.target,
            "attributes": list(self.reference_scores), "variants": variants,
            "condition_drift": self.condition_drift(),
            "reference": {k: {"mean": _nanmean(v), "std": float(np.nanstd(v))}
                          for k, v in self.reference_scores.items()},
            "seconds": round(self.seconds, 3), "images": self.images,
            "images_per_s": round(self.images / self.seconds, 3) if self.seconds > 0 else None,
        })


def _measure(generator: Generator, analyzer: FaceAnalyzer, latents: torch.Tensor, space: str,
             names: Sequence[str], identity_model: str, *, truncation_psi: float,
             truncation_space: str, batch: int, keep: int, thumb_size: int, clamp: bool,
             progress: Callable[[int], None] | None,
             ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
    """Scores `{name: [M]}`, embeddings `[M, 128]` and the first `keep` thumbnails of
    latents `[M, ...]`."""
    landmarks = any(ATTRIBUTES[a].model == "landmarks68" for a in names)
    scores: dict[str, list[np.ndarray]] = {n: [] for n in names}
    embeds: list[np.ndarray] = []
    thumbs: list[np.ndarray] = []
    done = 0
    with torch.no_grad():
        for images in synthesize(generator, latents, space, truncation_psi, truncation_space, batch):
            images = (images.clamp(-1.0, 1.0) if clamp else images).to(analyzer.device)
            geom = analyzer.locate(images, generated=True, landmarks=landmarks)
            part = analyzer.score(images, list(names), geometry=geom)
            for n in names:
                scores[n].append(part[n].float().cpu().numpy())
            embeds.append(analyzer.embed(images, identity_model, geometry=geom).float().cpu().numpy())
            if done < keep:
                thumbs.append(to_uint8(resize(images[: keep - done].cpu(), thumb_size)))
            done += images.shape[0]
            if progress is not None:
                progress(images.shape[0])
    thumbnails = np.concatenate(thumbs) if thumbs else None
    return {n: np.concatenate(v) for n, v in scores.items()}, np.concatenate(embeds), thumbnails


def evaluate_edit(generator: Generator, analyzer: FaceAnalyzer, boundary: Boundary,
                  latents_or_seeds: Sequence[int] | torch.Tensor | np.ndarray,
                  strengths: Sequence[float] | np.ndarray, conditions: Sequence[Boundary] = (),
                  identity_model: str = "dlib", *, attributes: Sequence[str] | str | None = None,
                  mode: str = "relative", layers: str | Sequence[int] | None = None,
                  unit: str = "sigma", sigma: float | None = None, truncation_psi: float = 1.0,
                  truncation_space: str = "w", batch: int = 8, keep: int = 4,
                  thumb_size: int = 128, clamp: bool = True, seeds: Sequence[int] | None = None,
                  progress: Callable[[int], None] | None = None,
                  on_start: Callable[[int], None] | None = None) -> EditEvaluation:
    """Edit N faces at S strengths, re-score and embed them (module docstring: the figures).

    latents_or_seeds: integer seeds, or latents in the boundary's space (z `[N, z_dim]` for a
    Z boundary, w `[N, w_dim]` or W+ otherwise), made with `truncation_psi` in
    `truncation_space` like the store's. `attributes`: scored names (default
    DEFAULT_ATTRIBUTES; log-odds versions are added). `identity_model`: "sface" or "dlib"; pick
    it with `evaluation_identity_model(store.spec.identity)`. mode, layers, unit, sigma: as in
    `edit_latents`. `keep`: faces whose thumbnails (`thumb_size` px) are kept for grids.
    `clamp`: clamp images to [-1, 1] before scoring (module docstring); False scores the raw
    generator output, as a store without clamping did.
    Costs N x S images per variant (plus N unedited ones unless relative mode has strength 0);
    `on_start(total)` is told that count before the first image, `progress(k)` after each batch.
    """
    if identity_model not in ("sface", "dlib"):
        raise ValueError(f"identity_model must be 'sface' or 'dlib', got {identity_model!r}")
    check_run(keep, batch)
    s = strengths_array(strengths)
    names = score_names(attributes if attributes is not None else DEFAULT_ATTRIBUTES)
    scale = resolve_sigma(boundary, sigma) if unit == "sigma" else None
    base = base_latents(generator, latents_or_seeds, boundary.space, truncation_psi, truncation_space)
    if boundary.space != "z" and layers is not None:
        base = as_wplus(generator, base)      # strength 0 draws the unedited face
    N, S = base.shape[0], len(s)
    run = dict(truncation_psi=truncation_psi, truncation_space=truncation_space, batch=batch,
               thumb_size=thumb_size, clamp=clamp, progress=progress)
    t0 = time.perf_counter()
    count = 0
    zero = np.flatnonzero(s == 0.0)
    reuse = mode == "relative" and zero.size > 0
    if on_start is not None:
        on_start(N * S * (2 if conditions else 1) + (0 if reuse else N))
    if reuse:
        ref_scores: dict[str, np.ndarray] | None = None
        ref_embed: np.ndarray | None = None
    else:
        ref_scores, ref_embed, _ = _measure(generator, analyzer, base, boundary.space, names,
                                            identity_model, keep=0, **run)
        count += N
    variants = {"plain": ()} if not conditions else {"plain": (), "conditional": tuple(conditions)}
    scores: dict[str, dict[str, np.ndarray]] = {}
    identity: dict[str, np.ndarray] = {}
    thumbnails: dict[str, np.ndarray] = {}
    wide = boundary.space != "z" and layers is not None
    for variant, conds in variants.items():
        edited = edit_latents(base, boundary, s, mode=mode, layers=layers, conditions=conds,
                              num_ws=generator.num_ws if wide else None, unit=unit, sigma=scale)
        flat_scores, flat_embed, thumbs = _measure(
            generator, analyzer, edited.flatten(0, 1), boundary.space, names, identity_model,
            keep=keep * S, **run)
        count += N * S
        per_face = {n: v.reshape(N, S) for n, v in flat_scores.items()}
        emb = flat_embed.reshape(N, S, -1)
        if reuse and variant == "plain":
            ref_scores = {n: v[:, zero[0]].copy() for n, v in per_face.items()}
            ref_embed = emb[:, zero[0]].copy()
        assert ref_embed is not None
        identity[variant] = np.einsum("nsd,nd->ns", emb.astype(np.float64), ref_embed.astype(np.float64))
        scores[variant] = per_face
        if thumbs is not None:
            thumbnails[variant] = thumbs.reshape(-1, S, *thumbs.shape[1:])
    assert ref_scores is not None
    cond_info = [{"attribute": c.attribute, "score": target_score(c.attribute, names)}
                 for c in conditions]
    return EditEvaluation(
        boundary={"attribute": boundary.attribute, "space": boundary.space,
                  "intercept": boundary.intercept,
                  "intercept_known": bool(boundary.provenance.get("intercept_known", True)),
                  "metrics": boundary.metrics},
        strengths=s, scores=scores, reference_scores=ref_scores, identity=identity,
        identity_model=identity_model, target=target_score(boundary.attribute, names),
        conditions=cond_info,
        settings={"mode": mode, "unit": unit, "sigma": scale, "layers": layers, "clamp": clamp,
                  "generator": getattr(generator, "name", type(generator).__name__),
                  "truncation_psi": truncation_psi, "truncation_space": truncation_space},
        seeds=None if seeds is None else [int(v) for v in seeds],
        seconds=time.perf_counter() - t0, images=count, thumbnails=thumbnails)


def check_run(keep: int, batch: int) -> None:
    """ValueError naming the option unless `keep` >= 0 and `batch` >= 1 (checked before any
    network is loaded)."""
    if int(keep) < 0:
        raise ValueError(f"keep (--keep) must be 0 or more: the faces shown in the grids, 0 for "
                         f"no grids; got {keep}")
    if int(batch) < 1:
        raise ValueError(f"batch (--batch) must be at least 1, got {batch}")


def write_evaluation(evaluation: EditEvaluation, out: str | Path,
                     info: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write `evaluation.json` (the JSON summary plus `info`), `curves.png` and, per variant
    with thumbnails, `grid_<variant>.png` (faces x strengths) to `out`; returns the paths."""
    from PIL import Image

    from facelatent.editing.folder import labelled_grid, strength_label
    from facelatent.evaluation.plots import curves_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = evaluation.to_json()
    data.update(jsonable(info or {}))
    paths = {"json": out / "evaluation.json", "curves": out / "curves.png"}
    paths["curves"].write_bytes(curves_png(data))
    labels = [strength_label(v, data.get("unit", "raw")) for v in evaluation.strengths]
    seeds = evaluation.seeds
    for variant, tiles in evaluation.thumbnails.items():
        rows = [f"seed {seeds[i]}" if seeds else f"face {i}" for i in range(len(tiles))]
        path = out / f"grid_{variant}.png"
        Image.fromarray(labelled_grid(tiles, labels, rows)).save(path)
        paths[f"grid_{variant}"] = path
    data["files"] = {k: p.name for k, p in paths.items()}
    write_json(paths["json"], data, format=EVALUATION_FORMAT, version=EVALUATION_FORMAT_VERSION)
    return paths
