"""Tests of facelatent.recognition.compare (`scripts/compare_datasets.py`): the four sampling modes
built, trained and measured on a fake LFW end to end, the outputs' content, resume from the
records of finished stages (and after a kill, to the same figures), the pair rates and the
verdict on known numbers, and one-line errors.

Everything is tiny: the random generator and face networks of tests/test_dataset_writer.py,
the made-up store of tests/test_dataset_variation.py (whose planted yaw and age let the varied
mode fit its directions), a quarter-width MobileFaceNet, and the 8-photo LFW of
tests/test_recognition.py with one face not found.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
from facelatent.recognition import RecognizerConfig, TrainSettings
from facelatent.recognition.compare import (
    CompareSettings,
    compare_modes,
    matched_code_max_off,
    pair_rates,
    tar_by_bins,
    verdict,
)
from facelatent.runs import ResumeMismatchError
from tests.test_dataset_variation import boundaries, make_store
from tests.test_dataset_writer import models
from tests.test_recognition import PAIRS, MissC1

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = TrainSettings(model=RecognizerConfig(width=0.25, embedding=32), epochs=1, batch=4,
                      warmup_epochs=0.0)
SETTINGS = CompareSettings(per_identity=3, max_off=2.0)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_datasets.py"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("compare")
    store, _ = make_store(root / "store")
    ids = boundaries(store, k=3)
    ids.save(root / "ids")
    lfw = root / "lfw"
    (lfw / "images").mkdir(parents=True)
    (lfw / "pairs.txt").write_text(PAIRS)
    rng = np.random.default_rng(0)
    from PIL import Image

    for person in "ABCD":
        for k in (1, 2):
            path = lfw / "images" / person / f"{person}_{k:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            dark = (person, k) == ("C", 1)           # MissC1 finds no face in it
            pixels = np.zeros((250, 250, 3)) if dark else rng.integers(0, 256, (250, 250, 3))
            Image.fromarray(pixels.astype(np.uint8)).save(path)
    return {"root": root, "ids": root / "ids", "lfw": lfw, "models": models(),
            "analyzer": FaceAnalyzer(loaders={**random_face_loaders(), "yunet": MissC1})}


def run(setup: dict[str, Any], out: Path, settings: CompareSettings = SETTINGS,
        **kw: Any) -> Any:
    return compare_modes(setup["ids"], out, settings, TRAIN, lfw=setup["lfw"],
                         cache=setup["root"] / "cache", models=setup["models"],
                         analyzer=setup["analyzer"], **kw)


@pytest.fixture(scope="module")
def done(setup: dict[str, Any]) -> Any:
    return run(setup, setup["root"] / "out")


def offsets(out: Path, mode: str) -> np.ndarray:
    t = pq.read_table(out / "datasets" / mode / "metadata.parquet")
    return np.asarray(t.column("offset_norm").to_pylist())


def test_every_mode_is_built_trained_and_measured(done: Any, setup: dict[str, Any]) -> None:
    out = Path(done.out)
    assert list(done.modes) == ["paper", "code", "random", "varied"]
    assert done.stages_run == [f"{m}/{s}" for m in done.modes for s in ("dataset", "train", "lfw")]
    for mode, r in done.modes.items():
        d, t, v = r["dataset"], r["train"], r["lfw"]
        assert (d["classes"], d["rows"], d["no_face"], d["no_face_rate"]) == (3, 9, 0, 0.0)
        assert d["seconds"] > 0 and set(d["stage_seconds"]) >= {"generate", "analyse"}
        assert d["measured_with"] == "dlib" and "yaw" in d["intra_class_spread"]
        assert (t["epochs"], t["images"], t["classes"], len(t["loss"])) == (1, 9, 3, 1)
        # The fake LFW: 8 pairs in 2 folds, C_0001 not found, so its 2 pairs fail.
        assert (v["pairs"], v["pairs_failed"], v["faces_not_found"]) == (8, 2, 1)
        assert (v["genuine_pairs"], v["impostor_pairs"]) == (4, 4)
        assert v["accuracy"] <= 0.75 and len(v["fold_accuracies"]) == 2
        assert not v["tar_at_far"]["0.01"]["resolved"]       # 4 impostor pairs resolve nothing
        assert (out / "stages" / mode / "lfw-scores.npz").is_file()
    # Each mode's dataset has its own settings: code at the matched bound, the rest at max_off.
    manifest = json.loads((out / "datasets" / "code" / "dataset.json").read_text())
    assert manifest["sampling"] == "code" and manifest["max_off"] == 3.19
    assert done.modes["varied"]["dataset"]["max_off_sigma"] == 2.0
    # Random directions take the paper mode's offset norms, draw for draw.
    np.testing.assert_allclose(offsets(out, "random"), offsets(out, "paper"), rtol=1e-5)
    assert not np.allclose(offsets(out, "code"), offsets(out, "paper"))


def test_outputs_hold_the_table_the_det_curves_and_the_verdict(done: Any) -> None:
    out = Path(done.out)
    data = json.loads((out / "comparison.json").read_text())
    assert data["format"] == "facelatent.fr-comparison.result"
    assert list(data["modes"]) == list(done.modes) and data["train"]["epochs"] == 1
    assert data["verdict"]["mode"] == "varied"
    assert set(data["verdict"]["against"]) == {"paper", "code", "random"}
    table = (out / "table.md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 1 + 4 + 1 + 3           # the table, then the verdict's
    acc = done.modes["paper"]["lfw"]
    assert f"{100 * acc['accuracy']:.2f} ± {100 * acc['std']:.2f} %" in rows[1]
    assert "| code | 3.19 | 3 × 3 | 0 of 9 (0.0 %) |" in table
    assert "unresolved" in table and done.verdict["text"] in table
    html = (out / "comparison.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "DET curves on LFW" in html
    assert "LFW accuracy per fold" in html


def test_the_dataset_report_carries_the_comparison(done: Any, setup: dict[str, Any],
                                                   tmp_path: Path) -> None:
    from facelatent.datasets.report import build_quality_report
    from facelatent.recognition.compare_report import comparison_sections

    out = Path(done.out)
    summary = build_quality_report(out / "datasets" / "varied", tmp_path / "r.html",
                                   baseline=out / "datasets" / "paper", comparison=out)
    assert summary["comparison"] == str(out)
    html = (tmp_path / "r.html").read_text()
    # The datasets' own figures (histograms, DET, two crop grids) and the LFW DET curve.
    assert html.count("data:image/png;base64,") == 5
    assert 'id="fr-table"' in html and 'id="fr-det"' in html and 'id="fr-folds"' in html
    assert html.index('id="fr-table"') < html.index('id="manifest"')
    acc = done.modes["varied"]["lfw"]
    assert f"{100 * acc['accuracy']:.2f} ± {100 * acc['std']:.2f} %" in html
    assert escape(done.verdict["text"]) in html
    assert [k for k, _, _ in comparison_sections(out)] == ["fr-table", "fr-det", "fr-folds",
                                                           "fr-spread"]
    # A folder that is not a finished comparison: one line, and no report written.
    with pytest.raises(FileNotFoundError, match="no comparison.json"):
        build_quality_report(out / "datasets" / "varied", tmp_path / "r2.html",
                             comparison=out / "datasets")
    assert not (tmp_path / "r2.html").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "comparison.json").write_text('{"format": "something else"}')
    with pytest.raises(Exception, match="expected an fr compare result"):
        comparison_sections(tmp_path / "bad")


def test_a_rerun_reads_every_finished_stage(done: Any, setup: dict[str, Any]) -> None:
    out = Path(done.out)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "stages").rglob("*") if p.is_file()}
    again = run(setup, out)
    assert again.stages_run == [] and again.modes == json.loads(json.dumps(done.modes))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # A record removed is that stage redone, and only it.
    (out / "stages" / "code" / "lfw.json").unlink()
    redo = run(setup, out)
    assert redo.stages_run == ["code/lfw"]
    assert redo.modes["code"]["lfw"]["accuracy"] == done.modes["code"]["lfw"]["accuracy"]


def test_a_killed_comparison_resumes_to_the_same_figures(done: Any, setup: dict[str, Any],
                                                          tmp_path: Path) -> None:
    settings = CompareSettings(modes=("paper", "random"), per_identity=3, max_off=2.0)

    def kill(mode: str, stage: str, what: str) -> None:
        if (mode, stage, what) == ("random", "train", "start"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(setup, tmp_path / "out", settings, on_stage=kill)
    resumed = run(setup, tmp_path / "out", settings)
    assert resumed.stages_run == ["random/train", "random/lfw"]
    for mode in ("paper", "random"):
        assert resumed.modes[mode]["lfw"]["fold_accuracies"] == \
            done.modes[mode]["lfw"]["fold_accuracies"]
    assert resumed.verdict is None                  # no varied mode, no verdict


def test_other_settings_in_the_same_folder_are_refused(done: Any, setup: dict[str, Any]) -> None:
    with pytest.raises(ResumeMismatchError, match="per_identity"):
        run(setup, Path(done.out), CompareSettings(per_identity=4, max_off=2.0))


def test_pair_rates_count_missing_faces_as_rejected() -> None:
    nan = float("nan")
    cos = np.array([0.9, 0.8, nan, 0.1, 0.5, nan, 0.3, 0.7])
    same = np.array([True, True, True, False, False, False, False, True])
    r = pair_rates(cos, same)
    assert (r["genuine_pairs"], r["impostor_pairs"]) == (4, 4)
    # No impostor may pass at FAR 1e-2 of 4 pairs: the threshold sits above 0.5, where three
    # of the four genuine pairs pass and the one without a face never does.
    assert r["tar_at_far"]["0.01"]["tar"] == pytest.approx(0.75)
    assert 0.5 < r["tar_at_far"]["0.01"]["threshold"] <= 0.7
    assert r["eer"] == pytest.approx(0.25)
    assert matched_code_max_off(6.0) == 9.57


def test_tar_by_bins_counts_genuine_pairs_per_bin_at_one_threshold() -> None:
    # 10 impostors 0.0 .. 0.9: FAR 0.1 accepts one, so the threshold is 0.9.
    impostor = np.arange(10) / 10
    genuine = np.array([0.95, 0.95, 0.5, np.nan, 0.95, 0.2, 0.99])
    key = np.array([1.0, 2.0, 3.0, 4.0, 15.0, 25.0, np.nan])
    cos = np.concatenate([genuine, impostor])
    same = np.arange(cos.size) < genuine.size
    r = tar_by_bins(cos, same, np.concatenate([key, np.full(10, np.nan)]), [0, 10, 20, 30], 0.1)
    assert r["threshold"] == pytest.approx(0.9) and r["outside"] == 1     # the NaN key
    # A NaN cosine (face not found) counts as rejected, in its bin.
    assert [(b["pairs"], b["tar"]) for b in r["bins"]] == [(4, 0.5), (1, 1.0), (1, 0.0)]
    assert tar_by_bins(cos, same, np.zeros(cos.size), [5, 10])["bins"][0]["tar"] is None
    with pytest.raises(ValueError, match="increasing"):
        tar_by_bins(cos, same, np.zeros(cos.size), [10, 5])
    with pytest.raises(ValueError, match="key must be"):
        tar_by_bins(cos, same, np.zeros(3), [0, 1])


def test_verdict_needs_the_bands_apart() -> None:
    def rec(mean: float, std: float, folds: list[float]) -> dict[str, Any]:
        return {"accuracy": mean, "std": std, "fold_accuracies": folds}

    lfw = {"paper": rec(0.60, 0.02, [0.58, 0.62]), "random": rec(0.66, 0.02, [0.64, 0.68]),
           "varied": rec(0.70, 0.01, [0.69, 0.71])}
    v = verdict(lfw)
    assert v["beats_all"] and v["against"]["paper"]["folds_won"] == 2
    assert v["against"]["random"]["difference"] == pytest.approx(0.04)
    lfw["random"] = rec(0.68, 0.02, [0.70, 0.66])           # 0.69 - 0.01 < 0.68 + 0.02
    v = verdict(lfw)
    assert not v["beats_all"] and v["against"]["random"]["folds_won"] == 1
    assert v["text"].startswith("varied beats paper, but does not beat random beyond")
    assert verdict({"paper": lfw["paper"]}) is None


def script_main() -> Any:
    """scripts/compare_datasets.py's main (the same parser as `facelatent fr compare`)."""
    spec = importlib.util.spec_from_file_location("compare_datasets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("case", ["bad mode", "no lfw", "one image", "no boundaries",
                                  "one identity", "bad folds"])
