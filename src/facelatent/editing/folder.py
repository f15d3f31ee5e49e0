"""Edits written to a folder: per face a labelled strip and a GIF (and, for a person's own
photo, the edit pasted back into it), a grid of every face and `edit.json`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from facelatent.boundaries.boundary import Boundary
from facelatent.editing.apply import (
    EDIT_FORMAT,
    EDIT_FORMAT_VERSION,
    Latents,
    as_latent_tensor,
    is_seeds,
    edit_images,
    resolve_sigma,
    strengths_array,
)
from facelatent.generators.base import Generator
from facelatent.images import resize, to_uint8
from facelatent.io import write_json
from facelatent.ranges import parse_layers

__all__ = ["edit_to_dir", "labelled_grid", "strength_label"]


def labelled_grid(tiles: np.ndarray, col_labels: Sequence[str], row_labels: Sequence[str] | None = None,
                  pad: int = 2) -> np.ndarray:
    """`[R, C, H, W, 3]` uint8 tiles -> one `[H', W', 3]` uint8 image with a header row of
    `col_labels` and, when given, a left column of `row_labels`."""
    from PIL import Image, ImageDraw, ImageFont

    R, C, H, W, _ = tiles.shape
    font = ImageFont.load_default(size=max(10, min(18, W // 7)))
    head = int(font.size * 1.6) + pad
    left = 0 if row_labels is None else max(int(font.getlength(s)) for s in row_labels) + 4 * pad
    canvas = Image.new("RGB", (left + C * (W + pad), head + R * (H + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(col_labels):
        draw.text((left + c * (W + pad) + W // 2, head // 2), text, fill="black", font=font, anchor="mm")
    for r in range(R):
        if row_labels is not None:
            draw.text((2 * pad, head + r * (H + pad) + H // 2), row_labels[r], fill="black",
                      font=font, anchor="lm")
        for c in range(C):
            canvas.paste(Image.fromarray(tiles[r, c]), (left + c * (W + pad), head + r * (H + pad)))
    return np.asarray(canvas)


def strength_label(s: float, unit: str) -> str:
    """A column header: "+1.5 sd" (sigma units; ASCII, which every font has), "-3" (raw), "0"."""
    return f"{s:+.3g}{' sd' if unit == 'sigma' else ''}" if s else "0"


def edit_to_dir(generator: Generator, faces: Sequence[int] | Latents, boundary: Boundary,
                strengths: float | Sequence[float] | np.ndarray, out: str | Path, *,
                names: Sequence[str] | None = None,
                photos: Sequence[tuple[Tensor, Any] | None] | None = None, feather: float = 0.25,
                truncation_psi: float = 1.0, truncation_space: str = "w", size: int = 256,
                batch: int = 4, frame_ms: int = 200, progress: Callable[[int], None] | None = None,
                info: dict[str, Any] | None = None, **edit: Any) -> dict[str, Any]:
    """Write the edits of `faces` (seeds, or latents `[N, D]` / `[N, num_ws, D]`) to `out`:
    per face `NAME.png` (strengths left to right) and `NAME.gif` (the strengths there and
    back), `grid.png` (faces x strengths) and `edit.json` (what was done; format
    "facelatent.edit", written atomically). `names`: the NAMEs (default `seed%04d` for seeds,
    `face%03d` for latents). `photos`: per face, `(photo [3, H, W], FFHQTransform)` or None;
    a face with a photo is also pasted back into it (`facelatent.faces.photo_align.paste_back`,
    soft edge `feather`) as `NAME_photo.png` and `NAME_photo.gif`. `**edit`: `edit_latents`
    keywords. Returns the summary written to edit.json (with every file's path)."""
    from PIL import Image

    s = strengths_array(strengths)
    for name, value in (("size", size), ("batch", batch), ("frame_ms", frame_ms)):
        if int(value) < 1:
            raise ValueError(f"{name} (--{name.replace('_', '-')}) must be at least 1, got {value}")
    seeds = [int(v) for v in faces] if is_seeds(faces) else None   # type: ignore[union-attr]
    starts = seeds if seeds is not None else as_latent_tensor(faces)       # type: ignore[arg-type]
    count = len(starts)
    names = list(names) if names is not None else (
        [f"seed{v:04d}" for v in seeds] if seeds is not None else [f"face{i:03d}" for i in range(count)])
    photos = list(photos) if photos is not None else [None] * count
    if len(names) != count or len(photos) != count:
        raise ValueError(f"names and photos need one entry per face ({count}), got "
                         f"{len(names)} and {len(photos)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unit = edit.get("unit", "sigma")
    sigma = resolve_sigma(boundary, edit.get("sigma")) if unit == "sigma" else None
    # One face at a time (memory stays bounded); a face to paste into its photo is rendered at
    # the generator's full size, the others at the tile size.
    rows = []
    for i in range(count):
        rows.append(edit_images(generator, starts[i:i + 1], boundary, s,
                                truncation_psi=truncation_psi, truncation_space=truncation_space,
                                size=None if photos[i] is not None else size, batch=batch,
                                progress=progress, **edit)[0])          # [S, 3, H, W]
    tiles = np.stack([to_uint8(resize(row, size)) for row in rows])   # [N, S, size, size, 3]
    labels = [strength_label(v, unit) for v in s]
    files: dict[str, Any] = {"faces": {}}
    for i, (name, row) in enumerate(zip(names, tiles)):
        files["faces"][name] = _write_row(out / name, list(row), labels, frame_ms)
        if photos[i] is not None:
            from facelatent.faces.photo_align import paste_back

            photo, transform = photos[i]
            pasted = [to_uint8(paste_back(photo, face, transform, feather)[None])[0]
                      for face in rows[i]]
            files["faces"][name].update(
                {f"photo_{k}": v for k, v in
                 _write_row(out / f"{name}_photo", pasted, labels, frame_ms).items()})
    grid_path = out / "grid.png"
    rows = [f"seed {v}" for v in seeds] if seeds is not None else names
    Image.fromarray(labelled_grid(tiles, labels, rows)).save(grid_path)
    conditions = edit.get("conditions", ())
    summary = {
        "boundary": {"attribute": boundary.attribute, "space": boundary.space,
                     "intercept": boundary.intercept, "metrics": boundary.metrics},
        "conditions": [c.attribute for c in conditions], "strengths": s.tolist(), "unit": unit,
        "sigma": sigma, "mode": edit.get("mode", "relative"),
        "layers": parse_layers(edit.get("layers"), generator.num_ws, option="layers"),
        "generator": getattr(generator, "name", type(generator).__name__),
        "truncation_psi": truncation_psi, "truncation_space": truncation_space, "size": size,
        "seeds": seeds, "faces": names, "grid": str(grid_path), "files": files, **(info or {}),
    }
    write_json(out / "edit.json", summary, format=EDIT_FORMAT, version=EDIT_FORMAT_VERSION)
    return summary


def _write_row(stem: Path, row: list[np.ndarray], labels: list[str],
               frame_ms: int) -> dict[str, str]:
    """``STEM.png``: the images left to right, labelled; ``STEM.gif``: there and back."""
    from PIL import Image

    png, gif = stem.with_suffix(".png"), stem.with_suffix(".gif")
    Image.fromarray(labelled_grid(np.stack(row)[None], labels)).save(png)
    frames = [Image.fromarray(t) for t in [*row, *row[-2:0:-1]]]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return {"grid": str(png), "gif": str(gif)}
