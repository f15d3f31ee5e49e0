"""Process-level settings that make CPU inference fast: glibc's memory reuse, and the waiting
policy and BLAS threads that `facelatent.cli.main` sets first thing (see each function).

glibc hands every allocation above its mmap threshold straight back to the kernel when it is
freed, so each of the generator's large activations (a 1024-pixel batch of 8 needs 0.5 GB per
layer) is page-faulted in again, page by page, on every call. This module asks glibc to keep
freed memory for reuse, once per process; `python bench/generator.py` measures the difference
and the README quotes it.
"""

from __future__ import annotations

import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_done = False


def _mallopt(param: int, value: int) -> bool:
    """glibc's ``mallopt(param, value)``; False off glibc (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    # Imported here, not above: the CLI's start-up does not need ctypes.
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(param, value))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False


def keep_freed_memory() -> bool:
    """Make glibc reuse freed large blocks instead of unmapping them; True if it took effect.

    The process keeps its high-water mark instead of returning memory after each call, so its
    resident size stays near the peak of the largest batch. Set FACELATENT_KEEP_FREED_MEMORY=0
    to opt out. A no-op off glibc (macOS, Windows).
    """
    global _done
    if _done:
        return True
    if os.environ.get("FACELATENT_KEEP_FREED_MEMORY", "1") == "0":
        return False
    # Trim threshold -1 (SIZE_MAX inside glibc) disables trimming, see mallopt(3); the int
    # maximum, 2 GiB, is less than the free top of the heap after a batch of 8 at 1024.
    _done = _mallopt(_M_MMAP_THRESHOLD, 1 << 30) and _mallopt(_M_TRIM_THRESHOLD, -1)
    return _done


def single_malloc_arena() -> bool:
    """Make every thread allocate from glibc's main arena; True if it took effect (Linux).

    A server renders in worker threads, and glibc gives each thread an arena of its own whose
    heaps hold at most 64 MB, so the generator's larger activations are mapped and
    page-faulted in again on every render there: `keep_freed_memory` keeps them only in the
    main arena. Measured on 2 busy cores, one 1024 px render: 0.37 s in the main thread, 0.51 s
    in a worker thread, 0.38 s there with one arena. Threads keep the arena they already use,
    so this must run before the threads start (`facelatent serve` calls it first).
    """
    return _mallopt(_M_ARENA_MAX, 1)


def passive_waiting() -> None:
    """Let idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) unless the
    user chose a policy. Must run before torch is imported.

    A spinning thread keeps its core busy between parallel regions; when another process needs
    that core (a second job, a Ray worker, a test run) both crawl. `python bench/threads.py`
    measures analysis and rendering beside a busy process, spinning against passive; the
    README has the figures.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# OpenBLAS reads the first of these that is set when it loads; any of them is the user's choice.
_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def one_blas_thread() -> bool:
    """Run OpenBLAS (numpy's and scipy's, so scikit-learn's solvers) on one thread unless the
    user chose a count in OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or OMP_NUM_THREADS; True if
    it set ``OPENBLAS_NUM_THREADS=1``. Must run before numpy is imported.

    Why: OpenBLAS threads wait for each other by spinning. When another process holds the cores
    (a second job, a Ray worker, a test run), a thread that lost its core stalls the others at
    every small matrix product, and the solvers here multiply small matrices (samples x 512)
    thousands of times. Measured 2026-12-06 on 2 cores beside a sampling job and other work
    (load average 4-6), `LinearBoundary(solver="logistic")` on a 4,000-sample store in W,
    attribute age, median of 5 (`python bench/threads.py --blas STORE`), 2 threads against 1:
    ratio 0.02 0.60 s against 0.037 s (16x slower), median split 29.8 s against 0.38 s (79x);
    an earlier run at load 2-4 gave 10x and 41x. One thread gives up at most the second core
    of an idle machine, on fits that take well under a second. Torch is not affected: it
    threads over its own MKL and OpenMP (MKL_NUM_THREADS is left alone, since torch reads it).
    """
    if any(name in os.environ for name in _BLAS_THREAD_VARIABLES):
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True
