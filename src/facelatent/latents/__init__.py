"""Latent codes: seeds to latents (`sampling`), the resumable, checksummed `LatentStore`
(`store`) and filling one with sampled, scored and embedded faces (`fill`).

    from facelatent.latents import SampleSettings, sample_to_store, LatentStore
    sample_to_store("runs/ffhq", 20000, SampleSettings("mobilestylegan-ffhq",
                    attributes=("age", "smile_logit"), identity=("sface",)))
    store = LatentStore.open("runs/ffhq", read_only=True)
    w, age = store.latents("w"), store.scores("age")
"""

from facelatent.latents.fill import SampleReport, SampleSettings, sample_to_store
from facelatent.latents.sampling import latents_for_seeds, load_latents
from facelatent.latents.store import LatentStore, ShardProblem, StoreCorruptError, StoreSpec

__all__ = ["LatentStore", "SampleReport", "SampleSettings", "ShardProblem", "StoreCorruptError",
           "StoreSpec", "latents_for_seeds", "load_latents", "sample_to_store"]
