"""Checks shared by the tests of the checkpoint loaders (StyleGAN2/3, rosinality, PGGAN,
StyleGAN1): how a port's images are compared with those the official code recorded, and a
pickle payload that runs a command. Imported as ``from generator_checks import ...``, like
`conftest.shared_file`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import torch

from facelatent.cli import main
from facelatent.generators import Generator
from facelatent.generators.base import z_from_seeds

TOLERANCE = 1e-4  # of the official image's largest magnitude (issue 15)

G = TypeVar("G", bound=Generator)


def with_reference(generator: G, npz: Path) -> tuple[G, dict[str, np.ndarray]]:
    """``generator`` and the arrays the official code recorded in ``npz`` (read whole, so
    the file is closed when this returns)."""
    with np.load(npz) as ref:
        return generator, dict(ref)


def relative_error(ours: torch.Tensor, theirs: np.ndarray) -> float:
    """The largest difference between ``ours`` and ``theirs``, over ``theirs``' largest
    magnitude."""
    return float(np.abs(ours.numpy() - theirs).max() / np.abs(theirs).max())


def check_z_path(generator: Generator, ref: dict[str, np.ndarray], psi: float, w_key: str,
                 image_key: str) -> None:
    """Seeds -> z -> w (truncated by ``psi``) -> images equal the official ``ref["z"]``,
    ``ref[w_key]`` (to 1e-5) and ``ref[image_key]`` (to `TOLERANCE`)."""
    z = z_from_seeds(ref["seeds"].tolist(), generator.z_dim)
    np.testing.assert_array_equal(z.numpy(), ref["z"])  # same seeds -> same z as their scripts
    with torch.no_grad():
        w = generator.mapping(z, truncation_psi=psi)
        images = generator.synthesis(w)
    np.testing.assert_allclose(w.numpy(), ref[w_key], rtol=0, atol=1e-5)
    check_images(images, ref[image_key])


def check_synthesis(generator: Generator, ws: np.ndarray, official: np.ndarray) -> None:
    """``generator.synthesis(ws)`` equals the official images to `TOLERANCE`."""
    with torch.no_grad():
        images = generator.synthesis(torch.from_numpy(ws))
    check_images(images, official)


def check_images(images: torch.Tensor, official: np.ndarray) -> None:
    """``images`` have the official images' shape and equal them to `TOLERANCE`."""
    assert images.shape == official.shape
    assert relative_error(images, official) <= TOLERANCE


class RunsACommand:
    """A pickle payload: unpickling it the usual way runs ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def generate_refuses(model: str, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``facelatent generate --model model`` exits 2 with one line on stderr, returned."""
    assert main(["generate", "--model", model, "--seeds", "0", "--out", str(out),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    return err[0]
