"""GAN inversion by optimisation: find the latent whose image reproduces an aligned face.

Protocol of :meth:`Inverter.fit`:

1. Check the targets: FFHQ-aligned faces ``[N, 3, S, S]``, float RGB in [-1, 1].
2. Start every face at ``w_avg`` (``init="mean"``) or at an encoder's guess (``init="encoder"``,
   with ``encoder``: a callable targets -> w, e.g. :meth:`facelatent.mapping.Mapper.encode`).
3. Optimise in units of the mapping network's per-dimension spread (``w = w_avg + w_std * v``),
   so one learning rate suits any generator: Adam, the rate ramped up over the first
   ``LR_RAMP_UP`` of the steps and down along a cosine over the last ``LR_RAMP_DOWN``.
   Space ``"w"``: one code per face, broadcast to every layer; ``"wp"``: one per layer (W+).
4. The loss is :class:`facelatent.inversion.losses.ReconstructionLoss`, summed over faces, so a
   face's result does not depend on the others in its batch.
5. Measure the result: MS-SSIM and PSNR at the loss size, identity cosine under SFace (in the
   loss) and dlib (not in it: the independent judge).

Nothing random happens, so a result depends only on the inputs and settings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from facelatent.faces.analysis import FaceAnalyzer
from facelatent.generators import Generator
from facelatent.images import check_images, resize
from facelatent.inversion.losses import (
    LossWeights,
    ReconstructionLoss,
    mapping_prior,
    ms_ssim,
)

__all__ = ["INITS", "SPACES", "InversionResult", "Inverter", "Progress", "reconstruction_metrics"]

SPACES = ("w", "wp")
INITS = ("mean", "encoder")
LR_RAMP_UP = 0.05     # fraction of the steps over which the learning rate rises from 0
LR_RAMP_DOWN = 0.25   # fraction at the end over which it falls to 0 along a cosine
MIN_SIDE = 33         # smallest target side MS-SSIM can measure

# progress(step done, total steps, total loss per face [n]) after every step of every batch.
Progress = Callable[[int, int, Tensor], None]


@dataclass
class InversionResult:
    """What :meth:`Inverter.fit` found for N faces.

    ``latents``: ``[N, w_dim]`` (space "w") or ``[N, num_ws, w_dim]`` ("wp"), float32 on the
    CPU. ``targets`` and ``images``: the aligned faces and their reconstructions, ``[N, 3, S,
    S]`` in [-1, 1] at the targets' size. ``loss_curve``: ``[N, steps]`` total loss per step.
    ``metrics``: ``{name: [N]}`` (``msssim``, ``psnr``, ``identity_sface``, ``identity_dlib``).
    """

    space: str
    latents: Tensor
    targets: Tensor
    images: Tensor
    loss_curve: np.ndarray
    metrics: dict[str, np.ndarray]
    settings: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def face(self, i: int) -> InversionResult:
        """The result of face ``i`` alone (a batch of one)."""
        if not -len(self) <= i < len(self):
            raise ValueError(f"face index {i} is out of range for a result of {len(self)} faces")
        sl = slice(i, i + 1) if i >= 0 else slice(len(self) + i, len(self) + i + 1)
        return InversionResult(self.space, self.latents[sl], self.targets[sl], self.images[sl],
                               self.loss_curve[sl], {k: v[sl] for k, v in self.metrics.items()},
                               dict(self.settings), self.seconds / len(self))


class Inverter:
    """Optimise latents so the generator reproduces FFHQ-aligned faces (scikit-learn style).

        inv = Inverter(space="wp", steps=100).fit(G, aligned)     # aligned [N, 3, S, S]
        inv.latents_            # [N, num_ws, w_dim]; inv.result_ holds images and metrics
    """

    def __init__(self, space: str = "wp", steps: int = 100, *,
                 init: str = "mean",                  # "mean" (w_avg) or "encoder"
                 encoder: Callable[[Tensor], Tensor] | None = None,  # targets -> w, for "encoder"
                 lr: float = 0.1,                     # Adam's peak rate, in units of w's spread
                 loss_size: int = 256,                # px; the loss reads images at most this big
                 weights: LossWeights | None = None,  # None = LossWeights()
                 batch_size: int = 1,                 # faces optimised together
                 ) -> None:
        self.space = space
        self.steps = steps
        self.init = init
        self.encoder = encoder
        self.lr = lr
        self.loss_size = loss_size
        self.weights = weights
        self.batch_size = batch_size

    def get_params(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("space", "steps", "init", "encoder", "lr",
                                              "loss_size", "weights", "batch_size")}

    def check_settings(self) -> LossWeights:
        if self.space not in SPACES:
            raise ValueError(f"space must be 'w' or 'wp' (W+), got {self.space!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be 'mean' or 'encoder', got {self.init!r}")
        if self.init == "encoder" and self.encoder is None:
            raise ValueError("init='encoder' needs an encoder (targets -> w), such as a "
                             "trained mapping's Mapper.encode (on the command line: --mapping "
                             "CHECKPOINT); or use init='mean'")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.loss_size < MIN_SIDE:
            raise ValueError(f"loss_size must be at least {MIN_SIDE} px, got {self.loss_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        weights = self.weights or LossWeights()
        values = weights.as_dict()
        if any(not math.isfinite(v) or v < 0 for v in values.values()) or not any(values.values()):
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {values}")
        return weights

    def fit(self, generator: Generator, targets: Tensor, analyzer: FaceAnalyzer | None = None,
            progress: Progress | None = None) -> Inverter:
        """Invert ``targets``: FFHQ-aligned faces ``[N, 3, S, S]``, float RGB in [-1, 1]
        (``facelatent.faces.align.ffhq_align`` cuts them), S >= 33. ``analyzer``: the face
        networks (default: a new :class:`FaceAnalyzer` on the generator's device). Sets
        ``result_`` (:class:`InversionResult`), ``latents_``, ``loss_curve_`` and ``metrics_``;
        returns self.
        """
        weights = self.check_settings()
        targets = check_targets(targets)
        device = generator.device
        analyzer = analyzer or FaceAnalyzer(device)
        size = min(self.loss_size, targets.shape[-1], generator.resolution)
        started = time.perf_counter()
        prior = mapping_prior(generator)
        latents, curves, images = [], [], []
        n = targets.shape[0]
        batches = [range(s, min(s + self.batch_size, n)) for s in range(0, n, self.batch_size)]
        total = len(batches) * self.steps
        for b, rows in enumerate(batches):
            part = targets[rows.start:rows.stop].to(device)
            loss = ReconstructionLoss(part, weights, analyzer, prior, size)

            def report(step: int, losses: Tensor, first: int = b * self.steps) -> None:
                if progress is not None:
                    progress(first + step, total, losses)

            v, curve = self._optimise(generator, part, loss, prior.w_std, report)
            with torch.no_grad():
                ws = self._latents(generator, v, prior.w_std)
                out = generator.synthesis(ws).clamp(-1, 1)
            latents.append(ws.detach().float().cpu())
            images.append(resize(out, targets.shape[-1]).cpu())
            curves.append(curve)
        images_t = torch.cat(images)
        result = InversionResult(
            self.space, torch.cat(latents), targets.cpu(), images_t, np.concatenate(curves),
            reconstruction_metrics(images_t, targets.cpu(), analyzer, size),
            settings={"space": self.space, "steps": self.steps, "init": self.init, "lr": self.lr,
                      "loss_size": size, "weights": weights.as_dict(),
                      "generator": getattr(generator, "name", "")},
            seconds=time.perf_counter() - started)
        self.result_ = result
        self.latents_, self.loss_curve_, self.metrics_ = (result.latents, result.loss_curve,
                                                          result.metrics)
        return self

    def _start(self, generator: Generator, targets: Tensor, w_std: Tensor) -> Tensor:
        """Initial ``v`` (latents in units of w_std around w_avg): [n, 1 or num_ws, w_dim]."""
        n = targets.shape[0]
        if self.init == "encoder":
            assert self.encoder is not None
            with torch.no_grad():
                w = self.encoder(targets).to(generator.device, torch.float32)
            got = list(w.shape)
            if w.ndim == 2:
                w = w[:, None]
            if w.ndim != 3 or w.shape[0] != n or w.shape[1] not in (1, generator.num_ws) \
                    or w.shape[2] != generator.w_dim:
                raise ValueError(f"encoder must return w [N, {generator.w_dim}] or W+ [N, "
                                 f"{generator.num_ws}, {generator.w_dim}] for N = {n} targets, "
                                 f"got {got}")
            v = (w - generator.w_avg) / w_std
        else:
            v = torch.zeros(n, 1, generator.w_dim, device=generator.device)
        if self.space == "wp" and v.shape[1] == 1:
            v = v.repeat(1, generator.num_ws, 1)
        if self.space == "w" and v.shape[1] != 1:
            v = v.mean(1, keepdim=True)
        return v.clone().requires_grad_(True)

    def _latents(self, generator: Generator, v: Tensor, w_std: Tensor) -> Tensor:
        ws = generator.w_avg + w_std * v
        return ws[:, 0] if self.space == "w" else ws

    def _optimise(self, generator: Generator, targets: Tensor, loss: ReconstructionLoss,
                  w_std: Tensor, report: Callable[[int, Tensor], None],
                  ) -> tuple[Tensor, np.ndarray]:
        v = self._start(generator, targets, w_std)
        opt = torch.optim.Adam([v], lr=self.lr, betas=(0.9, 0.999))
        curve = np.zeros((targets.shape[0], self.steps), dtype=np.float32)
        for step in range(self.steps):
            for group in opt.param_groups:
                group["lr"] = self.lr * lr_factor(step, self.steps)
            ws = self._latents(generator, v, w_std)
            total, _ = loss(generator.synthesis(ws), ws)
            if not torch.isfinite(total).all():
                raise FloatingPointError(f"the inversion loss became {total.tolist()} at step "
                                         f"{step}; lower lr (now {self.lr})")
            opt.zero_grad(set_to_none=True)
            total.sum().backward()
            opt.step()
            curve[:, step] = total.detach().cpu().numpy()
            report(step + 1, total.detach())
        return v.detach(), curve


def lr_factor(step: int, steps: int) -> float:
    """The learning-rate multiplier at ``step`` of ``steps``: ramp up, flat, cosine down."""
    t = (step + 0.5) / steps
    up = min(1.0, t / LR_RAMP_UP)
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / LR_RAMP_DOWN))
    return up * down


def check_targets(targets: object) -> Tensor:
    """``targets`` if it is FFHQ-aligned faces [N, 3, S, S] in [-1, 1]; ValueError otherwise."""
    t = check_images(targets, "targets", min_side=MIN_SIDE, max_abs=1.0 + 1e-3,
                     fix="cut aligned faces with facelatent.faces.align.ffhq_align")
    if t.shape[-1] != t.shape[-2]:
        raise ValueError(f"targets must be square FFHQ-aligned faces [N, 3, S, S], got "
                         f"{list(t.shape)}; cut them with facelatent.faces.align.ffhq_align")
    return t.detach().float()


def reconstruction_metrics(images: Tensor, targets: Tensor, analyzer: FaceAnalyzer,
                           size: int = 256) -> dict[str, np.ndarray]:
    """Quality of reconstructions: images, targets [N, 3, S, S] in [-1, 1] -> ``{name: [N]}``.

    ``msssim`` and ``psnr`` (dB, on [0, 1] images) at ``size``; ``identity_sface`` and
    ``identity_dlib``: cosine of the two faces' embeddings, both read through the fixed crop of
    FFHQ-aligned faces.
    """
    with torch.no_grad():
        a, b = resize(images.clamp(-1, 1), size), resize(targets.clamp(-1, 1), size)
        mse = ((a - b) / 2).square().flatten(1).mean(1).clamp_min(1e-10)
        out = {"msssim": ms_ssim(a, b), "psnr": -10 * torch.log10(mse)}
        dev = analyzer.device
        for model in ("sface", "dlib"):
            ea = analyzer.embed(images.to(dev), model, generated=True)
            eb = analyzer.embed(targets.to(dev), model, generated=True)
            out[f"identity_{model}"] = (ea * eb).sum(1)
    return {k: v.float().cpu().numpy() for k, v in out.items()}
