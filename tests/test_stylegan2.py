"""Tests of the StyleGAN2-ADA port and of the safe reader of NVIDIA's pickles.

Parity: tests/fixtures/stylegan2ada holds two small random-weight generators built and pickled
by NVIDIA's own code, with the images that code produced (see the README there). Our port must
reproduce every image within 1e-4 of its largest magnitude through Z (psi 1 and 0.7), W and W+.
Safety: pickles that ask for any other global (a shell command, eval) are refused before
anything runs. The sample -> boundary -> edit pipeline on a fixture is in
test_stylegan2_pipeline.py.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from generator_checks import RunsACommand, check_synthesis, check_z_path, with_reference

from facelatent.errors import FacelatentError, FileFormatError
from facelatent.formats.nvidia_pickle import NetworkRecord, load_network_pickle
from facelatent.generators import Generator, StyleGAN2, get_generator
from facelatent.generators.base import z_from_seeds
from facelatent.generators.stylegan2 import StyleGAN2Config, load_stylegan2_pickle
from facelatent.generators.stylegan_ops import bias_act, fir_filter, upsample2d

FIXTURES = Path(__file__).parent / "fixtures" / "stylegan2ada"
NETS = ("sg2ada_res32", "sg2ada_res64_clamp")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=NETS)
def net(request: pytest.FixtureRequest) -> tuple[StyleGAN2, dict[str, np.ndarray]]:
    G = load_stylegan2_pickle(FIXTURES / f"{request.param}.pkl")
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
    G = load_stylegan2_pickle(FIXTURES / "sg2ada_res64_clamp.pkl")
    assert isinstance(G, Generator)
    assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (64, 48, 10, 64)
    assert G.cfg.mapping_layers == 8 and G.cfg.conv_clamp == 2
    assert [G.cfg.channels(r) for r in G.cfg.block_resolutions] == [32, 32, 32, 32, 16]
    small = load_stylegan2_pickle(FIXTURES / "sg2ada_res32.pkl")
    assert (small.z_dim, small.num_ws, small.resolution, small.cfg.mapping_layers) == (32, 8, 32, 2)
    assert small.cfg.conv_clamp is None
    assert G.name.startswith("stylegan2:") and G.device == torch.device("cpu")


def _config(**synthesis: object) -> StyleGAN2Config:
    """A config from the full set of kwargs NVIDIA's converter of TF pickles writes."""
    mapping = {"num_layers": 4, "embed_features": None, "layer_features": None,
               "activation": "lrelu", "lr_multiplier": 0.01, "w_avg_beta": 0.995}
    synth = {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256,
             "architecture": "skip", "resample_filter": [1, 3, 3, 1], "use_noise": True,
             "activation": "lrelu", **synthesis}
    kwargs = {"z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 1024, "img_channels": 3,
              "mapping_kwargs": mapping, "synthesis_kwargs": synth}
    return StyleGAN2Config.from_init_kwargs(NetworkRecord("Generator", 6, (), kwargs, {}))


def test_config_reads_every_official_argument() -> None:
    cfg = _config()
    assert (cfg.resolution, cfg.num_ws, cfg.mapping_layers, cfg.conv_clamp) == (1024, 18, 4, 256)
    assert [cfg.channels(r) for r in (4, 64, 128, 1024)] == [512, 512, 256, 32]
    with pytest.raises(FileFormatError, match="architecture 'resnet' is not supported"):
        _config(architecture="resnet")
    with pytest.raises(FileFormatError, match="argument 'kernel_size'=5 is not supported"):
        _config(kernel_size=5)
    with pytest.raises(FileFormatError, match="activation 'swish' is not supported"):
        _config(activation="swish")


