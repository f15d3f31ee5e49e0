"""Read NVIDIA's network pickles (StyleGAN2-ADA ``.pkl`` snapshots) without running their code.

NVIDIA's training code pickles each network through ``torch_utils.persistence``: an object is
stored as a call ``_reconstruct_persistent_obj(meta)`` with ``meta = {type, version,
module_src, class_name, state}``, where ``module_src`` is the Python source of the network's
module and ``state`` the object's ``__dict__`` (its constructor arguments under
``_init_args`` / ``_init_kwargs``, its parameters, buffers and child networks). The usual
``pickle.load`` executes ``module_src``; a file from the internet could run anything that way,
or more directly through any ``__reduce__`` it likes.

This reader is a `pickle.Unpickler` whose ``find_class`` knows a short allow-list, each entry
mapped to a function of ours that builds plain data:

1. tensors: ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` (checked arguments,
   no hooks kept) over storages that ``torch.storage._load_from_bytes`` carries as bytes, which
   we read with ``torch.load(weights_only=True)``, torch's own restricted reader;
2. containers: ``collections.OrderedDict``, and ``dnnlib.util.EasyDict`` read as a plain dict;
3. numeric numpy scalars (the networks keep a few gains as ``numpy.float64``) and arrays
   (StyleGAN3's layers keep their sizes as small ``numpy`` arrays), rebuilt from raw bytes only;
4. the persistence reconstruct function, replaced by `NetworkRecord`: the record keeps the class
   name, constructor arguments and state, and drops ``module_src`` unread.

Any other global is refused with a `FileFormatError` naming it, before anything is called.
"""

from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelatent.errors import FileFormatError
from facelatent.io import open_checked

__all__ = ["NetworkRecord", "load_generator_record", "load_network_pickle"]

RECONSTRUCT = ("torch_utils.persistence", "_reconstruct_persistent_obj")


@dataclass
class NetworkRecord:
    """One pickled network, as data: what its class was called and how it was built.

    ``state`` is the network's ``__dict__`` as pickled: ``_parameters`` / ``_buffers`` map names
    to tensors, ``_modules`` names to child `NetworkRecord` objects.
    """

    class_name: str                                     # e.g. "Generator", "SynthesisLayer"
    version: int                                        # persistence format version (6 today)
    init_args: tuple[Any, ...]                          # positional constructor arguments
    init_kwargs: dict[str, Any]                         # keyword constructor arguments
    state: dict[str, Any] = field(repr=False)

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and buffers of this network and its children, keyed like a PyTorch
        ``state_dict`` (``"synthesis.b4.conv1.weight"``)."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None:
                    out[prefix + name] = value
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, NetworkRecord):
                out.update(child.tensors(f"{prefix}{name}."))
            elif child is not None:
                raise FileFormatError(f"network {self.class_name}: child {name!r} is a "
                                      f"{type(child).__name__}, not a pickled network")
        return out


def _record(meta: object) -> NetworkRecord:
    """Stands in for ``_reconstruct_persistent_obj``: keep the data, never the source."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise FileFormatError("a persistent object's metadata is not a class record")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise FileFormatError(f"persistent object {meta.get('class_name')!r} has no state dict")
    return NetworkRecord(class_name=str(meta.get("class_name")),
                         version=int(meta.get("version", -1)),
                         init_args=tuple(state.get("_init_args") or ()),
                         init_kwargs=dict(state.get("_init_kwargs") or {}), state=dict(state))


class _PlainDict(dict):  # type: ignore[type-arg]
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access); data only."""


def _load_storage(data: object) -> object:
    if not isinstance(data, bytes):
        raise FileFormatError("a tensor storage is not stored as bytes")
    return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_tensor(storage: object, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    *_ignored: object) -> torch.Tensor:
    """``_rebuild_tensor_v2`` with its arguments checked; gradient flags and hooks dropped."""
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise FileFormatError(f"a tensor's storage is a {type(storage).__name__}")
    ints = [offset, *size, *stride]
    if not all(isinstance(v, int) and v >= 0 for v in ints) or len(size) != len(stride):
        raise FileFormatError("a tensor has an invalid offset, size or stride")
    return torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: object, *_ignored: object) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise FileFormatError("a parameter does not hold a tensor")
    return data


