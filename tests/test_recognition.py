"""Tests of facelatent.recognition (`facelatent fr train|evaluate`): training on a tiny dataset
folder made here (classes that differ by colour, so there is something to learn), resume after
a kill, refused resumes, safe loading, the LFW protocol with misses, and the crop cache.

The networks are MobileFaceNet at a quarter of its width (the full one only in the CLI test);
the face models that align the fake LFW have random weights, with a detector that reports the
average face's place (`FixedGeometryDetector`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import shared_file
from generator_checks import RunsACommand
from PIL import Image

from facelatent.cli import main
from facelatent.errors import FileFormatError
from facelatent.faces.align import FixedGeometryDetector
from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
from facelatent.faces.lfw import parse_pairs, verification_result
from facelatent.generators.converted import read_safetensors
from facelatent.recognition import (
    Augmentation,
    LfwCheck,
    MarginHead,
    RecognizerConfig,
    TrainSettings,
    augment,
    build_backbone,
    evaluate_lfw,
    lfw_crops,
    load_recognizer,
    load_training_set,
    read_log,
    train_recognizer,
)
from facelatent.recognition.checkpoint import STATE, WEIGHTS
from facelatent.recognition.model import count_parameters
from facelatent.runs import ResumeMismatchError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = RecognizerConfig(width=0.25, embedding=32)


def make_dataset(root: Path, classes: int = 4, per: int = 8, seed: int = 0,
                 missing: tuple[tuple[int, int], ...] = ()) -> Path:
    """A dataset folder as `dataset build` writes it: one colour per class plus noise."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"format": "facelatent.synthetic-dataset"}))
    colours = rng.integers(30, 226, (classes, 3))
    rows: dict[str, list[Any]] = {"identity": [], "sample": [], "face": [], "path": []}
    for c in range(classes):
        for k in range(per):
            name = f"images/{c:05d}/{c:05d}_{k:03d}.png"
            found = (c, k) not in missing
            if found:
                pixels = colours[c] + rng.normal(0, 25, (112, 112, 3))
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name)
            for key, value in zip(rows, (c, k, found, name if found else "")):
                rows[key].append(value)
    pq.write_table(pa.table({"identity": pa.array(rows["identity"], pa.int64()),
                             "sample": pa.array(rows["sample"], pa.int64()),
                             "face": pa.array(rows["face"]), "path": pa.array(rows["path"])}),
                   root / "metadata.parquet")
    return root


def settings(**overrides: Any) -> TrainSettings:
    return TrainSettings(**{"model": TINY, "epochs": 2, "batch": 8, "lr": 0.1,
                            "warmup_epochs": 0.0, **overrides})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("fr") / "data", missing=((1, 3),))


# -- data and augmentation ---------------------------------------------------------------------

def test_training_set_skips_rows_without_a_face(dataset: Path) -> None:
    data = load_training_set(dataset)
    assert (len(data.labels), data.skipped, data.classes) == (31, 1, (0, 1, 2, 3))
    assert data.images.shape == (31, 3, 112, 112) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0] * 8 + [1] * 7 + [2] * 8 + [3] * 8


def test_augment_is_seeded_and_a_pure_flip_flips() -> None:
    images = torch.randint(0, 256, (3, 3, 112, 112), dtype=torch.uint8)
    a = augment(images, Augmentation(), torch.Generator().manual_seed(5))
    b = augment(images, Augmentation(), torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (3, 3, 112, 112)
    assert a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, augment(images, Augmentation(), torch.Generator().manual_seed(6)))
    flip_only = Augmentation(flip=1.0, min_scale=1.0, max_shift=0.0, aspect=0.0,
                             brightness=0.0, contrast=0.0, saturation=0.0)
    # With no scale change a flip moves every pixel centre exactly onto another.
    out = augment(images, flip_only, torch.Generator().manual_seed(0))
    assert torch.allclose(out, images.float().flip(-1) / 127.5 - 1, atol=1e-4)


