"""Boundary solvers against InterFaceGAN's `svc`: fit time and validation accuracy, in one run.

    python bench/boundaries.py [--n 20000] [--dim 512] [--noise 1.0] [--seeds 3] [--svc-cap 3000]
                               [--repeats 3] [--generator mobilestylegan-ffhq]
                               [--store DIR --attribute smile [--space w]] [--threads 1] [--json]
    python bench/boundaries.py --throughput 64 [--batch 8]    # sampling: samples per second

Data. By default, synthetic data shaped like the real problem: N latents of D dimensions
(Gaussian, each dimension with its own scale and offset, like W), and scores = a linear
projection (a random unit direction, scaled to unit variance) plus Gaussian noise of standard
deviation `--noise`. At the default 1.0 the best possible accuracy on median-split labels is
0.5 + arcsin(1/sqrt 2) / pi = 0.75, in the range InterFaceGAN reports for remaining samples.
`--generator NAME` draws the latents as w = mapping(z) from a generator (model files must
be fetched) instead, so the covariance is W's; `--store DIR` fits a real store's scores.

Labels. InterFaceGAN's top/bottom 2% (`ratio=0.02`) and a median split of all samples
(`ratio=0.5`), each with a 70/30 train/validation split. The median split of 20,000 trains on
14,000 samples, as many as InterFaceGAN's own protocol (2% of 500,000 per class) does.

Seeds. Every figure is a mean over `--seeds` data sets (a new direction, noise and split per
seed; for a store, a new split), since 240 validation samples per 2% split give an accuracy
with a standard error of about 0.013; the sd column is the spread over seeds.

Timing. `train_time_` of one fit (the solver only, no bootstrap), the minimum of `--repeats`
runs. `svc` (libsvm, O(n^2)) runs once; on median-split labels it runs on a random subsample
of `--svc-cap` samples, because on 14,000 noisy samples it takes many minutes (about 40 s on
4,000 here), and the table then also times the default solver on the same subsample, so each
ratio compares equal data.
Ratios: speed-up = svc time / solver time; delta acc = solver val accuracy - svc val accuracy.
BLAS runs on `--threads` threads (default 1, as libsvm's `svc` does): on a small shared
machine, multi-threaded BLAS on these small matrices was up to 7x slower and erratic
(`--threads 0` keeps the library default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from facelatent.boundaries.linear import SOLVERS, LinearBoundary
from facelatent.io import jsonable

DEFAULT_SOLVER = LinearBoundary().solver
SUBSAMPLE = f"{DEFAULT_SOLVER} (svc's subsample)"
LABELS = (("top/bottom 2%", 0.02), ("median split", 0.5))


def synthetic(n: int, dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents `[n, dim]` float32, scores `[n]` and the true unit normal `[dim]`."""
    rng = np.random.default_rng(seed)
    scale = np.exp(0.3 * rng.standard_normal(dim))   # per-dimension spread, like W's
    offset = 0.5 * rng.standard_normal(dim)          # W is not centred
    x = (rng.standard_normal((n, dim)) * scale + offset).astype(np.float32)
    normal = rng.standard_normal(dim)
    normal /= np.linalg.norm(normal)
    return x, _scores(x, normal, noise, rng), normal


