"""An engine that runs jobs on Ray actors, on this machine or on a cluster.

    from facelatent.latents.ray_engine import RayEngine
    with RayEngine(workers=8) as engine:                  # a local Ray with 8 CPUs
        sample_to_store("runs/ffhq", 200000, settings, engine=engine)

Each worker is an actor, a process that lives as long as the engine: it keeps whatever networks
its jobs load (`load_models` caches them per process) or the `Models` the engine was given, so
a worker loads its networks once however many shards it runs. The driver hands each actor a new
job as soon as it finishes one and gets results back in order of completion; writing stays in
the driver (`write_shards`), so a store keeps a single writer, and a shard's values equal those
`LocalEngine` computes for it (same code, same seeds, same thread count, same device).

On a cluster every node needs facelatent installed in the same Python and Ray versions as the
driver. Joining a cluster on this machine (``host:port`` of a local address, or "auto") uses the
auth token Ray keeps here (``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, or
``~/.ray/auth_token``), as ``ray.init(address="auto")`` does; a cluster elsewhere needs
``RAY_AUTH_MODE=token`` and its token, as Ray's own tools do. Any failure to join is one
`FacelatentError` that names ``--address`` and what to do. Workers reserve CPUs only; Ray does not share out GPUs to them, so with ``device="auto"`` or "cuda"
every worker on a node puts its own copy of the networks on that node's first GPU.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from facelatent.errors import FacelatentError
from facelatent.latents.engine import (
    JobError,
    Models,
    ShardJob,
    describe_job,
    run_shard,
    write_shards,
)
from facelatent.latents.store import LatentStore

__all__ = ["RayEngine"]

J = TypeVar("J")
R = TypeVar("R")

JOBS_PER_WORKER = 2       # one running, one queued: a worker never waits on the driver
START_TIMEOUT_S = 300     # how long the workers may take to start (a cluster may scale up)
CONNECT_TIMEOUT_S = 5     # how long a cluster's address may take to answer before we give up
_END = object()
_AUTH_MODE = "RAY_AUTH_MODE"
_TOKEN_PLACES = ("RAY_AUTH_TOKEN, a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token")
# The first bytes of every HTTP/2 (so gRPC) connection, then an empty SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise FacelatentError("the Ray engine needs Ray, which is not installed; install it "
                              "with: pip install 'facelatent[ray]'") from exc
    return ray

# -- joining a cluster ----------------------------------------------------------------------------
def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of "host:port", "[v6]:port" or "ray://host:port"; None for "auto" and
    "local", which Ray resolves itself."""
    if address in ("auto", "local"):
        return None
    rest = address.removeprefix("ray://")
    match = re.fullmatch(r"\[([^\]]+)\]:(\d{1,5})|([^\s:/\[\]]+):(\d{1,5})", rest)
    if match is None or not 0 < int(match[2] or match[4]) < 65536:
        raise FacelatentError(f"--address {address!r} is not host:port (e.g. 127.0.0.1:6379, "
                              "the address `ray start --head` prints), ray://host:port or auto")
    return match[1] or match[3], int(match[2] or match[4])


def _check_answers(address: str, host: str, port: int) -> None:
    """Fail within `CONNECT_TIMEOUT_S` unless something at host:port speaks HTTP/2, as Ray's
    GCS and client server (gRPC) do; Ray itself would retry for minutes."""
    try:
        conn = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    except socket.gaierror as exc:
        raise FacelatentError(f"--address {address}: cannot resolve host {host!r} "
                              f"({exc.strerror}); give the head node's name or IP") from exc
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise FacelatentError(
            f"no Ray cluster answers at --address {address} ({why}); start one there with "
            "`ray start --head`, or give the address it printed (default port 6379)") from exc
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        conn.close()                       # a TLS cluster would not answer plain HTTP/2
        return
    with conn:
        try:
            conn.sendall(_H2_PREFACE)
            head = conn.recv(9)
        except OSError:
            head = b""
    if len(head) < 4 or head[3] != 4:      # an HTTP/2 server first sends SETTINGS (type 4)
        raise FacelatentError(
            f"what answers at --address {address} is not a Ray cluster; give the GCS address "
            "`ray start --head` printed (default port 6379), not the dashboard's (8265)")