_NUMERIC_KINDS = "biufc"


def _numpy_dtype(name: object, align: object = False, copy: object = False) -> np.dtype[Any]:
    if not isinstance(name, str) or np.dtype(name).kind not in _NUMERIC_KINDS:
        raise FileFormatError(f"numpy dtype {name!r} is not numeric")
    return np.dtype(name, align=bool(align), copy=bool(copy))


def _numpy_scalar(dtype: object, data: object = None) -> np.generic:
    if not (isinstance(dtype, np.dtype) and dtype.kind in _NUMERIC_KINDS and isinstance(data, bytes)
            and len(data) == dtype.itemsize):
        raise FileFormatError("a numpy scalar is not a plain number")
    return np.frombuffer(data, dtype=dtype)[0]


class _NumericArray(np.ndarray):  # type: ignore[type-arg]
    """Stands in for ``numpy.ndarray`` while unpickling: pickle hands the array's state (version,
    shape, dtype, order, raw data) to ``__setstate__``, checked here to be numeric bytes of the
    announced size before numpy reads it."""

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise FileFormatError("a numpy array's state is not (version, shape, dtype, order, data)")
        _, shape, dtype, _, data = state
        if not (isinstance(dtype, np.dtype) and dtype.kind in _NUMERIC_KINDS
                and isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)
                and isinstance(data, bytes) and len(data) == math.prod(shape) * dtype.itemsize):
            raise FileFormatError("a numpy array is not plain numeric data")
        super().__setstate__(state)


def _numpy_array(cls: object, shape: object = (0,), typecode: object = b"b") -> np.ndarray:
    """``numpy.core.multiarray._reconstruct``: an empty array that `_NumericArray` fills."""
    if cls is not _NumericArray:
        raise FileFormatError(f"a numpy array of class {cls!r} is not a plain ndarray")
    return np.ndarray.__new__(_NumericArray, (0,), np.uint8)


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    RECONSTRUCT: _record,
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): _PlainDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "ndarray"): _NumericArray,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_array,
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, stream: io.BufferedIOBase, path: Path) -> None:
        super().__init__(stream)
        self.path = path

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise FileFormatError(
                f"refusing global '{module}.{name}' in {self.path.name}: a network pickle needs "
                "only tensors and NVIDIA's network records, and this file asks to run other "
                "code; nothing from it was executed") from None

    def persistent_load(self, pid: object) -> object:
        raise FileFormatError(f"{self.path.name}: persistent ids (torch.save archives) are not "
                              "NVIDIA network pickles")


def load_network_pickle(path: str | Path) -> dict[str, Any]:
    """The top-level dict of an NVIDIA network pickle (``{"G_ema": NetworkRecord, ...}``).

    Raises `FileFormatError` naming the file for a refused global, a damaged file or one that is
    not a dict of networks.
    """
    path = Path(path)
    with open_checked(path, "an NVIDIA network pickle (.pkl)") as fh:
        try:
            data = _SafeUnpickler(fh, path).load()  # type: ignore[arg-type]
        except FileFormatError as exc:
            msg = str(exc)
            raise FileFormatError(msg if path.name in msg else f"{path}: {msg}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, RuntimeError,
                IndexError, KeyError, AttributeError) as exc:
            raise FileFormatError(f"{path} is not a readable network pickle ({exc})") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{path} holds a {type(data).__name__}; expected a dict of networks "
                              "such as {'G_ema': ...}")
    return data


def load_generator_record(path: str | Path, network: str = "G_ema") -> NetworkRecord:
    """The pickled ``Generator`` named ``network`` in the NVIDIA network pickle ``path``.

    Raises `FileFormatError` naming the file where `load_network_pickle` does, where ``network``
    is not one of its networks (the message lists those it has), or where it is not a
    ``Generator``.
    """
    path = Path(path)
    top = load_network_pickle(path)
    record = top.get(network)
    if not isinstance(record, NetworkRecord):
        nets = [k for k, v in top.items() if isinstance(v, NetworkRecord)]
        raise FileFormatError(f"{path} has no network {network!r} (it has: {', '.join(nets)})")
    if record.class_name != "Generator":
        raise FileFormatError(f"{path}: {network!r} is a {record.class_name!r}, not a Generator")
    return record
