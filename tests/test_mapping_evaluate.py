"""`facelatent mapping evaluate` and its library on the tiny generator with random face
networks: the mechanics and the numbers that could be wrong (a perfect mapping scores
perfectly, style mixing at its ends gives its inputs, the walk closes a linear gap), never
the quality of a real mapping."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from facelatent.boundaries.boundary import Boundary
from facelatent.cli import mapping_evaluate as cli
from facelatent.faces import align, analysis
from facelatent.faces.detect import Detections
from facelatent.generators import get_generator
from facelatent.images import resize, save_png, to_uint8
from facelatent.inversion.files import FORMAT as INVERSION_FORMAT
from facelatent.io import read_json, save_npz
from facelatent.latents.sampling import latents_for_seeds
from facelatent.mapping import Checkpoint, Mapper, MapperConfig, build, save_checkpoint
from facelatent.mapping.baselines import (
    boundary_walk,
    choose_crossover,
    crossover_candidates,
    estimate_slopes,
    plan_walk,
    style_mix,
)
from facelatent.mapping.evaluate import evaluate_mapping, write_mapping_evaluation
from facelatent.mapping.evaluate_inputs import cross_pairs
from facelatent.mapping.evaluate_metrics import expression_distance, landmark_error

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "mobilestylegan-tiny"
SIZE = 64


@pytest.fixture(scope="module")
def G():
    return get_generator(TINY)


@pytest.fixture(scope="module")
def analyzer():
    return analysis.FaceAnalyzer(loaders=analysis.random_face_loaders())


def tiny_checkpoint(path: Path, G) -> Path:
    torch.manual_seed(0)
    cfg = MapperConfig(w_dim=G.w_dim, num_ws=G.num_ws, attr_init="random", hidden=(64, 64))
    net, disc = build(cfg)
    generator = {"name": TINY, "w_dim": G.w_dim, "num_ws": G.num_ws, "truncation_psi": 0.7}
    data = {"seed_start": 0, "samples": 100}
    return save_checkpoint(path, Checkpoint(cfg, generator, net, disc, data=data))


def random_boundaries(G, names: tuple[str, ...] = ("yaw", "smile", "age")) -> list[Boundary]:
    rng = np.random.default_rng(0)
    return [Boundary.from_direction(rng.normal(size=G.w_dim), 0.0, space="w", attribute=n,
                                    metrics={"sigma": 1.0}) for n in names]


class OracleMapper:
    """A perfect mapping of attributes: the known w of the attribute face (found by nearest
    image among the faces it was told about), so a same-image pair reconstructs exactly."""

    def __init__(self, G, seeds: list[int], analyzer) -> None:
        _, self.w = latents_for_seeds(G, seeds, 0.7)
        with torch.no_grad():
            self.faces = resize(G.synthesis(self.w), SIZE).clamp(-1, 1)
        self.config = MapperConfig(w_dim=G.w_dim, num_ws=G.num_ws, attr_init="random")
        self.generator = {"name": TINY, "w_dim": G.w_dim, "num_ws": G.num_ws,
                          "truncation_psi": 0.7}
        self.analyzer = analyzer

    def check_generator(self, G) -> None:
        pass

    def swap(self, identity: Tensor, attributes: Tensor) -> Tensor:
        d = (attributes[:, None] - self.faces[None]).square().flatten(2).mean(2)
        return self.w[d.argmin(dim=1)]


# -- metrics -------------------------------------------------------------------------------------
def test_landmark_error_is_in_inter_ocular_distances() -> None:
    ref = np.zeros((2, 68, 2))
    ref[:, 36:42, 0], ref[:, 42:48, 0] = 10.0, 30.0           # eye centres 20 px apart
    assert landmark_error(ref, ref).tolist() == [0.0, 0.0]
    shifted = ref + np.array([6.0, 8.0])                       # 10 px everywhere
    np.testing.assert_allclose(landmark_error(shifted, ref), [0.5, 0.5])


def test_expression_distance_is_total_variation() -> None:
    p = np.array([[1.0, 0, 0], [0.5, 0.5, 0]])
    q = np.array([[0.0, 1, 0], [0.5, 0.5, 0]])
    np.testing.assert_allclose(expression_distance(p, q), [1.0, 0.0])


def test_cross_pairs_never_pair_a_face_with_itself_and_spread_a_limit() -> None:
    pairs = cross_pairs(4)
    assert len(pairs) == 12 and (pairs[:, 0] != pairs[:, 1]).all()
    assert len({tuple(p) for p in pairs}) == 12
    assert cross_pairs(4, 4).tolist() == [[0, 1], [1, 2], [2, 3], [3, 0]]
    with pytest.raises(ValueError, match="at least 2 faces"):
        cross_pairs(1)


# -- style mixing ----------------------------------------------------------------------------------
def test_style_mix_takes_the_first_k_inputs_from_the_attribute_face(G) -> None:
    _, w = latents_for_seeds(G, [1, 2], 0.7)
    a, b = w[:1], w[1:]
    L = G.num_ws
    mixed = style_mix(a, b, 3, L)
    assert mixed.shape == (1, L, G.w_dim)
    assert torch.equal(mixed[0, :3], b.expand(3, -1)) and torch.equal(mixed[0, 3:],
                                                                       a.expand(L - 3, -1))
    with torch.no_grad():
        assert torch.allclose(G.synthesis(style_mix(a, b, 0, L)), G.synthesis(a), atol=1e-5)
        assert torch.allclose(G.synthesis(style_mix(a, b, L, L)), G.synthesis(b), atol=1e-5)
    with pytest.raises(ValueError, match="crossover must be 0 to"):
        style_mix(a, b, L + 1, L)


def test_crossover_candidates_and_rule() -> None:
    assert crossover_candidates(23) == tuple(range(2, 11))
    assert crossover_candidates(4) == (2, 3)
    sweep = {2: {"identity_cosine": 0.9, "landmark_error": 0.30},
             4: {"identity_cosine": 0.8, "landmark_error": 0.10},
             6: {"identity_cosine": 0.7, "landmark_error": 0.05}}
    assert choose_crossover(sweep, 0.12) == 4          # best identity at no worse landmarks
    assert choose_crossover(sweep, 0.50) == 2
    assert choose_crossover(sweep, 0.01) == 6          # none as close: the closest in pose


# -- boundary walk ---------------------------------------------------------------------------------
def linear_world(n: int = 5, dim: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(dim, 2, generator=g, dtype=torch.float64))[0].T
    slope = torch.tensor([2.0, 0.5], dtype=torch.float64)

    def score(w: Tensor) -> Tensor:
        x = w.double().mean(dim=1) if w.ndim == 3 else w.double()
        return (x @ directions.T) * slope + torch.tensor([1.0, -3.0], dtype=torch.float64)

    start = torch.randn(n, dim, generator=g, dtype=torch.float64)
    goal = start + torch.randn(n, 2, generator=g, dtype=torch.float64) @ directions
    return directions, slope, score, start, score(goal)


def test_walk_closes_the_gap_of_a_linear_scorer_from_a_wrong_slope() -> None:
    directions, _, score, start, targets = linear_world()
    res = boundary_walk(start, score(start), targets, directions, score,
                        slopes=torch.tensor([1.0, 1.0]), max_steps=torch.tensor([50.0, 50.0]),
                        iterations=3)
    assert float(res.gap_start.mean()) > 0.3
    assert float(res.gap_end.max()) < 1e-6               # the secant is exact on a line
    torch.testing.assert_close(score(res.latents), targets)


def test_walk_respects_the_cap_and_moves_every_w_plus_input() -> None:
    directions, _, score, start, targets = linear_world()
    wplus = start[:, None].expand(-1, 3, -1)
    cap = torch.tensor([0.1, 0.1])
    res = boundary_walk(wplus, score(wplus), targets, directions, score,
                        slopes=torch.tensor([2.0, 0.5]), max_steps=cap, iterations=2)
    assert res.latents.shape == wplus.shape
    assert float(res.steps.abs().max()) <= 0.1 + 1e-6
    assert (res.gap_end <= res.gap_start + 1e-9).all()
    assert torch.allclose(res.latents[:, 0], res.latents[:, 2])
    assert not torch.allclose(res.latents, wplus)


def test_walk_never_ends_worse_than_its_start() -> None:
    directions, _, score, start, targets = linear_world()

    def backwards(w: Tensor) -> Tensor:                 # every step moves the wrong way
        return 2 * score(start) - score(w)

    res = boundary_walk(start, score(start), targets, directions, backwards,
                        slopes=torch.tensor([1.0, 1.0]), max_steps=torch.tensor([5.0, 5.0]))
    torch.testing.assert_close(res.gap_end, res.gap_start)
    torch.testing.assert_close(res.latents, start)


def test_estimate_slopes_recovers_a_linear_slope() -> None:
    directions, slope, score, start, _ = linear_world(n=40)
    torch.testing.assert_close(estimate_slopes(start, score(start), directions), slope)


def test_plan_walks_pose_and_expression_and_holds_the_rest(G) -> None:
    given = random_boundaries(G, ("yaw", "smile", "age", "gender_logit"))
    plan = plan_walk(given)
    assert plan.scores == ["yaw", "smile_logit"] and plan.held == ["age", "gender_logit"]
    normals = np.stack([b.normal for b in given]).astype(np.float64)
    # a step along one walked direction leaves every other boundary's distance where it was
    moves = plan.directions @ normals.T                      # [walked, given]
    np.testing.assert_allclose(moves[:, 2:], 0, atol=1e-6)
    np.testing.assert_allclose([moves[0, 1], moves[1, 0]], 0, atol=1e-6)
    assert (np.diag(moves[:, :2]) > 0).all()
    np.testing.assert_allclose(np.linalg.norm(plan.directions, axis=1), 1)
    np.testing.assert_allclose(plan.sigmas, [1.0, 1.0])


# -- the evaluation --------------------------------------------------------------------------------
def test_a_perfect_mapping_scores_perfectly(G, analyzer) -> None:
    seeds = list(range(1_000_000, 1_000_006))
    ev = evaluate_mapping(OracleMapper(G, seeds, analyzer), G, analyzer, seeds=seeds,
                          crossover=[0, G.num_ws], size=SIZE, batch=4, keep=0)
    s = ev.sets["generated"]
    assert s.pairs.tolist() == [[0, 3], [1, 4], [2, 5]]
    mapping = s.metrics["mapping"]
    np.testing.assert_allclose(mapping["landmark_error"], 0, atol=1e-4)
    np.testing.assert_allclose(mapping["attribute_cosine"], 1, atol=1e-4)
    np.testing.assert_allclose(mapping["expression_distance"], 0, atol=1e-4)
    np.testing.assert_allclose(s.reconstruction["identity_cosine"], 1, atol=1e-4)
    np.testing.assert_allclose(s.reconstruction["msssim"], 1, atol=1e-4)
    # style mixing at its two ends is the identity face and the attribute face
    for k, ref in ((0, "identity_image"), (G.num_ws, "attribute_image")):
        for metric, values in s.sweep[k].items():
            np.testing.assert_allclose(values, s.metrics[ref][metric], atol=1e-4)
    np.testing.assert_allclose(s.metrics["identity_image"]["identity_cosine"], 1, atol=1e-6)
    assert "boundary walk: no pose or expression boundary" in " ".join(s.notes)


def test_evaluation_runs_every_method_and_writes_its_files(G, analyzer, tmp_path: Path) -> None:
    mapper = Mapper.from_checkpoint(tiny_checkpoint(tmp_path / "ck.npz", G), analyzer=analyzer)
    seen: list[tuple[int, int]] = []
    ev = evaluate_mapping(mapper, G, analyzer, pairs=3, boundaries=random_boundaries(G),
                          crossover=[2, 4], size=SIZE, keep=2, walk_iterations=2,
                          training={"seed_start": 999_999, "samples": 2},
                          progress=lambda d, t: seen.append((d, t)))
    s = ev.sets["generated"]
    assert set(s.metrics) == {"mapping", "style_mix", "boundary_walk", "identity_image",
                              "attribute_image", "average_face"}
    assert all(v.shape == (3,) for m in s.metrics.values() for v in m.values())
    assert s.crossover in (2, 4) and s.walk["scores"] == ["yaw", "smile_logit"]
    assert s.walk["held"] == ["age"]
    # 6 faces, the average face, 3 mappings, 6 reconstructions, 2 crossovers x 3, walk
    # (2 + 1) x 3
    assert seen[-1] == (31, 31) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "1 of the 6 seeds were in the training store" in s.notes[0]
    assert ev.identity_model == "dlib"

    paths = write_mapping_evaluation(ev, tmp_path / "out", info={"checkpoint": "ck.npz"})
    summary = read_json(paths["json"], format="facelatent.mapping-evaluation")
    gen = summary["sets"]["generated"]
    assert gen["pairs"] == 3 and gen["crossover"]["chosen"] == s.crossover
    assert set(gen["comparison"]) == {"style_mix", "boundary_walk"}
    assert 0 <= gen["methods"]["mapping"]["identity_cosine"]["fraction_same"] <= 1
    assert summary["checkpoint"] == "ck.npz"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "generated_crossover.png", "generated_pairs.png", "generated_reconstruction.png",
        "index.html", "summary.json"]
    assert "style mixing" in paths["html"].read_text()


class CentreFaceDetector(nn.Module):
    """Finds one face where FFHQ puts it in every image that is not all black."""

    def detect(self, images: list[Tensor], **_: object) -> list[Detections]:
        out = []
        for im in images:
            h, w = im.shape[-2:]
            if float(im.max()) <= -0.99:
                out.append(Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)))
                continue
            points = align.arcface5_from_landmarks68(align.generated_landmarks68(im[None]))
            out.append(Detections(torch.tensor([[0.2 * w, 0.2 * h, 0.8 * w, 0.9 * h]]),
                                  torch.tensor([0.9]), points))
        return out


class FixedLandmarks(nn.Module):
    """The FFHQ template's 68 points in every box: alignment becomes the identity."""

    def landmarks(self, images: Tensor, boxes: Tensor) -> Tensor:
        return align.generated_landmarks68(images.expand(len(boxes), -1, -1, -1))


