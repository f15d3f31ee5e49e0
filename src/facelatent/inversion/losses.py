"""The terms of the inversion loss, one small module each, and their weighted sum.

LPIPS (the usual perceptual loss) needs VGG or AlexNet weights this project cannot ship, so the
reconstruction loss is built from what it has:

- :class:`PixelLoss`: mean squared error at the loss size (colour and low frequencies).
- :class:`MSSSIMLoss`: ``1 - MS-SSIM`` (structure and local contrast at five scales).
- :class:`IdentityLoss`: ``1 - cosine`` of SFace embeddings of the reconstruction and the
  target, both read through the fixed FFHQ crop of generated faces (the target is an
  FFHQ-aligned photo crop). SFace, never dlib: dlib stays the independent judge of identity.
- :class:`FaceFeatureLoss`: distance of SFace's intermediate feature maps, unit-normalised per
  position over channels (the LPIPS recipe on a face network instead of VGG).
- :class:`LatentPrior`: squared Mahalanobis distance to the mapping network's output
  distribution (see :class:`MappingPrior`), so the latent stays where the generator was trained.
- :class:`LayerDeltaLoss`: for W+, the spread of the per-layer codes around their mean, in
  units of the mapping network's spread: the less W+ departs from W, the better edits behave.

Every term returns one value per face ``[N]``; the total is their weighted sum per face, and the
optimiser minimises the sum over faces, so faces in a batch do not influence each other.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.faces import align
from facelatent.faces.analysis import FaceAnalyzer
from facelatent.generators import Generator
from facelatent.images import resize

__all__ = ["FaceFeatureLoss", "IdentityLoss", "LatentPrior", "LayerDeltaLoss", "LossWeights",
           "MSSSIMLoss", "MappingPrior", "PixelLoss", "ReconstructionLoss", "mapping_prior",
           "ms_ssim"]

PRIOR_SAMPLES = 10_000   # mapping outputs the prior is fitted on (seeded)
PRIOR_SEED = 0


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term (0 switches a term off). Defaults: compared on photos by
    ``bench/inversion.py --sweep`` and ``--weights``: the identity term raises the dlib cosine
    (the recogniser not in the loss) for a little MS-SSIM; the latent terms keep W+ near W at
    no cost in reconstruction, and a delta of 0.5 rather than 0.05 makes W+ inversions edit as
    far per sigma as generated faces (``bench/edit_photos.py``; the README has the figures)."""

    pixel: float = 1.0       # MSE at the loss size, images in [-1, 1]
    msssim: float = 1.0      # 1 - MS-SSIM on [0, 1] images
    identity: float = 0.5    # 1 - SFace cosine
    features: float = 0.0    # SFace feature-map distance
    prior: float = 0.01      # squared Mahalanobis distance per dimension (about 1 for a sample)
    delta: float = 0.5       # W+ only: per-layer spread around the mean code, per dimension

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# -- image terms -------------------------------------------------------------------------------
def ms_ssim(x: Tensor, y: Tensor) -> Tensor:
    """MS-SSIM per image of ``x``, ``y`` [N, 3, S, S] in [-1, 1] -> [N].

    Computed on [0, 1] images with pytorch-msssim's five scales; the Gaussian window shrinks
    below its usual 11 px for images under 161 px (five halvings must leave room for it).
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    side = min(x.shape[-2:])
    win = 11
    while win > 3 and (win - 1) * 16 >= side:
        win -= 2
    if (win - 1) * 16 >= side:
        raise ValueError(f"MS-SSIM needs images of at least 33 px, got {side} px")
    a, b = (x.clamp(-1, 1) + 1) / 2, (y.clamp(-1, 1) + 1) / 2
    return _ms_ssim(a, b, data_range=1.0, size_average=False, win_size=win)


class PixelLoss(nn.Module):
    """Mean squared error per face: images [N, 3, S, S], targets [N, 3, S, S] -> [N]."""

    def forward(self, images: Tensor, targets: Tensor) -> Tensor:
        return (images - targets).square().flatten(1).mean(1)


class MSSSIMLoss(nn.Module):
    """``1 - MS-SSIM`` per face: images, targets [N, 3, S, S] in [-1, 1] -> [N]."""

    def forward(self, images: Tensor, targets: Tensor) -> Tensor:
        return 1.0 - ms_ssim(images, targets)


def _fixed_points5(images: Tensor) -> Tensor:
    """SFace's five points of FFHQ-aligned images [N, 3, S, S] -> [N, 5, 2]."""
    return align.arcface5_from_landmarks68(align.generated_landmarks68(images))


