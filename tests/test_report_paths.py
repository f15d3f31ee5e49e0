"""`facelatent report` reads nothing outside the folders it is given (defect 5: an
evaluation.json naming `../secret.png`, an absolute path or a symlink leading out had that
image embedded in the HTML)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelatent.cli import main
from facelatent.evaluation.metrics import EditEvaluation, write_evaluation
from facelatent.io import read_json, write_json
from facelatent.latents.store import LatentStore, StoreSpec

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    spec = StoreSpec(generator="mobilestylegan-tiny", z_dim=4, w_dim=4, shard_size=4)
    st = LatentStore.create(tmp_path / "store", spec, n=4, command=["test"])
    st.write_shard(0, {"seeds": np.arange(4), "w": np.zeros((4, 4), np.float32),
                       "z": np.zeros((4, 4), np.float32)})
    return tmp_path / "store"


def secret(path: Path) -> Path:
    """An image outside every given folder: a colour no report figure has."""
    Image.new("RGB", (40, 40), (1, 2, 3)).save(path)
    return path


def evaluation(folder: Path) -> Path:
    """A real `facelatent evaluate` folder (evaluation.json, curves.png, grid_plain.png)."""
    n, s = 2, 3
    ev = EditEvaluation(
        boundary={"attribute": "smile", "space": "w"}, strengths=np.linspace(-1, 1, s),
        scores={"plain": {"smile": np.ones((n, s))}}, reference_scores={"smile": np.ones(n)},
        identity={"plain": np.ones((n, s))}, identity_model="dlib", target="smile",
        thumbnails={"plain": np.zeros((n, s, 16, 16, 3), np.uint8)})
    write_evaluation(ev, folder)
    return folder


def images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"[^>]*alt="edit grid"', page)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_evaluation_json_cannot_name_a_file_outside_its_folder(tmp_path: Path, store: Path,
                                                               how: str) -> None:
    outside = secret(tmp_path / "secret.png")
    root = tmp_path / "given"
    folder = evaluation(root / "smile")
    data = read_json(folder / "evaluation.json")
    if how == "symlink":
        (folder / "grid_plain.png").unlink()
        (folder / "grid_plain.png").symlink_to(outside)
    else:
        name = "../../secret.png" if how == "dotdot" else str(outside)
        data["files"] = {**data["files"], "grid_plain": name}
        write_json(folder / "evaluation.json", data)
    out = tmp_path / "report.html"
    assert main(["report", str(store), "--out", str(out), "--evaluations", str(root)]) == 0
    page = out.read_text()
    assert images(page) == []                                   # the secret is not embedded
    assert "lies outside" in page and str(root) in page         # and the page says why


def test_edit_folder_grid_symlink_leading_out_is_skipped(tmp_path: Path, store: Path) -> None:
    outside = secret(tmp_path / "secret.png")
    edit = tmp_path / "edits" / "smile"
    edit.mkdir(parents=True)
    write_json(edit / "edit.json", {"boundary": {"attribute": "smile", "space": "w"}},
               format="facelatent.edit")
    (edit / "grid.png").symlink_to(outside)
    out = tmp_path / "report.html"
    assert main(["report", str(store), "--out", str(out), "--edits", str(tmp_path / "edits")]) == 0
    assert images(out.read_text()) == []
    # A grid inside the folder is embedded as before.
    (edit / "grid.png").unlink()
    Image.new("RGB", (40, 40), (9, 9, 9)).save(edit / "grid.png")
    assert main(["report", str(store), "--out", str(out), "--edits", str(tmp_path / "edits")]) == 0
    assert len(images(out.read_text())) == 1


def test_a_json_file_symlinked_from_outside_is_not_read(tmp_path: Path, store: Path) -> None:
    elsewhere = evaluation(tmp_path / "elsewhere")
    root = tmp_path / "given" / "smile"
    root.mkdir(parents=True)
    (root / "evaluation.json").symlink_to(elsewhere / "evaluation.json")
    out = tmp_path / "report.html"
    assert main(["report", str(store), "--out", str(out), "--evaluations", str(root)]) == 0
    page = out.read_text()
    assert images(page) == [] and "leads outside" in page
