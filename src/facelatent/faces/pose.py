"""Head pose and eye/mouth openness from 68 facial landmarks, batched and differentiable.

Landmarks are in the iBUG-300W / dlib order (0-16 jaw, 17-26 brows, 27-35 nose, 36-41 the eye
on the image's left, 42-47 the eye on the image's right, 48-67 mouth), image pixels, x to the
right and y down, as :class:`facelatent.faces.faceapi.Landmark68Net` and dlib's 68-point
predictor give them.

Head pose
---------
:func:`head_pose` fits a generic 3-D face (:data:`FACE_MODEL_3D`) to 12 of the landmarks under
a scaled-orthographic (weak-perspective) camera, in closed form:

1. centre the points and the model; the least-squares affine camera is ``M = (P⁺ q)ᵀ``
   (``P⁺`` the model's pseudo-inverse, a constant 3x12 matrix), a 2x3 matrix per face;
2. its rows would be ``s * (first two rows of a rotation)`` for a noise-free face: normalise
   them and make them orthogonal symmetrically (rotate each half-way towards 90 degrees about
   their bisector), the third row is their cross product, and the scale is the mean row norm;
3. read the angles off the rotation.

Why this and not Gauss-Newton PnP: it has no iterations, no initialisation and no SVD (whose
gradient is undefined exactly when the two singular values agree, i.e. for a clean face), so it
is cheap and differentiable everywhere that matters; it is exact on noise-free weak-perspective
projections, and mirror-equivariant by construction (a symmetric model and a symmetric point
set: mirrored points give exactly ``-yaw``, ``pitch``, ``-roll``). Perspective is ignored: the
face's depth (about 12 cm) is small next to a portrait's camera distance (on the generic face
itself, a pinhole camera 40 / 60 / 100 cm away shifts the angles by at most 3.2 / 2.2 / 1.3
degrees), and the generic model is a larger error than that anyway. The absolute angles
inherit the generic model's depths: treat pitch, especially, as relative (on the test photos,
pitch from face-api's and from dlib's landmarks differ by about 8 degrees, yaw by up to 5).

Conventions (angles in degrees), with the rotation ``R = Roll @ Pitch @ Yaw`` taking model
coordinates to the camera (x right, y down, z away from the camera):

- yaw > 0: the face turns towards the image's right (the nose tip moves right; for the subject
  that is a turn to their own left);
- pitch > 0: the face tilts up (chin forward, nose tip moves up in the image);
- roll > 0: the face rotates clockwise as the image is displayed (the eye on the image's right
  moves down).

Flipping an image left-right negates yaw and roll and keeps pitch.

Openness
--------
:func:`openness` gives ``mouth_openness``: the mean inner-lip gap (61-67, 62-66, 63-65) over
the mouth width (corners 48-54), 0 for a closed mouth and about 0.3-0.5 wide open; and
``eye_openness``: the mean of both eyes' eye aspect ratios (Soukupová & Čech, 2016: the two
vertical lid distances over twice the corner-to-corner width), about 0.25-0.35 for open eyes
and below 0.15 for closed ones.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facelatent.faces.align import check_points

__all__ = ["FACE_MODEL_3D", "MIRROR_68", "fit_weak_perspective", "head_pose", "openness",
           "rotation_from_angles"]

# A generic adult face in millimetres: x towards the image's right in a frontal view (the
# subject's left), y down, z away from the camera; origin midway between the inner eye corners.
# Widths and heights are rounded adult norms (sexes pooled) from Farkas' anthropometric tables
# (L. G. Farkas, "Anthropometry of the Head and Face", 2nd ed., 1994): inner canthi en-en 32,
# outer canthi ex-ex 90, nostril base (alae) about 28 of al-al 33, mouth width ch-ch 52,
# en level to subnasale 43, upper lip sn-sto 21, stomion to menton 48. Depths are the same
# profile landmarks' typical protrusion relative to the inner canthi, rounded: outer canthi 12
# behind, nasal bridge 12 and nose tip 30 in front, subnasale 14 in front, alar base 5 in
# front, mouth corners 2 behind, menton 3 behind. The jaw contour (0-16 except the chin) is
# left out: it is a silhouette whose 3-D point slides round the face as the head turns; brows,
# lids and lips are left out because they move with expression.
FACE_MODEL_3D: dict[int, tuple[float, float, float]] = {
    8: (0.0, 112.0, 3.0),       # menton (chin)
    27: (0.0, -6.0, -12.0),     # nasal bridge, top (near sellion)
    30: (0.0, 36.0, -30.0),     # nose tip (pronasale)
    31: (-14.0, 41.0, -5.0),    # nostril base, image left
    33: (0.0, 43.0, -14.0),     # subnasale
    35: (14.0, 41.0, -5.0),     # nostril base, image right
    36: (-45.0, -2.0, 12.0),    # outer corner, image-left eye (exocanthion)
    39: (-16.0, 0.0, 0.0),      # inner corner, image-left eye (endocanthion)
    42: (16.0, 0.0, 0.0),       # inner corner, image-right eye
    45: (45.0, -2.0, 12.0),     # outer corner, image-right eye
    48: (-26.0, 64.0, 2.0),     # mouth corner, image left (cheilion)
    54: (26.0, 64.0, 2.0),      # mouth corner, image right
}

# Index of each landmark's mirror image (what point i becomes when the image is flipped).
MIRROR_68: tuple[int, ...] = (
    *range(16, -1, -1),                          # jaw
    *range(26, 21, -1), *range(21, 16, -1),      # brows
    27, 28, 29, 30, 35, 34, 33, 32, 31,          # nose
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,   # eyes
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,   # outer lips
    64, 63, 62, 61, 60, 67, 66, 65,              # inner lips
)


def rotation_from_angles(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """``[N]`` angles in degrees (this module's conventions) -> ``[N, 3, 3]`` rotations
    ``Roll @ Pitch @ Yaw`` from model to camera coordinates."""
    y, p, r = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(y), torch.zeros_like(y)

    def mat(rows: list[list[Tensor]]) -> Tensor:
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    yaw_m = mat([[y.cos(), zero, -y.sin()], [zero, one, zero], [y.sin(), zero, y.cos()]])
    pitch_m = mat([[one, zero, zero], [zero, p.cos(), p.sin()], [zero, -p.sin(), p.cos()]])
    roll_m = mat([[r.cos(), -r.sin(), zero], [r.sin(), r.cos(), zero], [zero, zero, one]])
    return roll_m @ pitch_m @ yaw_m


def fit_weak_perspective(points68: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Fit :data:`FACE_MODEL_3D` to ``[N, 68, 2]`` landmark pixels by a scaled-orthographic
    camera: returns ``rotation [N, 3, 3]`` (model -> camera), ``scale [N]`` (pixels per mm)
    and ``translation [N, 2]`` (pixels), so that landmark ``i`` is close to
    ``scale * (rotation @ model[i])[:2] + translation``."""
    check_points(points68, "points68", 68, finite=False)
    index = list(FACE_MODEL_3D)
    model = points68.new_tensor([FACE_MODEL_3D[i] for i in index])            # [K, 3]
    q = points68[:, index]                                                    # [N, K, 2]
    model_mean, q_mean = model.mean(0), q.mean(1)
    pinv = torch.linalg.pinv(model - model_mean)                              # [3, K]
    affine = (pinv @ (q - q_mean[:, None])).transpose(1, 2)                   # [N, 2, 3]
    r1, r2 = affine[:, 0], affine[:, 1]
    n1, n2 = r1.norm(dim=1), r2.norm(dim=1)
    a, b = r1 / n1[:, None], r2 / n2[:, None]
    u = torch.nn.functional.normalize(a + b, dim=1)
    v = torch.nn.functional.normalize(a - b, dim=1)
    e1, e2 = (u + v) / math.sqrt(2), (u - v) / math.sqrt(2)
    rotation = torch.stack([e1, e2, torch.linalg.cross(e1, e2, dim=1)], dim=1)
    scale = (n1 + n2) / 2
    translation = q_mean - scale[:, None] * (rotation[:, :2] @ model_mean)
    return rotation, scale, translation


def head_pose(points68: Tensor) -> dict[str, Tensor]:
    """Head pose from ``[N, 68, 2]`` landmark pixels (dlib/iBUG order).

    Returns ``yaw``, ``pitch``, ``roll`` (``[N]`` degrees, conventions in the module
    docstring) and ``scale`` (``[N]`` pixels per millimetre of the generic face).
    Differentiable in ``points68``.
    """
    rotation, scale, _ = fit_weak_perspective(points68)
    third = rotation[:, 2]
    yaw = torch.atan2(third[:, 0], third[:, 2])
    pitch = torch.atan2(-third[:, 1], torch.hypot(third[:, 0], third[:, 2]))
    roll = torch.atan2(-rotation[:, 0, 1], rotation[:, 1, 1])
    return {"yaw": torch.rad2deg(yaw), "pitch": torch.rad2deg(pitch),
            "roll": torch.rad2deg(roll), "scale": scale}


def openness(points68: Tensor) -> dict[str, Tensor]:
    """Mouth and eye openness from ``[N, 68, 2]`` landmarks (dlib/iBUG order).

    Returns ``mouth_openness`` (mean inner-lip gap / mouth width) and ``eye_openness`` (mean
    eye aspect ratio of both eyes), each ``[N]``, scale-free and differentiable.
    """
    check_points(points68, "points68", 68, finite=False)

    def dist(i: int, j: int) -> Tensor:
        return (points68[:, i] - points68[:, j]).norm(dim=1)

    gap = (dist(61, 67) + dist(62, 66) + dist(63, 65)) / 3
    mouth = gap / dist(48, 54)
    ear_left = (dist(37, 41) + dist(38, 40)) / (2 * dist(36, 39))
    ear_right = (dist(43, 47) + dist(44, 46)) / (2 * dist(42, 45))
    return {"mouth_openness": mouth, "eye_openness": (ear_left + ear_right) / 2}
