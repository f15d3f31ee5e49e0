"""Training data for a recogniser: a facelatent dataset's crops in memory, and the augmentation.

A dataset folder (`facelatent dataset build`) lists its samples in ``metadata.parquet``; rows
whose face was not found have no crop and are skipped. Each remaining crop is a 112x112 PNG on
the ArcFace template. They are all read once into one uint8 tensor (37.6 kB a crop: 10,000
identities x 50 images take 19 GB), so an epoch touches no file.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facelatent.images import load_rgb
from facelatent.recognition.model import CROP_SIZE
from facelatent.recognition.settings import Augmentation

__all__ = ["TrainingSet", "augment", "load_training_set", "read_crops"]


@dataclass
class TrainingSet:
    """A dataset's crops with their labels."""

    path: Path
    images: Tensor               # [N, 3, 112, 112] uint8 RGB
    labels: Tensor               # [N] int64 in [0, C)
    classes: tuple[int, ...]     # [C] the dataset's class number of each label
    skipped: int                 # rows without a face (no crop)
    digest: str                  # sha256 of every crop's class, path and size

    @property
    def key(self) -> dict[str, Any]:
        """What a resumed run must train on again: the counts and the digest (the folder may
        move; its content may not change)."""
        return {"images": len(self.labels), "classes": len(self.classes),
                "content": self.digest}


def read_crops(table: Any, rows: np.ndarray | None = None,
               progress: Callable[[int, int], None] | None = None) -> tuple[Tensor, str]:
    """The 112x112 crops of ``rows`` (indices into ``table.labels``; None: all) of a
    `read_dataset` table, as ``[N, 3, 112, 112]`` uint8 RGB, and the sha256 of every crop's
    class, path and size. ValueError (one line) for a path outside the dataset folder or a crop
    of another size."""
    folder = table.path
    root = Path(folder).resolve()
    rows = np.arange(len(table.labels)) if rows is None else np.asarray(rows, dtype=np.int64)
    images = torch.empty((len(rows), 3, CROP_SIZE, CROP_SIZE), dtype=torch.uint8)
    digest = hashlib.sha256()
    for k, i in enumerate(rows):
        label, relative = table.labels[i], table.paths[i]
        file = (root / str(relative)).resolve()
        if not relative or root not in file.parents:
            raise ValueError(f"{table.source}: row {i} names the crop {relative!r}, which is not "
                             f"a file inside {folder}")
        array = load_rgb(file)
        if array.shape != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"{file} is {array.shape[1]}x{array.shape[0]} px; the crops of a "
                             f"dataset are {CROP_SIZE}x{CROP_SIZE} (ArcFace template)")
        images[k] = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        digest.update(f"{int(label)} {relative} {file.stat().st_size}\n".encode())
        if progress is not None and (k + 1) % 256 == 0:
            progress(k + 1, len(rows))
    if progress is not None:
        progress(len(rows), len(rows))
    return images, digest.hexdigest()


def load_training_set(path: str | Path,
                      progress: Callable[[int, int], None] | None = None) -> TrainingSet:
    """Read the crops of the dataset folder ``path`` (``progress(done, total)`` as they load).

    ValueError (one line, naming the file) for a missing folder or metadata, a crop that cannot
    be read or is not 112x112, fewer than two classes with a crop, or no crop at all."""
    from facelatent.datasets.quality import read_dataset

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"--dataset {folder}: no such folder; pass a folder written by "
                         "`facelatent dataset build`")
    try:
        table = read_dataset(folder, models=())
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    if len(table.labels) == 0:
        raise ValueError(f"{folder} holds no crop ({len(table.row_labels)} rows, no face found "
                         "in any); nothing to train on")
    classes = np.unique(table.labels)
    if len(classes) < 2:
        raise ValueError(f"{folder} has crops of one class only ({int(classes[0])}); a "
                         "recogniser learns to tell classes apart: build more identities")
    images, digest = read_crops(table, progress=progress)
    labels = torch.from_numpy(np.searchsorted(classes, table.labels)).long()
    return TrainingSet(folder, images, labels, tuple(int(c) for c in classes),
                       skipped=len(table.row_labels) - len(table.labels),
                       digest=digest)


def augment(images: Tensor, settings: Augmentation, generator: torch.Generator) -> Tensor:
    """Random flip, resized crop and colour jitter of a batch, one draw per image.

    ``images``: ``[B, 3, H, W]`` uint8 (on any device). Returns float RGB in [-1, 1] of the
    same size, on the same device. The draws come from ``generator`` (a CPU generator), so a
    batch is a function of its generator's seed alone, on any device.
    """
    b = images.shape[0]
    a = settings

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(b, generator=generator)

    flip = torch.rand(b, generator=generator) < a.flip
    side = torch.sqrt(uniform(a.min_scale ** 2, 1.0))      # uniform in area, as usual
    aspect = torch.exp(uniform(-math.log1p(a.aspect), math.log1p(a.aspect)))
    sx, sy = side * aspect.sqrt(), side / aspect.sqrt()
    # The crop may move as far as its margin and max_shift allow (normalised units: side 2).
    tx = uniform(-1, 1) * ((1 - sx).clamp_min(0) + 2 * a.max_shift)
    ty = uniform(-1, 1) * ((1 - sy).clamp_min(0) + 2 * a.max_shift)
    bright = uniform(1 - a.brightness, 1 + a.brightness)
    contrast = uniform(1 - a.contrast, 1 + a.contrast)
    saturation = uniform(1 - a.saturation, 1 + a.saturation)

    device = images.device
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -sx, sx)
    theta[:, 1, 1] = sy
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    x = images.float() / 255.0
    grid = F.affine_grid(theta.to(device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def per_image(v: Tensor) -> Tensor:
        return v.to(device)[:, None, None, None]

    x = x * per_image(bright)
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    x = (x - grey.mean((2, 3), keepdim=True)) * per_image(contrast) + grey.mean((2, 3),
                                                                                 keepdim=True)
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    x = grey + (x - grey) * per_image(saturation)
    return x.clamp(0, 1) * 2 - 1
