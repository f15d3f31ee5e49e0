"""Training settings of a face recogniser (:class:`TrainSettings`) and the presets for a 2-core
CPU and for a GPU (:func:`preset`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from facelatent.recognition.heads import LOSSES
from facelatent.recognition.model import RecognizerConfig

__all__ = ["PRESETS", "SCHEDULES", "Augmentation", "TrainSettings", "preset"]

SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class Augmentation:
    """Random changes to each training crop, drawn per image (see `recognition.data.augment`)."""

    flip: float = 0.5              # probability of a horizontal flip
    min_scale: float = 0.85        # random resized crop: side of the crop, fraction of 112 px
    max_shift: float = 0.05        # and its centre moved up to this fraction of the side
    aspect: float = 0.1            # and its aspect ratio drawn from [1 / (1 + v), 1 + v]
    brightness: float = 0.2        # colour jitter: factors drawn from [1 - v, 1 + v]
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self) -> None:
        values = asdict(self)
        if any(not math.isfinite(v) or v < 0 for v in values.values()):
            raise ValueError(f"augmentation values must be finite and >= 0, got {values}")
        if self.flip > 1 or not 0.3 <= self.min_scale <= 1 or max(self.max_shift,
                                                                   self.aspect) > 0.3:
            raise ValueError("augmentation: flip must be a probability, min_scale 0.3-1, "
                             f"max_shift and aspect at most 0.3, got {values}")
        if max(self.brightness, self.contrast, self.saturation) >= 1:
            raise ValueError(f"colour jitter strengths must be below 1, got {values}")


@dataclass(frozen=True)
class TrainSettings:
    """One training run's settings; all but the bookkeeping ones are fixed for a run (a
    resumed run must ask for the same, see :meth:`resume_key`)."""

    model: RecognizerConfig = field(default_factory=RecognizerConfig)
    epochs: int = 4                       # passes over the training crops
    batch: int = 64                       # crops per step (the last, partial batch is dropped)
    lr: float = 0.1                       # SGD peak learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4            # on every weight, the head's included
    schedule: str = "cosine"              # "cosine" to 0, or "step" (x0.1 at 60 % and 85 %)
    warmup_epochs: float = 0.5            # linear warm-up from 0 (a margin loss at s=64 can
                                          # blow up the first steps at full rate)
    loss: str = "cosface"                 # "cosface" or "arcface"
    scale: float = 64.0                   # s
    margin: float | None = None           # m; None: 0.35 (CosFace) or 0.5 (ArcFace)
    augment: Augmentation = field(default_factory=Augmentation)
    amp: bool = False                     # float16 autocast + gradient scaling, on CUDA only
    seed: int = 0                         # initial weights, the order of crops, augmentation
    device: str = "cpu"                   # where it runs (bookkeeping: resumable elsewhere)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not (0 <= self.momentum < 1 and 0 <= self.weight_decay < 1):
            raise ValueError(f"momentum and weight_decay must be in [0, 1), got "
                             f"{self.momentum} and {self.weight_decay}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be 0-{self.epochs} (the epochs), got "
                             f"{self.warmup_epochs}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got "
                             f"{self.schedule!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not 0 <= self.m < math.pi / 2:
            raise ValueError(f"margin must be in [0, pi/2), got {self.margin}")

    @property
    def m(self) -> float:
        """The margin in use."""
        if self.margin is not None:
            return float(self.margin)
        return 0.35 if self.loss == "cosface" else 0.5

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based): a pure function of the step,
        so a resumed run follows the same schedule without a scheduler object to restore."""
        total = self.epochs * steps_per_epoch
        warm = self.warmup_epochs * steps_per_epoch
        if step < warm:
            return self.lr * (step + 1) / warm
        if self.schedule == "cosine":
            done = (step - warm) / max(1.0, total - warm)
            return 0.5 * self.lr * (1 + math.cos(math.pi * min(1.0, done)))
        return self.lr * 0.1 ** sum(step >= f * total for f in (0.6, 0.85))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "model": self.model.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["model"] = RecognizerConfig.from_json(values["model"])
        values["augment"] = Augmentation(**values["augment"])
        return cls(**values)

    def resume_key(self) -> dict[str, Any]:
        """What a resumed run must share: everything but the bookkeeping."""
        key = self.to_json()
        key.pop("device")
        return key


# The README gives what each reaches. cpu: a few epochs at a batch that a 2-core machine steps
# through in seconds; gpu: MobileFaceNet's published recipe (batch 512, SGD 0.1) with float16.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"epochs": 4, "batch": 64, "lr": 0.1, "warmup_epochs": 0.5},
    "gpu": {"epochs": 30, "batch": 512, "lr": 0.1, "warmup_epochs": 1.0, "amp": True},
}


def preset(name: str, **overrides: Any) -> TrainSettings:
    """The settings of preset ``name`` ("cpu" or "gpu") with ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return TrainSettings(**{**PRESETS[name], **overrides})
