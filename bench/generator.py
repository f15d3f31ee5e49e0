"""Seconds per 1024x1024 MobileStyleGAN image: the PyTorch port against OpenVINO, in one run.

    python bench/generator.py [--batches 1 8] [--repeats 3] [--json]

Times z -> image (mapping, then synthesis) on the CPU for each backend and batch size: one
warm-up call, then the median of `--repeats` calls, divided by the batch size. The OpenVINO
backend is the baseline; the table gives torch / openvino per batch size.

Each backend runs in its own subprocess of this script (the hidden `--worker` flag), so each
reports its own peak resident memory (`ru_maxrss`) and neither inherits the other's allocator
state: the torch backend changes glibc's malloc settings for its process
(`facelatent.runtime.keep_freed_memory`).

Work per image is counted from the torch module's structure (`count_macs`) and compared with
the CPU's nominal peak: logical CPUs x "cpu MHz" from /proc/cpuinfo x fp32 multiply-adds per
cycle per core for the widest FMA the flags advertise. Where CUDA is available, a third worker
reports images/s at batch 32 in float32 and float16. Needs the model files
(`facelatent weights fetch mobilestylegan-ffhq`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from facelatent.generators import get_generator, z_from_seeds
from facelatent.generators.mobilestylegan import (
    FFHQ_1024,
    TINY,
    MobileStyleGAN,
    ModulatedConv,
    StyleAffine,
)

MODEL = "mobilestylegan-ffhq"
CPU_BACKENDS = ("torch", "openvino")
GPU_BATCH = 32


# --- work per image -------------------------------------------------------------------------

def count_macs(model: MobileStyleGAN) -> dict[str, int]:
    """Multiply-accumulates per image for z -> image, by part, and their "total".

    Counted: every linear map, i.e. the mapping layers, the style affines, each modulated
    conv (full 3x3, or depthwise 3x3 + pointwise 1x1) at its resolution, the inverse Haar
    transforms (stride-2 transposed convs) and the to-image 1x1 conv. Not counted: element-wise
    work (modulating weights or activations, noise, bias, leaky ReLU, pixel norm), which adds
    no MACs worth naming but does move memory.
    """
    net = model.synthesis_net
    parts = {
        "mapping": sum(layer.weight.numel() for layer in model.mapping_net.layers),
        "styles": sum(m.weight.numel() for m in model.modules() if isinstance(m, StyleAffine)),
        "convs": 0,
        "idwt": 0,
        "to_img": 0,
    }
    for conv in (m for m in model.modules() if isinstance(m, ModulatedConv)):
        pixels = conv.noise.shape[-2] * conv.noise.shape[-1]
        per_pixel = conv.weight.numel()  # [out, in, 3, 3] full, or [out, in, 1, 1] pointwise
        if conv.weight_dw is not None:
            per_pixel += conv.weight_dw.numel()  # [in, 1, 3, 3]
        parts["convs"] += per_pixel * pixels
    # An IDWT's kernel is [4C, 1, 2, 2]: each input pixel of each of the 4C sub-band channels
    # is spread over a 2x2 output patch; its input is half the resolution of the block's convs.
    for block in net.blocks:
        res = block.conv1.noise.shape[-1]
        parts["idwt"] += block.up.kernel.numel() * (res // 2) ** 2
    res = net.blocks[-1].conv2.noise.shape[-1] if len(net.blocks) else net.conv1.noise.shape[-1]
    parts["to_img"] = (net.to_img.weight.numel() + net.to_img.kernel.numel()) * res**2
    parts["total"] = sum(parts.values())
    return parts


def flop_counter_macs(model: MobileStyleGAN) -> int:
    """MACs of one z -> image call as torch's own FLOP counter sees them (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.requires_grad_(False)  # FlopCounterMode's module tracker trips on no_grad views
    with FlopCounterMode(display=False) as counter:
        model(z_from_seeds([0], model.z_dim))
    return counter.get_total_flops() // 2


# --- the CPU's nominal peak -----------------------------------------------------------------

def cpu_peak() -> dict[str, Any]:
    """Nominal fp32 peak in MAC/s: logical CPUs x "cpu MHz" x FMA lanes per cycle per core.

    AVX2 + FMA: 2 FMA units x 8 fp32 lanes = 16 MAC/cycle/core; AVX-512: 32, except on AMD
    family 0x19 (Zen 4), which runs 512-bit FMAs as two 256-bit halves (16). "cpu MHz" is the
    nominal clock the kernel reports (under a hypervisor, often the base clock), not the
    boost clock; logical CPUs may be SMT siblings that share one core's FMA units.
    """
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    vendor, family = info.get("vendor_id", ""), info.get("cpu family", "")
    if "avx512f" in flags and "fma" in flags:
        zen4 = vendor == "AuthenticAMD" and family == "25"
        isa, lanes = ("AVX-512 (Zen 4: 2x256-bit)", 16) if zen4 else ("AVX-512 + FMA", 32)
    elif "avx2" in flags and "fma" in flags:
        isa, lanes = "AVX2 + FMA", 16
    else:
        isa, lanes = "unknown (no AVX2/FMA flags)", None
    cores = os.cpu_count() or 1
    mhz = float(info["cpu MHz"]) if "cpu MHz" in info else None
    peak = cores * mhz * 1e6 * lanes if (mhz and lanes) else None
    return {"model": info.get("model name", "unknown CPU"), "cores": cores, "mhz_nominal": mhz,
            "isa": isa, "mac_per_cycle_per_core": lanes, "peak_mac_per_s": peak}


