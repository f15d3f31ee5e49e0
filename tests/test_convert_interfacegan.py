"""`facelatent convert` of InterFaceGAN's ``pggan:`` and ``stylegan1:`` checkpoints: the folder
loads back as ``converted:DIR`` and computes the same images bit for bit (Z, and for StyleGAN
W+ and InterFaceGAN's first-rows truncation); StyleGAN's configured truncation (the default, or
a ``?truncation=`` option) goes with it; a tampered config is refused before building."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from generator_checks import relative_error

from facelatent.cli import main
from facelatent.errors import FileFormatError
from facelatent.generators import PGGAN, StyleGAN1, get_generator, z_from_seeds
from facelatent.generators.converted import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    convert_generator,
    load_converted,
    read_safetensors,
)

FIXTURES = Path(__file__).parent / "fixtures" / "interfacegan_models"
SOURCES = {"pggan": FIXTURES / "pggan_res64_fused.pth",
           "pggan-nearest": FIXTURES / "pggan_res32.pth",
           "stylegan1": FIXTURES / "stylegan_res64_fused.pth",
           "stylegan1-nearest": FIXTURES / "stylegan_res32.pth"}

pytestmark = pytest.mark.usefixtures("one_thread")


def _source(name: str) -> str:
    return f"{name.split('-')[0]}:{SOURCES[name]}"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both fused fixtures converted once."""
    root = tmp_path_factory.mktemp("converted")
    for family in ("pggan", "stylegan1"):
        convert_generator(_source(family), root / family)
    return {family: root / family for family in ("pggan", "stylegan1")}


def _images(G: PGGAN | StyleGAN1) -> list[torch.Tensor]:
    """w of three seeds and their images; for StyleGAN also random W+ rows and InterFaceGAN's
    truncation (psi 0.7 on the first rows)."""
    z = z_from_seeds([0, 1, 2], G.z_dim)
    with torch.no_grad():
        w = G.mapping(z)
        out = [w, G.synthesis(w)]
        if isinstance(G, StyleGAN1):
            wplus = G.mapping(z_from_seeds(range(10, 10 + G.num_ws), G.z_dim)).unsqueeze(0)
            wp = G.truncate_layers(w.unsqueeze(1).repeat(1, G.num_ws, 1), 0.7, 8)
            out += [G.synthesis(wplus), wp, G.synthesis(wp)]
        return out


