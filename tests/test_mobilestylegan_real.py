"""Tests on the real MobileStyleGAN FFHQ 1024 files: the PyTorch port against OpenVINO.

All marked slow. They need the files of `facelatent weights fetch mobilestylegan-ffhq` in the
cache (FACELATENT_HOME or the default); CI fetches them first, so a missing file is an error
(raised by `facelatent.weights.file_path`, naming the fetch command), not a skip.
About 30 s on 2 CPU cores (plus about 10 s when w_avg.npy is not cached yet), 4 GiB of
memory at most: 1024x1024 images are made in batches of 4.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facelatent import weights
from facelatent.cli import main
from facelatent.errors import WeightsError
from facelatent.generators import (
    Generator,
    MobileStyleGAN,
    StaleCacheWarning,
    get_generator,
    z_from_seeds,
)
from facelatent.generators.mobilestylegan import load_ir
from facelatent.generators.openvino import OpenVINOGenerator

pytestmark = pytest.mark.slow

ASSET = "mobilestylegan-ffhq"
SEEDS = list(range(8))
BATCH = 4


@pytest.fixture(scope="module")
def torch_G() -> Generator:
    return get_generator(ASSET, backend="torch")


@pytest.fixture(scope="module")
def ov_G() -> Generator:
    return get_generator(ASSET, backend="openvino")


def synthesize(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([G.synthesis(ws[i:i + BATCH]) for i in range(0, len(ws), BATCH)])


def real_files(tmp_path: Path, **replace: bytes) -> dict[str, Path]:
    """Copies of the four model files in `tmp_path`; `replace` gives new contents for some."""
    out = {}
    for name in ("mapping.xml", "mapping.bin", "synthesis.xml", "synthesis.bin"):
        out[name] = tmp_path / name
        key = name.replace(".", "_")
        if key in replace:
            out[name].write_bytes(replace[key])
        else:
            shutil.copyfile(weights.file_path(ASSET, name), out[name])
    return out


def load_into_fresh_model(files: dict[str, Path]) -> None:
    load_ir(MobileStyleGAN(), (files["mapping.xml"], files["mapping.bin"]),
            (files["synthesis.xml"], files["synthesis.bin"]))


# --------------------------------------------------------------------------------------------
# the two backends agree


def test_contract(torch_G: Generator, ov_G: Generator) -> None:
    for G in (torch_G, ov_G):
        assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (512, 512, 23, 1024)
        assert G.w_avg.shape == (512,)
    # both read the one cached w_avg
    assert torch.equal(torch_G.w_avg, ov_G.w_avg)


def test_mapping_agrees(torch_G: Generator, ov_G: Generator) -> None:
    z = z_from_seeds(list(range(64)), 512)
    with torch.no_grad():
        w_torch, w_ov = torch_G.mapping(z), ov_G.mapping(z)
    assert w_torch.shape == w_ov.shape == (64, 512)
    assert (w_torch - w_ov).abs().max() <= 1e-4
    assert w_torch.std() > 0.1


@pytest.fixture(scope="module", params=[1.0, 0.7], ids=["psi1", "psi0.7"])
def images(request: pytest.FixtureRequest, torch_G: Generator,
           ov_G: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of SEEDS through W, each backend end to end: (torch, openvino), [8, 3, 1024, 1024]."""
    z = z_from_seeds(SEEDS, 512)
    with torch.no_grad():
        w_torch = torch_G.mapping(z, truncation_psi=request.param)
        w_ov = ov_G.mapping(z, truncation_psi=request.param)
    return synthesize(torch_G, w_torch), synthesize(ov_G, w_ov)


