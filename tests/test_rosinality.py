"""Tests of rosinality's StyleGAN2 checkpoints (``rosinality:PATH``) on the StyleGAN2 port.

Parity: tests/fixtures/rosinality holds two small random-weight generators built and saved by
rosinality's own code, with the images it produced (see the README there): a training snapshot
(``g_ema``, ``args`` as an argparse Namespace, no latent_avg) and a converted-weights file
(``g_ema`` and ``latent_avg``). Our port must reproduce every image within 1e-4 of its largest
magnitude through Z (psi 1 and 0.7, around the recorded truncation latent), W and W+.
Safety: a checkpoint that asks to run anything is refused by torch's weights-only reader, and
the command it carries never runs.
"""

from __future__ import annotations

import argparse
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
from facelatent.errors import FileFormatError
from facelatent.generators import Generator, StyleGAN2, get_generator
from facelatent.generators.base import z_from_seeds
from facelatent.generators.rosinality import (
    W_AVG_SAMPLES,
    RosinalityArchitecture,
    load_rosinality,
    read_checkpoint,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rosinality"
NETS = ("ros_res32", "ros_res64")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=NETS)
def net(request: pytest.FixtureRequest) -> tuple[StyleGAN2, dict[str, np.ndarray]]:
    G = get_generator(f"rosinality:{FIXTURES / request.param}.pt")
    assert isinstance(G, StyleGAN2)
    return with_reference(G, FIXTURES / f"{request.param}.npz")


# -- parity with rosinality's code --------------------------------------------------------------
@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_z_path_matches_the_official_code(net, psi: float) -> None:
    G, ref = net
    tag = "psi1" if psi == 1.0 else "psi07"
    G.mapping_net.w_avg.copy_(torch.from_numpy(ref["truncation_latent"]))  # their mean_latent
    check_z_path(G, ref, psi, f"w_{tag}", f"img_z_{tag}")


@pytest.mark.parametrize("space", ["w", "wplus"])
def test_w_and_wplus_paths_match_the_official_code(net, space: str) -> None:
    G, ref = net
    check_synthesis(G, ref[space], ref[f"img_{space}"])


# -- architecture and w_avg from the checkpoint -------------------------------------------------
def test_architecture_comes_from_the_tensors() -> None:
    G = load_rosinality(FIXTURES / "ros_res64.pt")
    assert isinstance(G, Generator)
    assert (G.z_dim, G.w_dim, G.num_ws, G.resolution, G.cfg.mapping_layers) == (64, 64, 10, 64, 8)
    assert [G.cfg.channels(r) for r in G.cfg.block_resolutions] == [32, 32, 32, 32, 16]
    small = load_rosinality(FIXTURES / "ros_res32.pt")
    assert (small.z_dim, small.num_ws, small.resolution, small.cfg.mapping_layers) == (32, 8, 32, 2)
    assert G.name == f"rosinality:{FIXTURES / 'ros_res64.pt'}"