@pytest.mark.parametrize("name", list(SOURCES))
def test_converted_interfacegan_matches_the_original_bit_for_bit(tmp_path: Path, name: str,
                                                                 capsys) -> None:
    source = _source(name)
    assert main(["convert", source, str(tmp_path / "out"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    original = get_generator(source)
    loaded = get_generator(f"converted:{tmp_path / 'out'}")
    assert type(loaded) is type(original) and loaded.cfg == original.cfg
    assert loaded.name == f"converted:{tmp_path / 'out'}"
    assert summary["num_ws"] == original.num_ws == (1 if name.startswith("pggan") else
                                                    2 * len(original.cfg.layout.widths))
    outputs = list(zip(_images(loaded), _images(original), strict=True))
    assert len(outputs) == (2 if name.startswith("pggan") else 5)
    for ours, theirs in outputs:
        assert torch.equal(ours, theirs)
    assert torch.equal(loaded.w_avg, original.w_avg)
    config = json.loads((tmp_path / "out" / CONFIG_FILE).read_text())
    assert config["family"] == config["architecture"] == name.split("-")[0]
    assert config["source"]["sha256"] == hashlib.sha256(SOURCES[name].read_bytes()).hexdigest()


def test_the_folder_records_the_architecture(converted: dict[str, Path]) -> None:
    config = json.loads((converted["stylegan1"] / CONFIG_FILE).read_text())
    assert config["config"]["mapping_widths"] == [48, *[40] * 7, 32]
    assert (config["config"]["truncation_psi"], config["config"]["truncation_layers"]) == (0.7, 8)
    assert config["config"]["layout"] == {"widths": [32, 32, 16, 16, 8],
                                          "fused": [True] * 4, "lod": 0.0, "img_channels": 3}
    assert config["num_ws"] == 10 and config["resolution"] == 64
    tensors, _ = read_safetensors(converted["stylegan1"] / WEIGHTS_FILE)
    assert tensors["layers.4.weight"].shape == (16, 32, 3, 3)     # [out, in, k, k], not TF's
    pggan = json.loads((converted["pggan"] / CONFIG_FILE).read_text())
    assert pggan["config"]["z_dim"] == 32 and pggan["w_avg"].startswith("zero")
    assert load_converted(converted["pggan"]).w_avg_source.startswith("zero")


@pytest.mark.parametrize(("option", "psi", "layers"), [
    ("", 0.7, 8), ("?truncation=off", 1.0, 0), ("?truncation=0.5,4", 0.5, 4)])
def test_the_configured_truncation_round_trips(tmp_path: Path, option: str, psi: float,
                                               layers: int) -> None:
    """The converted generator truncates as its source did: synthesis(mapping(z)) bit for bit,
    and (for the default and off) InterFaceGAN's psi-0.7-on-8-rows and psi-1 images."""
    source = f"stylegan1:{SOURCES['stylegan1']}{option}"
    result = convert_generator(source, tmp_path / "out")
    original, loaded = get_generator(source), load_converted(tmp_path / "out")
    assert isinstance(loaded, StyleGAN1) and loaded.cfg == original.cfg
    assert (loaded.truncation_psi, loaded.truncation_layers) == (psi, layers)
    config = json.loads(result.config.read_text())
    assert config["source"]["file"] == SOURCES["stylegan1"].name          # not the option
    assert config["config"]["truncation_psi"] == psi
    with np.load(SOURCES["stylegan1"].with_suffix(".npz")) as ref:
        z, w_in = torch.from_numpy(ref["z"]), torch.from_numpy(ref["w_in"])
        official = {0.7: ref["img_z_psi07"], 1.0: ref["img_z_psi1"]}
    with torch.no_grad():
        image = loaded.synthesis(loaded.mapping(z))
        assert torch.equal(image, original.synthesis(original.mapping(z)))
        assert torch.equal(loaded.synthesis(w_in), original.synthesis(w_in))
    if psi in official:
        assert relative_error(image, official[psi]) <= 1e-4


def test_a_converted_stylegan1_refuses_psi_on_top_of_its_truncation(
        converted: dict[str, Path]) -> None:
    G = load_converted(converted["stylegan1"])
    with pytest.raises(ValueError, match=r"truncate twice; .*convert the checkpoint again from "
                                         r"stylegan1:PATH\?truncation=off"):
        G.mapping(z_from_seeds([0], G.z_dim), truncation_psi=0.5)


def _tampered(source: Path, folder: Path, edit) -> Path:
    """A copy of ``source`` whose config.json ``edit`` changed (weights' sha256 still right)."""
    folder.mkdir()
    (folder / WEIGHTS_FILE).write_bytes((source / WEIGHTS_FILE).read_bytes())
    config = json.loads((source / CONFIG_FILE).read_text())
    edit(config["config"])
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    return folder


def _set(path: str, value: object):
    def edit(config: dict) -> None:
        *parents, key = path.split(".")
        for parent in parents:
            config = config[parent]
        config[key] = value
    return edit


@pytest.mark.parametrize(("family", "edit", "message"), [
    ("pggan", _set("z_dim", 10**9), "z_dim is 1000000000; expected an integer from 0 to 8192"),
    ("pggan", _set("z_dim", 16), "tensors do not fit the configuration"),
    ("pggan", _set("layout.widths", [32] * 40), "layout widths must be a list of 1 to 12"),
    ("pggan", _set("layout.widths", [32, 32, 0, 16, 8]), "integers from 1 to 8192"),
    ("pggan", _set("layout.fused", [1, 1, 1, 1]), "layout fused must be a list of true"),
    ("pggan", _set("layout.fused", [True]), "not a PGGAN configuration .*one flag per block"),
    ("pggan", _set("layout.lod", 9.0), "not a PGGAN configuration .*lod 9.0 is outside"),
    ("pggan", _set("layout.lod", "0"), "layout lod must be a number"),
    ("pggan", _set("layout.code", "x"), "layout must have exactly the fields"),
    ("pggan", _set("mapping_widths", [32, 32]), "'config' must have exactly the fields"),
    ("stylegan1", _set("mapping_widths", [48]), "integers from 1 to 8192"),
    ("stylegan1", _set("mapping_widths", [2**20, 32]), "integers from 1 to 8192"),
    ("stylegan1", _set("mapping_widths", [48, *[40] * 6, 32]), "tensors do not fit"),
    ("stylegan1", _set("layout.img_channels", 4), "tensors do not fit"),
    ("stylegan1", _set("truncation_layers", 11), "truncation_layers must be .* from 0 to 10"),
    ("stylegan1", _set("truncation_layers", 1.5), "truncation_layers must be an integer, got"),
    ("stylegan1", _set("truncation_layers", None), "truncation_layers must be an integer, got"),
    ("stylegan1", _set("truncation_psi", "0.7"), "truncation_psi must be a finite number"),
    ("stylegan1", _set("truncation_psi", True), "truncation_psi must be a finite number"),
    # the truncation does not show in the shapes either: the metadata copy refuses the edit
    ("stylegan1", _set("truncation_psi", 1.0), "differs from the one recorded in model"),
    # shapes cannot show these; the config copy in the weights' (sha256-checked) metadata does
    ("stylegan1", _set("layout.fused", [False] * 4), "differs from the one recorded in model"),
    ("pggan", _set("layout.lod", 1.0), "differs from the one recorded in model.safetensors"),
])
def test_a_tampered_config_is_refused_before_building(converted: dict[str, Path], tmp_path: Path,
                                                      family: str, edit, message: str) -> None:
    folder = _tampered(converted[family], tmp_path / "edited", edit)
    with pytest.raises(FileFormatError, match=message) as info:
        load_converted(folder)
    message = str(info.value)
    assert "\n" not in message
    assert str(folder / CONFIG_FILE) in message or str(folder / WEIGHTS_FILE) in message


def test_a_tampered_config_is_one_line_from_the_cli(converted: dict[str, Path], tmp_path: Path,
                                                    capsys) -> None:
    folder = _tampered(converted["stylegan1"], tmp_path / "edited", _set("layout.lod", 99))
    argv = ["generate", "--model", f"converted:{folder}", "--seeds", "0", "--out",
            str(tmp_path / "img"), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a StyleGAN (v1) configuration" in err[0]
    assert not (tmp_path / "img").exists()
