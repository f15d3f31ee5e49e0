"""Edit quality of a boundary: how far its edit moves the attribute per unit of latent distance,
and what each unit of that change costs in identity and in the other attributes.

Validation accuracy cannot choose between two directions that both separate the extremes
perfectly; a user wants the direction that changes the attribute most for the least identity
loss and the least side-effect drift. The figures, from faces edited at signed latent distances
`d` (relative mode; strength 0 is the unedited face):

- `change_per_unit`: least-squares slope (through 0) of the mean target change against `d`, in
  score units per latent unit; `change_per_unit_sd` in units of the target's standard
  deviation `target_sd` (the store's spread when known, else the unedited faces'), and
  `change_per_sigma` per the boundary's own sigma (the samples' spread along its normal).
- `identity_loss_per_change`: sum of (1 - cosine to the unedited face) over every edited face,
  divided by the sum of |target change| in sd: identity lost per standard deviation of
  attribute change (lower is better). Cosines come from the recogniser that did not make the
  store's embeddings (`evaluation_identity_model`).
- `drift_per_change`: the same ratio for the mean |change| of the other attributes
  (`DRIFT_SCORES` less the target, each in its own sd): side effects per sd of attribute change.
- `same_person`: the fraction of edited faces above the recogniser's LFW-calibrated threshold
  (`faces.calibration.SAME_PERSON_THRESHOLD`), per distance and over all edited faces.
- `at_change`: identity loss, drift and same-person fraction interpolated (mean curves, each side
  of 0, then averaged over the sides that reach it) where the mean target change reaches
  `match` sd (default 1), with the latent distance that takes: a comparison at equal effect.
- `*_se`: standard errors of the two ratios by a seeded bootstrap over faces.

`compare_boundaries` runs several boundary files on the same faces and distances, rendering the
unedited faces once, and returns one row of these figures per boundary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from facelatent.boundaries.boundary import Boundary
from facelatent.evaluation.metrics import EditEvaluation, score_names, target_score

__all__ = ["DRIFT_SCORES", "QUALITY_FORMAT", "compare_boundaries", "edit_quality",
           "evaluation_quality"]

QUALITY_FORMAT = "facelatent.edit-comparison"
QUALITY_FORMAT_VERSION = 1
# The attributes whose drift counts (log-odds where a probability saturates), less the target.
DRIFT_SCORES = ("yaw", "pitch", "smile_logit", "age", "gender_logit", "eyeglasses")
BOOTSTRAP = 200


def _family(name: str) -> set[str]:
    base = name.removesuffix("_logit")
    family = {name, base, f"{base}_logit"}
    if base in ("yaw", "pose"):
        family |= {"yaw", "pose"}
    return family


def drift_names(target: str | None, scored: Sequence[str],
                names: Sequence[str] = DRIFT_SCORES) -> list[str]:
    """The drift attributes present in `scored`, without the target's family (smile and
    smile_logit; pose and yaw)."""
    skip = _family(target) if target else set()
    return [n for n in names if n in scored and n not in skip]


def _ratio(num: np.ndarray, den: np.ndarray) -> float:
    total = float(np.nansum(den))
    return float(np.nansum(num)) / total if total > 0 else float("nan")


def _at_change(d: np.ndarray, change: np.ndarray, curves: Mapping[str, np.ndarray],
               match: float) -> dict[str, Any]:
    """Each curve `[S]` interpolated where the mean signed change (`change` `[S]`, in sd, taken
    toward the edit's side) first reaches `match`, on each side of 0; averaged over the sides
    that reach it."""
    found: dict[str, list[float]] = {k: [] for k in (*curves, "distance")}
    for side in (1.0, -1.0):
        idx = np.flatnonzero(np.sign(d) == side)
        idx = idx[np.argsort(np.abs(d[idx]))]
        x_prev, dist_prev = 0.0, 0.0
        y_prev = {k: (1.0 if k == "same_person" else 0.0) for k in curves}   # the unedited face
        for i in idx:
            x = side * float(change[i])
            if not math.isfinite(x):
                break
            if x >= match:
                t = (match - x_prev) / (x - x_prev) if x > x_prev else 1.0
                for k, c in curves.items():
                    found[k].append(y_prev[k] + t * (float(c[i]) - y_prev[k]))
                found["distance"].append(dist_prev + t * (abs(float(d[i])) - dist_prev))
                break
            x_prev, dist_prev = x, abs(float(d[i]))
            y_prev = {k: float(c[i]) for k, c in curves.items()}
    out: dict[str, Any] = {"match_sd": match, "sides": len(found["distance"])}
    for k, v in found.items():
        out[k] = float(np.mean(v)) if v else None
    return out


def edit_quality(distances: Sequence[float] | np.ndarray, target_delta: np.ndarray,
                 identity: np.ndarray, drift_deltas: Mapping[str, np.ndarray], *,
                 target_sd: float, drift_sd: Mapping[str, float], identity_model: str,
                 sigma: float | None = None, match: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """The figures of the module docstring from faces edited at latent `distances` `[S]`.

    target_delta `[N, S]`: edited minus unedited target score; identity `[N, S]`: cosine to the
    unedited face; drift_deltas `{name: [N, S]}`: the same differences for other attributes.
    target_sd, drift_sd: the standard deviations that turn score changes into sd. `sigma`: the
    boundary's own unit, for `change_per_sigma`.
    """
    from facelatent.faces.calibration import SAME_PERSON_THRESHOLD

    d = np.asarray(distances, dtype=np.float64)
    t = np.asarray(target_delta, dtype=np.float64)
    ident = np.asarray(identity, dtype=np.float64)
    if t.ndim != 2 or t.shape != ident.shape or t.shape[1] != len(d):
        raise ValueError(f"target_delta and identity must both be [N, S] with S = {len(d)} "
                         f"distances, got {list(t.shape)} and {list(ident.shape)}")
    if not (target_sd > 0 and math.isfinite(target_sd)):
        raise ValueError(f"target_sd must be a positive number, got {target_sd}")
    edited = d != 0
    t_sd = t / target_sd
    loss = 1.0 - ident
    drift = np.zeros_like(t)
    used = []
    for name, delta in drift_deltas.items():
        sd = float(drift_sd.get(name, float("nan")))
        if sd > 0 and math.isfinite(sd):
            drift += np.abs(np.asarray(delta, dtype=np.float64)) / sd
            used.append(name)
    drift = drift / len(used) if used else np.full_like(t, np.nan)
    threshold = SAME_PERSON_THRESHOLD[identity_model]
    same = (ident > threshold).astype(np.float64)

    mean_t = np.nanmean(t, axis=0)
    dd = float(d @ d)
    slope = float(d @ mean_t) / dd if dd > 0 else float("nan")
    slope_sd = slope / target_sd

    def ratios(rows: np.ndarray) -> tuple[float, float]:
        den = np.abs(t_sd[rows][:, edited])
        return (_ratio(loss[rows][:, edited], den), _ratio(drift[rows][:, edited], den))

    n = t.shape[0]
    id_cost, drift_cost = ratios(np.arange(n))
    rng = np.random.default_rng(seed)
    boot = np.array([ratios(rng.integers(0, n, n)) for _ in range(BOOTSTRAP)]) if n > 1 else None
    per_attribute = {}
    for name in used:
        delta = np.abs(np.asarray(drift_deltas[name], dtype=np.float64)) / float(drift_sd[name])
        per_attribute[name] = _ratio(delta[:, edited], np.abs(t_sd[:, edited]))
    curves = {"identity_loss": np.nanmean(loss, axis=0), "drift": np.nanmean(drift, axis=0),
              "same_person": same.mean(axis=0)}
    return {
        "distances": d.tolist(),
        "n": n,
        "target_sd": target_sd,
        "change": mean_t.tolist(),
        "change_sd": (mean_t / target_sd).tolist(),
        "change_per_unit": slope,
        "change_per_unit_sd": slope_sd,
        "change_per_sigma": slope_sd * sigma if sigma else None,
        "sigma": sigma,
        "identity_loss": curves["identity_loss"].tolist(),
        "identity_mean": np.nanmean(ident, axis=0).tolist(),
        "identity_loss_per_change": id_cost,
        "identity_loss_per_change_se": float(np.nanstd(boot[:, 0])) if boot is not None else None,
        "drift": curves["drift"].tolist(),
        "drift_per_change": drift_cost,
        "drift_per_change_se": float(np.nanstd(boot[:, 1])) if boot is not None else None,
        "drift_per_change_by_attribute": per_attribute,
        "drift_attributes": used,
        "same_person": curves["same_person"].tolist(),
        "same_person_edited": float(same[:, edited].mean()) if edited.any() else None,
        "identity_model": identity_model,
        "same_person_threshold": threshold,
        "at_change": _at_change(d, mean_t / target_sd, curves, match),
    }


def evaluation_quality(ev: EditEvaluation, variant: str = "plain",
                       target_sd: float | None = None,
                       score_sd: Mapping[str, float] | None = None) -> dict[str, Any] | None:
    """`edit_quality` of one variant of an `EditEvaluation` (relative mode with a target whose
    scores vary only; None otherwise). Strengths in sigma units are turned into latent distances with the
    evaluation's sigma. `score_sd`: each score's std (e.g. the store's); default the unedited
    faces'."""
    if ev.target is None or ev.settings.get("mode", "relative") != "relative":
        return None
    scale = float(ev.settings.get("sigma") or 1.0) if ev.settings.get("unit") == "sigma" else 1.0
    ref = ev.reference_scores

    def sd(name: str) -> float:
        if score_sd is not None and name in score_sd:
            return float(score_sd[name])
        return float(np.nanstd(ref[name]))

    scores = ev.scores[variant]
    names = drift_names(ev.target, list(scores))
    boundary_sigma = (ev.boundary.get("metrics") or {}).get("sigma")
    target_sd = target_sd or sd(ev.target)
    if not (target_sd > 0 and math.isfinite(target_sd)):
        return None                  # the target does not vary: no change can be put in sd
    return edit_quality(
        ev.strengths * scale, scores[ev.target] - ref[ev.target][:, None], ev.identity[variant],
        {n: scores[n] - ref[n][:, None] for n in names},
        target_sd=target_sd, drift_sd={n: sd(n) for n in names},
        identity_model=ev.identity_model,
        sigma=float(boundary_sigma) if boundary_sigma else None)


def compare_boundaries(generator: Any, analyzer: Any, boundaries: Sequence[Boundary],
                       latents_or_seeds: Sequence[int] | torch.Tensor | np.ndarray,
                       distances: Sequence[float] | np.ndarray, *, identity_model: str = "dlib",
                       score_sd: Mapping[str, float] | None = None,
                       labels: Sequence[str] | None = None, truncation_psi: float = 1.0,
                       truncation_space: str = "w", batch: int = 8, match: float = 1.0,
                       attributes: Sequence[str] | str | None = None,
                       progress: Callable[[int], None] | None = None,
                       on_start: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Edit the same faces by the same signed latent `distances` (raw units, relative mode)
    along each boundary and measure `edit_quality` for each; the unedited faces are rendered
    and scored once. The boundaries must share one space; each row reads its own target score
    (a boundary whose attribute is not scored gets no "quality"). `attributes`: the scored
    names (default DEFAULT_ATTRIBUTES, log-odds added). `score_sd`: each score's std (the store's, for
    figures comparable across runs); default the unedited faces'. Returns
    `{"rows": [...], "settings": {...}}`, JSON-safe."""
    from facelatent.editing.apply import base_latents, edit_latents, strengths_array
    from facelatent.evaluation.metrics import _measure

    if not boundaries:
        raise ValueError("compare_boundaries needs at least one boundary")
    spaces = {b.space for b in boundaries}
    if len(spaces) != 1:
        raise ValueError(f"the boundaries must share one latent space to be compared on the same "
                         f"faces, got {sorted(spaces)}")
    labels = list(labels) if labels is not None else [b.attribute or f"boundary {i}"
                                                      for i, b in enumerate(boundaries)]
    if len(labels) != len(boundaries):
        raise ValueError(f"{len(labels)} labels for {len(boundaries)} boundaries")
    d = strengths_array(distances)
    d = d[d != 0]
    if d.size == 0:
        raise ValueError("distances must hold at least one non-zero value")
    space = boundaries[0].space
    names = score_names(attributes)
    base = base_latents(generator, latents_or_seeds, space, truncation_psi, truncation_space)
    N, S = base.shape[0], len(d)
    if on_start is not None:
        on_start(N + N * S * len(boundaries))
    run = {"truncation_psi": truncation_psi, "truncation_space": truncation_space,
           "batch": batch, "thumb_size": 64, "clamp": True, "progress": progress, "keep": 0}
    t0 = time.perf_counter()
    ref_scores, ref_embed, _ = _measure(generator, analyzer, base, space, names, identity_model,
                                        **run)
    sd = {n: float(score_sd[n]) if score_sd and n in score_sd else float(np.nanstd(v))
          for n, v in ref_scores.items()}
    rows = []
    first = boundaries[0].normal.reshape(-1).astype(np.float64)
    for label, b in zip(labels, boundaries):
        target = target_score(b.attribute or "", names)
        edited = edit_latents(base, b, d, mode="relative", unit="raw")
        scores, embed, _ = _measure(generator, analyzer, edited.flatten(0, 1), space, names,
                                    identity_model, **run)
        per_face = {n: v.reshape(N, S) for n, v in scores.items()}
        cos = np.einsum("nsd,nd->ns", embed.reshape(N, S, -1).astype(np.float64),
                        ref_embed.astype(np.float64))
        row: dict[str, Any] = {
            "label": label, "attribute": b.attribute, "space": b.space, "target": target,
            "file": b.provenance.get("file"), "solver": b.provenance.get("solver"),
            "protocol": b.provenance.get("protocol"), "ratio": b.provenance.get("ratio"),
            "metrics": {k: b.metrics.get(k) for k in ("val_accuracy", "remaining_accuracy",
                                                      "remaining_accuracy_interfacegan",
                                                      "stability", "sigma") if k in b.metrics},
            "cos_to_first": float(first @ b.normal.reshape(-1)),
        }
        if target is not None and sd[target] > 0:        # else the target does not vary
            drift = drift_names(target, names)
            row["quality"] = edit_quality(
                d, per_face[target] - ref_scores[target][:, None], cos,
                {n: per_face[n] - ref_scores[n][:, None] for n in drift},
                target_sd=sd[target], drift_sd={n: sd[n] for n in drift},
                identity_model=identity_model, sigma=b.metrics.get("sigma"), match=match)
        rows.append(row)
    seconds = time.perf_counter() - t0
    return {"rows": rows, "settings": {
        "distances": d.tolist(), "n": N, "space": space, "identity_model": identity_model,
        "truncation_psi": truncation_psi, "truncation_space": truncation_space,
        "score_sd": sd, "match_sd": match, "seconds": round(seconds, 2),
        "images": N + N * S * len(boundaries),
        "generator": getattr(generator, "name", type(generator).__name__)}}
