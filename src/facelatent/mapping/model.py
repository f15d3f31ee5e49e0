"""The networks of the identity/attribute mapping (Nitzan et al. 2020), read top to bottom.

    identity image  ─► E_id (frozen recogniser: SFace or dlib, 128-d, unit length) ─┐
                                                                                   ├─ concat ─► M ─► w
    attribute image ─► E_attr (trainable image encoder, attr_dim) ─────────────────┘

    D_W: an MLP on w that tells the mapping network's w (real) from M's (fake).

What differs from the paper, and why:

- E_id is one of our recognisers (128-d) instead of a VGGFace2 ResNet-50 (512-d); it is not in
  this module (it lives in :class:`facelatent.faces.FaceAnalyzer`, frozen) and its embeddings
  come in as a tensor.
- E_attr is face-api's feature extractor (the trunk of its 68-point landmark net: four densely
  connected blocks of separable convs, 32-256 channels, 0.2 M parameters) reading the whole
  aligned face at ``attr_size`` px, then a linear layer to ``attr_dim``. There are no ImageNet
  weights here for the paper's InceptionV3. ``attr_init="faceapi"`` starts the trunk from the
  landmark net's weights (its pooled features already hold the landmarks, linearly: the
  landmark head is one linear layer on them), ``"random"`` from scratch; the same
  architecture either way, so the two differ only in where they start.
- M predicts w in units of the mapping network's spread around its mean: ``w = w_mean +
  w_std * M(...)``. The regression target then has unit scale in every dimension, whatever
  the generator, and a zero output is the average face.
- ``head="wplus"`` predicts one code per style input (``num_ws`` of them) instead of one w
  broadcast to all: an option the paper does not have.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.faces.faceapi import MEAN_RGB, DenseBlock, Landmark68Net
from facelatent.faces.registry import IDENTITY_MODELS
from facelatent.images import check_images

__all__ = ["ATTR_INITS", "HEADS", "AttributeEncoder", "LatentMLP", "MapperConfig",
           "MappingNet", "WDiscriminator"]

ATTR_INITS = ("faceapi", "random")
HEADS = ("w", "wplus")
_TRUNK_WIDTHS = (32, 64, 128, 256)        # face-api's dense0..dense3 channels


@dataclass(frozen=True)
class MapperConfig:
    """Sizes of the mapping networks; saved in every checkpoint."""

    w_dim: int = 512                      # the generator's w size
    num_ws: int = 23                      # its style inputs (for head="wplus"; MobileStyleGAN: 23)
    id_model: str = "sface"               # frozen E_id, from IDENTITY_MODELS
    id_dim: int = 128                     # E_id's embedding size
    attr_dim: int = 256                   # E_attr's output size
    attr_size: int = 128                  # E_attr reads the whole aligned face at this side, px
    attr_init: str = "faceapi"            # "faceapi": landmark-net trunk; "random": scratch
    hidden: tuple[int, ...] = (1024, 1024, 512)   # M's hidden widths (paper: 2048, 1024, 512)
    head: str = "w"                       # "w": one code for all layers; "wplus": one per layer
    disc_hidden: tuple[int, ...] = (256, 128, 64)  # D_W's hidden widths (as the paper)

    def __post_init__(self) -> None:
        for name in ("w_dim", "num_ws", "id_dim", "attr_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.id_model not in IDENTITY_MODELS:
            raise ValueError(f"id_model must be one of {', '.join(IDENTITY_MODELS)}, got "
                             f"{self.id_model!r}")
        if not 32 <= int(self.attr_size) <= 1024:
            raise ValueError(f"attr_size must be 32-1024 px, got {self.attr_size}")
        if self.attr_init not in ATTR_INITS:
            raise ValueError(f"attr_init must be one of {', '.join(ATTR_INITS)}, got "
                             f"{self.attr_init!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be 'w' or 'wplus', got {self.head!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "disc_hidden", tuple(int(h) for h in self.disc_hidden))
        if any(h < 1 for h in (*self.hidden, *self.disc_hidden)):
            raise ValueError("hidden widths must be at least 1")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden"], out["disc_hidden"] = list(self.hidden), list(self.disc_hidden)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MapperConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown mapper config keys {unknown}; this facelatent knows "
                             f"{sorted(known)}")
        return cls(**data)


class AttributeEncoder(nn.Module):
    """E_attr: aligned faces ``[N, 3, H, W]`` in [-1, 1] -> attribute codes ``[N, attr_dim]``.

    The face is resized to ``attr_size`` px, read by face-api's four dense blocks (stride 16 in
    all), mean-pooled over positions and mapped linearly to ``attr_dim``.
    """

    def __init__(self, attr_dim: int, attr_size: int) -> None:
        super().__init__()
        self.attr_size = attr_size
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1),
                             persistent=False)
        widths = (3, *_TRUNK_WIDTHS)
        self.dense = nn.ModuleList(DenseBlock(widths[i], widths[i + 1], first=i == 0)
                                   for i in range(4))
        self.proj = nn.Linear(_TRUNK_WIDTHS[-1], attr_dim)

    @torch.no_grad()
    def init_from_faceapi(self, net: Landmark68Net) -> None:
        """Copy the trunk of face-api's landmark net (its ``dense`` blocks) into this one."""
        self.dense.load_state_dict(net.dense.state_dict())

    def forward(self, images: Tensor) -> Tensor:
        x = images
        if x.shape[-1] != self.attr_size or x.shape[-2] != self.attr_size:
            x = F.interpolate(x, size=(self.attr_size, self.attr_size), mode="bilinear",
                              align_corners=False, antialias=x.shape[-1] > self.attr_size)
        # face-api's input scaling: 0-255 minus its mean RGB, over 255
        x = ((x.clamp(-1, 1) + 1) * 127.5 - self.mean_rgb) / 255
        for block in self.dense:
            x = block(x)
        return self.proj(x.mean(dim=(2, 3)))


