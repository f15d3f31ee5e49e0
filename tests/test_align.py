"""Tests of facelatent.faces.align: landmark conversions and FFHQ alignment (fast, no files)."""

from __future__ import annotations

import math

import pytest
import torch

from facelatent.faces import align


def hand_made_68(n: int = 2, seed: int = 0) -> torch.Tensor:
    """68 random but distinct points per face (the conversions only index and average)."""
    return torch.rand(n, 68, 2, generator=torch.Generator().manual_seed(seed)) * 100


def test_dlib5_takes_eye_corners_and_nose_base_in_dlib_order() -> None:
    p = hand_made_68()
    five = align.dlib5_from_landmarks68(p)
    assert five.shape == (2, 5, 2)
    for j, k in enumerate((45, 42, 36, 39, 33)):
        assert torch.equal(five[:, j], p[:, k])


def test_arcface5_averages_each_eye() -> None:
    p = hand_made_68()
    five = align.arcface5_from_landmarks68(p)
    assert torch.allclose(five[:, 0], p[:, 36:42].mean(1))
    assert torch.allclose(five[:, 1], p[:, 42:48].mean(1))
    assert torch.equal(five[:, 2], p[:, 30])
    assert torch.equal(five[:, 3], p[:, 48]) and torch.equal(five[:, 4], p[:, 54])


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 67, 2), r"\[N, 68, 2\]"),
    (torch.zeros(68, 2), r"\[N, 68, 2\]"),
    (torch.full((1, 68, 2), float("nan")), "NaN"),
    (torch.zeros(1, 68, 2, dtype=torch.int64), "float"),
    ([[0.0, 0.0]] * 68, "torch.Tensor"),
])
def test_conversions_reject_bad_points(bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        align.dlib5_from_landmarks68(bad)  # type: ignore[arg-type]


def upright_points(scale: float = 1.0, cx: float = 500.0, cy: float = 500.0) -> torch.Tensor:
    """A frontal face's five points: eyes 100 px apart, mouth 100 px below the eyes."""
    p = torch.tensor([[-50.0, -50.0], [50.0, -50.0], [0.0, 0.0], [-40.0, 50.0], [40.0, 50.0]])
    return (p * scale + torch.tensor([cx, cy]))[None]


def test_ffhq_quad_of_an_upright_face() -> None:
    quad = align.ffhq_quad(upright_points())[0]
    # x axis = (100, 0) + (100, 0) -> unit (1, 0); half side = max(2 * 100, 1.8 * 100) = 200;
    # centre = eye midpoint (500, 450) + 0.1 * (0, 100) = (500, 460).
    expected = torch.tensor([[300.0, 260.0], [300.0, 660.0], [700.0, 660.0], [700.0, 260.0]])
    assert torch.allclose(quad, expected, atol=1e-4)


def test_ffhq_quad_turns_and_scales_with_the_face() -> None:
    base = upright_points()
    angle = math.radians(30)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = torch.tensor([500.0, 500.0])
    moved = (base - centre) @ rot.T * 1.5 + centre + torch.tensor([20.0, -10.0])
    quad, quad_moved = align.ffhq_quad(base)[0], align.ffhq_quad(moved)[0]
    expected = (quad - centre) @ rot.T * 1.5 + centre + torch.tensor([20.0, -10.0])
    assert torch.allclose(quad_moved, expected, atol=1e-3)


def test_ffhq_align_is_equivariant_to_a_quarter_turn() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 64, 80, generator=g) * 2 - 1
    image = torch.nn.functional.interpolate(image, size=(640, 800), mode="bilinear")
    points = upright_points(scale=1.0, cx=400.0, cy=330.0)
    out = align.ffhq_align(image, points, size=256)   # no shrinking: the quad is 400 px
    # Rotate the photo by 90 degrees counter-clockwise: pixel (x, y) -> (y, W - 1 - x).
    turned = torch.rot90(image, 1, dims=(2, 3))
    w = image.shape[-1]
    turned_points = torch.stack([points[..., 1], w - 1 - points[..., 0]], dim=-1)
    out_turned = align.ffhq_align(turned, turned_points, size=256)
    assert (out - out_turned).abs().max() < 1e-4


def test_ffhq_align_keeps_a_face_that_is_already_aligned() -> None:
    # A 1024 image whose quad is the whole image: alignment is the identity map.
    quad_points = upright_points(scale=2.56)   # side 400 px * 2.56 = 1024 px
    quad = align.ffhq_quad(quad_points)[0]
    # Shift the points so that the quad spans the image's pixel edges exactly.
    shift = torch.tensor([-0.5, -0.5]) - quad[0]
    points = quad_points + shift
    assert torch.allclose(align.ffhq_quad(points)[0][2], torch.tensor([1023.5, 1023.5]), atol=1e-3)
    image = torch.rand(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2)) * 2 - 1
    out = align.ffhq_align(image, points, size=1024)
    assert (out - image).abs().max() < 1e-4


def test_ffhq_align_shrinks_large_faces_without_aliasing() -> None:
    # A fine checkerboard averages to grey when a large face is shrunk; plain bilinear sampling
    # of the full image would alias it into stripes.
    ys, xs = torch.meshgrid(torch.arange(2048), torch.arange(2048), indexing="ij")
    board = (((xs + ys) % 2) * 2 - 1).float().expand(1, 3, 2048, 2048)
    out = align.ffhq_align(board, upright_points(scale=4.0, cx=1024, cy=1024), size=64)
    assert out.std() < 0.05


def test_ffhq_align_is_differentiable_and_checks_input() -> None:
    image = torch.zeros(1, 3, 100, 100, requires_grad=True)
    points = upright_points(scale=0.3, cx=50, cy=50).requires_grad_(True)
    out = align.ffhq_align(image, points, size=32)
    out.sum().backward()
    assert image.grad is not None and points.grad is not None
    with pytest.raises(ValueError, match="5, 2"):
        align.ffhq_align(image, torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="faces"):
        align.ffhq_align(image, upright_points().expand(2, 5, 2))
    with pytest.raises(ValueError, match="float"):
        align.ffhq_align(torch.zeros(1, 3, 10, 10, dtype=torch.uint8), upright_points())
