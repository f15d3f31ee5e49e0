"""Identity/attribute latent mapping (Nitzan et al., SIGGRAPH Asia 2020): a frozen face
recogniser (E_id), a trainable attribute encoder (E_attr) and an MLP (M) into the generator's W.

    from facelatent.mapping import Mapper, load_faces, swap_grid
    mapper = Mapper.from_checkpoint("runs/mapping/checkpoint.npz")
    w = mapper.swap(identity_faces, attribute_faces)

Applying and evaluating a mapping (:mod:`~facelatent.mapping.apply`,
:mod:`~facelatent.mapping.inputs`, :mod:`~facelatent.mapping.evaluate`) are imported on first
use: the evaluation pulls in scikit-learn and SciPy, which ``import facelatent.mapping``
should not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from facelatent.mapping.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from facelatent.mapping.mapper import Mapper
from facelatent.mapping.model import MapperConfig, MappingNet, WDiscriminator, build

if TYPE_CHECKING:
    from facelatent.mapping.apply import apply_to_dir, interpolate, swap_grid
    from facelatent.mapping.evaluate import evaluate_mapping, write_mapping_evaluation
    from facelatent.mapping.inputs import load_faces

__all__ = ["Checkpoint", "Mapper", "MapperConfig", "MappingNet", "WDiscriminator",
           "apply_to_dir", "build", "evaluate_mapping", "interpolate", "load_checkpoint",
           "load_faces", "save_checkpoint", "swap_grid", "write_mapping_evaluation"]

# name -> the module that defines it, imported by __getattr__ on first use
_LAZY = {"apply_to_dir": "apply", "interpolate": "apply", "swap_grid": "apply",
         "load_faces": "inputs", "evaluate_mapping": "evaluate",
         "write_mapping_evaluation": "evaluate"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value          # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
