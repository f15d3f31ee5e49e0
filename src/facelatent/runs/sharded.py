"""ShardedRun: resumable work on one folder, written shard by shard by a single writer.

`facelatent sample` (a LatentStore) and `facelatent dataset build` (a dataset folder) are both
runs of this shape, and both go through this module:

1. Take the folder's writer lock, then read the ledger (the record of done shards) from disk.
   Reading after the lock matters: another process may have written since this one opened the
   folder, and a record read before the lock would be written back over its work.
2. Compare the resume key (everything that decides the contents: settings, model files, a hash
   of the inputs) with the one the folder was made with; a difference is an error that names
   each differing field, never a silent mix of two runs.
3. Shards to do: planned shards with no record, with a record of another size, or whose data no
   longer matches the content hashes in its record (a damaged shard is redone, not read).
4. Run the jobs on an engine; write each result as it comes, then record the shard with its
   content hashes and timings. Data first, record last: a kill in between leaves data that no
   record points to, and the rerun writes the same shard again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from facelatent.errors import FacelatentError
from facelatent.io import writer_lock
from facelatent.runs.engine import Engine

__all__ = ["Progress", "ResumeMismatchError", "RunStats", "ShardLedger", "ShardWrite",
           "ShardedRun", "array_digests", "check_resume", "now"]

J = TypeVar("J")
R = TypeVar("R")


def now() -> str:
    """UTC time, ISO 8601 to the second: the timestamps of every manifest."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResumeMismatchError(FacelatentError):
    """A run was resumed with settings or inputs other than those its folder was made with."""


def check_resume(where: str, held: Mapping[str, Any], asked: Mapping[str, Any], fix: str,
                 error: type[ResumeMismatchError] = ResumeMismatchError) -> None:
    """Raise ``error`` naming every key whose value differs between ``held`` (what ``where``
    was made with) and ``asked``; ``fix`` says what to do instead."""
    keys = [k for k in dict.fromkeys([*held, *asked]) if held.get(k) != asked.get(k)]
    if keys:
        diff = "; ".join(f"{k}: {held.get(k)!r} held, {asked.get(k)!r} asked" for k in keys)
        raise error(f"{where} was made with other settings or inputs, and one run never mixes "
                    f"two: {diff}. {fix}")


def array_digests(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """sha256 of each array's dtype, shape and bytes: ``{name: hex}``; what a shard record
    keeps so that a damaged shard is found by recomputing it."""
    out = {}
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h = hashlib.sha256(f"{a.dtype.str}{list(a.shape)}".encode())
        h.update(a.tobytes())
        out[name] = h.hexdigest()
    return out


class ShardLedger(Protocol):
    """Where a run records its done shards (a store's manifest, a dataset's dataset.json)."""

    def reload(self) -> None:
        """Read the record again from disk."""

    def done(self) -> Mapping[int, Mapping[str, Any]]:
        """``{index: record}`` of the done shards; a record has at least ``rows``."""

    def record(self, index: int, record: Mapping[str, Any]) -> None:
        """Mark shard ``index`` done with ``record`` (durably, before returning)."""

    def forget(self, indices: Iterable[int]) -> None:
        """Un-record shards (they are damaged and will be redone)."""


class Progress(Protocol):
    """Told the totals once, then each count of items done (e.g. a tqdm bar)."""

    def start(self, total: int, done: int) -> None: ...

    def update(self, count: int) -> None: ...


@dataclass
class ShardWrite:
    """What writing one result gives back to the run: rows written, the compute stages'
    seconds (from the worker) and the rest of the shard's record (content hashes, counts)."""

    rows: int
    seconds: Mapping[str, float] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RunStats:
    """What `ShardedRun.execute` did."""

    shards: int = 0                       # shards written
    rows: int = 0                         # items (samples, images) written
    seconds: float = 0.0                  # wall time of the loop
    stage_seconds: dict[str, float] = field(default_factory=dict)


class ShardedRun:
    """The lock, the ledger and the loop of one resumable run on ``folder``.

    Use as a context manager: entering takes ``folder``'s writer lock (None: no lock, e.g. a
    store behind a URL) and re-reads the ledger; leaving releases the lock. ``what`` names the
    folder in messages ("store", "dataset").
    """

    def __init__(self, folder: str | Path | None, ledger: ShardLedger, what: str) -> None:
        self.folder = None if folder is None else Path(folder)
        self.ledger = ledger
        self.what = what
        self._lock: Any = None

    def __enter__(self) -> ShardedRun:
        if self.folder is not None:
            self._lock = writer_lock(self.folder, self.what)
            self._lock.__enter__()
        try:
            self.ledger.reload()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def pending(self, planned: Mapping[int, int],
                intact: Callable[[int, Mapping[str, Any]], bool] | None = None) -> list[int]:
        """Shards of ``planned`` (``{index: rows}``) still to write, ascending: those without
        a record, recorded with another row count, or (with ``intact``) whose data fails
        ``intact(index, record)``; the last are un-recorded first, so a kill cannot leave
        them counted."""
        done = self.ledger.done()
        damaged = [i for i, rec in done.items()
                   if i in planned and int(rec["rows"]) == planned[i]
                   and intact is not None and not intact(i, rec)]
        if damaged:
            self.ledger.forget(damaged)
        done = self.ledger.done()
        return sorted(i for i, rows in planned.items()
                      if i not in done or int(done[i]["rows"]) != rows)

    def execute(self, engine: Engine, fn: Callable[[J, Any], R], jobs: Iterable[J],
                write: Callable[[J, R], ShardWrite],
                index: Callable[[J], int], progress: Progress | None = None) -> RunStats:
        """Run ``fn`` over ``jobs`` on ``engine``; for each result, ``write(job, result)`` puts
        the data in place, then the shard ``index(job)`` is recorded with the returned
        rows, content hashes and stage timings ("write" included). ``progress.update`` hears
        each shard's rows."""
        stats = RunStats()
        t0 = time.perf_counter()
        for job, result in engine.map(fn, jobs):
            t1 = time.perf_counter()
            written = write(job, result)
            seconds = {**written.seconds, "write": time.perf_counter() - t1}
            self.ledger.record(index(job), {
                "rows": int(written.rows), "completed": now(),
                "seconds": {k: round(float(v), 4) for k, v in seconds.items()},
                **written.info})
            for name, value in seconds.items():
                stats.stage_seconds[name] = stats.stage_seconds.get(name, 0.0) + float(value)
            stats.shards += 1
            stats.rows += int(written.rows)
            if progress is not None:
                progress.update(int(written.rows))
        stats.seconds = time.perf_counter() - t0
        return stats
