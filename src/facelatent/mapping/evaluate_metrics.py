"""The per-pair metrics of a mapping evaluation, on faces measured once each, and
:class:`FaceMeter`, which renders latents and measures the faces batch by batch.

Every face is measured once (:func:`measure_faces`: 68 landmarks, pose and expression scores,
an identity embedding) and the metrics of a pair are arithmetic on those measurements
(:func:`pair_metrics`), so an identity or attribute face shared by many pairs, methods or
crossovers is never run through the face models twice. What each metric is:
:mod:`facelatent.mapping.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from facelatent.faces.analysis import FaceAnalyzer
from facelatent.faces.registry import GROUPS
from facelatent.generators.base import Generator
from facelatent.images import resize, to_uint8
from facelatent.inversion.losses import ms_ssim
from facelatent.mapping.mapper import Mapper

__all__ = ["EXPRESSION_SCORES", "MEASURED_SCORES", "METRICS", "FaceMeasures", "FaceMeter",
           "cosine", "expression_distance", "landmark_error", "measure_faces", "pair_metrics"]

METRICS = ("identity_cosine", "attribute_cosine", "landmark_error", "yaw_error",
           "pitch_error", "expression_distance")
EXPRESSION_SCORES = GROUPS["expression"]
MEASURED_SCORES = ("yaw", "pitch", *EXPRESSION_SCORES)
Progress = Callable[[int, int], None]


@dataclass
class FaceMeasures:
    """What the metrics need of N faces: ``embeddings`` ``[N, 128]`` (unit; NaN rows where no
    face), ``points68`` ``[N, 68, 2]`` in pixels of the measured size, ``scores`` ``{name:
    [N]}``. NumPy float64 on the CPU."""

    embeddings: np.ndarray
    points68: np.ndarray
    scores: dict[str, np.ndarray]

    def take(self, index: np.ndarray) -> FaceMeasures:
        return FaceMeasures(self.embeddings[index], self.points68[index],
                            {k: v[index] for k, v in self.scores.items()})

    @staticmethod
    def concat(parts: Sequence[FaceMeasures]) -> FaceMeasures:
        return FaceMeasures(np.concatenate([p.embeddings for p in parts]),
                            np.concatenate([p.points68 for p in parts]),
                            {k: np.concatenate([p.scores[k] for p in parts])
                             for k in parts[0].scores})


def measure_faces(analyzer: FaceAnalyzer, images: Tensor, identity_model: str,
                  scores: Sequence[str] = MEASURED_SCORES) -> FaceMeasures:
    """Landmarks, ``scores`` and ``identity_model`` embeddings of FFHQ-aligned faces
    ``[N, 3, S, S]`` in [-1, 1] (read through the fixed crop of generated faces)."""
    with torch.no_grad():
        x = images.clamp(-1, 1).to(analyzer.device)
        geom = analyzer.locate(x, generated=True, landmarks=True)
        assert geom.points68 is not None
        got = analyzer.score(x, list(scores), geometry=geom)
        emb = analyzer.embed(x, identity_model, geometry=geom)
    return FaceMeasures(emb.double().cpu().numpy(), geom.points68.double().cpu().numpy(),
                        {k: v.double().cpu().numpy() for k, v in got.items()})


def landmark_error(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean distance of 68 landmarks ``[N, 68, 2]`` to ``reference`` ``[N, 68, 2]``, over the
    reference's inter-ocular distance (eye centres: means of points 36-41 and 42-47) -> ``[N]``."""
    eyes = reference[:, 42:48].mean(axis=1) - reference[:, 36:42].mean(axis=1)
    iod = np.linalg.norm(eyes, axis=-1)
    dist = np.linalg.norm(points - reference, axis=-1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(iod > 0, dist / iod, np.nan)


def expression_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation between probability vectors ``[N, C]`` -> ``[N]`` in [0, 1]."""
    return 0.5 * np.abs(p - q).sum(axis=1)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of unit embeddings ``[N, D]`` -> ``[N]`` (NaN where a row is NaN)."""
    return (a * b).sum(axis=1)


def pair_metrics(out: FaceMeasures, identity: FaceMeasures, attribute: FaceMeasures,
                 ) -> dict[str, np.ndarray]:
    """Each of :data:`METRICS` ``[P]`` for outputs, identity faces and attribute faces (P
    rows each; module docstring: what each metric is)."""
    def expr(m: FaceMeasures) -> np.ndarray:
        return np.stack([m.scores[k] for k in EXPRESSION_SCORES], axis=1)

    return {"identity_cosine": cosine(out.embeddings, identity.embeddings),
            "attribute_cosine": cosine(out.embeddings, attribute.embeddings),
            "landmark_error": landmark_error(out.points68, attribute.points68),
            "yaw_error": np.abs(out.scores["yaw"] - attribute.scores["yaw"]),
            "pitch_error": np.abs(out.scores["pitch"] - attribute.scores["pitch"]),
            "expression_distance": expression_distance(expr(out), expr(attribute))}


class FaceMeter:
    """Renders latents and measures faces ``batch`` at a time at ``size`` px, counting rendered
    images for ``progress(done, total)`` (``total`` set by the caller); thumbnails are
    ``min(128, size)`` px."""

    def __init__(self, mapper: Mapper, generator: Generator, analyzer: FaceAnalyzer,
                 identity_model: str, size: int, batch: int, progress: Progress | None) -> None:
        self.mapper, self.generator, self.analyzer = mapper, generator, analyzer
        self.identity_model, self.size, self.batch = identity_model, size, batch
        self.thumb = min(128, size)
        self.progress, self.done, self.total = progress, 0, 0

    def tick(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)

    def render(self, latents: Tensor) -> Iterator[Tensor]:
        """Faces ``[k, 3, size, size]`` clamped to [-1, 1], CPU, ``batch`` at a time."""
        with torch.no_grad():
            for start in range(0, len(latents), self.batch):
                part = latents[start:start + self.batch].to(self.generator.device, torch.float32)
                images = self.generator.synthesis(part).float().cpu()
                yield resize(images, self.size).clamp(-1, 1)

    def measure(self, images: Tensor, names: Sequence[str] = MEASURED_SCORES) -> FaceMeasures:
        """:func:`measure_faces` of faces ``[N, 3, size, size]``, ``batch`` at a time."""
        parts = [measure_faces(self.analyzer, images[i:i + self.batch], self.identity_model,
                               names) for i in range(0, len(images), self.batch)]
        return FaceMeasures.concat(parts)

    def measure_latents(self, latents: Tensor, keep: int = 0, compare: Tensor | None = None,
                        names: Sequence[str] = MEASURED_SCORES,
                        ) -> tuple[FaceMeasures, np.ndarray, np.ndarray | None]:
        """Render and measure latents; thumbnails of the first ``keep``; MS-SSIM against
        ``compare`` (``[N, 3, size, size]``) when given."""
        parts, thumbs, ssim = [], [], []
        done = 0
        for images in self.render(latents):
            parts.append(measure_faces(self.analyzer, images, self.identity_model, names))
            if done < keep:
                thumbs.append(to_uint8(resize(images[:keep - done], self.thumb)))
            if compare is not None:
                ssim.append(ms_ssim(images, compare[done:done + len(images)]).double().numpy())
            done += len(images)
            self.tick(len(images))
        thumb = np.concatenate(thumbs) if thumbs else np.zeros((0, self.thumb, self.thumb, 3),
                                                               np.uint8)
        return FaceMeasures.concat(parts), thumb, np.concatenate(ssim) if ssim else None

    def swap(self, identity: Tensor, attributes: Tensor) -> Tensor:
        """The mapping's latents for faces paired row by row (``batch`` at a time)."""
        out = [self.mapper.swap(identity[i:i + self.batch], attributes[i:i + self.batch]).cpu()
               for i in range(0, len(identity), self.batch)]
        return torch.cat(out)
