"""The two baselines the mapping is measured against: style mixing in W+ and a walk along
InterFaceGAN boundaries. Both need latents of their inputs (the known w of a generated face,
or an inversion of a photo); the mapping needs only images.

Style mixing (:func:`style_mix`): the identity face's latent broadcast to every style input,
with the first ``k`` (coarse) inputs taken from the attribute face's. Coarse inputs set pose
and face shape, later ones expression details, colour and texture. There is no right ``k``
in advance, so :func:`crossover_candidates` sweeps a range and :func:`choose_crossover`
picks one by measurement (:data:`CROSSOVER_RULE`).

Boundary walk (:func:`boundary_walk`): move the identity face's latent along the normals of
the pose and expression boundaries (:data:`WALK_SCORES`: yaw, pitch, smile, ...) until its
scores match the attribute face's. The protocol:

1. Each walked normal is conditioned (:func:`facelatent.boundaries.conditional.condition`)
   on every other boundary given, walked or held (age, gender, eyeglasses: traits the
   identity face owns), so a step on one attribute leaves the others where they were.
2. A first slope (score per latent unit along each direction) is fitted by least squares
   over faces whose latents and scores are known already (:func:`estimate_slopes`): no render.
3. Each iteration steps every attribute by ``(target - score) / slope`` (Newton on one
   attribute at a time), capped at ``max_strength`` sigma of its boundary, renders, scores,
   and replaces the slope by the secant through the last two points when that is positive.
4. Of the start and the iterates, each face keeps the one whose scores are closest to the
   targets (gaps summed in units of each score's spread), so the walk never ends worse than
   where it started.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from facelatent.boundaries.boundary import Boundary
from facelatent.boundaries.conditional import condition
from facelatent.editing.settings import check_fits, load_edit_boundary
from facelatent.evaluation.metrics import target_score
from facelatent.evaluation.report import collect_boundary_files
from facelatent.faces.registry import ATTRIBUTES, GROUPS

__all__ = ["CROSSOVER_RULE", "WALK_SCORES", "WalkPlan", "WalkResult", "boundary_walk",
           "choose_crossover", "crossover_candidates", "estimate_slopes", "load_walk_boundaries",
           "plan_walk", "style_mix"]

# Scores the attribute image decides (pose and expression); a boundary of any other score is a
# trait of the identity image, held fixed while walking.
WALK_SCORES = ("yaw", "pitch", "roll", "smile_logit", "smile", "mouth_open", "eyes_open",
               *GROUPS["expression"])
CROSSOVER_RULE = ("the crossover k with the highest mean identity cosine to the identity image "
                  "among those whose mean landmark error is no higher than the mapping's; if "
                  "no k is that close in pose, the k with the lowest landmark error")
_MAX_CROSSOVER = 10   # MobileStyleGAN's inputs 0-9 drive 4x4 to 32x32; later ones the details


# -- style mixing ----------------------------------------------------------------------------------
def crossover_candidates(num_ws: int) -> tuple[int, ...]:
    """The crossovers swept by default: 2 to 10 style inputs (fewer for a shorter generator).
    One input (the 4x4 constant's modulation) hardly moves pose; past MobileStyleGAN's 32x32
    inputs (its first 10 of 23) the attribute face's features replace the identity's."""
    top = min(_MAX_CROSSOVER, int(num_ws) - 1)
    return tuple(range(min(2, top), top + 1))


def _wplus(latents: Tensor, num_ws: int, name: str) -> Tensor:
    if latents.ndim == 2:
        return latents[:, None].expand(-1, num_ws, -1)
    if latents.ndim == 3 and latents.shape[1] == num_ws:
        return latents
    raise ValueError(f"{name} must be w [N, w_dim] or W+ [N, {num_ws}, w_dim], got "
                     f"{list(latents.shape)}")


def style_mix(w_identity: Tensor, w_attributes: Tensor, crossover: int, num_ws: int) -> Tensor:
    """W+ latents ``[N, num_ws, w_dim]``: style inputs ``0..crossover-1`` from
    ``w_attributes``, the rest from ``w_identity`` (each ``[N, w_dim]`` or W+). ``crossover``
    0 gives the identity face, ``num_ws`` the attribute face."""
    if not 0 <= int(crossover) <= num_ws:
        raise ValueError(f"crossover must be 0 to {num_ws} (the generator's style inputs), got "
                         f"{crossover}")
    a = _wplus(w_identity, num_ws, "w_identity")
    b = _wplus(w_attributes, num_ws, "w_attributes")
    if a.shape != b.shape:
        raise ValueError(f"w_identity and w_attributes must pair one to one, got "
                         f"{list(w_identity.shape)} and {list(w_attributes.shape)}")
    return torch.cat([b[:, :crossover], a[:, crossover:]], dim=1)


def choose_crossover(sweep: Mapping[int, Mapping[str, float]], mapping_landmark_error: float,
                     ) -> int:
    """The crossover :data:`CROSSOVER_RULE` picks. ``sweep``: ``{k: {"identity_cosine",
    "landmark_error"}}`` (means over the pairs); ``mapping_landmark_error``: the mapping's."""
    if not sweep:
        raise ValueError("sweep is empty: measure at least one crossover")

    def value(k: int, key: str, worst: float) -> float:
        v = float(sweep[k][key])
        return v if np.isfinite(v) else worst

    close = [k for k in sweep if value(k, "landmark_error", np.inf) <= mapping_landmark_error]
    if close:
        return max(close, key=lambda k: (value(k, "identity_cosine", -np.inf), -k))
    return min(sweep, key=lambda k: (value(k, "landmark_error", np.inf), k))


# -- boundary walk: which boundaries, which directions ----------------------------------------------
def load_walk_boundaries(paths: Sequence[str | os.PathLike[str]], generator: object,
                         ) -> tuple[list[Boundary], list[str]]:
    """W boundaries from files and folders (a folder's ``.npz``/``.npy`` files), checked to fit
    ``generator`` (anything with ``w_dim``). Returns ``(boundaries, notes)``: a folder's Z or
    W+ boundaries are skipped with a note (the walk moves w); a file named alone must be W."""
    out: list[Boundary] = []
    notes: list[str] = []
    for raw in paths:
        folder = os.path.isdir(raw)
        for path in collect_boundary_files([raw]):
            b = load_edit_boundary(path)
            if b.space != "w":
                if not folder:
                    raise ValueError(f"{path} is a {b.space!r}-space boundary; the boundary walk "
                                     "moves w: pass W boundaries (e.g. yaw_w.npz from "
                                     "facelatent boundary fit --space w)")
                notes.append(f"skipped {path.name}: a {b.space!r}-space boundary (the walk "
                             "moves w)")
                continue
            check_fits(b, generator)
            out.append(b)
    return out, notes


@dataclass
class WalkPlan:
    """What the walk moves: per walked score a unit direction in W.

    ``scores``: A walked score names; ``directions``: ``[A, w_dim]`` float64 unit rows
    (conditioned, module docstring step 1); ``sigmas``: ``[A]`` each boundary's sigma unit
    in latent units (NaN when its metrics record none); ``held``: the attributes of the
    boundaries held fixed; ``notes``: boundaries not used and why.
    """

    scores: list[str]
    directions: np.ndarray
    sigmas: np.ndarray
    held: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_walk(boundaries: Sequence[Boundary]) -> WalkPlan:
    """Split ``boundaries`` (W, one w_dim) into walked (a score in :data:`WALK_SCORES`; a
    boundary of "smile" walks "smile_logit", the unsaturated log-odds) and held, and
    condition each walked normal on all the others. Two boundaries of one score: the first
    walks, the second is dropped with a note."""
    walked: dict[str, Boundary] = {}
    held: list[Boundary] = []
    notes: list[str] = []
    for b in boundaries:
        score = target_score(b.attribute, tuple(ATTRIBUTES))
        if score is None:
            notes.append(f"{b.attribute or 'a boundary'}: no face model scores it; held fixed")
            held.append(b)
        elif score not in WALK_SCORES:
            held.append(b)
        elif score in walked:
            notes.append(f"{b.attribute}: a second boundary for {score}; not used")
        else:
            walked[score] = b
    names = list(walked)
    rows, sigmas = [], []
    for name in names:
        others = [b.normal for b in held] + [walked[o].normal for o in names if o != name]
        try:
            rows.append(condition(walked[name].normal, others))
        except ValueError:         # in the span of the others (a duplicate): plain normal
            rows.append(condition(walked[name].normal, []))
        sigmas.append(float(walked[name].metrics.get("sigma", np.nan)))
    dim = boundaries[0].dim if boundaries else 0
    directions = np.stack(rows) if rows else np.zeros((0, dim))
    return WalkPlan(names, directions, np.asarray(sigmas, np.float64),
                    [b.attribute for b in held], notes)


# -- boundary walk: the iterations ------------------------------------------------------------------
def _projection(latents: Tensor, directions: Tensor) -> Tensor:
    """``[N, A]`` positions of latents ``[N, D]`` (or W+, averaged over inputs) along rows."""
    x = latents.double()
    x = x.mean(dim=1) if x.ndim == 3 else x
    return x @ directions.T


def estimate_slopes(latents: Tensor, scores: Tensor, directions: Tensor) -> Tensor:
    """Score per latent unit along each direction ``[A]``, by least squares of ``scores``
    ``[M, A]`` on the latents' positions along ``directions`` ``[A, D]`` (latents ``[M, D]``
    or W+). Boundary normals point to higher scores, so a fit at or below zero (too few or too
    alike faces) is raised to a quarter of the faces' score spread per position spread."""
    pos = _projection(latents, directions.double())                  # [M, A]
    s = scores.double()
    ok = torch.isfinite(s) & torch.isfinite(pos)
    out = torch.empty(directions.shape[0], dtype=torch.float64)
    for a in range(directions.shape[0]):
        p, y = pos[ok[:, a], a], s[ok[:, a], a]
        if len(p) < 2 or float(p.std()) == 0:
            out[a] = 1.0
            continue
        pc, yc = p - p.mean(), y - y.mean()
        fit = float(pc @ yc) / float(pc @ pc)
        floor = 0.25 * float(y.std()) / float(p.std())
        out[a] = fit if fit > floor else max(floor, 1e-6)
    return out


@dataclass
class WalkResult:
    """``latents``: the walked latents (the start's shape); ``steps``: ``[N, A]`` how far
    along each direction, latent units; ``gap_start``, ``gap_end``: ``[N, A]`` |target -
    score| at the start and at the kept iterate; ``renders``: images rendered per face."""

    latents: Tensor
    steps: Tensor
    gap_start: Tensor
    gap_end: Tensor
    renders: int


def boundary_walk(start: Tensor, start_scores: Tensor, targets: Tensor, directions: Tensor,
                  score: Callable[[Tensor], Tensor], *, slopes: Tensor, max_steps: Tensor,
                  scales: Tensor | None = None, iterations: int = 3) -> WalkResult:
    """Walk ``start`` (``[N, D]`` or W+ ``[N, L, D]``) along ``directions`` (``[A, D]``, unit)
    until ``score(latents) -> [N, A]`` meets ``targets`` ``[N, A]`` (module docstring).

    ``start_scores``: ``[N, A]``, the start's scores (known, not rendered again).
    ``slopes``: ``[A]`` first slopes (:func:`estimate_slopes`); ``max_steps``: ``[A]`` cap on
    the distance moved along each direction (latent units); ``scales``: ``[A]`` each score's
    spread, the units gaps are summed in to pick the best iterate (default 1).
    ``iterations``: renders per face. NaN scores (no face) count as the largest gap.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    n, a = targets.shape
    if start_scores.shape != (n, a) or directions.shape[0] != a or start.shape[0] != n:
        raise ValueError(f"boundary_walk needs start [N, ...], start_scores and targets [N, A] "
                         f"and directions [A, D] to agree; got {list(start.shape)}, "
                         f"{list(start_scores.shape)}, {list(targets.shape)}, "
                         f"{list(directions.shape)}")
    u = directions.double()
    t = targets.double()
    unit = (scales.double() if scales is not None else torch.ones(a, dtype=torch.float64))
    unit = torch.where(unit > 0, unit, torch.ones_like(unit))
    cap = max_steps.double()
    slope0 = slopes.double().clamp(min=1e-9)
    slope = slope0.expand(n, a).clone()

    def move(k: Tensor) -> Tensor:
        delta = k @ u                                                    # [N, D]
        return start + (delta[:, None] if start.ndim == 3 else delta).to(start.dtype)

    def badness(s: Tensor) -> Tensor:
        gap = ((t - s).abs() / unit).nan_to_num(nan=1e6)
        return gap.sum(dim=1)

    k = torch.zeros(n, a, dtype=torch.float64)
    s = start_scores.double()
    best_k, best_s, best = k.clone(), s.clone(), badness(s)
    for _ in range(iterations):
        step = ((t - s) / slope).nan_to_num(0.0)
        k_new = torch.maximum(torch.minimum(k + step, cap), -cap)
        s_new = score(move(k_new).float() if start.dtype != torch.float64 else move(k_new))
        s_new = s_new.double().cpu()
        moved = (k_new - k).abs() > 1e-6 * cap
        secant = (s_new - s) / torch.where(moved, k_new - k, torch.ones_like(k))
        # A secant that is not positive (noise, or a saturated score) says nothing about where
        # the target is; keep the slope, within a factor 10 of the first one.
        usable = moved & torch.isfinite(secant) & (secant > 0)
        slope = torch.where(usable, torch.minimum(torch.maximum(secant, slope0 / 10),
                                                  slope0 * 10), slope)
        k, s = k_new, s_new
        value = badness(s)
        better = value < best
        best = torch.where(better, value, best)
        best_k = torch.where(better[:, None], k, best_k)
        best_s = torch.where(better[:, None], s, best_s)
    return WalkResult(move(best_k).to(start.dtype), best_k, (t - start_scores.double()).abs(),
                      (t - best_s).abs(), iterations)
