"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run a module's torch work on one thread. Tiny models gain nothing from threads, and on a
    busy 2-core machine OpenMP's spinning threads make them up to 100x slower. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_file(relative: str) -> Path:
    """``../shared/<relative>`` beside the checkout. Skips the test, saying why, where there is
    no ``../shared`` at all (a user's clone); fails where ``../shared`` is there but the file is
    not (CI, where it must be)."""
    if not SHARED.is_dir():
        pytest.skip(f"needs {SHARED}/{relative}: the project's shared folder is not beside this "
                    "checkout (it is in CI)")
    path = SHARED / relative
    assert path.exists(), f"missing {path}: the shared fixtures must lie beside the repository"
    return path
