"""`facelatent sample`: seeds -> latents -> scored faces, into a resumable LatentStore."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from facelatent.cli.constants import IDENTITY_MODELS, STORE_ATTRIBUTES

if TYPE_CHECKING:
    from tqdm import tqdm

    from facelatent.runs import Engine


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sample", help="sample, score and embed faces into a latent store",
        description="Write seeds, z, w, attribute scores and identity embeddings of n samples to "
                    "a zarr store, shard by shard. The same command resumes a killed run; a "
                    "larger --n extends the store.")
    p.add_argument("--model", default="mobilestylegan-ffhq", help="generator name")
    p.add_argument("--n", type=int, required=True, help="number of samples the store holds")
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation psi (1 = none)")
    p.add_argument("--space", choices=("z", "w"), default="w", help="where truncation acts")
    p.add_argument("--backend", choices=("torch", "openvino"), default="torch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--batch", type=int, default=16, help="images per forward pass")
    p.add_argument("--shard-size", type=int, default=None,
                   help="samples per shard of a new store (default 256; fixed at creation)")
    p.add_argument("--seed-start", type=int, default=0, help="seed of the first sample")
    p.add_argument("--attributes", default=",".join(STORE_ATTRIBUTES),
                   help="attribute names or groups, comma-separated; 'none' or '' to skip "
                        "scoring (default: every attribute, log-odds included)")
    p.add_argument("--identity", default=",".join(IDENTITY_MODELS),
                   help="identity embedders, comma-separated, or 'none' (default: %(default)s)")
    p.add_argument("--images", type=int, default=0, metavar="SIZE",
                   help="also keep every render, area-downsampled to SIZE px (uint8), e.g. 256 "
                        "for training the mapping's image encoder (default: keep none)")
    add_engine_arguments(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """--engine, --address and --workers (read back by `engine_from_args`)."""
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: shards one after another in this process; ray: shards on Ray "
                        "workers (pip install 'facelatent[ray]')")
    p.add_argument("--address", default=None,
                   help="with --engine ray: a running Ray cluster ('auto', host:port or "
                        "ray://host:port); default: start a local Ray")
    p.add_argument("--workers", type=int, default=None,
                   help="with --engine ray: worker processes (default: one per CPU)")


def _names(value: str) -> tuple[str, ...]:
    if value.strip().lower() == "none":
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


class ProgressBar:
    """tqdm over samples, opened once the work says how many are done already; a context
    manager that closes it."""

    def __init__(self, desc: str = "sample", unit: str = "img") -> None:
        self.desc, self.unit = desc, unit
        self.bar: tqdm | None = None  # type: ignore[type-arg]

    def start(self, total: int, done: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, unit=self.unit, desc=self.desc, file=sys.stderr,
                        dynamic_ncols=True)

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def engine_from_args(args: argparse.Namespace) -> Engine:
    from facelatent.runs import LocalEngine

    if args.engine == "local":
        if args.address is not None or args.workers is not None:
            raise ValueError("--address and --workers are options of the Ray engine; add "
                             "--engine ray, or drop them")
        return LocalEngine()
    from facelatent.runs.ray import RayEngine

    return RayEngine(address=args.address, workers=args.workers)


def run(args: argparse.Namespace) -> int:
    from facelatent.latents.fill import SampleSettings, sample_to_store

    if str(args.store).startswith("memory://"):
        raise ValueError(f"--store {args.store}: a memory:// store lives only as long as this "
                         "command and would be lost when it ends; give a folder or a "
                         "persistent URL (e.g. s3://bucket/run)")
    settings = SampleSettings(args.model, backend=args.backend, device=args.device,
                              truncation_psi=args.psi, truncation_space=args.space,
                              attributes=_names(args.attributes), identity=_names(args.identity),
                              batch=args.batch, image_size=args.images)
    with engine_from_args(args) as engine, ProgressBar() as bar:
        report = sample_to_store(args.store, args.n, settings, seed_start=args.seed_start,
                                 shard_size=args.shard_size, engine=engine, progress=bar)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif report.action == "complete":
        print(f"{report.path}: all {report.samples} samples are there already; nothing to do")
    else:
        if report.repaired:
            print(f"{report.path}: {report.repaired} damaged shards were found and rewritten")
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in report.stage_seconds.items() if v)
        print(f"{report.path} ({report.action}): {report.samples} samples; wrote "
              f"{report.shards_written} shards, {report.samples_written} samples in "
              f"{report.seconds:.1f} s ({report.samples_per_s:.2f} samples/s; {stages})")
    return 0
