"""Engines: what runs a function over many jobs, here or on workers.

An engine maps a picklable function over picklable jobs, ``engine.map(fn, jobs)`` ->
``(job, fn(job, models))`` pairs as each finishes. Results come back to the caller, which
writes them (`ShardedRun`), so every folder keeps a single writer. `LocalEngine` runs the jobs
in this process, in order; `facelatent.runs.ray.RayEngine` on Ray actors that keep their
networks loaded across jobs, in order of completion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar

from facelatent.errors import FacelatentError

if TYPE_CHECKING:
    from facelatent.runs.models import Models

__all__ = ["Engine", "JobError", "LocalEngine", "describe_job"]

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
    """Runs jobs, in this process or on workers; results come back to the caller."""

    name: str

    def map(self, fn: Callable[[J, Models | None], R],
            jobs: Iterable[J]) -> Iterator[tuple[J, R]]:
        """``(job, fn(job, models))`` for every job, as each finishes."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...


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

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
