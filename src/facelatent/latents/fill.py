"""Filling a LatentStore: the plan (which seeds go in which shard), the work for one shard, and
the call that creates, resumes, repairs or extends a store.

    from facelatent.latents.fill import SampleSettings, sample_to_store
    report = sample_to_store("runs/ffhq", 20000, SampleSettings("mobilestylegan-ffhq"))

The work is `run_shard(job)`: pure given its picklable `ShardJob` (seeds in, arrays out), with
the networks from the process's model cache (`facelatent.runs.load_models`). The loop, the
writer lock, the resume check and the record of done shards are `facelatent.runs.ShardedRun`,
shared with the dataset writer; an engine (`facelatent.runs`) runs the jobs.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelatent import __version__
from facelatent.faces.analysis import ATTRIBUTES, MODELS, resolve_attributes
from facelatent.images import resize, to_uint8
from facelatent.latents.sampling import latents_for_seeds
from facelatent.latents.store import IDENTITY_MODELS, LatentStore, StoreSpec
from facelatent.ranges import SEED_LIMIT
from facelatent.runs.engine import Engine, LocalEngine
from facelatent.runs.models import Models
from facelatent.runs.models import load_models as _load_models
from facelatent.runs.sharded import Progress, ShardedRun, ShardWrite, now

__all__ = ["DEFAULT_SHARD_SIZE", "SampleReport", "SampleSettings", "ShardJob", "ShardResult",
           "check_seed_range", "load_models", "model_provenance", "plan_shards", "run_shard",
           "sample_to_store"]

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
    image_size: int = 0                   # keep each render area-downsampled to this side; 0 = no

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")
        if not math.isfinite(self.truncation_psi):
            raise ValueError(f"truncation_psi must be a finite number, got {self.truncation_psi}")
        if self.truncation_space not in ("z", "w"):
            raise ValueError(f"truncation_space must be 'z' or 'w', got {self.truncation_space!r}")
        if self.image_size and not 16 <= self.image_size <= 4096:
            raise ValueError(f"image_size must be 0 (keep no images) or 16-4096 px, got "
                             f"{self.image_size}")
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


def plan_shards(n: int, shard_size: int = DEFAULT_SHARD_SIZE,
                seed_start: int = 0) -> list[tuple[int, tuple[int, ...]]]:
    """``[(index, seeds), ...]`` covering seeds ``seed_start .. seed_start + n - 1`` in order,
    ``shard_size`` per shard (the last may be shorter)."""
    check_seed_range(n, seed_start)
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    return [(i, tuple(range(seed_start + start, seed_start + min(start + shard_size, n))))
            for i, start in enumerate(range(0, n, shard_size))]


# -- the work for one shard ---------------------------------------------------------------------
def load_models(settings: SampleSettings) -> Models:
    """The cached networks for ``settings`` (`facelatent.runs.load_models`)."""
    return _load_models(settings.generator, backend=settings.backend, device=settings.device)


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
    kept: list[np.ndarray] = []
    if not (s.attributes or s.identity or s.image_size):
        if on_batch is not None:
            on_batch(len(seeds))     # nothing to look at: the latents are the whole job
    elif analyzer is None and (s.attributes or s.identity):
        raise ValueError("scoring or identity needs Models.analyzer; got none")
    else:
        with torch.no_grad():
            for start in range(0, len(seeds), s.batch):
                t0 = time.perf_counter()
                images = G.synthesis(w[start:start + s.batch].to(G.device))
                _sync(images.device)
                if s.image_size:         # kept renders count as generating
                    kept.append(to_uint8(resize(images, s.image_size)).transpose(0, 3, 1, 2))
                t1 = t2 = t3 = time.perf_counter()
                if s.attributes or s.identity:
                    assert analyzer is not None
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
    if s.image_size:
        arrays["images"] = np.ascontiguousarray(np.concatenate(kept))
    device = str(analyzer.device) if analyzer is not None else str(G.device)
    return ShardResult(job.index, arrays, seconds, device)


# -- one call: create, resume, repair or extend -------------------------------------------------
@dataclass
class SampleReport:
    """What `sample_to_store` did. ``action``: "created", "resumed", "extended" or "complete"
    (nothing was left to do); ``repaired``: damaged shards found and rewritten."""

    path: str
    action: str
    samples: int                          # complete samples in the store now
    shards_written: int
    samples_written: int
    seconds: float                        # wall time of the shards written in this call
    stage_seconds: dict[str, float] = field(default_factory=dict)
    repaired: int = 0

    @property
    def samples_per_s(self) -> float:
        return self.samples_written / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, "samples": self.samples,
                "shards_written": self.shards_written, "samples_written": self.samples_written,
                "repaired": self.repaired, "seconds": round(self.seconds, 3),
                "samples_per_s": round(self.samples_per_s, 3),
                "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()}}


def check_seed_range(n: int, seed_start: int) -> None:
    """ValueError unless seeds ``seed_start .. seed_start + n - 1`` are valid seeds."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if seed_start < 0 or seed_start + n > SEED_LIMIT:
        raise ValueError(f"seeds must lie in [0, 2**32): seed_start={seed_start} with n={n} "
                         f"ends at {seed_start + n - 1}")


