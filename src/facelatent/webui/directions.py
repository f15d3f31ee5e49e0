"""The editor's sliders: one direction per boundary, each moved in sigma units.

Where the attribute boundaries come from (the first that applies):

1. ``boundaries``: a folder of boundary files (``*.npz`` from `facelatent boundary fit`, or
   InterFaceGAN ``.npy`` files named with their space); W and W+ boundaries become sliders,
   Z boundaries are skipped (the editor edits w, which photos have and z they do not).
2. ``store``: pose, smile, age, gender and eyeglasses fitted on the first start from a
   `LatentStore` with `LinearBoundary`'s defaults, and kept in the cache for later starts.
3. Otherwise the five W boundaries shipped in this package (``webui/boundaries/``), loaded by
   name, so replacing the files replaces the sliders.

The SeFa directions of the generator (`facelatent.boundaries.SeFa`) come after them. A SeFa
direction records no spread, so its sigma is measured on mapped samples at the editor's
truncation, and its slider is that edit with ``--sigma`` on the command line.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelatent.boundaries.boundary import Boundary
from facelatent.editing.apply import distance_spread
from facelatent.editing.settings import (
    check_fits,
    load_edit_boundary,
    sefa_layers,
    sigma_for,
)
from facelatent.generators.base import Generator

__all__ = ["DEFAULT_BOUNDARIES", "PACKAGE_BOUNDARIES", "STORE_ATTRIBUTES", "Direction",
           "attribute_directions", "fit_store_boundaries", "sefa_directions"]

PACKAGE_BOUNDARIES = Path(__file__).resolve().parent / "boundaries"
DEFAULT_BOUNDARIES = ("pose", "smile", "age", "gender", "eyeglasses")   # files NAME_w.npz
# The score each default slider is fitted on, when fitted from a store (log-odds where the
# probability saturates on generated faces).
STORE_ATTRIBUTES = {"pose": "yaw", "smile": "smile_logit", "age": "age",
                    "gender": "gender_logit", "eyeglasses": "eyeglasses"}
SEFA_SAMPLES = 2000   # mapped seeds that measure a SeFa direction's sigma


@dataclass(frozen=True)
class Direction:
    """One slider: a boundary and the latent length of one unit of the slider.

    ``key``: the slider's name ("smile", "sefa_0"). ``sigma``: latent units per slider unit.
    ``layers``: the style inputs the direction edits when the user picks none (a SeFa
    direction's own, else None: all). ``file``: where the boundary was read (None: computed).
    """

    key: str
    boundary: Boundary
    sigma: float
    sigma_source: str
    layers: list[int] | None = None
    file: Path | None = None

    @property
    def is_sefa(self) -> bool:
        return self.boundary.provenance.get("method") == "sefa"


def _key(path: Path) -> str:
    """Slider name of a boundary file: its stem without the space suffix ("smile_w" -> "smile")."""
    stem = path.name.split(".")[0]
    for suffix in ("_wp", "_w"):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[:-len(suffix)]
    return stem


def attribute_directions(generator: Generator, files: Sequence[Path]) -> list[Direction]:
    """A `Direction` per boundary file in ``files`` that fits ``generator`` (W or W+ only).

    A Z boundary is skipped with a note on stderr; a boundary that belongs to another generator
    or has no sigma is a ValueError naming its file (via `check_fits` and `sigma_for`)."""
    out: list[Direction] = []
    for path in files:
        b = load_edit_boundary(path)
        if b.space == "z":
            print(f"facelatent serve: skipping {path}: a Z-space boundary; the editor edits w "
                  "(fit it with --space w)", file=sys.stderr)
            continue
        check_fits(b, generator)
        sigma, source = sigma_for(b)
        layers = sefa_layers(b, generator.num_ws)
        out.append(Direction(_key(path), b, sigma, source, layers, path))
    keys = [d.key for d in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"two boundary files give the same slider name among {keys}; rename "
                         "one (a slider is named after its file, without _w)")
    return out


def boundary_files(folder: str | Path | None = None) -> list[Path]:
    """The boundary files of ``folder`` (sorted), or the package's five in their order."""
    if folder is None:
        return [PACKAGE_BOUNDARIES / f"{name}_w.npz" for name in DEFAULT_BOUNDARIES]
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"--boundaries {folder}: not a folder; give a folder of boundary files "
                         "(.npz from `facelatent boundary fit`)")
    files = sorted(p for p in path.iterdir() if p.suffix in (".npz", ".npy") and p.is_file())
    if not files:
        raise ValueError(f"--boundaries {folder} holds no .npz or .npy boundary files")
    return files


def fit_store_boundaries(store: str | Path, cache: Path) -> list[Path]:
    """The five default boundaries fitted in W on ``store``, written once under ``cache`` (a
    folder per store, keyed by its path and sample count) and read from there afterwards."""
    from facelatent.boundaries import LinearBoundary, read_fit_data
    from facelatent.boundaries.sources import open_store

    opened = open_store(store)
    key = f"{Path(store).resolve()}|{len(opened)}"
    folder = cache / hashlib.sha256(key.encode()).hexdigest()[:16]
    paths = [folder / f"{name}_w.npz" for name in DEFAULT_BOUNDARIES]
    if all(p.is_file() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in zip(DEFAULT_BOUNDARIES, paths):
        attribute = STORE_ATTRIBUTES[name]
        latents, scores, source = read_fit_data(store=store, space="w", attribute=attribute)
        print(f"facelatent serve: fitting {name} ({attribute}) on {len(latents)} samples of "
              f"{store}", file=sys.stderr, flush=True)
        est = LinearBoundary(random_state=0).fit(latents, scores)
        est.to_boundary(attribute, "w", {**source, "command": "facelatent serve --store"}).save(path)
    return paths


def sefa_directions(generator: Generator, k: int, truncation_psi: float,
                    truncation_space: str = "w") -> list[Direction]:
    """The top ``k`` SeFa directions over every style input, each with its sigma measured on
    :data:`SEFA_SAMPLES` seeds mapped at ``truncation_psi``."""
    from facelatent.boundaries import SeFa
    from facelatent.latents.sampling import latents_for_seeds

    if k <= 0:
        return []
    boundaries = SeFa(k=k).fit(generator).to_boundaries()
    _, w = latents_for_seeds(generator, list(range(SEFA_SAMPLES)), truncation_psi,
                             truncation_space)
    samples = np.asarray(w, dtype=np.float64)
    source = f"{SEFA_SAMPLES} mapped seeds at psi {truncation_psi:g}"
    return [Direction(b.attribute or f"sefa_{i}", b, distance_spread(b, samples), source,
                      sefa_layers(b, generator.num_ws))
            for i, b in enumerate(boundaries)]
