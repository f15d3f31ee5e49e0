"""Seeds to latents to images: the first stage of every pipeline."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facelatent.generators.base import Generator, z_from_seeds
from facelatent.images import grid, resize, save_png, to_uint8

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seeds(spec: str) -> list[int]:
    """'0-3,7,9-10' -> [0, 1, 2, 3, 7, 9, 10]; ranges are inclusive, order is kept."""
    seeds: list[int] = []
    for part in spec.split(","):
        match = _RANGE.match(part)
        if not match:
            raise ValueError(f"bad seed list {spec!r}: expected numbers and ranges like '0-3,7,9-10'")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"bad seed range {part.strip()!r}: the end is below the start")
        seeds.extend(range(lo, hi + 1))
    return seeds


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


def generate_to_dir(G: Generator, seeds: list[int], out: str | Path, truncation_psi: float = 1.0,
                    size: int | None = None, space: str = "w", batch: int = 4,
                    progress: Callable[[int], None] | None = None) -> GenerateResult:
    """Write `seed%04d.png` per seed, `grid.png` and `latents.npz` (seeds, z, w, psi) to `out`.

    `size` resizes the images (default: the generator's resolution); `progress(n)` is called
    after each batch with the number of images it made.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    z, w = latents_for_seeds(G, seeds, truncation_psi, space)
    size = size or G.resolution
    paths: list[Path] = []
    thumbs: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(seeds), batch):
            images = resize(G.synthesis(w[start:start + batch]).cpu(), size)
            for seed, img in zip(seeds[start:start + batch], to_uint8(images)):
                path = out / f"seed{seed:04d}.png"
                save_png(img, path)
                paths.append(path)
                thumbs.append(img if size <= 256 else to_uint8(resize(
                    torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1, 256))[0])
            if progress is not None:
                progress(min(batch, len(seeds) - start))
    grid_path = out / "grid.png"
    save_png(grid(np.stack(thumbs), pad=2), grid_path)
    latents_path = out / "latents.npz"
    np.savez(latents_path, seeds=np.asarray(seeds, dtype=np.int64), z=z.numpy(), w=w.numpy(),
             truncation_psi=np.float32(truncation_psi), space=np.str_(space),
             generator=np.str_(getattr(G, "name", "")))
    return GenerateResult(paths, grid_path, latents_path)
