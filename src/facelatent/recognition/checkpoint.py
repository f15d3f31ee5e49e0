"""A recogniser's run folder, and loading the recogniser from it.

Layout (written by `facelatent.recognition.train.train_recognizer`)::

    config.json          format, the network's config, settings, the dataset's key, classes
    model.safetensors    the backbone after the latest epoch (float32; metadata: epoch)
    state.pt             the training state: backbone, head, optimizer, epoch, step, RNG states
    log.jsonl            one line per epoch: loss, accuracy, seconds, LFW accuracy

Nothing here executes code on load: the weights are safetensors (read by our own reader) and
``state.pt`` goes through ``torch.load(weights_only=True)``, which unpickles tensors, numbers,
strings and containers only and refuses any other object (a pickle that names a function to
call is rejected before anything runs). Every tensor name and shape is checked against the
network the config builds. Each file is written atomically; ``state.pt`` is written first, so
a kill between the two leaves ``model.safetensors`` one epoch behind, never ahead.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.errors import FileFormatError
from facelatent.io import atomic_path, read_json
from facelatent.recognition.model import CROP_SIZE, RecognizerConfig, build_backbone

__all__ = ["CONFIG", "FORMAT", "FORMAT_VERSION", "LOG", "STATE", "WEIGHTS", "Recognizer",
           "copy_state", "load_recognizer", "load_state", "load_weights", "module_state",
           "read_config", "save_state", "save_weights"]

FORMAT = "facelatent.recognizer"
FORMAT_VERSION = 1
CONFIG, WEIGHTS, STATE, LOG = "config.json", "model.safetensors", "state.pt", "log.jsonl"


class Recognizer(nn.Module):
    """A trained backbone as a face model: ``[N, 3, 112, 112]`` ArcFace-template crops, float
    RGB in [-1, 1] -> ``[N, D]`` unit embeddings (cosine = dot product).

    ``flip``: average the embeddings of each crop and its mirror image before normalising (the
    usual test-time practice; it costs a second forward pass and gains a few tenths of a point
    on LFW)."""

    def __init__(self, backbone: nn.Module, config: RecognizerConfig, epoch: int = 0,
                 flip: bool = True) -> None:
        super().__init__()
        self.backbone, self.config, self.epoch, self.flip = backbone, config, epoch, flip

    @property
    def dim(self) -> int:
        return self.config.embedding

    def forward(self, crops: Tensor) -> Tensor:
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(f"crops must be [N, 3, {CROP_SIZE}, {CROP_SIZE}] ArcFace-template "
                             f"crops, got {list(crops.shape)}")
        features = self.backbone(crops)
        if self.flip:
            features = features + self.backbone(crops.flip(-1))
        return F.normalize(features, dim=1)

    @torch.no_grad()
    def embed(self, crops: Tensor, batch_size: int = 128) -> Tensor:
        """:meth:`forward` in eval mode over batches of ``batch_size``, without gradients."""
        was_training = self.training
        self.eval()
        try:
            rows = [self(crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(rows) if rows else crops.new_zeros((0, self.dim))


# -- weights (what load_recognizer reads) -------------------------------------------------------

def module_state(module: nn.Module) -> dict[str, Tensor]:
    """The state of ``module`` to keep: parameters and BN statistics (BN's step counters only matter for a
    cumulative average, which these nets do not use)."""
    return {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}


def save_weights(folder: Path, backbone: nn.Module, epoch: int) -> Path:
    """Write the backbone to ``folder/model.safetensors`` atomically."""
    from facelatent.generators.converted import write_safetensors

    return write_safetensors(folder / WEIGHTS, module_state(backbone), {"epoch": str(epoch)})


def load_weights(folder: Path, config: RecognizerConfig) -> tuple[nn.Module, int]:
    """The backbone of ``config`` with the weights in ``folder/model.safetensors``, and the
    epoch they are from. FileFormatError naming the file for any missing, extra or misshapen
    tensor."""
    from facelatent.generators.converted import read_safetensors

    path = folder / WEIGHTS
    tensors, metadata = read_safetensors(path)
    backbone = build_backbone(config)
    copy_state(backbone, tensors, str(path))
    try:
        epoch = int(metadata.get("epoch", "0"))
    except ValueError:
        raise FileFormatError(f"{path}: its metadata's epoch {metadata.get('epoch')!r} is not "
                              "a number") from None
    return backbone.eval(), epoch


def copy_state(module: nn.Module, tensors: dict[str, Tensor], where: str) -> None:
    """Copy ``tensors`` into ``module``, refusing any missing, extra or misshapen tensor (BN
    step counters may be absent)."""
    expected = module_state(module)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise FileFormatError(f"{where}: the tensors do not fit the network its config "
                              f"builds: missing {missing[:3] or 'none'}, unexpected "
                              f"{extra[:3] or 'none'}")
    for key, value in tensors.items():
        if not isinstance(value, Tensor) or value.shape != expected[key].shape:
            shape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise FileFormatError(f"{where}: tensor {key!r} is {shape}, the network needs "
                                  f"{list(expected[key].shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise FileFormatError(f"{where}: tensor {key!r} holds NaN or infinity (a diverged "
                                  "run?); train again with a lower --lr")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()},
                           strict=False)


def read_config(folder: str | Path) -> dict[str, Any]:
    """``folder/config.json``, checked to be a recogniser's; ValueError naming the folder."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise ValueError(f"{folder} is not a recogniser folder (no {CONFIG}); pass sface, dlib "
                         "or a folder written by `facelatent fr train`")
    config = read_json(folder / CONFIG, format=FORMAT, max_version=FORMAT_VERSION,
                       kind="a recogniser's config.json")
    try:
        RecognizerConfig.from_json(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{folder / CONFIG}: its model config is incomplete or invalid "
                              f"({exc})") from None
    return config


def load_recognizer(folder: str | Path, device: str | torch.device = "cpu",
                    flip: bool = True) -> Recognizer:
    """The recogniser trained in ``folder`` (its latest epoch), in eval mode on ``device``.

    ``flip``: flip-averaged embeddings (see :class:`Recognizer`)."""
    folder = Path(folder)
    config = RecognizerConfig.from_json(read_config(folder)["model"])
    if not (folder / WEIGHTS).is_file():
        raise ValueError(f"{folder} has no {WEIGHTS} yet: its first epoch has not finished")
    backbone, epoch = load_weights(folder, config)
    return Recognizer(backbone, config, epoch, flip).to(device).eval()


# -- training state -----------------------------------------------------------------------------

def save_state(folder: Path, state: dict[str, Any]) -> Path:
    """Write the training state (tensors, numbers, strings, containers) atomically."""
    with atomic_path(folder / STATE) as tmp:
        torch.save(state, tmp)
    return folder / STATE


def load_state(folder: Path) -> dict[str, Any]:
    """The training state in ``folder/state.pt``, unpickled with ``weights_only=True`` (no
    object but tensors, numbers, strings and containers can come back, and nothing runs).
    FileFormatError, one line naming the file, for anything else."""
    path = folder / STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError,
            TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileFormatError(f"{path} is not a training state this version can read safely "
                              f"({first[:160]}); delete it to start over, or use a new --out "
                              "folder") from None
    needed = ("epoch", "step", "backbone", "head", "optimizer", "rng")
    if not isinstance(state, dict) or any(k not in state for k in needed):
        raise FileFormatError(f"{path} is not a complete training state (it needs "
                              f"{', '.join(needed)})")
    return state
