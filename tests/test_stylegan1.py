"""Tests of InterFaceGAN's StyleGAN (v1) checkpoints (``stylegan1:PATH``).

Parity: tests/fixtures/interfacegan_models holds two small random-weight StyleGANs built and
saved by InterFaceGAN's own code, with the images its wrapper made from them (see the README
there). Ours must reproduce every image within 1e-4 of its largest magnitude through Z and W
(truncation psi 1, and 0.7 on the first 8 rows as InterFaceGAN configures it) and W+. The
truncation is the generator's own (synthesis of a single w, default on; ``?truncation=off``
switches it off), so ``synthesis(mapping(z))`` is InterFaceGAN's image of z.
The refusal of a `.pth` that runs code is tested for both InterFaceGAN families in
test_pggan.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from generator_checks import (
    check_images,
    check_synthesis,
    generate_refuses,
    relative_error,
    with_reference,
)
from PIL import Image

from facelatent.cli import main
from facelatent.errors import FileFormatError
from facelatent.generators import Generator, get_generator
from facelatent.generators.base import z_from_seeds
from facelatent.generators.stylegan1 import StyleGAN1, load_stylegan1, parse_spec
from facelatent.images import to_uint8

FIXTURES = Path(__file__).parent / "fixtures" / "interfacegan_models"
NETS = ("stylegan_res32", "stylegan_res64_fused")
TAGS = {1.0: "psi1", 0.7: "psi07"}
OTHER = {1.0: 0.7, 0.7: 1.0}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=NETS)
def net(request: pytest.FixtureRequest) -> tuple[StyleGAN1, dict[str, np.ndarray]]:
    G = get_generator(f"stylegan1:{FIXTURES / request.param}.pth")
    assert isinstance(G, StyleGAN1)
    return with_reference(G, FIXTURES / f"{request.param}.npz")


def _configured(G: StyleGAN1, psi: float) -> StyleGAN1:
    """``G`` for psi 0.7 (the default configuration); loaded again with ?truncation=off for 1."""
    if psi == 0.7:
        return G
    off = get_generator(f"{G.name}?truncation=off")
    assert isinstance(off, StyleGAN1) and not off.truncates
    return off


# -- parity with InterFaceGAN's code ------------------------------------------------------------
@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_z_path_matches_the_official_code(net, psi: float) -> None:
    """synthesis(mapping(z)): the default configuration is InterFaceGAN's psi 0.7 on the first
    8 rows, ?truncation=off its psi 1; w itself is their untruncated w either way."""
    G, ref = net
    G = _configured(G, psi)
    z = z_from_seeds(ref["seeds"].tolist(), G.z_dim)
    np.testing.assert_array_equal(z.numpy(), ref["z"])
    with torch.no_grad():
        w = G.mapping(z)
        images = G.synthesis(w)
    np.testing.assert_allclose(w.numpy(), ref["w_psi1"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(G.truncate_layers(w).numpy(), ref[f"wp_{TAGS[psi]}"], rtol=0,
                               atol=1e-5)
    check_images(images, ref[f"img_z_{TAGS[psi]}"])
    other = ref[f"img_z_{TAGS[OTHER[psi]]}"]    # the other setting's image is far away
    assert relative_error(images, other) > 100 * relative_error(images, ref[f"img_z_{TAGS[psi]}"])


@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_w_path_matches_the_official_code(net, psi: float) -> None:
    """A single w (here 1.3 x their w) is truncated by synthesis, as their W path does."""
    G, ref = net
    G = _configured(G, psi)
    w = torch.from_numpy(ref["w_in"])
    with torch.no_grad():
        images = G.synthesis(w)
    np.testing.assert_allclose(G.truncate_layers(w).numpy(), ref[f"wp_w_{TAGS[psi]}"], rtol=0,
                               atol=1e-6)
    check_images(images, ref[f"img_w_{TAGS[psi]}"])


@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_explicit_first_rows_truncation_matches_the_official_code(net, psi: float) -> None:
    """truncate_layers with an explicit psi, drawn as W+ (untruncated), on any configuration."""
    G, ref = net
    with torch.no_grad():
        ws = G.truncate_layers(G.mapping(torch.from_numpy(ref["z"])), psi, layers=8)
        images = G.synthesis(ws)
    np.testing.assert_allclose(ws.numpy(), ref[f"wp_{TAGS[psi]}"], rtol=0, atol=1e-5)
    check_images(images, ref[f"img_z_{TAGS[psi]}"])


def test_wplus_path_matches_the_official_code(net) -> None:
    """W+ codes are used as given: the default (truncating) generator and ?truncation=off
    draw them identically, and as InterFaceGAN's WP path does."""
    G, ref = net
    assert G.truncates
    check_synthesis(G, ref["wplus_in"], ref["img_wplus"])
    wplus = torch.from_numpy(ref["wplus_in"])
    with torch.no_grad():
        assert torch.equal(G.synthesis(wplus), _configured(G, 1.0).synthesis(wplus))
        w = wplus[:, 0]
        broadcast = w[:, None].expand(-1, G.num_ws, -1)     # the same w on every row, as W+
        assert not torch.allclose(G.synthesis(broadcast), G.synthesis(w), atol=1e-3)
        assert torch.equal(G.synthesis(G.truncate_layers(w)), G.synthesis(w))


