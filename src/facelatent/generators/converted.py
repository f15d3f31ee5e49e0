"""Converted generators: a folder with ``model.safetensors`` and ``config.json``, loaded as
``converted:DIR``, without the checkpoint format it came from.

`convert_generator` reads a StyleGAN2-family checkpoint (``stylegan2:IN.pkl``,
``rosinality:IN.pt``), a StyleGAN3 one (``stylegan3:IN.pkl``) or one of InterFaceGAN's
(``pggan:IN.pth``, ``stylegan1:IN.pth``) with its safe loader and writes:

- ``model.safetensors``: every parameter and buffer of the port (`StyleGAN2`, `StyleGAN3`,
  `PGGAN` or `StyleGAN1`), float32. StyleGAN2 and 3 use NVIDIA's state-dict names
  (``mapping.fc0.weight``, ``synthesis.b8.conv0.noise_const``, ``synthesis.L3_44_48.down_filter``,
  ``mapping.w_avg``): a rosinality checkpoint is stored already mapped onto the port, with its
  w_avg as used at conversion time. PGGAN and StyleGAN1 use the port's own ``state_dict`` names
  (``blocks.0.conv0.weight``, ``layers.3.noise_const``, ``_w_avg``): InterFaceGAN's names, and
  its fused kernels' ``[3, 3, in, out]`` order, are mapped once by the ``.pth`` loader;
  StyleGAN1's configured truncation (``stylegan1:IN.pth?truncation=...``) is part of its
  config, so the converted generator truncates as the source did;
- ``config.json``: the port's configuration, family, num_ws, resolution, where w_avg came from,
  the source file's name and sha256, the weights file's sha256 and the facelatent version.

`load_converted` rebuilds the port from them and maps every tensor (StyleGAN2 and 3: with the
port's `load_nvidia_state`; PGGAN and StyleGAN1: a strict ``load_state_dict``), so the converted
generator computes exactly what the original did (the same float32 tensors through the same
code). The weights file's sha256 is checked against the config before use, and the config
against the copy of it written into the weights' metadata.

The safetensors format (read and written here; no extra dependency): an 8-byte little-endian
header length N, N bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]},
"__metadata__": {str: str}}``, then the raw little-endian data, with offsets relative to its
start. `read_safetensors` checks every field, and that the tensors tile the data exactly (no
gap, no overlap, nothing after), before reading any value: a damaged or hostile file is one
`FileFormatError` naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facelatent.errors import FacelatentError, FileFormatError
from facelatent.generators import stylegan2, stylegan3
from facelatent.generators.base import get_generator
from facelatent.generators.interfacegan import Layout
from facelatent.generators.pggan import PGGAN, PGGANConfig
from facelatent.generators.stylegan1 import StyleGAN1, StyleGAN1Config
from facelatent.generators.stylegan1 import parse_spec as parse_stylegan1_spec
from facelatent.generators.stylegan2 import StyleGAN2, StyleGAN2Config
from facelatent.generators.stylegan3 import StyleGAN3, StyleGAN3Config, layer_plan
from facelatent.io import atomic_path, open_checked, read_json, write_json

__all__ = [
    "CONFIG_FILE",
    "CONVERTIBLE",
    "WEIGHTS_FILE",
    "ConvertResult",
    "convert_generator",
    "load_converted",
    "read_safetensors",
    "write_safetensors",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "facelatent.converted_generator"
FORMAT_VERSION = 1
CONVERTIBLE = ("stylegan2", "rosinality", "stylegan3", "pggan", "stylegan1")  # PREFIX:PATH read
MAX_HEADER_BYTES = 16 * 2**20               # a 1024x1024 StyleGAN2 needs about 20 kB
_DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
# Bounds on a config's sizes, far above any StyleGAN2 or 3 (1024 pixels, 1024 wide, 8 mapping
# layers, 14 synthesis layers), so that a hostile config.json cannot make the generator's
# construction take all memory or time.
_SIZE_LIMITS = {"resolution": 8192, "mapping_layers": 64, "z_dim": 8192, "w_dim": 8192,
                "c_dim": 8192, "img_channels": 16, "channel_max": 8192, "embed_features": 8192,
                "layer_features": 8192, "num_layers": 64, "num_critical": 64, "margin_size": 256,
                "conv_kernel": 16, "filter_size": 64, "lrelu_upsampling": 16}
# The same bounds for InterFaceGAN's configs, whose sizes are lists: at most 12 blocks (4 to
# 8192 pixels) of at most 8192 channels, at most 64 mapping layers.
_MAX_BLOCKS, _MAX_WIDTH, _MAX_MAPPING_LAYERS = 12, 8192, 64

Port = StyleGAN2 | StyleGAN3 | PGGAN | StyleGAN1
PortConfig = StyleGAN2Config | StyleGAN3Config | PGGANConfig | StyleGAN1Config


@dataclass(frozen=True)
class _Architecture:
    """What converting and loading need of one port."""

    label: str                                             # in errors: "a StyleGAN2 ..."
    config: type[PortConfig]
    model: type[Port]
    state_dict: Callable[..., dict[str, torch.Tensor]]     # model -> its stored tensors
    load_state: Callable[..., None]                        # (model, tensors, where)
    min_channels: Callable[..., int]                       # config -> its narrowest layer
    from_json: Callable[[dict[str, Any]], PortConfig]      # checked JSON fields -> config
    w_avg: str = "stored in the checkpoint"                # config.json's "w_avg" by default


def _own_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.state_dict())


def _load_own_state(model: nn.Module, tensors: Mapping[str, torch.Tensor], where: str) -> None:
    # load_converted has already matched every name and shape to the model's, so strict
    # loading cannot fail here; it stays strict so that nothing is ever left unloaded.
    model.load_state_dict(tensors, strict=True)


def _ints(value: object, name: str, low: int, high: int, count: tuple[int, int]
          ) -> tuple[int, ...]:
    """``value``, a JSON list of ``count[0]..count[1]`` integers from ``low`` to ``high``."""
    if not (isinstance(value, list) and count[0] <= len(value) <= count[1]
            and all(type(v) is int and low <= v <= high for v in value)):
        raise ValueError(f"{name} must be a list of {count[0]} to {count[1]} integers from "
                         f"{low} to {high}, got {value!r}")
    return tuple(value)


def _layout(raw: object) -> Layout:
    """The `Layout` that `dataclasses.asdict` wrote as JSON, every field checked and bounded."""
    names = {f.name for f in dataclasses.fields(Layout)}
    if not isinstance(raw, dict) or set(raw) != names:
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"layout must have exactly the fields {sorted(names)}, got {got}")
    widths = _ints(raw["widths"], "layout widths", 1, _MAX_WIDTH, (1, _MAX_BLOCKS))
    fused = raw["fused"]
    if not (isinstance(fused, list) and all(type(f) is bool for f in fused)):
        raise ValueError(f"layout fused must be a list of true/false, got {fused!r}")
    lod = raw["lod"]
    if type(lod) not in (int, float) or not math.isfinite(lod):
        raise ValueError(f"layout lod must be a number, got {lod!r}")
    channels = _ints([raw["img_channels"]], "layout img_channels", 1, 16, (1, 1))[0]
    return Layout(widths=widths, fused=tuple(fused), lod=float(lod), img_channels=channels)


def _pggan_config(values: dict[str, Any]) -> PGGANConfig:
    return PGGANConfig(z_dim=values["z_dim"], layout=_layout(values["layout"]))


def _stylegan1_config(values: dict[str, Any]) -> StyleGAN1Config:
    mapping = _ints(values["mapping_widths"], "mapping_widths", 1, _MAX_WIDTH,
                    (2, _MAX_MAPPING_LAYERS + 1))
    # The truncation synthesis applies to a single w: the config checks psi (a finite number)
    # and the rows (0 to num_ws); None, its "InterFaceGAN's default", is no stored value.
    layers = values["truncation_layers"]
    if type(layers) is not int:
        raise ValueError(f"truncation_layers must be an integer, got {layers!r}")
    return StyleGAN1Config(mapping_widths=mapping, layout=_layout(values["layout"]),
                           truncation_psi=values["truncation_psi"], truncation_layers=layers)


def _nvidia_config(config: type[StyleGAN2Config | StyleGAN3Config]
                   ) -> Callable[[dict[str, Any]], PortConfig]:
    def build(values: dict[str, Any]) -> PortConfig:
        if isinstance(values.get("resample_filter"), list):
            values = {**values, "resample_filter": tuple(values["resample_filter"])}
        return config(**values)
    return build


_ARCHITECTURES = {
    "stylegan2": _Architecture("StyleGAN2", StyleGAN2Config, StyleGAN2,
                               stylegan2.nvidia_state_dict, stylegan2.load_nvidia_state,
                               lambda cfg: min(cfg.channels(r) for r in cfg.block_resolutions),
                               _nvidia_config(StyleGAN2Config)),
    "stylegan3": _Architecture("StyleGAN3", StyleGAN3Config, StyleGAN3,
                               stylegan3.nvidia_state_dict, stylegan3.load_nvidia_state,
                               lambda cfg: min(spec.out_channels for spec in layer_plan(cfg)[1]),
                               _nvidia_config(StyleGAN3Config)),
    "pggan": _Architecture("PGGAN", PGGANConfig, PGGAN, _own_state_dict, _load_own_state,
                           lambda cfg: min(cfg.layout.widths), _pggan_config,
                           w_avg="zero: the centre of z's sphere (PGGAN has no mapping network)"),
    "stylegan1": _Architecture("StyleGAN (v1)", StyleGAN1Config, StyleGAN1, _own_state_dict,
                               _load_own_state, lambda cfg: min(cfg.layout.widths),
                               _stylegan1_config),
}


# -- the safetensors format ---------------------------------------------------------------------
def write_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` as float32 to a safetensors file, atomically, names in sorted order."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().cpu().float().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)          # the data starts 8-byte aligned, as the spec suggests
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little"))
        fh.write(text)
        for data in blobs:
            fh.write(data)
    return Path(path)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _entry(name: str, entry: object) -> tuple[np.dtype, list[int], int, int]:
    """One header entry, checked: (dtype, shape, begin, end). Raises ValueError."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"tensor {name!r} is not {{dtype, shape, data_offsets}}")
    dtype = _DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype is None:
        raise ValueError(f"tensor {name!r} has dtype {entry['dtype']!r}; expected one of "
                         f"{', '.join(_DTYPES)}")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not (isinstance(shape, list) and len(shape) <= 8
            and all(type(d) is int and d >= 0 for d in shape)):
        raise ValueError(f"tensor {name!r} has shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(o) is int and o >= 0 for o in offsets)):
        raise ValueError(f"tensor {name!r} has data_offsets {offsets!r}")
    begin, end = offsets
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"tensor {name!r}: data_offsets {offsets} do not hold shape {shape} of "
                         f"{entry['dtype']}")
    return dtype, shape, begin, end


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (float32, their stored shapes) and metadata of a safetensors file.

    Raises `FileFormatError` naming the file for anything that does not follow the format.
    """
    path = Path(path)
    with open_checked(path, "a safetensors file") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 0 or length > min(size - 8, MAX_HEADER_BYTES):
            raise FileFormatError(f"{path} is not a safetensors file (or is truncated): its "
                                  f"{size} bytes cannot hold the header it announces")
        try:
            header = json.loads(fh.read(length).decode("utf-8"), object_pairs_hook=_no_duplicates)
            if not isinstance(header, dict):
                raise TypeError("the header is not a JSON object")
            metadata = header.pop("__metadata__", {})
            if not (isinstance(metadata, dict)
                    and all(isinstance(v, str) for v in metadata.values())):
                raise ValueError("__metadata__ is not a map of strings")
            entries = {name: _entry(name, e) for name, e in header.items()}
            spans = sorted((begin, end) for _, _, begin, end in entries.values())
            position = 0
            for begin, end in spans:          # the tensors must tile the data exactly
                if begin != position:
                    raise ValueError(f"the tensors' data has a gap or overlap at byte {begin}")
                position = end
            if position != size - 8 - length:
                raise ValueError(f"the tensors cover {position} bytes of data, the file holds "
                                 f"{size - 8 - length} (truncated, or extra bytes)")
        except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
            raise FileFormatError(f"{path} is not a valid safetensors file: {exc}") from None
        data = fh.read()
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        values = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize,
                               offset=begin)
        tensors[name] = torch.from_numpy(values.astype(np.float32).reshape(shape))
    return tensors, dict(metadata)


# -- converting and loading ---------------------------------------------------------------------
@dataclass(frozen=True)
class ConvertResult:
    """What `convert_generator` wrote."""

    folder: Path                 # the output folder; load it as converted:FOLDER
    weights: Path                # folder / model.safetensors
    config: Path                 # folder / config.json
    family: str                  # one of CONVERTIBLE: "stylegan2", "rosinality", ...
    resolution: int
    num_ws: int
    tensors: int                 # how many tensors the weights file holds
    source_sha256: str


def _sha256(path: Path, kind: str) -> str:
    digest = hashlib.sha256()
    with open_checked(path, kind) as fh:
        while block := fh.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def convert_generator(source: str, folder: str | Path, *, overwrite: bool = False) -> ConvertResult:
    """Write the generator ``source`` (``stylegan2:IN.pkl``, ``rosinality:IN.pt``,
    ``stylegan3:IN.pkl``, ``pggan:IN.pth`` or ``stylegan1:IN.pth``) to ``folder`` as ``model.safetensors`` + ``config.json``; see the
    module docstring.

    A folder that already holds a converted generator is refused unless ``overwrite``.
    """
    family, colon, file = source.partition(":")
    if not colon or family not in CONVERTIBLE or not file:
        choices = " or ".join(f"{p}:PATH" for p in CONVERTIBLE)
        raise ValueError(f"source must be {choices} (a checkpoint file), got {source!r}")
    if family == "stylegan1":     # stylegan1:PATH?truncation=...: the option is not the file
        file = parse_stylegan1_spec(file)[0]
    out = Path(folder)
    if not overwrite and ((out / CONFIG_FILE).exists() or (out / WEIGHTS_FILE).exists()):
        raise FacelatentError(f"{out} already holds a converted generator; choose another folder "
                              "or overwrite it (--overwrite)")
    G = get_generator(source, device="cpu")
    architecture = next(name for name, arch in _ARCHITECTURES.items()
                        if isinstance(G, arch.model))
    tensors = _ARCHITECTURES[architecture].state_dict(G)
    # The config is also written into the weights' metadata, which their sha256 covers: a
    # config.json edited in a way the tensors' shapes cannot show (PGGAN's and StyleGAN1's
    # fused upsampling, a level of detail) then no longer matches the weights.
    settings = dataclasses.asdict(G.cfg)
    weights = write_safetensors(out / WEIGHTS_FILE, tensors,
                                {"format": "pt", "config": _canonical(settings)})
    from facelatent import __version__

    # Weights first, config last: the config is what makes the folder loadable, so a run killed
    # in between leaves nothing that loads half-written.
    config = write_json(out / CONFIG_FILE, {
        "family": family,
        "architecture": architecture,
        "config": settings,
        "resolution": G.resolution,
        "num_ws": G.num_ws,
        "w_avg": getattr(G, "w_avg_source", _ARCHITECTURES[architecture].w_avg),
        "source": {"file": Path(file).name, "sha256": (sha := _sha256(Path(file), "a checkpoint"))},
        "weights": {"file": WEIGHTS_FILE, "sha256": _sha256(weights, "a safetensors file")},
        "facelatent_version": __version__,
    }, format=FORMAT, version=FORMAT_VERSION)
    return ConvertResult(folder=out, weights=weights, config=config, family=family,
                         resolution=G.resolution, num_ws=G.num_ws, tensors=len(tensors),
                         source_sha256=sha)


def _canonical(config: Mapping[str, Any]) -> str:
    """One JSON text for a config (keys sorted, tuples as lists), to compare two of them."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def _config(raw: object, where: Path, arch: _Architecture) -> PortConfig:
    names = {f.name for f in dataclasses.fields(arch.config)}
    if not isinstance(raw, dict) or set(raw) != names:
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise FileFormatError(f"{where}: 'config' must have exactly the fields {sorted(names)}, "
                              f"got {got}")
    values = dict(raw)
    for name, limit in _SIZE_LIMITS.items():
        value = values.get(name)
        if value is not None and not (type(value) is int and 0 <= value <= limit):
            raise FileFormatError(f"{where}: config {name} is {value!r}; expected an integer "
                                  f"from 0 to {limit}")
    try:
        cfg = arch.from_json(values)
        if arch.min_channels(cfg) < 1:
            raise ValueError("a block would have no channels")
    except (TypeError, ValueError, ArithmeticError) as exc:   # FileFormatError is a ValueError
        raise FileFormatError(f"{where}: 'config' is not a {arch.label} configuration "
                              f"({exc})") from None
    return cfg


