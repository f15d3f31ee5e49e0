"""The web editor's service layer (`facelatent.webui`) on the tiny random generator and random
face networks: edits equal `facelatent edit` pixel for pixel, downloads read back through the
command line, bad uploads and bad slider values are refused with one line, requests are
serialised, and `facelatent serve` stays local unless told otherwise."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facelatent.boundaries import Boundary, IdentityBoundaries
from facelatent.cli import main
from facelatent.editing.apply import edit_latents
from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
from facelatent.generators import get_generator
from facelatent.latents.sampling import latents_for_seeds
from facelatent.latents.store import LatentStore, StoreSpec
from facelatent.webui import directions as dirs
from facelatent.webui.service import Edit, EditorService
from facelatent.webui.uploads import UploadLimits, clean_name, read_photo_upload

TINY = "mobilestylegan-tiny"
PSI = 0.7
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G():
    return get_generator(TINY)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three W boundaries for the tiny generator, with their sigma, as `boundary fit` writes."""
    root = tmp_path_factory.mktemp("boundaries")
    rng = np.random.default_rng(3)
    for name, sigma in (("smile", 0.8), ("age", 1.3), ("gender", 0.5)):
        Boundary.from_direction(rng.standard_normal(32), 0.1, attribute=name, space="w",
                                metrics={"sigma": sigma},
                                provenance={"generator": TINY}).save(root / f"{name}_w.npz")
    return root


@pytest.fixture(scope="module")
def service(G, folder: Path, tmp_path_factory: pytest.TempPathFactory) -> EditorService:
    sliders = dirs.attribute_directions(G, dirs.boundary_files(folder))
    sliders += dirs.sefa_directions(G, 2, PSI)
    return EditorService(G, FaceAnalyzer(loaders=random_face_loaders()), sliders,
                         truncation_psi=PSI, preview_size=32,
                         workdir=tmp_path_factory.mktemp("serve"))


def cli_tile(out: Path, name: str, size: int) -> np.ndarray:
    """The one image of a `facelatent edit --steps 1` strip (below its label row)."""
    strip = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))
    return strip[-size - 2:-2, :size]


def cli_edit(out: Path, *args: str, size: int = 64) -> int:
    return main(["edit", "--model", TINY, "--psi", str(PSI), "--steps", "1", "--size", str(size),
                 "--device", "cpu", "--out", str(out), *args])


@pytest.mark.parametrize("extra", [(), ("layers",), ("layers", "condition")])
def test_one_slider_equals_facelatent_edit_pixel_for_pixel(service: EditorService, folder: Path,
                                                           tmp_path: Path, extra) -> None:
    face = service.face_from_seed(7)
    edit = Edit({"smile": 1.5}, ("age",) if "condition" in extra else (),
                "2-6" if "layers" in extra else None)
    render = service.render(face, edit)
    args = ["--seeds", "7", "--boundary", str(folder / "smile_w.npz"), "--range", "1.5", "1.5"]
    args += ["--layers", "2-6"] if "layers" in extra else []
    args += ["--condition", str(folder / "age_w.npz")] if "condition" in extra else []
    assert cli_edit(tmp_path / "full", *args) == 0
    png, _ = service.export(face, edit, render)
    np.testing.assert_array_equal(np.asarray(Image.open(png)),
                                  cli_tile(tmp_path / "full", "seed0007", 64))
    assert cli_edit(tmp_path / "small", *args, size=32) == 0      # the preview is --size 32
    np.testing.assert_array_equal(render.preview, cli_tile(tmp_path / "small", "seed0007", 32))
    # The page prints the same command, with the boundary's file.
    command = service.command_line(face, edit)
    assert command is not None and "--seeds 7" in command and "smile_w.npz" in command


