"""Filling a LatentStore: the plan (which seeds go in which shard), the work for one shard, and
the loop over shards.

    from facelatent.latents.engine import SampleSettings, sample_to_store
    report = sample_to_store("runs/ffhq", 20000, SampleSettings("mobilestylegan-ffhq"))

The work is `run_shard(job)`: pure given its picklable `ShardJob` (seeds in, arrays out), with
the networks loaded once per process and kept in a cache keyed by the model settings. An engine
maps a function over jobs, ``engine.map(fn, jobs)`` -> ``(job, fn(job, models))`` pairs, and
its ``run`` writes each shard from the driver with `write_shards`, so the store keeps a single
writer. `LocalEngine` maps in this process, in order; `RayEngine` (latents/ray_engine.py) on
Ray actors that keep their networks loaded across jobs, in order of completion.

Determinism: a sample's z comes from its seed alone (`z_from_seeds`), the mapping runs over a
whole shard at once, and every later stage treats each image on its own, so the batch size
changes a sample's values by float noise only, and the same shard computed twice with the same
settings is bit-identical: a killed run resumes to exactly what an uninterrupted one writes.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from facelatent import __version__
from facelatent.errors import FacelatentError
from facelatent.faces.analysis import ATTRIBUTES, MODELS, FaceAnalyzer, resolve_attributes
from facelatent.generators import Generator, get_generator, resolve_device
from facelatent.latents.sampling import latents_for_seeds
from facelatent.latents.store import IDENTITY_MODELS, LatentStore, StoreSpec

__all__ = ["DEFAULT_SHARD_SIZE", "Engine", "JobError", "LocalEngine", "Models", "SampleProgress",
           "SampleReport", "SampleSettings", "ShardJob", "ShardResult", "describe_job",
           "load_models", "model_provenance", "plan_shards", "run_shard", "sample_to_store",
           "write_shards"]

DEFAULT_SHARD_SIZE = 256
STAGES = ("generate", "score", "embed", "write")


@dataclass(frozen=True)
class SampleSettings:
    """How every sample of a store is made; the same for all shards of a run."""

    generator: str                        # registry name, e.g. "mobilestylegan-ffhq"
    backend: str = "torch"                # "torch" or "openvino"
    device: str = "cpu"                   # where networks run; "auto" picks a GPU if any
    truncation_psi: float = 1.0           # 1 = no truncation
    truncation_space: str = "w"           # "w": toward w_avg; "z": scale z by psi
    attributes: tuple[str, ...] = ()      # attribute names or groups; () = no scoring
    identity: tuple[str, ...] = ()        # identity models from IDENTITY_MODELS; () = none
    batch: int = 16                       # images per forward pass (does not change results)

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")
        if not math.isfinite(self.truncation_psi):
            raise ValueError(f"truncation_psi must be a finite number, got {self.truncation_psi}")
        if self.truncation_space not in ("z", "w"):
            raise ValueError(f"truncation_space must be 'z' or 'w', got {self.truncation_space!r}")
        attributes = resolve_attributes(self.attributes) if self.attributes else ()
        unknown = [m for m in self.identity if m not in IDENTITY_MODELS]
        if unknown:
            raise ValueError(f"unknown identity model {unknown[0]!r}; choose from "
                             f"{', '.join(IDENTITY_MODELS)} (or none)")
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "identity", tuple(dict.fromkeys(self.identity)))
        object.__setattr__(self, "truncation_psi", float(self.truncation_psi))

    @property
    def model_key(self) -> tuple[str, str, str]:
        """What the loaded networks depend on (the key of the per-process model cache)."""
        return (self.generator, self.backend, str(self.device))


@dataclass(frozen=True)
class ShardJob:
    """One shard's work: picklable, so that it can be sent to another process or machine."""

    index: int
    seeds: tuple[int, ...]
    settings: SampleSettings


@dataclass
class ShardResult:
    """What `run_shard` gives back: the shard's arrays (the store's names) and timings."""

    index: int
    arrays: dict[str, np.ndarray]
    seconds: dict[str, float]             # per stage: generate, score, embed
    device: str