def test_bad_arguments_give_one_line(case: str, setup: dict[str, Any], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = {"--identities": str(setup["ids"]), "--lfw": str(setup["lfw"]),
            "--out": str(tmp_path / "out"), "--modes": "paper,code"}
    extra: list[str] = []
    if case == "bad mode":
        args["--modes"] = "paper,bogus"
    elif case == "no lfw":
        args["--lfw"] = str(tmp_path / "nope")
    elif case == "one image":
        extra = ["--per-identity", "1"]
    elif case == "no boundaries":
        args["--identities"] = str(tmp_path / "none")
    elif case == "one identity":
        extra = ["--identities-max", "1"]
    else:
        extra = ["--folds", "3"]
    code = script_main()([a for kv in args.items() for a in kv] + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    expected = {"bad mode": "modes must be distinct names from paper, code, random, varied",
                "no lfw": "no pairs.txt", "one image": "per_identity must be at least 2",
                "no boundaries": "none", "one identity": "identities_max must be at least 2",
                "bad folds": "folds must be numbers from 1 to 2"}[case]
    assert expected in err[0]
    assert not (tmp_path / "out").exists()         # refused before anything was made


def test_fr_compare_is_a_command_of_the_fr_group(setup: dict[str, Any], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from facelatent.cli import main

    code = main(["fr", "compare", "--identities", str(setup["ids"]), "--lfw",
                 str(setup["lfw"]), "--out", str(tmp_path / "out"), "--per-identity", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    expected = ("facelatent: error: per_identity must be at least 2 (a class needs two images "
                "to teach anything), got 1")
    assert code == 2 and err == [expected]


@pytest.fixture(scope="module")
def small_run(done: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recogniser trained on the paper dataset at a learning rate the 9 crops survive (at 0.1
    the quarter-width net of `done` collapses to all-zero embeddings)."""
    from facelatent.recognition.train import train_recognizer

    out = tmp_path_factory.mktemp("run") / "run"
    train_recognizer(Path(done.out) / "datasets" / "paper", out,
                     replace(TRAIN, batch=9, lr=0.01))
    return out


def test_evaluate_on_dataset_scores_every_pair_and_finds_the_overlap(done: Any, small_run: Path,
                                                                     tmp_path: Path) -> None:
    from facelatent.datasets.quality import eer, read_dataset, verification_scores
    from facelatent.recognition.heldout import evaluate_on_dataset

    out = Path(done.out)
    varied = out / "datasets" / "varied"
    # A pretrained net reads the stored embeddings: the same EER as computed by hand.
    r = evaluate_on_dataset("dlib", varied, groups=1)
    t = read_dataset(varied, models=["dlib"])
    emb = t.embedding("dlib") / np.linalg.norm(t.embedding("dlib"), axis=1, keepdims=True)
    assert r["eer"] == pytest.approx(eer(*verification_scores(emb, t.labels))[0])
    assert (r["classes"], r["images"], r["genuine_pairs"], r["impostor_pairs"]) == (3, 9, 9, 27)
    assert r["overlap"] == 0 and r["groups"]["eer"] == [] and r["label_model"] == "sface"
    # A trained run embeds the crops; the comparison trained every mode on the same references
    # and side, so all three identities overlap: not a held-out test, and it says so.
    trained = evaluate_on_dataset(small_run, varied, classes=[0, 2], groups=1)
    assert trained["overlap"] == 2 and trained["class_range"] == [0, 2]
    assert trained["images"] == 6 and 0 <= trained["eer"] <= 1
    assert set(trained["tar_at_far"]) == {"0.001", "0.01"}
    with pytest.raises(ValueError, match="no crop of class 7"):
        evaluate_on_dataset("dlib", varied, classes=[0, 7])
    with pytest.raises(ValueError, match="cannot make 2 group"):
        evaluate_on_dataset("dlib", varied, groups=2)
    with pytest.raises(ValueError, match="neither sface nor dlib"):
        evaluate_on_dataset(tmp_path / "nothing", varied)


def test_fr_evaluate_dataset_prints_a_row_per_model(done: Any, small_run: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from facelatent.cli import main

    out = Path(done.out)
    code = main(["fr", "evaluate-dataset", "--dataset", str(out / "datasets" / "paper"),
                 "--model", f"dlib,{small_run}", "--groups", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["model", "EER", "EER"]
    assert lines[1].startswith("dlib") and lines[2].startswith(str(small_run))
    assert lines[1].split()[-1] == "0" and lines[2].split()[-1] == "3"     # the overlap
    assert "9 crops, 9 genuine and 27 impostor pairs" in lines[3]
    code = main(["fr", "evaluate-dataset", "--dataset", str(out / "datasets" / "paper"),
                 "--classes", "0-9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no crop of class 3" in err[0]