def test_sliders_add_up_and_zero_is_the_unedited_face(service: EditorService) -> None:
    face = service.face_from_seed(3)
    torch.testing.assert_close(service.edited_latent(face, Edit({"smile": 0.0})), face.latent,
                               rtol=0, atol=0)
    two = service.edited_latent(face, Edit({"smile": 1.0, "age": -2.0}))
    d = service.directions
    assert list(d)[:3] == ["age", "gender", "smile"]       # the folder's files, sorted
    step = edit_latents(face.latent, d["age"].boundary, [-2.0], sigma=d["age"].sigma)[:, 0]
    step = edit_latents(step, d["smile"].boundary, [1.0], sigma=d["smile"].sigma)[:, 0]
    torch.testing.assert_close(two, step, rtol=0, atol=0)
    # The age move is -2 sigma along its normal, plus what the smile move did to age.
    n = torch.from_numpy(d["age"].boundary.normal).float()
    moved = float((two - face.latent)[0] @ n)
    expected = -2 * d["age"].sigma + 1.0 * d["smile"].sigma * float(
        torch.from_numpy(d["smile"].boundary.normal).float() @ n)
    assert moved == pytest.approx(expected, rel=1e-4)
    assert service.command_line(face, Edit({"smile": 1.0, "age": -2.0})) is None


def test_sefa_sliders_edit_with_their_measured_sigma(service: EditorService, G) -> None:
    sefa = service.directions["sefa_0"]
    assert sefa.is_sefa and sefa.file is None and sefa.sigma > 0
    face = service.face_from_seed(1)
    moved = service.edited_latent(face, Edit({"sefa_0": 2.0})) - face.latent
    assert float(moved.norm()) == pytest.approx(2.0 * sefa.sigma, rel=1e-5)


@pytest.mark.parametrize("edit, match", [
    (Edit({"nose": 1.0}), "unknown slider 'nose'"),
    (Edit({"smile": 1e9}), "must lie in"),
    (Edit({"smile": float("nan")}), "must lie in"),
    (Edit({}, ("nose",)), "keep fixed"),
    (Edit({"smile": 1.0}, (), "5-40"), "layer 40 is out of range"),
])
def test_bad_slider_values_are_one_line_errors(service: EditorService, edit: Edit, match: str) -> None:
    face = service.face_from_seed(0)
    with pytest.raises(ValueError, match=match):
        service.render(face, edit)


@pytest.mark.parametrize("seed", ["-1", "4294967296", "abc", "1.5"])
def test_bad_seeds_are_refused(service: EditorService, seed: str) -> None:
    with pytest.raises(ValueError, match="seed must"):
        service.face_from_seed(seed)


def test_downloaded_latents_are_read_by_facelatent_edit(service: EditorService, folder: Path,
                                                        tmp_path: Path) -> None:
    face = service.face_from_seed(11)
    edit = Edit({"smile": -1.0, "gender": 2.0}, (), "0-4")
    png, npz = service.export(face, edit, service.render(face, edit))
    boundary = str(folder / "smile_w.npz")
    assert cli_edit(tmp_path / "a", "--latents", str(npz), "--boundary", boundary,
                    "--range", "0", "0") == 0
    np.testing.assert_array_equal(cli_tile(tmp_path / "a", "seed0011", 64), np.asarray(Image.open(png)))
    # Uploaded back into the editor, the file gives the edited face (a W+ latent, no seed).
    again = service.face_from_latents(npz.read_bytes(), "seed0011_edited.npz")
    torch.testing.assert_close(again.latent, service.edited_latent(face, edit), rtol=0, atol=0)
    assert again.involved == ()                          # a seed's file: nobody's loss
    png2, npz2 = service.export(again, Edit({"smile": 1.0}),
                                service.render(again, Edit({"smile": 1.0})))
    assert cli_edit(tmp_path / "b", "--latents", str(npz2), "--boundary", boundary,
                    "--range", "0", "0") == 0
    np.testing.assert_array_equal(cli_tile(tmp_path / "b", f"{npz2.parent.name}_face0", 64),
                                  np.asarray(Image.open(png2)))
    assert service.face_from_latents(npz2.read_bytes(), "x").involved == ("sface",)


def test_report_gives_scores_and_the_calibrated_identity_verdict(service: EditorService) -> None:
    face = service.face_from_seed(5)
    same = service.report(face, service.analyse(service.render(face, Edit())))
    assert [r["model"] for r in same["identity"]] == ["dlib", "sface"]
    assert all(r["cosine"] == pytest.approx(1.0, abs=1e-5) and r["same_person"]
               for r in same["identity"])
    assert {r["attribute"] for r in same["attributes"]} >= {"yaw", "age", "smile_logit"}
    assert all(r["now"] == pytest.approx(r["unedited"], abs=1e-5) for r in same["attributes"])
    far = service.report(face, service.analyse(service.render(face, Edit({"age": 10.0}))))
    dlib = far["identity"][0]
    assert dlib["cosine"] < 1 - 1e-4 and dlib["same_person"] == (dlib["cosine"] > 0.9089)


