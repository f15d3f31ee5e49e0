"""Process-level settings that make CPU inference fast.

glibc hands every allocation above its mmap threshold straight back to the kernel when it is
freed, so each of the generator's large activations (a 1024-pixel batch of 8 needs 0.5 GB per
layer) is page-faulted in again, page by page, on every call. This module asks glibc to keep
freed memory for reuse, once per process; `python bench/generator.py` measures the difference
and the README quotes it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory() -> bool:
    """Make glibc reuse freed large blocks instead of unmapping them; True if it took effect.

    The process keeps its high-water mark instead of returning memory after each call, so its
    resident size stays near the peak of the largest batch. Set FACELATENT_KEEP_FREED_MEMORY=0
    to opt out. A no-op off glibc (macOS, Windows).
    """
    global _done
    if _done:
        return True
    opted_out = os.environ.get("FACELATENT_KEEP_FREED_MEMORY", "1") == "0"
    if opted_out or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    # Trim threshold -1 (SIZE_MAX inside glibc) disables trimming, see mallopt(3); the int
    # maximum, 2 GiB, is less than the free top of the heap after a batch of 8 at 1024.
    _done = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    return _done


def passive_waiting() -> None:
    """Let idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) unless the
    user chose a policy. Must run before torch is imported.

    A spinning thread keeps its core busy between parallel regions; when another process needs
    that core (a second job, a Ray worker, a test run) both crawl. `python bench/threads.py`
    measures analysis and rendering beside a busy process, spinning against passive; the
    README has the figures.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
