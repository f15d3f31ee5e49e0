"""Margin heads: the classifier over the training classes that shapes the embedding.

Both heads keep one unit weight vector per class and score an embedding by its cosine with each,
times a scale ``s`` (the logits of a softmax over classes). The margin ``m`` makes the true class
harder to win during training, so the classes end up separated by an angle, not just ranked:

- CosFace (Wang et al. 2018): the true class's logit is ``s (cos t - m)``.
- ArcFace (Deng et al. 2019): ``s cos(t + m)`` while ``t + m < pi``; past that point cos(t + m)
  would rise again (rewarding a worse angle), so it continues as ``s (cos t - m sin m)``, the
  usual linear continuation.

At test time only the backbone is kept; the head is part of the training state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LOSSES", "MarginHead"]

LOSSES = ("cosface", "arcface")


class MarginHead(nn.Module):
    """``[N, D]`` embeddings and ``[N]`` labels -> ``[N, classes]`` logits with the margin on
    each row's own class (pass ``labels=None`` for the plain scaled cosines)."""

    def __init__(self, embedding: int, classes: int, loss: str = "cosface", s: float = 64.0,
                 m: float = 0.35) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if classes < 2:
            raise ValueError(f"a margin head needs at least 2 classes, got {classes}")
        if not (s > 0 and 0 <= m < math.pi / 2):
            raise ValueError(f"scale s must be > 0 and margin m in [0, pi/2), got s={s}, m={m}")
        self.loss, self.s, self.m = loss, float(s), float(m)
        self.weight = nn.Parameter(torch.empty(classes, embedding))
        nn.init.normal_(self.weight, std=0.01)

    def cosines(self, embeddings: Tensor) -> Tensor:
        """``[N, classes]`` cosines between each embedding and each class's weight."""
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        cos = self.cosines(embeddings)
        if labels is None:
            return self.s * cos
        own = cos.gather(1, labels[:, None])
        if self.loss == "cosface":
            target = own - self.m
        else:
            # clamp: acos has an infinite slope at +-1, which a rounding error can reach.
            theta = torch.acos(own.clamp(-1 + 1e-7, 1 - 1e-7))
            target = torch.where(theta + self.m < math.pi, torch.cos(theta + self.m),
                                 own - self.m * math.sin(self.m))
        return self.s * cos.scatter(1, labels[:, None], target)