# -- networks and heads ------------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "low", "high"), [("mobilefacenet", 0.9e6, 1.1e6),
                                                   ("resnet18", 13e6, 16e6)])
def test_backbones_have_their_size_and_shape(arch: str, low: float, high: float) -> None:
    torch.manual_seed(0)
    net = build_backbone(RecognizerConfig(arch, embedding=128)).eval()
    assert low < count_parameters(net) < high
    with torch.no_grad():
        x = torch.rand(2, 3, 112, 112) * 2 - 1
        out = net(x)
        assert out.shape == (2, 128)
        assert torch.allclose(out[1:], net(x[1:]), atol=1e-4)      # eval: rows independent


def test_margin_heads() -> None:
    torch.manual_seed(0)
    e, labels = torch.randn(5, 16), torch.tensor([0, 1, 2, 0, 1])
    cos = MarginHead(16, 3, "cosface", s=64, m=0.35)
    plain = cos(e)
    assert torch.allclose(plain, 64 * cos.cosines(e))
    margin = cos(e, labels)
    own = torch.nn.functional.one_hot(labels, 3).bool()
    assert torch.allclose(margin[own], plain[own] - 64 * 0.35, atol=1e-4)
    assert torch.equal(margin[~own], plain[~own])
    arc = MarginHead(16, 3, "arcface", s=10, m=0.5)
    arc.weight.data = cos.weight.data.clone()
    theta = torch.acos(arc.cosines(e)[own])
    expected = torch.where(theta + 0.5 < torch.pi, torch.cos(theta + 0.5),
                           torch.cos(theta) - 0.5 * math.sin(0.5))
    assert torch.allclose(arc(e, labels)[own], 10 * expected, atol=1e-4)
    assert (arc(e, labels)[own] < arc(e)[own]).all()          # the margin always costs


# -- training ----------------------------------------------------------------------------------

def test_training_learns_colours_and_writes_a_loadable_recogniser(dataset: Path,
                                                                   tmp_path: Path) -> None:
    report = train_recognizer(dataset, tmp_path / "run", settings(epochs=3))
    lines = list(read_log(tmp_path / "run" / "log.jsonl"))
    assert [ln["epoch"] for ln in lines] == [1, 2, 3]
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert lines[-1]["train_accuracy"] > 0.4           # chance: 0.25
    assert (report.action, report.epoch, report.classes, report.images) == ("created", 3, 4, 31)
    net = load_recognizer(tmp_path / "run")
    assert net.epoch == 3
    crops = load_training_set(dataset).images[:6].float() / 127.5 - 1
    e = net.embed(crops)
    assert e.shape == (6, 32)
    assert torch.allclose(e.norm(dim=1), torch.ones(6), atol=1e-5)
    # Batched equals one by one; flip-averaging makes a crop and its mirror image one face.
    assert torch.allclose(e, torch.cat([net.embed(c[None]) for c in crops]), atol=1e-5)
    assert torch.allclose(e, net.embed(crops.flip(-1)), atol=1e-5)
    # The same command again has nothing to do.
    assert train_recognizer(dataset, tmp_path / "run", settings(epochs=3)).action == "complete"


