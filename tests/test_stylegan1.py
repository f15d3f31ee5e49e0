"""Tests of InterFaceGAN's StyleGAN (v1) checkpoints (``stylegan1:PATH``).

Parity: tests/fixtures/interfacegan_models holds two small random-weight StyleGANs built and
saved by InterFaceGAN's own code, with the images its wrapper made from them (see the README
there). Ours must reproduce every image within 1e-4 of its largest magnitude through Z and W
(truncation psi 1, and 0.7 on the first 8 rows as InterFaceGAN configures it) and W+.
The refusal of a `.pth` that runs code is tested for both InterFaceGAN families in
test_pggan.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from generator_checks import check_images, check_synthesis, with_reference

from facelatent.cli import main
from facelatent.errors import FileFormatError
from facelatent.generators import Generator, get_generator
from facelatent.generators.base import z_from_seeds
from facelatent.generators.stylegan1 import StyleGAN1, load_stylegan1

FIXTURES = Path(__file__).parent / "fixtures" / "interfacegan_models"
NETS = ("stylegan_res32", "stylegan_res64_fused")
TAGS = {1.0: "psi1", 0.7: "psi07"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=NETS)
def net(request: pytest.FixtureRequest) -> tuple[StyleGAN1, dict[str, np.ndarray]]:
    G = get_generator(f"stylegan1:{FIXTURES / request.param}.pth")
    assert isinstance(G, StyleGAN1)
    return with_reference(G, FIXTURES / f"{request.param}.npz")


# -- parity with InterFaceGAN's code ------------------------------------------------------------
@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_z_path_matches_the_official_code(net, psi: float) -> None:
    G, ref = net
    z = z_from_seeds(ref["seeds"].tolist(), G.z_dim)
    np.testing.assert_array_equal(z.numpy(), ref["z"])
    with torch.no_grad():
        w = G.mapping(z)
        ws = G.truncate_layers(w, psi)
        images = G.synthesis(ws)
    np.testing.assert_allclose(w.numpy(), ref["w_psi1"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ws.numpy(), ref[f"wp_{TAGS[psi]}"], rtol=0, atol=1e-5)
    check_images(images, ref[f"img_z_{TAGS[psi]}"])


@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_w_path_matches_the_official_code(net, psi: float) -> None:
    G, ref = net
    with torch.no_grad():
        ws = G.truncate_layers(torch.from_numpy(ref["w_in"]), psi)
        images = G.synthesis(ws)
    np.testing.assert_allclose(ws.numpy(), ref[f"wp_w_{TAGS[psi]}"], rtol=0, atol=1e-6)
    check_images(images, ref[f"img_w_{TAGS[psi]}"])


def test_wplus_path_matches_the_official_code(net) -> None:
    G, ref = net
    check_synthesis(G, ref["wplus_in"], ref["img_wplus"])


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


def test_truncation_of_the_contract_and_of_interfacegan() -> None:
    G = load_stylegan1(FIXTURES / "stylegan_res64_fused.pth")
    z = z_from_seeds([3, 4], G.z_dim)
    with torch.no_grad():
        w = G.mapping(z)
        torch.testing.assert_close(G.mapping(z, truncation_psi=0.7),
                                   G.w_avg + 0.7 * (w - G.w_avg))        # every row
        ws = G.truncate_layers(w, 0.7)                                   # InterFaceGAN's rows
    assert G.truncation_layers == 8
    pulled = G.w_avg + 0.7 * (w - G.w_avg)
    torch.testing.assert_close(ws[:, :8], pulled[:, None].expand(-1, 8, -1))
    torch.testing.assert_close(ws[:, 8:], w[:, None].expand(-1, 2, -1), rtol=0, atol=1e-6)
    assert (ws[:, :8] - w[:, None]).abs().max() > 0.1


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
        batch = G(z, truncation_psi=0.7)
        single = torch.cat([G(z[i: i + 1], truncation_psi=0.7) for i in range(3)])
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
    assert load_stylegan1(tmp_path / "with-setting.pth").num_ws == 8


def test_a_pggan_file_named_as_stylegan1_points_to_pggan() -> None:
    with pytest.raises(FileFormatError, match="load it as pggan:"):
        load_stylegan1(FIXTURES / "pggan_res32.pth")


def test_generate_takes_a_stylegan1_checkpoint(tmp_path: Path, capsys) -> None:
    path = FIXTURES / "stylegan_res64_fused.pth"
    out = tmp_path / "faces"
    assert main(["generate", "--model", f"stylegan1:{path}", "--seeds", "0-1", "--psi", "0.7",
                 "--out", str(out), "--device", "cpu"]) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    with np.load(out / "latents.npz") as latents:
        G = load_stylegan1(path)
        expected = G.mapping(z_from_seeds([0, 1], G.z_dim), truncation_psi=0.7)
        np.testing.assert_allclose(latents["w"], expected.numpy(), rtol=0, atol=1e-6)
