"""One entry point to every face model: the registry of attributes and identity embedders, and
:class:`FaceAnalyzer`, which finds faces, aligns them per model and runs the models in batches.

    from facelatent.faces import score, embed
    scores = score(images, ["age", "smile", "yaw"], generated=True)   # {"age": Tensor[N], ...}
    ids = embed(images, model="sface", generated=True)                # [N, 128], unit length

``images`` are float RGB in [-1, 1]: a tensor ``[N, 3, H, W]`` or, for photos of different
sizes, a list of ``[3, H, W]`` tensors. ``generated=True`` means FFHQ-aligned faces from a
generator: every model then reads one fixed crop (see :mod:`facelatent.faces.align`), nothing is
detected and every step is differentiable. Photos go through YuNet and the 68-point net first; a
photo without a face gets NaN scores (and ``found`` False in :meth:`FaceAnalyzer.locate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.faces import align
from facelatent.faces.registry import (
    ATTRIBUTES,
    DEFAULT_ATTRIBUTES,
    EXPRESSIONS,
    IDENTITY_MODELS,
    MODELS,
    STORE_ATTRIBUTES,
    AttributeSpec,
    ModelSpec,
    default_loaders,
    random_face_loaders,
    resolve_attributes,
)
from facelatent.faces.scorers import per_image
from facelatent.images import MAX_ABS, check_image_list

__all__ = ["ATTRIBUTES", "DEFAULT_ATTRIBUTES", "EXPRESSIONS", "MODELS", "STORE_ATTRIBUTES",
           "AttributeSpec", "FaceAnalyzer", "FaceGeometry", "ModelSpec", "embed", "get_analyzer",
           "random_face_loaders", "resolve_attributes", "score", "working_size"]

Images = Tensor | Sequence[Tensor]
MIN_SIDE = 16   # pixels; smaller inputs are refused (YuNet's smallest anchor is 8 px at stride 8)
GENERATED_WORK_SIZE = 512  # generated faces are averaged down to about this size first


@dataclass
class FaceGeometry:
    """Where the face is in each image. Rows of images without a face hold NaN."""

    found: Tensor              # [N] bool
    boxes: Tensor              # [N, 4] face box (x1, y1, x2, y2) the 68-point net reads
    points5: Tensor            # [N, 5, 2] eyes, nose tip, mouth corners (YuNet order)
    align68: Tensor            # [N, 68, 2] landmarks the alignments use (fixed when generated)
    points68: Tensor | None = None   # [N, 68, 2] per-image landmarks from the 68-point net
    detection_score: Tensor | None = None  # [N] YuNet's confidence (photos only)
    generated: bool = False
    extra: dict[str, Tensor] = field(default_factory=dict)
    detection_boxes: Tensor | None = None  # [N, 4] YuNet's box (x0, y0, x1, y1), photos only

    def select(self, idx: Tensor) -> FaceGeometry:
        """The rows ``idx`` (a LongTensor) of every field."""
        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[idx]
        return FaceGeometry(self.found[idx], self.boxes[idx], self.points5[idx],
                            self.align68[idx], pick(self.points68), pick(self.detection_score),
                            self.generated, detection_boxes=pick(self.detection_boxes))


def _check_images(images: object, generated: bool = False) -> list[Tensor] | Tensor:
    """A batch tensor, or a list of [3, H, W] tensors, checked (:func:`check_image_list`) and
    clipped to [-1, 1]; generated faces also brought to the working size."""
    # Generators overshoot [-1, 1] (MobileStyleGAN at psi 1 mostly to about 3, one face in
    # about 20,000 to -6 .. 8.9), so a generated batch is refused as 0-255 only when it has no
    # negative values; photos keep the plain bound.
    items = check_image_list(images, min_side=MIN_SIDE, max_abs=None if generated else MAX_ABS)
    # A batch is prepared whole (one working-size pass, one clamp), not image by image.
    checked = [images] if isinstance(images, Tensor) else items
    prepared = []
    for im in checked:
        lo, hi = (float(v) for v in torch.aminmax(im.detach()))   # one pass, no big temporary
        if generated and lo >= 0.0 and hi > MAX_ABS:
            raise ValueError(f"images must be float RGB in [-1, 1], got values from {lo:.1f} to "
                             f"{hi:.1f}; convert 0-255 images with x / 127.5 - 1")
        if generated:
            im = working_size(im)
            lo, hi = (float(v) for v in torch.aminmax(im.detach()))
        # The models were trained on real images, so clip as saving the image would.
        prepared.append(im.clamp(-1, 1) if lo < -1 or hi > 1 else im)
    return prepared[0] if isinstance(images, Tensor) else prepared


def working_size(images: Tensor) -> Tensor:
    """Generated faces larger than :data:`GENERATED_WORK_SIZE` are averaged down by an integer
    factor first. Every model reads a crop of at most 150 px from a face about 600 px wide at
    1024, so nothing is lost, the crops are antialiased, and every later step (checks, copies,
    crops, dlib's pyramid) touches a quarter of the pixels. The fixed geometry scales with the
    image, so it stays exact when the factor divides the size."""
    h, w = images.shape[-2:]
    factor = min(h, w) // GENERATED_WORK_SIZE
    if factor < 2 or h % factor or w % factor:
        return images
    return F.avg_pool2d(images, factor)


class FaceAnalyzer:
    """Loads the face models on first use and runs them on batches.

    ``device``: where the models run (images are moved there). ``batch_size``: faces per
    forward pass. Models are float32, in eval mode, frozen (``requires_grad`` False), so
    gradients flow to the images only.
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 32,
                 loaders: dict[str, Callable[[], nn.Module]] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._loaders = dict(_default_loaders())
        self._loaders.update(loaders or {})
        self._models: dict[str, nn.Module] = {}

    # -- models --------------------------------------------------------------------------------
    def model(self, name: str) -> nn.Module:
        """The loaded network ``name`` (see :data:`MODELS`), loading it on first use."""
        if name not in self._models:
            if name not in self._loaders:
                raise ValueError(f"unknown face model {name!r}; choose from {', '.join(MODELS)}")
            module = self._loaders[name]().to(self.device).eval()
            for p in module.parameters():
                p.requires_grad_(False)
            self._models[name] = module
        return self._models[name]

    # -- geometry ------------------------------------------------------------------------------
    def locate(self, images: Images, generated: bool = False,
               landmarks: bool = True) -> FaceGeometry:
        """Find one face per image. Generated faces get the fixed FFHQ geometry (and, with
        ``landmarks``, their own 68 points from the landmark net inside the fixed box)."""
        items = _check_images(images, generated)
        if generated:
            if not isinstance(items, Tensor):
                raise ValueError("generated=True needs one batch tensor [N, 3, H, W] of "
                                 "FFHQ-aligned faces")
            items = items.to(self.device)
            fixed = align.generated_landmarks68(items)
            n = items.shape[0]
            geom = FaceGeometry(
                found=torch.ones(n, dtype=torch.bool, device=self.device),
                boxes=align.generated_face_boxes(items),
                points5=align.arcface5_from_landmarks68(fixed),
                align68=fixed, generated=True)
            if landmarks:
                geom.points68 = self._landmarks(items, geom.boxes)
            return geom
        return self._locate_photos(items)[0]

    def locate_faces(self, images: Images) -> tuple[FaceGeometry, Tensor]:
        """Every face YuNet finds in each photo, ordered left to right within a photo.

        ``images``: photos, float RGB in [-1, 1] (a list of ``[3, H, W]`` or ``[N, 3, H, W]``).
        Returns ``(geometry, image_index)``: one geometry row per face found (F rows, all
        ``found``), with ``detection_boxes`` and ``detection_score``, and ``image_index [F]``
        (long) the photo each face is in. Faces of one photo are sorted by the x of their box
        centre, so the k-th row of a photo is face ``k`` everywhere (``score --all-faces``,
        :func:`facelatent.faces.align.align_photo_faces`). A photo without a face has no rows.
        Faces narrower than about 1/32 of the photo's longer side (20 px at YuNet's 640 px
        input) may be missed, and under 1/70 are (:func:`facelatent.faces.files.score_files`).
        """
        return self._locate_photos(_check_images(images), every_face=True)

    def _locate_photos(self, items: list[Tensor] | Tensor, every_face: bool = False,
                       ) -> tuple[FaceGeometry, Tensor]:
        """Geometry of the largest face per photo (``every_face`` False: one row per photo,
        NaN where none) or of every face (rows only for faces found), and each row's photo."""
        images = [im.to(self.device) for im in items]
        detector = self.model("yunet")
        with torch.no_grad():
            detections = detector.detect(images)
        owners: list[int] = []
        picks: list[int | None] = []
        for i, det in enumerate(detections):
            if every_face:
                centre_x = (det.boxes[:, 0] + det.boxes[:, 2]) / 2
                order = torch.argsort(centre_x.cpu(), stable=True).tolist()
                owners += [i] * len(order)
                picks += order
            else:
                # One face per photo: the largest of the confident ones (detect() already
                # applied the score threshold).
                area = (det.boxes[:, 2:] - det.boxes[:, :2]).clamp(min=0).prod(dim=1)
                owners.append(i)
                picks.append(int(area.argmax()) if len(det) else None)
        n = len(owners)
        nan = float("nan")
        points5 = torch.full((n, 5, 2), nan, device=self.device)
        boxes = torch.full((n, 4), nan, device=self.device)
        det_boxes = torch.full((n, 4), nan, device=self.device)
        points68 = torch.full((n, 68, 2), nan, device=self.device)
        det_score = torch.zeros(n, device=self.device)
        found = torch.zeros(n, dtype=torch.bool, device=self.device)
        for row, (i, j) in enumerate(zip(owners, picks)):
            if j is None:
                continue
            det = detections[i]
            found[row], det_score[row], points5[row] = True, det.scores[j], det.points[j]
            det_boxes[row] = det.boxes[j]
            boxes[row] = align.landmark_box_from_detection(det.boxes[j:j + 1])[0]
            points68[row] = self._landmarks(images[i][None], boxes[row:row + 1])[0]
        geom = FaceGeometry(found=found, boxes=boxes, points5=points5, align68=points68,
                            points68=points68, detection_score=det_score,
                            detection_boxes=det_boxes)
        return geom, torch.tensor(owners, dtype=torch.long)

    def _landmarks(self, images: Tensor, boxes: Tensor) -> Tensor:
        net = self.model("landmarks68")
        return net.landmarks(images, boxes)

    # -- scores --------------------------------------------------------------------------------
    def score(self, images: Images, names: Sequence[str] | str | None = None,
              generated: bool = False, geometry: FaceGeometry | None = None) -> dict[str, Tensor]:
        """Attribute scores ``{name: Tensor[N]}`` (float32, NaN where no face was found).

        ``names``: attribute names or groups (see :data:`ATTRIBUTES`; default
        :data:`DEFAULT_ATTRIBUTES`). Gradients flow to ``images`` when they require grad
        (generated faces; photos pass through a detector that does not).
        """
        wanted = resolve_attributes(names)
        items = _check_images(images, generated or bool(geometry and geometry.generated))
        models = {ATTRIBUTES[n].model for n in wanted}
        geom = _matching(geometry, items) or self.locate(items, generated,
                                                         landmarks="landmarks68" in models)
        n = len(items)
        out = {name: torch.full((n,), float("nan"), device=self.device) for name in wanted}
        rows = torch.nonzero(geom.found).flatten()
        grad = _wants_grad(items)
        with nullcontext() if grad else torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                idx = rows[start:start + self.batch_size]
                batch = _take(items, idx, self.device)
                part = self._score_batch(batch, geom.select(idx), models)
                for name in wanted:
                    out[name] = out[name].index_put((idx,), part[name].to(out[name].dtype))
        return out

    def _score_batch(self, images: Images, geom: FaceGeometry, models: set[str],
                     ) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name in sorted(models):
            out.update(MODELS[name].scorer_fn()(self.model(name), images, geom))
        return out

    def ffhq_align(self, images: Images, size: int = 1024,
                   geometry: FaceGeometry | None = None) -> tuple[Tensor, Tensor]:
        """Photos cut the way FFHQ was made, for GAN inversion: ``[N, 3, size, size]`` and
        ``found [N]`` (rows without a face are black).

        Uses FFHQ's own point definitions (eye centres as the mean of each eye's six landmarks,
        mouth corners 48 and 54) from the 68-point net, then :func:`align.ffhq_align`.
        """
        items = _check_images(images)
        geom = _matching(geometry, items) or self.locate(items)
        if geom.points68 is None:
            raise ValueError("geometry has no 68-point landmarks; call locate(images) with "
                             "landmarks=True")
        out = torch.full((len(items), 3, size, size), -1.0, device=self.device)
        for i in torch.nonzero(geom.found).flatten().tolist():
            points5 = align.arcface5_from_landmarks68(geom.points68[i:i + 1])
            out[i] = align.ffhq_align(items[i][None].to(self.device), points5, size)[0]
        return out, geom.found

    # -- identity ------------------------------------------------------------------------------
    def embed(self, images: Images, model: str = "sface", generated: bool = False,
              geometry: FaceGeometry | None = None) -> Tensor:
        """Identity embeddings ``[N, 128]``, unit length (NaN rows where no face was found).

        ``model``: "sface" (ArcFace-aligned 112 px crop) or "dlib" (dlib chip, 150 px).
        """
        if model not in IDENTITY_MODELS:
            raise ValueError(f"model must be one of {' or '.join(map(repr, IDENTITY_MODELS))}, "
                             f"got {model!r}")
        items = _check_images(images, generated or bool(geometry and geometry.generated))
        geom = _matching(geometry, items) or self.locate(items, generated, landmarks=False)
        net = self.model(model)
        n = len(items)
        out = torch.full((n, 128), float("nan"), device=self.device)
        rows = torch.nonzero(geom.found).flatten()
        with nullcontext() if _wants_grad(items) else torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                idx = rows[start:start + self.batch_size]
                batch, g = _take(items, idx, self.device), geom.select(idx)
                points = g.points5 if model == "sface" else align.dlib5_from_landmarks68(g.align68)
                out = out.index_put((idx,), per_image(net.embed, batch, points))
        return out


def _matching(geometry: FaceGeometry | None, items: list[Tensor] | Tensor) -> FaceGeometry | None:
    """``geometry`` if it has one row per image; ValueError otherwise (it was located on other
    images, and rows would be matched to the wrong faces)."""
    if geometry is not None and len(geometry.found) != len(items):
        raise ValueError(f"geometry has {len(geometry.found)} rows but images has {len(items)}; "
                         "pass the geometry that locate() gave for these same images")
    return geometry


def _wants_grad(items: list[Tensor] | Tensor) -> bool:
    if isinstance(items, Tensor):
        return items.requires_grad
    return any(im.requires_grad for im in items)


def _take(items: list[Tensor] | Tensor, idx: Tensor, device: torch.device) -> Images:
    if isinstance(items, Tensor):
        if len(idx) == len(items) and bool((idx == torch.arange(len(idx), device=idx.device)).all()):
            return items.to(device)                     # every row, in order: no copy
        return items[idx.to(items.device)].to(device)
    return [items[i].to(device) for i in idx.tolist()]


def _default_loaders() -> dict[str, Callable[[], nn.Module]]:
    """Real-weight loaders of every registered model (a seam tests replace)."""
    return default_loaders()


_ANALYZERS: dict[str, FaceAnalyzer] = {}


def get_analyzer(device: str | torch.device = "cpu") -> FaceAnalyzer:
    """A shared :class:`FaceAnalyzer` per device (models load once per process)."""
    key = str(torch.device(device))
    if key not in _ANALYZERS:
        _ANALYZERS[key] = FaceAnalyzer(key)
    return _ANALYZERS[key]


def score(images: Images, names: Sequence[str] | str | None = None, *, generated: bool = False,
          device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Attribute scores ``{name: Tensor[N]}``; see :meth:`FaceAnalyzer.score`."""
    return get_analyzer(device).score(images, names, generated=generated)


def embed(images: Images, model: str = "sface", *, generated: bool = False,
          device: str | torch.device = "cpu") -> Tensor:
    """Unit identity embeddings ``[N, 128]``; see :meth:`FaceAnalyzer.embed`."""
    return get_analyzer(device).embed(images, model, generated=generated)
