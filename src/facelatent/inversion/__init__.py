"""GAN inversion: photo -> FFHQ-aligned face -> latent (W or W+) the generator reproduces it from.

    from facelatent.inversion import Inverter, save_inversion, load_inversion
    inv = Inverter(space="wp", steps=100).fit(G, aligned)   # aligned [N, 3, S, S] in [-1, 1]
    save_inversion(inv.result_, "out/face0", 0)
    face = load_inversion("out/face0/latents.npz")           # face.latent [num_ws, w_dim]

:mod:`~facelatent.inversion.losses` holds the loss terms, :mod:`~facelatent.inversion.optimize`
the optimiser, :mod:`~facelatent.inversion.files` the output folder and
:mod:`~facelatent.inversion.photos` the path from photo files (``facelatent invert``).
"""

from facelatent.inversion.files import InvertedFace, load_inversion, save_inversion
from facelatent.inversion.losses import LossWeights, mapping_prior
from facelatent.inversion.optimize import (
           InversionResult,
           Inverter,
           reconstruction_metrics,
)
from facelatent.inversion.photos import AlignedFace, align_photo, invert_photos

__all__ = ["AlignedFace", "InversionResult", "InvertedFace", "Inverter", "LossWeights",
           "align_photo", "invert_photos", "load_inversion", "mapping_prior",
           "reconstruction_metrics", "save_inversion"]
