"""Identity boundaries (ExFaceGAN) against ExFaceGAN's own pipeline, in one run.

    python bench/identity.py [--store runs/ffhq] [--references 5000] [--svc-references 50]
                             [--model sface] [--space w] [--rule median] [--solvers lda]
                             [--shrinkage S] [--seed 0] [--threads N] [--json]

Sections (each a function of `SECTIONS`, taking the parsed arguments and a shared `Context`,
returning a table; a new section is one more function and one more entry):

1. storage: the scratch ExFaceGAN writes before fitting, COMPUTED, not written: per reference
   its `.npy` of the other N - 1 latents (float32 [N - 1, D]) and of their labels (int64
   [N - 1, 1]), plus one float32 (1, D) `.npy` boundary each; 128 bytes of `.npy` header per
   file. Against: the size of our one `.npz` holding the same references' boundaries, measured
   by saving them to a temporary folder. Ratio = theirs / ours.
2. fitting: our solver(s) for all `--references` references at once (wall time, from the
   latents and embeddings in memory: labels, split, fit and metrics), against ExFaceGAN's
   solver, one `LinearSVC(dual=False)` per reference on latents min-max scaled to [-1, 1]
   (`solver="linear-svc"`), on the first `--svc-references` of the same references, timed and
   extrapolated per boundary (the fits are independent, so the time is linear in the count).
   Both use the same labels and the same train/validation split; the validation accuracies
   are compared on those same references. Ratio = svc time per boundary / ours.
3. throughput: dataset images per second (render, detect, align, score, embed, write) with the
   local engine against a local Ray of `--ray-workers` workers, same identities and settings;
   also checks that both write the same metadata table.

BLAS uses its default threads (`--threads` to change); liblinear's LinearSVC is
single-threaded, as each of ExFaceGAN's worker processes is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from facelatent.boundaries import IdentityBoundaries, fit_identity_boundaries
from facelatent.io import jsonable
from facelatent.latents.store import LatentStore

NPY_HEADER = 128   # bytes of a version-1 .npy header for these small shapes


@dataclass
class Context:
    """What the sections share: the store's arrays, loaded once, and boundaries fitted once."""

    seeds: np.ndarray
    latents: np.ndarray
    embeddings: np.ndarray
    load_s: float
    fitted: dict[str, tuple[IdentityBoundaries, float]] = field(default_factory=dict)

    def data(self) -> dict[str, np.ndarray]:
        return {"seeds": self.seeds, "latents": self.latents, "embeddings": self.embeddings}

    def fit(self, args: argparse.Namespace, solver: str, references: int | list[int]
            ) -> tuple[IdentityBoundaries, float]:
        """Boundaries and wall seconds for `solver` (all references fitted once per solver)."""
        key = f"{solver}:{references if isinstance(references, int) else len(references)}"
        if key not in self.fitted:
            start = time.perf_counter()
            b = fit_identity_boundaries(self.data(), references=references, model=args.model,
                                        space=args.space, rule=args.rule, solver=solver,
                                        seed=args.seed, shrinkage=args.shrinkage)
            self.fitted[key] = (b, time.perf_counter() - start)
        return self.fitted[key]