def test_images_agree(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    from_torch, from_ov = images
    assert from_torch.shape == from_ov.shape == (8, 3, 1024, 1024)
    assert (from_torch - from_ov).abs().max() <= 1e-3


def test_images_look_like_images(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Varied, smooth, and in range. The raw output is not clipped: a few bright highlights
    reach about 2.6 (seed 3, psi 1), in both backends, so the range check allows rare outliers.
    """
    x = images[0].flatten(1)
    assert (x.std(dim=1) > 0.1).all()
    assert ((x.abs() > 1.5).float().mean(dim=1) < 1e-3).all()
    assert x.abs().max() < 4.0
    # neighbouring pixels are strongly correlated (about 0.995 here; 0 for noise)
    centred = images[0] - images[0].mean(dim=(2, 3), keepdim=True)
    pairs = (centred[..., :-1] * centred[..., 1:]).mean(dim=(1, 2, 3))
    corr = pairs / centred.square().mean(dim=(1, 2, 3))
    assert (corr > 0.9).all()
    # different seeds make different faces
    assert (images[0][0] - images[0][1]).abs().mean() > 0.1


def test_wplus_agrees(torch_G: Generator, ov_G: Generator) -> None:
    """A different w per layer: sample i's row k is the w of seed (i + k) mod 8."""
    with torch.no_grad():
        w = torch_G.mapping(z_from_seeds(SEEDS, 512), truncation_psi=0.7)
    rows = (torch.arange(8)[:, None] + torch.arange(23)[None, :]) % 8
    ws = w[rows]  # [8, 23, 512]
    assert torch.equal(ws[2, 5], w[7])
    from_torch, from_ov = synthesize(torch_G, ws), synthesize(ov_G, ws)
    assert (from_torch - from_ov).abs().max() <= 1e-3
    # the mixed styles matter: sample 0 differs from seed 0's own image
    with torch.no_grad():
        plain = torch_G.synthesis(w[:1])
    assert (from_torch[:1] - plain).abs().mean() > 0.05


def test_batched_equals_one_by_one(torch_G: Generator) -> None:
    with torch.no_grad():
        w = torch_G.mapping(z_from_seeds([11, 12], 512), truncation_psi=0.7)
        batched = torch_G.synthesis(w)
        singles = torch.cat([torch_G.synthesis(w[:1]), torch_G.synthesis(w[1:])])
    assert (batched - singles).abs().max() <= 1e-4


# --------------------------------------------------------------------------------------------
# the loader maps every tensor and fails clearly on bad files


def test_loader_fails_on_a_renamed_tensor(tmp_path: Path) -> None:
    xml = weights.file_path(ASSET, "synthesis.xml").read_text()
    assert xml.count('name="m.layers.3.conv1.bias"') == 1
    tampered = xml.replace('name="m.layers.3.conv1.bias"', 'name="m.layers.3.conv1.bias_x"')
    files = real_files(tmp_path, synthesis_xml=tampered.encode())
    with pytest.raises(WeightsError, match="tensor 'm.layers.3.conv1.bias' not found"):
        load_into_fresh_model(files)


def test_loader_fails_on_an_unused_tensor(tmp_path: Path) -> None:
    xml = weights.file_path(ASSET, "synthesis.xml").read_text()
    extra = ('<layer id="999999" name="extra.weight" type="Const" version="opset1">'
             '<data element_type="f32" shape="4" offset="0" size="16"/></layer>\n\t</layers>')
    assert xml.count("</layers>") == 1
    files = real_files(tmp_path, synthesis_xml=xml.replace("</layers>", extra).encode())
    with pytest.raises(WeightsError, match=r"1 tensors were not used by the loader "
                                           r"\(first: \['extra.weight'\]\)"):
        load_into_fresh_model(files)


def test_loader_accepts_the_untouched_copies(tmp_path: Path) -> None:
    """The two tests above fail because of their edit, not because of the copying."""
    load_into_fresh_model(real_files(tmp_path))


def test_truncated_bin(tmp_path: Path) -> None:
    data = weights.file_path(ASSET, "synthesis.bin").read_bytes()
    files = real_files(tmp_path, synthesis_bin=data[:len(data) // 2])
    with pytest.raises(WeightsError, match="runs past the end of the .bin file .*"
                                           "facelatent weights fetch"):
        load_into_fresh_model(files)
    with pytest.raises(WeightsError, match="OpenVINO cannot read"):
        OpenVINOGenerator(files["mapping.xml"], files["synthesis.xml"], name="test",
                          num_ws=23, w_avg=torch.zeros(512).numpy())


def test_truncated_file_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the registry the checksum catches it first, with the command that fixes it."""
    data = weights.file_path(ASSET, "synthesis.bin").read_bytes()
    folder = tmp_path / "weights" / ASSET  # the cache layout, see facelatent.weights
    folder.mkdir(parents=True)
    real_files(folder, synthesis_bin=data[:1000])
    monkeypatch.setenv("FACELATENT_HOME", str(tmp_path))
    for backend in ("torch", "openvino"):
        with pytest.raises(WeightsError, match="synthesis.bin' in .* does not match its sha256 .*"
                                               "facelatent weights fetch mobilestylegan-ffhq"):
            get_generator(ASSET, backend=backend)


# --------------------------------------------------------------------------------------------
# the cached w_avg (issue 10, defect 4)


def test_a_tampered_w_avg_is_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        torch_G: Generator) -> None:
    """A w_avg.npy of 5.0s made `generate --psi 0.5` draw a black face and passed `verify`."""
    folder = tmp_path / "weights" / ASSET  # the cache layout, see facelatent.weights
    folder.mkdir(parents=True)
    real_files(folder)
    monkeypatch.setenv("FACELATENT_HOME", str(tmp_path))
    fives = np.full(512, 5.0, dtype=np.float32)
    np.save(folder / "w_avg.npy", fives)  # no record: as a cache from facelatent 0.1 would be

    out = tmp_path / "out"
    with pytest.warns(StaleCacheWarning, match="w_avg.npy: .*computing it again"):
        assert main(["generate", "--seeds", "0", "--psi", "0.5", "--size", "64", "--out",
                     str(out), "--device", "cpu"]) == 0
    image = np.asarray(Image.open(out / "seed0000.png"), dtype=np.float64)
    assert image.mean() > 40 and image.std() > 20  # a face, not a black square
    remade = np.load(folder / "w_avg.npy")
    assert np.abs(remade - torch_G.w_avg.numpy()).max() < 1e-5  # the same recipe, made again

    np.save(folder / "w_avg.npy", fives)
    report = weights.verify(ASSET)[ASSET]
    assert report["w_avg.npy"].startswith("removed: it changed after it was made")
    assert not (folder / "w_avg.npy").exists()
    assert weights.verify(ASSET)[ASSET]["w_avg.npy"] == "not made yet"