def test_a_level_of_detail_matches_the_official_code(net, tmp_path: Path) -> None:
    G, ref = net
    state = torch.load(FIXTURES / G.name.rsplit("/", 1)[1], weights_only=True)
    state["synthesis.lod"] = torch.tensor(1.0)
    torch.save(state, tmp_path / "lod1.pth")
    with torch.no_grad():
        images = load_stylegan1(tmp_path / "lod1.pth").synthesis(torch.from_numpy(ref["wplus_in"]))
    check_images(images, ref["img_wplus_lod1"])


# -- the architecture, truncation and noise ------------------------------------------------------
def test_architecture_comes_from_the_tensors() -> None:
    G = load_stylegan1(FIXTURES / "stylegan_res64_fused.pth")
    assert isinstance(G, Generator)
    assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (48, 32, 10, 64)
    assert G.cfg.mapping_widths == (48, *[40] * 7, 32)
    assert G.cfg.layout.widths == (32, 32, 16, 16, 8) and all(G.cfg.layout.fused)
    small = load_stylegan1(FIXTURES / "stylegan_res32.pth")
    assert (small.z_dim, small.num_ws, small.resolution, len(small.cfg.mapping_widths)) == \
        (32, 8, 32, 5)
    assert not any(small.cfg.layout.fused)
    with np.load(FIXTURES / "stylegan_res64_fused.npz") as ref:
        np.testing.assert_array_equal(G.w_avg.numpy(), ref["w_avg"])
    assert G.name == f"stylegan1:{FIXTURES / 'stylegan_res64_fused.pth'}"