def storage(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    n, dim = ctx.latents.shape
    r = args.references
    per_ref = (NPY_HEADER + (n - 1) * dim * 4) + (NPY_HEADER + (n - 1) * 8)
    theirs_scratch = r * per_ref
    theirs_boundaries = r * (NPY_HEADER + dim * 4)
    ours, _ = ctx.fit(args, args.solvers[0], r)
    with tempfile.TemporaryDirectory() as tmp:
        ours_bytes = ours.save(Path(tmp) / "identity.npz").stat().st_size
    theirs = theirs_scratch + theirs_boundaries
    rows = [
        {"what": "ExFaceGAN scratch (latents + labels)", "files": 2 * r, "bytes": theirs_scratch},
        {"what": "ExFaceGAN boundaries (.npy each)", "files": r, "bytes": theirs_boundaries},
        {"what": "ExFaceGAN total", "files": 3 * r, "bytes": theirs},
        {"what": "ours (.npz: normals, latents, metrics)", "files": 1, "bytes": ours_bytes,
         "ratio": theirs / ours_bytes},
    ]
    return {"title": f"1. storage for {r} references, N = {n} candidates, D = {dim}",
            "columns": [("what", "<40", "s"), ("files", ">8", "d"), ("bytes", ">16", ",d"),
                        ("MB", ">10", ".1f"), ("ratio", ">10", ".0f")],
            "rows": [{**row, "MB": row["bytes"] / 1e6} for row in rows],
            "notes": ["ExFaceGAN's sizes are computed, not written; ratio = theirs / ours"]}


def fitting(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    ours = {solver: ctx.fit(args, solver, args.references) for solver in args.solvers}
    first = next(iter(ours.values()))[0]
    subset = [int(s) for s in first.seeds[: args.svc_references]]
    svc, svc_wall = ctx.fit(args, "linear-svc", subset)
    base_ms = 1e3 * svc_wall / len(svc)
    base_val = float(svc.metrics["val_accuracy"].mean())
    base = {"solver": "linear-svc (ExFaceGAN, subset)", "refs": len(svc), "wall_s": svc_wall,
            "per_boundary_ms": base_ms, "val_all": float("nan"), "val_subset": base_val,
            "train_subset": float(svc.metrics["train_accuracy"].mean()),
            "extrapolated_s": base_ms * args.references / 1e3}
    rows = []
    for solver, (b, wall) in ours.items():
        same = b.select(subset)
        per_ms = 1e3 * wall / len(b)
        rows.append({"solver": f"{solver} (ours, all)", "refs": len(b), "wall_s": wall,
                     "per_boundary_ms": per_ms, "val_all": float(b.metrics["val_accuracy"].mean()),
                     "val_subset": float(same.metrics["val_accuracy"].mean()),
                     "train_subset": float(same.metrics["train_accuracy"].mean()),
                     "speedup": base_ms / per_ms,
                     "d_val": float(same.metrics["val_accuracy"].mean()) - base_val,
                     "cos_vs_svc": float(np.median(np.sum(same.normals * svc.normals, axis=1)))})
    notes = [f"linear-svc timed on {len(svc)} references and extrapolated: "
             f"{base['extrapolated_s']:.0f} s ({base['extrapolated_s'] / 3600:.2f} h) for "
             f"{args.references}",
             "val subset / train subset: mean accuracy on the svc's references, same labels and "
             "split; d val = ours - svc; cos = median cosine between our and svc's normals",
             f"store loaded in {ctx.load_s:.1f} s (not counted)"]
    return {"title": f"2. fitting {args.references} boundaries ({args.space}, {args.model}, "
                     f"{args.rule} labels)",
            "columns": [("solver", "<32", "s"), ("refs", ">6", "d"), ("wall_s", ">9", ".2f"),
                        ("per_boundary_ms", ">10", ".2f"), ("val_all", ">8", ".4f"),
                        ("val_subset", ">8", ".4f"), ("train_subset", ">8", ".4f"),
                        ("speedup", ">10", ".0f"), ("d_val", ">8", "+.4f"),
                        ("cos_vs_svc", ">7", ".3f")],
            "headers": {"per_boundary_ms": "ms/bnd", "val_all": "val all", "val_subset": "val sub",
                        "train_subset": "trn sub", "speedup": "speed-up", "d_val": "d val",
                        "cos_vs_svc": "cos"},
            "rows": [*rows, base], "notes": notes}


def throughput(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """Dataset images per second: the local engine (one process, all threads) against a local
    Ray with `--ray-workers` workers (threads split between them), on the same identities, the
    same settings and the real networks. Ray's start-up is timed apart from the build."""
    import torch

    from facelatent.datasets.writer import (
        DatasetJob,
        DatasetSettings,
        build_dataset,
        build_shard,
        plan_classes,
    )
    from facelatent.runs import LocalEngine
    from facelatent.runs.ray import RayEngine

    ids, _ = ctx.fit(args, args.solvers[0], max(args.throughput_identities, 1))
    ids = ids.select(np.sort(ids.seeds)[: args.throughput_identities])
    ids.provenance = {**(ids.provenance or {}), "generator": args.generator}
    settings = DatasetSettings(per_identity=args.per_identity, max_off=5.0, classes_per_shard=1,
                               batch=args.per_identity)
    rows, built = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up: load the networks in this process so the local run times only the work.
        warm = ids.select(ids.seeds[:1])
        build_dataset(Path(tmp) / "warm", warm, DatasetSettings(per_identity=1, max_off=5.0),
                      engine=LocalEngine())
        for name in ("local", "ray"):
            start = time.perf_counter()
            if name == "local":
                engine: Any = LocalEngine()
                ready = 0.0
            else:
                engine = RayEngine(workers=args.ray_workers)
                # One one-image shard per worker: Ray, the workers and their networks are up
                # before the timed build, as they are in this process for the local run.
                warm_jobs = [DatasetJob(i, tuple(plan_classes(warm, False)),
                                        DatasetSettings(per_identity=1, max_off=5.0),
                                        args.generator, warm.space)
                             for i in range(args.ray_workers)]
                list(engine.map(build_shard, warm_jobs))
                ready = time.perf_counter() - start
            report = build_dataset(Path(tmp) / name, ids, settings, engine=engine)
            engine.close()
            built[name] = Path(tmp) / name
            rows.append({"engine": name, "workers": 1 if name == "local" else args.ray_workers,
                         "threads": torch.get_num_threads() if name == "local"
                         else getattr(engine, "threads_per_worker", None),
                         "images": report.samples_written, "start_s": ready,
                         "wall_s": report.seconds, "images_per_s": report.images_per_s})
        same = _same_tables(built["local"], built["ray"])
    rows[1]["ratio"] = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    return {"title": f"3. dataset images/s on this machine ({args.throughput_identities} "
                     f"identities x {args.per_identity} images, real networks)",
            "columns": [("engine", "<8", "s"), ("workers", ">8", "d"), ("threads", ">8", "d"),
                        ("images", ">8", "d"), ("start_s", ">9", ".1f"), ("wall_s", ">9", ".1f"),
                        ("images_per_s", ">8", ".2f"), ("ratio", ">8", ".2f")],
            "headers": {"start_s": "start s", "wall_s": "build s", "images_per_s": "img/s"},
            "rows": rows,
            "notes": ["ratio = Ray img/s / local img/s (the local engine also has all cores); "
                      "start s = Ray, its workers and their networks starting (not in build s)",
                      f"metadata tables of the two builds identical: {same}"]}


def _same_tables(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    return pq.read_table(a / "metadata.parquet").equals(pq.read_table(b / "metadata.parquet"))


SECTIONS: dict[str, Callable[[argparse.Namespace, Context], dict[str, Any]]] = {
    "storage": storage,
    "fitting": fitting,
    "throughput": throughput,
}


def print_table(table: dict[str, Any]) -> None:
    print(f"\n{table['title']}")
    heads = table.get("headers", {})
    cols = table["columns"]
    print("  " + "".join(f"{heads.get(name, name.replace('_', ' ')):{align}}"
                         for name, align, _ in cols))
    for row in table["rows"]:
        cells = []
        for name, align, fmt in cols:
            value = row.get(name)
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                cells.append(f"{'-':{align}}")
            else:
                text = format(value, fmt) + ("x" if name in ("ratio", "speedup") else "")
                cells.append(f"{text:{align}}")
        print("  " + "".join(cells))
    for note in table.get("notes", []):
        print(f"  note: {note}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", default="runs/ffhq", help="LatentStore folder (read only)")
    p.add_argument("--references", type=int, default=5000, help="boundaries to fit")
    p.add_argument("--svc-references", type=int, default=50,
                   help="references ExFaceGAN's LinearSVC is timed on (then extrapolated)")
    p.add_argument("--model", choices=("sface", "dlib"), default="sface", help="identity model")
    p.add_argument("--space", choices=("w", "z"), default="w", help="latent space")
    p.add_argument("--rule", choices=("median", "quantile"), default="median", help="labels")
    p.add_argument("--solvers", default="lda", help="our solvers, comma-separated (lda,logistic)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="sections to run, in order")
    p.add_argument("--shrinkage", type=float, default=None,
                   help="covariance shrinkage for lda/logistic (default: Ledoit-Wolf)")
    p.add_argument("--seed", type=int, default=0, help="seeds the reference pick and splits")
    p.add_argument("--threads", type=int, default=0, help="BLAS threads (0 = library default)")
    p.add_argument("--throughput-identities", type=int, default=8,
                   help="throughput section: identities to build (one shard each)")
    p.add_argument("--per-identity", type=int, default=4, help="throughput section: images each")
    p.add_argument("--ray-workers", type=int, default=2, help="throughput section: Ray workers")
    p.add_argument("--generator", default="mobilestylegan-ffhq", help="throughput section")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = p.parse_args(argv)
    args.solvers = [s for s in args.solvers.split(",") if s]
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown sections {unknown}; known: {list(SECTIONS)}")

    start = time.perf_counter()
    store = LatentStore.open(args.store, read_only=True)
    ctx = Context(store.seeds(), store.latents(args.space), store.identity(args.model),
                  load_s=time.perf_counter() - start)
    with threadpool_limits(limits=args.threads or None, user_api="blas"):
        tables = [SECTIONS[name](args, ctx) for name in sections]
    header = (f"store {args.store}: {len(ctx.seeds)} samples, {args.space} "
              f"{ctx.latents.shape[1]}-d, {args.model} embeddings; {os.cpu_count()} CPUs, BLAS "
              f"threads {args.threads or 'default'}; total {time.perf_counter() - start:.1f} s")
    if args.json:
        layout = ("columns", "headers")
        print(json.dumps(jsonable({"header": header, "sections": [
            {k: v for k, v in t.items() if k not in layout} for t in tables]}), indent=2))
    else:
        print(header)
        for table in tables:
            print_table(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