class IdentityLoss(nn.Module):
    """``1 - cosine`` of SFace embeddings per face: images [N, 3, S, S] (FFHQ-aligned, in
    [-1, 1]) against precomputed target embeddings [N, 128] -> [N]."""

    def __init__(self, analyzer: FaceAnalyzer) -> None:
        super().__init__()
        self.analyzer = analyzer

    def embed(self, images: Tensor) -> Tensor:
        """Unit SFace embeddings [N, 128] through the analyzer's differentiable path."""
        out = self.analyzer.embed(images.to(self.analyzer.device), "sface", generated=True)
        return out.to(images.device)

    def forward(self, images: Tensor, target_embeddings: Tensor) -> Tensor:
        return 1.0 - (self.embed(images) * target_embeddings).sum(1)


class FaceFeatureLoss(nn.Module):
    """Distance of SFace feature maps after ``depths`` blocks (each map unit-normalised over
    channels at every position, squared differences averaged): images [N, 3, S, S] -> [N]."""

    def __init__(self, analyzer: FaceAnalyzer, depths: tuple[int, ...] = (2, 5)) -> None:
        super().__init__()
        self.analyzer = analyzer
        self.depths = depths

    def features(self, images: Tensor) -> list[Tensor]:
        net = self.analyzer.model("sface")
        x = images.to(self.analyzer.device).clamp(-1, 1)
        crops = align.arcface_align(x, _fixed_points5(x))
        blob = (crops + 1.0) * 127.5
        h = net.stem((blob - net.input_mean) * net.input_scale)
        out = []
        for i, block in enumerate(net.blocks, start=1):
            h = block(h)
            if i in self.depths:
                out.append(F.normalize(h, dim=1).to(images.device))
            if i >= max(self.depths):
                break
        return out

    def forward(self, images: Tensor, target_features: list[Tensor]) -> Tensor:
        total = images.new_zeros(images.shape[0])
        for a, b in zip(self.features(images), target_features):
            total = total + (a - b).square().sum(1).flatten(1).mean(1)
        return total / len(self.depths)


# -- latent terms ------------------------------------------------------------------------------
@dataclass
class MappingPrior:
    """The mapping network's output distribution, fitted on seeded samples.

    ``w_std [w_dim]``: per-dimension spread of w (the optimiser's unit step). ``mean [w_dim]``,
    ``components [w_dim, w_dim]`` and ``scales [w_dim]``: a Gaussian fitted to w (principal
    axes and their spreads). Fitted to w itself, not after inverting the last leaky ReLU as
    PULSE does: there ``w_avg``, where inversion starts, lies far from the mode (a squared
    distance per dimension of 4.5 on the tiny generator against 1 for a sample), and the prior
    would pull every face away from the start.
    """

    w_std: Tensor
    mean: Tensor
    components: Tensor
    scales: Tensor

    def whiten(self, w: Tensor) -> Tensor:
        """Whitened coordinates of w [..., w_dim] -> [..., w_dim] (a sample: about N(0, 1))."""
        return ((w - self.mean) @ self.components) / self.scales


_PRIORS: weakref.WeakKeyDictionary[object, MappingPrior] = weakref.WeakKeyDictionary()


