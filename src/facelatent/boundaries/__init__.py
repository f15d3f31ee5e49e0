"""Semantic boundaries in latent space: fit, condition, correlate, unsupervised directions, and
identity boundaries.

    w, scores, source = read_fit_data(store="runs/ffhq", space="w", attribute="smile")
    est = LinearBoundary(ratio=0.02, random_state=0).fit(w, scores)   # InterFaceGAN's protocol
    b = est.to_boundary("smile", space="w", provenance=source); b.save("smile_w.npz")
    age_c = condition_boundary(load_boundary("age.npz"), [load_boundary("gender.npz")])
    cos = correlation_matrix([age_c, b])
    dirs = SeFa(layers=range(0, 8), k=5).fit(G).to_boundaries()       # closed form, no data
    ids = IdentityBoundaryFitter(references=1000).fit("runs/ffhq").boundaries_
    ids.save("runs/ffhq/identities"); IdentityBoundaries.load("runs/ffhq/identities")

Every fitting class is a scikit-learn estimator (`get_params`, `set_params`, `clone`).
"""

from facelatent.boundaries.boundary import SPACES, Boundary, load_boundary
from facelatent.boundaries.conditional import (
    ConditionalBoundary,
    condition,
    condition_boundary,
    correlation_matrix,
)
from facelatent.boundaries.identity import (
    BOUNDARIES_FILE,
    IdentityBoundaries,
    boundaries_path,
)
from facelatent.boundaries.identity_fit import (
    IdentityBoundaryFitter,
    fit_identity_boundaries,
    identity_labels,
)
from facelatent.boundaries.linear import SOLVERS, LinearBoundary, shrunk_lda
from facelatent.boundaries.sources import read_fit_data, store_latents
from facelatent.boundaries.unsupervised import (
    GANSpace,
    SeFa,
    ganspace,
    sefa,
    style_affines,
)

__all__ = [
    "BOUNDARIES_FILE", "SOLVERS", "SPACES", "Boundary", "ConditionalBoundary", "GANSpace",
    "IdentityBoundaries", "IdentityBoundaryFitter", "LinearBoundary", "SeFa",
    "boundaries_path", "condition", "condition_boundary", "correlation_matrix",
    "fit_identity_boundaries", "ganspace", "identity_labels", "load_boundary", "read_fit_data",
    "sefa", "shrunk_lda", "store_latents", "style_affines",
]
