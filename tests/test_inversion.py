"""Tests of facelatent.inversion on the tiny random generator with random-weight face networks:
recovering faces the generator made, shapes, batching, determinism, files and bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.errors import FileFormatError
from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
from facelatent.generators import get_generator, z_from_seeds
from facelatent.inversion import (
    Inverter,
    LossWeights,
    load_inversion,
    mapping_prior,
    reconstruction_metrics,
    save_inversion,
)
from facelatent.inversion.losses import LatentPrior, LayerDeltaLoss
from facelatent.inversion.optimize import lr_factor
from facelatent.io import save_npz

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "mobilestylegan-tiny"


@pytest.fixture(scope="module")
def G():
    return get_generator(TINY)


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(loaders=random_face_loaders())


@pytest.fixture(scope="module")
def faces(G) -> tuple[torch.Tensor, torch.Tensor]:
    """Three faces the tiny generator made: (w [3, w_dim], images [3, 3, 64, 64])."""
    with torch.no_grad():
        w = G.mapping(z_from_seeds([1, 2, 3], G.z_dim), truncation_psi=0.8)
        return w, G.synthesis(w).clamp(-1, 1)


def test_a_generated_face_is_recovered_in_w(G, analyzer, faces) -> None:
    _, targets = faces
    inv = Inverter("w", 40, batch_size=3).fit(G, targets, analyzer)
    curve = inv.loss_curve_
    assert curve.shape == (3, 40)
    assert (curve[:, -1] < curve[:, 0] / 5).all()
    with torch.no_grad():
        start = G.synthesis(G.w_avg[None].expand(3, -1)).clamp(-1, 1)
    before = reconstruction_metrics(start, targets, analyzer, 64)
    assert (inv.metrics_["msssim"] > before["msssim"]).all()
    assert (inv.metrics_["psnr"] > before["psnr"] + 10).all()
    # The image is what the true w gives, far closer than the start's: the random tiny
    # generator maps many w to nearly one image, so w itself is checked on the real generator
    # (tests/test_inversion_real.py).
    error = (inv.result_.images - targets).abs().mean((1, 2, 3))
    assert (error < (start - targets).abs().mean((1, 2, 3)) / 5).all()


def test_wp_shapes_and_result_fields(G, analyzer, faces) -> None:
    _, targets = faces
    res = Inverter("wp", 3).fit(G, targets[:2], analyzer).result_
    assert res.latents.shape == (2, G.num_ws, G.w_dim)
    assert res.images.shape == targets[:2].shape and res.loss_curve.shape == (2, 3)
    assert set(res.metrics) == {"msssim", "psnr", "identity_sface", "identity_dlib"}
    assert res.settings["space"] == "wp" and res.settings["loss_size"] == 64
    one = res.face(1)
    assert len(one) == 1 and torch.equal(one.latents[0], res.latents[1])
    w = Inverter("w", 2).fit(G, targets[:1], analyzer).latents_
    assert w.shape == (1, G.w_dim)


@pytest.mark.parametrize("space", ["w", "wp"])
def test_batched_equals_one_by_one_and_runs_repeat(G, analyzer, faces, space) -> None:
    _, targets = faces
    together = Inverter(space, 6, batch_size=3).fit(G, targets, analyzer)
    alone = Inverter(space, 6, batch_size=1).fit(G, targets, analyzer)
    torch.testing.assert_close(together.latents_, alone.latents_, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(together.loss_curve_, alone.loss_curve_, atol=1e-4, rtol=1e-3)
    again = Inverter(space, 6, batch_size=3).fit(G, targets, analyzer)
    assert torch.equal(again.latents_, together.latents_)


def test_progress_reports_every_step_of_every_batch(G, analyzer, faces) -> None:
    seen: list[tuple[int, int, int]] = []
    Inverter("w", 4, batch_size=2).fit(G, faces[1], analyzer,
                                       progress=lambda s, t, loss: seen.append((s, t, len(loss))))
    assert seen == [(1, 8, 2), (2, 8, 2), (3, 8, 2), (4, 8, 2),
                    (5, 8, 1), (6, 8, 1), (7, 8, 1), (8, 8, 1)]


def test_encoder_init_starts_where_the_encoder_says(G, analyzer, faces) -> None:
    w, targets = faces
    guided = Inverter("wp", 2, init="encoder", encoder=lambda t: w,
                      batch_size=3).fit(G, targets, analyzer)
    plain = Inverter("wp", 2, batch_size=3).fit(G, targets, analyzer)
    assert (guided.loss_curve_[:, 0] < plain.loss_curve_[:, 0]).all()
    with pytest.raises(ValueError, match="Mapper.encode"):
        Inverter("w", 2, init="encoder").fit(G, targets, analyzer)
    with pytest.raises(ValueError, match=r"encoder must return w \[N, 32\].*N = 3 targets, got \[1, 32\]"):
        Inverter("w", 2, init="encoder", encoder=lambda t: w[:1],
                 batch_size=3).fit(G, targets, analyzer)


def test_prior_and_layer_delta_scales(G) -> None:
    prior = mapping_prior(G)
    assert mapping_prior(G) is prior                     # fitted once per generator
    with torch.no_grad():
        w = G.mapping(torch.randn(4000, G.z_dim, generator=torch.Generator().manual_seed(9)))
    assert LatentPrior(prior)(w).mean().item() == pytest.approx(1.0, abs=0.1)
    assert LatentPrior(prior)(G.w_avg[None]).item() < 0.5
    delta = LayerDeltaLoss(prior)
    assert delta(w[:3, None].expand(-1, G.num_ws, -1)).abs().max().item() < 1e-10
    assert (delta(w[:G.num_ws * 3].view(3, G.num_ws, -1)) > 0.5).all()


def test_learning_rate_ramps_up_and_down() -> None:
    factors = [lr_factor(s, 100) for s in range(100)]
    assert factors[0] < 0.2 and factors[-1] < 0.01 and max(factors) == 1.0
    assert factors[40] == 1.0


def test_save_and_load_round_trip(G, analyzer, faces, tmp_path: Path) -> None:
    res = Inverter("wp", 3).fit(G, faces[1][:2], analyzer).result_
    paths = save_inversion(res, tmp_path / "a", 1, source="photos/x.jpg", face_index=2,
                           transform={"kind": "ffhq_quad", "quad": [[0, 0], [0, 9], [9, 9],
                                                                    [9, 0]]})
    assert {p.name for p in paths.values()} == {"aligned.png", "reconstruction.png",
                                                 "side_by_side.png", "latents.npz"}
    face = load_inversion(tmp_path / "a")             # the folder or the file
    assert face.space == "wp" and face.latent.shape == (G.num_ws, G.w_dim)
    np.testing.assert_array_equal(face.latent, res.latents[1].numpy())
    np.testing.assert_array_equal(face.loss_curve, res.loss_curve[1])
    assert face.metrics["psnr"] == pytest.approx(float(res.metrics["psnr"][1]))
    assert face.source == "photos/x.jpg" and face.face_index == 2
    assert face.transform["quad"][2] == [9, 9] and face.settings["steps"] == 3
    save_inversion(res, tmp_path / "b", 0, transform=np.eye(3))
    b = load_inversion(tmp_path / "b" / "latents.npz")
    np.testing.assert_array_equal(b.transform, np.eye(3))
    assert b.source is None and b.face_index is None


def test_damaged_or_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    def message(path: Path) -> str:
        with pytest.raises((FileFormatError, FileNotFoundError)) as info:
            load_inversion(path)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "no such file" in message(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    assert "not an .npz" in message(tmp_path / "text.npz")
    save_npz(tmp_path / "other.npz", {"normal": np.zeros(3)}, format="facelatent.boundary")
    assert "facelatent.inversion" in message(tmp_path / "other.npz")
    save_npz(tmp_path / "nolatent.npz", {"space": np.str_("wp")}, format="facelatent.inversion")
    assert "no 'wp' member" in message(tmp_path / "nolatent.npz")
    save_npz(tmp_path / "shape.npz", {"space": np.str_("w"), "w": np.zeros((2, 3, 4))},
             format="facelatent.inversion")
    assert "expected [w_dim]" in message(tmp_path / "shape.npz")


@pytest.mark.parametrize(("bad", "expect"), [
    (lambda t: t[0], "add a batch axis"),
    (lambda t: t[:, :, :, :40], "square"),
    (lambda t: t.permute(0, 2, 3, 1), "channels-last"),
    (lambda t: t * float("nan"), "NaN"),
    (lambda t: (t + 1) * 127.5, "0-255"),
    (lambda t: ((t + 1) * 127.5).to(torch.uint8), "float tensor"),
    (lambda t: t[:, :, :16, :16], "at least 33x33"),
    (lambda t: t[:0], "empty batch"),
    (lambda t: t.numpy(), "torch.Tensor"),
])
def test_bad_targets_are_one_line_value_errors(G, analyzer, faces, bad, expect) -> None:
    with pytest.raises(ValueError, match=expect) as info:
        Inverter("w", 1).fit(G, bad(faces[1]), analyzer)
    assert "\n" not in str(info.value) and "targets" in str(info.value)


@pytest.mark.parametrize(("settings", "expect"), [
    ({"space": "z"}, "space must be 'w' or 'wp'"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"init": "random"}, "init must be 'mean' or 'encoder'"),
    ({"lr": -1.0}, "lr must be a positive number"),
    ({"loss_size": 8}, "loss_size must be at least 33"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"weights": LossWeights(0, 0, 0, 0, 0, 0)}, "not all 0"),
    ({"weights": LossWeights(pixel=float("nan"))}, "finite"),
])
def test_bad_settings_are_one_line_value_errors(G, analyzer, faces, settings, expect) -> None:
    args = {"space": "w", "steps": 1, **settings}
    with pytest.raises(ValueError, match=expect) as info:
        Inverter(**args).fit(G, faces[1], analyzer)
    assert "\n" not in str(info.value)