def test_photos_get_the_mapping_and_inversions_the_baselines_too(G, tmp_path: Path) -> None:
    analyzer = analysis.FaceAnalyzer(loaders={**analysis.random_face_loaders(),
                                              "yunet": CentreFaceDetector,
                                              "landmarks68": FixedLandmarks})
    _, w = latents_for_seeds(G, [7, 8, 9], 0.7)
    with torch.no_grad():
        faces = to_uint8(G.synthesis(w))
    (tmp_path / "photos").mkdir()
    for i, face in enumerate(faces):
        save_png(face, tmp_path / "photos" / f"p{i}.png")
        folder = tmp_path / "inv" / f"p{i}_face0"
        folder.mkdir(parents=True)
        save_png(face, folder / "aligned.png")
        save_npz(folder / "latents.npz", {"w": w[i].numpy(), "space": np.str_("w")},
                 format=INVERSION_FORMAT)
    save_png(np.zeros((64, 64, 3), np.uint8), tmp_path / "photos" / "black.png")
    mapper = Mapper.from_checkpoint(tiny_checkpoint(tmp_path / "ck.npz", G), analyzer=analyzer)
    ev = evaluate_mapping(mapper, G, analyzer, pairs=0, photos=[tmp_path / "photos"],
                          inversions=[tmp_path / "inv"], crossover=3, size=SIZE,
                          photo_pairs=4)
    photos, inverted = ev.sets["photos"], ev.sets["inversions"]
    assert photos.labels == ["p0.png", "p1.png", "p2.png"] and len(photos.pairs) == 4
    assert set(photos.metrics) == {"mapping", "identity_image", "attribute_image",
                                   "average_face"}
    assert any("black.png: no face found" in n for n in photos.notes)
    assert any("--inversions" in n for n in photos.notes)
    assert inverted.crossover == 3 and "style_mix" in inverted.metrics
    assert inverted.labels == ["p0_face0", "p1_face0", "p2_face0"]


