"""`facelatent convert` and ``converted:DIR``: a checkpoint written as model.safetensors +
config.json loads back without its original format and computes exactly the same images; a
damaged, truncated or hostile folder is one clear error."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from facelatent.cli import main
from facelatent.errors import FacelatentError, FileFormatError
from facelatent.generators import StyleGAN2, get_generator, z_from_seeds
from facelatent.generators.converted import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    convert_generator,
    load_converted,
    read_safetensors,
    write_safetensors,
)

ROOT = Path(__file__).parent / "fixtures"
SOURCES = {"stylegan2": ROOT / "stylegan2ada" / "sg2ada_res64_clamp.pkl",
           "rosinality": ROOT / "rosinality" / "ros_res32.pt"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rosinality fixture converted once (w_avg estimated at conversion)."""
    folder = tmp_path_factory.mktemp("converted") / "ros32"
    convert_generator(f"rosinality:{SOURCES['rosinality']}", folder)
    return folder


def _images(G: StyleGAN2) -> list[torch.Tensor]:
    z = z_from_seeds([0, 1, 2], G.z_dim)
    with torch.no_grad():
        w = G.mapping(z, truncation_psi=0.7)
        wplus = G.mapping(z_from_seeds(range(10, 10 + G.num_ws), G.z_dim)).unsqueeze(0)
        return [w, G.synthesis(w), G.synthesis(wplus)]


