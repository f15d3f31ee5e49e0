"""Face analysis: detection, alignment, identity embeddings and attribute scores.

``score(images, names, generated=...)`` and ``embed(images, model=...)`` are the entry points;
:mod:`facelatent.faces.analysis` holds the registry (``MODELS``, ``ATTRIBUTES``).
"""

from facelatent.faces.analysis import ATTRIBUTES, MODELS, FaceAnalyzer, embed, score

__all__ = ["ATTRIBUTES", "MODELS", "FaceAnalyzer", "embed", "score"]
