"""Tests of head pose and openness from 68 landmarks (no model files needed).

Landmarks are made by projecting the generic 3-D face at known angles, so the fit must give
the angles back; real photos are covered in tests/test_faceapi.py.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from facelatent.faces.pose import (
    FACE_MODEL_3D,
    MIRROR_68,
    fit_weak_perspective,
    head_pose,
    openness,
    rotation_from_angles,
)

INDEX = list(FACE_MODEL_3D)
ANGLES = [(0.0, 0.0, 0.0), (30.0, -10.0, 5.0), (-60.0, 25.0, -20.0), (15.0, 40.0, 170.0),
          (-5.0, -35.0, 45.0), (75.0, 5.0, -90.0)]


def project(angles: torch.Tensor, scale: float = 2.5, distance: float | None = None,
            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``[N, 3]`` (yaw, pitch, roll) -> ``[N, 68, 2]`` landmarks of the generic face (points
    outside the model stay at the face centre). Scaled-orthographic, or a pinhole camera
    ``distance`` mm from the model points' centroid, on its optical axis, with the same image
    scale there."""
    model = torch.tensor([FACE_MODEL_3D[i] for i in INDEX], dtype=torch.float64)
    model = model - model.mean(0)
    cam = model @ rotation_from_angles(*angles.double().T).transpose(1, 2)
    if distance is None:
        xy = scale * cam[..., :2]
    else:
        xy = scale * distance * cam[..., :2] / (cam[..., 2:] + distance)
    points = torch.zeros(angles.shape[0], 68, 2, dtype=torch.float64)
    points[:] = xy.mean(1, keepdim=True)
    points[:, INDEX] = xy
    return (points + torch.tensor([320.0, 240.0], dtype=torch.float64)).to(dtype)


def mirror(points: torch.Tensor) -> torch.Tensor:
    """The landmarks of the left-right flipped image (width 640)."""
    flipped = points[:, list(MIRROR_68)].clone()
    flipped[..., 0] = 639 - flipped[..., 0]
    return flipped


def angle_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b + 180) % 360 - 180


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_known_angles_are_recovered(dtype: torch.dtype) -> None:
    angles = torch.tensor(ANGLES, dtype=torch.float64)
    pose = head_pose(project(angles, dtype=dtype))
    for k, name in enumerate(("yaw", "pitch", "roll")):
        assert pose[name].dtype == dtype and pose[name].shape == (len(ANGLES),)
        assert angle_error(pose[name].double(), angles[:, k]).abs().max() < 1.0, name
    torch.testing.assert_close(pose["scale"].double(), torch.full((len(ANGLES),), 2.5,
                                                                  dtype=torch.float64),
                               atol=1e-3, rtol=1e-4)


def test_fit_reprojects_the_points() -> None:
    angles = torch.tensor(ANGLES[:3], dtype=torch.float64)
    points = project(angles, scale=1.7)
    rotation, scale, translation = fit_weak_perspective(points)
    model = torch.tensor([FACE_MODEL_3D[i] for i in INDEX], dtype=torch.float64)
    again = scale[:, None, None] * (model @ rotation.transpose(1, 2))[..., :2] \
        + translation[:, None]
    torch.testing.assert_close(again, points[:, INDEX])
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2),
                               torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(3, dtype=torch.float64))


def test_sign_conventions() -> None:
    """yaw > 0: nose tip towards the image's right; pitch > 0: nose tip up; roll > 0: the
    eye on the image's right moves down (clockwise as displayed)."""
    for k, name in enumerate(("yaw", "pitch", "roll")):
        angles = torch.zeros(1, 3, dtype=torch.float64)
        angles[0, k] = 20.0
        points, frontal = project(angles), project(torch.zeros(1, 3))
        moved = points - frontal
        if name == "yaw":
            assert moved[0, 30, 0] > 0
        elif name == "pitch":
            assert moved[0, 30, 1] < 0
        else:
            assert moved[0, 45, 1] > 0 > moved[0, 36, 1]
        assert head_pose(points)[name].item() == pytest.approx(20.0, abs=1e-6)


def test_mirrored_points_negate_yaw_and_roll() -> None:
    gen = torch.Generator().manual_seed(0)
    angles = torch.tensor(ANGLES, dtype=torch.float64)
    points = project(angles) + torch.randn(len(ANGLES), 68, 2, generator=gen,
                                           dtype=torch.float64) * 2
    pose, flipped = head_pose(points), head_pose(mirror(points))
    torch.testing.assert_close(flipped["yaw"], -pose["yaw"])
    torch.testing.assert_close(flipped["pitch"], pose["pitch"])
    torch.testing.assert_close(angle_error(flipped["roll"], -pose["roll"]),
                               torch.zeros(len(ANGLES), dtype=torch.float64), atol=1e-9, rtol=0)