class KillAfter:
    """A progress bar that interrupts training after ``steps`` steps (a simulated kill)."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def start(self, total: int, done: int) -> None:
        pass

    def update(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise KeyboardInterrupt


def test_a_killed_run_resumes_to_the_same_weights(dataset: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    train_recognizer(dataset, whole, settings())
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):          # 3 steps an epoch: dies in the second
        train_recognizer(dataset, killed, settings(), progress=KillAfter(4))
    assert read_safetensors(killed / WEIGHTS)[1]["epoch"] == "1"
    report = train_recognizer(dataset, killed, settings())
    assert (report.action, report.epochs_run) == ("resumed", 1)
    a, b = read_safetensors(whole / WEIGHTS)[0], read_safetensors(killed / WEIGHTS)[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [ln["epoch"] for ln in read_log(killed / "log.jsonl")] == [1, 2]


def test_resume_with_other_settings_or_data_is_refused(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_recognizer(dataset, out, settings(epochs=1))
    with pytest.raises(ResumeMismatchError, match="lr: 0.1 held, 0.05 asked"):
        train_recognizer(dataset, out, settings(epochs=1, lr=0.05))
    other = make_dataset(tmp_path / "other", seed=1)
    with pytest.raises(ResumeMismatchError, match="content"):
        train_recognizer(other, out, settings(epochs=1))
    # Through the CLI: one line, exit 2.
    code = main(["fr", "train", "--dataset", str(other), "--out", str(out), "--epochs", "1",
                 "--device", "cpu"])
    assert code == 2


def test_a_malicious_training_state_is_refused_without_running(dataset: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_recognizer(dataset, out, settings(epochs=1))
    marker = tmp_path / "pwned"
    torch.save({"epoch": RunsACommand(marker)}, out / STATE)
    with pytest.raises(FileFormatError, match="state.pt is not a training state"):
        train_recognizer(dataset, out, settings(epochs=1))
    assert not marker.exists()


def test_a_damaged_weights_file_is_refused(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_recognizer(dataset, out, settings(epochs=1))
    blob = (out / WEIGHTS).read_bytes()
    (out / WEIGHTS).write_bytes(blob[:-100])
    with pytest.raises(FileFormatError, match="safetensors"):
        load_recognizer(out)


@pytest.mark.parametrize("case", ["missing", "one class", "no face", "corrupt png", "not 112"])
def test_bad_datasets_give_one_line(case: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    if case == "one class":
        make_dataset(root, classes=1)
    elif case == "no face":
        make_dataset(root, classes=2, per=1, missing=((0, 0), (1, 0)))
    elif case in ("corrupt png", "not 112"):
        make_dataset(root, classes=2, per=2)
        png = root / "images/00001/00001_001.png"
        if case == "corrupt png":
            png.write_bytes(png.read_bytes()[:50])
        else:
            Image.new("RGB", (64, 64)).save(png)
    code = main(["fr", "train", "--dataset", str(root), "--out", str(tmp_path / "run"),
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    expected = {"missing": "no such folder", "one class": "one class only",
                "no face": "holds no crop", "corrupt png": "00001_001.png",
                "not 112": "64x64 px"}[case]
    assert expected in err[0]


def test_cli_train_one_epoch_full_width(dataset: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["fr", "train", "--dataset", str(dataset), "--out", str(out), "--epochs", "1",
                 "--batch", "16", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["epoch"], report["skipped"]) == (1, 1)
    assert 0.9e6 < report["parameters"] < 1.1e6          # MobileFaceNet's size
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == {"arch": "mobilefacenet", "embedding": 128, "width": 1.0}


# -- the LFW protocol --------------------------------------------------------------------------

PAIRS = """2\t2
A\t1\t2
B\t1\t2
A\t1\tB\t1
C\t1\tD\t1
C\t1\t2
D\t1\t2
A\t2\tC\t2
B\t2\tD\t2
"""


def test_the_ten_fold_protocol_counts_misses_as_wrong() -> None:
    pairs = parse_pairs_text(PAIRS)
    names = pairs.images()
    # One direction per person: same-person pairs score 1, different people 0.
    e = np.eye(4, dtype=np.float32)[["ABCD".index(n[0]) for n in names]]
    perfect = verification_result("toy", "central", e, names, pairs)
    assert perfect.accuracies == (1.0, 1.0) and perfect.pairs_failed == 0
    assert 0 < perfect.threshold < 1
    # No face in C_0001: its pair in each fold (C 1 D 1, then C 1 2) is wrong, and kept.
    e[names.index("C/C_0001.jpg")] = np.nan
    r = verification_result("toy", "central", e, names, pairs)
    assert (r.faces_not_found, r.pairs_failed, r.pairs) == (1, 2, 8)
    assert r.accuracies == (0.75, 0.75)
    assert r.accuracy_mean == 0.75 and r.accuracy_std == 0.0


def parse_pairs_text(text: str) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pairs.txt"
        path.write_text(text)
        return parse_pairs(path)


class MissC1(FixedGeometryDetector):
    """Finds the average face's place in every photo but the darkest (C_0001 below)."""

    def detect(self, images: Any, **kw: object) -> list[object]:
        out = super().detect(images, **kw)
        for i, image in enumerate(images):
            if float(image.mean()) < -0.9:
                d = out[i]
                out[i] = type(d)(d.boxes[:0], d.scores[:0], d.points[:0])
        return out


