"""The `facelatent` command: one sub-command group per module, each thin over the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from facelatent import __version__
from facelatent.errors import FacelatentError


def build_parser() -> argparse.ArgumentParser:
    from facelatent.cli import (boundary, dataset, edit, evaluate, faces, generate, identity,
                                report, sample, weights)

    parser = argparse.ArgumentParser(
        prog="facelatent",
        description="Interpret and edit the latent space of pretrained face GANs.",
    )
    parser.add_argument("--version", action="version", version=f"facelatent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (weights, generate, faces, sample, boundary, edit, evaluate, report,
                   identity, dataset):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    from facelatent.runtime import passive_waiting

    passive_waiting()            # before any command imports torch
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FacelatentError, ValueError, FileNotFoundError) as exc:
        print(f"facelatent: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facelatent: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
