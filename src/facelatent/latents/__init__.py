"""Latent codes: seeds, sampling, and (later) the resumable LatentStore."""