def mapping_prior(generator: Generator, samples: int = PRIOR_SAMPLES,
                  seed: int = PRIOR_SEED) -> MappingPrior:
    """The :class:`MappingPrior` of ``generator`` from ``samples`` seeded z (cached per
    generator object for the life of the process), on the generator's device."""
    cached = _PRIORS.get(generator)
    if cached is not None and cached.mean.device == generator.device:
        return cached
    gen = torch.Generator().manual_seed(seed)
    rows = []
    with torch.no_grad():
        for start in range(0, samples, 2_000):
            z = torch.randn(min(2_000, samples - start), generator.z_dim, generator=gen)
            rows.append(generator.mapping(z.to(generator.device)).double().cpu())
    w = torch.cat(rows)
    mean = w.mean(0)
    cov = torch.cov((w - mean).T)
    eig, vec = torch.linalg.eigh(cov)
    scales = eig.clamp_min(eig.max() * 1e-6).sqrt()
    dev = generator.device
    prior = MappingPrior(w.std(0).float().clamp_min(1e-6).to(dev), mean.float().to(dev),
                         vec.float().to(dev), scales.float().to(dev))
    _PRIORS[generator] = prior
    return prior


class LatentPrior(nn.Module):
    """Squared Mahalanobis distance per dimension: latents [N, w_dim] or [N, L, w_dim] -> [N]
    (layers averaged). About 1 for a sample of the mapping network, 0 at its mean."""

    def __init__(self, prior: MappingPrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, latents: Tensor) -> Tensor:
        d = self.prior.whiten(latents).square().mean(-1)
        return d.mean(1) if d.ndim == 2 else d


class LayerDeltaLoss(nn.Module):
    """Spread of W+ codes around their per-face mean, in units of the mapping spread:
    latents [N, L, w_dim] -> [N] (0 for a W code broadcast to every layer)."""

    def __init__(self, prior: MappingPrior) -> None:
        super().__init__()
        self.w_std = prior.w_std

    def forward(self, latents: Tensor) -> Tensor:
        if latents.ndim == 2:
            return latents.new_zeros(latents.shape[0])
        delta = (latents - latents.mean(1, keepdim=True)) / self.w_std
        return delta.square().mean((1, 2))


# -- the sum -----------------------------------------------------------------------------------
class ReconstructionLoss(nn.Module):
    """The weighted sum of every term with a non-zero weight, per face.

    ``targets``: FFHQ-aligned faces [N, 3, S, S] in [-1, 1], brought to ``size`` once here
    (their embeddings and features are computed once, without gradients). Call with the
    generator's images [N, 3, R, R] and the latents; returns ``(total [N], {term: [N]})``.
    """

    def __init__(self, targets: Tensor, weights: LossWeights, analyzer: FaceAnalyzer,
                 prior: MappingPrior, size: int) -> None:
        super().__init__()
        self.weights = weights
        self.size = size
        self.targets = resize(targets, size)
        self.pixel, self.msssim = PixelLoss(), MSSSIMLoss()
        self.identity = IdentityLoss(analyzer)
        self.feature = FaceFeatureLoss(analyzer)
        self.prior, self.delta = LatentPrior(prior), LayerDeltaLoss(prior)
        with torch.no_grad():
            self.target_embeddings = (self.identity.embed(self.targets)
                                      if weights.identity else None)
            self.target_features = (self.feature.features(self.targets)
                                    if weights.features else None)

    def forward(self, images: Tensor, latents: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        small = resize(images, self.size)
        w = self.weights
        terms: dict[str, Tensor] = {}
        if w.pixel:
            terms["pixel"] = self.pixel(small, self.targets)
        if w.msssim:
            terms["msssim"] = self.msssim(small, self.targets)
        if w.identity:
            terms["identity"] = self.identity(small, self.target_embeddings)
        if w.features:
            terms["features"] = self.feature(small, self.target_features)
        if w.prior:
            terms["prior"] = self.prior(latents)
        if w.delta and latents.ndim == 3:
            terms["delta"] = self.delta(latents)
        total = sum(getattr(w, name) * value for name, value in terms.items())
        assert isinstance(total, Tensor), "at least one loss weight must be non-zero"
        return total, terms
