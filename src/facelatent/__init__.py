"""facelatent: interpret and edit the latent space of pretrained face GANs."""

__version__ = "0.1.0"