OFFICIAL_TABLE = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def _official_shapes(resolution: int) -> dict[str, torch.Tensor]:
    """Every tensor name and shape of InterFaceGAN's StyleGANGeneratorModel(resolution) with
    fused_scale='auto' (the transposed conv from 128x128 up), as zero-memory tensors."""
    out = {"truncation.w_avg": torch.zeros(512), "synthesis.lod": torch.zeros(())}
    for i in range(8):
        out[f"mapping.dense{i}.linear.weight"] = torch.zeros(()).expand(512, 512)
        out[f"mapping.dense{i}.wscale.bias"] = torch.zeros(512)
    out["synthesis.layer0.first_layer"] = torch.zeros(()).expand(1, 512, 4, 4)
    resolutions = [2**i for i in range(2, int(np.log2(resolution)) + 1)]
    for b, res in enumerate(resolutions):
        cout, cin = OFFICIAL_TABLE[res], OFFICIAL_TABLE[max(res // 2, 4)]
        for i in (2 * b, 2 * b + 1):
            layer = f"synthesis.layer{i}"
            if i == 2 * b and b > 0:
                if res >= 128:
                    out[f"{layer}.weight"] = torch.zeros(()).expand(3, 3, cin, cout)
                else:
                    out[f"{layer}.conv.weight"] = torch.zeros(()).expand(cout, cin, 3, 3)
                out[f"{layer}.blur.kernel"] = (torch.tensor([1.0, 2, 1]).outer(
                    torch.tensor([1.0, 2, 1])) / 16).expand(cout, 1, 3, 3)
            elif i == 2 * b + 1:
                out[f"{layer}.conv.weight"] = torch.zeros(()).expand(cout, cout, 3, 3)
            epilogue = f"{layer}.epilogue"
            out[f"{epilogue}.apply_noise.noise"] = torch.zeros(()).expand(1, 1, res, res)
            out[f"{epilogue}.apply_noise.weight"] = torch.zeros(cout)
            out[f"{epilogue}.bias"] = torch.zeros(cout)
            out[f"{epilogue}.style_mod.dense.linear.weight"] = torch.zeros(()).expand(2 * cout,
                                                                                      512)
            out[f"{epilogue}.style_mod.dense.wscale.bias"] = torch.zeros(2 * cout)
        out[f"synthesis.output{b}.conv.weight"] = torch.zeros(()).expand(3, cout, 1, 1)
        out[f"synthesis.output{b}.bias"] = torch.zeros(3)
    return out


@pytest.mark.parametrize("resolution", [1024, 256])
def test_architecture_of_the_official_tables(tmp_path: Path, resolution: int) -> None:
    torch.save(_official_shapes(resolution), tmp_path / "official.pth")
    G = load_stylegan1(tmp_path / "official.pth")
    log2 = int(np.log2(resolution))
    assert (G.z_dim, G.w_dim, G.resolution, G.num_ws) == (512, 512, resolution, 2 * log2 - 2)
    assert G.cfg.mapping_widths == (512,) * 9
    assert G.cfg.layout.widths == tuple(OFFICIAL_TABLE[2**i] for i in range(2, log2 + 1))
    assert G.cfg.layout.fused == tuple(2**i >= 128 for i in range(3, log2 + 1))


def test_the_configured_truncation_and_the_contracts_psi() -> None:
    path = FIXTURES / "stylegan_res64_fused.pth"
    G = load_stylegan1(path)
    assert (G.truncation_psi, G.truncation_layers, G.truncates) == (0.7, 8, True)
    assert G.name == f"stylegan1:{path}"
    assert load_stylegan1(FIXTURES / "stylegan_res32.pth").truncation_layers == 8   # all rows
    z = z_from_seeds([3, 4], G.z_dim)
    with torch.no_grad():
        w = G.mapping(z)
        ws = G.truncate_layers(w)                                    # InterFaceGAN's rows
        with pytest.raises(ValueError, match=r"truncation_psi \(--psi\) is 0.7, but stylegan1:.*"
                           r"first 8 of 10 style rows .* by psi 0.7 .*truncate twice; keep "
                           r"--psi 1 .*or load stylegan1:.*\.pth\?truncation=off") as info:
            G.mapping(z, truncation_psi=0.7)
        assert "\n" not in str(info.value)
        off = load_stylegan1(path, truncation_psi=1.0)
        assert not off.truncates and off.name == f"stylegan1:{path}?truncation=1.0,8"
        torch.testing.assert_close(off.mapping(z, truncation_psi=0.7),
                                   G.w_avg + 0.7 * (w - G.w_avg))        # every row
        assert torch.equal(off.synthesis(w), G.synthesis(w[:, None].expand(-1, 10, -1)))
    pulled = G.w_avg + 0.7 * (w - G.w_avg)
    torch.testing.assert_close(ws[:, :8], pulled[:, None].expand(-1, 8, -1))
    torch.testing.assert_close(ws[:, 8:], w[:, None].expand(-1, 2, -1), rtol=0, atol=1e-6)
    assert (ws[:, :8] - w[:, None]).abs().max() > 0.1


@pytest.mark.parametrize(("option", "psi", "layers", "name"), [
    ("", 0.7, 8, ""),
    ("?truncation=off", 1.0, 0, "?truncation=off"),
    ("?truncation=OFF", 1.0, 0, "?truncation=off"),
    ("?truncation=0.5", 0.5, 8, "?truncation=0.5,8"),
    ("?truncation=0.5,4", 0.5, 4, "?truncation=0.5,4"),
    ("?truncation=0.7,8", 0.7, 8, ""),
    ("?truncation=-0.25,10", -0.25, 10, "?truncation=-0.25,10"),
    ("?truncation=1,3", 1.0, 3, "?truncation=1.0,3"),
])
def test_the_truncation_option_of_the_spec(option: str, psi: float, layers: int,
                                           name: str) -> None:
    path = FIXTURES / "stylegan_res64_fused.pth"
    G = get_generator(f"stylegan1:{path}{option}")
    assert isinstance(G, StyleGAN1)
    assert (G.truncation_psi, G.truncation_layers) == (psi, layers)
    assert G.name == f"stylegan1:{path}{name}"
    again = get_generator(G.name)                     # a store's record builds it again
    assert isinstance(again, StyleGAN1) and again.cfg == G.cfg
    w = torch.from_numpy(np.load(FIXTURES / "stylegan_res64_fused.npz")["w_in"])
    with torch.no_grad():
        expected = G.synthesis(G.truncate_layers(w, psi, layers))
        assert torch.equal(G.synthesis(w), expected)


@pytest.mark.parametrize(("option", "message"), [
    ("?truncation=", "must be PSI, PSI,LAYERS or off .*got ''"),
    ("?truncation=strong", "must be PSI, PSI,LAYERS or off .*got 'strong'"),
    ("?truncation=0.7,eight", "must be PSI, PSI,LAYERS or off"),
    ("?truncation=nan", "must be PSI, PSI,LAYERS or off"),
    ("?truncation=inf,8", "must be PSI, PSI,LAYERS or off"),
    ("?truncation=0.7,11", (r"truncation_layers must be an integer from 0 to 10 \(this "
                            r"network's num_ws\), got 11")),
    ("?truncation=0.7,-1", "truncation_layers must be an integer from 0 to 10"),
])
def test_a_bad_truncation_option_is_one_clear_error(tmp_path: Path, option: str, message: str,
                                                    capsys) -> None:
    model = f"stylegan1:{FIXTURES / 'stylegan_res64_fused.pth'}{option}"
    with pytest.raises(ValueError, match=message):
        get_generator(model)
    assert message.split(" ")[0] in generate_refuses(model, tmp_path / "out", capsys)
    assert not (tmp_path / "out").exists()


def test_parse_spec() -> None:
    assert parse_spec("a/b.pth") == ("a/b.pth", None, None)
    assert parse_spec("a?b.pth") == ("a?b.pth", None, None)        # a '?' of the file name
    assert parse_spec("a.pth?truncation=0.6,2") == ("a.pth", 0.6, 2)
    assert parse_spec("a.pth?truncation=off") == ("a.pth", 1.0, 0)
    with pytest.raises(ValueError, match=r"names no file; expected stylegan1:PATH"):
        parse_spec("?truncation=off")


def test_noise_modes() -> None:
    G = load_stylegan1(FIXTURES / "stylegan_res32.pth")
    w = G.mapping(z_from_seeds([0], G.z_dim))
    with torch.no_grad():
        const = G.synthesis(w)
        torch.testing.assert_close(G.synthesis(w), const, rtol=0, atol=0)   # stored noise
        G.noise_mode = "random"
        assert not torch.allclose(G.synthesis(w), const)
        G.noise_mode = "none"
        assert not torch.allclose(G.synthesis(w), const)
        G.noise_mode = "loud"
        with pytest.raises(ValueError, match="noise_mode must be one of"):
            G.synthesis(w)


def test_batched_equals_one_by_one() -> None:
    G = load_stylegan1(FIXTURES / "stylegan_res64_fused.pth")
    z = z_from_seeds([5, 6, 7], G.z_dim)
    with torch.no_grad():
        batch = G(z)
        single = torch.cat([G(z[i: i + 1]) for i in range(3)])
    assert float((batch - single).abs().max() / batch.abs().max()) <= 1e-5   # float rounding


def test_missing_extra_and_odd_tensors_are_refused(tmp_path: Path) -> None:
    base = FIXTURES / "stylegan_res32.pth"
    state = torch.load(base, weights_only=True)
    del state["synthesis.layer5.epilogue.apply_noise.noise"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(FileFormatError, match="no tensor 'synthesis.layer5.epilogue.apply_noise"):
        load_stylegan1(tmp_path / "missing.pth")
    state = torch.load(base, weights_only=True)
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(FileFormatError, match="does not use: extra.weight"):
        load_stylegan1(tmp_path / "extra.pth")
    state = torch.load(base, weights_only=True)
    state["synthesis.layer2.blur.kernel"] = torch.full_like(state["synthesis.layer2.blur.kernel"],
                                                            1 / 9)
    torch.save(state, tmp_path / "box.pth")
    with pytest.raises(FileFormatError, match=r"layer2.blur.kernel is not the \[1, 2, 1\] blur"):
        load_stylegan1(tmp_path / "box.pth")
    state = torch.load(base, weights_only=True)
    state["truncation.truncation"] = torch.full((1, 8, 1), 0.5)   # their setting, if kept
    torch.save(state, tmp_path / "with-setting.pth")
    kept = load_stylegan1(tmp_path / "with-setting.pth")    # ignored, as InterFaceGAN's load()
    assert (kept.num_ws, kept.truncation_psi, kept.truncation_layers) == (8, 0.7, 8)


def test_a_pggan_file_named_as_stylegan1_points_to_pggan() -> None:
    with pytest.raises(FileFormatError, match="load it as pggan:"):
        load_stylegan1(FIXTURES / "pggan_res32.pth")


def _generated(out: Path, seeds: list[int]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(out / f"seed{s:04d}.png")) for s in seeds])


def test_generate_draws_interfacegans_truncation_by_default(tmp_path: Path, capsys) -> None:
    """`facelatent generate --model stylegan1:PATH` (psi 1, the default) writes InterFaceGAN's
    psi-0.7-on-8-rows images and the untruncated w; ?truncation=off writes their psi-1 images."""
    path = FIXTURES / "stylegan_res64_fused.pth"
    with np.load(FIXTURES / "stylegan_res64_fused.npz") as ref:
        seeds, official = ref["seeds"].tolist(), {psi: ref[f"img_z_{TAGS[psi]}"] for psi in TAGS}
        w_official = ref["w_psi1"]
    for option, psi in (("", 0.7), ("?truncation=off", 1.0)):
        out = tmp_path / f"faces{psi}"
        assert main(["generate", "--model", f"stylegan1:{path}{option}", "--seeds",
                     ",".join(map(str, seeds)), "--out", str(out), "--device", "cpu"]) == 0
        assert "wrote 2 images" in capsys.readouterr().out
        pixels = _generated(out, seeds).astype(int)
        expected = to_uint8(torch.from_numpy(official[psi])).astype(int)
        assert np.abs(pixels - expected).max() <= 1                  # PNG rounding at most
        other = to_uint8(torch.from_numpy(official[OTHER[psi]])).astype(int)
        assert np.abs(pixels - other).max() > 20
        with np.load(out / "latents.npz") as latents:
            np.testing.assert_allclose(latents["w"], w_official, rtol=0, atol=1e-5)
            assert str(latents["generator"]) == f"stylegan1:{path}{option}"


def test_generate_with_psi_refuses_to_truncate_twice(tmp_path: Path, capsys) -> None:
    """--psi with the configured truncation on is one line and nothing written; with it off,
    --psi pulls every row: at 32x32 (8 rows, all truncated by InterFaceGAN) that is again
    InterFaceGAN's psi-0.7 image."""
    path = FIXTURES / "stylegan_res32.pth"
    assert main(["generate", "--model", f"stylegan1:{path}", "--seeds", "0-1", "--psi", "0.7",
                 "--out", str(tmp_path / "twice"), "--device", "cpu"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith("facelatent:")]                    # not the progress bar's
    assert len(err) == 1 and "truncate twice" in err[0] and "?truncation=off" in err[0]
    assert not (tmp_path / "twice").exists()
    out = tmp_path / "faces"
    assert main(["generate", "--model", f"stylegan1:{path}?truncation=off", "--seeds", "0-1",
                 "--psi", "0.7", "--out", str(out), "--device", "cpu"]) == 0
    with np.load(FIXTURES / "stylegan_res32.npz") as ref:
        expected = to_uint8(torch.from_numpy(ref["img_z_psi07"])).astype(int)
        pulled = ref["w_avg"] + 0.7 * (ref["w_psi1"] - ref["w_avg"])
    assert np.abs(_generated(out, [0, 1]).astype(int) - expected).max() <= 1
    with np.load(out / "latents.npz") as latents:
        np.testing.assert_allclose(latents["w"], pulled, rtol=0, atol=1e-5)


def test_a_layer_wise_edit_starts_from_the_face_synthesis_draws() -> None:
    """A layer-wise edit broadcasts w to the W+ code synthesis(w) draws (its first rows
    truncated), so strength 0 is the unedited face and a range moves only those rows."""
    from facelatent.boundaries.boundary import Boundary
    from facelatent.editing.apply import edit_images
    from facelatent.generators.base import as_wplus

    G = load_stylegan1(FIXTURES / "stylegan_res32.pth", truncation_layers=4)
    rng = np.random.default_rng(0)
    b = Boundary.from_direction(rng.standard_normal(G.w_dim), space="w", attribute="x")
    with torch.no_grad():
        plain = G.synthesis(G.mapping(z_from_seeds([5, 6], G.z_dim)))
        ws = as_wplus(G, G.mapping(z_from_seeds([5, 6], G.z_dim)))
    both = edit_images(G, [5, 6], b, [0.0, 2.0], layers="5-7", unit="raw")
    assert relative_error(both[:, 0], plain.numpy()) < 1e-5
    assert (both[:, 1] - plain).abs().max() > 1e-3
    assert ws.shape == (2, G.num_ws, G.w_dim) and as_wplus(G, ws) is ws
    off = load_stylegan1(FIXTURES / "stylegan_res32.pth", truncation_psi=1.0)
    w = off.mapping(z_from_seeds([5], off.z_dim))
    assert torch.equal(as_wplus(off, w), w[:, None].expand(-1, off.num_ws, -1))
