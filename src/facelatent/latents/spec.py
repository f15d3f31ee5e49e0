"""StoreSpec: what makes the samples of a latent store comparable, fixed at its creation."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["IDENTITY_DIM", "IDENTITY_MODELS", "StoreSpec"]

IDENTITY_MODELS = ("sface", "dlib")
IDENTITY_DIM = 128


@dataclass(frozen=True)
class StoreSpec:
    """What makes the samples of a store comparable; fixed when the store is created."""

    generator: str                        # registry name, e.g. "mobilestylegan-ffhq"
    z_dim: int                            # latent sizes of that generator
    w_dim: int
    truncation_psi: float = 1.0           # 1 = no truncation
    truncation_space: str = "w"           # where psi acts: "w" (toward w_avg) or "z" (scales z)
    backend: str = "torch"                # generator backend that made the samples
    seed_start: int = 0                   # seed of row 0; row r holds seed seed_start + r
    shard_size: int = 256                 # rows per shard (= per zarr chunk)
    attributes: tuple[str, ...] = ()      # one scores/<name> array each; () = no scoring
    identity: tuple[str, ...] = ()        # identity/<model> arrays, from IDENTITY_MODELS
    image_size: int = 0                   # side of the kept renders (images array); 0 = none
    model_assets: Mapping[str, Any] = field(default_factory=dict, hash=False)  # provenance

    def __post_init__(self) -> None:
        for name in ("z_dim", "w_dim", "shard_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.generator:
            raise ValueError("generator must be a registered generator name, got ''")
        if not math.isfinite(self.truncation_psi):
            raise ValueError(f"truncation_psi must be a finite number, got {self.truncation_psi}")
        if self.truncation_space not in ("z", "w"):
            raise ValueError(f"truncation_space must be 'z' or 'w', got {self.truncation_space!r}")
        if not 0 <= int(self.seed_start) < 2**32:
            raise ValueError(f"seed_start must be in [0, 2**32), got {self.seed_start}")
        if len(set(self.attributes)) != len(self.attributes) or not all(self.attributes):
            raise ValueError(f"attributes must be distinct non-empty names, got {self.attributes}")
        if int(self.image_size) < 0:
            raise ValueError(f"image_size must be 0 (no images) or a side in pixels, got "
                             f"{self.image_size}")
        unknown = [m for m in self.identity if m not in IDENTITY_MODELS]
        if unknown or len(set(self.identity)) != len(self.identity):
            raise ValueError(f"identity must be distinct models from {IDENTITY_MODELS}, got "
                             f"{self.identity}")
        # Normalise JSON-ish inputs (lists from a manifest) so that specs compare equal.
        object.__setattr__(self, "attributes", tuple(self.attributes))
        object.__setattr__(self, "identity", tuple(self.identity))
        object.__setattr__(self, "truncation_psi", float(self.truncation_psi))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["attributes"] = list(self.attributes)
        out["identity"] = list(self.identity)
        out["model_assets"] = copy.deepcopy(dict(self.model_assets))
        if not self.image_size:
            # Stores made before renders could be kept have no such field; leaving it out
            # when unused keeps their manifests and resume keys equal to a new spec's.
            del out["image_size"]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoreSpec:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def resume_key(self) -> dict[str, Any]:
        """The fields a resumed or extended store must share (all of them)."""
        return self.to_json()

    def arrays(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """Every array of a store of this spec: ``{name: (dtype, row shape)}``."""
        out: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
            "seeds": (np.dtype(np.int64), ()),
            "z": (np.dtype(np.float32), (self.z_dim,)),
            "w": (np.dtype(np.float32), (self.w_dim,)),
        }
        for name in self.attributes:
            out[f"scores/{name}"] = (np.dtype(np.float32), ())
        for model in self.identity:
            out[f"identity/{model}"] = (np.dtype(np.float32), (IDENTITY_DIM,))
        if self.image_size:
            side = int(self.image_size)
            out["images"] = (np.dtype(np.uint8), (3, side, side))
        return out
