"""What the web editor passes around: a user's face, the sliders' state, a render, scores.

Plain frozen values: the front end keeps one `Face` per user session and hands it back with
an `Edit`; `facelatent.webui.service.EditorService` computes the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

__all__ = ["Aligned", "Analysis", "Edit", "Face", "Render"]


@dataclass(frozen=True)
class Analysis:
    """Scores of one face: ``scores`` {attribute: value}, ``embeddings`` {recogniser: unit
    float64 ``[128]``}."""

    scores: dict[str, float]
    embeddings: dict[str, np.ndarray]


@dataclass(frozen=True)
class Face:
    """What the editor edits. ``latent``: w ``[1, w_dim]`` or W+ ``[1, num_ws, w_dim]``,
    float32 on the CPU. ``name``: shown, and the stem of downloaded files. ``origin``: "seed",
    "latents", "photo" or "swap". ``reference``: the unedited face's scores. ``aligned``: a
    photo's FFHQ-aligned crop, ``[S, S, 3]`` uint8. ``note``: what the page says about it.
    ``involved``: the recognisers that made it (SFace in the inversion loss, the mapping's
    E_id), which the panel marks as not independent."""

    name: str
    latent: Tensor
    origin: str
    seed: int | None = None
    reference: Analysis | None = None
    aligned: np.ndarray | None = None
    note: str = ""
    involved: tuple[str, ...] = ()     # recognisers that helped make it: not independent judges


@dataclass(frozen=True)
class Aligned:
    """A face found in an uploaded photo: ``crop`` ``[1, 3, S, S]`` FFHQ-aligned in [-1, 1],
    face ``index`` of ``count`` (left to right), ``label`` the upload's cleaned name,
    ``preview`` the crop as ``[S, S, 3]`` uint8."""

    label: str
    crop: Tensor
    index: int
    count: int
    preview: np.ndarray


@dataclass(frozen=True)
class Edit:
    """The sliders' state. ``strengths``: {slider key: sigma units}; ``keep_fixed``: slider
    keys the edit is made orthogonal to; ``layers``: style inputs ("0-7"; None = all)."""

    strengths: Mapping[str, float] = field(default_factory=dict)
    keep_fixed: Sequence[str] = ()
    layers: str | None = None


@dataclass(frozen=True)
class Render:
    """An edited face: ``latent`` (as `Face.latent`), ``full`` ``[1, 3, H, W]`` float in
    [-1, 1] at the generator's size, ``preview`` ``[P, P, 3]`` uint8."""

    latent: Tensor
    full: Tensor
    preview: np.ndarray
