"""`facelatent mapping apply` (placeholder until its module lands)."""

from __future__ import annotations

import argparse


def register(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pass
