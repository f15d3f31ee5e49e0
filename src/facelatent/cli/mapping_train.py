"""`facelatent mapping train` (filled in next)."""

from __future__ import annotations

import argparse


def register(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pass