def sample_to_store(path: str | Path, n: int, settings: SampleSettings, *, seed_start: int = 0,
                    shard_size: int | None = None, engine: Engine | None = None,
                    models: Models | None = None, progress: Progress | None = None,
                    command: Sequence[str] | None = None) -> SampleReport:
    """Fill the store at ``path`` with samples of seeds ``seed_start .. seed_start + n - 1``.

    Creates the store if there is none; otherwise checks that it holds samples of these
    settings (StoreMismatchError naming each difference), grows it when ``n`` is larger than
    it plans (ValueError when smaller), checks every complete shard against its checksums and
    writes the shards that are missing or damaged, so the same call resumes a killed run and
    repairs a damaged store. ``shard_size``: rows per shard for a new store (default 256;
    None keeps an existing store's). ``engine``: what runs the shards (default
    `LocalEngine(models)`). ``models``: networks to use instead of the cached ones, with
    their ``provenance`` for the manifest. ``progress``: told the totals, then each batch
    (local engine) or shard (others). ``command``: recorded in the manifest (default
    ``sys.argv``).
    """
    if shard_size is not None and shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    check_seed_range(n, seed_start)
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
                     settings.attributes, settings.identity, settings.image_size,
                     provenance)
    command = list(sys.argv if command is None else command)
    if exists:
        store, action = LatentStore.open(path, expect=spec), "resumed"
    else:
        store, action = LatentStore.create(path, spec, n, command=command), "created"
    with ShardedRun(store.lock_folder, store, "store") as run:
        # The manifest was read again under the lock: its size is the one to compare with.
        if n < store.size:
            raise ValueError(f"store {path} plans {store.size} samples ({len(store)} complete) "
                             f"and cannot shrink; pass n={store.size} to resume it, or more to "
                             "extend it")
        if n > store.size and exists:
            action = "extended"
        store.extend(n)
        damaged = {problem.shard for problem in store.verify()}
        planned = {i: len(store.shard_rows(i)) for i in range(store.num_shards())}
        todo = run.pending(planned, intact=lambda i, _: i not in damaged)
        rows = sum(planned[i] for i in todo)
        if progress is not None:
            progress.start(n, n - rows)
        if not todo:
            return SampleReport(str(path), "complete", len(store), 0, 0, 0.0)
        store.record_run({"command": command, "started": now(), "n": n, "engine": engine.name,
                          "device": str(settings.device), "batch": settings.batch,
                          "repaired": sorted(damaged), "facelatent_version": __version__})
        # Made one at a time as the engine asks: no list of every seed is ever built.
        jobs = (ShardJob(i, tuple(seed_start + r for r in store.shard_rows(i)), settings)
                for i in todo)
        work: Callable[..., ShardResult] = run_shard
        per_shard = progress
        if isinstance(engine, LocalEngine) and progress is not None:
            # In this process the bar can move with every batch rather than every shard.
            work, per_shard = functools.partial(run_shard, on_batch=progress.update), None

        def write(job: ShardJob, result: ShardResult) -> ShardWrite:
            digests = store.write_rows(job.index, result.arrays)
            return ShardWrite(len(job.seeds), result.seconds,
                              {"device": result.device, "sha256": digests})

        stats = run.execute(engine, work, jobs, write, index=lambda job: job.index,
                            progress=per_shard)
    return SampleReport(str(path), action, len(store), stats.shards, stats.rows, stats.seconds,
                        {k: stats.stage_seconds.get(k, 0.0) for k in STAGES},
                        repaired=len(damaged))