@dataclass
class Models:
    """The networks one process uses for a `SampleSettings.model_key`, loaded once."""

    generator: Generator
    analyzer: FaceAnalyzer | None = None  # loads each face net on first use
    provenance: dict[str, Any] | None = None  # model files for the manifest; None = weights'


def plan_shards(n: int, shard_size: int = DEFAULT_SHARD_SIZE,
                seed_start: int = 0) -> list[tuple[int, tuple[int, ...]]]:
    """``[(index, seeds), ...]`` covering seeds ``seed_start .. seed_start + n - 1`` in order,
    ``shard_size`` per shard (the last may be shorter)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    if seed_start < 0 or seed_start + n > 2**32:
        raise ValueError(f"seeds must lie in [0, 2**32): seed_start={seed_start} with n={n} "
                         f"ends at {seed_start + n - 1}")
    return [(i, tuple(range(seed_start + start, seed_start + min(start + shard_size, n))))
            for i, start in enumerate(range(0, n, shard_size))]


# -- the work for one shard ---------------------------------------------------------------------
_MODELS: dict[tuple[str, str, str], Models] = {}


def load_models(settings: SampleSettings) -> Models:
    """The generator and a face analyzer for ``settings``, cached for the life of the process
    (a worker that runs many shards loads its networks once)."""
    key = settings.model_key
    if key not in _MODELS:
        device = resolve_device(settings.device)
        # OpenVINO runs the generator on the CPU; the face nets may still use a GPU.
        gen_device = torch.device("cpu") if settings.backend == "openvino" else device
        G = get_generator(settings.generator, device=gen_device, backend=settings.backend)
        _MODELS[key] = Models(G, FaceAnalyzer(device, batch_size=64))
    return _MODELS[key]


def model_provenance(settings: SampleSettings) -> dict[str, Any]:
    """The model files behind ``settings`` from the weights manifest: which asset each face
    network comes from, and each asset's package, version and per-file sha256."""
    from facelatent import weights

    used = sorted({ATTRIBUTES[a].model for a in settings.attributes} | set(settings.identity))
    models = {m: MODELS[m].asset for m in used}
    names = set(models.values())
    if settings.generator in weights.MANIFEST:
        names.add(settings.generator)
    assets = {}
    for name in sorted(names):
        asset = weights.get_asset(name)
        assets[name] = {"source": str(asset.source), "licence": asset.licence,
                        "sha256": {m.filename: m.sha256 for m in asset.members}}
    return {"face_models": models, "assets": assets}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_shard(job: ShardJob, models: Models | None = None,
              on_batch: Callable[[int], None] | None = None) -> ShardResult:
    """Make, score and embed the samples of one shard.

    Returns the arrays `LatentStore.write_shard` takes: ``seeds`` int64 ``[n]``, ``z``
    ``[n, z_dim]``, ``w`` ``[n, w_dim]``, ``scores/<name>`` ``[n]`` and ``identity/<model>``
    ``[n, 128]`` (float32). ``models``: networks to use (default: this process's cached
    ones for the job's settings). ``on_batch(k)`` is called after each batch of k images.
    """
    s = job.settings
    models = models or load_models(s)
    G, analyzer = models.generator, models.analyzer
    seeds = list(job.seeds)
    seconds = dict.fromkeys(("generate", "score", "embed"), 0.0)
    t0 = time.perf_counter()
    z, w = latents_for_seeds(G, seeds, s.truncation_psi, s.truncation_space)
    seconds["generate"] += time.perf_counter() - t0
    scores: dict[str, list[np.ndarray]] = {name: [] for name in s.attributes}
    embeds: dict[str, list[np.ndarray]] = {name: [] for name in s.identity}
    landmarks = any(ATTRIBUTES[a].model == "landmarks68" for a in s.attributes)
    if not (s.attributes or s.identity):
        if on_batch is not None:
            on_batch(len(seeds))     # nothing to look at: the latents are the whole job
    elif analyzer is None:
        raise ValueError("scoring or identity needs Models.analyzer; got none")
    else:
        with torch.no_grad():
            for start in range(0, len(seeds), s.batch):
                t0 = time.perf_counter()
                images = G.synthesis(w[start:start + s.batch].to(G.device))
                _sync(images.device)
                t1 = time.perf_counter()
                geom = analyzer.locate(images, generated=True, landmarks=landmarks)
                if s.attributes:
                    part = analyzer.score(images, s.attributes, geometry=geom)
                    for name in s.attributes:
                        scores[name].append(part[name].float().cpu().numpy())
                t2 = time.perf_counter()
                for model in s.identity:
                    embeds[model].append(analyzer.embed(images, model, geometry=geom)
                                         .float().cpu().numpy())
                t3 = time.perf_counter()
                seconds["generate"] += t1 - t0
                seconds["score"] += t2 - t1
                seconds["embed"] += t3 - t2
                if on_batch is not None:
                    on_batch(images.shape[0])
    arrays = {"seeds": np.asarray(seeds, dtype=np.int64), "z": z.numpy().astype(np.float32),
              "w": w.float().numpy()}
    arrays.update({f"scores/{k}": np.concatenate(v) for k, v in scores.items()})
    arrays.update({f"identity/{k}": np.concatenate(v) for k, v in embeds.items()})
    device = str(analyzer.device) if analyzer is not None else str(G.device)
    return ShardResult(job.index, arrays, seconds, device)