@pytest.fixture(scope="module")
def fake_lfw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lfw")
    (root / "pairs.txt").write_text(PAIRS)
    rng = np.random.default_rng(0)
    for person in "ABCD":
        for k in (1, 2):
            path = root / "images" / person / f"{person}_{k:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (250, 250, 3)) if (person, k) != ("C", 1) else \
                np.zeros((250, 250, 3))
            Image.fromarray(pixels.astype(np.uint8)).save(path)
    return root


def test_a_trained_recogniser_on_lfw_counts_misses_and_caches_crops(
        dataset: Path, fake_lfw: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    analyzer = FaceAnalyzer(loaders={**random_face_loaders(), "yunet": MissC1})
    check = LfwCheck(fake_lfw, cache=tmp_path / "cache", analyzer=analyzer)
    train_recognizer(dataset, run, settings(epochs=1), lfw=check)
    line = list(read_log(run / "log.jsonl"))[-1]
    assert (line["lfw_folds"], line["lfw_pairs_failed"]) == (2, 2)
    assert line["lfw_accuracy"] <= 0.75
    crops = lfw_crops(fake_lfw, cache=tmp_path / "cache", analyzer=analyzer)
    assert crops.cached and crops.found.tolist() == [n != "C/C_0001.jpg" for n in crops.names]
    assert crops.crops.shape == (8, 112, 112, 3) and not crops.crops[~crops.found].any()
    r = evaluate_lfw(fake_lfw, run, cache=tmp_path / "cache", analyzer=analyzer)
    assert (r.faces_not_found, r.pairs_failed, r.images, r.cached) == (1, 2, 8, True)
    assert r.accuracy_mean == pytest.approx(line["lfw_accuracy"])
    # One fold only: its own crops come from the cache too.
    one = evaluate_lfw(fake_lfw, run, folds=[2], cache=tmp_path / "cache", analyzer=analyzer)
    assert (one.folds, one.pairs, one.cached) == ((2,), 4, True)


@pytest.mark.parametrize("case", ["no recogniser", "no lfw", "bad folds"])
def test_fr_evaluate_bad_input_gives_one_line(case: str, fake_lfw: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    lfw, model, folds = str(fake_lfw), str(tmp_path), "1-2"
    if case == "no lfw":
        lfw = str(tmp_path / "nope")
    elif case == "bad folds":
        folds = "3"
    code = main(["fr", "evaluate", "--lfw", lfw, "--model", model, "--folds", folds,
                 "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    expected = {"no recogniser": "not a recogniser folder (no config.json)",
                "no lfw": "no pairs.txt", "bad folds": "folds must be numbers from 1 to 2"}[case]
    assert expected in err[0]


@pytest.mark.slow
def test_fr_evaluate_sface_on_lfw_fold_1(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pairs = shared_file("datasets/lfw/pairs.txt")
    assert main(["fr", "evaluate", "--lfw", str(pairs.parent), "--model", "sface",
                 "--folds", "1", "--cache", str(tmp_path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["sface"]
    # Seen: 99.33 % on fold 1 (its threshold chosen on itself), every face found.
    assert (r["pairs"], r["images"], r["faces_not_found"]) == (600, 807, 0)
    assert r["accuracy_mean"] >= 0.985 and r["published"] == 99.40
