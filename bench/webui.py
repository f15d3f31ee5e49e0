"""Slider-to-image latency of the web editor's service layer against a plain synthesis call,
in one run.

    python bench/webui.py [--repeats 7] [--preview 256] [--json]
    python bench/webui.py --tiny            # no model files: the tiny random generator
    python bench/webui.py --page /usr/bin/chromium   # also through the page, in a browser

Times, each the median of ``--repeats`` slider moves after one warm-up (every move a new
slider value, so nothing is reused; the cases take turns, so load changes hit all alike):

- the baseline: ``G.synthesis(w)`` for one face at the generator's size;
- preview: what the page shows first after a slider moves: `EditorService.render` (the edit
  through `edit_latents`, synthesis, the downscale to ``--preview`` px, uint8);
- full size: everything the page shows after that: the render, the scores and both identity
  embeddings (`analyse`), the panel (`report`) and the full-size PNG and latent files
  (`export`);
- the same two with three sliders moved and one kept fixed (a conditional edit).

With ``--page``, the same slider moved in the page itself (Gradio, its queue and headless
Chromium, in this process), from the value entered to the preview and to the full-size image
on screen (median of ``--repeats``), against a synthesis call timed before each move.

Each is printed in seconds and as a ratio to the baseline, against the page's goal of a
preview within 0.3 s. The machine's load average is printed before and after: on a shared
machine compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from facelatent.runtime import one_blas_thread, passive_waiting

passive_waiting()      # what `facelatent serve` sets before torch loads (facelatent.cli.main)
one_blas_thread()

import torch

from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
from facelatent.generators import get_generator
from facelatent.webui import directions as dirs
from facelatent.webui.service import Edit, EditorService

GOAL_PREVIEW_S = 0.3
SEED = 11


def timed(cases: dict[str, Callable[[int], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each case's ``fn(i)`` over ``repeats`` calls (i = 1..repeats) after
    one warm-up ``fn(0)``. The cases take turns within each repeat, so a change in the
    machine's load falls on all of them alike and their ratios hold."""
    for fn in cases.values():
        fn(0)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(1, repeats + 1):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in times.items()}


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def make_service(tiny: bool, preview: int) -> EditorService:
    """The editor's service on the real models (the package's boundaries, 5 SeFa directions,
    psi 0.7) or on the tiny random generator with random boundaries."""
    G = get_generator("mobilestylegan-tiny" if tiny else "mobilestylegan-ffhq")
    analyzer = FaceAnalyzer(loaders=random_face_loaders()) if tiny else FaceAnalyzer()
    if tiny:
        import numpy as np

        from facelatent.boundaries import Boundary

        folder = tempfile.mkdtemp(prefix="bench-webui-")
        rng = np.random.default_rng(0)
        for name in dirs.DEFAULT_BOUNDARIES:
            Boundary.from_direction(rng.standard_normal(G.w_dim), attribute=name, space="w",
                                    metrics={"sigma": 1.0}).save(f"{folder}/{name}_w.npz")
        files = dirs.boundary_files(folder)
    else:
        files = dirs.boundary_files()
    sliders = dirs.attribute_directions(G, files) + dirs.sefa_directions(G, 5, 0.7)
    return EditorService(G, analyzer, sliders, truncation_psi=0.7, preview_size=preview)


def strength(i: int) -> float:
    return -2.0 + 0.25 * i                    # a new slider value every move


def bench(service: EditorService, repeats: int) -> dict[str, Any]:
    G = service.generator
    face = service.face_from_seed(SEED)
    w = face.latent

    def one(i: int) -> Edit:
        return Edit({"smile": strength(i)})

    def three(i: int) -> Edit:
        return Edit({"smile": strength(i), "age": 1.0, "sefa_0": -0.5}, ("gender",))

    def synthesis(i: int) -> None:
        with torch.no_grad():
            G.synthesis(w + 1e-3 * i)

    def full(edit: Callable[[int], Edit]) -> Callable[[int], None]:
        def run(i: int) -> None:
            render = service.render(face, edit(i))
            service.report(face, service.analyse(render))
            service.export(face, edit(i), render)
        return run

    before = load()
    rows = timed({"synthesis (baseline)": synthesis,
                  "preview, one slider": lambda i: service.render(face, one(i)),
                  "full size, one slider": full(one),
                  "preview, three sliders + keep fixed": lambda i: service.render(face, three(i)),
                  "full size, three sliders + keep fixed": full(three)}, repeats)
    base = rows["synthesis (baseline)"]
    return {"generator": getattr(G, "name", ""), "resolution": G.resolution,
            "preview": service.preview_size,
            "repeats": repeats, "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "load_before": before, "load_after": load(),
            "seconds": rows, "ratio": {k: v / base for k, v in rows.items()}}


