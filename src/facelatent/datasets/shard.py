"""The work for one shard of a synthetic dataset: sample each class's latents around its
identity boundary, render, detect, align to the ArcFace template, score and embed.

`build_shard(job, models)` is pure given its picklable `DatasetJob`, so an engine can run it
here or on a Ray worker; `facelatent.datasets.writer` writes what it returns. Each class draws
its offsets from its own generator, seeded by (dataset seed, reference seed, side): the same
settings give the same latents, images and rows on any engine, in any shard order, and after
any number of restarts.

Offsets: `max_off` counts in `offset_units`. In "sigma" (the default) a class's raw scale is
max_off x its boundary's sigma, the store's spread along that normal (about 0.2-0.3 raw units in
MobileStyleGAN's W), so one setting means the same move on every normal and in every latent
space; in "raw" it is max_off itself. `plan_classes` resolves it per class (`ClassPlan.scale`)
and every row records it (`max_off_raw`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["DATASET_ATTRIBUTES", "DEFAULT_MAX_OFF", "OFFSET_UNITS", "ClassPlan", "DatasetJob",
           "DatasetSettings", "ShardRows", "build_shard", "plan_classes"]

SIDES = ("same", "other")
OFFSET_UNITS = ("sigma", "raw")
# In sigma, chosen by the measurement in the README (16 identities x 8 images, paper mode,
# 1-24 sigma): faces found in over 99 % of images up to 16 sigma, but single offsets beyond
# about 20 sigma ghost the face; at 6 only 0.09 % of |N(0, 6)| draws reach that far.
DEFAULT_MAX_OFF = 6.0
# Scores written with every sample: pose, expression and age for the intra-class spread.
DATASET_ATTRIBUTES = ("yaw", "pitch", "roll", "age", "gender_logit", "smile", "smile_logit",
                      "expression_neutral", "expression_happy", "expression_sad",
                      "expression_angry", "expression_fearful", "expression_disgusted",
                      "expression_surprised", "eyeglasses")
EMBEDDERS = ("sface", "dlib")


@dataclass(frozen=True)
class DatasetSettings:
    """How every sample of a dataset is made; fixed when the dataset is created."""

    per_identity: int = 50                # images per class
    max_off: float = DEFAULT_MAX_OFF      # offset scale in offset_units: N(0, max_off) or U(0, ...)
    mode: str = "paper"                   # "paper", "code" (ExFaceGAN's), "random", "varied"
    offset_units: str = "sigma"           # "sigma" (x each normal's store spread) or "raw"
    attribute_scale: float = 1.0          # varied: strength std = this x the store's spread
    both_sides: bool = False              # the other side of each boundary as a second class
    seed: int = 0                         # dataset seed (with each reference seed: its offsets)
    crop_size: int = 112                  # ArcFace template crop (112 is the template's size)
    full_size: int = 0                    # also write the full image at this size; 0 = don't
    classes_per_shard: int = 4            # classes in one unit of work
    batch: int = 8                        # images per generator pass (does not change results)
    device: str = "cpu"                   # where the networks run ("auto" picks a GPU)
    truncation_psi: float = 1.0           # for Z boundaries only: psi of the mapping

    def __post_init__(self) -> None:
        from facelatent.datasets.sampling import SAMPLE_MODES

        if self.per_identity < 1:
            raise ValueError(f"per_identity must be at least 1, got {self.per_identity}")
        if not (math.isfinite(self.max_off) and self.max_off > 0):
            raise ValueError(f"max_off must be a positive number, got {self.max_off}")
        if self.mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {', '.join(SAMPLE_MODES)}, got {self.mode!r}")
        if self.mode == "random" and self.both_sides:
            raise ValueError("random directions have no side, so --both-sides would add a "
                             "second class of the same face; drop --both-sides for --mode random")
        if self.offset_units not in OFFSET_UNITS:
            raise ValueError(f"offset_units must be 'sigma' or 'raw', got {self.offset_units!r}")
        if not (math.isfinite(self.attribute_scale) and self.attribute_scale >= 0):
            raise ValueError(f"attribute_scale must be a number >= 0, got {self.attribute_scale}")
        if self.crop_size != 112:
            raise ValueError(f"crop_size must be 112 (the ArcFace template), got {self.crop_size}")
        if self.full_size < 0:
            raise ValueError(f"full_size must be 0 (none) or a size in pixels, got "
                             f"{self.full_size}")
        if self.classes_per_shard < 1 or self.batch < 1:
            raise ValueError("classes_per_shard and batch must be at least 1")

    def resume_key(self) -> dict[str, Any]:
        """The settings that decide the contents (a resumed build must match them); the
        attribute scale only where it is used (mode "varied")."""
        data = asdict(self)
        for key in ("batch", "device") + (() if self.mode == "varied" else ("attribute_scale",)):
            data.pop(key)
        return data


@dataclass(frozen=True)
class ClassPlan:
    """One class: which reference, which side, and its boundary (all a worker needs)."""

    index: int                            # class number, the folder name
    reference_seed: int
    side: str                             # "same" or "other"
    normal: np.ndarray                    # [D] unit, towards the reference's identity
    intercept: float
    latent: np.ndarray                    # [D] the reference's own latent
    scale: float = 1.0                    # raw offset scale of this class (max_off resolved)
    directions: np.ndarray | None = None  # varied: [K, D] attribute directions, orthogonal to m
    spreads: np.ndarray | None = None     # varied: [K] std of the strength along each direction
    attributes: tuple[str, ...] = ()      # varied: the K names


@dataclass(frozen=True)
class DatasetJob:
    """One shard of a dataset build: picklable, to run in another process or machine."""

    index: int
    classes: tuple[ClassPlan, ...]
    settings: DatasetSettings
    generator: str
    space: str                            # "w" or "z": the space of the boundaries


@dataclass
class ShardRows:
    """What `build_shard` gives back: per-sample columns, the crops and timings."""

    index: int
    columns: dict[str, np.ndarray]        # one entry per metadata column, [rows] or [rows, k]
    crops: np.ndarray                     # [rows, 112, 112, 3] uint8 (zeros where no face)
    full: np.ndarray | None               # [rows, S, S, 3] uint8 or None
    seconds: dict[str, float] = field(default_factory=dict)


def plan_classes(identities: Any, both_sides: bool, settings: DatasetSettings | None = None,
                 variation: Any = None) -> list[ClassPlan]:
    """Classes in (reference seed, side) order from `IdentityBoundaries`.

    ``settings``: resolve ``max_off`` into each class's raw ``scale`` (None: scale 1); in
    sigma units the boundaries need ``sigma`` (`facelatent.boundaries.identity.ensure_sigma`).
    ``variation``: `facelatent.datasets.variation.AttributeDirections`, required for mode
    "varied": each class gets its conditioned directions and strength stds.
    """
    from facelatent.datasets.variation import class_directions

    order = np.argsort(np.asarray(identities.seeds), kind="stable")
    sides = SIDES if both_sides else SIDES[:1]
    scales = np.ones(len(order))
    if settings is not None:
        scales = np.full(len(order), float(settings.max_off))
        if settings.offset_units == "sigma":
            if identities.sigma is None:
                raise ValueError("offsets in sigma need the boundaries' sigma; load them through "
                                 "facelatent.boundaries.identity.ensure_sigma, or use "
                                 "offset_units='raw'")
            scales = scales * np.asarray(identities.sigma, dtype=np.float64)
        if settings.mode == "varied" and variation is None:
            raise ValueError("mode 'varied' needs the attribute directions (variation=, from "
                             "facelatent.datasets.variation.attribute_directions)")
    plans = []
    for i in order:
        normal = np.asarray(identities.normals[i])
        extra: dict[str, Any] = {}
        if settings is not None and settings.mode == "varied":
            dirs, spreads = class_directions(variation, normal, settings.attribute_scale)
            extra = {"directions": dirs, "spreads": spreads, "attributes": variation.names}
        for side in sides:
            plans.append(ClassPlan(len(plans), int(identities.seeds[i]), side, normal,
                                   float(identities.intercepts[i]),
                                   np.asarray(identities.latents[i]), float(scales[i]), **extra))
    return plans


def _class_seed(settings: DatasetSettings, plan: ClassPlan) -> list[int]:
    return [int(settings.seed), int(plan.reference_seed), SIDES.index(plan.side)]


# -- the work for one shard ---------------------------------------------------------------------
def build_shard(job: DatasetJob, models: Any = None) -> ShardRows:
    """Sample, render, align, score and embed every image of the shard's classes.

    ``models``: a `facelatent.runs.Models` (generator and face analyzer) or None for this
    process's cached real networks.
    """
    from facelatent.datasets.sampling import draw_identity
    from facelatent.faces.analysis import working_size
    from facelatent.faces.sface import arcface_align
    from facelatent.images import resize, to_uint8
    from facelatent.runs import load_models

    s = job.settings
    if models is None:
        models = load_models(job.generator, device=s.device)
    G, analyzer = models.generator, models.analyzer
    seconds = dict.fromkeys(("sample", "generate", "analyse"), 0.0)
    cols: dict[str, list[Any]] = {k: [] for k in ("identity", "sample", "reference_seed", "side",
                                                  "offset", "offset_norm", "max_off_raw",
                                                  "latent")}
    names = job.classes[0].attributes if job.classes else ()
    cols.update({f"strength_{name}": [] for name in names})
    t0 = time.perf_counter()
    for plan in job.classes:
        draw = draw_identity(
            (plan.normal, plan.intercept, plan.latent), s.per_identity, max_off=plan.scale,
            mode=s.mode, side=plan.side, seed=_class_seed(s, plan), directions=plan.directions,
            spreads=plan.spreads)
        latents, norms = draw.latents, draw.norms
        # Signed: how far each sample moved along the normal (> 0 towards the identity).
        offsets = ((latents.astype(np.float64) - plan.latent)
                   @ (plan.normal / np.linalg.norm(plan.normal)))
        n = len(latents)
        cols["identity"].append(np.full(n, plan.index, np.int32))
        cols["sample"].append(np.arange(n, dtype=np.int32))
        cols["reference_seed"].append(np.full(n, plan.reference_seed, np.int64))
        cols["side"].append(np.full(n, plan.side, object))
        cols["offset"].append(np.asarray(offsets, np.float32))
        cols["offset_norm"].append(np.asarray(norms, np.float32))
        cols["max_off_raw"].append(np.full(n, plan.scale, np.float32))
        for k, name in enumerate(names):    # raw latent units along the conditioned direction
            cols[f"strength_{name}"].append(np.asarray(draw.strengths[:, k], np.float32))
        cols["latent"].append(np.asarray(latents, np.float32))
    columns = {k: np.concatenate(v) for k, v in cols.items()}
    seconds["sample"] = time.perf_counter() - t0

    latents = torch.from_numpy(columns["latent"])
    rows = len(latents)
    crops = np.zeros((rows, s.crop_size, s.crop_size, 3), np.uint8)
    full = np.zeros((rows, s.full_size, s.full_size, 3), np.uint8) if s.full_size else None
    found = np.zeros(rows, bool)
    scores = {a: np.full(rows, np.nan, np.float32) for a in DATASET_ATTRIBUTES}
    embeds = {m: np.full((rows, 128), np.nan, np.float32) for m in EMBEDDERS}
    with torch.no_grad():
        for start in range(0, rows, s.batch):
            t0 = time.perf_counter()
            part = latents[start:start + s.batch].to(G.device)
            ws = G.mapping(part, truncation_psi=s.truncation_psi) if job.space == "z" else part
            images = working_size(G.synthesis(ws).clamp(-1, 1))
            t1 = time.perf_counter()
            geom = analyzer.locate(images)          # detection + 68 landmarks, per image
            sl = slice(start, start + images.shape[0])
            found[sl] = geom.found.cpu().numpy()
            part_scores = analyzer.score(images, DATASET_ATTRIBUTES, geometry=geom)
            for a in DATASET_ATTRIBUTES:
                scores[a][sl] = part_scores[a].float().cpu().numpy()
            for m in EMBEDDERS:
                embeds[m][sl] = analyzer.embed(images, m, geometry=geom).float().cpu().numpy()
            ok = torch.nonzero(geom.found).flatten()
            if len(ok):
                aligned = arcface_align(images[ok.to(images.device)], geom.points5[ok])
                crops[start + ok.cpu().numpy()] = to_uint8(aligned)
            if full is not None:
                full[sl] = to_uint8(resize(images, s.full_size))
            seconds["generate"] += t1 - t0
            seconds["analyse"] += time.perf_counter() - t1
    columns["face"] = found
    columns.update(scores)
    columns.update({f"embedding_{m}": e for m, e in embeds.items()})
    return ShardRows(job.index, columns, crops, full, seconds)
