"""facelatent: interpret and edit the latent space of pretrained face GANs.

The main entry points, importable from here (each loads its module on first use, so
``import facelatent`` stays instant):

    import facelatent as fl
    G = fl.get_generator("mobilestylegan-ffhq")                        # generators
    fl.sample_to_store("runs/ffhq", 2000, fl.SampleSettings("mobilestylegan-ffhq",
                       attributes=("smile_logit",)))                   # latents
    store = fl.LatentStore.open("runs/ffhq", read_only=True)
    w, smile = store.latents("w"), store.scores("smile_logit")
    b = fl.LinearBoundary(random_state=0).fit(w, smile).to_boundary("smile", space="w")
    faces = fl.edit_images(G, [0, 1], b, [-2, 0, 2])                   # editing
    ids = fl.fit_identity_boundaries(store, references=100)           # boundaries
    fl.build_dataset("data/synth", ids, fl.DatasetSettings(per_identity=20))   # datasets
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "get_generator": "facelatent.generators",
    "z_from_seeds": "facelatent.generators",
    "FaceAnalyzer": "facelatent.faces",
    "LatentStore": "facelatent.latents",
    "SampleSettings": "facelatent.latents",
    "sample_to_store": "facelatent.latents",
    "Boundary": "facelatent.boundaries",
    "load_boundary": "facelatent.boundaries",
    "LinearBoundary": "facelatent.boundaries",
    "condition_boundary": "facelatent.boundaries",
    "IdentityBoundaries": "facelatent.boundaries",
    "fit_identity_boundaries": "facelatent.boundaries",
    "edit_latents": "facelatent.editing",
    "edit_images": "facelatent.editing",
    "DatasetSettings": "facelatent.datasets",
    "build_dataset": "facelatent.datasets",
    "LocalEngine": "facelatent.runs",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'facelatent' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
