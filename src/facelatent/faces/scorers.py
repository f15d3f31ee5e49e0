"""How each attribute network's output becomes scores: one function per model of the registry.

Every scorer has the signature ``(net, images, geometry) -> {attribute: Tensor[N]}``:
``images`` are float RGB in [-1, 1] (a batch tensor ``[N, 3, H, W]`` or, for photos of
different sizes, a list of ``[3, H, W]``), ``geometry`` is their
:class:`facelatent.faces.analysis.FaceGeometry` (a face in every row), and the keys are the
attributes the model's :class:`facelatent.faces.registry.ModelSpec` lists. Crops are cut with
the geometry in :mod:`facelatent.faces.align`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from facelatent.faces import align

if TYPE_CHECKING:
    from facelatent.faces.analysis import FaceGeometry

__all__ = ["per_image", "score_age", "score_expression", "score_eyeglasses", "score_gender",
           "score_pose"]

Images = Tensor | Sequence[Tensor]


def per_image(fn: Callable[..., Tensor], images: Images, *per_face: Tensor) -> Tensor:
    """``fn(batch, *per_face)`` on a batch tensor, or image by image on a list of sizes."""
    if isinstance(images, Tensor):
        return fn(images, *per_face)
    parts = [fn(im[None], *(p[i:i + 1] for p in per_face)) for i, im in enumerate(images)]
    return torch.cat(parts)


def score_pose(net: nn.Module, images: Images, geom: FaceGeometry) -> dict[str, Tensor]:
    """Head pose and openness from the 68 landmarks the analyzer already ran ``net`` for."""
    from facelatent.faces import pose

    if geom.points68 is None:
        raise ValueError("geometry has no 68-point landmarks; locate(images, landmarks=True)")
    angles = pose.head_pose(geom.points68)
    opened = pose.openness(geom.points68)
    return {"yaw": angles["yaw"], "pitch": angles["pitch"], "roll": angles["roll"],
            "mouth_open": opened["mouth_openness"], "eyes_open": opened["eye_openness"]}


def score_expression(net: nn.Module, images: Images, geom: FaceGeometry) -> dict[str, Tensor]:
    """The seven expression probabilities, ``smile`` = P(happy) and its unsaturated log-odds."""
    from facelatent.faces.faceapi import EXPRESSIONS, face_crop, landmark_box

    # face-api reads expressions from the box around the landmarks once it has them; generated
    # faces keep the fixed box (their crop is fixed by design).
    boxes = (geom.boxes if geom.generated or geom.points68 is None
             else landmark_box(geom.points68))
    logits = per_image(lambda im, b: net.logits(face_crop(im, b)[0]), images, boxes)
    probs = logits.softmax(dim=1)
    out = {f"expression_{e}": probs[:, i] for i, e in enumerate(EXPRESSIONS)}
    out["smile"] = probs[:, 1]
    # log P(happy) - log P(not happy), from the logits so it does not saturate.
    others = torch.cat([logits[:, :1], logits[:, 2:]], dim=1).logsumexp(dim=1)
    out["smile_logit"] = logits[:, 1] - others
    return out


def score_age(net: nn.Module, images: Images, geom: FaceGeometry) -> dict[str, Tensor]:
    """Apparent age in years from the 64 px dlib chip."""
    from facelatent.faces.age_gender import AGE_CHIP_SIZE, CHIP_PADDING
    from facelatent.faces.dlib_resnet import dlib_chip

    dlib5 = align.dlib5_from_landmarks68(geom.align68)
    return {"age": per_image(lambda im, p: net.age(dlib_chip(im, p, AGE_CHIP_SIZE, CHIP_PADDING)),
                             images, dlib5)}


def score_gender(net: nn.Module, images: Images, geom: FaceGeometry) -> dict[str, Tensor]:
    """P(male) and its log-odds from the 32 px dlib chip."""
    from facelatent.faces.age_gender import CHIP_PADDING, GENDER_CHIP_SIZE
    from facelatent.faces.dlib_resnet import dlib_chip

    dlib5 = align.dlib5_from_landmarks68(geom.align68)
    logit = per_image(
        lambda im, p: net.male_logit(dlib_chip(im, p, GENDER_CHIP_SIZE, CHIP_PADDING)),
        images, dlib5)
    return {"gender": torch.sigmoid(logit), "gender_logit": logit}


def score_eyeglasses(net: nn.Module, images: Images, geom: FaceGeometry) -> dict[str, Tensor]:
    """Minus the classifier's logit on the eye region the landmarks give."""
    from facelatent.faces.eyeglasses import eye_box_from_landmarks68

    eye_boxes = eye_box_from_landmarks68(geom.align68)
    return {"eyeglasses": per_image(net.score, images, eye_boxes)}
