"""How well the mapping swaps identity and attributes, beside two baselines on the same pairs.

    ev = evaluate_mapping(mapper, G, analyzer, pairs=32, boundaries=["runs/boundaries"])
    ev.summary()["sets"]["generated"]["methods"]["mapping"]["identity_cosine"]["mean"]
    write_mapping_evaluation(ev, "runs/mapping-eval")   # summary.json, index.html, grids

Pair sets (each pair: an identity face and an attribute face of another person):

- "generated": held-out faces from seeds the training never saw (from 1,000,000 up by
  default), at the checkpoint's truncation; identity face i pairs with attribute face N + i.
  Their w is known, so both baselines run.
- "photos": FFHQ-aligned photos (largest face each), every ordered pair of two photos; the
  mapping only (the baselines need latents).
- "inversions": the aligned crops of ``facelatent invert`` folders with their latents: the
  mapping and both baselines.

Methods: "mapping" (the checkpoint), "style_mix" and "boundary_walk" (see
:mod:`facelatent.mapping.baselines`), and three references: "identity_image" (the output is
the identity face itself) and "attribute_image" (the attribute face itself) bracket the
trade-off; "average_face" (the generator's w_avg for every pair) is what an output that
carries no information scores (with dlib on generated faces, a high identity cosine: read
every identity figure against it).

Metrics per pair, on images brought to ``size`` px (256 by default) and clamped to [-1, 1]:

- identity_cosine: output vs the identity face, attribute_cosine: output vs the attribute
  face, with the recogniser the mapping did NOT train with (dlib for an SFace mapping), and
  the fraction above its LFW-calibrated :data:`SAME_PERSON_THRESHOLD` beside each mean.
- landmark_error: mean distance of the 68 landmarks (face-api) of the output and the
  attribute face, over the attribute face's inter-ocular distance (eye centres = means of
  points 36-41 and 42-47).
- yaw_error, pitch_error: |difference| in degrees to the attribute face.
- expression_distance: total variation between the 7-class expression probabilities of the
  output and the attribute face (0 same, 1 disjoint).

Reconstruction (every face with itself as both inputs): MS-SSIM and identity cosine of the
mapping's output to the face. The baselines reproduce a face exactly from its own latent, so
they have no reconstruction figure.

The mapping reads the faces at the measured size (256 px, as the training store's renders).
Style mixing's crossover is chosen on the evaluated pairs themselves (in-sample, which can
only favour the baseline). Where the pieces live: the metrics and the renderer-measurer in
:mod:`~facelatent.mapping.evaluate_metrics`, photo and inversion inputs in
:mod:`~facelatent.mapping.evaluate_inputs`, the summary and the page in
:mod:`~facelatent.mapping.evaluate_report`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facelatent.boundaries.boundary import Boundary
from facelatent.faces.analysis import FaceAnalyzer
from facelatent.faces.calibration import SAME_PERSON_THRESHOLD
from facelatent.generators.base import Generator, as_wplus
from facelatent.images import resize, to_uint8
from facelatent.latents.sampling import latents_for_seeds
from facelatent.mapping.baselines import (
    CROSSOVER_RULE,
    WalkPlan,
    boundary_walk,
    choose_crossover,
    crossover_candidates,
    estimate_slopes,
    load_walk_boundaries,
    plan_walk,
    style_mix,
)
from facelatent.mapping.evaluate_inputs import (
    cross_pairs,
    load_inverted_faces,
    load_photo_faces,
)
from facelatent.mapping.evaluate_metrics import (
    MEASURED_SCORES,
    METRICS,
    FaceMeasures,
    FaceMeter,
    Progress,
    cosine,
    pair_metrics,
)
from facelatent.mapping.mapper import Mapper

__all__ = ["DEFAULT_SEED_START", "METHODS", "METRICS", "MappingEvaluation", "PairSetEvaluation",
           "check_evaluate_options", "evaluate_mapping", "write_mapping_evaluation"]

DEFAULT_SEED_START = 1_000_000   # beyond the seeds of any training store of up to 1 M faces
METRIC_SIZE = 256                # px every face is measured at
METHODS = ("mapping", "style_mix", "boundary_walk", "identity_image", "attribute_image",
           "average_face")


# -- results -------------------------------------------------------------------------------------
@dataclass
class PairSetEvaluation:
    """The raw numbers of one pair set (module docstring).

    ``labels``: one per face; ``pairs``: ``[P, 2]`` (identity face, attribute face) indices;
    ``metrics``: ``{method: {metric: [P]}}``; ``reconstruction``: ``{"msssim",
    "identity_cosine": [F]}``; ``sweep``: ``{k: {metric: [P]}}`` of style mixing;
    ``crossover``: the k reported as "style_mix"; ``walk``: what the walk did;
    ``thumbnails``: uint8 ``[M, h, w, 3]`` per column ("faces": every face; "mapping",
    "boundary_walk", "style_mix_<k>": the first pairs; "reconstruction": the first faces).
    """

    name: str
    labels: list[str]
    pairs: np.ndarray
    metrics: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    reconstruction: dict[str, np.ndarray] = field(default_factory=dict)
    sweep: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    crossover: int | None = None
    walk: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class MappingEvaluation:
    """Every pair set's numbers plus the run's settings; :meth:`summary` is the JSON."""

    identity_model: str
    sets: dict[str, PairSetEvaluation]
    settings: dict[str, Any]
    seconds: float = 0.0
    images: int = 0

    def summary(self) -> dict[str, Any]:
        """Means, standard errors, same-person fractions, the crossover sweep, the walk, the
        reconstruction and each baseline against the mapping, per pair set."""
        from facelatent.mapping.evaluate_report import summarise_set

        return {"identity_model": self.identity_model,
                "independent_judge": self.identity_model != self.settings.get("id_model_trained"),
                "same_person_threshold": SAME_PERSON_THRESHOLD[self.identity_model],
                "settings": self.settings, "crossover_rule": CROSSOVER_RULE,
                "sets": {k: summarise_set(s, self.identity_model) for k, s in self.sets.items()},
                "seconds": round(self.seconds, 2), "images": self.images}


# -- the run -------------------------------------------------------------------------------------
def _means(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            for k, v in metrics.items()}


def _evaluate_set(run: FaceMeter, name: str, images: Tensor, latents: Tensor | None,
                  pairs: np.ndarray, labels: list[str], plan: WalkPlan | None,
                  crossovers: Sequence[int], keep: int, iterations: int,
                  max_strength: float) -> PairSetEvaluation:
    """Every method on one set: faces ``[F, 3, S, S]`` (measured size), their latents
    (``[F, w_dim]`` or W+, or None: mapping only), pairs ``[P, 2]``."""
    result = PairSetEvaluation(name, labels, pairs)
    walked = list(plan.scores) if plan is not None else []
    names = list(dict.fromkeys([*MEASURED_SCORES, *walked]))
    src = run.measure(images, names)
    result.thumbnails["faces"] = to_uint8(resize(images, run.thumb))
    ident, attr = src.take(pairs[:, 0]), src.take(pairs[:, 1])
    result.metrics["identity_image"] = pair_metrics(ident, ident, attr)
    result.metrics["attribute_image"] = pair_metrics(attr, ident, attr)
    average = run.measure_latents(run.generator.w_avg.detach().cpu()[None])[0]
    result.metrics["average_face"] = pair_metrics(average.take(np.zeros(len(pairs), np.int64)),
                                                  ident, attr)

    w_map = run.swap(images[pairs[:, 0]], images[pairs[:, 1]])
    out, thumbs, _ = run.measure_latents(w_map, keep)
    result.metrics["mapping"], result.thumbnails["mapping"] = pair_metrics(out, ident, attr), thumbs
    w_rec = run.swap(images, images)
    rec, thumbs, ssim = run.measure_latents(w_rec, keep, compare=images)
    assert ssim is not None
    result.reconstruction = {"msssim": ssim,
                             "identity_cosine": cosine(rec.embeddings, src.embeddings)}
    result.thumbnails["reconstruction"] = thumbs
    if latents is None:
        result.notes.append("baselines need latents of the faces: pass facelatent invert "
                            "folders (--inversions) to compare them on photos")
        return result

    num_ws = int(run.generator.num_ws)
    w_id = as_wplus(run.generator, latents[pairs[:, 0]])      # the codes synthesis draws
    w_attr = as_wplus(run.generator, latents[pairs[:, 1]])
    for k in crossovers:
        out, thumbs, _ = run.measure_latents(style_mix(w_id, w_attr, k, num_ws), keep)
        result.sweep[k] = pair_metrics(out, ident, attr)
        result.thumbnails[f"style_mix_{k}"] = thumbs
    mapping_means = _means(result.metrics["mapping"])
    result.crossover = choose_crossover({k: _means(v) for k, v in result.sweep.items()},
                                        mapping_means["landmark_error"])
    result.metrics["style_mix"] = result.sweep[result.crossover]

    if plan is None or not walked:
        result.notes.append("boundary walk: no pose or expression boundary was given "
                            "(--boundaries with e.g. yaw_w.npz, pitch_w.npz, smile_logit_w.npz)")
        return result
    result.walk, final = _walk(run, plan, src, latents, pairs, iterations, max_strength)
    out, thumbs, _ = run.measure_latents(final, keep)
    result.metrics["boundary_walk"] = pair_metrics(out, ident, attr)
    result.thumbnails["boundary_walk"] = thumbs
    return result


def _walk(run: FaceMeter, plan: WalkPlan, src: FaceMeasures, latents: Tensor, pairs: np.ndarray,
          iterations: int, max_strength: float) -> tuple[dict[str, Any], Tensor]:
    """The boundary walk of every pair's identity latent toward its attribute face's scores."""
    names = plan.scores
    table = torch.from_numpy(np.stack([src.scores[n] for n in names], axis=1))      # [F, A]
    directions = torch.from_numpy(plan.directions)
    slopes = estimate_slopes(latents, table, directions)
    # The cap is in each boundary's sigma unit; where a file records none, the spread of the
    # faces' positions along the direction stands in for it.
    positions = (latents.double().mean(dim=1) if latents.ndim == 3 else latents.double())
    spread = (positions @ directions.T).std(dim=0)
    sigma = torch.from_numpy(plan.sigmas)
    sigma = torch.where(torch.isfinite(sigma), sigma, spread)
    scales = torch.from_numpy(np.nanstd(table.numpy(), axis=0))

    def score(ws: Tensor) -> Tensor:
        got = run.measure_latents(ws, names=names)[0]
        return torch.from_numpy(np.stack([got.scores[n] for n in names], axis=1))

    res = boundary_walk(latents[pairs[:, 0]], table[pairs[:, 0]], table[pairs[:, 1]],
                        directions, score, slopes=slopes, max_steps=max_strength * sigma,
                        scales=scales, iterations=iterations)
    info = {"scores": names, "held": plan.held, "iterations": iterations,
            "max_strength_sigma": max_strength, "notes": plan.notes,
            "gap_start": dict(zip(names, res.gap_start.nanmean(dim=0).tolist())),
            "gap_end": dict(zip(names, res.gap_end.nanmean(dim=0).tolist())),
            "mean_abs_step_sigma": dict(zip(names, (res.steps.abs() / sigma).mean(dim=0)
                                            .tolist()))}
    return info, res.latents


def check_evaluate_options(*, pairs: int, batch: int, keep: int, size: int,
                           walk_iterations: int, max_strength: float,
                           photo_pairs: int | None = None) -> None:
    """ValueError naming the option (CLI spelling) unless every number is in range; called by
    :func:`evaluate_mapping` and by the CLI before any model loads."""
    for option, value, low in (("--pairs", pairs, 0), ("--batch", batch, 1), ("--keep", keep, 0),
                               ("--size", size, 64), ("--walk-iterations", walk_iterations, 1)):
        if int(value) < low:
            raise ValueError(f"{option} must be at least {low}, got {value}")
    if int(pairs) == 1:
        raise ValueError("--pairs must be 0 (photos only) or at least 2, got 1")
    if photo_pairs is not None and int(photo_pairs) < 1:
        raise ValueError(f"--photo-pairs must be at least 1, got {photo_pairs}")
    if not float(max_strength) > 0:
        raise ValueError(f"--max-strength must be a positive number of sigmas, got "
                         f"{max_strength}")


def _seed_notes(seeds: list[int], training: Mapping[str, Any] | None) -> list[str]:
    """A note when the seeds overlap the training store's (``seed_start``, ``samples``)."""
    if not training or "seed_start" not in training or "samples" not in training:
        return []
    lo, n = int(training["seed_start"]), int(training["samples"])
    seen = sum(lo <= s < lo + n for s in seeds)
    if not seen:
        return []
    return [(f"{seen} of the {len(seeds)} seeds were in the training store (seeds {lo} to "
             f"{lo + n - 1}): those pairs are not held out; choose --seeds outside that range")]


