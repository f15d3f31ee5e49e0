"""Identity/attribute latent mapping (Nitzan et al., SIGGRAPH Asia 2020): a frozen face
recogniser (E_id), a trainable attribute encoder (E_attr) and an MLP (M) into the generator's W.

    from facelatent.mapping import Mapper
    mapper = Mapper.from_checkpoint("runs/mapping/checkpoint.npz")
    w = mapper.swap(identity_faces, attribute_faces)
"""

from facelatent.mapping.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from facelatent.mapping.mapper import Mapper
from facelatent.mapping.model import MapperConfig, MappingNet, WDiscriminator, build

__all__ = ["Checkpoint", "Mapper", "MapperConfig", "MappingNet", "WDiscriminator", "build",
           "load_checkpoint", "save_checkpoint"]
