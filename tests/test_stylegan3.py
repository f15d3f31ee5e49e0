"""Tests of the StyleGAN3 port (T and R configs), loaded from NVIDIA's pickles as stylegan3:PATH.

Parity: tests/fixtures/stylegan3 holds a small stylegan3-t and a small stylegan3-r generator
with random weights, built and pickled by NVIDIA's own code, with the images that code produced
on its CPU reference path (see the README there). Our port must reproduce every image within
1e-4 of its largest magnitude through Z (psi 1 and 0.7), W and W+.
Safety: the pickles are read by the same safe reader as StyleGAN2's; StyleGAN3's layers keep
small numpy arrays, which the reader rebuilds from numeric bytes only.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from generator_checks import (
    RunsACommand,
    check_synthesis,
    check_z_path,
    generate_refuses,
    with_reference,
)

from facelatent.cli import main
from facelatent.errors import FacelatentError, FileFormatError
from facelatent.formats.nvidia_pickle import NetworkRecord, load_network_pickle
from facelatent.generators import Generator, get_generator
from facelatent.generators.base import z_from_seeds
from facelatent.generators.converted import CONFIG_FILE, load_converted
from facelatent.generators.stylegan3 import (
    StyleGAN3,
    StyleGAN3Config,
    layer_plan,
    load_stylegan3_pickle,
)
from facelatent.generators.stylegan3_ops import (
    filtered_lrelu,
    fir_downsample,
    fir_upsample,
)
from facelatent.generators.stylegan_ops import upfirdn2d

FIXTURES = Path(__file__).parent / "fixtures" / "stylegan3"
NETS = ("sg3t_res32", "sg3r_res64")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=NETS)
def net(request: pytest.FixtureRequest) -> tuple[StyleGAN3, dict[str, np.ndarray]]:
    G = load_stylegan3_pickle(FIXTURES / f"{request.param}.pkl")
    return with_reference(G, FIXTURES / f"{request.param}.npz")


# -- parity with NVIDIA's code ------------------------------------------------------------------
@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_z_path_matches_the_official_code(net, psi: float) -> None:
    G, ref = net
    tag = "psi1" if psi == 1.0 else "psi07"
    check_z_path(G, ref, psi, f"w_{tag}", f"img_z_{tag}")


@pytest.mark.parametrize("space", ["w", "wplus"])
def test_w_and_wplus_paths_match_the_official_code(net, space: str) -> None:
    G, ref = net
    check_synthesis(G, ref[space], ref[f"img_{space}"])


def test_architecture_comes_from_the_checkpoint() -> None:
    t = load_stylegan3_pickle(FIXTURES / "sg3t_res32.pkl")
    assert isinstance(t, Generator) and t.name.startswith("stylegan3:")
    assert (t.z_dim, t.w_dim, t.num_ws, t.resolution) == (32, 32, 16, 32)
    assert (t.cfg.mapping_layers, t.cfg.conv_kernel, t.cfg.output_scale) == (2, 3, 0.25)
    names = t.synthesis_net.layer_names
    assert names[0] == "L0_36_32" and names[-1] == "L14_32_3" and len(names) == 15
    r = load_stylegan3_pickle(FIXTURES / "sg3r_res64.pkl")
    assert (r.z_dim, r.w_dim, r.num_ws, r.resolution) == (48, 40, 12, 64)
    assert (r.cfg.conv_kernel, r.cfg.use_radial_filters, r.cfg.conv_clamp) == (1, True, 1.5)
    assert (r.cfg.output_scale, r.cfg.margin_size, r.cfg.num_layers) == (0.5, 6, 10)
    # R: 2-D radial downsampling filters except in the critically sampled layers; the last
    # layer has no filter; T: separable filters throughout
    shapes = [(None if layer.down_filter is None else tuple(layer.down_filter.shape))
              for layer in (getattr(r.synthesis_net, n) for n in r.synthesis_net.layer_names)]
    assert shapes == [(12, 12)] * 8 + [(12,), (12,), None]
    assert all(getattr(t.synthesis_net, n).down_filter.ndim == 1 for n in names[:-1])
    # the stored filters are used as stored (the official design, not recomputed)
    stored = load_network_pickle(FIXTURES / "sg3r_res64.pkl")["G_ema"].tensors()
    torch.testing.assert_close(r.synthesis_net.L3_44_48.down_filter,
                               stored["synthesis.L3_44_48.down_filter"], rtol=0, atol=0)
    assert float(r.synthesis_net.L3_44_48.magnitude_ema) != 1.0


def _record(**kwargs: object) -> NetworkRecord:
    base = {"z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 1024, "img_channels": 3,
            "mapping_kwargs": {"num_layers": 2}, "channel_base": 32768, "channel_max": 512,
            "magnitude_ema_beta": np.float64(0.999)}
    return NetworkRecord("Generator", 6, (), {**base, **kwargs}, {})


# the layer names and paddings NVIDIA's code derives for its published 1024x1024 T and R
# networks (read from the official SynthesisNetwork when these fixtures were made)
T_1024 = ["L0_36_512", "L1_36_512", "L2_52_512", "L3_52_512", "L4_84_512", "L5_148_512",
          "L6_148_512", "L7_276_323", "L8_276_203", "L9_532_128", "L10_1044_81", "L11_1044_51",
          "L12_1044_32", "L13_1024_32", "L14_1024_3"]
R_1024 = ["L0_36_1024", "L1_36_1024", "L2_52_1024", "L3_52_1024", "L4_84_1024", "L5_148_1024",
          "L6_148_1024", "L7_276_645", "L8_276_406", "L9_532_256", "L10_1044_161",
          "L11_1044_102", "L12_1044_64", "L13_1024_64", "L14_1024_3"]
SAME, DOUBLE = (9, 8, 9, 8), (-6, -9, -6, -9)  # T: the rate stays, or doubles
T_PADDING = [SAME, SAME, DOUBLE, SAME, DOUBLE, DOUBLE, SAME, DOUBLE, SAME, DOUBLE, DOUBLE, SAME, SAME,
             (-11, -12, -11, -12), (0, 0, 0, 0)]


def test_config_of_the_published_t_and_r_networks() -> None:
    """The layer plan of NVIDIA's 1024x1024 networks, from their constructor arguments."""
    t = StyleGAN3Config.from_init_kwargs(_record())
    first, layers = layer_plan(t)
    assert (t.num_ws, first.channels, first.size, first.sampling_rate) == (16, 512, 36, 16.0)
    assert [layer.name for layer in layers] == T_1024
    assert [layer.padding for layer in layers] == T_PADDING
    r = StyleGAN3Config.from_init_kwargs(_record(conv_kernel=1, use_radial_filters=True,
                                                 channel_base=65536, channel_max=1024))
    _, layers = layer_plan(r)
    assert [layer.name for layer in layers] == R_1024
    assert layers[0].padding == (11, 10, 11, 10) and layers[2].padding == (-2, -5, -2, -5)
    assert [layer.down_radial for layer in layers] == [True] * 12 + [False] * 3
    with pytest.raises(FileFormatError, match="argument 'kernel_size'=5 is not supported"):
        StyleGAN3Config.from_init_kwargs(_record(kernel_size=5))
    with pytest.raises(FileFormatError, match="mapping argument 'layer_features'"):
        StyleGAN3Config.from_init_kwargs(_record(mapping_kwargs={"layer_features": 8}))


