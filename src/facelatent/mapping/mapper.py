"""The trained mapping as a tool: encode faces to w, swap identity and attributes.

    mapper = Mapper.from_checkpoint("runs/mapping/checkpoint.npz")
    w = mapper.swap(identity_faces, attribute_faces)     # [N, 512]
    images = generator.synthesis(w)
    w0 = mapper.encode(faces)                             # an encoder: Inverter(init="encoder",
                                                          #   encoder=mapper.encode)

Faces are FFHQ-aligned, float RGB in [-1, 1], ``[N, 3, H, W]`` (generated faces as they come;
photos through :func:`facelatent.inversion.align_photo` or ``FaceAnalyzer.ffhq_align``), any
side from 128 px. E_id reads them through the fixed FFHQ crop of generated faces, so it never
detects anything and stays differentiable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from facelatent.faces.analysis import FaceAnalyzer, get_analyzer
from facelatent.images import check_images
from facelatent.mapping.checkpoint import load_checkpoint
from facelatent.mapping.model import MapperConfig, MappingNet

__all__ = ["MIN_SIDE", "Mapper"]

MIN_SIDE = 64    # px; the recognisers read 112-150 px crops of a face about 60 % wide: from
#                 128 px up they see it as it is (64 px: the tiny test generator)


class Mapper:
    """E_id (frozen, from ``analyzer``) + a trained :class:`MappingNet` (E_attr and M).

    ``generator``: what the mapping was trained for (``{"name", "w_dim", "num_ws", ...}``);
    :meth:`check_generator` compares a generator against it. Every method runs without
    gradients unless the inputs require them.
    """

    def __init__(self, net: MappingNet, generator: dict[str, Any],
                 analyzer: FaceAnalyzer | None = None) -> None:
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.generator = dict(generator)
        self.analyzer = analyzer or get_analyzer(self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu",
                        analyzer: FaceAnalyzer | None = None) -> Mapper:
        """The mapping saved at ``path`` (:func:`load_checkpoint`), on ``device``."""
        ckpt = load_checkpoint(path, device)
        mapper = cls(ckpt.model, ckpt.generator, analyzer)
        mapper.stage, mapper.step = ckpt.stage, ckpt.step
        return mapper

    @property
    def config(self) -> MapperConfig:
        return self.net.config

    @property
    def device(self) -> torch.device:
        return self.net.w_mean.device

    def check_generator(self, generator: Any) -> None:
        """ValueError unless ``generator`` has the w size and style inputs this mapping was
        trained for (a different generator of the same sizes only warns in the name)."""
        want = (self.generator["w_dim"], self.generator["num_ws"])
        have = (int(generator.w_dim), int(generator.num_ws))
        if want != have:
            raise ValueError(f"this mapping was trained for {self.generator['name']} (w_dim "
                             f"{want[0]}, {want[1]} style inputs), but the generator has w_dim "
                             f"{have[0]} and {have[1]}; use --model {self.generator['name']}")

    # -- codes ---------------------------------------------------------------------------------
    def identity_codes(self, faces: Tensor) -> Tensor:
        """E_id: unit embeddings ``[N, 128]`` of FFHQ-aligned faces ``[N, 3, H, W]``."""
        faces = self._check(faces, "identity faces")
        with _grad_if(faces):
            return self.analyzer.embed(faces, self.config.id_model, generated=True)

    def attribute_codes(self, faces: Tensor) -> Tensor:
        """E_attr: codes ``[N, attr_dim]`` of FFHQ-aligned faces ``[N, 3, H, W]``."""
        faces = self._check(faces, "attribute faces")
        with _grad_if(faces):
            return self.net.attribute_codes(faces)

    def mix(self, id_codes: Tensor, attr_codes: Tensor) -> Tensor:
        """M: w ``[N, w_dim]`` (or ``[N, num_ws, w_dim]``) from codes (e.g. interpolated)."""
        with _grad_if(id_codes, attr_codes):
            return self.net.mix(id_codes.to(self.device), attr_codes.to(self.device))

    # -- images to w ---------------------------------------------------------------------------
    def swap(self, identity_faces: Tensor, attribute_faces: Tensor) -> Tensor:
        """w for the identity of ``identity_faces[i]`` with everything else from
        ``attribute_faces[i]``: both ``[N, 3, H, W]`` (sizes may differ) -> ``[N, w_dim]``."""
        if len(identity_faces) != len(attribute_faces):
            raise ValueError(f"swap pairs faces one to one: got {len(identity_faces)} identity "
                             f"faces and {len(attribute_faces)} attribute faces")
        return self.mix(self.identity_codes(identity_faces), self.attribute_codes(attribute_faces))

    def encode(self, faces: Tensor) -> Tensor:
        """w of each face (identity and attributes from the same image): ``[N, 3, H, W]`` ->
        ``[N, w_dim]``. Usable as ``Inverter(init="encoder", encoder=mapper.encode)``."""
        return self.swap(faces, faces)

    def _check(self, faces: Tensor, name: str) -> Tensor:
        check_images(faces, name, min_side=MIN_SIDE, what="FFHQ-aligned faces in [-1, 1]")
        return faces.to(self.device)


def _grad_if(*tensors: Tensor) -> Any:
    return torch.enable_grad() if any(t.requires_grad for t in tensors) else torch.no_grad()
