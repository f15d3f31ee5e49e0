"""Training settings of the mapping: one stage's :class:`TrainSettings`, and the presets for a
2-core CPU and for a GPU (:func:`preset`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from facelatent.mapping.losses import MappingLossWeights

__all__ = ["BALANCED", "PRESETS", "STAGES", "TrainSettings", "preset"]

STAGES = ("regress", "e2e")


@dataclass(frozen=True)
class TrainSettings:
    """One stage's training settings; all but the bookkeeping ones are fixed for a run."""

    stage: str = "regress"                # "regress" or "e2e" (see the module docstring)
    steps: int = 3000                     # optimiser steps of this stage in all
    batch: int = 32                       # faces per step
    lr: float = 3e-4                      # Adam, E_attr and M
    disc_lr: float = 1e-4                 # Adam, D_W (e2e)
    seed: int = 0                         # initial weights and every batch
    holdout: int = 256                    # last store rows kept out for validation
    cross_every: int = 3                  # every k-th step pairs different faces; 0: never
    proxy_steps: int = 1000               # regress cross steps: fitting steps of the proxy
    loss_size: int = 256                  # e2e: faces are compared at this side, px
    r1_gamma: float = 10.0                # e2e: R1 penalty on D_W's real w
    weights: MappingLossWeights = field(default_factory=MappingLossWeights)
    checkpoint_every: int = 100           # steps between checkpoints (bookkeeping)
    validate_every: int = 250             # steps between validations (bookkeeping)
    device: str = "cpu"                   # where it runs (bookkeeping: resumable elsewhere)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be 'regress' or 'e2e', got {self.stage!r}")
        for name in ("steps", "batch", "checkpoint_every", "validate_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch < 2 and self.cross_every:
            raise ValueError("cross steps pair different faces of a batch: batch must be at "
                             "least 2 (or --cross-every 0)")
        if self.proxy_steps < 1:
            raise ValueError(f"proxy_steps must be at least 1, got {self.proxy_steps}")
        for name in ("lr", "disc_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.holdout < 0 or self.cross_every < 0 or self.r1_gamma < 0:
            raise ValueError("holdout, cross_every and r1_gamma must be >= 0")
        if not 64 <= self.loss_size <= 1024:
            raise ValueError(f"loss_size must be 64-1024 px, got {self.loss_size}")
        w = self.weights.as_dict()
        if any(not math.isfinite(v) or v < 0 for v in w.values()) or not any(w.values()):
            raise ValueError(f"loss weights must be finite, >= 0 and not all 0, got {w}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainSettings:
        data = dict(data)
        data["weights"] = MappingLossWeights(**data.get("weights", {}))
        return cls(**data)

    def resume_key(self) -> dict[str, Any]:
        """What a resumed run must share: everything but the length and the bookkeeping."""
        key = self.to_json()
        for name in ("steps", "checkpoint_every", "validate_every", "device"):
            key.pop(name)
        return key


# The paper's loss weights (MappingLossWeights' defaults) leave the landmark term with a
# two-hundredth of the identity term's pull on w: measured on this project's first regress
# checkpoint, the gradient norms with respect to w (whitened units, batch of 4) were identity
# 0.84, landmarks 4.4, reconstruction 0.036 and latent 0.035 before weighting. The presets
# weight landmarks 0.1 and the known-w term 10, so pose and expression (landmarks), identity
# and staying near the known w pull with comparable force.
BALANCED = MappingLossWeights(identity=1.0, landmarks=0.1, reconstruction=0.02,
                              adversarial=0.1, latent=10.0)

# Steps, batch and rate per stage; the README has the figures they give on a 2-core CPU.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {"regress": {"steps": 3000, "batch": 32, "lr": 3e-4},
            "e2e": {"steps": 300, "batch": 4, "lr": 5e-5, "weights": BALANCED,
                    "checkpoint_every": 25, "validate_every": 50}},
    "gpu": {"regress": {"steps": 30000, "batch": 128, "lr": 3e-4, "checkpoint_every": 1000,
                        "validate_every": 1000},
            "e2e": {"steps": 100000, "batch": 6, "lr": 5e-5, "weights": BALANCED,
                    "checkpoint_every": 1000, "validate_every": 1000}},
}


def preset(name: str, stage: str, **overrides: Any) -> TrainSettings:
    """The settings of preset ``name`` ("cpu" or "gpu") for ``stage``, with ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return TrainSettings(stage=stage, **{**PRESETS[name][stage], **overrides})