def test_a_sample_does_not_depend_on_its_batch(net) -> None:
    G, _ = net
    w = G.mapping(z_from_seeds([5, 6, 7], G.z_dim))
    together = G.synthesis(w)
    alone = torch.cat([G.synthesis(w[i: i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(G.synthesis(w), together, rtol=0, atol=0)   # no noise


def test_gradients_reach_every_wplus_row() -> None:
    G = load_stylegan3_pickle(FIXTURES / "sg3t_res32.pkl")
    ws = G.mapping(z_from_seeds([3], G.z_dim)).unsqueeze(1).repeat(1, G.num_ws, 1)
    ws.requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all()
    assert (ws.grad.abs().amax(dim=2) > 0).all()


def test_input_checks() -> None:
    G = load_stylegan3_pickle(FIXTURES / "sg3t_res32.pkl")
    with pytest.raises(ValueError, match=r"z must have shape \[N, 32\]"):
        G.mapping(torch.zeros(2, 31))
    with pytest.raises(ValueError, match=r"ws must have shape \[N, 32\] \(W\) or \[N, 16, 32\]"):
        G.synthesis(torch.zeros(2, 15, 32))


@pytest.mark.parametrize("up, padding", [(2, (9, 8, 9, 8)), (4, (-6, -9, -6, -9)),
                                         (2, (-5, -6, 3, 15)), (1, (6, 5, 6, 5))])
@pytest.mark.parametrize("radial", [False, True])
def test_polyphase_resampling_equals_upfirdn2d(up: int, padding: tuple, radial: bool) -> None:
    """The polyphase ops compute what zero insertion + padding + convolution + subsampling
    (the reference `upfirdn2d`) computes, for separable and 2-D filters."""
    gen = torch.Generator().manual_seed(up)
    x = torch.randn(2, 3, 24, 24, generator=gen)
    taps = torch.rand(12, generator=gen)
    f = torch.outer(taps, taps) + 0.1 * torch.rand(12, 12, generator=gen) if radial else taps
    full = f if radial else torch.outer(taps, taps)
    ours = fir_upsample(x, f, up, padding, gain=up * up)
    theirs = upfirdn2d(x, full, up=up, padding=padding, gain=up * up)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5 * float(theirs.abs().max()))
    for down in (1, 2):
        reference = upfirdn2d(theirs, full, down=down)
        torch.testing.assert_close(fir_downsample(theirs, f, down), reference, rtol=0,
                                   atol=1e-5 * float(reference.abs().max()))


def test_filtered_lrelu_clamps_and_the_last_layer_is_linear() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 9, generator=gen)
    taps = torch.tensor([0.1, 0.4, 0.4, 0.1])
    out = filtered_lrelu(x, torch.zeros(3), taps, torch.outer(taps, taps), up=2, down=2,
                         padding=(3, 2, 3, 2), gain=2**0.5, slope=0.2, clamp=0.5)
    assert out.shape == (2, 3, 9, 9) and float(out.abs().max()) <= 0.5 + 1e-6
    ident = filtered_lrelu(x, torch.ones(3), None, None, up=1, down=1, padding=(0, 0, 0, 0),
                           gain=1.0, slope=1.0, clamp=None)
    torch.testing.assert_close(ident, x + 1)


# -- the registry, the CLI and the reader -----------------------------------------------------------
def test_registry_and_generate_take_a_stylegan3_file(tmp_path: Path, capsys) -> None:
    path = FIXTURES / "sg3r_res64.pkl"
    G = get_generator(f"stylegan3:{path}", device="cpu")
    assert isinstance(G, StyleGAN3) and G.name == f"stylegan3:{path}"
    with pytest.raises(FacelatentError, match="names no file; expected stylegan3:PATH"):
        get_generator("stylegan3:")
    out = tmp_path / "faces"
    assert main(["generate", "--model", f"stylegan3:{path}", "--seeds", "0-1", "--psi", "0.7",
                 "--out", str(out), "--device", "cpu"]) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    with np.load(out / "latents.npz") as latents, np.load(path.with_suffix(".npz")) as ref:
        np.testing.assert_allclose(latents["w"], ref["w_psi07"], rtol=0, atol=1e-5)


def test_a_stylegan2_pickle_points_to_stylegan2() -> None:
    sg2 = FIXTURES.parent / "stylegan2ada" / "sg2ada_res32.pkl"
    with pytest.raises(FileFormatError, match="not a StyleGAN3 generator.*use stylegan2:PATH"):
        load_stylegan3_pickle(sg2)


def test_a_pickle_that_runs_a_shell_command_is_refused(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "sg3.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": RunsACommand(marker)}))
    with pytest.raises(FileFormatError, match=r"refusing global '(posix|os|nt)\.system' in sg3"):
        get_generator(f"stylegan3:{evil}")
    assert "refusing global" in generate_refuses(f"stylegan3:{evil}", tmp_path / "out", capsys)
    assert not marker.exists()