def from_generator(name: str, n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """w = mapping(z) of a generator, with synthetic linear scores as in `synthetic`."""
    import torch

    from facelatent.generators import get_generator

    G = get_generator(name, device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = torch.cat([G.mapping(torch.randn(min(5000, n - i), G.z_dim, generator=gen))
                       for i in range(0, n, 5000)]).numpy().astype(np.float32)
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal(x.shape[1])
    normal /= np.linalg.norm(normal)
    return x, _scores(x, normal, noise, rng), normal


def _scores(x: np.ndarray, normal: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    proj = (x - x.mean(axis=0)) @ normal
    return proj / proj.std() + noise * rng.standard_normal(len(x))


def from_store(path: str, attribute: str, space: str) -> tuple[np.ndarray, np.ndarray, None]:
    from facelatent.latents.store import LatentStore

    store = LatentStore.open(path)
    return store.latents(space), store.scores(attribute), None


def fit(solver: str, ratio: float, x: np.ndarray, s: np.ndarray, repeats: int, seed: int,
        normal: np.ndarray | None) -> dict[str, Any]:
    """One solver on one data set: min time of `repeats` fits, the fit's accuracies."""
    times = []
    for _ in range(repeats):
        est = LinearBoundary(solver=solver, ratio=ratio, bootstrap=0, random_state=seed).fit(x, s)
        times.append(est.train_time_)
    row = {"solver": solver, "n_samples": len(x), "n_train": est.n_train_, "time_s": min(times),
           "val_accuracy": est.val_accuracy_, "remaining_accuracy": est.remaining_accuracy_}
    row["cos_true"] = float(est.normal_ @ normal) if normal is not None else float("nan")
    return row


def run_once(x: np.ndarray, s: np.ndarray, normal: np.ndarray | None, svc_cap: int,
             repeats: int, seed: int) -> dict[tuple[str, str], dict[str, Any]]:
    """Every solver on both label sets of one data set, keyed by (labels, solver)."""
    rows = {}
    for label, ratio in LABELS:
        for solver in SOLVERS[:-1]:
            rows[label, solver] = fit(solver, ratio, x, s, repeats, seed, normal)
        n_train_svc = 2 * int(round(0.7 * (len(x) // 2 if ratio >= 0.5 else int(len(x) * ratio))))
        if n_train_svc > 0.7 * svc_cap:
            idx = np.random.default_rng(seed).choice(len(x), svc_cap, replace=False)
            rows[label, SUBSAMPLE] = fit(DEFAULT_SOLVER, ratio, x[idx], s[idx], repeats, seed, normal)
            rows[label, "svc"] = fit("svc", ratio, x[idx], s[idx], 1, seed, normal)
        else:
            rows[label, "svc"] = fit("svc", ratio, x, s, 1, seed, normal)
    return rows


def summarise(runs: list[dict[tuple[str, str], dict[str, Any]]], svc_cap: int) -> list[dict[str, Any]]:
    """Means over seeds per (labels, solver), with ratios against svc's means."""
    blocks = []
    for label, ratio in LABELS:
        solvers = [k[1] for k in runs[0] if k[0] == label]
        base_time = np.mean([r[label, "svc"]["time_s"] for r in runs])
        base_val = np.mean([r[label, "svc"]["val_accuracy"] for r in runs])
        rows = []
        for solver in solvers:
            per_seed = [r[label, solver] for r in runs]
            row = {"solver": solver, "n_samples": per_seed[0]["n_samples"], "n_train": per_seed[0]["n_train"]}
            for key in ("time_s", "val_accuracy", "remaining_accuracy", "cos_true"):
                row[key] = float(np.mean([p[key] for p in per_seed]))
            row["val_accuracy_sd"] = float(np.std([p["val_accuracy"] for p in per_seed]))
            row["speedup_vs_svc"] = float(base_time / row["time_s"])
            row["delta_val_vs_svc"] = float(row["val_accuracy"] - base_val)
            rows.append(row)
        capped = any(k == (label, SUBSAMPLE) for k in runs[0])
        note = f"svc capped at a random {svc_cap} samples" if capped else ""
        blocks.append({"labels": label, "ratio": ratio, "note": note, "rows": rows})
    return blocks


def print_table(results: list[dict[str, Any]], header: str) -> None:
    print(header)
    for block in results:
        print(f"\n{block['labels']} (ratio {block['ratio']})" + (f"; {block['note']}" if block["note"] else ""))
        print(f"  {'solver':<26}{'N':>7}{'train':>7}{'time s':>9}{'val acc':>9}{'(sd)':>8}"
              f"{'rem acc':>9}{'cos true':>9}{'speed-up':>10}{'d val':>8}")
        for r in block["rows"]:
            cos = f"{'-':>9}" if math.isnan(r["cos_true"]) else f"{r['cos_true']:9.3f}"
            rem = "-" if math.isnan(r["remaining_accuracy"]) else f"{r['remaining_accuracy']:.4f}"
            print(f"  {r['solver']:<26}{r['n_samples']:>7}{r['n_train']:>7}{r['time_s']:>9.4f}"
                  f"{r['val_accuracy']:>9.4f}{r['val_accuracy_sd']:>8.4f}{rem:>9}{cos}"
                  f"{r['speedup_vs_svc']:>9.1f}x{r['delta_val_vs_svc']:>+8.4f}")


def sampling_throughput(n: int, batch: int, generator: str) -> list[dict[str, Any]]:
    """Samples per second of the store's work (`run_shard`: render, score every store attribute,
    embed with both recognisers) against rendering alone, same seeds, same process, networks
    loaded and warmed first."""
    import torch

    from facelatent.faces.analysis import STORE_ATTRIBUTES
    from facelatent.latents.fill import SampleSettings, ShardJob, load_models, run_shard
    from facelatent.latents.sampling import latents_for_seeds

    settings = SampleSettings(generator, attributes=STORE_ATTRIBUTES, identity=("sface", "dlib"),
                              batch=batch)
    models = load_models(settings)
    run_shard(ShardJob(0, tuple(range(10**6, 10**6 + batch)), settings), models)   # warm-up
    seeds = tuple(range(n))
    G = models.generator
    start = time.perf_counter()
    with torch.no_grad():
        _, w = latents_for_seeds(G, list(seeds), 1.0, "w")
        for i in range(0, n, batch):
            G.synthesis(w[i:i + batch])
    render = time.perf_counter() - start
    start = time.perf_counter()
    result = run_shard(ShardJob(0, seeds, settings), models)
    full = time.perf_counter() - start
    stages = ", ".join(f"{k} {v / n * 1e3:.0f}" for k, v in result.seconds.items())
    return [{"work": "render only (baseline)", "n": n, "seconds": render, "samples_per_s": n / render},
            {"work": f"store shard: render + {len(STORE_ATTRIBUTES)} scores + 2 embeddings",
             "n": n, "seconds": full, "samples_per_s": n / full, "ratio": render / full,
             "stages_ms": stages}]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20000, help="synthetic samples")
    p.add_argument("--dim", type=int, default=512, help="synthetic latent size")
    p.add_argument("--noise", type=float, default=1.0, help="score noise std (signal std = 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=3, help="data sets (seeds) to average over")
    p.add_argument("--svc-cap", type=int, default=3000, help="most samples svc is given")
    p.add_argument("--repeats", type=int, default=3, help="timed fits per fast solver (min)")
    p.add_argument("--generator", help="draw latents as w = mapping(z) of this generator")
    p.add_argument("--store", help="a LatentStore folder: fit its real scores instead")
    p.add_argument("--attribute", default="smile", help="score name in the store")
    p.add_argument("--space", choices=("w", "z"), default="w", help="latent space in the store")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (0 = library default)")
    p.add_argument("--throughput", type=int, default=0, metavar="N",
                   help="also time the store's sampling on N samples of --sample-generator "
                        "(0 = skip)")
    p.add_argument("--sample-generator", default="mobilestylegan-ffhq",
                   help="generator for --throughput")
    p.add_argument("--batch", type=int, default=8, help="images per pass for --throughput")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = p.parse_args(argv)
    if args.throughput:
        rows = sampling_throughput(args.throughput, args.batch, args.sample_generator)
        if args.json:
            print(json.dumps(jsonable({"throughput": rows}), indent=2))
        else:
            print(f"sampling throughput, {args.sample_generator}, batch {args.batch}, "
                  f"{os.cpu_count()} CPUs")
            for r in rows:
                extra = (f"  {r['ratio']:.2f}x of render-only speed; ms/sample {r['stages_ms']}"
                         if "ratio" in r else "")
                print(f"  {r['work']:<52} {r['n']:>5} in {r['seconds']:7.1f} s = "
                      f"{r['samples_per_s']:5.2f} samples/s{extra}")
        return 0

    runs = []
    start = time.perf_counter()
    with threadpool_limits(limits=args.threads or None, user_api="blas"):
        for seed in range(args.seed, args.seed + args.seeds):
            if args.store:
                x, s, normal = from_store(args.store, args.attribute, args.space)
                what = f"store {args.store}: {args.attribute} in {args.space}"
            elif args.generator:
                x, s, normal = from_generator(args.generator, args.n, args.noise, seed)
                what = f"w = mapping(z) of {args.generator}, noise {args.noise}"
            else:
                x, s, normal = synthetic(args.n, args.dim, args.noise, seed)
                what = f"synthetic Gaussian latents, noise {args.noise}"
            runs.append(run_once(x, s, normal, args.svc_cap, args.repeats, seed))
    results = summarise(runs, args.svc_cap)
    header = (f"{what}, {x.shape[0]} x {x.shape[1]}; means over {args.seeds} seeds (new data and "
              f"split each); default solver {DEFAULT_SOLVER!r}; {os.cpu_count()} CPUs, BLAS threads "
              f"{args.threads or 'default'}; time = min of {args.repeats} fits (svc: 1)")
    if args.json:
        print(json.dumps(jsonable({"header": header, "results": results}), indent=2))
    else:
        print_table(results, header)
        print(f"\ntotal {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
