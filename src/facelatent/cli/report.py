"""`facelatent report`: one self-contained HTML page about a store and its results."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "report", help="write a self-contained HTML report of a store and its results",
        description="Store summary (manifest, models, timings), score histograms, boundary "
                    "metrics beside InterFaceGAN's published figures, correlation heatmaps, edit "
                    "grids and evaluation curves, in one HTML file with inline images.")
    p.add_argument("store", metavar="STORE", help="LatentStore folder")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--boundaries", nargs="+", default=[], metavar="PATH",
                   help="boundary files, or folders of .npz/.npy files")
    p.add_argument("--evaluations", nargs="+", default=[], metavar="DIR",
                   help="`facelatent evaluate` output folders (or folders above them)")
    p.add_argument("--edits", nargs="+", default=[], metavar="DIR",
                   help="`facelatent edit` output folders (or folders above them)")
    p.add_argument("--title", default=None, help="page title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facelatent.evaluation.report import build_report

    path = build_report(args.store, args.out, boundaries=args.boundaries,
                        evaluations=args.evaluations, edits=args.edits, title=args.title)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
