"""InterFaceGAN's published boundaries (../shared/fixtures/interfacegan_boundaries, MIT licence):
our conditional projection must reproduce all 13 `_c_` files from their primal and condition
files, and the cosines between the published primal boundaries must match the paper's table.

The fixture folder lies beside the repository (`shared/` next to `main/`, in CI too).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_file
from facelatent.boundaries import condition, condition_boundary, correlation_matrix, load_boundary
from facelatent.cli import main

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "interfacegan_boundaries"
CONDITIONAL = sorted(p.name for p in FIXTURES.glob("*_c_*_boundary.npy"))
ATTRIBUTES = ("pose", "smile", "age", "gender", "eyeglasses", "quality")
# Table of the paper (PGGAN, CelebA-HQ), quoted in the fixtures' README.
PAPER_PGGAN = {("age", "gender"): 0.486, ("age", "eyeglasses"): 0.378, ("gender", "eyeglasses"): 0.523}


@pytest.fixture(autouse=True)
def fixtures_beside_the_checkout() -> None:
    shared_file("fixtures/interfacegan_boundaries")    # skips in a clone without ../shared


def test_fixtures_are_there() -> None:
    assert len(CONDITIONAL) == 13
    assert len(list(FIXTURES.glob("*.npy"))) == 39


def split_name(name: str) -> tuple[str, str, list[str]]:
    """'pggan_celebahq_age_c_gender_eyeglasses_boundary.npy' -> ('pggan_celebahq', 'age', [...])."""
    head, conds = name[: -len("_boundary.npy")].split("_c_")
    model, attribute = head.rsplit("_", 1)
    return model, attribute, conds.split("_")


@pytest.mark.parametrize("name", CONDITIONAL)
def test_conditional_files_are_reproduced(name: str) -> None:
    model, attribute, conds = split_name(name)
    primal = np.load(FIXTURES / f"{model}_{attribute}_boundary.npy")
    conditions = [np.load(FIXTURES / f"{model}_{c}_boundary.npy") for c in conds]
    published = np.load(FIXTURES / name).reshape(-1)
    ours = condition(primal.reshape(-1), [c.reshape(-1) for c in conditions])
    cos = float(ours @ published) / float(np.linalg.norm(published))
    assert cos >= 0.999999, f"{name}: cosine {cos}"
    # the same through the boundary files, as `facelatent boundary condition` runs it
    b = condition_boundary(load_boundary(FIXTURES / f"{model}_{attribute}_boundary.npy"),
                           [load_boundary(FIXTURES / f"{model}_{c}_boundary.npy") for c in conds])
    assert float(b.normal.astype(np.float64) @ published) / np.linalg.norm(published) >= 0.999999
    assert (b.attribute, b.space) == (attribute, "z")


def test_published_files_load_with_guessed_metadata() -> None:
    b = load_boundary(FIXTURES / "stylegan_ffhq_eyeglasses_w_boundary.npy")
    assert (b.attribute, b.space, b.intercept) == ("eyeglasses", "w", 0.0)
    assert b.provenance["intercept_known"] is False and b.normal.shape == (512,)
    assert abs(b.provenance["original_norm"] - 1.0) < 1e-4


def primal_cosines(model: str) -> dict[tuple[str, str], float]:
    names = [a for a in ATTRIBUTES if (FIXTURES / f"{model}_{a}_boundary.npy").exists()]
    cos = correlation_matrix([load_boundary(FIXTURES / f"{model}_{a}_boundary.npy") for a in names])
    return {(names[i], names[j]): float(cos[i, j]) for i, j in itertools.combinations(range(len(names)), 2)}


def test_pggan_correlations_match_the_paper() -> None:
    cos = primal_cosines("pggan_celebahq")
    for pair, value in PAPER_PGGAN.items():
        assert round(cos[pair], 3) == value, f"{pair}: {cos[pair]:.4f} vs the paper's {value}"
    assert len(cos) == 15                                  # pose, smile, age, gender, eyeglasses, quality


def test_correlate_command_on_the_published_files(tmp_path: Path, capsys) -> None:
    files = [str(FIXTURES / f"pggan_celebahq_{a}_boundary.npy") for a in ("age", "gender", "eyeglasses")]
    assert main(["boundary", "correlate", *files, "--heatmap", str(tmp_path / "cos.png")]) == 0
    out = capsys.readouterr().out
    assert "0.486" in out and "0.378" in out and "0.523" in out
    assert (tmp_path / "cos.png").stat().st_size > 0