# In the page: each change of the face image's address, with the time it happened.
WATCH_JS = """() => {
    const now = () => (document.querySelector('#face img') || {src: ''}).src;
    window.__faces = [{t: performance.now(), src: now()}];     // what is on screen already
    const record = () => {
        const src = now();
        const last = window.__faces[window.__faces.length - 1];
        if (src && (!last || last.src !== src)) window.__faces.push({t: performance.now(), src});
    };
    new MutationObserver(record).observe(document.querySelector('#face'),
        {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""


def page_latency(service: EditorService, repeats: int, chromium: str) -> dict[str, float]:
    """Median seconds from a slider value entered in the page (headless Chromium) to the
    preview shown, and to the full-size image shown, through Gradio and its queue; and of a
    plain synthesis call made before each move (the baseline of these rows)."""
    import socket

    from playwright.sync_api import sync_playwright

    from facelatent.webui.app import launch

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = launch(service, port=port, block=False)
    previews, fulls, bases = [], [], []
    w = service.face_from_seed(SEED).latent
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            page.set_default_timeout(300_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#scores table")
            # The first face is on screen (its image arrives after its panel): from here each
            # move's own full-size image is the first one after it.
            page.wait_for_function("() => (document.querySelector('#face img') || {src: ''})"
                                   ".src.endsWith('_edited.png')")
            page.evaluate(WATCH_JS)
            box = page.locator("#slider-smile input[type=number]")
            for i in range(repeats + 1):                   # the first move warms up
                t0 = time.perf_counter()
                with torch.no_grad():
                    service.generator.synthesis(w + 1e-3 * i)
                bases.append(time.perf_counter() - t0)
                count = page.evaluate("window.__faces.length")
                start = page.evaluate("performance.now()")
                box.fill(str(strength(i)))
                box.press("Enter")
                page.wait_for_function(
                    "n => window.__faces.slice(n).some(f => f.src.endsWith('_edited.png'))",
                    arg=count)
                changes = page.evaluate("n => window.__faces.slice(n)", count)
                full = next(c["t"] for c in changes if c["src"].endswith("_edited.png"))
                preview = next((c["t"] for c in changes if not c["src"].endswith("_edited.png")),
                               full)
                if i:
                    previews.append((preview - start) / 1000)
                    fulls.append((full - start) / 1000)
                page.wait_for_timeout(300)      # let the panel and files settle
            browser.close()
    finally:
        demo.close()
        service.close()
    return {"synthesis, beside the page": statistics.median(bases[1:]),
            "page: preview, one slider": statistics.median(previews),
            "page: full size, one slider": statistics.median(fulls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--preview", type=int, default=256, help="preview size in px")
    parser.add_argument("--tiny", action="store_true", help="the tiny random generator")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--page", metavar="CHROMIUM", default=None,
                        help="also time the page itself: a slider value entered in headless "
                             "Chromium (this executable) until the preview and the full-size "
                             "image are shown")
    args = parser.parse_args()
    service = make_service(args.tiny, args.preview)
    result = bench(service, args.repeats)
    if args.page:
        page = page_latency(service, args.repeats, args.page)
        base = page["synthesis, beside the page"]
        result["seconds"].update(page)
        result["ratio"].update({k: v / base for k, v in page.items()})
        result["load_after"] = load()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['generator']} at {result['resolution']} px, preview {result['preview']} px; "
          f"{result['cpus']} CPUs, {result['torch_threads']} torch threads; load average "
          f"(1, 5, 15 min) before {result['load_before']}, after {result['load_after']}")
    print(f"{'':40} {'s':>8} {'x synthesis':>12}   (page rows: x the synthesis beside them)")
    for name, seconds in result["seconds"].items():
        print(f"{name:40} {seconds:8.3f} {result['ratio'][name]:12.2f}")
    for name in ("preview, one slider", "page: preview, one slider"):
        if name in result["seconds"]:
            seconds = result["seconds"][name]
            met = "met" if seconds <= GOAL_PREVIEW_S else "not met"
            print(f"goal, {name}: within {GOAL_PREVIEW_S} s: {met} ({seconds:.3f} s)")


if __name__ == "__main__":
    main()
