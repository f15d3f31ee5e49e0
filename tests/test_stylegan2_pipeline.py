"""`facelatent sample` -> `boundary fit` -> `edit` end to end on an official-format StyleGAN2-ADA
pickle (tests/fixtures/stylegan2ada), named on the command line as ``stylegan2:PATH``.

The face networks are the random-weight ones of `random_face_loaders` (as in
tests/test_evaluation.py), so the scores are arbitrary but deterministic; what is checked is
that every stage accepts the generator, records its name, and produces what it promises.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.boundaries import load_boundary
from facelatent.cli import main
from facelatent.editing.apply import edit_images
from facelatent.faces import analysis
from facelatent.faces.analysis import random_face_loaders
from facelatent.generators import get_generator, z_from_seeds
from facelatent.latents.store import LatentStore

PKL = Path(__file__).parent / "fixtures" / "stylegan2ada" / "sg2ada_res64_clamp.pkl"
MODEL = f"stylegan2:{PKL}"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sample_fit_and_edit_on_an_official_pickle(tmp_path: Path, monkeypatch, capsys) -> None:
    loaders = random_face_loaders()
    monkeypatch.setattr(analysis, "_default_loaders", lambda: dict(loaders))
    store = tmp_path / "store"
    assert main(["sample", "--model", MODEL, "--n", "24", "--store", str(store), "--shard-size",
                 "8", "--batch", "8", "--psi", "0.8", "--attributes", "smile",
                 "--identity", "none", "--device", "cpu", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 24
    st = LatentStore.open(store, read_only=True)
    assert st.manifest["generator"] == MODEL
    w = st.latents("w")
    assert w.shape == (24, 48) and np.isfinite(w).all()
    assert np.isfinite(st.scores("smile")).all()

    boundary = tmp_path / "smile_w.npz"
    assert main(["boundary", "fit", "--store", str(store), "--attribute", "smile", "--ratio",
                 "0.25", "--bootstrap", "0", "--out", str(boundary), "--json"]) == 0
    capsys.readouterr()
    b = load_boundary(boundary)
    assert b.normal.shape == (48,) and abs(float(np.linalg.norm(b.normal)) - 1.0) < 1e-5

    out = tmp_path / "edits"
    assert main(["edit", "--model", MODEL, "--seeds", "0-1", "--boundary", str(boundary),
                 "--store", str(store), "--steps", "3", "--size", "64", "--device", "cpu",
                 "--layers", "0-3", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    report = json.loads((out / "edit.json").read_text())
    assert (report["generator"], report["truncation_psi"], report["layers"]) == (MODEL, 0.8,
                                                                               [0, 1, 2, 3])
    assert sorted(p.name for p in out.glob("*.png")) == ["grid.png", "seed0000.png", "seed0001.png"]

    # the store holds what the port computes, and the edit moves the image only off strength 0
    G = get_generator(MODEL)
    z = z_from_seeds([0, 1], G.z_dim)
    with torch.no_grad():
        np.testing.assert_allclose(st.latents("w")[:2], G.mapping(z, 0.8).numpy(), atol=1e-5)
        images = edit_images(G, [0, 1], b, [-3.0, 0.0, 3.0], truncation_psi=0.8,
                             layers=[0, 1, 2, 3])
        plain = G.synthesis(G.mapping(z, 0.8))
    assert images.shape == (2, 3, 3, 64, 64)
    torch.testing.assert_close(images[:, 1], plain, rtol=0, atol=1e-5)
    assert (images[:, 0] - plain).abs().amax() > 1e-2 and (images[:, 2] - plain).abs().amax() > 1e-2


def test_dataset_build_takes_a_checkpoint_name_and_refuses_a_bad_one() -> None:
    """`dataset build --model stylegan2:PATH` passes the name check that catches typos before
    anything is written; a prefix without a file, or a typo, is still one error."""
    from facelatent.datasets.writer import _check_generator
    from facelatent.errors import FacelatentError

    _check_generator("stylegan2:/models/ffhq.pkl")
    with pytest.raises(FacelatentError, match="names no file"):
        _check_generator("stylegan2:")
    with pytest.raises(FacelatentError, match="did you mean 'mobilestylegan-ffhq'"):
        _check_generator("mobilestylegan-fhq")
