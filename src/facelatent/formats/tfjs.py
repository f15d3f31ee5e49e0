"""Reader for TensorFlow.js weight manifests (the format face-api ships its nets in).

A manifest is a JSON list of weight groups, ``[{"paths": [...], "weights": [...]}, ...]``. Each
weight entry is ``{"name", "shape", "dtype"}`` plus an optional ``"quantization"``:

- ``{"dtype": "uint8" | "uint16", "scale": s, "min": m}``: stored as unsigned integers ``q``, the
  value is ``q * scale + min`` (affine quantisation, one scale and offset per tensor);
- ``{"dtype": "float16"}``: stored as IEEE half floats.

The binary data of all groups is the concatenation of every group's ``paths`` in order; each
tensor's bytes follow the previous one's with no padding. This module only decodes tensors: the
architecture lives in the code of each net (e.g. :mod:`facelatent.faces.dlib_resnet`).
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.errors import WeightsError

__all__ = ["decode_weights", "read_manifest", "read_weights"]

PathLike = str | os.PathLike[str]

# Stored element type -> numpy dtype (little-endian, as tfjs writes it).
_STORED: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("u1"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "float16": np.dtype("<f2"),
}


def read_manifest(json_path: PathLike) -> list[dict[str, Any]]:
    """Parse and check a manifest file; returns its list of weight groups."""
    path = Path(json_path)
    try:
        groups = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read tfjs weight manifest {path}: {exc}") from exc
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("weights"), list) for g in groups
    ):
        raise WeightsError(f"{path} is not a tfjs weight manifest: expected a JSON list of "
                           "groups, each with a 'weights' list")
    return groups


def _stored_dtype(entry: dict[str, Any], where: str) -> tuple[np.dtype[Any], dict[str, Any]]:
    """The dtype the entry's bytes are stored in, and its quantisation dict (or {})."""
    quant = entry.get("quantization") or {}
    if not isinstance(quant, dict):
        raise WeightsError(f"{where}: 'quantization' must be an object, got {quant!r}")
    stored = quant.get("dtype", entry.get("dtype", "float32"))
    if stored not in _STORED:
        raise WeightsError(f"{where}: unsupported stored dtype {stored!r} "
                           f"(supported: {', '.join(_STORED)})")
    if quant and stored in ("uint8", "uint16"):
        for key in ("scale", "min"):
            if not isinstance(quant.get(key), (int, float)):
                raise WeightsError(f"{where}: {stored} quantisation needs a numeric {key!r}")
    elif quant and stored != "float16":
        raise WeightsError(f"{where}: cannot dequantise from {stored!r}")
    return _STORED[stored], quant


def decode_weights(groups: list[dict[str, Any]], data: bytes,
                   source: str = "weights") -> OrderedDict[str, np.ndarray]:
    """Decode the tensors of ``groups`` from the concatenated binary ``data``.

    Returns ``name -> float32 array`` in manifest order. Raises WeightsError when the data is
    shorter or longer than the manifest says, a name repeats, or an entry is malformed.
    """
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    offset = 0
    for group in groups:
        for entry in group["weights"]:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str):
                raise WeightsError(f"{source}: weight entry without a name: {entry!r}")
            where = f"{source}: tensor {name!r}"
            shape = entry.get("shape")
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0
                                                      for d in shape):
                raise WeightsError(f"{where}: bad shape {shape!r}")
            if name in out:
                raise WeightsError(f"{where} appears twice in the manifest")
            dtype, quant = _stored_dtype(entry, where)
            count = math.prod(shape)
            nbytes = count * dtype.itemsize
            if offset + nbytes > len(data):
                raise WeightsError(
                    f"{where} needs bytes {offset}..{offset + nbytes} but the weight data has "
                    f"only {len(data)} bytes: the .bin file is truncated or belongs to another "
                    "manifest; fetch it again"
                )
            raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += nbytes
            if quant.get("dtype") in ("uint8", "uint16"):
                values = raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
            else:
                values = raw
            out[name] = values.astype(np.float32).reshape(shape)
    if offset != len(data):
        raise WeightsError(f"{source}: the manifest describes {offset} bytes but the weight "
                           f"data has {len(data)}: wrong or corrupt .bin file; fetch it again")
    return out


def read_weights(json_path: PathLike,
                 bin_paths: PathLike | Sequence[PathLike] | None = None
                 ) -> OrderedDict[str, np.ndarray]:
    """Read a tfjs weight manifest and its binary data: ``name -> float32 array``, in order.

    ``bin_paths``: the binary file(s) in manifest order; None = the ``paths`` the manifest
    names, relative to the manifest's folder (pass them explicitly when the files were renamed,
    as in facelatent's weight cache).
    """
    groups = read_manifest(json_path)
    if bin_paths is None:
        folder = Path(json_path).parent
        files = [folder / p for g in groups for p in g.get("paths", [])]
    elif isinstance(bin_paths, (str, os.PathLike)):
        files = [Path(bin_paths)]
    else:
        files = [Path(p) for p in bin_paths]
    chunks = []
    for file in files:
        try:
            chunks.append(file.read_bytes())
        except OSError as exc:
            raise WeightsError(f"cannot read tfjs weight data {file}: {exc}") from exc
    return decode_weights(groups, b"".join(chunks), source=str(json_path))
