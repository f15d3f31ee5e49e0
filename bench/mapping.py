"""The mapping's cost against the plain generator forward, in one run.

    python bench/mapping.py [--checkpoint runs/mapping/checkpoint.npz] [--repeats 5] [--json]
    python bench/mapping.py --tiny          # no model files: the tiny random generator

Times, each the median of ``--repeats`` calls after one warm-up:

- the baseline: ``G.synthesis(w)`` for one face (what any edit or sample costs);
- apply: one identity/attribute swap, E_id + E_attr + M, then the same synthesis;
- encode alone: E_id + E_attr + M for one pair (what the mapping adds);
- a ``regress`` training step at the CPU preset's batch (32 faces, no generator; a third of
  the steps are proxy-judged cross steps);
- an ``e2e`` training step at the CPU preset's batch (4 faces: render, identity, landmarks,
  reconstruction, D_W and its R1), forward and backward.

Each is printed in ms and as a ratio to the baseline. Training steps run on random renders
and codes (the same sizes as a store's), so no store is needed. Where CUDA is available the
same table is repeated on the GPU. The machine's load average is printed first: on a shared
machine compare ratios, not milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from facelatent.faces.analysis import FaceAnalyzer, get_analyzer, random_face_loaders
from facelatent.generators import get_generator
from facelatent.mapping import Mapper, MapperConfig, build
from facelatent.mapping.data import TrainingData
from facelatent.mapping.proxies import PROXY_ATTRIBUTES
from facelatent.mapping.train import preset, train_mapping


def timed(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after one warm-up."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fake_data(G: Any, n: int, size: int) -> TrainingData:
    """Random renders, w and unit codes of a store's shapes (timing only)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = G.mapping(torch.randn(n, G.z_dim, generator=gen).to(G.device)).cpu()
    images = np.random.default_rng(0).integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    codes = torch.nn.functional.normalize(torch.randn(n, 128, generator=gen), dim=1)
    source = {"generator": G.name, "truncation_psi": 1.0, "samples": n, "image_size": size,
              "holdout": 8, "seed_start": 0}
    scores = torch.randn(n, len(PROXY_ATTRIBUTES), generator=gen)
    return TrainingData(images, w, codes, np.arange(n), n - 8, source, scores)


def bench(device: torch.device, tiny: bool, checkpoint: str | None, repeats: int) -> dict[str, Any]:
    G = get_generator("mobilestylegan-tiny" if tiny else "mobilestylegan-ffhq", device)
    analyzer = (FaceAnalyzer(device, loaders=random_face_loaders()) if tiny
                else get_analyzer(device))
    if checkpoint:
        mapper = Mapper.from_checkpoint(checkpoint, device, analyzer)
        config = mapper.config
    else:
        config = MapperConfig(w_dim=G.w_dim, num_ws=G.num_ws, attr_init="random")
        net, _ = build(config)
        mapper = Mapper(net.to(device), {"name": G.name, "w_dim": G.w_dim,
                                         "num_ws": G.num_ws}, analyzer)
    with torch.no_grad():
        w = G.mapping(torch.randn(2, G.z_dim, device=device))
        faces = G.synthesis(w).clamp(-1, 1)
    a, b = faces[:1], faces[1:]
    out: dict[str, Any] = {"device": str(device), "generator": G.name,
                           "resolution": int(G.resolution)}
    with torch.no_grad():
        base = timed(lambda: G.synthesis(w[:1]), repeats, device)
        encode = timed(lambda: mapper.swap(a, b), repeats, device)
        apply = timed(lambda: G.synthesis(mapper.swap(a, b)), repeats, device)
    rows = {"generator forward (baseline)": base, "encode (E_id + E_attr + M)": encode,
            "apply (encode + generator)": apply}
    size = 64 if tiny else 256
    data = fake_data(G, 64, size)
    for stage in ("regress", "e2e"):
        # the proxy's fit (once per run, about 30 s) is not a step: fit a small one
        settings = preset("cpu", stage, device=str(device), holdout=8, proxy_steps=20)
        steps = 1 + repeats
        with tempfile.TemporaryDirectory() as tmp:
            if stage == "e2e":
                train_mapping(data, tmp, preset("cpu", "regress", steps=1, holdout=8,
                                                proxy_steps=20, device=str(device)),
                              config=config, generator=G, analyzer=analyzer)
            # one warm-up step, then ``repeats`` steps; the step time is their mean
            train_mapping(data, tmp, replace(settings, steps=1, checkpoint_every=10**6,
                                             validate_every=10**6),
                          config=config, generator=G, analyzer=analyzer)
            report = train_mapping(data, tmp, replace(settings, steps=steps,
                                                      checkpoint_every=10**6,
                                                      validate_every=10**6),
                                   config=config, generator=G, analyzer=analyzer)
            rows[f"{stage} training step, batch {settings.batch}"] = report.seconds / repeats
    out["seconds"] = rows
    out["ratio_to_generator"] = {k: v / base for k, v in rows.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a trained mapping (default: new random networks "
                                             "of the default sizes)")
    parser.add_argument("--tiny", action="store_true", help="tiny random generator and models")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
          f"torch threads {torch.get_num_threads()}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = [bench(d, args.tiny, args.checkpoint, args.repeats) for d in devices]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"\n{r['generator']} ({r['resolution']} px) on {r['device']}")
        print(f"{'':44s} {'ms':>9s} {'x generator':>12s}")
        for name, seconds in r["seconds"].items():
            print(f"{name:44s} {seconds * 1000:9.1f} {r['ratio_to_generator'][name]:12.2f}")


if __name__ == "__main__":
    main()
