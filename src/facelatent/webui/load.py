"""Building the editor's one `EditorService` per process from `facelatent serve`'s options."""

from __future__ import annotations

import contextlib
from pathlib import Path

from facelatent.webui.service import EditorService


def load_service(*, boundaries: str | Path | None = None, store: str | Path | None = None,
                 mapping: str | Path | None = None, identities: str | Path | None = None,
                 sefa: int = 5, psi: float | None = None, invert_steps: int = 60,
                 preview_size: int = 256, device: str = "cpu") -> EditorService:
    """Load the generator, the face models, the sliders and the optional mapping and identity
    boundaries once (see `facelatent.webui.directions` for where the sliders come from). The
    generator and truncation are the boundaries' store's (`editing.generator_settings`), as
    `facelatent edit` takes them, unless ``psi`` is given."""
    from facelatent.editing.settings import generator_settings, load_edit_boundary
    from facelatent.faces.analysis import FaceAnalyzer
    from facelatent.generators import get_generator
    from facelatent.generators.base import resolve_device
    from facelatent.latents.sampling import check_truncation_psi
    from facelatent.webui import directions as dirs
    from facelatent.weights import cache_root

    if not 0 <= sefa <= 32:
        raise ValueError(f"--sefa must lie in 0..32, got {sefa}")
    if invert_steps < 1:
        raise ValueError(f"--invert-steps must be at least 1, got {invert_steps}")
    if not 16 <= preview_size <= 1024:
        raise ValueError(f"--preview must lie in 16..1024 px, got {preview_size}")
    if psi is not None:
        check_truncation_psi(psi, "--psi")
    files = (dirs.fit_store_boundaries(store, cache_root() / "webui") if store is not None
             else dirs.boundary_files(boundaries))
    first = load_edit_boundary(files[0])
    setup = generator_settings(first, None, psi)
    torch_device = resolve_device(device, "--device")
    generator = get_generator(setup["generator"], device=torch_device)
    analyzer = FaceAnalyzer(torch_device)
    sliders = dirs.attribute_directions(generator, files)
    sliders += dirs.sefa_directions(generator, sefa, setup["truncation_psi"],
                                    setup["truncation_space"])
    mapper = None
    if mapping is not None:
        from facelatent.mapping import Mapper

        mapper = Mapper.from_checkpoint(mapping, torch_device, analyzer=analyzer)
        mapper.check_generator(generator)
    ids = None
    if identities is not None:
        from facelatent.boundaries import IdentityBoundaries
        from facelatent.boundaries.identity import MissingSpreadError, ensure_sigma

        ids = IdentityBoundaries.load(identities)
        with contextlib.suppress(MissingSpreadError):   # then the page counts in raw units
            ids = ensure_sigma(ids)
        if ids.dim != (generator.w_dim if ids.space == "w" else generator.z_dim):
            raise ValueError(f"--identities {identities}: {ids.space}-space boundaries of "
                             f"dimension {ids.dim} do not fit {setup['generator']}")
    return EditorService(generator, analyzer, sliders, truncation_psi=setup["truncation_psi"],
                         truncation_space=setup["truncation_space"], preview_size=preview_size,
                         invert_steps=invert_steps, mapper=mapper, identities=ids)
