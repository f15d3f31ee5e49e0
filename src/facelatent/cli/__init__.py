"""The `facelatent` command: one sub-command group per module, each thin over the library."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from facelatent import __version__
from facelatent.errors import FacelatentError

# Every command, in the order `facelatent --help` lists them: its name, the module of
# facelatent.cli whose register(sub) adds it, and its one-line help (the same as the module
# gives; tests/test_cli_startup.py checks). Only the chosen command's module is imported, so
# that start-up and --help never wait for torch or scikit-learn. A new command is one line
# here and a module with register(sub).
COMMANDS: dict[str, tuple[str, str]] = {
    "weights": ("weights", "list, fetch, verify and locate model files"),
    "generate": ("generate", "generate faces for seeds"),
    "convert": ("convert", "convert a generator checkpoint to safetensors + config.json"),
    "score": ("faces", "score faces in image files"),
    "faces": ("faces", "face models"),
    "verify": ("verify", "benchmarks of the face models on real labelled photos"),
    "invert": ("invert", "invert faces in photos into W or W+ latents"),
    "sample": ("sample", "sample, score and embed faces into a latent store"),
    "store": ("store", "check or describe a latent store"),
    "boundary": ("boundary", "fit, condition and correlate attribute boundaries"),
    "directions": ("boundary", "unsupervised directions (SeFa, GANSpace)"),
    "edit": ("edit", "edit faces along a boundary (grids and GIFs)"),
    "evaluate": ("evaluate", "re-score, identity and drift of an edit on a store's samples"),
    "report": ("report", "write a self-contained HTML report of a store and its results"),
    "identity": ("identity", "identity boundaries for synthetic identities"),
    "dataset": ("dataset", "synthetic face-recognition datasets"),
    "fr": ("fr", "train face recognisers on a dataset and verify them on LFW"),
    "mapping": ("mapping", "identity/attribute mapping into W (train, apply, evaluate)"),
    "serve": ("serve", "the web editor: sliders over a face, in the browser"),
}


class LazyCommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Sub-commands that start as stand-ins (a name and a help line) and are replaced by the
    real sub-parser when one is parsed: its module's register(sub) runs then."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stand_ins: dict[str, str] = {}     # command -> module, until its module registers

    def add_stand_in(self, name: str, module: str, help: str) -> None:
        super().add_parser(name, help=help)
        self.stand_ins[name] = module

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if self.stand_ins.pop(name, None) is None:
            return super().add_parser(name, **kwargs)
        # The real parser takes the stand-in's place, in the --help listing too.
        del self._name_parser_map[name]
        listing = self._choices_actions
        place = next(i for i, a in enumerate(listing) if a.dest == name)
        del listing[place]
        parser = super().add_parser(name, **kwargs)
        if "help" in kwargs:                      # argparse appended its line
            listing.insert(place, listing.pop())
        return parser

    def load(self, name: str) -> argparse.ArgumentParser:
        """The real sub-parser of command ``name``, its module imported and registered."""
        module = self.stand_ins.get(name)
        if module is not None:
            importlib.import_module(f"facelatent.cli.{module}").register(self)
            if name in self.stand_ins:
                raise RuntimeError(f"facelatent.cli.{module}.register did not add {name!r}")
        return self._name_parser_map[name]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if values and values[0] in self.stand_ins:
            self.load(values[0])
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    """The `facelatent` parser; a command's own options are added when it is parsed."""
    parser = argparse.ArgumentParser(
        prog="facelatent",
        description="Interpret and edit the latent space of pretrained face GANs.",
    )
    parser.add_argument("--version", action="version", version=f"facelatent {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error (also FACELATENT_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                action=LazyCommands)
    for name, (module, help) in COMMANDS.items():
        sub.add_stand_in(name, module, help)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The full parser of command ``name`` (its module imported), e.g. for documentation."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, LazyCommands))
    return commands.load(name)


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
    from facelatent.runtime import one_blas_thread, passive_waiting

    passive_waiting()            # both before any command imports torch or numpy
    one_blas_thread()
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
