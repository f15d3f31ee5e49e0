"""Tests of InterFaceGAN's PGGAN checkpoints (``pggan:PATH``).

Parity: tests/fixtures/interfacegan_models holds two small random-weight PGGANs built and saved
by InterFaceGAN's own code, with the images its wrapper (``preprocess`` then ``synthesize``)
made from them (see the README there). Ours must reproduce every image within 1e-4 of its
largest magnitude. Safety (for both InterFaceGAN families, pggan: and stylegan1:): a ``.pth``
that asks to run anything is refused by torch's weights-only reader, and the command it
carries never runs. End to end: a boundary of the
fixture's dimension edits faces through ``facelatent edit --model pggan:FIXTURE``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from generator_checks import (
    RunsACommand,
    check_images,
    check_z_path,
    generate_refuses,
    with_reference,
)

from facelatent.cli import main
from facelatent.errors import FileFormatError
from facelatent.generators import Generator, get_generator
from facelatent.generators.base import z_from_seeds
from facelatent.generators.pggan import PGGAN, load_pggan
from facelatent.generators.stylegan1 import load_stylegan1

FIXTURES = Path(__file__).parent / "fixtures" / "interfacegan_models"
NETS = ("pggan_res32", "pggan_res64_fused")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=NETS)
def net(request: pytest.FixtureRequest) -> tuple[PGGAN, dict[str, np.ndarray]]:
    G = get_generator(f"pggan:{FIXTURES / request.param}.pth")
    assert isinstance(G, PGGAN)
    return with_reference(G, FIXTURES / f"{request.param}.npz")


# -- parity with InterFaceGAN's code ------------------------------------------------------------
def test_z_path_matches_the_official_code(net) -> None:
    G, ref = net
    check_z_path(G, ref, 1.0, "z_pre", "img_z")   # w is their preprocess's output


def test_a_level_of_detail_matches_the_official_code(net, tmp_path: Path) -> None:
    G, ref = net
    state = torch.load(FIXTURES / f"{G.name.rsplit('/', 1)[1]}", weights_only=True)
    state["lod"] = torch.tensor(1.0)
    torch.save(state, tmp_path / "lod1.pth")
    coarse = load_pggan(tmp_path / "lod1.pth")
    with torch.no_grad():
        images = coarse.synthesis(torch.from_numpy(ref["z_pre"]))
    check_images(images, ref["img_z_lod1"])


# -- the architecture and the contract ------------------------------------------------------------
def test_architecture_comes_from_the_tensors() -> None:
    G = load_pggan(FIXTURES / "pggan_res64_fused.pth")
    assert isinstance(G, Generator)
    assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (32, 32, 1, 64)
    assert G.cfg.layout.widths == (32, 32, 16, 16, 8) and all(G.cfg.layout.fused)
    small = load_pggan(FIXTURES / "pggan_res32.pth")
    assert (small.z_dim, small.resolution, small.cfg.layout.widths) == (24, 32, (32, 32, 16, 8))
    assert not any(small.cfg.layout.fused)
    assert G.name == f"pggan:{FIXTURES / 'pggan_res64_fused.pth'}"


OFFICIAL_TABLE = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


@pytest.mark.parametrize(("resolution", "fused"), [(1024, False), (256, True)])
def test_architecture_of_the_official_tables(tmp_path: Path, resolution: int,
                                             fused: bool) -> None:
    """InterFaceGAN's PGGANGeneratorModel(resolution, fused_scale)'s tensor names and shapes
    (zero-memory tensors) give its architecture."""
    def shaped(*shape: int) -> torch.Tensor:
        return torch.zeros(()).expand(*shape)

    state = {"lod": torch.zeros(()), "layer0.conv.weight": shaped(512, 512, 4, 4)}
    resolutions = [2**i for i in range(2, int(np.log2(resolution)) + 1)]
    for b, res in enumerate(resolutions):
        cout, cin = OFFICIAL_TABLE[res], OFFICIAL_TABLE[max(res // 2, 4)]
        if b > 0 and fused:
            state[f"layer{2 * b}.weight"] = shaped(3, 3, cin, cout)
        elif b > 0:
            state[f"layer{2 * b}.conv.weight"] = shaped(cout, cin, 3, 3)
        state[f"layer{2 * b + 1}.conv.weight"] = shaped(cout, cout, 3, 3)
        state[f"output{b}.conv.weight"] = shaped(3, cout, 1, 1)
        for layer in (f"layer{2 * b}", f"layer{2 * b + 1}", f"output{b}"):
            state[f"{layer}.wscale.bias"] = torch.zeros(3 if layer[0] == "o" else cout)
    torch.save(state, tmp_path / "official.pth")
    G = load_pggan(tmp_path / "official.pth")
    assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (512, 512, 1, resolution)
    assert G.cfg.layout.widths == tuple(OFFICIAL_TABLE[r] for r in resolutions)
    assert G.cfg.layout.fused == (fused,) * (len(resolutions) - 1)


def test_w_is_z_on_its_sphere_and_truncation_leaves_the_image() -> None:
    G = load_pggan(FIXTURES / "pggan_res32.pth")
    z = z_from_seeds([3, 4], G.z_dim) * torch.tensor([[0.5], [3.0]])
    with torch.no_grad():
        w = G.mapping(z)
        torch.testing.assert_close(w.norm(dim=1), torch.full((2,), G.z_dim**0.5))
        torch.testing.assert_close(G.mapping(z, truncation_psi=0.5), 0.5 * w)   # toward w_avg 0
        same = G.synthesis(G.mapping(z, truncation_psi=0.5))
        torch.testing.assert_close(same, G.synthesis(w), rtol=0, atol=1e-5)
        wp = G.synthesis(w[:, None])                  # W+ of one row is the same input
    torch.testing.assert_close(wp, G.synthesis(w), rtol=0, atol=0)
    assert not torch.equal(G.synthesis(w)[0], G.synthesis(w)[1])


def test_batched_equals_one_by_one() -> None:
    G = load_pggan(FIXTURES / "pggan_res64_fused.pth")
    z = z_from_seeds([5, 6, 7], G.z_dim)
    with torch.no_grad():
        batch = G(z)
        single = torch.cat([G(z[i: i + 1]) for i in range(3)])
    assert float((batch - single).abs().max() / batch.abs().max()) <= 1e-5   # float rounding


def test_missing_and_extra_tensors_are_refused(tmp_path: Path) -> None:
    state = torch.load(FIXTURES / "pggan_res32.pth", weights_only=True)
    del state["layer3.wscale.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(FileFormatError, match="no tensor 'layer3.wscale.bias'"):
        load_pggan(tmp_path / "missing.pth")
    state = torch.load(FIXTURES / "pggan_res32.pth", weights_only=True)
    state["layer1.conv.weight"] = state["layer1.conv.weight"][:, :8]
    torch.save(state, tmp_path / "narrow.pth")
    with pytest.raises(FileFormatError, match=r"layer1.conv.weight has shape \[32, 8, 3, 3\]"):
        load_pggan(tmp_path / "narrow.pth")
    state = torch.load(FIXTURES / "pggan_res32.pth", weights_only=True)
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(FileFormatError, match="does not use: extra.weight"):
        load_pggan(tmp_path / "extra.pth")


def test_a_stylegan_file_named_as_pggan_points_to_stylegan1() -> None:
    with pytest.raises(FileFormatError, match="load it as stylegan1:"):
        load_pggan(FIXTURES / "stylegan_res32.pth")


# -- safety, for both InterFaceGAN families ------------------------------------------------------
LOADERS = {"pggan": (load_pggan, "pggan_res32.pth"), "stylegan1": (load_stylegan1,
                                                                    "stylegan_res32.pth")}


@pytest.mark.parametrize("family", LOADERS)
def test_a_checkpoint_that_runs_code_is_refused(tmp_path: Path, family: str, capsys) -> None:
    load, fixture = LOADERS[family]
    marker = tmp_path / "it-ran"
    state: dict[str, object] = dict(torch.load(FIXTURES / fixture, weights_only=True))
    state["payload"] = RunsACommand(marker)
    path = tmp_path / "evil.pth"
    torch.save(state, path)
    with pytest.raises(FileFormatError, match="nothing from the file was executed"):
        load(path)
    err = generate_refuses(f"{family}:{path}", tmp_path / "out", capsys)
    assert "refusing evil.pth" in err and "system" in err
    assert "weights_only" not in err     # torch's "set it to False" advice is not passed on
    assert not marker.exists()


@pytest.mark.parametrize("family", LOADERS)
@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04broken zip", "cut"])
def test_damaged_files_are_one_clear_error(tmp_path: Path, family: str,
                                           content: bytes | str) -> None:
    load, fixture = LOADERS[family]
    if content == "cut":    # a truncated download
        data = (FIXTURES / fixture).read_bytes()
        content = data[: len(data) // 2]
    path = tmp_path / "bad.pth"
    path.write_bytes(content)   # type: ignore[arg-type]
    with pytest.raises(FileFormatError, match="bad.pth"):
        load(path)


@pytest.mark.parametrize("family", LOADERS)
def test_a_file_of_something_else_is_refused(tmp_path: Path, family: str) -> None:
    load, _ = LOADERS[family]
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    with pytest.raises(FileFormatError, match="holds a list; expected an InterFaceGAN"):
        load(tmp_path / "list.pth")
    torch.save({"g_ema": {"x": torch.zeros(1)}}, tmp_path / "nested.pth")
    with pytest.raises(FileFormatError, match=r"\['g_ema'\] are not tensors.*rosinality:PATH"):
        load(tmp_path / "nested.pth")


# -- end to end -------------------------------------------------------------------------------
def test_an_interfacegan_boundary_edits_through_the_cli(tmp_path: Path, capsys) -> None:
    """A boundary file named and shaped as InterFaceGAN publishes them ((1, dim), unit norm, Z),
    of the fixture's dimension, moves the faces of `facelatent edit --model pggan:FIXTURE`:
    each frame of a face's GIF is our own synthesis of its seed's z moved by that strength."""
    from PIL import Image, ImageSequence

    path = FIXTURES / "pggan_res32.pth"
    normal = np.random.RandomState(1234).randn(1, 24)
    boundary = tmp_path / "pggan_fixture_smile_boundary.npy"
    np.save(boundary, (normal / np.linalg.norm(normal)).astype(np.float32))
    out = tmp_path / "edit"
    assert main(["edit", "--model", f"pggan:{path}", "--boundary", str(boundary), "--seeds",
                 "0-1", "--range", "-3", "3", "--steps", "3", "--unit", "raw", "--size", "32",
                 "--device", "cpu", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["boundary"]["space"] == "z" and summary["strengths"] == [-3.0, 0.0, 3.0]
    G = load_pggan(path)
    n = torch.from_numpy(np.load(boundary))
    with Image.open(summary["files"]["faces"]["seed0001"]["gif"]) as gif:
        frames = [np.asarray(f.convert("RGB"), dtype=np.float64)
                  for f in ImageSequence.Iterator(gif)][:3]       # -3, 0, 3 (then back)
    with torch.no_grad():
        for k, strength in enumerate((-3.0, 0.0, 3.0)):
            image = G.synthesis(G.mapping(z_from_seeds([1], 24) + strength * n))[0]
            ours = ((image.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
            errors = [np.abs(ours - frame).mean() for frame in frames]
            assert errors[k] < 8 and min(errors[:k] + errors[k + 1:]) > 20   # GIF palette: ~5
