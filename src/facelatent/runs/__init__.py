"""Resumable, sharded runs and the engines that execute them.

- `Engine`, `LocalEngine` (this process) and `RayEngine` (`facelatent.runs.ray`, Ray actors on
  this machine or a cluster): map a function over jobs, results back to the caller.
- `load_models`: the generator and face analyzer of a process, loaded once.
- `ShardedRun`: the writer lock, the ledger of done shards with content hashes, the resume
  key check and the loop that writes each result; `facelatent sample` and
  `facelatent dataset build` are both built on it.
"""

from typing import Any

from facelatent.runs.engine import Engine, JobError, LocalEngine, describe_job
from facelatent.runs.sharded import (
    Progress,
    ResumeMismatchError,
    RunStats,
    ShardedRun,
    ShardLedger,
    ShardWrite,
    array_digests,
    check_resume,
)

__all__ = ["Engine", "JobError", "LocalEngine", "Models", "Progress", "ResumeMismatchError",
           "RunStats", "ShardLedger", "ShardWrite", "ShardedRun", "array_digests",
           "check_resume", "clear_models", "describe_job", "load_models"]


def __getattr__(name: str) -> Any:
    # The networks (torch, the face models) load only when asked for: a store opened to be
    # read or verified never imports them.
    if name in ("Models", "clear_models", "load_models"):
        from facelatent.runs import models

        return getattr(models, name)
    raise AttributeError(f"module 'facelatent.runs' has no attribute {name!r}")