def test_numpy_arrays_are_read_as_numbers_only(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"sizes": np.array([36, 36]), "rate": np.arange(3.0)}))
    got = load_network_pickle(plain)
    assert got["sizes"].tolist() == [36, 36] and got["rate"].tolist() == [0.0, 1.0, 2.0]
    objects = tmp_path / "objects.pkl"
    objects.write_bytes(pickle.dumps({"G_ema": np.array([1, "x"], dtype=object)}))
    with pytest.raises(FileFormatError, match="dtype .* is not numeric"):
        load_network_pickle(objects)


def test_fixtures_hold_no_official_source() -> None:
    for path in FIXTURES.glob("*.pkl"):
        blob = path.read_bytes()
        for text in (b"import", b"def ", b"Copyright", b"NVIDIA"):
            assert text not in blob, (path.name, text)
        assert b"module source removed" in blob
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 2 * 2**20


# -- facelatent convert -------------------------------------------------------------------------
def test_convert_writes_a_stylegan3_that_computes_the_same(tmp_path: Path, capsys) -> None:
    source = FIXTURES / "sg3r_res64.pkl"
    out = tmp_path / "sg3r"
    assert main(["convert", f"stylegan3:{source}", str(out)]) == 0
    assert "load it as --model converted:" in capsys.readouterr().out
    config = json.loads((out / CONFIG_FILE).read_text())
    assert (config["architecture"], config["num_ws"], config["config"]["conv_kernel"]) == \
        ("stylegan3", 12, 1)
    G, H = load_stylegan3_pickle(source), load_converted(out)
    assert isinstance(H, StyleGAN3) and H.name == f"converted:{out}"
    ws = G.mapping(z_from_seeds(range(G.num_ws), G.z_dim)).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(H.synthesis(ws), G.synthesis(ws), rtol=0, atol=0)
    # a hostile config is refused before anything is built
    config["config"]["num_layers"] = 10_000
    (out / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(FileFormatError, match="config num_layers is 10000"):
        load_converted(out)


def test_sample_fit_and_edit_on_a_stylegan3_pickle(tmp_path: Path, monkeypatch, capsys) -> None:
    """`sample` -> `boundary fit` -> `edit` with --model stylegan3:PATH (random face models,
    as in test_stylegan2_pipeline.py: the scores are arbitrary, the plumbing is checked)."""
    from facelatent.faces import analysis
    from facelatent.faces.analysis import random_face_loaders

    loaders = random_face_loaders()
    monkeypatch.setattr(analysis, "_default_loaders", lambda: dict(loaders))
    model = f"stylegan3:{FIXTURES / 'sg3r_res64.pkl'}"
    store, boundary, out = tmp_path / "store", tmp_path / "smile.npz", tmp_path / "edits"
    assert main(["sample", "--model", model, "--n", "16", "--store", str(store), "--batch", "8",
                 "--psi", "0.8", "--attributes", "smile", "--identity", "none", "--device",
                 "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 16
    assert main(["boundary", "fit", "--store", str(store), "--attribute", "smile", "--ratio",
                 "0.25", "--bootstrap", "0", "--out", str(boundary), "--json"]) == 0
    assert main(["edit", "--model", model, "--seeds", "0-1", "--boundary", str(boundary),
                 "--store", str(store), "--steps", "3", "--size", "64", "--device", "cpu",
                 "--layers", "0-5", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    report = json.loads((out / "edit.json").read_text())
    assert (report["generator"], report["layers"]) == (model, [0, 1, 2, 3, 4, 5])
    assert (out / "seed0000.png").exists() and (out / "seed0001.png").exists()
