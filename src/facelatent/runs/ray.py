"""An engine that runs jobs on Ray actors, on this machine or on a cluster.

    from facelatent.runs.ray import RayEngine
    with RayEngine(workers=8) as engine:                  # a local Ray with 8 CPUs
        sample_to_store("runs/ffhq", 200000, settings, engine=engine)

Each worker is an actor, a process that lives as long as the engine: it keeps whatever networks
its jobs load (`facelatent.runs.load_models` caches them per process) or the `Models` the engine
was given, so a worker loads its networks once however many shards it runs. The driver hands
each actor a new job as soon as it finishes one and gets results back in order of completion;
writing stays in the driver (`facelatent.runs.ShardedRun`), so a store keeps a single writer,
and a shard's values equal those `LocalEngine` computes for it (same code, same seeds, same
thread count, same device).

On a cluster every node needs facelatent installed in the same Python and Ray versions as the
driver; joining it (auth token, address checks, one-line errors) is `facelatent.runs.ray_join`.
Workers reserve CPUs only; Ray does not share out GPUs to them, so with ``device="auto"`` or
"cuda" every worker on a node puts its own copy of the networks on that node's first GPU.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch

from facelatent.errors import FacelatentError
from facelatent.runs.engine import JobError, describe_job
from facelatent.runs.models import Models
from facelatent.runs.ray_join import import_ray, join

__all__ = ["RayEngine"]

J = TypeVar("J")
R = TypeVar("R")

JOBS_PER_WORKER = 2       # one running, one queued: a worker never waits on the driver
START_TIMEOUT_S = 300     # how long the workers may take to start (a cluster may scale up)
_END = object()


class _Worker:
    """The actor body: holds the injected models (or None) and runs one job at a time."""

    def __init__(self, models: Models | None, threads: int) -> None:
        torch.set_num_threads(threads)
        self.models = models
        self.where = f"{socket.gethostname()} pid {os.getpid()}"

    def ready(self) -> str:
        return self.where

    def run(self, fn: Callable[[Any, Models | None], Any], job: Any) -> tuple[bool, Any]:
        """``(True, fn(job, models))``, or ``(False, what went wrong)`` if it raised."""
        try:
            return True, fn(job, self.models)
        except Exception:
            return False, f"on Ray worker {self.where}:\n{traceback.format_exc()}"


class RayEngine:
    """Runs jobs on Ray actors (each runs one at a time, with the next one queued), results
    back to the driver in order of completion.

    ``address``: None starts a local Ray for this engine; ``"auto"``, ``"host:port"`` or
    ``"ray://host:port"`` joins a running cluster. If Ray is already initialised in this
    process, that Ray is used and ``address`` is ignored.
    ``workers``: actors to start (None = one per CPU of the cluster, or ``os.cpu_count()``
    for a local Ray, which gets that many CPUs).
    ``models``: networks every worker uses, sent to each actor once (tests send tiny random
    ones); None = each worker loads its own through `load_models`.
    ``threads_per_worker``: torch threads per actor (None = the cluster's CPUs / workers,
    at least 1).
    ``object_store_mb``: the object store of a local Ray, in MiB (results pass through it).

    The actors start on the first `map` and stop on `close`, which also shuts Ray down if
    this engine started it; use the engine as a context manager.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 models: Models | None = None, threads_per_worker: int | None = None, *,
                 object_store_mb: int = 256) -> None:
        for arg, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
            if value is not None and value < 1:
                raise ValueError(f"{arg} must be at least 1 (or None for the default), "
                                 f"got {value}")
        ray = self._ray = import_ray()
        self.models = models
        self.started = not ray.is_initialized()    # shut down on close only what we started
        t0 = time.perf_counter()
        if self.started and address is None:
            ray.init(address="local", num_cpus=workers or os.cpu_count() or 1,
                     object_store_memory=object_store_mb * 2**20, include_dashboard=False,
                     logging_level=logging.WARNING)
        elif self.started:
            join(ray, address)
        self.start_seconds = time.perf_counter() - t0
        self.cpus = int(ray.cluster_resources().get("CPU", 0))
        self.workers = workers or max(1, self.cpus)
        self.threads_per_worker = threads_per_worker or max(1, self.cpus // self.workers)
        self._actors: list[Any] = []

    # -- the workers ---------------------------------------------------------------------------
    def _start_actors(self) -> list[Any]:
        if self._actors:
            return self._actors
        ray = self._ray
        # A CPU each, or an equal share when there are more workers than CPUs (rounded down so
        # that all of them fit); SPREAD puts them on as many nodes as it can.
        share = min(1.0, math.floor(100 * self.cpus / self.workers) / 100) or 0.01
        actor = ray.remote(_Worker).options(num_cpus=share, scheduling_strategy="SPREAD")
        models = ray.put(self.models)               # stored once, read by every actor
        self._actors = [actor.remote(models, self.threads_per_worker)
                        for _ in range(self.workers)]
        ready = [a.ready.remote() for a in self._actors]
        try:
            done, _ = ray.wait(ready, num_returns=len(ready), timeout=START_TIMEOUT_S)
            if len(done) < len(ready):
                raise FacelatentError(
                    f"{len(ready) - len(done)} of {len(ready)} Ray workers did not start "
                    f"within {START_TIMEOUT_S} s; the cluster has {self.cpus} CPUs, free now: "
                    f"{ray.available_resources().get('CPU', 0)}. Ask for fewer workers or "
                    "free the CPUs other jobs hold (see `ray status`)")
            ray.get(ready)
        except FacelatentError:
            self._stop_actors()
            raise
        except ray.exceptions.RayError as exc:
            self._stop_actors()
            raise FacelatentError(f"a Ray worker failed to start: {exc}") from exc
        return self._actors

    def _stop_actors(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []

    # -- the work ------------------------------------------------------------------------------
    def map(self, fn: Callable[[J, Models | None], R],
            jobs: Iterable[J]) -> Iterator[tuple[J, R]]:
        """``(job, fn(job, models))`` for every job, in order of completion.

        ``fn``: a picklable function (defined at the top level of an importable module), run
        on the workers with the engine's ``models`` (or None). ``jobs``: picklable values,
        sent one at a time as workers free up. If a job fails, no further job is sent, the
        jobs already under way are finished and their results yielded, and then `JobError`
        is raised naming the failed job, with the worker's traceback.
        """
        ray = self._ray
        actors = self._start_actors()
        queue = iter(jobs)
        pending: dict[Any, tuple[Any, Any]] = {}    # result ref -> (job, actor)

        def submit(actor: Any) -> None:
            job = next(queue, _END)
            if job is not _END:
                pending[actor.run.remote(fn, job)] = (job, actor)

        for _ in range(JOBS_PER_WORKER):
            for actor in actors:
                submit(actor)
        failure: JobError | None = None
        dead = False
        try:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                job, actor = pending.pop(ref)
                try:
                    ok, value = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died, or could not unpickle
                    ok, value = False, f"in Ray (the worker died or could not run it):\n{exc}"
                    dead = dead or isinstance(exc, ray.exceptions.RayActorError)
                if not ok:
                    failure = failure or JobError(job, f"{describe_job(job)} failed {value}",
                                                  value)
                    continue
                if failure is None:
                    submit(actor)
                yield job, value
        finally:
            # Jobs left under way if the caller stopped early finish and are dropped (at most
            # JOBS_PER_WORKER each; cancelling queued actor tasks would stall the actor).
            if dead:
                self._stop_actors()                 # the next map starts a fresh set
        if failure is not None:
            raise failure

    # -- the end -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers; shut Ray down if this engine started it. Safe to call twice."""
        if self._ray.is_initialized():
            self._stop_actors()
            if self.started:
                self._ray.shutdown()
        self._actors = []

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