# --- workers (one process per backend) ------------------------------------------------------

def peak_rss_mib() -> float:
    """This process's resident-memory high-water mark (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def cpu_ticks() -> tuple[int, int, int] | None:
    """(busy, total) clock ticks of the whole machine and this process's ticks (Linux only)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
        with open("/proc/self/stat") as fh:
            own = fh.read().rsplit(")", 1)[1].split()  # fields after the command name
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields), int(own[11]) + int(own[12])  # utime + stime


def others_share(before: tuple[int, int, int] | None) -> float | None:
    """Share of the machine's CPU time that other processes (and the hypervisor) used since."""
    after = cpu_ticks()
    if before is None or after is None or after[1] == before[1]:
        return None
    busy, total, own = (a - b for a, b in zip(after, before))
    return max(0.0, (busy - own) / total)


def median_seconds(call: Callable[[], object], repeats: int,
                   sync: Callable[[], None] = lambda: None) -> float:
    """One warm-up call, then the median wall time of `repeats` calls."""
    call()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_worker(backend: str, batches: list[int], repeats: int) -> dict[str, Any]:
    start = time.perf_counter()
    G = get_generator(MODEL, device="cpu", backend=backend)
    result: dict[str, Any] = {
        "backend": backend, "build_s": time.perf_counter() - start,
        "threads": torch.get_num_threads() if backend == "torch" else _openvino_threads(G),
        "peak_rss_after_build_mib": peak_rss_mib(), "s_per_image": {},
    }
    ticks = cpu_ticks()
    for batch in batches:
        z = z_from_seeds(list(range(batch)), G.z_dim)

        def call() -> torch.Tensor:
            with torch.inference_mode():
                return G.synthesis(G.mapping(z))

        result["s_per_image"][str(batch)] = median_seconds(call, repeats) / batch
        print(f"  {backend} batch {batch}: {result['s_per_image'][str(batch)]:.3f} s/image",
              file=sys.stderr, flush=True)
    result["peak_rss_mib"] = peak_rss_mib()
    result["others_cpu_share"] = others_share(ticks)
    return result


def _openvino_threads(G: object) -> int | None:
    try:
        return int(G._synthesis.get_property("INFERENCE_NUM_THREADS"))  # type: ignore[attr-defined]
    except Exception:  # the property's name or type differs between OpenVINO releases
        return None


