"""Semantic boundaries in latent space: fit, condition, correlate, and unsupervised directions.

    est = LinearBoundary(ratio=0.02, random_state=0).fit(w, scores)   # InterFaceGAN's protocol
    b = est.to_boundary("smile", space="w"); b.save("smile_w.npz")
    age_c = condition_boundary(load_boundary("age.npz"), [load_boundary("gender.npz")])
    cos = correlation_matrix([age_c, b])
    dirs = sefa(G, layers=range(0, 8), k=5)                           # closed form, no data
"""

from facelatent.boundaries.boundary import SPACES, Boundary, load_boundary
from facelatent.boundaries.conditional import condition, condition_boundary, correlation_matrix
from facelatent.boundaries.identity import (IdentityBoundaries, fit_identity_boundaries,
                                            identity_labels, sample_identity)
from facelatent.boundaries.linear import SOLVERS, LinearBoundary, shrunk_lda
from facelatent.boundaries.unsupervised import ganspace, sefa, style_affines

__all__ = [
    "SOLVERS", "SPACES", "Boundary", "LinearBoundary", "condition", "condition_boundary",
    "correlation_matrix", "ganspace", "load_boundary", "sefa", "shrunk_lda", "style_affines",
    "IdentityBoundaries", "fit_identity_boundaries", "identity_labels", "sample_identity",
]