def evaluate_mapping(mapper: Mapper, generator: Generator, analyzer: FaceAnalyzer | None = None,
                     *, pairs: int = 32, seeds: Sequence[int] | None = None,
                     truncation_psi: float | None = None,
                     boundaries: Sequence[str | Path | Boundary] = (),
                     crossover: int | Sequence[int] | str = "auto",
                     photos: Sequence[str | Path] = (), inversions: Sequence[str | Path] = (),
                     photo_pairs: int | None = None, size: int = METRIC_SIZE, batch: int = 4,
                     keep: int = 6, walk_iterations: int = 3, max_strength: float = 3.0,
                     training: Mapping[str, Any] | None = None, judge: str | None = None,
                     progress: Progress | None = None) -> MappingEvaluation:
    """Evaluate ``mapper`` and the baselines on held-out generated pairs and on photos.

    ``pairs``: generated pairs (2 x pairs faces; 0 = photos only). ``seeds``: their seeds,
    an even number (identity faces first; default 2 x pairs from :data:`DEFAULT_SEED_START`).
    ``truncation_psi``: default the checkpoint's. ``boundaries``: W boundary files or folders
    (or :class:`Boundary` objects) for the walk. ``crossover``: "auto" (sweep
    :func:`crossover_candidates`, pick by :data:`CROSSOVER_RULE`), one k, or the ks to sweep.
    ``photos``: photo files or folders; ``inversions``: ``facelatent invert`` output folders;
    ``photo_pairs``: at most this many pairs per photo set (default every ordered pair).
    ``size``: px faces are measured at; ``batch``: faces per forward pass; ``keep``: pairs
    shown in the grids; ``walk_iterations``, ``max_strength`` (sigma): the walk's.
    ``training``: the checkpoint's ``data`` (``seed_start``, ``samples``): seeds inside it get
    a note. ``judge``: the recogniser that measures identity (default: the one the mapping
    did not train with; naming the training one is allowed, and the summary then says the
    judge is not independent). ``analyzer``: default the mapper's. ``progress(done, total)``:
    images so far.
    """
    check_evaluate_options(pairs=pairs, batch=batch, keep=keep, size=size,
                           walk_iterations=walk_iterations, max_strength=max_strength,
                           photo_pairs=photo_pairs)
    mapper.check_generator(generator)
    ks = _crossovers(crossover, int(generator.num_ws))
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        if len(seeds) < 4 or len(seeds) % 2:
            raise ValueError(f"--seeds must name an even number of at least 4 seeds (identity "
                             f"faces, then as many attribute faces), got {len(seeds)}")
        pairs = len(seeds) // 2
    else:
        seeds = list(range(DEFAULT_SEED_START, DEFAULT_SEED_START + 2 * int(pairs)))
    if not seeds and not photos and not inversions:
        raise ValueError("nothing to evaluate: --pairs 0 needs --photos or --inversions")
    psi = truncation_psi if truncation_psi is not None else mapper.generator.get("truncation_psi")
    notes = _seed_notes(seeds, training)
    if psi is None:
        notes.append("the checkpoint records no truncation; psi 1.0 used (--psi to choose)")
    psi = 1.0 if psi is None else float(psi)

    files = [b for b in boundaries if not isinstance(b, Boundary)]
    found, skipped = load_walk_boundaries(files, generator) if files else ([], [])
    given = [*(b for b in boundaries if isinstance(b, Boundary)), *found]
    plan = plan_walk(given) if given else None
    if plan is not None:
        plan.notes[:0] = skipped
    identity_model = judge or ("dlib" if mapper.config.id_model == "sface" else "sface")
    if identity_model not in SAME_PERSON_THRESHOLD:
        raise ValueError(f"judge must be one of {', '.join(SAME_PERSON_THRESHOLD)}, got "
                         f"{identity_model!r}")
    if identity_model == mapper.config.id_model:
        notes.append(f"identity is judged by {identity_model}, the recogniser the mapping "
                     "trained with: not an independent measure")
    an = analyzer or mapper.analyzer
    run = FaceMeter(mapper, generator, an, identity_model, int(size), int(batch), progress)

    jobs: list[tuple[str, Tensor, Tensor | None, np.ndarray, list[str], list[str]]] = []
    if seeds:
        _, w = latents_for_seeds(generator, seeds, psi)
        faces = torch.cat(list(run.render(w)))
        index = np.stack([np.arange(pairs), np.arange(pairs) + pairs], axis=1)
        jobs.append(("generated", faces, w, index, [f"seed {s}" for s in seeds], notes))
    if photos:
        images, labels, photo_notes = load_photo_faces(an, photos, int(size))
        jobs.append(("photos", images, None, cross_pairs(len(images), photo_pairs), labels,
                     photo_notes))
    if inversions:
        images, latents, labels, inv_notes = load_inverted_faces(inversions, generator, int(size))
        jobs.append(("inversions", images, latents, cross_pairs(len(images), photo_pairs),
                     labels, inv_notes))
    # Images to render in all: per pair the mapping, each crossover and the walk's renders
    # plus its final one; per face a reconstruction; per set the average face; the generated
    # faces (done above).
    walking = plan is not None and bool(plan.scores)
    for _, faces, latents, index, _, _ in jobs:
        per_pair = 1 + (0 if latents is None else len(ks) + walking * (walk_iterations + 1))
        run.total += len(index) * per_pair + len(faces) + 1
    run.total += len(seeds)
    run.tick(len(seeds))

    t0 = time.perf_counter()
    sets: dict[str, PairSetEvaluation] = {}
    for name, faces, latents, index, labels, set_notes in jobs:
        sets[name] = _evaluate_set(run, name, faces, latents, index, labels, plan, ks,
                                   int(keep), int(walk_iterations), float(max_strength))
        sets[name].notes[:0] = set_notes
    settings = {"generator": getattr(generator, "name", type(generator).__name__),
                "mapping_generator": mapper.generator.get("name"), "truncation_psi": psi,
                "seeds": seeds, "size": int(size), "crossovers": list(ks),
                "boundaries": [str(f) for f in files], "walk_iterations": int(walk_iterations),
                "max_strength_sigma": float(max_strength),
                "id_model_trained": mapper.config.id_model, "head": mapper.config.head,
                "stage": getattr(mapper, "stage", None), "step": getattr(mapper, "step", None)}
    return MappingEvaluation(identity_model, sets, settings, time.perf_counter() - t0, run.done)


def _crossovers(crossover: int | Sequence[int] | str, num_ws: int) -> tuple[int, ...]:
    if crossover == "auto":
        return crossover_candidates(num_ws)
    if isinstance(crossover, str):
        raise ValueError(f"crossover must be 'auto', a number of style inputs or a list of "
                         f"them, got {crossover!r}")
    ks = (int(crossover),) if isinstance(crossover, (int, np.integer)) else tuple(
        int(k) for k in crossover)
    bad = [k for k in ks if not 0 <= k <= num_ws]
    if not ks or bad:
        raise ValueError(f"crossover must be 0 to {num_ws} (the generator's style inputs), got "
                         f"{list(ks)}")
    return tuple(dict.fromkeys(ks))


def write_mapping_evaluation(evaluation: MappingEvaluation, out_dir: str | Path,
                             info: dict[str, Any] | None = None) -> dict[str, Path]:
    """``summary.json``, ``index.html`` and the grid PNGs in ``out_dir``; see
    :func:`facelatent.mapping.evaluate_report.write_mapping_evaluation`."""
    from facelatent.mapping.evaluate_report import write_mapping_evaluation as write

    return write(evaluation, out_dir, info)