@pytest.mark.parametrize("family", list(SOURCES))
def test_converted_generator_matches_the_original_bit_for_bit(tmp_path: Path, family: str,
                                                              capsys) -> None:
    source = f"{family}:{SOURCES[family]}"
    assert main(["convert", source, str(tmp_path / "out"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["family"] == family and summary["folder"] == str(tmp_path / "out")
    original = get_generator(source)
    loaded = get_generator(f"converted:{tmp_path / 'out'}")
    assert isinstance(loaded, StyleGAN2) and loaded.name == f"converted:{tmp_path / 'out'}"
    assert loaded.cfg == original.cfg and loaded.num_ws == original.num_ws
    for ours, theirs in zip(_images(loaded), _images(original), strict=True):
        assert torch.equal(ours, theirs)
    config = json.loads((tmp_path / "out" / CONFIG_FILE).read_text())
    assert config["family"] == family and config["num_ws"] == original.num_ws
    assert config["source"]["sha256"] == summary["source_sha256"]
    assert len(config["source"]["sha256"]) == 64 and config["facelatent_version"]


def test_the_folder_holds_plain_tensors_and_config(converted: Path) -> None:
    tensors, metadata = read_safetensors(converted / WEIGHTS_FILE)
    config = json.loads((converted / CONFIG_FILE).read_text())
    assert metadata == {"format": "pt", "config": json.dumps(config["config"], sort_keys=True,
                                                             separators=(",", ":"))}
    assert tensors["mapping.fc0.weight"].shape == (32, 32)
    assert tensors["synthesis.b32.conv1.noise_const"].shape == (32, 32)
    assert all(t.dtype == torch.float32 for t in tensors.values())
    assert config["format"] == "facelatent.converted_generator"
    assert config["config"]["resolution"] == 32 and config["config"]["channel_base"] == 1024
    assert config["w_avg"].startswith("estimated")
    # the w_avg estimated at conversion is stored, not estimated again
    assert torch.equal(load_converted(converted).w_avg, tensors["mapping.w_avg"])


def test_an_existing_output_is_kept_unless_overwrite(converted: Path, capsys) -> None:
    source = f"rosinality:{SOURCES['rosinality']}"
    with pytest.raises(FacelatentError, match="already holds a converted generator"):
        convert_generator(source, converted)
    assert main(["convert", source, str(converted), "--overwrite"]) == 0
    assert "converted:" in capsys.readouterr().out


@pytest.mark.parametrize("source", ["ros_res32.pt", "biggan:x.pth", "rosinality:",
                                    "converted:/some/dir"])
def test_unsupported_sources_are_named(tmp_path: Path, source: str) -> None:
    with pytest.raises(ValueError, match="source must be stylegan2:PATH or rosinality:PATH"):
        convert_generator(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safetensors_round_trip_and_layout(tmp_path: Path) -> None:
    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.tensor(1.5), "e": torch.zeros(0)}
    path = write_safetensors(tmp_path / "t.safetensors", tensors, {"k": "v"})
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8: 8 + n])
    assert n % 8 == 0 and header["a"] == {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}
    assert header["b"]["data_offsets"] == [4, 28] and len(raw) == 8 + n + 28
    back, metadata = read_safetensors(path)
    assert metadata == {"k": "v"} and set(back) == {"a", "b", "e"}
    assert torch.equal(back["b"], tensors["b"]) and back["a"].shape == ()


def _file(tmp_path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path = tmp_path / "x.safetensors"
    size = len(text) if length is None else length
    path.write_bytes(size.to_bytes(8, "little") + text + data)
    return path


F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
HOSTILE = {
    "empty file": (b"", None, None),
    "header longer than the file": ({"a": F32}, bytes(8), 10**6),
    "huge header length": ({"a": F32}, bytes(8), 2**63),
    "not JSON": (b"\xff{", b"", None),
    "a JSON list": ([1, 2], b"", None),
    "duplicate names": (b'{"a": %s, "a": %s}' % (json.dumps(F32).encode(), json.dumps(F32).encode()),
                        bytes(8), None),
    "unknown dtype": ({"a": {**F32, "dtype": "OBJ"}}, bytes(8), None),
    "negative shape": ({"a": {**F32, "shape": [-2]}}, bytes(8), None),
    "shape that the offsets cannot hold": ({"a": {**F32, "shape": [10**12]}}, bytes(8), None),
    "offsets past the data": ({"a": {**F32, "data_offsets": [8, 16]}}, bytes(8), None),
    "overlapping tensors": ({"a": F32, "b": F32}, bytes(8), None),
    "truncated data": ({"a": F32}, bytes(5), None),
    "extra bytes after the data": ({"a": F32}, bytes(12), None),
    "extra header fields": ({"a": {**F32, "code": "os.system('x')"}}, bytes(8), None),
    "metadata not strings": ({"__metadata__": {"k": 1}, "a": F32}, bytes(8), None),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_damaged_or_hostile_safetensors_is_one_clear_error(tmp_path: Path, case: str) -> None:
    header, data, length = HOSTILE[case]
    path = tmp_path / "x.safetensors"
    if case == "empty file":
        path.write_bytes(b"")
    else:
        path = _file(tmp_path, header, data, length)
    with pytest.raises(FileFormatError) as info:
        read_safetensors(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_a_damaged_converted_folder_is_one_line_from_the_cli(converted: Path, tmp_path: Path,
                                                             capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CONFIG_FILE).write_bytes((converted / CONFIG_FILE).read_bytes())
    weights = (converted / WEIGHTS_FILE).read_bytes()
    (broken / WEIGHTS_FILE).write_bytes(weights[: len(weights) - 100])     # truncated
    argv = ["generate", "--model", f"converted:{broken}", "--seeds", "0", "--out",
            str(tmp_path / "img"), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is damaged or was replaced" in err[0]
    # a consistent but wrong folder: its config names another architecture's fields
    config = json.loads((converted / CONFIG_FILE).read_text())
    config["config"]["kernel_size"] = 5
    (broken / CONFIG_FILE).write_text(json.dumps(config))
    (broken / WEIGHTS_FILE).write_bytes(weights)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'config' must have exactly the fields" in err[0]
    (broken / CONFIG_FILE).unlink()
    assert main(argv) == 2
    assert "no such file" in capsys.readouterr().err


def _edited(converted: Path, folder: Path, tensors: dict[str, torch.Tensor] | None = None,
            **config_changes: object) -> Path:
    """A copy of ``converted`` with edits, its weights' sha256 recorded as if it were genuine."""
    folder.mkdir()
    if tensors is None:
        (folder / WEIGHTS_FILE).write_bytes((converted / WEIGHTS_FILE).read_bytes())
    else:
        write_safetensors(folder / WEIGHTS_FILE, tensors)
    config = json.loads((converted / CONFIG_FILE).read_text())
    config["config"].update(config_changes)
    config["weights"]["sha256"] = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    return folder


def test_a_weights_file_that_lacks_a_tensor_is_refused(converted: Path, tmp_path: Path) -> None:
    """Even with a matching sha256 (a hand-edited folder), every tensor is checked by name."""
    tensors, _ = read_safetensors(converted / WEIGHTS_FILE)
    del tensors["synthesis.b8.conv0.weight"]
    with pytest.raises(FileFormatError, match="tensors do not fit the configuration"):
        load_converted(_edited(converted, tmp_path / "edited", tensors))


@pytest.mark.parametrize(("changes", "message"), [
    ({"resolution": 2**20}, "resolution is 1048576; expected an integer from 0 to 8192"),
    ({"mapping_layers": 10**9}, "mapping_layers is 1000000000"),
    ({"z_dim": "32"}, "z_dim is '32'"),
    ({"resolution": 1024}, "tensors do not fit the configuration"),   # never built for real
    ({"resolution": 4096}, "a block would have no channels"),
    ({"resolution": 48}, "power of two"),
])
def test_a_hostile_config_is_refused_before_building(converted: Path, tmp_path: Path,
                                                     changes: dict, message: str) -> None:
    with pytest.raises(FileFormatError, match=message):
        load_converted(_edited(converted, tmp_path / "edited", **changes))
