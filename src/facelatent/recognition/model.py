"""The face-recognition networks trained here, in plain PyTorch: 112x112 ArcFace-template crops
in, an embedding out.

- ``mobilefacenet`` (Chen et al. 2018, "MobileFaceNets"): a 3x3 stride-2 stem, MobileNetV2
  bottlenecks (1x1 expansion, 3x3 depthwise, linear 1x1 projection, residual where the shape
  allows), a 1x1 conv to 512 channels, then the global depthwise conv (GDC, a 7x7 depthwise
  conv with no padding) that weighs each of the 7x7 positions instead of averaging them (the
  face's eyes and mouth sit at fixed places on the template, so a plain average throws that
  away), and a linear 1x1 conv to the embedding. About 1 M parameters at width 1.
- ``resnet18``: the "IR" ResNet of ArcFace (Deng et al. 2019) with [2, 2, 2, 2] blocks: a stride-1
  stem (a 112 px face has little to spare), pre-activation blocks BN-conv-BN-PReLU-conv-BN, and
  a BN-flatten-linear-BN head over the 7x7x512 map. About 24 M parameters: a GPU network.

Both take float RGB in [-1, 1] (the project's image convention) and return the raw embedding
``[N, D]``; `facelatent.recognition.checkpoint.Recognizer` normalises it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn

__all__ = ["ARCHITECTURES", "CROP_SIZE", "IResNet", "MobileFaceNet", "RecognizerConfig",
           "build_backbone", "count_parameters"]

CROP_SIZE = 112
ARCHITECTURES = ("mobilefacenet", "resnet18")


@dataclass(frozen=True)
class RecognizerConfig:
    """What builds a backbone; stored in the run folder's ``config.json``."""

    arch: str = "mobilefacenet"    # one of ARCHITECTURES
    embedding: int = 128           # output dimensions D
    width: float = 1.0             # channel multiplier (mobilefacenet; < 1 for tests)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if not 8 <= int(self.embedding) <= 4096:
            raise ValueError(f"embedding must be 8-4096 dimensions, got {self.embedding}")
        if not (math.isfinite(self.width) and 0.0625 <= self.width <= 4):
            raise ValueError(f"width must be a multiplier from 0.0625 to 4, got {self.width}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecognizerConfig:
        return cls(arch=str(data["arch"]), embedding=int(data["embedding"]),
                   width=float(data["width"]))


def build_backbone(config: RecognizerConfig) -> nn.Module:
    """A freshly initialised backbone for ``config`` (seed torch's generator first)."""
    if config.arch == "mobilefacenet":
        return MobileFaceNet(config.embedding, config.width)
    return IResNet(config.embedding, (2, 2, 2, 2))


# -- MobileFaceNet ---------------------------------------------------------------------------------

def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             act: bool = True) -> nn.Sequential:
    """conv (no bias: BN follows) -> BN -> PReLU (none where ``act`` is False: a linear
    bottleneck output must not be clipped)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.PReLU(cout))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """MobileNetV2's inverted residual: expand x``t`` (1x1), depthwise 3x3 at ``stride``,
    project (linear 1x1); the input is added back when the shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = cin * t
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(_conv_bn(cin, hidden, 1),
                                  _conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  _conv_bn(hidden, cout, 1, act=False))

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """MobileFaceNet: ``[N, 3, 112, 112]`` in [-1, 1] -> ``[N, embedding]`` (not normalised)."""

    # (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 1.
    STAGES = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))

    def __init__(self, embedding: int = 128, width: float = 1.0) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, round(c * width))

        self.stem = nn.Sequential(_conv_bn(3, ch(64), 3, 2),                 # 112 -> 56
                                  _conv_bn(ch(64), ch(64), 3, groups=ch(64)))
        blocks: list[nn.Module] = []
        cin = ch(64)
        for t, c, n, s in self.STAGES:
            for i in range(n):
                blocks.append(Bottleneck(cin, ch(c), s if i == 0 else 1, t))
                cin = ch(c)
        self.blocks = nn.Sequential(*blocks)                                 # 56 -> 7
        self.expand = _conv_bn(cin, ch(512), 1)
        # GDC: one learned weight per channel and position of the 7x7 map.
        self.gdc = _conv_bn(ch(512), ch(512), 7, groups=ch(512), act=False)
        self.gdc[0].padding = (0, 0)
        self.project = nn.Sequential(nn.Conv2d(ch(512), embedding, 1, bias=False),
                                     nn.BatchNorm2d(embedding))
        _init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        x = self.project(self.gdc(self.expand(x)))
        return x.flatten(1)


# -- IResNet ---------------------------------------------------------------------------------------

class IBasicBlock(nn.Module):
    """ArcFace's pre-activation basic block: BN-conv3x3-BN-PReLU-conv3x3(stride)-BN, plus the
    input (through a strided 1x1 conv where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
            nn.PReLU(cout), nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)


class IResNet(nn.Module):
    """ArcFace's IR ResNet (``layers`` blocks per stage; (2, 2, 2, 2) is IR-18):
    ``[N, 3, 112, 112]`` in [-1, 1] -> ``[N, embedding]`` (not normalised)."""

    CHANNELS = (64, 128, 256, 512)

    def __init__(self, embedding: int = 512, layers: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.PReLU(64))
        blocks: list[nn.Module] = []
        cin = 64
        for c, n in zip(self.CHANNELS, layers):
            for i in range(n):
                blocks.append(IBasicBlock(cin, c, 2 if i == 0 else 1))       # 112 -> 7
                cin = c
        self.blocks = nn.Sequential(*blocks)
        side = CROP_SIZE // 16
        self.head = nn.Sequential(nn.BatchNorm2d(cin), nn.Flatten(),
                                  nn.Linear(cin * side * side, embedding),
                                  nn.BatchNorm1d(embedding))
        _init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


def _init(module: nn.Module) -> None:
    """He initialisation of convs and linears (fan-out, as for PReLU nets); BN at identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