class LatentMLP(nn.Module):
    """M: ``[N, in_dim]`` -> ``[N, out_dim]``; linear layers with leaky ReLU 0.2 between
    (none after the last), as the paper's mapping MLP."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        dims = (in_dim, *hidden, out_dim)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.leaky_relu(x, 0.2)
        return x


class WDiscriminator(nn.Module):
    """D_W: w ``[N, w_dim]`` (or W+ ``[N, L, w_dim]``, each layer judged alone) -> logits
    ``[N]`` (or ``[N, L]``); > 0 means "from the mapping network"."""

    def __init__(self, w_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = LatentMLP(w_dim, hidden, 1)

    def forward(self, w: Tensor) -> Tensor:
        return self.net(w).squeeze(-1)


class MappingNet(nn.Module):
    """The trainable part: E_attr and M, with the generator's w statistics as buffers.

    ``forward(id_codes [N, id_dim], attr_images [N, 3, H, W])`` -> w ``[N, w_dim]`` (head "w")
    or ``[N, num_ws, w_dim]`` (head "wplus"). ``mix(id_codes, attr_codes)`` is M alone, for
    interpolating codes.
    """

    def __init__(self, config: MapperConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = AttributeEncoder(c.attr_dim, c.attr_size)
        out = c.w_dim * (c.num_ws if c.head == "wplus" else 1)
        self.mlp = LatentMLP(c.id_dim + c.attr_dim, c.hidden, out)
        self.register_buffer("w_mean", torch.zeros(c.w_dim))
        self.register_buffer("w_std", torch.ones(c.w_dim))

    @torch.no_grad()
    def set_w_statistics(self, w_mean: Tensor, w_std: Tensor) -> None:
        """The mapping network's per-dimension mean and spread of w (``[w_dim]`` each)."""
        for name, value in (("w_mean", w_mean), ("w_std", w_std)):
            if tuple(value.shape) != (self.config.w_dim,) or not torch.isfinite(value).all():
                raise ValueError(f"{name} must be a finite [{self.config.w_dim}] tensor, got "
                                 f"shape {list(value.shape)}")
        if (w_std <= 0).any():
            raise ValueError("w_std must be positive in every dimension")
        self.w_mean.copy_(w_mean)
        self.w_std.copy_(w_std)

    def attribute_codes(self, images: Tensor) -> Tensor:
        """E_attr of aligned faces ``[N, 3, H, W]`` in [-1, 1] -> ``[N, attr_dim]``."""
        check_images(images, "attribute images", values=False)
        return self.encoder(images)

    def mix(self, id_codes: Tensor, attr_codes: Tensor) -> Tensor:
        """M of identity codes ``[N, id_dim]`` and attribute codes ``[N, attr_dim]`` -> w."""
        c = self.config
        if id_codes.ndim != 2 or id_codes.shape[1] != c.id_dim:
            raise ValueError(f"identity codes must be [N, {c.id_dim}], got "
                             f"{list(id_codes.shape)}")
        if attr_codes.shape != (id_codes.shape[0], c.attr_dim):
            raise ValueError(f"attribute codes must be [{id_codes.shape[0]}, {c.attr_dim}] "
                             f"(one per identity code), got {list(attr_codes.shape)}")
        out = self.mlp(torch.cat([id_codes, attr_codes], dim=1))
        if c.head == "wplus":
            out = out.view(-1, c.num_ws, c.w_dim)
        return self.w_mean + self.w_std * out

    def forward(self, id_codes: Tensor, attr_images: Tensor) -> Tensor:
        return self.mix(id_codes, self.attribute_codes(attr_images))

    def whiten(self, w: Tensor) -> Tensor:
        """w in the units M predicts: ``(w - w_mean) / w_std``."""
        return (w - self.w_mean) / self.w_std


def build(config: MapperConfig, faceapi: Landmark68Net | None = None,
          ) -> tuple[MappingNet, WDiscriminator]:
    """New networks for ``config``; with ``attr_init="faceapi"``, E_attr's trunk starts from
    ``faceapi`` (the landmark net with its real weights; required then)."""
    net = MappingNet(config)
    if config.attr_init == "faceapi":
        if faceapi is None:
            raise ValueError("attr_init='faceapi' needs the face-api landmark net to start from "
                             "(facelatent weights fetch face-api)")
        net.encoder.init_from_faceapi(faceapi)
    return net, WDiscriminator(config.w_dim, config.disc_hidden)
