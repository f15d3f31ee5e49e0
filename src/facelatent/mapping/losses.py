"""The mapping's losses, as the paper defines them, on faces brought to ``loss_size`` px.

- identity: L1 distance between E_id embeddings of the output and of the identity image
  (unit 128-d vectors, summed over dimensions: 0 for the same embedding, about 9 for
  orthogonal ones), paper weight 1;
- landmarks: mean squared distance of the 68 face-api landmarks of the output and of the
  attribute image (``FaceAnalyzer.locate(..., generated=True).points68``: the landmark net in
  the fixed face box, differentiable), in pixels at ``loss_size``, paper weight 0.001;
- reconstruction, on same-image steps only: ``0.84 (1 - MS-SSIM) + 0.16 L1``, the L1 masked to
  the face ellipse of FFHQ-aligned faces (the paper masks the background out), weight 0.02;
- adversarial: non-saturating, D_W on w (whitened), with R1 (gamma 10) on real w;
- latent (ours, off in the paper's recipe): mean squared error of w against the image's known
  w, in units of the mapping network's spread, on same-image steps; the only loss of the
  ``regress`` stage.

Every term returns one value per face ``[N]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from facelatent.faces.photo_align import face_mask
from facelatent.inversion.losses import ms_ssim

__all__ = ["MappingLossWeights", "disc_loss", "identity_l1", "landmark_mse", "reconstruction",
           "whitened_mse"]


@dataclass(frozen=True)
class MappingLossWeights:
    """Weight of each term of the end-to-end stage (0 switches one off). The defaults are the
    paper's; the training presets use :data:`facelatent.mapping.train.BALANCED`."""

    identity: float = 1.0           # L1 of E_id embeddings, output vs identity image
    landmarks: float = 0.001        # MSE of 68 landmarks in px at loss_size, vs attribute image
    reconstruction: float = 0.02    # same-image steps: 0.84 (1 - MS-SSIM) + 0.16 masked L1
    adversarial: float = 0.1        # non-saturating loss of D_W on the output w
    latent: float = 0.0             # same-image steps: whitened MSE to the known w (ours)
    proxy_identity: float = 1.0     # regress cross steps: 1 - cos of the proxy's identity
    proxy_attributes: float = 1.0   # regress cross steps: proxy pose/expression, standardised MSE

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def identity_l1(embeddings: Tensor, targets: Tensor) -> Tensor:
    """L1 distance per face of embeddings ``[N, D]`` to targets ``[N, D]`` -> ``[N]``."""
    return (embeddings - targets).abs().sum(1)


def landmark_mse(points: Tensor, targets: Tensor) -> Tensor:
    """Mean squared distance per face of ``[N, 68, 2]`` points to targets -> ``[N]``."""
    return (points - targets).square().sum(-1).mean(-1)


def reconstruction(faces: Tensor, targets: Tensor) -> Tensor:
    """``0.84 (1 - MS-SSIM) + 0.16 L1`` (L1 on [0, 1] values inside the face ellipse) of
    ``faces`` against ``targets``, both ``[N, 3, S, S]`` in [-1, 1] -> ``[N]``."""
    mask = face_mask(faces.shape[-1], device=faces.device)
    l1 = ((faces.clamp(-1, 1) - targets).abs() / 2 * mask).sum((1, 2, 3))
    l1 = l1 / (3 * mask.sum())
    return 0.84 * (1 - ms_ssim(faces, targets)) + 0.16 * l1


def whitened_mse(w: Tensor, target: Tensor, w_std: Tensor) -> Tensor:
    """Mean squared error per face of w ``[N, w_dim]`` (or W+ ``[N, L, w_dim]``, each layer
    against the same target) to target ``[N, w_dim]``, in units of ``w_std`` -> ``[N]``."""
    if w.ndim == 3:
        target = target[:, None]
    return ((w - target) / w_std).square().flatten(1).mean(1)


def disc_loss(disc: torch.nn.Module, real: Tensor, fake: Tensor, r1_gamma: float,
              ) -> tuple[Tensor, dict[str, float]]:
    """D_W's loss on whitened real and fake w (``[N, w_dim]``): non-saturating plus R1 on the
    real ones. Returns the scalar loss and its parts for the log."""
    real = real.detach().requires_grad_(r1_gamma > 0)
    real_logits = disc(real)
    fake_logits = disc(fake.detach())
    loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    parts = {"d_real": float(real_logits.detach().mean()),
             "d_fake": float(fake_logits.detach().mean())}
    if r1_gamma > 0:
        (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        r1 = grad.square().flatten(1).sum(1).mean()
        loss = loss + r1_gamma / 2 * r1
        parts["r1"] = float(r1.detach())
    return loss, parts
