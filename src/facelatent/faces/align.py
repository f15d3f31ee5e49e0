"""Face geometry shared by every scorer: landmark conversions, the fixed crop of generated faces,
and FFHQ-style alignment of photos.

Three ways a face reaches a model:

1. **Generated faces** are already FFHQ-aligned: a generator trained on FFHQ puts the eyes and
   mouth of every face at nearly the same pixels. Each model's crop is then one fixed transform,
   derived from :data:`FFHQ_LANDMARKS68`, the 68 landmarks of the generator's *average face*
   (the image of ``w_avg``) in units of the image side. `derive_ffhq_geometry` recomputes
   them (YuNet box -> face-api 68-point net), and a slow test checks that the stored values are
   what it gives.
2. **Photos**: YuNet finds the face and five points; the 68-point net refines them; each model
   aligns from the points it was trained with (:func:`dlib5_from_landmarks68` for the dlib-style
   chips of the dlib recogniser and the age/gender nets, YuNet's five points for SFace's ArcFace
   template).
3. **FFHQ alignment of a photo** (:func:`ffhq_align`), for GAN inversion: the recipe that built
   FFHQ, from the eye centres and mouth corners (a rotated square around the face, sized by the
   eye distance and the eye-to-mouth distance), so a photo lands where the generator's faces are.

The model crops' templates and transforms live here too: :func:`arcface_align` (SFace's 112 px
ArcFace crop, :data:`ARCFACE_TEMPLATE_112`) and :func:`chip_transform` (the geometry of dlib's
chips, :data:`DLIB_5POINT_TEMPLATE`, sampled by :func:`facelatent.faces.dlib_resnet.dlib_chip`).

All point sets are ``[N, K, 2]`` float (x, y) pixel coordinates with pixel centres at integers.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The transform an alignment keeps and the way back live in photo_align (re-exported here).
from facelatent.faces.photo_align import (FACE_ELLIPSE, FFHQTransform, align_photo_faces,
                                          face_mask, paste_back)
from facelatent.images import check_images

__all__ = ["ARCFACE_CROP_SIZE", "ARCFACE_TEMPLATE_112", "DLIB_5POINT_TEMPLATE", "FACE_ELLIPSE",
           "FFHQ_FACE_BOX", "FFHQ_LANDMARKS68", "FFHQTransform", "FixedGeometryDetector",
           "align_photo_faces", "arcface5_from_landmarks68", "arcface_align", "check_points",
           "chip_transform", "derive_ffhq_geometry", "dlib5_from_landmarks68",
           "estimate_similarity", "face_mask", "ffhq_align", "ffhq_quad", "generated_face_boxes",
           "generated_landmarks68", "landmark_box_from_detection", "paste_back"]

# The box the 68-point net reads, from a YuNet box: scaled about its centre, then moved down by
# a fraction of its height. Chosen on 43 photos (the test photos and the eyeglasses fixtures)
# by the mean error of the net's landmarks against native dlib's 68-point predictor, in
# inter-ocular distances: 0.055 here; scale 1.0-1.1 and shift 0.15-0.2 are all within 0.002 of
# it, scale 1.3 or no shift cost 0.02 (grid in the closing note of the face-analysis issue).
YUNET_BOX_SCALE = 1.05
YUNET_BOX_SHIFT = 0.15

# 68 landmarks (iBUG order) of MobileStyleGAN-FFHQ's average face, x and y as fractions of the
# image side. Derived by `derive_ffhq_geometry(get_generator("mobilestylegan-ffhq"),
# YuNetDetector.load(), Landmark68Net.load())`: the w_avg image at 1024 px, YuNet's face box,
# face-api's 68-point net on the crop of that box (the pipeline photos go through). Rounded to
# 1e-4 (0.1 px at 1024); a slow test in tests/test_analysis.py re-derives them.
FFHQ_LANDMARKS68: tuple[tuple[float, float], ...] = (
    (0.2039, 0.4687), (0.2116, 0.5484), (0.2249, 0.6226), (0.2380, 0.6872), (0.2602, 0.7601),
    (0.2988, 0.8174), (0.3459, 0.8582), (0.4082, 0.9025), (0.5011, 0.9268), (0.5924, 0.9008),
    (0.6502, 0.8586), (0.6950, 0.8188), (0.7330, 0.7585), (0.7572, 0.6861), (0.7678, 0.6178),
    (0.7789, 0.5464), (0.7833, 0.4675), (0.2689, 0.4130), (0.3026, 0.3930), (0.3470, 0.3869),
    (0.3877, 0.3900), (0.4248, 0.4037), (0.5717, 0.4042), (0.6074, 0.3920), (0.6453, 0.3856),
    (0.6922, 0.3914), (0.7247, 0.4103), (0.4992, 0.4832), (0.4996, 0.5364), (0.5002, 0.5871),
    (0.4996, 0.6312), (0.4496, 0.6498), (0.4708, 0.6596), (0.4991, 0.6645), (0.5267, 0.6562),
    (0.5484, 0.6502), (0.3254, 0.4678), (0.3517, 0.4579), (0.3874, 0.4572), (0.4197, 0.4758),
    (0.3911, 0.4871), (0.3528, 0.4835), (0.5722, 0.4753), (0.6056, 0.4556), (0.6437, 0.4556),
    (0.6674, 0.4704), (0.6415, 0.4854), (0.6038, 0.4830), (0.3818, 0.7307), (0.4213, 0.7162),
    (0.4730, 0.7065), (0.4991, 0.7109), (0.5237, 0.7045), (0.5760, 0.7164), (0.6161, 0.7301),
    (0.5726, 0.7682), (0.5380, 0.7880), (0.4982, 0.7951), (0.4627, 0.7905), (0.4242, 0.7729),
    (0.3879, 0.7321), (0.4614, 0.7293), (0.4991, 0.7299), (0.5344, 0.7301), (0.6068, 0.7294),
    (0.5346, 0.7547), (0.4992, 0.7595), (0.4639, 0.7574),
)
# The 68-point net's box on the same face (x1, y1, x2, y2), fractions of the image side.
FFHQ_FACE_BOX: tuple[float, float, float, float] = (0.2134, 0.2817, 0.7838, 1.0881)


def check_points(points: object, name: str, k: int, n: int | None = None,
                 finite: bool = True) -> Tensor:
    """``points`` as a float tensor ``[N, k, 2]`` (``N = n`` if given: one row per image) with
    finite values (unless ``finite`` is False), or a one-line ValueError naming ``name``."""
    if not isinstance(points, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [N, {k}, 2] of (x, y) pixel "
                         f"coordinates, got {type(points).__name__}")
    if points.ndim != 3 or tuple(points.shape[1:]) != (k, 2):
        raise ValueError(f"{name} must have shape [N, {k}, 2] (x, y in pixels), got "
                         f"{list(points.shape)}; add a batch axis with points[None] for one face")
    if n is not None and points.shape[0] != n:
        raise ValueError(f"{name} has {points.shape[0]} faces but images has {n}; pass one row of "
                         f"{k} points per image")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be float coordinates, got {points.dtype}")
    if finite and not torch.isfinite(points).all():
        raise ValueError(f"{name} holds NaN or inf; drop the faces that were not found first")
    return points


# Landmarks of the ArcFace 112x112 crop, in pixels: the eye on the image's left (the subject's
# right eye), the other eye, nose tip, mouth corner on the image's left, the other mouth corner.
ARCFACE_CROP_SIZE = 112
ARCFACE_TEMPLATE_112 = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
                        (41.5493, 92.3655), (70.7299, 92.2041))
# dlib's mean 5-point face (get_face_chip_details in dlib/image_transforms/interpolation.h), in
# chip units before padding: right eye outer, right eye inner, left eye outer, left eye inner,
# nose base, in the order of shape_predictor_5_face_landmarks. Checked against dlib 20.0.1 by
# probing get_face_chip_details/extract_image_chip with images whose pixel value is their own
# coordinate (tests/test_dlib_resnet.py repeats the check when dlib is installed).
DLIB_5POINT_TEMPLATE = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)


# ------------------------------------------------------------------------- landmark conversions

def dlib5_from_landmarks68(points68: Tensor) -> Tensor:
    """dlib's five points from 68 landmarks: [N, 68, 2] -> [N, 5, 2].

    dlib's 5-point predictor marks the outer and inner corner of each eye and the base of the
    nose, in the order: eye on the image's right (outer, inner), eye on the image's left (outer,
    inner), nose base. In iBUG numbering those are 45, 42, 36, 39 and the subnasale, 33. These
    are the points :func:`facelatent.faces.dlib_resnet.dlib_chip` aligns from.
    """
    p = check_points(points68, "points68", 68)
    return p[:, [45, 42, 36, 39, 33]]


def arcface5_from_landmarks68(points68: Tensor) -> Tensor:
    """The five ArcFace / YuNet points from 68 landmarks: [N, 68, 2] -> [N, 5, 2].

    Order: centre of the eye on the image's left (mean of 36-41), the other eye (42-47), nose
    tip (30), mouth corner on the image's left (48), the other one (54).
    """
    p = check_points(points68, "points68", 68)
    return torch.stack([p[:, 36:42].mean(1), p[:, 42:48].mean(1), p[:, 30], p[:, 48], p[:, 54]],
                       dim=1)


def generated_landmarks68(images: Tensor) -> Tensor:
    """The average face's 68 landmarks placed on FFHQ-aligned images: [N, 3, H, W] -> [N, 68, 2].

    The fixed geometry every scorer uses for generated faces (``--generated``); it scales with
    the image, so any output resolution of the generator works.
    """
    check_images(images, values=False)
    if not FFHQ_LANDMARKS68:
        raise RuntimeError("FFHQ_LANDMARKS68 is empty: run derive_ffhq_landmarks first")
    h, w = images.shape[-2:]
    unit = torch.tensor(FFHQ_LANDMARKS68, dtype=torch.float32, device=images.device)
    # Unit coordinates are fractions of the side measured on pixel edges; pixel centres sit at
    # integers, hence the half-pixel shift.
    points = unit * unit.new_tensor([w, h]) - 0.5
    return points.expand(images.shape[0], 68, 2).clone()


def generated_face_boxes(images: Tensor) -> Tensor:
    """The fixed face box of FFHQ-aligned images: [N, 3, H, W] -> [N, 4] (x1, y1, x2, y2) px."""
    if not FFHQ_FACE_BOX:
        raise RuntimeError("FFHQ_FACE_BOX is empty: run derive_ffhq_geometry first")
    h, w = images.shape[-2:]
    box = torch.tensor(FFHQ_FACE_BOX, dtype=torch.float32, device=images.device)
    return (box * box.new_tensor([w, h, w, h])).expand(images.shape[0], 4).clone()


def landmark_box_from_detection(boxes: Tensor) -> Tensor:
    """The box the 68-point net reads, from YuNet boxes [N, 4] (x1, y1, x2, y2) -> [N, 4]."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * YUNET_BOX_SCALE
    centre = centre + torch.stack([torch.zeros_like(half[:, 1]),
                                   (boxes[:, 3] - boxes[:, 1]) * YUNET_BOX_SHIFT], dim=1)
    return torch.cat([centre - half, centre + half], dim=1)