# -- the loop over shards -----------------------------------------------------------------------
J = TypeVar("J")
R = TypeVar("R")


class JobError(FacelatentError):
    """A job failed on a worker: the message names the job and holds the worker's traceback."""

    def __init__(self, job: object, message: str, worker_traceback: str = "") -> None:
        super().__init__(message)
        self.job = job
        self.worker_traceback = worker_traceback


def describe_job(job: object, limit: int = 200) -> str:
    """The job's repr, cut to ``limit`` characters (a shard's seeds can run long)."""
    text = repr(job)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Engine(Protocol):
    """Runs jobs, in this process or on workers; results come back to the driver, which
    writes them (so a store keeps a single writer)."""

    name: str

    def map(self, fn: Callable[[J, Models | None], R],
            jobs: Iterable[J]) -> Iterator[tuple[J, R]]:
        """``(job, fn(job, models))`` for every job, as each finishes."""
        ...

    def run(self, store: LatentStore, jobs: Sequence[ShardJob],
            progress: Callable[[int], None] | None = None) -> list[dict[str, float]]:
        """Write every job's shard; return each shard's stage timings in seconds."""
        ...

    def close(self) -> None: ...


def write_shards(store: LatentStore, results: Iterable[tuple[ShardJob, ShardResult]],
                 progress: Callable[[int], None] | None = None) -> list[dict[str, float]]:
    """Write each result to ``store`` as it comes; return each shard's stage timings, "write"
    included. ``progress(k)`` is told each shard's sample count after it is written."""
    timings = []
    for job, result in results:
        t0 = time.perf_counter()
        seconds = {k: round(v, 4) for k, v in result.seconds.items()}
        store.write_shard(job.index, result.arrays,
                          info={"seconds": seconds, "device": result.device})
        timings.append({**result.seconds, "write": time.perf_counter() - t0})
        if progress is not None:
            progress(len(job.seeds))
    return timings


class LocalEngine:
    """Runs the jobs one after another in this process, in order.

    ``models``: networks to use instead of the process cache (tests inject random-weight ones).
    """

    name = "local"

    def __init__(self, models: Models | None = None) -> None:
        self.models = models

    def map(self, fn: Callable[[J, Models | None], R],
            jobs: Iterable[J]) -> Iterator[tuple[J, R]]:
        """``(job, fn(job, self.models))`` for each job in order. A job that raises stops the
        iteration with its own exception, noted with the job."""
        for job in jobs:
            try:
                result = fn(job, self.models)
            except Exception as exc:
                exc.add_note(f"while running {describe_job(job)}")
                raise
            yield job, result

    def run(self, store: LatentStore, jobs: Sequence[ShardJob],
            progress: Callable[[int], None] | None = None) -> list[dict[str, float]]:
        """Run and write the shards in order; ``progress`` hears of each batch."""
        work = run_shard if progress is None else functools.partial(run_shard, on_batch=progress)
        return write_shards(store, self.map(work, jobs))

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- one call: create, resume or extend ---------------------------------------------------------
class SampleProgress(Protocol):
    """Told the totals once, then each batch's count (e.g. a tqdm bar)."""

    def start(self, total: int, done: int) -> None: ...

    def update(self, count: int) -> None: ...


