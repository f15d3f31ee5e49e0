"""The Gradio front end of the web editor: a page over `EditorService`, nothing more.

Every handler turns the page's values into a service call and the result back into page
values. Failures a user can act on (a bad upload, a seed out of range) and anything unexpected
end as one line in the status box; the traceback of an unexpected error goes to the server's
log only. Uploads arrive as bytes (``gr.File(type="binary")``), so no path from the browser is
ever opened here; Gradio refuses files over the byte limit before they reach a handler.

The queue runs one request at a time and holds at most :data:`QUEUE_SIZE` waiting ones; a
slider sends only its last value when the editor is busy (``trigger_mode="always_last"``).
"""

from __future__ import annotations

import contextlib
import functools
import html
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from facelatent.errors import FacelatentError
from facelatent.runtime import single_malloc_arena
from facelatent.webui.service import MAX_STRENGTH, Edit, EditorService, Face, Render

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # no calls home from the server
import gradio as gr  # after the variable above

__all__ = ["QUEUE_SIZE", "SLIDER_RANGE", "build_app", "launch"]

SLIDER_RANGE = 5.0     # sigma either way on the page (the service accepts up to MAX_STRENGTH)
QUEUE_SIZE = 16        # requests waiting at most; more are refused with a message
SESSIONS = 200         # users' faces kept (up to 0.3 MB each); the oldest go first
PHOTO_TYPES = [".png", ".jpg", ".jpeg", ".webp"]
IMAGE_BUTTONS: list[Any] = ["download", "fullscreen"]     # no "share" (to Hugging Face)
LOG = logging.getLogger("facelatent.webui")
CSS = """
#scores table { width: 100%; font-variant-numeric: tabular-nums; }
#scores td, #scores th { padding: 2px 8px; text-align: right; }
#scores td:first-child, #scores th:first-child { text-align: left; }
.same { color: #1a7f37; } .other { color: #b42318; }
"""
assert SLIDER_RANGE <= MAX_STRENGTH


def _message(exc: BaseException) -> str:
    """One line for the page: the error's own first line for errors a user can act on."""
    if isinstance(exc, (FacelatentError, ValueError, KeyError, OSError)):
        text = (str(exc).strip().strip("'\"").splitlines() or [type(exc).__name__])[0]
        return f"**Error:** {html.escape(text)}"
    LOG.exception("unexpected error in the web editor")
    return (f"**Error:** something went wrong ({type(exc).__name__}); the server log has the "
            "details. Please report it.")


def scores_html(report: dict[str, Any]) -> str:
    """The live panel as an HTML table (values escaped; rows keyed by attribute)."""
    rows = []
    for r in report["attributes"]:
        change = r["now"] - r["unedited"]
        rows.append(f'<tr data-attribute="{r["attribute"]}"><td>{html.escape(r["label"])}</td>'
                    f'<td class="unedited">{r["unedited"]:.2f}</td>'
                    f'<td class="now">{r["now"]:.2f}</td><td class="change">{change:+.2f}</td></tr>')
    ids = []
    for r in report["identity"]:
        verdict = "same person" if r["same_person"] else "not the same person"
        note = "" if r["independent"] else " (helped make this face: not independent)"
        ids.append(f'<tr data-recogniser="{r["model"]}"><td>identity, {r["model"]}{note}</td>'
                   f'<td colspan="2" class="cosine">{r["cosine"]:.3f}</td>'
                   f'<td class="{"same" if r["same_person"] else "other"}">{verdict} '
                   f'(&gt; {r["threshold"]:.3f})</td></tr>')
    return ('<table><tr><th>attribute</th><th>unedited</th><th>now</th><th>change</th></tr>'
            + "".join(rows) + '<tr><th colspan="4">cosine to the unedited face; threshold '
            'calibrated on LFW</th></tr>' + "".join(ids) + "</table>")