def test_mirror_table_and_model_are_symmetric() -> None:
    assert sorted(MIRROR_68) == list(range(68))
    assert all(MIRROR_68[MIRROR_68[i]] == i for i in range(68))
    assert [MIRROR_68[i] for i in (0, 8, 17, 27, 31, 36, 39, 48, 51, 60, 66)] == \
        [16, 8, 26, 27, 35, 45, 42, 54, 51, 64, 66]
    for i, (x, y, z) in FACE_MODEL_3D.items():
        assert FACE_MODEL_3D[MIRROR_68[i]] == (-x, y, z)


def test_noise_and_perspective_cost_little() -> None:
    """On a face about 250 px across, 1 px of landmark noise moves the angles by under 2
    degrees, and a pinhole camera 60 cm away (ignored by the weak-perspective fit: measured
    2.2 degrees at most, 3.2 at 40 cm, 1.3 at 1 m) by under 3."""
    angles = torch.tensor([a for a in itertools.product((-30.0, 0.0, 30.0), (-15.0, 15.0),
                                                        (0.0, 10.0))], dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    noisy = project(angles) + torch.randn(len(angles), 68, 2, generator=gen,
                                          dtype=torch.float64)
    near = project(angles, distance=600.0)
    for points, bound in ((noisy, 2.0), (near, 3.0)):
        pose = head_pose(points)
        for k, name in enumerate(("yaw", "pitch", "roll")):
            assert angle_error(pose[name], angles[:, k]).abs().max() < bound, name


def test_gradients_flow_to_the_points() -> None:
    points = project(torch.tensor(ANGLES[1:3], dtype=torch.float64)).requires_grad_(True)
    pose, opened = head_pose(points), openness(points + torch.rand_like(points))
    (pose["yaw"] + pose["pitch"] + pose["roll"] + opened["mouth_openness"]
     + opened["eye_openness"]).sum().backward()
    assert points.grad is not None and torch.isfinite(points.grad).all()
    assert points.grad[:, INDEX].abs().sum(-1).gt(0).all()      # every model point matters
    assert points.grad[:, [61, 37]].abs().sum() > 0              # lips and lids too


def hand_made_face(gap: float, lid: float) -> torch.Tensor:
    """Mouth 50 wide with an inner-lip gap ``gap``; eyes 30 wide, lids ``lid`` apart."""
    points = torch.zeros(68, 2)
    points[48], points[54] = torch.tensor([100.0, 200.0]), torch.tensor([150.0, 200.0])
    points[60], points[64] = torch.tensor([105.0, 200.0]), torch.tensor([145.0, 200.0])
    for upper, lower, x in ((61, 67, 115.0), (62, 66, 125.0), (63, 65, 135.0)):
        points[upper] = torch.tensor([x, 200.0 - gap / 2])
        points[lower] = torch.tensor([x, 200.0 + gap / 2])
    for first, left in ((36, 80.0), (42, 140.0)):     # corners, then two upper, two lower lids
        points[first] = torch.tensor([left, 100.0])
        points[first + 3] = torch.tensor([left + 30, 100.0])
        points[first + 1], points[first + 2] = (torch.tensor([left + 10, 100 - lid / 2]),
                                                torch.tensor([left + 20, 100 - lid / 2]))
        points[first + 5], points[first + 4] = (torch.tensor([left + 10, 100 + lid / 2]),
                                                torch.tensor([left + 20, 100 + lid / 2]))
    return points


def test_openness_on_hand_made_points() -> None:
    points = torch.stack([hand_made_face(10.0, 10.0), hand_made_face(0.0, 3.0),
                          2.0 * hand_made_face(10.0, 10.0)])
    opened = openness(points)
    torch.testing.assert_close(opened["mouth_openness"], torch.tensor([0.2, 0.0, 0.2]))
    torch.testing.assert_close(opened["eye_openness"], torch.tensor([1 / 3, 0.1, 1 / 3]))


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="points68"):
        head_pose(torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="points68"):
        openness(torch.zeros(68, 2))
    with pytest.raises(ValueError, match="points68"):
        head_pose(torch.zeros(1, 68, 2, dtype=torch.long))