def test_requests_run_one_at_a_time(service: EditorService, G, monkeypatch) -> None:
    active, most = [0], [0]
    real = G.synthesis

    def synthesis(ws):
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.02)
        try:
            return real(ws)
        finally:
            active[0] -= 1

    monkeypatch.setattr(G, "synthesis", synthesis)
    face = service.face_from_seed(2)
    threads = [threading.Thread(target=service.render, args=(face, Edit({"smile": s})))
               for s in (-1.0, 0.5, 1.0, 2.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


def test_close_waits_for_the_render_in_progress_then_refuses(G, folder: Path) -> None:
    from facelatent.errors import FacelatentError

    service = EditorService(G, FaceAnalyzer(loaders=random_face_loaders()),
                            dirs.attribute_directions(G, dirs.boundary_files(folder)))
    face = service.face_from_seed(4)
    real, done, inside = G.synthesis, [], threading.Event()

    def slow(ws):
        inside.set()
        time.sleep(0.3)
        return real(ws)

    G.synthesis = slow
    try:
        worker = threading.Thread(target=lambda: done.append(service.render(face, Edit())))
        worker.start()
        assert inside.wait(30)              # the render holds the lock now
        service.close()
        assert done, "close returned while a render was still running"
    finally:
        G.synthesis = real
        worker.join()
    with pytest.raises(FacelatentError, match="shutting down"):
        service.render(face, Edit())


# -- uploads --------------------------------------------------------------------------------------
def png_bytes(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """A real 20,000 x 20,000 PNG (1-bit, so it is small as a file)."""
    return png_bytes((20_000, 20_000), "1")


@pytest.mark.parametrize("kind, match", [
    ("text", "not a PNG, JPEG or WebP"),
    ("empty", "empty \\(0 bytes\\)"),
    ("huge", "photo is 400 MP, over the 40 MP"),
    ("200mb", "200.0 MB, over the 20 MB"),
    ("truncated", "cannot read image photo"),
    ("tiny", "a face needs at least 16x16"),
])
def test_bad_photo_uploads_get_one_line_naming_the_upload(kind: str, match: str, huge_png) -> None:
    data = {"text": b"hello, not an image\n" * 10, "empty": b"", "huge": huge_png,
            "200mb": b"\x89PNG\r\n\x1a\n" + bytes(200 * 2**20),
            "truncated": png_bytes((64, 64))[:60], "tiny": png_bytes((8, 8))}[kind]
    with pytest.raises(ValueError, match=match) as err:
        read_photo_upload(data, "photo")
    assert "facelatent-upload" not in str(err.value) and "\n" not in str(err.value)


def test_photo_upload_is_decoded_as_score_decodes_files(tmp_path: Path) -> None:
    from facelatent.faces.files import _read_one

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    (tmp_path / "p.png").write_bytes(buf.getvalue())
    got = read_photo_upload(buf.getvalue(), "p", UploadLimits(max_pixels=56 * 40))
    torch.testing.assert_close(got, _read_one(tmp_path / "p.png", False)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="over the 0 MP"):
        read_photo_upload(buf.getvalue(), "p", UploadLimits(max_pixels=56 * 40 - 1))


def test_bad_latent_uploads_are_refused(service: EditorService, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an .npz"):
        service.face_from_latents(png_bytes((32, 32)), "x.npz")
    with pytest.raises(ValueError, match="empty"):
        service.face_from_latents(b"", "x.npz")
    pickled = io.BytesIO()
    np.savez(pickled, w=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="latents"):
        service.face_from_latents(pickled.getvalue(), "evil.npz")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w") as z:
        z.writestr("w.npy", b"\x93NUMPY" + b"\x00" * 100)
    with pytest.raises(ValueError):
        service.face_from_latents(bomb.getvalue(), "bomb.npz")
    big = service.limits.max_latent_bytes + 1
    with pytest.raises(ValueError, match="over the 4 MB"):
        service.face_from_latents(b"PK\x03\x04" + bytes(big), "big.npz")


def test_clean_name_keeps_only_a_safe_stem() -> None:
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name("C:\\x\\..\\my photo (1).JPG") == "C_x_my_photo_1"
    assert clean_name("") == "upload" and clean_name(None, "photo") == "photo"


# -- store, swap, identities ------------------------------------------------------------------------
def test_store_boundaries_are_fitted_once_and_kept(G, tmp_path: Path) -> None:
    attrs = tuple(dirs.STORE_ATTRIBUTES.values())
    spec = StoreSpec(TINY, G.z_dim, G.w_dim, truncation_psi=PSI, shard_size=2000, attributes=attrs)
    store = LatentStore.create(tmp_path / "store", spec, 2000)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2000, G.w_dim)).astype(np.float32)
    arrays = {"seeds": np.arange(2000), "z": w, "w": w,
              **{f"scores/{a}": w[:, i] for i, a in enumerate(attrs)}}
    store.write_shard(0, arrays)
    paths = dirs.fit_store_boundaries(tmp_path / "store", tmp_path / "cache")
    assert [p.name for p in paths] == [f"{n}_w.npz" for n in dirs.DEFAULT_BOUNDARIES]
    sliders = dirs.attribute_directions(G, paths)
    # Each score is one coordinate of w, so each normal points along it.
    for i, d in enumerate(sliders):
        assert d.boundary.attribute == attrs[i]
        assert np.argmax(np.abs(d.boundary.normal)) == i and d.boundary.normal[i] > 0.5
    stamp = paths[0].stat().st_mtime_ns
    assert dirs.fit_store_boundaries(tmp_path / "store", tmp_path / "cache") == paths
    assert paths[0].stat().st_mtime_ns == stamp


def test_the_package_boundaries_load_by_name() -> None:
    files = dirs.boundary_files()
    assert [dirs._key(f) for f in files] == list(dirs.DEFAULT_BOUNDARIES)
    assert all(f.is_file() for f in files)


def tiny_mapper(G, analyzer: FaceAnalyzer, path: Path):
    """A random mapping for the tiny generator, saved and loaded as `--mapping` loads it."""
    from facelatent.mapping import (
        Checkpoint,
        Mapper,
        MapperConfig,
        build,
        save_checkpoint,
    )

    torch.manual_seed(1)
    config = MapperConfig(w_dim=G.w_dim, num_ws=G.num_ws, attr_init="random", hidden=(32, 32))
    net, disc = build(config)
    target = {"name": TINY, "w_dim": G.w_dim, "num_ws": G.num_ws, "truncation_psi": PSI}
    save_checkpoint(path, Checkpoint(config, target, net, disc))
    return Mapper.from_checkpoint(path, analyzer=analyzer)


def test_swap_takes_identity_and_attributes_through_the_mapping(service: EditorService, G,
                                                               tmp_path: Path,
                                                               monkeypatch) -> None:
    mapper = tiny_mapper(G, service.analyzer, tmp_path / "checkpoint.npz")
    monkeypatch.setattr(service, "mapper", mapper)
    a, b = service.face_from_seed(1), service.face_from_seed(2)
    swapped = service.swap(a, b)
    faces = [service.render(f, Edit()).full for f in (a, b)]
    torch.testing.assert_close(swapped.latent, mapper.swap(faces[0], faces[1]), rtol=0, atol=0)
    assert swapped.origin == "swap" and swapped.reference is not None
    report = service.report(swapped, swapped.reference)
    assert [r["independent"] for r in report["identity"]] == [True, False]   # dlib, sface
    assert not torch.equal(service.swap(b, a).latent, swapped.latent)


def test_identity_page_and_swap(service: EditorService, G, tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(4)
    _, w = latents_for_seeds(G, [10, 20], PSI)
    normals = rng.standard_normal((2, G.w_dim))
    ids = IdentityBoundaries(np.array([10, 20]), normals / np.linalg.norm(normals, axis=1)[:, None],
                             np.zeros(2), w.numpy(), space="w", model="sface")
    monkeypatch.setattr(service, "identities", ids)
    images, captions = service.identity_page(20, n=3, max_off=1.0)
    assert images.shape == (4, 32, 32, 3) and captions[0] == "reference seed 20"
    assert all("dlib" in c and "sigma" not in c for c in captions[1:])
    assert service.offset_units == "raw"
    with pytest.raises(ValueError, match="positive"):
        service.identity_page(20, n=3, max_off=float("nan"))
    spread = np.array([0.2, 0.4])                  # the store's spread along each normal
    monkeypatch.setattr(service, "identities", IdentityBoundaries(
        ids.seeds, ids.normals, ids.intercepts, ids.latents, space="w", model="sface",
        sigma=spread))
    assert service.offset_units == "sigma"
    _, in_sigma = service.identity_page(20, n=3, max_off=2.5, seed=7)
    monkeypatch.setattr(service, "identities", ids)
    _, in_raw = service.identity_page(20, n=3, max_off=2.5 * 0.4, seed=7)
    for a, b in zip(in_sigma[1:], in_raw[1:]):     # the same faces, offsets counted in sigma
        assert float(a.split()[1]) == pytest.approx(float(b.split()[1][:-1]) / 0.4, abs=0.02)
        assert a.split(": ")[1] == b.split(": ")[1]
    with pytest.raises(KeyError, match="no identity boundary for seed 5"):
        service.identity_page(5)
    with pytest.raises(ValueError, match="--mapping"):
        service.swap(service.face_from_seed(1), service.face_from_seed(2))


# -- the command ------------------------------------------------------------------------------------
def test_serve_is_local_by_default_and_warns_when_exposed(monkeypatch, capsys) -> None:
    from facelatent.cli import serve
    from facelatent.webui import app, load

    calls = []
    monkeypatch.setattr(load, "load_service", lambda **kw: type("S", (), {"directions": {}})())
    monkeypatch.setattr(app, "launch", lambda service, **kw: calls.append(kw))
    parser = __import__("argparse").ArgumentParser()
    sub = parser.add_subparsers()
    serve.register(sub)
    args = parser.parse_args(["serve"])
    assert serve.run(args) == 0
    assert calls[-1] == {"host": "127.0.0.1", "port": 7860, "share": False}
    assert "warning" not in capsys.readouterr().err
    assert serve.run(parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "8000"])) == 0
    assert calls[-1]["host"] == "0.0.0.0"
    assert "anyone who can reach this machine" in capsys.readouterr().err


def test_the_cli_module_imports_nothing_heavy() -> None:
    import ast

    from facelatent.cli import serve

    tree = ast.parse(Path(serve.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top for a in n.names} | {
        (n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert names <= {"__future__", "argparse", "importlib", "sys", "annotations", ""}


# -- real models ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_photo_is_aligned_inverted_edited_and_saved(tmp_path: Path) -> None:
    from facelatent.editing.start import load_start
    from facelatent.webui.load import load_service
    from facelatent.weights import file_path

    service = load_service(sefa=0, invert_steps=3, preview_size=128, boundaries=None)
    seen: list[float] = []
    face = service.face_from_photo(file_path("test-photos", "obama.jpg").read_bytes(),
                                   "obama.jpg", lambda f, text: seen.append(f))
    assert face.origin == "photo" and face.name == "obama_face0" and face.seed is None
    assert face.latent.shape == (1, 23, 512) and face.aligned.shape == (256, 256, 3)
    assert seen == [1 / 3, 2 / 3, 1.0] and "inverted in W+ (3 steps" in face.note
    render = service.render(face, Edit({"smile": 2.0}))
    assert render.preview.shape == (128, 128, 3)
    report = service.report(face, service.analyse(render))
    sface = report["identity"][1]
    assert sface["model"] == "sface" and not sface["independent"]     # in the inversion loss
    smile = next(r for r in report["attributes"] if r["attribute"] == "smile_logit")
    assert smile["now"] > smile["unedited"]
    _, npz = service.export(face, Edit({"smile": 2.0}), render)
    start = load_start([npz], "w")
    np.testing.assert_array_equal(start.latents, render.latent.numpy())


def test_only_the_front_end_imports_gradio() -> None:
    import subprocess
    import sys

    code = ("import sys, facelatent, facelatent.webui.service, facelatent.webui.load; "
            "from facelatent.cli import build_parser; build_parser().parse_args(['serve']); "
            "print('gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_page_messages_are_one_escaped_line() -> None:
    pytest.importorskip("gradio")
    from facelatent.errors import WeightsError
    from facelatent.webui.app import _message

    assert _message(ValueError("seed <b>x</b>\nmore")) == "**Error:** seed &lt;b&gt;x&lt;/b&gt;"
    assert "weights fetch" in _message(WeightsError("run `facelatent weights fetch`"))
    assert _message(RuntimeError("secret /etc/path")).startswith("**Error:** something went wrong")
    assert "/etc/path" not in _message(RuntimeError("secret /etc/path"))
