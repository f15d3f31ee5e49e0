"""The `facelatent` command: one sub-command group per module, each thin over the library."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from facelatent import __version__
from facelatent.errors import FacelatentError


def build_parser() -> argparse.ArgumentParser:
    from facelatent.cli import (boundary, dataset, edit, evaluate, faces, generate, identity,
                                invert, mapping, report, sample, store, verify, weights)

    parser = argparse.ArgumentParser(
        prog="facelatent",
        description="Interpret and edit the latent space of pretrained face GANs.",
    )
    parser.add_argument("--version", action="version", version=f"facelatent {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error (also FACELATENT_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (weights, generate, faces, verify, invert, sample, store, boundary, edit,
                   evaluate, report, identity, dataset, mapping):
        module.register(sub)
    return parser


# Failures a user can act on: bad input, a file that is missing, damaged or not writable. They
# print one line and exit 2; anything else is a bug, which prints one line and exits 1, with the
# traceback under --debug.
EXPECTED = (FacelatentError, ValueError, OSError)


def describe_error(exc: BaseException) -> str:
    """One line for ``exc``: OSErrors as "Permission denied: PATH", others their message
    (a worker's traceback, or anything after the first line, is left for --debug)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename}"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    return text.splitlines()[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    from facelatent.runtime import passive_waiting

    passive_waiting()            # before any command imports torch
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("FACELATENT_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("facelatent: interrupted", file=sys.stderr)
        return 130
    except EXPECTED as exc:
        if debug:
            traceback.print_exc()
        print(f"facelatent: error: {describe_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"facelatent: unexpected error ({type(exc).__name__}): {describe_error(exc)}; "
              "rerun with --debug for the traceback, and please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
