"""Tests of facelatent.editing (edit_latents, edit_images, edit_to_dir) and `facelatent edit`.

All on random boundaries and the tiny random generator (64 px, z and w of 32, 11 style inputs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facelatent.boundaries import Boundary, sefa
from facelatent.cli import main
from facelatent.editing import distance_spread, edit_images, edit_latents
from facelatent.generators import get_generator, z_from_seeds

TINY = "mobilestylegan-tiny"
D = 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G():
    return get_generator(TINY)


def boundary(seed: int = 0, space: str = "w", intercept: float = 0.4, sigma: float | None = 0.7,
             attribute: str = "smile", shape: tuple[int, ...] = (D,)) -> Boundary:
    rng = np.random.default_rng(seed)
    metrics = {} if sigma is None else {"sigma": sigma}
    return Boundary.from_direction(rng.normal(size=shape), intercept, space=space,
                                   attribute=attribute, metrics=metrics)


def latents(n: int = 5, seed: int = 1, shape: tuple[int, ...] = (D,)) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32))


def dist(b: Boundary, x: torch.Tensor) -> np.ndarray:
    return b.distance(x.double().numpy())


# -- the semantics ----------------------------------------------------------------------------
def test_relative_edit_moves_the_signed_distance_by_strength_times_sigma() -> None:
    b, w = boundary(sigma=0.7), latents()
    s = [-2.0, 0.0, 1.5]
    out = edit_latents(w, b, s)
    assert out.shape == (5, 3, D) and out.dtype == torch.float32
    for j, strength in enumerate(s):
        np.testing.assert_allclose(dist(b, out[:, j]) - dist(b, w), strength * 0.7, atol=1e-5)
    np.testing.assert_array_equal(out[:, 1], w)                       # strength 0 is the face
    raw = edit_latents(w, b, s, unit="raw")
    np.testing.assert_allclose(dist(b, raw[:, 0]) - dist(b, w), -2.0, atol=1e-5)
    given = edit_latents(w, b, s, sigma=2.5)                          # an explicit sigma wins
    np.testing.assert_allclose(dist(b, given[:, 2]) - dist(b, w), 1.5 * 2.5, atol=1e-5)
    # The move is along the normal only: nothing orthogonal to it changes.
    offset = (raw[:, 2] - w).double().numpy()
    np.testing.assert_allclose(offset, 1.5 * np.tile(b.normal, (5, 1)), atol=1e-5)


def test_absolute_edit_lands_every_face_on_the_requested_distance() -> None:
    b, w = boundary(sigma=0.7), latents() * 3
    out = edit_latents(w, b, [-1.0, 0.0, 2.0], mode="absolute")
    for j, target in enumerate([-0.7, 0.0, 1.4]):
        np.testing.assert_allclose(dist(b, out[:, j]), target, atol=1e-5)
    # With conditions the path leaves the normal, but still lands on the distance.
    conds = [boundary(2, attribute="gender"), boundary(3, attribute="age")]
    out = edit_latents(w, b, [1.0], mode="absolute", unit="raw", conditions=conds)
    np.testing.assert_allclose(dist(b, out[:, 0]), 1.0, atol=1e-5)
    z_b = boundary(4, space="z")
    z_out = edit_latents(latents(), z_b, [0.5], mode="absolute", unit="raw")
    np.testing.assert_allclose(dist(z_b, z_out[:, 0]), 0.5, atol=1e-5)


def test_conditional_edit_has_no_component_along_the_conditions() -> None:
    b, w = boundary(), latents()
    conds = [boundary(2, attribute="gender"), boundary(3, attribute="age")]
    out = edit_latents(w, b, [-3.0, 3.0], conditions=conds, unit="raw")
    offset = (out - w[:, None]).double().numpy()                      # [N, S, D]
    for c in conds:
        np.testing.assert_allclose(offset @ c.normal.astype(np.float64), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(offset, axis=-1), 3.0, atol=1e-5)  # unit direction
    assert (offset[:, 1] @ b.normal > 0).all() and (offset[:, 0] @ b.normal < 0).all()
    # The same offset for every face (relative mode), and the plain edit is different.
    np.testing.assert_allclose(offset[0], offset[3], atol=1e-5)
    plain = (edit_latents(w, b, [3.0], unit="raw") - w[:, None]).double().numpy()
    assert np.abs(plain[:, 0] @ conds[0].normal).min() > 1e-3


def test_layers_change_only_the_chosen_style_inputs() -> None:
    b, w = boundary(sigma=0.5), latents()
    out = edit_latents(w, b, [-2.0, 1.0], layers="2-4", num_ws=11)
    assert out.shape == (5, 2, 11, D)
    chosen = [2, 3, 4]
    others = [i for i in range(11) if i not in chosen]
    np.testing.assert_array_equal(out[:, :, others], w[:, None, None].expand(-1, 2, len(others), -1))
    for j, s in enumerate([-2.0, 1.0]):
        for layer in chosen:
            np.testing.assert_allclose(dist(b, out[:, j, layer]) - dist(b, w), s * 0.5, atol=1e-5)
    # W+ input, a list of layers, absolute: each chosen style input lands on the distance.
    wp = latents(shape=(11, D)) * 2
    out = edit_latents(wp, b, [1.0], layers=[0, 10], mode="absolute", unit="raw")
    assert out.shape == (5, 1, 11, D)
    for layer in (0, 10):
        np.testing.assert_allclose(dist(b, out[:, 0, layer]), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out[:, 0, 1:10], wp[:, 1:10])
    # num_ws alone: W+ with every style input moved.
    assert edit_latents(w, b, [1.0], num_ws=11).shape == (5, 1, 11, D)


def test_a_layerwise_boundary_moves_row_l_of_layer_l() -> None:
    b = boundary(5, space="wp", shape=(11, D), sigma=None)
    w = latents()
    out = edit_latents(w, b, [2.0], layers="0-3", unit="raw")
    assert out.shape == (5, 1, 11, D)
    offset = (out[:, 0] - w[:, None]).double().numpy()                # [N, 11, D]
    np.testing.assert_allclose(offset[:, :4], 2.0 * np.broadcast_to(b.normal[:4], (5, 4, D)), atol=1e-5)
    np.testing.assert_array_equal(offset[:, 4:], 0.0)
    full = edit_latents(w, b, [2.0], unit="raw")                      # every row: d moves by 2
    wide = w[:, None].expand(-1, 11, -1)
    np.testing.assert_allclose(dist(b, full[:, 0]) - dist(b, wide), 2.0, atol=1e-5)
    absolute = edit_latents(w, b, [-0.5], layers="0-3", mode="absolute", unit="raw")
    np.testing.assert_allclose(dist(b, absolute[:, 0]), -0.5, atol=1e-5)


def test_strengths_give_the_documented_shapes() -> None:
    b, w = boundary(), latents(3)
    assert edit_latents(w, b, 1.0).shape == (3, 1, D)
    assert edit_latents(w, b, np.linspace(-3, 3, 7)).shape == (3, 7, D)
    assert edit_latents(w, b, torch.tensor([0.0, 1.0])).shape == (3, 2, D)
    assert edit_latents(w.double(), b, [1.0]).dtype == torch.float64


def test_errors_name_the_problem_and_the_fix() -> None:
    b, w = boundary(), latents()
    no_intercept = Boundary(b.normal, 0.0, space="w", attribute="sefa_0", metrics={"sigma": 1.0},
                            provenance={"method": "sefa", "intercept_known": False})
    with pytest.raises(ValueError, match="absolute mode needs the boundary's intercept.*relative"):
        edit_latents(w, no_intercept, [1.0], mode="absolute")
    edit_latents(w, no_intercept, [1.0])                              # relative is fine
    with pytest.raises(ValueError, match=r"layers: layer 11 is out of range.*0-10"):
        edit_latents(w, b, [1.0], layers=[3, 11, 12], num_ws=11)
    with pytest.raises(ValueError, match="layer 11 is out of range"):
        edit_latents(w, b, [1.0], layers="0-11", num_ws=11)
    with pytest.raises(ValueError, match="layers need num_ws"):
        edit_latents(w, b, [1.0], layers="0-3")
    with pytest.raises(ValueError, match="Z-space boundary"):
        edit_latents(w, boundary(space="z"), [1.0], layers="0-3", num_ws=11)
    with pytest.raises(ValueError, match="dimension 16.*dimension 32.*another generator or latent space"):
        edit_latents(latents(shape=(16,)), b, [1.0])
    with pytest.raises(ValueError, match="'w'-space boundary, but the latents are 'z'"):
        edit_latents(w, b, [1.0], space="z")
    with pytest.raises(ValueError, match="unit='sigma' needs the spread.*unit='raw'"):
        edit_latents(w, boundary(sigma=None), [1.0])
    with pytest.raises(ValueError, match="condition 'age' is a 'z' boundary"):
        edit_latents(w, b, [1.0], conditions=[boundary(3, space="z", attribute="age")])
    with pytest.raises(ValueError, match="mode must be one of"):
        edit_latents(w, b, [1.0], mode="relatve")
    with pytest.raises(ValueError, match="strengths must be finite"):
        edit_latents(w, b, [float("nan")])
    with pytest.raises(ValueError, match="W\\+ latents .* cannot be edited in Z"):
        edit_latents(latents(shape=(11, D)), boundary(space="z"), [1.0])


def test_distance_spread_is_the_std_of_the_signed_distance() -> None:
    b, w = boundary(), latents(200)
    assert distance_spread(b, w) == pytest.approx(float(np.std(dist(b, w))), rel=1e-9)
    out = edit_latents(w, b, [1.0], sigma=distance_spread(b, w))
    assert float(np.mean(dist(b, out[:, 0]) - dist(b, w))) == pytest.approx(np.std(dist(b, w)), rel=1e-5)


# -- images -----------------------------------------------------------------------------------
def test_z_space_edit_changes_z_and_then_maps_it(G) -> None:
    b = boundary(6, space="z", sigma=None)
    images = edit_images(G, [3, 4], b, [-2.0, 2.0], unit="raw", truncation_psi=0.6, batch=3)
    assert images.shape == (2, 2, 3, 64, 64)
    z = z_from_seeds([3, 4], G.z_dim).double()
    z2 = (z + 2.0 * torch.from_numpy(b.normal.astype(np.float64))).float()
    with torch.no_grad():
        want = G.synthesis(G.mapping(z2, truncation_psi=0.6))
    torch.testing.assert_close(images[:, 1], want, atol=1e-5, rtol=1e-5)
    # A W boundary of the same normal moves w, not z: another image.
    w_b = Boundary(b.normal, 0.0, space="w", attribute="x")
    other = edit_images(G, [3, 4], w_b, [2.0], unit="raw", truncation_psi=0.6)
    assert (other[:, 0] - images[:, 1]).abs().max() > 1e-3


def test_edit_images_batches_and_layers(G) -> None:
    b = boundary(7, sigma=1.0)
    one = edit_images(G, range(3), b, [-4.0, 0.0, 4.0], layers="0-5", batch=1)
    many = edit_images(G, range(3), b, [-4.0, 0.0, 4.0], layers="0-5", batch=9)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        plain = G.synthesis(G.mapping(z_from_seeds(range(3), G.z_dim)))
    torch.testing.assert_close(one[:, 1], plain, atol=1e-5, rtol=1e-5)      # strength 0
    assert (one[:, 2] - plain).abs().max() > 1e-3       # (the tiny random net reacts weakly)
    with pytest.raises(ValueError, match="out of range"):
        edit_images(G, [0], b, [1.0], layers=[11])


# -- the command ------------------------------------------------------------------------------
def test_cli_edit_writes_grids_gifs_and_a_summary(tmp_path: Path, capsys) -> None:
    path = boundary(8, sigma=0.8).save(tmp_path / "smile_w.npz")
    cond = boundary(9, attribute="gender").save(tmp_path / "gender_w.npz")
    out = tmp_path / "edit"
    args = ["edit", "--model", TINY, "--seeds", "0-2", "--boundary", str(path), "--range", "-2",
            "2", "--steps", "3", "--size", "32", "--out", str(out), "--device", "cpu",
            "--condition", str(cond), "--layers", "0-7", "--psi", "0.7"]
    assert main(args) == 0
    assert "wrote 3 grids and GIFs" in capsys.readouterr().out
    for seed in range(3):
        grid = Image.open(out / f"seed{seed:04d}.png")
        assert grid.width >= 3 * 32 and grid.height > 32          # a strength header on top
        with Image.open(out / f"seed{seed:04d}.gif") as gif:
            assert gif.n_frames == 4                              # -2, 0, +2, 0 (there and back)
    combined = Image.open(out / "grid.png")
    assert combined.height > 3 * 32 and combined.width > 3 * 32
    info = json.loads((out / "edit.json").read_text())
    assert info["strengths"] == [-2.0, 0.0, 2.0] and info["sigma"] == pytest.approx(0.8)
    assert info["conditions"] == ["gender"] and info["layers"] == list(range(8))
    assert info["truncation_psi"] == 0.7 and info["sigma_source"] == "boundary metrics"


def test_cli_edit_reads_interfacegan_npy_and_sefa_files(tmp_path: Path, G, capsys) -> None:
    rng = np.random.default_rng(10)
    npy = tmp_path / "stylegan_ffhq_age_boundary.npy"     # no "w" token: InterFaceGAN means Z
    v = rng.normal(size=(1, D))
    np.save(npy, (v / np.linalg.norm(v)).astype(np.float32))
    base = ["edit", "--model", TINY, "--seeds", "1", "--steps", "2", "--size", "24", "--device", "cpu"]
    assert main([*base, "--boundary", str(npy), "--unit", "raw", "--out", str(tmp_path / "z")]) == 0
    assert json.loads((tmp_path / "z" / "edit.json").read_text())["boundary"]["space"] == "z"
    assert main([*base, "--boundary", str(npy), "--unit", "raw", "--space", "w", "--layers", "0-3",
                 "--out", str(tmp_path / "w")]) == 0
    assert json.loads((tmp_path / "w" / "edit.json").read_text())["boundary"]["space"] == "w"
    capsys.readouterr()
    # A .npy has no intercept and no sigma: absolute mode and the sigma unit are refused.
    assert main([*base, "--boundary", str(npy), "--unit", "raw", "--mode", "absolute",
                 "--out", str(tmp_path / "a")]) == 2
    assert "intercept" in capsys.readouterr().err
    assert main([*base, "--boundary", str(npy), "--out", str(tmp_path / "s")]) == 2
    assert "--unit raw" in capsys.readouterr().err
    direction = sefa(G, k=1)[0].save(tmp_path / "sefa_0.npz")
    assert main([*base, "--boundary", str(direction), "--unit", "raw", "--range", "-5", "5",
                 "--out", str(tmp_path / "sefa")]) == 0
    assert (tmp_path / "sefa" / "seed0001.gif").is_file()
    assert json.loads((tmp_path / "sefa" / "edit.json").read_text())["layers"] is None
    coarse = sefa(G, layers=range(4), k=1)[0].save(tmp_path / "coarse.npz")
    assert main([*base, "--boundary", str(coarse), "--unit", "raw", "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "edit.json").read_text())["layers"] == [0, 1, 2, 3]