def build_app(service: EditorService) -> gr.Blocks:
    """The page: faces in (seed, latents, photo), sliders, live panel, downloads; swap and
    identity tabs when the service has a mapping or identity boundaries."""
    keys = list(service.directions)
    attribute_keys = [k for k, d in service.directions.items() if not d.is_sefa]
    sefa_keys = [k for k in keys if k not in attribute_keys]
    last_layer = service.generator.num_ws - 1

    # Gradio keeps a copy of every image it served; files older than an hour go, every 10 min.
    with gr.Blocks(title="facelatent editor", analytics_enabled=False,
                   delete_cache=(600, 3600)) as demo:
        face_state = gr.State(None)
        gr.Markdown(f"## facelatent editor\n{getattr(service.generator, 'name', '')}, "
                    f"truncation {service.truncation_psi:g}; sliders in standard deviations "
                    "(sigma) of the faces along each boundary.")
        # A tab of its own only beside the swap or identity tabs.
        extras = service.mapper is not None or service.identities is not None
        with gr.Tab("Editor") if extras else contextlib.nullcontext(), gr.Row():
                with gr.Column(scale=1):
                    with gr.Tab("Seed"):
                        seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
                        with gr.Row():
                            go = gr.Button("Show", variant="primary", elem_id="show-seed")
                            rand = gr.Button("Random", elem_id="random-seed")
                    with gr.Tab("Latent file"):
                        latents_file = gr.File(label="latents.npz (from generate, invert or this "
                                               "editor)", file_types=[".npz"], type="binary",
                                               elem_id="latents-upload")
                    with gr.Tab("Photo"):
                        photo_file = gr.File(label=f"photo: PNG, JPEG or WebP, up to "
                                             f"{service.limits.max_bytes // 2**20} MB",
                                             file_types=PHOTO_TYPES, type="binary",
                                             elem_id="photo-upload")
                        invert = gr.Button(f"Find the face and invert ({service.invert_steps} steps)",
                                           elem_id="invert")
                        aligned = gr.Image(label="aligned face", interactive=False, height=160,
                                           buttons=IMAGE_BUTTONS)
                    sliders = {k: gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0, step=0.1,
                                            label=k, elem_id=f"slider-{k}") for k in attribute_keys}
                    with gr.Accordion("SeFa directions (unsupervised)", open=False):
                        sliders.update({k: gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0, step=0.1,
                                                     label=k, elem_id=f"slider-{k}")
                                        for k in sefa_keys})
                    keep = gr.Dropdown(keys, value=[], multiselect=True, elem_id="keep-fixed",
                                       label="keep fixed (edit orthogonally to these)")
                    with gr.Row():
                        first = gr.Slider(0, last_layer, value=0, step=1, label="first style input",
                                          elem_id="layer-first")
                        last = gr.Slider(0, last_layer, value=last_layer, step=1,
                                         label="last style input", elem_id="layer-last")
                    reset = gr.Button("Reset", elem_id="reset")
                with gr.Column(scale=1):
                    image = gr.Image(label="face", type="filepath", format="png", interactive=False,
                                     buttons=IMAGE_BUTTONS,
                                     elem_id="face", height=512)
                    status = gr.Markdown(elem_id="status")
                    with gr.Row():
                        png_out = gr.DownloadButton("Download image (PNG)", elem_id="download-png")
                        npz_out = gr.DownloadButton("Download latent (.npz)", elem_id="download-npz")
                    scores = gr.HTML(elem_id="scores")
                    command = gr.Markdown(elem_id="command")
        extra_tabs(service, face_state)

        controls = [*sliders.values(), keep, first, last]
        shown = [image, scores, status, png_out, npz_out, command]

        def edit_of(values: tuple[Any, ...]) -> Edit:
            *strengths, kept, lo, hi = values
            lo, hi = sorted((int(lo), int(hi)))
            layers = None if (lo, hi) == (0, last_layer) else f"{lo}-{hi}"
            return Edit(dict(zip(sliders, map(float, strengths))), tuple(kept or ()), layers)

        def show(face: Face | None, edit: Edit) -> Iterator[tuple[Any, ...]]:
            """Preview first, then the full-size image, the panel and the files."""
            if face is None:
                yield (gr.update(),) * 5 + ("",)
                return
            render: Render = service.render(face, edit)
            yield (render.preview, gr.update(), "rendering full size...", gr.update(),
                   gr.update(), gr.update())
            png, npz = service.export(face, edit, render)
            panel = scores_html(service.report(face, service.analyse(render)))
            cli = service.command_line(face, edit)
            yield (str(png), panel, face.note, str(png), str(npz),
                   f"Same edit on the command line: `{cli}`" if cli else "")

        def guarded(fn: Callable[..., Iterator[tuple[Any, ...]]], width: int,
                    ) -> Callable[..., Iterator[tuple[Any, ...]]]:
            """``fn`` with any error shown in the status box (position ``width - 4`` of the
            outputs, the others unchanged) instead of raised into Gradio."""
            @functools.wraps(fn)        # Gradio reads the signature (gr.Progress) through it
            def run(*args: Any, **kwargs: Any) -> Iterator[tuple[Any, ...]]:
                try:
                    yield from fn(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - every failure is a line in the page
                    out: list[Any] = [gr.update()] * width
                    out[width - 4] = _message(exc)
                    yield tuple(out)
            return run

        def on_edit(face: Face | None, *values: Any) -> Iterator[tuple[Any, ...]]:
            yield from show(face, edit_of(values))

        zeros = [0.0] * len(sliders) + [[], 0, last_layer]

        def loaded(make: Callable[[], Face]) -> Iterator[tuple[Any, ...]]:
            face = make()
            for part in show(face, Edit()):
                yield (face, *zeros, *part)

        def on_seed(value: Any) -> Iterator[tuple[Any, ...]]:
            yield from loaded(lambda: service.face_from_seed(value))

        def on_random() -> Iterator[tuple[Any, ...]]:
            value = service.random_seed()
            for part in loaded(lambda: service.face_from_seed(value)):
                yield (value, *part)

        def on_latents(data: bytes | None) -> Iterator[tuple[Any, ...]]:
            if data is not None:
                yield from loaded(lambda: service.face_from_latents(data, "latents"))

        def on_photo(data: bytes | None,
                     progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's way
                     ) -> Iterator[tuple[Any, ...]]:
            if data is None:
                raise ValueError("upload a photo first")
            found = service.align_upload(data, "photo")
            yield (found.preview,) + (gr.update(),) * len(loading)
            face = service.invert(found, lambda f, text: progress(f, desc=text))
            for part in show(face, Edit()):
                yield (face.aligned, face, *zeros, *part)

        def on_reset(face: Face | None) -> Iterator[tuple[Any, ...]]:
            for part in show(face, Edit()):
                yield (*zeros, *part)

        loading = [face_state, *controls, *shown]
        busy = {"show_progress_on": [image]}       # the progress shows on the face alone
        go.click(guarded(on_seed, len(loading)), [seed], loading, **busy)
        seed.submit(guarded(on_seed, len(loading)), [seed], loading, **busy)
        rand.click(guarded(on_random, len(loading) + 1), None, [seed, *loading], **busy)
        latents_file.upload(guarded(on_latents, len(loading)), [latents_file], loading, **busy)
        invert.click(guarded(on_photo, len(loading) + 1), [photo_file], [aligned, *loading],
                     **busy)
        reset.click(guarded(on_reset, len(controls) + len(shown)), [face_state],
                    [*controls, *shown], **busy)
        for control in controls:
            control.input(guarded(on_edit, len(shown)), [face_state, *controls], shown,
                          trigger_mode="always_last", show_progress="minimal", **busy)
        demo.load(guarded(on_seed, len(loading)), [seed], loading, **busy)
    return demo


def extra_tabs(service: EditorService, face_state: gr.State) -> None:
    """The swap tab (with a mapping) and the synthetic-identity tab (with identity boundaries)."""
    if service.mapper is not None:
        with gr.Tab("Swap identity and attributes"):
            gr.Markdown("The mapping network takes the identity from one face and everything "
                        "else (pose, expression, lighting) from the other.")
            other = gr.Number(value=1, precision=0, label="the other face: seed")
            swap = gr.Button("Swap", elem_id="swap")
            with gr.Row():
                faces = [gr.Image(label=label, interactive=False, elem_id=key,
                                  buttons=IMAGE_BUTTONS)
                         for key, label in (("swap-this", "this face (unedited)"),
                                            ("swap-other", "the other face"),
                                            ("swap-a", "this face's identity, the other's rest"),
                                            ("swap-b", "the other's identity, this face's rest"))]
            swap_status = gr.Markdown()

            def on_swap(face: Face | None, value: Any) -> tuple[Any, ...]:
                try:
                    if face is None:
                        raise ValueError("show a face in the editor first")
                    second = service.face_from_seed(value)
                    shown = [face, second, service.swap(face, second), service.swap(second, face)]
                    return (*(service.render(f, Edit()).preview for f in shown), "")
                except Exception as exc:  # noqa: BLE001 - shown in the page
                    return (*(gr.update() for _ in faces), _message(exc))

            swap.click(on_swap, [face_state, other], [*faces, swap_status])
    if service.identities is not None:
        ids = service.identities
        with gr.Tab("Synthetic identity"):
            gr.Markdown(f"Faces of one synthetic identity, sampled along its identity boundary "
                        f"({len(ids)} references, labelled by {ids.model}).")
            with gr.Row():
                ref = gr.Dropdown([int(s) for s in ids.seeds[:500]], value=int(ids.seeds[0]),
                                  label="reference seed")
                count = gr.Slider(1, 32, value=8, step=1, label="faces")
                if service.offset_units == "sigma":
                    max_off = gr.Slider(0.5, 20.0, value=6.0, step=0.5,
                                        label="max offset (sigma: the store's spread)")
                else:
                    max_off = gr.Slider(0.5, 5.0, value=2.0, step=0.1,
                                        label="max offset (raw latent units)")
                page_seed = gr.Number(value=0, precision=0, label="sampling seed")
            page = gr.Button("Show", elem_id="identity-page")
            gallery = gr.Gallery(columns=5, label="the reference first", elem_id="identity-gallery",
                                 buttons=["download", "fullscreen"])
            page_status = gr.Markdown()

            def on_page(reference: Any, n: Any, off: Any, s: Any) -> tuple[Any, ...]:
                try:
                    images, captions = service.identity_page(int(reference), int(n), float(off),
                                                             int(s))
                    return list(zip(images, captions)), ""
                except Exception as exc:  # noqa: BLE001 - shown in the page
                    return gr.update(), _message(exc)

            page.click(on_page, [ref, count, max_off, page_seed], [gallery, page_status])


def launch(service: EditorService, host: str = "127.0.0.1", port: int | None = None,
           share: bool = False, block: bool = True) -> gr.Blocks:
    """Serve the page on ``host``:``port`` (None: Gradio picks from 7860 up), without a share
    link unless ``share``, and print its address. ``block`` False returns at once with the
    server running (tests: stop it with `gr.Blocks.close`, then `EditorService.close`)."""
    single_malloc_arena()          # before the server's worker threads exist
    demo = build_app(service)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE, api_open=False)
    _, local_url, share_url = demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=True,
        max_file_size=service.limits.max_bytes, show_error=False, ssr_mode=False,
        css=CSS, quiet=True, footer_links=[], state_session_capacity=SESSIONS,
        pwa=False, mcp_server=False)
    if block:
        print(f"facelatent serve: the editor is at {local_url}"
              + (f" and {share_url}" if share_url else ""), flush=True)
        demo.block_thread()            # until Ctrl-C
        service.close()                # let a render in progress finish before exit
    return demo
