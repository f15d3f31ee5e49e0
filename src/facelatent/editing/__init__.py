"""Editing faces along boundaries: relative or absolute, conditional, layer by layer.

    from facelatent.editing import edit_latents, edit_images
    w2 = edit_latents(w, smile, [-2, 0, 2])                          # [N, 3, 512], in sigma units
    ws = edit_latents(w, smile, [-2, 2], layers="0-7", num_ws=23)    # [N, 2, 23, 512]
    z2 = edit_latents(z, age_z, [1.5], mode="absolute", unit="raw")  # d(z') = 1.5 for every face
    faces = edit_images(G, range(8), smile, [-3, 0, 3], truncation_psi=0.7,
                        conditions=[gender])                         # [8, 3, 3, H, W]

See `facelatent.editing.apply` for the semantics, which are the same in Z, W and W+.
"""

from facelatent.editing.apply import (
    MODES,
    UNITS,
    base_latents,
    distance_spread,
    edit_direction,
    edit_images,
    edit_latents,
    edit_to_dir,
    labelled_grid,
    resolve_sigma,
    strengths_array,
    synthesize,
)

__all__ = ["MODES", "UNITS", "base_latents", "distance_spread", "edit_direction", "edit_images",
           "edit_latents", "edit_to_dir", "labelled_grid", "resolve_sigma", "strengths_array",
           "synthesize"]
