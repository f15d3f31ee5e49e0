"""Start-up time of the `facelatent` command against `python -c pass`, in one run.

    python bench/cli.py [--repeats 7] [--top 8] [--json]

Why: every command pays its start-up before it does anything, and `--help` is nothing but
start-up. The CLI imports only the chosen command's module, and each module imports the
library (torch, scikit-learn, zarr) inside the function that runs the command, so `--help`
should cost little more than the interpreter itself (issue 14: under 0.5 s).

How: each command line runs `--repeats` times in a fresh process, interleaved with the baseline
`python -c pass` so that both see the same load; the table gives the median and the fastest
wall time and the ratio of the medians to the baseline's. Then `python -X importtime` of
`facelatent --help` and `facelatent boundary fit --help` lists the heaviest top-level imports
(cumulative, one process each: noisy, an indication of where the time goes, not a figure to
quote). The load average is printed before and after: on a busy machine every row is slower,
the ratios less so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HELP_COMMANDS = (
    ("--help",),
    ("sample", "--help"),
    ("generate", "--help"),
    ("boundary", "fit", "--help"),
    ("evaluate", "--help"),
    ("mapping", "train", "--help"),
    ("dataset", "build", "--help"),
)
IMPORT_COMMANDS = (("--help",), ("boundary", "fit", "--help"))
TARGET_S = 0.5


def facelatent_command() -> list[str]:
    """The console script beside this interpreter, as a user runs it; else `-m facelatent.cli`."""
    script = Path(sys.executable).parent / "facelatent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "facelatent.cli"]


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def heaviest_imports(cmd: list[str], top: int) -> list[tuple[str, float]]:
    """The `top` top-level imports of `cmd` with the largest cumulative time, in seconds."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    err = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, check=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name.startswith("  "):          # nested imports are indented by two more
            rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7, help="runs of each command line")
    p.add_argument("--top", type=int, default=8, help="imports listed per command")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    load_before = os.getloadavg()
    baseline = [sys.executable, "-c", "pass"]
    base = facelatent_command()
    lines = {"python -c pass": baseline,
             **{"facelatent " + " ".join(a): base + list(a) for a in HELP_COMMANDS}}
    times: dict[str, list[float]] = {name: [] for name in lines}
    for name, cmd in lines.items():           # warm the file cache; untimed
        wall(cmd)
    for _ in range(args.repeats):
        for name, cmd in lines.items():
            times[name].append(wall(cmd))
            if name != "python -c pass":      # the baseline beside every measurement
                times["python -c pass"].append(wall(baseline))
    imports = {"facelatent " + " ".join(a): heaviest_imports(base + list(a), args.top)
               for a in IMPORT_COMMANDS}
    load_after = os.getloadavg()

    base_median = statistics.median(times["python -c pass"])
    rows = [{"command": name, "median_s": statistics.median(t), "min_s": min(t),
             "ratio": statistics.median(t) / base_median} for name, t in times.items()]
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "load_before": load_before,
                          "load_after": load_after, "repeats": args.repeats, "rows": rows,
                          "imports": imports}, indent=2))
        return 0
    print(f"{os.cpu_count()} CPUs; load average before {' '.join(f'{v:.2f}' for v in load_before)}"
          f", after {' '.join(f'{v:.2f}' for v in load_after)}; {args.repeats} runs each")
    width = max(len(r["command"]) for r in rows)
    print(f"  {'command':<{width}} {'median s':>9} {'min s':>7} {'x pass':>7}  under {TARGET_S} s")
    for r in rows:
        ok = "yes" if r["median_s"] < TARGET_S else "NO"
        print(f"  {r['command']:<{width}} {r['median_s']:>9.3f} {r['min_s']:>7.3f} "
              f"{r['ratio']:>6.1f}x  {ok}")
    for name, rows_ in imports.items():
        print(f"heaviest top-level imports of `{name}` (cumulative s, one run):")
        for module, seconds in rows_:
            print(f"  {module:<40} {seconds:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