def _on_this_machine(host: str) -> bool:
    """Whether ``host`` is an address of this machine (it can be bound here)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((sockaddr[0], 0))
            return True
        except OSError:
            continue
    return False


def _use_local_token() -> bool:
    """Turn on token authentication if ``RAY_AUTH_MODE`` is unset and Ray finds a token here,
    as ``ray.init(address="auto")`` does for a cluster on this machine. True if it did."""
    if os.environ.get(_AUTH_MODE) is not None:
        return False                       # the user chose; Ray respects it, so do we
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available as enable,
        )
    except ImportError:                    # a Ray without token authentication
        return False
    quiet = logging.getLogger(enable.__module__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)          # it would say "enabled for this cluster", a half-truth
    try:
        return bool(enable(warn_if_disabled=False))
    finally:
        quiet.setLevel(level)


def _auth_error(ray: Any) -> type[BaseException] | None:
    return getattr(getattr(ray, "exceptions", None), "AuthenticationError", None)


def _check_auth(ray: Any, address: str, host: str, port: int) -> None:
    """Ask the cluster's GCS who we are, as `ray status` does: an auth failure shows at once,
    where ray.init would retry for 20 s. Anything else is left to ray.init to report."""
    auth_error = _auth_error(ray)
    client = getattr(getattr(ray, "_raylet", None), "GcsClient", None)
    if auth_error is None or client is None:
        return
    with _stderr_kept_unless_refused() as refused:
        try:
            client(address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        except auth_error as exc:
            refused.append(True)
            raise FacelatentError(_explain(ray, address, exc)) from exc
        except Exception:  # noqa: BLE001 - any other failure is ray.init's to report
            return


@contextlib.contextmanager
def _stderr_kept_unless_refused() -> Iterator[list[bool]]:
    """Hold back what Ray's C++ side writes to stderr (fd 2) meanwhile, and write it out after
    unless the block appended to the list it got: a refusal is said in one line instead."""
    refused: list[bool] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):          # no usable fd 2: nothing to hold back
        yield refused
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield refused
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not refused:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
                sys.stderr.flush()


def _explain(ray: Any, address: str, exc: BaseException) -> str:
    """One line saying why joining the cluster at ``address`` failed and what to do."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain)
    auth_error = _auth_error(ray)
    if (auth_error is not None and any(isinstance(e, auth_error) for e in chain)) or \
            "InvalidAuthToken" in text:
        if os.environ.get(_AUTH_MODE, "").lower() == "token":
            return (f"the Ray cluster at --address {address} refused this machine's auth "
                    f"token; put the cluster's token (`ray get-auth-token` on its head node) "
                    f"in {_TOKEN_PLACES}")
        return (f"the Ray cluster at --address {address} requires token authentication; set "
                f"RAY_AUTH_MODE=token and put its token (`ray get-auth-token` on its head node) "
                f"in {_TOKEN_PLACES}")
    mismatch = re.search(r"(?is)version mismatch.*", text)
    if mismatch:
        versions = " ".join(mismatch[0].split())
        return (f"the Ray cluster at --address {address} runs other Ray or Python versions than "
                f"this process ({versions[:300]}); install the cluster's versions here")
    last = next((str(e).strip() for e in reversed(chain) if str(e).strip()), type(exc).__name__)
    return (f"could not join the Ray cluster at --address {address}: "
            f"{' '.join(last.split())[:300]}; check the address (`ray status` on the head node)")


def _join(ray: Any, address: str) -> None:
    """``ray.init(address)``, with every failure to join as one `FacelatentError`."""
    target = _host_port(address)
    if target is not None:
        _check_answers(address, *target)
    if target is None or (not address.startswith("ray://") and _on_this_machine(target[0])):
        _use_local_token()                 # ray.init does this itself for "auto"
    try:
        if target is not None and not address.startswith("ray://"):
            _check_auth(ray, address, *target)
        ray.init(address=address, logging_level=logging.WARNING)
    except FacelatentError:
        raise
    except Exception as exc:               # ConnectionError, RuntimeError, RayError, ...
        raise FacelatentError(_explain(ray, address, exc)) from exc


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
        ray = self._ray = _import_ray()
        self.models = models
        self.started = not ray.is_initialized()    # shut down on close only what we started
        t0 = time.perf_counter()
        if self.started and address is None:
            ray.init(address="local", num_cpus=workers or os.cpu_count() or 1,
                     object_store_memory=object_store_mb * 2**20, include_dashboard=False,
                     logging_level=logging.WARNING)
        elif self.started:
            _join(ray, address)
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

    def run(self, store: LatentStore, jobs: Sequence[ShardJob],
            progress: Callable[[int], None] | None = None) -> list[dict[str, float]]:
        """Run the shards on the workers and write each from the driver as it comes;
        ``progress`` hears of each shard once it is written."""
        return write_shards(store, self.map(run_shard, jobs), progress)

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