def test_a_sample_does_not_depend_on_its_batch(net) -> None:
    G, _ = net
    w = G.mapping(z_from_seeds([5, 6, 7], G.z_dim))
    together = G.synthesis(w)
    alone = torch.cat([G.synthesis(w[i: i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


def test_gradients_reach_every_wplus_row() -> None:
    """Inversion optimises W+ through synthesis: every row must get a gradient."""
    G = load_stylegan2_pickle(FIXTURES / "sg2ada_res32.pkl")
    ws = G.mapping(z_from_seeds([3], G.z_dim)).unsqueeze(1).repeat(1, G.num_ws, 1)
    ws.requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all()
    assert (ws.grad.abs().amax(dim=2) > 0).all()


def test_noise_modes() -> None:
    G = load_stylegan2_pickle(FIXTURES / "sg2ada_res32.pkl")
    w = G.mapping(z_from_seeds([0], G.z_dim))
    const = G.synthesis(w)
    torch.testing.assert_close(G.synthesis(w), const, rtol=0, atol=0)  # constant by default
    G.noise_mode = "none"
    assert (G.synthesis(w) - const).abs().max() > 1e-3
    G.noise_mode = "random"
    torch.manual_seed(0)
    assert (G.synthesis(w) - G.synthesis(w)).abs().max() > 1e-3
    G.noise_mode = "banana"
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        G.synthesis(w)


def test_input_checks() -> None:
    G = load_stylegan2_pickle(FIXTURES / "sg2ada_res32.pkl")
    with pytest.raises(ValueError, match=r"z must have shape \[N, 32\]"):
        G.mapping(torch.zeros(2, 31))
    with pytest.raises(ValueError, match=r"ws must have shape \[N, 32\] \(W\) or \[N, 8, 32\]"):
        G.synthesis(torch.zeros(2, 9, 32))


def test_ops_keep_a_flat_image_flat_and_clamp() -> None:
    f = fir_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and abs(float(f.sum()) - 1.0) < 1e-7
    flat = torch.full((1, 2, 8, 8), 0.5)
    up = upsample2d(flat, f)
    assert up.shape == (1, 2, 16, 16)
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.full((1, 2, 12, 12), 0.5))
    x = torch.tensor([[-3.0, 0.5]])
    out = bias_act(x, torch.tensor([0.0, 1.0]), "lrelu", clamp=2.0)
    torch.testing.assert_close(out, torch.tensor([[-3.0 * 0.2 * 2**0.5, 2.0]]))


# -- the registry ---------------------------------------------------------------------------
def test_registry_takes_a_stylegan2_file() -> None:
    path = FIXTURES / "sg2ada_res32.pkl"
    G = get_generator(f"stylegan2:{path}", device="cpu")
    assert isinstance(G, StyleGAN2) and G.name == f"stylegan2:{path}"
    with pytest.raises(FacelatentError, match="has no backend 'openvino'"):
        get_generator(f"stylegan2:{path}", backend="openvino")
    with pytest.raises(FacelatentError, match="names no file; expected stylegan2:PATH"):
        get_generator("stylegan2:")
    with pytest.raises(FileNotFoundError, match="no such file"):
        get_generator("stylegan2:/nonexistent/ffhq.pkl")
    with pytest.raises(FacelatentError, match="or a checkpoint file: .*stylegan2:PATH"):
        get_generator("stylegan9")


# -- the safe reader ----------------------------------------------------------------------------
def _write_pickle(path: Path, obj: object) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


def test_a_pickle_that_runs_a_shell_command_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _write_pickle(tmp_path / "ffhq.pkl", {"G_ema": RunsACommand(marker)})
    with pytest.raises(FileFormatError,
                       match=r"refusing global '(posix|os|nt)\.system' in ffhq\.pkl: "):
        load_network_pickle(evil)
    with pytest.raises(FileFormatError, match="refusing global"):
        get_generator(f"stylegan2:{evil}")
    assert not marker.exists()
    # the payload is real: the ordinary unpickler would have run it
    pickle.loads(pickle.dumps(RunsACommand(marker)))
    assert marker.exists()


def test_other_payloads_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(OrderedDict(x=RunsACommand(marker)), protocol=2)
    path = tmp_path / "nested.pkl"
    path.write_bytes(payload)
    with pytest.raises(FileFormatError, match=r"refusing global '\w+\.system' in nested\.pkl"):
        load_network_pickle(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"G_ema": eval}))  # the global is what is tested
    with pytest.raises(FileFormatError, match=r"refusing global 'builtins\.eval' in nested\.pkl"):
        load_network_pickle(path)


def test_damaged_or_foreign_files_fail_in_one_line(tmp_path: Path) -> None:
    good = (FIXTURES / "sg2ada_res32.pkl").read_bytes()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(FileFormatError, match="cut.pkl is not a readable network pickle"):
        load_network_pickle(cut)
    saved = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, saved)  # a zip archive, not a pickle
    assert zipfile.is_zipfile(saved)
    with pytest.raises(FileFormatError, match="state.pt"):
        load_network_pickle(saved)
    with pytest.raises(FileFormatError, match="holds a list; expected a dict of networks"):
        load_network_pickle(_write_pickle(tmp_path / "list.pkl", [1, 2]))
    with pytest.raises(FileFormatError, match=r"has no network 'G_ema' \(it has: \)"):
        load_stylegan2_pickle(_write_pickle(tmp_path / "empty.pkl", {"G": 1}))


def test_records_keep_the_constructor_arguments_but_not_the_source() -> None:
    top = load_network_pickle(FIXTURES / "sg2ada_res64_clamp.pkl")
    assert sorted(top) == ["D", "G_ema", "training_set_kwargs"]
    G = top["G_ema"]
    assert isinstance(G, NetworkRecord) and G.class_name == "Generator" and G.version == 6
    assert G.init_kwargs["synthesis_kwargs"]["conv_clamp"] == 2
    assert "module_src" not in repr(G) and "_orig_module_src" not in G.state
    tensors = G.tensors()
    assert tensors["synthesis.b64.conv1.noise_const"].shape == (64, 64)
    assert all(isinstance(t, torch.Tensor) and not t.requires_grad for t in tensors.values())


def test_fixtures_hold_no_official_source() -> None:
    for path in FIXTURES.glob("*.pkl"):
        blob = path.read_bytes()
        for text in (b"import torch", b"def ", b"Copyright", b"NVIDIA CORPORATION"):
            assert text not in blob, (path.name, text)
        assert b"module source removed" in blob
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 2 * 2**20


def test_the_loader_maps_every_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    from facelatent.generators import stylegan2 as sg2

    top = load_network_pickle(FIXTURES / "sg2ada_res32.pkl")
    monkeypatch.setattr(sg2, "load_generator_record", lambda _path, _network: top["G_ema"])
    buffers = top["G_ema"].state["_modules"]["mapping"].state["_buffers"]
    buffers["extra"] = torch.zeros(3)
    with pytest.raises(FileFormatError, match="tensors this port does not use: mapping_net.extra"):
        sg2.load_stylegan2_pickle("any.pkl")
    del buffers["extra"]
    w_avg = buffers.pop("w_avg")
    with pytest.raises(FileFormatError, match="G_ema has no tensor for 'mapping_net.w_avg'"):
        sg2.load_stylegan2_pickle("any.pkl")
    buffers["w_avg"] = w_avg[:-1]
    with pytest.raises(FileFormatError, match=r"w_avg has shape \[31\], expected \[32\]"):
        sg2.load_stylegan2_pickle("any.pkl")
