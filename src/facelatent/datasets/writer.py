"""Synthetic face-recognition datasets: many aligned images of each synthetic identity.

    from facelatent.boundaries.identity import IdentityBoundaries
    from facelatent.datasets.writer import DatasetSettings, build_dataset
    ids = IdentityBoundaries.load("runs/ffhq/identities/boundaries.npz")
    report = build_dataset("data/synth", ids, DatasetSettings(per_identity=50, max_off=10))

Layout of a dataset folder::

    dataset.json                      manifest: settings, identity source, classes, shards done
    images/<class:05d>/<class:05d>_<k:03d>.png   112x112 crops on the ArcFace template
    full/<class:05d>/<class:05d>_<k:03d>.jpg      optional full images (``full_size``)
    parts/shard-<i:05d>.parquet       the metadata rows of each finished shard
    metadata.parquet                  all rows, merged when the last shard is written

A class is one (reference seed, side) pair: the reference's own identity on the "same" side of
its boundary and, with ``both_sides``, a second identity on the other side. Classes are numbered
in the order of (reference seed, side), so a class number never depends on the order of the
boundaries in their file or on which faces were found. Each class draws its offsets from its
own generator, seeded by (dataset seed, reference seed, side): the same settings give the same
latents, images and rows on any engine, in any shard order, and after any number of restarts.

Work is split in shards of a few classes, like a LatentStore: `build_shard(job, models)` is
pure given its picklable job (an engine runs it here or on a Ray worker), and the driver writes
each result: images first, then the shard's parquet part (atomic rename), then the manifest
marks the shard done. A run killed at any point redoes only the shards not marked done, writing
the same file names again, so nothing is lost or duplicated. Samples without a detected face
keep their row (``face`` False, no image), so no later sample shifts.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelatent import __version__
from facelatent.errors import FacelatentError

__all__ = ["DATASET_ATTRIBUTES", "DatasetJob", "DatasetReport", "DatasetSettings", "ShardRows",
           "build_dataset", "build_shard", "plan_classes"]

MANIFEST = "dataset.json"
FORMAT = "facelatent.synthetic-dataset"
SIDES = ("same", "other")
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
    max_off: float = 10.0                 # offset scale (latent units): N(0, max_off) or U(0, ...)
    mode: str = "paper"                   # "paper", "code" (ExFaceGAN's) or "random" (baseline)
    both_sides: bool = False              # the other side of each boundary as a second class
    seed: int = 0                         # dataset seed (with each reference seed: its offsets)
    crop_size: int = 112                  # ArcFace template crop (112 is the template's size)
    full_size: int = 0                    # also write the full image at this size; 0 = don't
    classes_per_shard: int = 4            # classes in one unit of work
    batch: int = 8                        # images per generator pass (does not change results)
    device: str = "cpu"                   # where the networks run ("auto" picks a GPU)
    truncation_psi: float = 1.0           # for Z boundaries only: psi of the mapping

    def __post_init__(self) -> None:
        from facelatent.boundaries.identity import SAMPLE_MODES

        if self.per_identity < 1:
            raise ValueError(f"per_identity must be at least 1, got {self.per_identity}")
        if not (math.isfinite(self.max_off) and self.max_off > 0):
            raise ValueError(f"max_off must be a positive number, got {self.max_off}")
        if self.mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {', '.join(SAMPLE_MODES)}, got {self.mode!r}")
        if self.crop_size != 112:
            raise ValueError(f"crop_size must be 112 (the ArcFace template), got {self.crop_size}")
        if self.full_size < 0:
            raise ValueError(f"full_size must be 0 (none) or a size in pixels, got "
                             f"{self.full_size}")
        if self.classes_per_shard < 1 or self.batch < 1:
            raise ValueError("classes_per_shard and batch must be at least 1")

    def identity_key(self) -> dict[str, Any]:
        """The settings that decide the contents (a resumed build must match them)."""
        data = asdict(self)
        for key in ("batch", "device"):
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


def plan_classes(identities: Any, both_sides: bool) -> list[ClassPlan]:
    """Classes in (reference seed, side) order from `IdentityBoundaries`."""
    order = np.argsort(np.asarray(identities.seeds), kind="stable")
    sides = SIDES if both_sides else SIDES[:1]
    plans = []
    for i in order:
        for side in sides:
            plans.append(ClassPlan(len(plans), int(identities.seeds[i]), side,
                                   np.asarray(identities.normals[i]),
                                   float(identities.intercepts[i]),
                                   np.asarray(identities.latents[i])))
    return plans


def _class_seed(settings: DatasetSettings, plan: ClassPlan) -> list[int]:
    return [int(settings.seed), int(plan.reference_seed), SIDES.index(plan.side)]


# -- the work for one shard ---------------------------------------------------------------------
def build_shard(job: DatasetJob, models: Any = None) -> ShardRows:
    """Sample, render, align, score and embed every image of the shard's classes.

    ``models``: a `facelatent.latents.engine.Models` (generator and face analyzer) or None for
    this process's cached real networks.
    """
    from facelatent.boundaries.identity import sample_identity
    from facelatent.faces.analysis import working_size
    from facelatent.faces.sface import arcface_align
    from facelatent.images import resize, to_uint8
    from facelatent.latents.engine import SampleSettings, load_models

    s = job.settings
    if models is None:
        models = load_models(SampleSettings(job.generator, device=s.device))
    G, analyzer = models.generator, models.analyzer
    seconds = dict.fromkeys(("sample", "generate", "analyse"), 0.0)
    cols: dict[str, list[Any]] = {k: [] for k in ("identity", "sample", "reference_seed", "side",
                                                  "offset", "offset_norm", "latent")}
    t0 = time.perf_counter()
    for plan in job.classes:
        latents, _, norms = sample_identity(
            (plan.normal, plan.intercept, plan.latent), s.per_identity, max_off=s.max_off,
            mode=s.mode, side=plan.side, seed=_class_seed(s, plan))
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


# -- writing ------------------------------------------------------------------------------------
def _image_name(identity: int, sample: int, ext: str) -> str:
    return f"{identity:05d}/{identity:05d}_{sample:03d}.{ext}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _table(columns: dict[str, np.ndarray], paths: list[str]) -> Any:
    import pyarrow as pa

    arrays, names = [], []
    for name, values in {**columns, "path": np.asarray(paths, object)}.items():
        if name in ("latent",) or name.startswith("embedding_"):
            flat = pa.array(values.reshape(-1).astype(np.float32))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, values.shape[1]))
        elif values.dtype == object:
            arrays.append(pa.array(values.tolist(), pa.string()))
        else:
            arrays.append(pa.array(values))
        names.append(name)
    return pa.table(arrays, names=names)


def _write_shard(root: Path, rows: ShardRows) -> int:
    """Images, then the shard's parquet part (atomic). Returns the number of crops written."""
    import pyarrow.parquet as pq

    from facelatent.images import save_png

    ids, samples, found = (rows.columns["identity"], rows.columns["sample"],
                           rows.columns["face"])
    paths = []
    for i in range(len(ids)):
        name = _image_name(int(ids[i]), int(samples[i]), "png")
        if found[i]:
            target = root / "images" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            save_png(rows.crops[i], tmp)
            os.replace(tmp, target)
            paths.append(f"images/{name}")
        else:
            paths.append("")
        if rows.full is not None:
            from PIL import Image

            target = root / "full" / _image_name(int(ids[i]), int(samples[i]), "jpg")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rows.full[i]).save(target, format="JPEG", quality=95)
    part = root / "parts" / f"shard-{rows.index:05d}.parquet"
    part.parent.mkdir(exist_ok=True)
    tmp = part.with_name(f".{part.name}.tmp")
    pq.write_table(_table(rows.columns, paths), tmp)
    os.replace(tmp, part)
    return int(found.sum())