def derive_ffhq_geometry(generator: object, detector: object, landmarker: object,
                         ) -> tuple[Tensor, Tensor]:
    """Landmarks and face box of a generator's average face, in fractions of the image side.

    Renders ``w_avg`` at the generator's resolution, detects it with YuNet (``detector``, a
    :class:`facelatent.faces.detect.YuNetDetector`), turns the box into the 68-point net's box
    and runs the net (``landmarker``, a :class:`facelatent.faces.faceapi.Landmark68Net`).
    Returns ``(landmarks [68, 2], box [4])``; :data:`FFHQ_LANDMARKS68` and
    :data:`FFHQ_FACE_BOX` hold the values this gives for MobileStyleGAN-FFHQ.
    """
    from facelatent.faces.detect import largest_faces

    with torch.no_grad():
        w_avg = generator.w_avg[None]                            # type: ignore[attr-defined]
        image = generator.synthesis(w_avg).clamp(-1, 1)          # type: ignore[attr-defined]
        _, boxes, found = largest_faces(detector.detect(image))  # type: ignore[attr-defined]
        if not found.all():
            raise RuntimeError("YuNet found no face in the average face")
        box = landmark_box_from_detection(boxes)
        points = landmarker.landmarks(image, box)                # type: ignore[attr-defined]
    h, w = image.shape[-2:]
    size = points.new_tensor([w, h])
    return ((points[0] + 0.5) / size,
            box[0] / torch.cat([size, size]))


