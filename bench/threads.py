"""OpenMP waiting policy beside a busy neighbour: spinning (ACTIVE) against sleeping (PASSIVE).

    python bench/threads.py [--faces 4] [--repeats 2] [--neighbour-threads 2]

Why: `facelatent` sets OMP_WAIT_POLICY=PASSIVE unless the user chose a policy
(`facelatent.runtime.passive_waiting`). Idle OpenMP threads that spin keep their core busy
between parallel regions; when another process needs the cores (a second job, a Ray worker, a
test run), both crawl.

How: a neighbour process runs small convolutions (many short parallel regions, OpenMP's default
policy) on `--neighbour-threads` threads for the whole run. Beside it, one child process per policy (the policy must be set before torch is
imported) loads the generator and the face networks, warms them up on one pass, then times
`--repeats` passes over `--faces` faces: rendering, and photo-style analysis (detection, 68
landmarks, every dataset attribute, both embeddings), as `facelatent dataset build` does. It
prints the best pass of each and the ratio ACTIVE / PASSIVE (> 1: passive is faster).

    python bench/threads.py --blas STORE [--attribute age] [--space w] [--repeats 5]

`--blas`: OpenBLAS threads for the boundary solver (`facelatent.runtime.one_blas_thread`).
One child process per thread count (OPENBLAS_NUM_THREADS must be set before numpy loads, as
the CLI does) fits `LinearBoundary(solver="logistic")` on the store's latents and scores,
`--repeats` times at ratio 0.02 and on a median split (ratio None), and prints the median of
each, the ratio 2 threads / 1 thread, and the load average (run it beside the load that
matters: the figures depend on what else holds the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# Many short parallel regions, as a network on small crops has: the pattern where waiting
# threads spin most. The neighbour keeps OpenMP's default policy.
NEIGHBOUR = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
x = torch.randn(8, 32, 28, 28)
conv = torch.nn.Conv2d(32, 32, 3, padding=1)
with torch.no_grad():
    while True:
        x = conv(x).tanh()
"""

CHILD = """
import json, sys, time, torch
from facelatent.datasets.shard import DATASET_ATTRIBUTES
from facelatent.faces.analysis import working_size
from facelatent.runs import load_models
faces, repeats = int(sys.argv[1]), int(sys.argv[2])
m = load_models("mobilestylegan-ffhq")
G, A = m.generator, m.analyzer
best = {"render": float("inf"), "analyse": float("inf")}
with torch.no_grad():
    w = G.mapping(torch.randn(faces, G.z_dim, generator=torch.Generator().manual_seed(0)))
    for _ in range(repeats + 1):                       # the first pass warms up, untimed
        t0 = time.perf_counter()
        images = working_size(G.synthesis(w).clamp(-1, 1))
        t1 = time.perf_counter()
        geom = A.locate(images)
        A.score(images, DATASET_ATTRIBUTES, geometry=geom)
        for model in ("sface", "dlib"):
            A.embed(images, model, geometry=geom)
        t2 = time.perf_counter()
        if _ > 0:
            best = {"render": min(best["render"], t1 - t0), "analyse": min(best["analyse"], t2 - t1)}
print(json.dumps({**best, "threads": torch.get_num_threads()}))
"""


BLAS_CHILD = """
import json, statistics, sys, time
from threadpoolctl import threadpool_info
from facelatent.boundaries import LinearBoundary, read_fit_data
store, space, attribute, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
latents, scores, _ = read_fit_data(store=store, space=space, attribute=attribute)
result = {"threads": sorted({p["num_threads"] for p in threadpool_info()
                             if p["user_api"] == "blas"}), "n": len(latents)}
for ratio in (0.02, None):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        LinearBoundary(solver="logistic", ratio=ratio, random_state=0).fit(latents, scores)
        times.append(time.perf_counter() - t0)
    result[str(ratio)] = statistics.median(times)
print(json.dumps(result))
"""


def blas(args: argparse.Namespace) -> int:
    load = os.getloadavg()
    results = {}
    for threads in (1, 2):
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS")}
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        out = subprocess.run([sys.executable, "-c", BLAS_CHILD, args.blas, args.space,
                              args.attribute, str(args.repeats)],
                             env=env, capture_output=True, text=True, check=True)
        results[threads] = json.loads(out.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps({"load": load, "results": results}, indent=2))
        return 0
    n = results[1]["n"]
    print(f"LinearBoundary(solver='logistic') on {n} samples of {args.blas} ({args.space}, "
          f"{args.attribute}), median of {args.repeats}; {os.cpu_count()} CPUs, load average "
          f"before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"  {'ratio':<6} {'1 thread s':>11} {'2 threads s':>12} {'2 / 1':>7}")
    for ratio in ("0.02", "None"):
        one, two = results[1][ratio], results[2][ratio]
        print(f"  {ratio:<6} {one:>11.3f} {two:>12.3f} {two / one:>6.1f}x")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faces", type=int, default=4, help="faces per pass")
    p.add_argument("--repeats", type=int, default=2, help="timed passes (best is kept)")
    p.add_argument("--neighbour-threads", type=int, default=2, help="threads of the busy process")
    p.add_argument("--json", action="store_true")
    p.add_argument("--blas", metavar="STORE", default=None,
                   help="time the boundary solver on 1 and 2 OpenBLAS threads on this store")
    p.add_argument("--attribute", default="age", help="with --blas: the scores to fit")
    p.add_argument("--space", default="w", help="with --blas: the latents to fit")
    args = p.parse_args(argv)
    if args.blas is not None:
        return blas(args)

    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(args.neighbour_threads)])
    results = {}
    try:
        time.sleep(2)
        for policy in ("ACTIVE", "PASSIVE"):
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            env["OMP_WAIT_POLICY"] = policy
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.faces), str(args.repeats)],
                                 env=env, capture_output=True, text=True, check=True)
            results[policy] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        neighbour.kill()
        neighbour.wait()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.faces} faces per pass, best of {args.repeats}, beside a busy process on "
          f"{args.neighbour_threads} threads; {os.cpu_count()} CPUs")
    print(f"  {'policy':<8} {'threads':>7} {'render s':>9} {'analyse s':>10}")
    for policy, r in results.items():
        print(f"  {policy:<8} {r['threads']:>7} {r['render']:>9.2f} {r['analyse']:>10.2f}")
    a, b = results["ACTIVE"], results["PASSIVE"]
    print(f"  ratio ACTIVE / PASSIVE: render {a['render'] / b['render']:.1f}x, "
          f"analyse {a['analyse'] / b['analyse']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