def _merge(root: Path, shards: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(root / "parts" / f"shard-{i:05d}.parquet") for i in range(shards)]
    tmp = root / ".metadata.parquet.tmp"
    pq.write_table(pa.concat_tables(tables), tmp)
    os.replace(tmp, root / "metadata.parquet")


@contextmanager
def _writer_lock(root: Path) -> Iterator[None]:
    if sys.platform == "win32":
        yield
        return
    import fcntl

    with open(root / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FacelatentError(f"dataset {root} is being written by another process; wait "
                                  "for it to finish, or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- one call: create or resume -----------------------------------------------------------------
@dataclass
class DatasetReport:
    """What `build_dataset` did."""

    path: str
    action: str                           # "created", "resumed" or "complete"
    classes: int
    shards_written: int
    images_written: int                   # crops written in this call (faces found)
    samples_written: int                  # samples (rows) made in this call
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.samples_written / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["images_per_s"] = round(self.images_per_s, 3)
        out["stage_seconds"] = {k: round(v, 3) for k, v in self.stage_seconds.items()}
        return out


def _identity_key(identities: Any) -> dict[str, Any]:
    """What a resumed build must share with the first: which references, labelled how."""
    prov = dict(getattr(identities, "provenance", {}) or {})
    seeds = np.sort(np.asarray(identities.seeds, np.int64))
    return {"space": identities.space, "label_model": identities.model,
            "references": int(len(seeds)),
            "seeds_sha256": hashlib.sha256(seeds.tobytes()).hexdigest(),
            "store": prov.get("store"), "generator": prov.get("generator")}


def build_dataset(out: str | Path, identities: Any, settings: DatasetSettings, *,
                  generator: str | None = None, engine: Any = None, models: Any = None,
                  source: str | None = None, progress: Callable[[int], None] | None = None,
                  on_start: Callable[[int, int], None] | None = None,
                  command: Sequence[str] | None = None) -> DatasetReport:
    """Write (or resume) the dataset at ``out`` from `IdentityBoundaries` ``identities``.

    ``generator``: registry name (default: the one recorded in the boundaries' provenance).
    ``engine``: anything with ``map(fn, jobs) -> iterator of (job, result)`` (default
    `LocalEngine(models)`). ``progress(k)`` is told each finished shard's sample count and
    ``on_start(total, done)`` the totals once. An existing dataset must have been made with
    the same settings and identities (FacelatentError naming the differences).
    """
    from facelatent.latents.engine import LocalEngine

    root = Path(out)
    generator = generator or (identities.provenance or {}).get("generator")
    if not generator:
        raise ValueError("the identity boundaries do not record their generator; pass "
                         "generator='mobilestylegan-ffhq' (or --model)")
    plans = plan_classes(identities, settings.both_sides)
    if not plans:
        raise ValueError("no identities to build: the boundaries file holds no reference")
    k = settings.classes_per_shard
    shards = [tuple(plans[i:i + k]) for i in range(0, len(plans), k)]
    key = {"settings": settings.identity_key(), "generator": generator,
           "identities": _identity_key(identities)}
    manifest_path = root / MANIFEST
    root.mkdir(parents=True, exist_ok=True)
    with _writer_lock(root):
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("format") != FORMAT:
                raise FacelatentError(f"{root} holds a {MANIFEST} that is not a facelatent "
                                      "dataset manifest; choose another folder")
            diffs = [name for name in key if manifest.get(name) != key[name]]
            if diffs:
                raise FacelatentError(
                    f"dataset {root} was made with other {' and '.join(diffs)}: "
                    f"held {json.dumps({d: manifest.get(d) for d in diffs})}, asked "
                    f"{json.dumps({d: key[d] for d in diffs})}; use a new --out folder")
            action = "resumed"
        else:
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            manifest = {"format": FORMAT, "format_version": 1, **key, "identities_path": source,
                        "label_model": identities.model, "sampling": settings.mode,
                        "max_off": settings.max_off, "classes": len(plans),
                        "per_identity": settings.per_identity, "shards_total": len(shards),
                        "shards": {}, "created": now, "facelatent_version": __version__,
                        "command": list(sys.argv if command is None else command),
                        "licence": "images derived from NVIDIA's FFHQ StyleGAN2 weights: "
                                   "non-commercial research use only"}
            _write_json(manifest_path, manifest)
            action = "created"
        done = {int(i) for i in manifest["shards"]}
        jobs = [DatasetJob(i, shard, settings, generator, identities.space)
                for i, shard in enumerate(shards) if i not in done]
        per_job = {job.index: len(job.classes) * settings.per_identity for job in jobs}
        total = len(plans) * settings.per_identity
        if on_start is not None:
            on_start(total, total - sum(per_job.values()))
        if not jobs:
            if not (root / "metadata.parquet").exists():
                _merge(root, len(shards))
            return DatasetReport(str(root), "complete", len(plans), 0, 0, 0, 0.0)
        engine = engine or LocalEngine(models)
        stages: dict[str, float] = {}
        images = 0
        t0 = time.perf_counter()
        for job, rows in engine.map(build_shard, jobs):
            t1 = time.perf_counter()
            count = _write_shard(root, rows)
            images += count
            stage = {**rows.seconds, "write": time.perf_counter() - t1}
            for name, v in stage.items():
                stages[name] = stages.get(name, 0.0) + v
            manifest["shards"][str(job.index)] = {
                "rows": per_job[job.index], "faces": count,
                "seconds": {n: round(v, 4) for n, v in stage.items()},
                "completed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            manifest["updated"] = manifest["shards"][str(job.index)]["completed"]
            _write_json(manifest_path, manifest)
            if progress is not None:
                progress(per_job[job.index])
        wall = time.perf_counter() - t0
        _merge(root, len(shards))
        manifest["faces"] = sum(v["faces"] for v in manifest["shards"].values())
        _write_json(manifest_path, manifest)
    return DatasetReport(str(root), action, len(plans), len(jobs), images,
                         sum(per_job.values()), wall, stages)