# -- the command -----------------------------------------------------------------------------------
def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="facelatent mapping")
    cli.register(parser.add_subparsers(dest="mapping_command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_end_to_end(G, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(analysis, "_default_loaders", analysis.random_face_loaders)
    folder = tmp_path / "boundaries"
    folder.mkdir()
    for b in random_boundaries(G, ("yaw", "age")):
        b.save(folder / f"{b.attribute}_w.npz")
    Boundary.from_direction(np.ones(G.z_dim), space="z", attribute="yaw").save(folder / "yaw_z.npz")
    ck = tiny_checkpoint(tmp_path / "ck.npz", G)
    code = run_cli(["evaluate", "--checkpoint", str(ck), "--out", str(tmp_path / "out"),
                    "--model", TINY, "--device", "cpu", "--pairs", "2", "--crossover", "2,5",
                    "--size", "64", "--boundaries", str(folder), "--walk-iterations", "1",
                    "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    gen = summary["sets"]["generated"]
    assert summary["settings"]["seeds"] == [1_000_000, 1_000_001, 1_000_002, 1_000_003]
    assert set(gen["crossover"]["sweep"]) == {"2", "5"}
    assert gen["walk"]["scores"] == ["yaw"] and gen["walk"]["held"] == ["age"]
    assert any("yaw_z.npz" in n for n in gen["walk"]["notes"])
    assert (tmp_path / "out" / "index.html").exists()


@pytest.mark.parametrize(("argv", "expect"), [
    (["--pairs", "1"], "--pairs must be 0"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--crossover", "two"], "bad --crossover list"),
    (["--seeds", "1-3"], "--seeds must name an even number"),
    (["--max-strength", "0"], "--max-strength must be a positive"),
])
def test_cli_refuses_bad_options_in_one_line(argv, expect, G, tmp_path: Path,
                                             monkeypatch) -> None:
    monkeypatch.setattr(analysis, "_default_loaders", analysis.random_face_loaders)
    ck = tiny_checkpoint(tmp_path / "ck.npz", G)
    with pytest.raises(ValueError, match=expect):
        run_cli(["evaluate", "--checkpoint", str(ck), "--out", str(tmp_path / "o"),
                 "--model", TINY, "--device", "cpu", "--size", "64", *argv])