# --------------------------------------------------------- model crops: ArcFace, dlib chips

def estimate_similarity(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity transform taking ``src`` points onto ``dst``: [N, 2, 3].

    ``src``, ``dst``: [N, K, 2] (K >= 2) points in pixels. Returns M with dst ~ M @ [x, y, 1]:
    rotation, uniform scale and translation, no reflection. This is Umeyama's (1991) solution,
    which in 2-D has a closed form (points as complex numbers, dst_c = a * src_c with
    a = sum(conj(src_c) dst_c) / sum(|src_c|^2)): batched and differentiable, with no SVD.
    """
    src_mean, dst_mean = src.mean(dim=1, keepdim=True), dst.mean(dim=1, keepdim=True)
    s, d = src - src_mean, dst - dst_mean
    power = (s * s).sum(dim=(1, 2))
    if bool((power <= 1e-12).any()):
        raise ValueError("points5 has a face whose five points coincide; cannot fit a transform")
    a = ((s * d).sum(dim=(1, 2))) / power                                       # scale * cos
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(dim=1) / power      # scale * sin
    rot = torch.stack([torch.stack([a, -b], dim=-1), torch.stack([b, a], dim=-1)], dim=1)
    shift = dst_mean.squeeze(1) - (rot @ src_mean.squeeze(1).unsqueeze(-1)).squeeze(-1)
    return torch.cat([rot, shift.unsqueeze(-1)], dim=2)


def arcface_align(image: Tensor, points5: Tensor, fill: float = -1.0) -> Tensor:
    """Warp faces onto the ArcFace 112x112 template: [N, 3, H, W], [N, 5, 2] -> [N, 3, 112, 112].

    ``image``: float RGB in [-1, 1]. ``points5``: pixel coordinates (x, y; pixel centres at
    integers, as OpenCV) of the eye on the image's left, the other eye, the nose tip, the mouth
    corner on the image's left and the other one: YuNet's order. The similarity transform is the
    least-squares fit of the points onto ``ARCFACE_TEMPLATE_112`` (as OpenCV's
    ``FaceRecognizerSF::alignCrop``); pixels are sampled bilinearly and areas outside the image
    get ``fill`` (-1: black, like OpenCV's zero border). Differentiable in image and points.
    """
    check_images(image, "image", values=False)
    check_points(points5, "points5", 5, n=image.shape[0], finite=False)
    n, _, height, width = image.shape
    points = points5.to(device=image.device, dtype=image.dtype)
    template = torch.tensor(ARCFACE_TEMPLATE_112, dtype=image.dtype, device=image.device)
    forward = estimate_similarity(points, template.expand(n, 5, 2))     # image px -> crop px
    # Invert [R | t]: R is scale * rotation, so R^-1 = R^T / det(R).
    rot, shift = forward[:, :, :2], forward[:, :, 2:]
    rot_inv = rot.transpose(1, 2) / torch.linalg.det(rot)[:, None, None]
    inverse = torch.cat([rot_inv, -rot_inv @ shift], dim=2)             # crop px -> image px
    # affine_grid works in normalised coordinates (align_corners=False: -1 and 1 are the outer
    # pixel edges), so theta = to_norm(image) @ inverse @ from_norm(crop).
    from_norm = torch.tensor([[ARCFACE_CROP_SIZE / 2, 0, (ARCFACE_CROP_SIZE - 1) / 2],
                              [0, ARCFACE_CROP_SIZE / 2, (ARCFACE_CROP_SIZE - 1) / 2], [0, 0, 1]],
                             dtype=image.dtype, device=image.device)
    to_norm = torch.tensor([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1]],
                           dtype=image.dtype, device=image.device)
    theta = to_norm @ torch.cat([inverse, from_norm[2:].expand(n, 1, 3)], dim=1) @ from_norm
    grid = F.affine_grid(theta, [n, 3, ARCFACE_CROP_SIZE, ARCFACE_CROP_SIZE], align_corners=False)
    # Sample (image - fill) with a zero border, then add fill back: out-of-image pixels = fill.
    warped = F.grid_sample(image - fill, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return warped + fill


def chip_transform(points5: Tensor, size: int, padding: float) -> tuple[Tensor, Tensor]:
    """dlib's chip geometry: chip pixel (u, v) -> image pixel ``A @ (u, v) + t``.

    ``points5``: ``[N, 5, 2]`` image pixel coordinates (x, y) of the 5 landmarks.
    Returns ``A [N, 2, 2]`` (a rotation times a scale) and ``t [N, 2]``.

    dlib fits a least-squares similarity ``T`` from the template scaled to ``size`` onto the
    points, takes the rectangle centred on ``T(size/2, size/2)`` with side ``size * scale(T)``
    and maps its corner pixels onto chip pixels ``0`` and ``size - 1``; a dlib drectangle's
    corners are one pixel closer than its side, so the chip's pixel pitch is
    ``(size * scale - 1) / (size - 1)`` image pixels, not ``scale``.
    """
    template = points5.new_tensor(DLIB_5POINT_TEMPLATE)
    q = (padding + template) / (1 + 2 * padding) * size                      # [5, 2]
    q_mean, p_mean = q.mean(0), points5.mean(1)                              # [2], [N, 2]
    qc, pc = q - q_mean, points5 - p_mean[:, None]
    norm = (qc ** 2).sum()
    a = (qc[:, 0] * pc[..., 0] + qc[:, 1] * pc[..., 1]).sum(1) / norm        # s cos(angle)
    b = (qc[:, 0] * pc[..., 1] - qc[:, 1] * pc[..., 0]).sum(1) / norm        # s sin(angle)
    rot = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # [N, 2, 2]
    t = p_mean - (rot @ q_mean)
    centre = rot @ q.new_tensor([size / 2, size / 2]) + t
    scale = torch.sqrt(a ** 2 + b ** 2)
    pitch = (size * scale - 1) / ((size - 1) * scale)
    A = rot * pitch[:, None, None]
    half = (size - 1) / 2
    return A, centre - A @ q.new_tensor([half, half])


# ---------------------------------------------------------------------------- FFHQ alignment

def ffhq_quad(points5: Tensor) -> Tensor:
    """FFHQ's crop square from five points: [N, 5, 2] (YuNet order) -> corners [N, 4, 2].

    The recipe used to build FFHQ: ``e`` = the midpoint of the eyes, ``m`` = the midpoint of the
    mouth corners, ``d = right eye - left eye`` and ``v = m - e``. The square's x axis is ``d``
    turned toward the perpendicular of ``v`` (their difference after rotating ``v`` by 90
    degrees), its half side is ``max(2 |d|, 1.8 |v|)`` and its centre is ``e + 0.1 v``.
    Corners in order: top-left, bottom-left, bottom-right, top-right.
    """
    p = check_points(points5, "points5", 5)
    eye_l, eye_r, mouth_l, mouth_r = p[:, 0], p[:, 1], p[:, 3], p[:, 4]
    eyes = (eye_l + eye_r) / 2
    d = eye_r - eye_l
    v = (mouth_l + mouth_r) / 2 - eyes
    v_perp = torch.stack([v[:, 1], -v[:, 0]], dim=1)          # v rotated by -90 degrees
    x = d + v_perp
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    half = torch.maximum(d.norm(dim=1) * 2.0, v.norm(dim=1) * 1.8)
    x = x * half[:, None]
    y = torch.stack([-x[:, 1], x[:, 0]], dim=1)               # x rotated by +90 degrees (down)
    c = eyes + 0.1 * v
    return torch.stack([c - x - y, c - x + y, c + x + y, c + x - y], dim=1)


@overload
def ffhq_align(images: Tensor, points5: Tensor, size: int = ...,
               return_transform: Literal[False] = ...) -> Tensor: ...
@overload
def ffhq_align(images: Tensor, points5: Tensor, size: int = ...,
               return_transform: Literal[True] = ...) -> tuple[Tensor, list[FFHQTransform]]: ...
def ffhq_align(images: Tensor, points5: Tensor, size: int = 1024, return_transform: bool = False,
               ) -> Tensor | tuple[Tensor, list[FFHQTransform]]:
    """Cut and rotate photos the way FFHQ was made: [N, 3, H, W], [N, 5, 2] -> [N, 3, size, size].

    ``images``: float RGB in [-1, 1]; ``points5``: YuNet's five points (eyes, nose tip, mouth
    corners) in pixels. Faces smaller than the output are upsampled bilinearly; larger ones are
    first shrunk by an integer factor with area averaging, so the result is not aliased. Parts of
    the square outside the photo are filled by mirroring the photo (FFHQ used a blurred mirror),
    which keeps the generator's prior on the background plausible for inversion.
    Differentiable in images and points. ``return_transform``: also return one
    :class:`FFHQTransform` per face (the quad in the photo's own pixels), which
    :func:`paste_back` inverts.
    """
    check_images(images, values=False)
    p = check_points(points5, "points5", 5, n=images.shape[0]).to(images.dtype)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    quad = ffhq_quad(p)
    out = images.new_empty(images.shape[0], 3, size, size)
    for i in range(images.shape[0]):
        side = (quad[i, 3] - quad[i, 0]).norm()
        shrink = max(int(float(side.detach()) / size), 1)
        image, q = images[i:i + 1], quad[i]
        if shrink > 1:
            image = F.avg_pool2d(image, shrink, ceil_mode=True)
            q = (q + 0.5) / shrink - 0.5
        out[i] = _sample_quad(image, q, size)[0]
    if not return_transform:
        return out
    photo_size = (int(images.shape[-1]), int(images.shape[-2]))
    return out, [FFHQTransform.from_quad(q, size, photo_size) for q in quad]


def _sample_quad(image: Tensor, quad: Tensor, size: int) -> Tensor:
    """Bilinear sampling of the square ``quad`` [4, 2] (TL, BL, BR, TR corners in pixel-centre
    coordinates; they are the output's outer pixel edges, as PIL's QUAD transform takes them)
    from ``image`` [1, 3, H, W] into [1, 3, size, size], mirrored outside."""
    h, w = image.shape[-2:]
    tl, bl, tr = quad[0] + 0.5, quad[1] + 0.5, quad[3] + 0.5     # to pixel-edge coordinates
    # Output pixel (u, v) centre, the fraction (u + 0.5) / size across the square, maps to
    # tl + fu * (tr - tl) + fv * (bl - tl) in image pixel-edge coordinates.
    f = (torch.arange(size, dtype=image.dtype, device=image.device) + 0.5) / size
    fu, fv = f[None, :, None], f[:, None, None]
    pts = tl + fu * (tr - tl) + fv * (bl - tl)                 # [size, size, 2], pixel edges
    grid = torch.stack([pts[..., 0] * 2 / w - 1, pts[..., 1] * 2 / h - 1], dim=-1)
    return F.grid_sample(image, grid[None], mode="bilinear", padding_mode="reflection",
                         align_corners=False)


class FixedGeometryDetector(nn.Module):
    """A detector that reports one face per image where the generator's average face is.

    Same interface as `YuNetDetector.detect` (one `Detections` per image, score 1, YuNet's point
    order). For FFHQ-aligned generated faces when per-image detection is not wanted, and as a
    deterministic stand-in for YuNet in tests with random-weight face networks (which find no
    faces in random images).
    """

    def detect(self, images: Tensor | list[Tensor], **_: object) -> list[object]:
        from facelatent.faces.detect import Detections

        out = []
        for image in images:
            batch = image[None]
            box = generated_face_boxes(batch)
            points = arcface5_from_landmarks68(generated_landmarks68(batch))
            out.append(Detections(box, torch.ones(1, device=image.device), points))
        return out
