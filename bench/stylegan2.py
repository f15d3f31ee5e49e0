"""Seconds per StyleGAN2 image on the CPU: facelatent's port against NVIDIA's code, in one run.

    python bench/stylegan2.py --official DIR [--resolution 256] [--batch 4] [--repeats 5]
                              [--threads 1] [--pkl FILE] [--json]

DIR is a checkout of NVlabs/stylegan2-ada-pytorch (e.g. `git archive` of the fetched
repository into a folder outside this one); its `training.networks` is imported from there at
run time, and on the CPU it runs its reference (pure PyTorch) ops. Without ``--official`` the
benchmark says so and exits.

The two generators hold the same weights: the official one is built with its own random
initialisation from the configuration (``--resolution``, ``--channel-base``, ...), or both
read ``--pkl`` (an official-format pickle, e.g. tests/fixtures/stylegan2ada/*.pkl), and ours
is loaded from the official state_dict. Timed: z -> image (mapping with psi 0.7, then
synthesis with constant noise, float32), one warm-up call each, then ``--repeats`` rounds that
alternate the two so that a change in machine load hits both; the median per image. The
baseline is the official code; the ratio is ours / official (below 1: ours is faster). The
largest difference between the two images, relative to the official image's largest
magnitude, is printed as a check that both computed the same thing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from facelatent.formats.nvidia_pickle import NetworkRecord, load_network_pickle
from facelatent.generators import z_from_seeds
from facelatent.generators.stylegan2 import (
    StyleGAN2,
    StyleGAN2Config,
    load_nvidia_state,
    load_stylegan2_pickle,
    nvidia_state_dict,
)

PSI = 0.7


def official_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """Constructor arguments of NVIDIA's ``Generator`` for the command line's configuration."""
    mapping = {"num_layers": args.mapping_layers}
    synthesis = {"channel_base": args.channel_base, "channel_max": args.channel_max,
                 "num_fp16_res": 0, "conv_clamp": 256}
    return {"z_dim": args.w_dim, "c_dim": 0, "w_dim": args.w_dim,
            "img_resolution": args.resolution, "img_channels": 3,
            "mapping_kwargs": mapping, "synthesis_kwargs": synthesis}


def build_pair(args: argparse.Namespace) -> tuple[StyleGAN2, torch.nn.Module]:
    """(ours, official) with the same weights."""
    sys.path.insert(0, str(Path(args.official).resolve()))
    from training import networks  # type: ignore[import-not-found]  # the official checkout

    if args.pkl:  # both from the file: ours through the safe reader, theirs from its kwargs
        record = load_network_pickle(args.pkl)["G_ema"]
        official = networks.Generator(*record.init_args, **record.init_kwargs)
        ours = load_stylegan2_pickle(args.pkl)
        result = official.load_state_dict(nvidia_state_dict(ours), strict=False)
        assert not result.unexpected_keys, result.unexpected_keys
        assert all(k.endswith("resample_filter") for k in result.missing_keys), result
    else:
        torch.manual_seed(0)
        kwargs = official_kwargs(args)
        official = networks.Generator(**kwargs)
        with torch.no_grad():  # the official init leaves biases and noise strengths at zero
            for name, p in official.named_parameters():
                if name.endswith(("noise_strength", "bias")):
                    p.add_(0.1 * torch.randn(p.shape))
        record = NetworkRecord("Generator", 6, (), kwargs, {})
        ours = StyleGAN2(StyleGAN2Config.from_init_kwargs(record), name="stylegan2-bench")
        load_nvidia_state(ours, official.state_dict(), "the official generator")
    return ours.eval().requires_grad_(False), official.eval().requires_grad_(False)


def timer(fn: Callable[[], torch.Tensor]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", help="checkout of NVlabs/stylegan2-ada-pytorch (required)")
    p.add_argument("--pkl", help="official-format pickle to take the architecture and weights from")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--channel-base", type=int, default=16384)
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--w-dim", type=int, default=512, help="also z_dim")
    p.add_argument("--mapping-layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not args.official:
        print("bench/stylegan2.py: skipped: pass --official DIR, a checkout of "
              "NVlabs/stylegan2-ada-pytorch, to time the port against it")
        return 0
    torch.set_num_threads(args.threads)
    ours, official = build_pair(args)
    z = z_from_seeds(range(args.batch), ours.z_dim)

    def run_ours() -> torch.Tensor:
        with torch.no_grad():
            return ours.synthesis(ours.mapping(z, PSI))

    def run_official() -> torch.Tensor:
        with torch.no_grad():
            ws = official.mapping(z, None, truncation_psi=PSI)
            return official.synthesis(ws, noise_mode="const", force_fp32=True)

    a, b = run_ours(), run_official()  # warm-up, and the check
    diff = float((a - b).abs().max() / b.abs().max())
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"ours": [], "official": []}
    for _ in range(args.repeats):
        times["official"].append(timer(run_official)() / args.batch)
        times["ours"].append(timer(run_ours)() / args.batch)
    load_after = os.getloadavg()
    per_image = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "resolution": ours.resolution, "num_ws": ours.num_ws, "batch": args.batch,
        "threads": args.threads, "repeats": args.repeats,
        "seconds_per_image": per_image,
        "ratio_ours_over_official": per_image["ours"] / per_image["official"],
        "max_rel_diff": diff,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in load_after],
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"StyleGAN2 {ours.resolution}x{ours.resolution} (num_ws {ours.num_ws}), z -> image, "
          f"psi {PSI}, batch {args.batch}, {args.threads} thread(s), median of {args.repeats}")
    print(f"load average before {result['loadavg_before']}, after {result['loadavg_after']} "
          f"({os.cpu_count()} CPUs)")
    print(f"  official (reference ops)  {per_image['official']:.4f} s/image  (baseline)")
    print(f"  facelatent port           {per_image['ours']:.4f} s/image  "
          f"ratio {result['ratio_ours_over_official']:.2f}")
    print(f"  max |ours - official| / max |official| = {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