@dataclass
class SampleReport:
    """What `sample_to_store` did. ``action``: "created", "resumed", "extended" or "complete"
    (nothing was left to do)."""

    path: str
    action: str
    samples: int                          # complete samples in the store now
    shards_written: int
    samples_written: int
    seconds: float                        # wall time of the shards written in this call
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.samples_written / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, "samples": self.samples,
                "shards_written": self.shards_written, "samples_written": self.samples_written,
                "seconds": round(self.seconds, 3), "samples_per_s": round(self.samples_per_s, 3),
                "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()}}


def sample_to_store(path: str | Path, n: int, settings: SampleSettings, *, seed_start: int = 0,
                    shard_size: int | None = None, engine: Engine | None = None,
                    models: Models | None = None, progress: SampleProgress | None = None,
                    command: Sequence[str] | None = None) -> SampleReport:
    """Fill the store at ``path`` with samples of seeds ``seed_start .. seed_start + n - 1``.

    Creates the store if there is none; otherwise checks that it holds samples of these
    settings (StoreMismatchError naming each difference), grows it when ``n`` is larger than
    it plans (ValueError when smaller), and writes only the shards that are missing, so the
    same call resumes a killed run. ``shard_size``: rows per shard for a new store (default
    256; None keeps an existing store's). ``engine``: what runs the shards (default
    `LocalEngine(models)`). ``models``: networks to use instead of the cached ones, with
    their ``provenance`` for the manifest. ``command``: recorded in the manifest
    (default ``sys.argv``).
    """
    if shard_size is not None and shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    plan_shards(n, 1, seed_start)  # validates n and the seed range
    engine = engine or LocalEngine(models)
    provenance = (models.provenance if models is not None and models.provenance is not None
                  else model_provenance(settings))
    exists = LatentStore.exists(path)
    if exists:
        # The dims come from the store (a mismatch of generator is caught by its name), so
        # resuming or refusing a store loads no network here.
        held = LatentStore.open(path, read_only=True).spec
        dims = (held.z_dim, held.w_dim)
        shard_size = held.shard_size if shard_size is None else shard_size
    else:
        G = (models or load_models(settings)).generator
        dims = (G.z_dim, G.w_dim)
    spec = StoreSpec(settings.generator, *dims, settings.truncation_psi,
                     settings.truncation_space, settings.backend, seed_start,
                     DEFAULT_SHARD_SIZE if shard_size is None else shard_size,
                     settings.attributes, settings.identity,
                     provenance)
    command = list(sys.argv if command is None else command)
    if not exists:
        store, action = LatentStore.create(path, spec, n, command=command), "created"
    else:
        store = LatentStore.open(path, expect=spec)
        if n < store.size:
            raise ValueError(f"store {path} plans {store.size} samples ({len(store)} complete) "
                             f"and cannot shrink; pass n={store.size} to resume it, or more to "
                             "extend it")
        action = "extended" if n > store.size else "resumed"
    with store.writing():
        store.extend(n)
        plan = dict(plan_shards(n, spec.shard_size, seed_start))
        jobs = [ShardJob(i, plan[i], settings) for i in store.missing_shards(n)]
        if progress is not None:
            progress.start(n, n - sum(len(job.seeds) for job in jobs))
        if not jobs:
            return SampleReport(str(path), "complete", len(store), 0, 0, 0.0)
        store.record_run({"command": command,
                          "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "n": n, "engine": engine.name, "device": str(settings.device),
                          "batch": settings.batch, "facelatent_version": __version__})
        t0 = time.perf_counter()
        timings = engine.run(store, jobs, progress.update if progress is not None else None)
        wall = time.perf_counter() - t0
    stages = {k: sum(t.get(k, 0.0) for t in timings) for k in STAGES}
    return SampleReport(str(path), action, len(store), len(jobs),
                        sum(len(job.seeds) for job in jobs), wall, stages)

