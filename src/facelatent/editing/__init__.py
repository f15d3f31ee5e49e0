"""Editing faces along boundaries: relative or absolute, conditional, layer by layer.

    from facelatent.editing import edit_latents, edit_images, load_edit_boundary, sigma_for
    w2 = edit_latents(w, smile, [-2, 0, 2])                          # [N, 3, 512], in sigma units
    ws = edit_latents(w, smile, [-2, 2], layers="0-7", num_ws=23)    # [N, 2, 23, 512]
    z2 = edit_latents(z, age_z, [1.5], mode="absolute", unit="raw")  # d(z') = 1.5 for every face
    faces = edit_images(G, range(8), smile, [-3, 0, 3], truncation_psi=0.7,
                        conditions=[gender])                         # [8, 3, 3, H, W]
    b = load_edit_boundary("smile_w.npz"); check_fits(b, G)          # a file for this generator
    sigma, source = sigma_for(b)                                     # the boundary's store's unit

See `facelatent.editing.apply` for the semantics, which are the same in Z, W and W+, and
`facelatent.editing.settings` for the defaults an edit takes from the boundary's store.
"""

from facelatent.editing.apply import (
    EDIT_FORMAT,
    MODES,
    UNITS,
    base_latents,
    distance_spread,
    edit_direction,
    edit_images,
    edit_latents,
    resolve_sigma,
    strengths_array,
    synthesize,
)
from facelatent.editing.folder import edit_to_dir, labelled_grid, strength_label
from facelatent.editing.start import EditStart, load_start
from facelatent.editing.settings import (
    DEFAULT_GENERATOR,
    check_fits,
    generator_settings,
    load_edit_boundary,
    sefa_layers,
    sigma_for,
    store_settings,
)

__all__ = ["DEFAULT_GENERATOR", "EDIT_FORMAT", "MODES", "UNITS", "EditStart", "base_latents",
           "check_fits", "distance_spread", "edit_direction", "edit_images", "edit_latents",
           "edit_to_dir", "generator_settings", "labelled_grid", "load_edit_boundary",
           "load_start", "resolve_sigma", "sefa_layers", "sigma_for", "store_settings",
           "strength_label", "strengths_array", "synthesize"]