def gpu_worker(model: str = MODEL, device: str = "cuda", batch: int = GPU_BATCH,
               repeats: int = 3) -> dict[str, Any]:
    """Images/s at `batch` in float32, then with the model and its inputs in float16."""
    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    G = get_generator(model, device=dev, backend="torch")
    assert isinstance(G, MobileStyleGAN)
    result: dict[str, Any] = {"backend": "torch", "device": str(dev), "batch": batch}
    if dev.type == "cuda":
        result["device_name"] = torch.cuda.get_device_name(dev)
    with torch.inference_mode():
        # mapping in float32 first: after .half() the mapping net would get float32 z
        ws = G.mapping(z_from_seeds(list(range(batch)), G.z_dim).to(dev))
        reference = None
        for dtype in (torch.float32, torch.float16):
            key = str(dtype).removeprefix("torch.")
            try:
                G = G.to(dtype)
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                seconds = median_seconds(lambda: G.synthesis(ws.to(dtype)), repeats, sync)
                entry: dict[str, Any] = {"images_per_s": batch / seconds}
                first = G.synthesis(ws[:1].to(dtype)).float()
                if reference is None:
                    reference = first
                else:
                    entry["max_abs_diff_vs_float32"] = float((first - reference).abs().max())
                if dev.type == "cuda":
                    entry["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
            except RuntimeError as exc:  # out of memory, or an op without a float16 kernel
                entry = {"error": str(exc).splitlines()[0]}
            result[key] = entry
            print(f"  {dev} {key}: {entry}", file=sys.stderr, flush=True)
    return result


# --- the parent: run the workers, print the table -------------------------------------------

def run_worker(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"worker {' '.join(args)} exited with code {proc.returncode}"}
    return json.loads(lines[-1])


def fmt_rate(macs: float, seconds: float, peak: float | None) -> str:
    rate = macs / seconds
    frac = f"{100 * rate / peak:5.1f}%" if peak else "   n/a"
    return f"{rate / 1e9:7.1f}  {frac}"


def print_table(report: dict[str, Any]) -> None:
    cpu, macs = report["cpu"], report["macs_per_image"]
    peak = cpu["peak_mac_per_s"]
    print(f"MobileStyleGAN FFHQ {FFHQ_1024.resolution}x{FFHQ_1024.resolution}, z -> image; "
          f"median of {report['repeats']} calls after one warm-up")
    mhz = f"{cpu['mhz_nominal']:.0f} MHz nominal" if cpu["mhz_nominal"] else "clock unknown"
    print(f"CPU: {cpu['model']}, {cpu['cores']} logical CPUs, {mhz}, {cpu['isa']}")
    if peak:
        print(f"     nominal peak {cpu['cores']} x {cpu['mhz_nominal'] / 1e3:.3f} GHz x "
              f"{cpu['mac_per_cycle_per_core']} MAC/cycle = {peak / 1e9:.1f} GMAC/s "
              f"({2 * peak / 1e9:.1f} GFLOP/s)")
    parts = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in macs.items() if k != "total")
    print(f"Work: {macs['total'] / 1e9:.2f} GMAC per image ({parts})")
    check = report["mac_check_tiny"]
    agree = "agrees" if check["count_macs"] == check["flop_counter"] else "DISAGREES"
    print(f"      count_macs on the tiny config {agree} with torch.utils.flop_counter "
          f"({check['count_macs']:,} vs {check['flop_counter']:,} MACs)")
    print()
    print(f"{'backend':<9} {'threads':>7} {'batch':>5} {'s/image':>8} {'GMAC/s':>7} "
          f"{'of peak':>7} {'peak RSS':>9}")
    for backend in CPU_BACKENDS:
        res = report["backends"][backend]
        if "error" in res:
            print(f"{backend:<9} {res['error']}")
            continue
        for batch, seconds in res["s_per_image"].items():
            print(f"{backend:<9} {str(res['threads']):>7} {batch:>5} {seconds:8.3f} "
                  f"{fmt_rate(macs['total'], seconds, peak)} "
                  f"{res['peak_rss_mib'] / 1024:7.2f} GiB")
    ratios = report.get("torch_over_openvino", {})
    if ratios:
        print("\ntorch / openvino (s/image; > 1: torch slower): "
              + ", ".join(f"batch {b}: {r:.2f}x" for b, r in ratios.items()))
    busy = {b: r.get("others_cpu_share") for b, r in report["backends"].items()}
    if any(v is not None for v in busy.values()):
        print("CPU used by other processes while timing: "
              + ", ".join(f"{b} {100 * v:.0f}%" for b, v in busy.items() if v is not None)
              + ("  (above 5%: the timings are not reliable)"
                 if any(v is not None and v > 0.05 for v in busy.values()) else ""))
    print("peak RSS is each backend's own process (ru_maxrss, model + largest batch); "
          f"this parent: {report['parent_peak_rss_mib']:.0f} MiB")
    gpu = report.get("gpu")
    if gpu:
        name = gpu.get("device_name", gpu.get("device"))
        print(f"\nGPU {name}, torch, batch {gpu.get('batch')}:")
        for key in ("float32", "float16"):
            entry = gpu.get(key, {"error": gpu.get("error", "not run")})
            if "error" in entry:
                print(f"  {key}: {entry['error']}")
            else:
                diff = entry.get("max_abs_diff_vs_float32")
                extra = f", max |diff| vs float32 {diff:.3g}" if diff is not None else ""
                if "peak_gpu_mib" in entry:
                    extra = f", peak {entry['peak_gpu_mib'] / 1024:.1f} GiB" + extra
                print(f"  {key}: {entry['images_per_s']:.1f} images/s{extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per batch size")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--worker", choices=(*CPU_BACKENDS, "cuda"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.batches) < 1 or args.repeats < 1:
        parser.error("--batches and --repeats must be positive")

    if args.worker:
        if args.worker == "cuda":
            result = gpu_worker(repeats=args.repeats)
        else:
            result = cpu_worker(args.worker, args.batches, args.repeats)
        print(json.dumps(result))
        return 0

    common = ["--batches", *map(str, args.batches), "--repeats", str(args.repeats)]
    tiny = MobileStyleGAN.random(TINY)
    report: dict[str, Any] = {
        "model": MODEL, "repeats": args.repeats, "cpu": cpu_peak(),
        "macs_per_image": count_macs(MobileStyleGAN(FFHQ_1024)),
        "mac_check_tiny": {"count_macs": count_macs(tiny)["total"],
                           "flop_counter": flop_counter_macs(tiny)},
        "backends": {},
    }
    for backend in CPU_BACKENDS:
        print(f"running {backend} ...", file=sys.stderr, flush=True)
        report["backends"][backend] = run_worker(["--worker", backend, *common])
    torch_res, ov_res = (report["backends"][b] for b in CPU_BACKENDS)
    if "error" not in torch_res and "error" not in ov_res:
        report["torch_over_openvino"] = {
            b: torch_res["s_per_image"][b] / ov_res["s_per_image"][b]
            for b in ov_res["s_per_image"]}
    if torch.cuda.is_available():
        print("running cuda ...", file=sys.stderr, flush=True)
        report["gpu"] = run_worker(["--worker", "cuda", "--repeats", str(args.repeats)])
    report["parent_peak_rss_mib"] = peak_rss_mib()

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    failed = [b for b, res in report["backends"].items() if "error" in res]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