def load_converted(folder: str | Path) -> Port:
    """The generator in ``folder`` (written by `convert_generator`), float32 on the CPU, named
    ``converted:FOLDER``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder} (expected a folder written by "
                                "`facelatent convert`)")
    meta = read_json(folder / CONFIG_FILE, format=FORMAT, max_version=FORMAT_VERSION,
                     kind="a converted generator's config")
    arch = _ARCHITECTURES.get(str(meta.get("architecture")))
    if arch is None:
        raise FileFormatError(f"{folder / CONFIG_FILE}: architecture "
                              f"{meta.get('architecture')!r} is not supported (expected one of "
                              f"{', '.join(map(repr, _ARCHITECTURES))})")
    cfg = _config(meta.get("config"), folder / CONFIG_FILE, arch)
    weights = folder / WEIGHTS_FILE
    recorded = meta.get("weights")
    expected = recorded.get("sha256") if isinstance(recorded, dict) else None
    if _sha256(weights, "the converted generator's weights (model.safetensors)") != expected:
        raise FileFormatError(f"{weights} does not match the sha256 in {CONFIG_FILE}: it is "
                              "damaged or was replaced; convert the checkpoint again")
    tensors, metadata = read_safetensors(weights)
    with torch.device("meta"):     # shapes only: the config must fit the tensors before we build
        skeleton = arch.state_dict(arch.model(cfg))
    if {k: v.shape for k, v in skeleton.items()} != {k: v.shape for k, v in tensors.items()}:
        raise FileFormatError(f"{weights}: its tensors do not fit the configuration in "
                              f"{CONFIG_FILE}; convert the checkpoint again")
    # Folders written before the config was copied into the metadata have none to compare.
    if "config" in metadata and metadata["config"] != _canonical(meta["config"]):
        raise FileFormatError(f"{folder / CONFIG_FILE}: 'config' differs from the one recorded "
                              f"in {WEIGHTS_FILE}; it was edited: convert the checkpoint again")
    model = arch.model(cfg, name=f"converted:{folder}")
    arch.load_state(model, tensors, str(weights))
    model.w_avg_source = str(meta.get("w_avg", arch.w_avg))
    return model.eval().requires_grad_(False)