def _official_shapes(size: int, style_dim: int, n_mlp: int, multiplier: int) -> dict:
    """The names and shapes of rosinality's Generator(size, style_dim, n_mlp, multiplier)'s
    tensors that the architecture is read from (values irrelevant: empty tensors)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * multiplier, 128: 128 * multiplier,
             256: 64 * multiplier, 512: 32 * multiplier, 1024: 16 * multiplier}
    out = {f"style.{i}.weight": torch.empty(style_dim, style_dim) for i in range(1, n_mlp + 1)}
    out["input.input"] = torch.empty(1, 512, 4, 4)
    resolutions = [2**i for i in range(3, int(np.log2(size)) + 1)]
    for k, res in enumerate(resolutions):
        out[f"convs.{2 * k}.conv.weight"] = torch.empty(1, table[res], table[res // 2], 0, 0)
        out[f"to_rgbs.{k}.conv.weight"] = torch.empty(1, 3, table[res], 1, 1)
    return out


@pytest.mark.parametrize(("size", "n_mlp", "multiplier"), [(1024, 8, 2), (256, 8, 1), (64, 4, 2)])
def test_architecture_of_the_official_tables(size: int, n_mlp: int, multiplier: int) -> None:
    arch = RosinalityArchitecture.from_state_dict(_official_shapes(size, 512, n_mlp, multiplier))
    assert (arch.size, arch.style_dim, arch.n_mlp, arch.channel_multiplier) == \
        (size, 512, n_mlp, multiplier)
    cfg = arch.config()
    assert (cfg.resolution, cfg.num_ws, cfg.channel_base, cfg.channel_max) == \
        (size, 2 * int(np.log2(size)) - 2, 16384 * multiplier, 512)


def test_widths_outside_one_table_are_refused() -> None:
    shapes = _official_shapes(64, 32, 2, 2)
    shapes["convs.2.conv.weight"] = torch.empty(1, 300, 512, 0, 0)   # 16x16 block at 300
    with pytest.raises(FileFormatError, match=r"widths \[512, 512, 300, 512, 512\]"):
        RosinalityArchitecture.from_state_dict(shapes).config()


def test_w_avg_is_latent_avg_or_a_seeded_estimate() -> None:
    converted = load_rosinality(FIXTURES / "ros_res64.pt")   # convert_weight.py's latent_avg
    with np.load(FIXTURES / "ros_res64.npz") as ref:
        np.testing.assert_array_equal(converted.w_avg.numpy(), ref["truncation_latent"])
    a, b = (load_rosinality(FIXTURES / "ros_res32.pt") for _ in range(2))
    torch.testing.assert_close(a.w_avg, b.w_avg, rtol=0, atol=0)   # the same every load
    with np.load(FIXTURES / "ros_res32.npz") as ref:   # their mean_latent(4096), other z
        theirs = torch.from_numpy(ref["truncation_latent"])
    z = torch.randn(W_AVG_SAMPLES, a.z_dim, generator=torch.Generator().manual_seed(1))
    spread = a.mapping_net(z, None).std(0)
    # two independent means of 10,000 and 4,096 samples: within 6 standard errors everywhere
    assert ((a.w_avg - theirs).abs() <= 6 * spread * (1 / W_AVG_SAMPLES + 1 / 4096)**0.5).all()
    assert (a.w_avg - theirs).abs().max() > 1e-3   # an estimate, not their latent


def test_training_args_are_read_as_plain_values() -> None:
    data = read_checkpoint(FIXTURES / "ros_res32.pt")
    assert data["args"].values["size"] == 32 and data["args"].values["arch"] == "stylegan2"
    assert type(data["args"]).__name__ == "TrainingArgs"


def test_a_swagan_snapshot_is_named(tmp_path: Path) -> None:
    data = torch.load(FIXTURES / "ros_res32.pt", weights_only=False)
    data["args"] = argparse.Namespace(arch="swagan", size=32)
    torch.save(data, tmp_path / "swagan.pt")
    with pytest.raises(FileFormatError, match="--arch swagan"):
        load_rosinality(tmp_path / "swagan.pt")


def test_missing_and_extra_tensors_are_refused(tmp_path: Path) -> None:
    ckpt = torch.load(FIXTURES / "ros_res64.pt", weights_only=True)
    del ckpt["g_ema"]["convs.3.noise.weight"]
    torch.save(ckpt, tmp_path / "missing.pt")
    with pytest.raises(FileFormatError, match="no tensor 'convs.3.noise.weight'"):
        load_rosinality(tmp_path / "missing.pt")
    ckpt = torch.load(FIXTURES / "ros_res64.pt", weights_only=True)
    ckpt["g_ema"]["extra.weight"] = torch.zeros(3)
    torch.save(ckpt, tmp_path / "extra.pt")
    with pytest.raises(FileFormatError, match="does not use: extra.weight"):
        load_rosinality(tmp_path / "extra.pt")


# -- safety ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["top", "args"])
def test_a_checkpoint_that_runs_code_is_refused(tmp_path: Path, where: str, capsys) -> None:
    marker = tmp_path / "it-ran"
    ckpt: dict[str, object] = {"g_ema": {}}
    if where == "top":
        ckpt["payload"] = RunsACommand(marker)
    else:
        ckpt["args"] = argparse.Namespace(size=32, hook=RunsACommand(marker))
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    with pytest.raises(FileFormatError, match="nothing from the file was executed"):
        load_rosinality(path)
    err = generate_refuses(f"rosinality:{path}", tmp_path / "out", capsys)
    assert "refusing evil.pt" in err and "system" in err
    assert "weights_only" not in err     # torch's "set it to False" advice is not passed on
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04broken zip"])
def test_damaged_files_are_one_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match="bad.pt"):
        load_rosinality(path)


def test_a_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    data = (FIXTURES / "ros_res32.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="cut.pt"):
        load_rosinality(path)


def test_generate_takes_a_rosinality_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "faces"
    assert main(["generate", "--model", f"rosinality:{FIXTURES / 'ros_res64.pt'}", "--seeds",
                 "0-1", "--psi", "0.7", "--out", str(out), "--device", "cpu"]) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    with np.load(out / "latents.npz") as latents:
        G = load_rosinality(FIXTURES / "ros_res64.pt")
        expected = G.mapping(z_from_seeds([0, 1], G.z_dim), truncation_psi=0.7)
        np.testing.assert_allclose(latents["w"], expected.numpy(), rtol=0, atol=1e-6)


def test_an_nvidia_pickle_named_as_rosinality_points_to_stylegan2() -> None:
    pkl = FIXTURES.parent / "stylegan2ada" / "sg2ada_res32.pkl"
    with pytest.raises(FileFormatError, match=r"nothing .* executed.*loads as stylegan2:PATH"):
        load_rosinality(pkl)
