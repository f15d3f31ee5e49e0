"""Seeds to latents to images: the first stage of every pipeline.

`latents_for_seeds` maps seeds to z and w; `generate_to_dir` writes images, a grid and
``latents.npz`` (a ``facelatent.latents`` file, see `facelatent.io`), which `load_latents`
reads back with every key and shape checked. Seed lists are parsed by
`facelatent.ranges.parse_seeds`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facelatent.errors import FacelatentError, FileFormatError
from facelatent.generators.base import Generator, z_from_seeds
from facelatent.images import grid, resize, save_png, to_uint8
from facelatent.io import load_npz, save_npz
from facelatent.ranges import SEED_LIMIT

__all__ = ["GENERATE_MAX_SEEDS", "LATENTS_FORMAT", "GenerateResult", "Latents",
           "check_generate_options", "check_truncation_psi", "generate_to_dir",
           "latents_for_seeds", "load_latents"]

LATENTS_FORMAT = "facelatent.latents"
LATENTS_VERSION = 1
MAX_ABS_PSI = 2.0          # |psi| above this leaves the region the generator was trained on
MIN_SIZE, MAX_SIZE = 16, 4096
MAX_BATCH = 512
GENERATE_MAX_SEEDS = 10_000  # one PNG each (1.5 MB at 1024): larger sets belong in a store
GRID_MAX = 100             # faces on grid.png: the first 100 seeds, 10 x 10


def check_truncation_psi(psi: float, option: str = "truncation_psi") -> float:
    """``psi`` as a float if it is finite and within [-2, 2], else a ValueError naming ``option``.

    1 means no truncation, 0 gives the average face (`w_avg`), 0.5-0.8 trade variety for
    quality; negative values mirror a face through the average. Beyond +-2 a generator gives
    noise or black images, so such values are refused rather than rendered.
    """
    if isinstance(psi, bool) or not isinstance(psi, (int, float, np.integer, np.floating)):
        raise ValueError(f"{option} must be a number, got {psi!r}")
    value = float(psi)
    if not math.isfinite(value) or abs(value) > MAX_ABS_PSI:
        raise ValueError(f"{option} must be a finite number from -{MAX_ABS_PSI:g} to "
                         f"{MAX_ABS_PSI:g} (1 = no truncation, 0.7 is typical), got {psi!r}")
    return value


def check_generate_options(truncation_psi: float = 1.0, size: int | None = None,
                           batch: int = 4, space: str = "w", *, psi_option: str = "truncation_psi",
                           size_option: str = "size", batch_option: str = "batch") -> None:
    """Validate `generate_to_dir`'s options before any model is loaded or file written.

    ``size``: None (the generator's resolution) or an integer from 16 to 4096 pixels.
    ``batch``: an integer from 1 to 512. ``space``: "z" or "w". Each failure is a ValueError
    that names the option (``*_option`` let the CLI say ``--psi`` instead of ``truncation_psi``).
    """
    check_truncation_psi(truncation_psi, psi_option)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                             or not MIN_SIZE <= size <= MAX_SIZE):
        raise ValueError(f"{size_option} must be an image side from {MIN_SIZE} to {MAX_SIZE} "
                         f"pixels (leave it out for the generator's own size), got {size!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"{batch_option} must be a number of images from 1 to {MAX_BATCH}, "
                         f"got {batch!r}")
    if space not in ("z", "w"):
        raise ValueError(f"space must be 'z' or 'w', got {space!r}")


def latents_for_seeds(G: Generator, seeds: list[int], truncation_psi: float = 1.0,
                      space: str = "w") -> tuple[torch.Tensor, torch.Tensor]:
    """z `[N, z_dim]` and w `[N, w_dim]` for seeds.

    `space` says where truncation acts: "w" pulls w toward `w_avg` (StyleGAN's truncation),
    "z" scales z by psi (truncation in Z, as for generators without a W space).
    """
    if space not in ("z", "w"):
        raise ValueError(f"space must be 'z' or 'w', got {space!r}")
    z = z_from_seeds(seeds, G.z_dim)
    with torch.no_grad():
        if space == "w":
            w = G.mapping(z, truncation_psi=truncation_psi)
        else:
            z = z * float(truncation_psi)
            w = G.mapping(z)
    return z, w.cpu()


@dataclass
class GenerateResult:
    images: list[Path]
    grid: Path
    latents: Path


def _check_finite(values: torch.Tensor, what: str, seeds: list[int], G: Generator) -> None:
    """FacelatentError naming the first seed whose ``values`` hold NaN or infinity."""
    bad = ~torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
    if bool(bad.any()):
        seed = seeds[int(bad.nonzero()[0, 0])]
        raise FacelatentError(
            f"generator {getattr(G, 'name', '?')!r} produced NaN or infinite {what} for seed "
            f"{seed}: nothing was written for it; check w_avg with `facelatent weights verify`, "
            "or try another --device or --backend")


def generate_to_dir(G: Generator, seeds: list[int], out: str | os.PathLike[str],
                    truncation_psi: float = 1.0, size: int | None = None, space: str = "w",
                    batch: int = 4, progress: Callable[[int], None] | None = None
                    ) -> GenerateResult:
    """Write `seed%04d.png` per seed, `grid.png` and `latents.npz` (seeds, z, w, psi) to `out`.

    ``seeds``: 1 to 10,000 seeds in [0, 2**32). ``size`` resizes the images (default: the
    generator's resolution; else 16 to 4096). ``batch``: images per synthesis call, 1 to 512.
    The options are checked (`check_generate_options`) before anything is written. The grid
    shows the first 100 faces at most, 256 pixels each. ``latents.npz`` is read back by
    `load_latents`. Non-finite latents or images (a broken ``w_avg``, an unstable device) raise
    a FacelatentError naming the seed instead of writing a black image. ``progress(n)`` is
    called after each batch with the number of images it made.
    """
    check_generate_options(truncation_psi, size, batch, space)
    if not 1 <= len(seeds) <= GENERATE_MAX_SEEDS:
        raise ValueError(f"seeds: {len(seeds):,} given; generate_to_dir writes 1 to "
                         f"{GENERATE_MAX_SEEDS:,} images at a time (use `facelatent sample` "
                         "for larger sets)")
    z, w = latents_for_seeds(G, seeds, truncation_psi, space)
    _check_finite(w, "latents (w)", seeds, G)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = size or G.resolution
    paths: list[Path] = []
    thumbs: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(seeds), batch):
            chunk = seeds[start:start + batch]
            images = G.synthesis(w[start:start + batch]).cpu()
            _check_finite(images, "pixels", chunk, G)
            for seed, img in zip(chunk, to_uint8(resize(images, size))):
                path = out / f"seed{seed:04d}.png"
                save_png(img, path)
                paths.append(path)
                if len(thumbs) < GRID_MAX:
                    thumbs.append(img if size <= 256 else to_uint8(resize(
                        torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1,
                        256))[0])
            if progress is not None:
                progress(len(chunk))
    grid_path = out / "grid.png"
    save_png(grid(np.stack(thumbs), pad=2), grid_path)
    latents_path = save_npz(out / "latents.npz", {
        "seeds": np.asarray(seeds, dtype=np.int64), "z": z.numpy(), "w": w.numpy(),
        "truncation_psi": np.float32(truncation_psi), "space": np.str_(space),
        "generator": np.str_(getattr(G, "name", ""))}, format=LATENTS_FORMAT,
        version=LATENTS_VERSION)
    return GenerateResult(paths, grid_path, latents_path)


# -- reading latents back -------------------------------------------------------------------------
@dataclass
class Latents:
    """The contents of a ``facelatent.latents`` file.

    ``seeds`` int64 ``[N]``; ``w`` float32 ``[N, w_dim]`` (W) or ``[N, num_ws, w_dim]`` (W+);
    ``z`` float32 ``[N, z_dim]`` or None (latents that never had a z, e.g. from inversion);
    ``truncation_psi``, ``space`` and ``generator`` as written, or None when absent.
    """

    seeds: np.ndarray
    w: np.ndarray
    z: np.ndarray | None = None
    truncation_psi: float | None = None
    space: str | None = None
    generator: str | None = None


_REQUIRED = ("seeds", "w")
_OPTIONAL = ("z", "truncation_psi", "space", "generator")


def load_latents(path: str | os.PathLike[str]) -> Latents:
    """Read ``latents.npz`` as written by `generate_to_dir`, every member checked.

    The file must carry the ``facelatent.latents`` header (version 1) and hold ``seeds``
    (integers in [0, 2**32), ``[N]``, N >= 1) and ``w`` (finite floats, ``[N, D]`` or
    ``[N, num_ws, D]``), optionally ``z`` (finite floats ``[N, D]``), ``truncation_psi``,
    ``space`` and ``generator`` (scalars), and nothing else. Any failure is one
    `FileFormatError` (a ValueError) that names the file, what was expected and what came.
    """
    path = Path(path)
    kind = "a latents file written by `facelatent generate`"
    data = load_npz(path, format=LATENTS_FORMAT, max_version=LATENTS_VERSION, kind=kind)

    def bad(message: str) -> FileFormatError:
        return FileFormatError(f"{path}: {message}; expected {kind} (write it again with "
                               "`facelatent generate`)")

    missing = [k for k in _REQUIRED if k not in data]
    extra = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or extra:
        what = f"no {', '.join(missing)}" if missing else f"unexpected members {extra}"
        raise bad(f"{what} (members: {sorted(data)})")
    seeds = data["seeds"]
    if seeds.ndim != 1 or seeds.dtype.kind not in "iu" or len(seeds) == 0:
        raise bad(f"'seeds' must be a non-empty 1-D integer array, got {seeds.dtype} "
                  f"{list(seeds.shape)}")
    if seeds.min() < 0 or seeds.max() >= SEED_LIMIT:
        raise bad(f"'seeds' must lie in [0, 2**32), got {int(seeds.min())} to {int(seeds.max())}")
    n = len(seeds)
    arrays: dict[str, np.ndarray] = {}
    for key, ndims in (("w", (2, 3)), ("z", (2,))):
        if key not in data:
            continue
        value = data[key]
        if value.dtype.kind != "f" or value.ndim not in ndims or value.shape[0] != n \
                or 0 in value.shape:
            shapes = " or ".join(f"[{n}{', D' * (d - 1)}]" for d in ndims)
            raise bad(f"{key!r} must be floats of shape {shapes} for {n} seeds, got "
                      f"{value.dtype} {list(value.shape)}")
        if not np.isfinite(value).all():
            raise bad(f"{key!r} holds NaN or infinite values")
        arrays[key] = value.astype(np.float32, copy=False)
    for key in ("truncation_psi", "space", "generator"):
        if key in data and data[key].ndim != 0:
            raise bad(f"{key!r} must be a single value, got shape {list(data[key].shape)}")
    psi = data.get("truncation_psi")
    if psi is not None and (psi.dtype.kind not in "fiu" or not np.isfinite(psi)):
        raise bad(f"'truncation_psi' must be a finite number, got {psi!r}")
    return Latents(seeds=seeds.astype(np.int64), w=arrays["w"], z=arrays.get("z"),
                   truncation_psi=None if psi is None else float(psi),
                   space=str(data["space"]) if "space" in data else None,
                   generator=str(data["generator"]) if "generator" in data else None)
