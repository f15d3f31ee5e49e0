"""Face analysis: detection, alignment, identity embeddings and attribute scores.

``score(images, names, generated=...)`` and ``embed(images, model=...)`` are the entry points;
:mod:`facelatent.faces.registry` holds the one model registry (``MODELS``, ``ATTRIBUTES``),
:mod:`facelatent.faces.align` all crop geometry, :mod:`facelatent.faces.files` the scoring of
image files.
"""

from facelatent.faces.analysis import ATTRIBUTES, MODELS, FaceAnalyzer, embed, score

__all__ = ["ATTRIBUTES", "MODELS", "FaceAnalyzer", "embed", "score"]
