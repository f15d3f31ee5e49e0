"""Mapping checkpoints: one ``.npz`` (format ``facelatent.mapping``) holding everything a
trained or half-trained mapping needs, and nothing that executes on load.

Members:

    meta                  JSON: config, generator, stage, step, training settings, data
    model/<param>         MappingNet's state (E_attr, M, w statistics)
    disc/<param>          D_W's state (absent when the stage trains without it)
    opt/<name>/<i>/<key>  Adam state per parameter (exp_avg, exp_avg_sq, step), ``opt/<name>``
                          being "model" or "disc"; the groups' hyperparameters are in ``meta``

It is written atomically (a killed save leaves the previous checkpoint), read with
:func:`facelatent.io.load_npz` (no pickles, every member's header checked first; the zip's
CRC catches a damaged member), and every key and shape is checked against the networks the
config builds: a checkpoint of another config or generator gives one line that says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facelatent import __version__
from facelatent.errors import FileFormatError
from facelatent.io import load_npz, save_npz
from facelatent.mapping.model import MapperConfig, MappingNet, WDiscriminator

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT = "facelatent.mapping"
FORMAT_VERSION = 1
_KIND = "a mapping checkpoint (checkpoint.npz from facelatent mapping train)"


@dataclass
class Checkpoint:
    """A mapping checkpoint in memory.

    ``generator``: the generator the mapping targets (``{"name", "w_dim", "num_ws",
    "truncation_psi"}``). ``stage``: "regress" or "e2e". ``step``: optimiser steps done in that
    stage. ``settings``: the stage's training settings (JSON). ``data``: what it trained on.
    ``optimizers``: ``{"model"|"disc": torch optimizer state_dict}``.
    """

    config: MapperConfig
    generator: dict[str, Any]
    model: MappingNet
    disc: WDiscriminator | None = None
    stage: str = "regress"
    step: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)   # earlier stages, in order


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically; returns the path."""
    arrays: dict[str, np.ndarray] = {}
    _put_state(arrays, "model", ckpt.model.state_dict())
    if ckpt.disc is not None:
        _put_state(arrays, "disc", ckpt.disc.state_dict())
    groups: dict[str, Any] = {}
    for name, state in ckpt.optimizers.items():
        groups[name] = state["param_groups"]
        for index, values in state["state"].items():
            for key, value in values.items():
                arrays[f"opt/{name}/{index}/{key}"] = _array(value)
    meta = {"config": ckpt.config.to_json(), "generator": ckpt.generator, "stage": ckpt.stage,
            "step": int(ckpt.step), "settings": ckpt.settings, "data": ckpt.data,
            "optimizer_groups": groups, "history": ckpt.history,
            "facelatent_version": __version__}
    arrays["meta"] = np.str_(json.dumps(meta))
    return save_npz(path, arrays, format=FORMAT, version=FORMAT_VERSION)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises `FileFormatError` (one line naming the file) for anything that is not a complete
    mapping checkpoint of this format: another file, a damaged or truncated one, missing or
    extra tensors, shapes that do not fit its own config. `FileNotFoundError` if missing."""
    path = Path(path)
    arrays = load_npz(path, format=FORMAT, max_version=FORMAT_VERSION, kind=_KIND)
    try:
        meta = json.loads(str(arrays.pop("meta")))
        config = MapperConfig.from_json(meta["config"])
        generator, stage, step = dict(meta["generator"]), str(meta["stage"]), int(meta["step"])
        missing = [k for k in ("name", "w_dim", "num_ws") if k not in generator]
        if missing:
            raise KeyError(f"generator {missing}")
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: its metadata is incomplete or invalid ({exc}); "
                              f"expected {_KIND}") from None
    model = MappingNet(config)
    _load_state(path, model, _take(arrays, "model"), "model")
    disc_state = _take(arrays, "disc")
    disc = None
    if disc_state:
        disc = WDiscriminator(config.w_dim, config.disc_hidden)
        _load_state(path, disc, disc_state, "disc")
    optimizers: dict[str, dict[str, Any]] = {}
    for name, groups in meta.get("optimizer_groups", {}).items():
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in _take(arrays, f"opt/{name}").items():
            index, _, field_name = key.partition("/")
            state.setdefault(int(index), {})[field_name] = torch.from_numpy(value)
        optimizers[name] = {"state": state, "param_groups": groups}
    if arrays:
        raise FileFormatError(f"{path} has members this format does not define: "
                              f"{sorted(arrays)[:5]}; expected {_KIND}")
    return Checkpoint(config, generator, model.to(device), None if disc is None else disc.to(device),
                      stage, step, dict(meta.get("settings", {})), dict(meta.get("data", {})),
                      optimizers, list(meta.get("history", [])))


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _put_state(arrays: dict[str, np.ndarray], prefix: str, state: dict[str, torch.Tensor]) -> None:
    for key, value in state.items():
        arrays[f"{prefix}/{key}"] = _array(value)


def _take(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Pop every member under ``prefix/`` and return them with the prefix removed."""
    keys = [k for k in arrays if k.startswith(prefix + "/")]
    return {k[len(prefix) + 1:]: arrays.pop(k) for k in keys}


def _load_state(path: Path, module: nn.Module, state: dict[str, np.ndarray], what: str) -> None:
    """Copy ``state`` into ``module``, refusing any missing, extra or misshapen tensor."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise FileFormatError(f"{path}: the {what} tensors do not fit its config: missing "
                              f"{missing[:4] or 'none'}, unexpected {extra[:4] or 'none'}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise FileFormatError(f"{path}: {what} tensor {key!r} has shape {list(value.shape)}, "
                                  f"its config needs {list(expected[key].shape)}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise FileFormatError(f"{path}: {what} tensor {key!r} holds NaN or infinity (a "
                                  "diverged run?); resume from an earlier checkpoint")
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
