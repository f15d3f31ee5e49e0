"""Tests of facelatent.datasets.quality (verification scores, EER, FNMR at FMR, collisions,
intra-class spread, reading a dataset folder) and facelatent.datasets.report.

Known answers: two unit-variance Gaussians one unit either side of 0 meet at 0 with EER
Phi(-1); hand-made score arrays give exact FNMRs; pair counts follow from class sizes. Tiny
datasets (dataset.json, metadata.parquet or parts/*.parquet, 8x8 PNG crops) are written here.
"""

from __future__ import annotations

import io
import json
import math
import re
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facelatent.datasets import quality
from facelatent.datasets.quality import (
    attribute_spreads,
    dataset_quality,
    det_curve,
    eer,
    fnmr_at_fmr,
    identity_collisions,
    intra_class_spread,
    measuring_model,
    read_dataset,
    verification_scores,
)

PHI_MINUS_1 = 0.5 * math.erfc(1 / math.sqrt(2))   # Phi(-1) = 0.158655...


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_force(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    x = unit(x.astype(np.float64))
    genuine, impostor = [], []
    for i, j in combinations(range(len(y)), 2):
        (genuine if y[i] == y[j] else impostor).append(float(x[i] @ x[j]))
    return genuine, impostor


# -- error rates ----------------------------------------------------------------------------------
def test_eer_of_two_gaussians_is_phi_of_minus_one() -> None:
    rng = np.random.default_rng(0)
    rate, threshold = eer(rng.normal(1, 1, 200_000), rng.normal(-1, 1, 200_000))
    assert abs(rate - PHI_MINUS_1) < 0.005
    assert abs(threshold) < 0.02


def test_eer_of_separated_scores_is_zero() -> None:
    rate, threshold = eer(np.array([0.6, 0.7, 0.9]), np.array([-0.2, 0.1, 0.5]))
    assert rate == 0.0
    assert 0.5 < threshold <= 0.6


def test_eer_interpolates_between_thresholds() -> None:
    # At t = 2: FMR 1/2 (imp 2 accepted), FNMR 1/2 (gen 1 rejected): the curves meet exactly there.
    assert eer(np.array([1.0, 3.0]), np.array([0.0, 2.0])) == pytest.approx((0.5, 2.0))
    # t = 2: FMR 1/2, FNMR 1/3; t = 3: FMR 0, FNMR 1/3. FNMR - FMR goes -1/6 -> +1/3, zero a
    # third of the way: rate 1/2 - 1/6 = 1/3 (= FNMR), threshold 2 + 1/3.
    rate, threshold = eer(np.array([1.0, 3.0, 4.0]), np.array([0.0, 2.0]))
    assert rate == pytest.approx(1 / 3) and threshold == pytest.approx(7 / 3)


def test_fnmr_at_fmr_exact() -> None:
    impostor = np.arange(1000) / 1000                       # 0.000 ... 0.999
    genuine = np.array([0.5, 0.9895, 0.995, 1.0])
    # FMR 1e-2 lets 10 impostors through (0.990 ... 0.999); 0.989 must be rejected; the smallest
    # score above it is the genuine 0.9895, and only the genuine 0.5 lies below: FNMR 1/4.
    p = fnmr_at_fmr(genuine, impostor, 1e-2)
    assert p == (0.25, 0.9895, True)
    # FMR 1e-3 lets 1 through (0.999), so 0.998 is rejected and 0.999 is the threshold: the
    # genuine 0.5, 0.9895 and 0.995 fall below it.
    p = fnmr_at_fmr(genuine, impostor, 1e-3)
    assert (p.fnmr, p.threshold, p.resolved) == (0.75, 0.999, False)   # 1000 < 10 / 1e-3 pairs
    # Ties: three impostors at the top with FMR 1/2 of 4 allowed: all three must be rejected.
    p = fnmr_at_fmr(np.array([0.8, 0.95]), np.array([0.1, 0.9, 0.9, 0.9]), 0.5)
    assert p.threshold == 0.95 and p.fnmr == 0.5
    # Nothing scores above the bar: the threshold sits just above it and rejects everything.
    p = fnmr_at_fmr(np.array([0.2]), np.array([0.1, 0.9]), 0.1)
    assert p.fnmr == 1.0 and 0.9 < p.threshold < 0.9 + 1e-12
    with pytest.raises(ValueError, match="fmr must be a rate"):
        fnmr_at_fmr(genuine, impostor, 0.0)
    with pytest.raises(ValueError, match="genuine holds no scores"):
        fnmr_at_fmr(np.array([]), impostor)


def test_det_curve_runs_from_one_over_i_to_one() -> None:
    rng = np.random.default_rng(1)
    g, i = rng.normal(1, 1, 3000), rng.normal(-1, 1, 10_000)
    fmr, fnmr = det_curve(g, i, points=50)
    assert fmr[0] == pytest.approx(1e-4) and fmr[-1] == 1.0 and fnmr[-1] == 0.0
    assert np.all(np.diff(fmr) > 0) and np.all(np.diff(fnmr) <= 0) and len(fmr) <= 50


# -- verification scores --------------------------------------------------------------------------
def test_verification_scores_counts_and_values() -> None:
    rng = np.random.default_rng(2)
    classes, k = 5, 4
    y = np.repeat(np.arange(classes), k)
    perm = rng.permutation(y.size)                            # labels need not be grouped
    x, y = rng.normal(size=(y.size, 16)) * 3, y[perm]
    genuine, impostor = verification_scores(x, y)
    assert genuine.size == classes * k * (k - 1) // 2 == 30
    assert impostor.size == 20 * 19 // 2 - 30 == 160
    want_g, want_i = brute_force(x, y)
    np.testing.assert_allclose(np.sort(genuine), np.sort(want_g), atol=1e-12)
    np.testing.assert_allclose(np.sort(impostor), np.sort(want_i), atol=1e-12)


def test_verification_scores_in_small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 60)
    x = rng.normal(size=(60, 8))
    whole = verification_scores(x, y)
    monkeypatch.setattr(quality, "BLOCK_ELEMENTS", 50)        # a block of one row or a few
    blocked = verification_scores(x, y)
    for a, b in zip(whole, blocked):
        np.testing.assert_allclose(np.sort(a), np.sort(b), atol=1e-12)


def test_impostor_sampling_respects_cap_and_seed() -> None:
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(6), 5)
    x = rng.normal(size=(30, 32))
    _, every = verification_scores(x, y)
    assert every.size == 30 * 29 // 2 - 6 * 10 == 375
    for cap in (50, 300):                                     # rejection draws; a permutation
        g, a = verification_scores(x, y, max_impostor=cap, seed=7)
        assert g.size == 60 and a.size == cap
        assert np.unique(a).size == cap                       # distinct pairs
        assert np.abs(a[:, None] - every[None, :]).min(axis=1).max() < 1e-12   # impostor pairs
        np.testing.assert_array_equal(a, verification_scores(x, y, max_impostor=cap, seed=7)[1])
        assert not np.array_equal(a, verification_scores(x, y, max_impostor=cap, seed=8)[1])
    assert verification_scores(x, y, max_impostor=375)[1].size == 375
    with pytest.raises(ValueError, match="max_impostor"):
        verification_scores(x, y, max_impostor=0)


def test_verification_scores_rejects_bad_input() -> None:
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"shape \[N, D\]"):
        verification_scores(np.ones(4), np.arange(4))
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[4\]"):
        verification_scores(x, np.arange(3))
    x[1, 0] = np.nan
    with pytest.raises(ValueError, match="1 rows with NaN"):
        verification_scores(x, np.arange(4))


# -- classes --------------------------------------------------------------------------------------
def test_identity_collisions() -> None:
    rng = np.random.default_rng(5)
    centres = unit(rng.normal(size=(4, 64)))
    centres[3] = centres[1]                                   # class 3 is class 1 again
    y = np.repeat(np.array([10, 11, 12, 13]), 6)
    x = unit(centres[np.repeat(np.arange(4), 6)] + 0.05 * rng.normal(size=(24, 64)))
    found = identity_collisions(x, y, threshold=0.8)
    assert [(a, b) for a, b, _ in found] == [(11, 13)]
    assert found[0][2] > 0.95
    # Every pair at threshold -1, largest cosine first; one class collides with nothing.
    every = identity_collisions(x, y, threshold=-1.0)
    assert len(every) == 6 and every[0][:2] == (11, 13)
    assert [c for *_, c in every] == sorted((c for *_, c in every), reverse=True)
    assert identity_collisions(x[:6], y[:6], threshold=-1.0) == []


def test_identity_collisions_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(40, 4)), np.arange(40) % 9
    whole = identity_collisions(x, y, 0.3)
    monkeypatch.setattr(quality, "BLOCK_ELEMENTS", 10)
    blocked = identity_collisions(x, y, 0.3)
    assert [p[:2] for p in blocked] == [p[:2] for p in whole] and len(whole) > 3
    np.testing.assert_allclose([p[2] for p in blocked], [p[2] for p in whole], atol=1e-12)


def test_intra_class_spread_exact() -> None:
    values = np.array([1, 3, np.nan, 5, 2, np.nan, 4, 4, 7, np.nan])
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3])
    # class 0: [1, 3, 5] std sqrt(8/3); class 1: one value, skipped; class 2: [4, 4, 7] std sqrt(2);
    # class 3: no value.
    assert intra_class_spread(values, labels) == pytest.approx((math.sqrt(8 / 3) + math.sqrt(2)) / 2)
    assert intra_class_spread(values, labels, ddof=1) == pytest.approx((2 + math.sqrt(3)) / 2)
    assert math.isnan(intra_class_spread(np.array([1.0, np.nan]), np.array([0, 0])))
    spreads = attribute_spreads({"zeta": values, "age": values, "yaw": np.zeros(10)}, labels)
    assert list(spreads) == ["yaw", "age", "zeta"] and spreads["yaw"] == 0.0


# -- dataset folders ------------------------------------------------------------------------------
def write_dataset(folder: Path, *, label_model: str = "sface", classes: int = 4, per_class: int = 3,
                  seed: int = 0, spread: float = 0.3, parts: bool = False,
                  models: tuple[str, ...] = ("sface", "dlib")) -> Path:
    """A tiny dataset: `classes` x `per_class` samples with 8x8 crops of one colour per class;
    sample 1 of class 0 found no face (path "", NaN embeddings)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"label_model": label_model, "sampling": "paper",
                                                     "max_off": 2.5, "classes": classes}))
    rows: dict[str, list] = {k: [] for k in ("identity", "sample", "reference_seed", "side", "offset",
                                             "offset_norm", "path", "face", "yaw", "age", "smile")}
    emb = {m: [] for m in models}
    centres = {m: unit(rng.normal(size=(classes, 128))) for m in models}
    for c in range(classes):
        for k in range(per_class):
            face = not (c == 0 and k == 1)
            path = f"images/{c:05d}/{c:05d}_{k:03d}.png" if face else ""
            if face:
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((8, 8, 3), (40 * c + 10 * k) % 256, np.uint8)).save(folder / path)
            for m in models:
                noise = spread / np.sqrt(128) * rng.normal(size=128)
                emb[m].append(unit(centres[m][c] + noise) if face else np.full(128, np.nan))
            values = (c, k, 1000 + c, "same" if k % 2 == 0 else "other", 0.5 * k, 0.5 * k, path, face,
                      float(10 * c + k), np.nan if k == 2 else 30.0 + c * k, 0.1 * k)
            for key, v in zip(rows, values):
                rows[key].append(v)
    types = {"identity": pa.int32(), "sample": pa.int32(), "reference_seed": pa.int64(),
             "side": pa.string(), "path": pa.string(), "face": pa.bool_()}
    columns = {k: pa.array(v, types.get(k, pa.float32())) for k, v in rows.items()}
    for m in models:
        flat = pa.array(np.stack(emb[m]).astype(np.float32).ravel(), pa.float32())
        columns[f"embedding_{m}"] = pa.FixedSizeListArray.from_arrays(flat, 128)
    latents = pa.array(rng.normal(size=classes * per_class * 16).astype(np.float32))
    columns["latent"] = pa.FixedSizeListArray.from_arrays(latents, 16)     # not read back
    table = pa.table(columns)
    if parts:
        (folder / "parts").mkdir()
        half = (classes // 2) * per_class
        pq.write_table(table.slice(half).take(np.arange(table.num_rows - half)[::-1]),
                       folder / "parts" / "part-001.parquet")
        pq.write_table(table.slice(0, half), folder / "parts" / "part-000.parquet")
        (folder / "parts" / ".part-002.parquet").write_text("an unfinished part")
    else:
        pq.write_table(table, folder / "metadata.parquet")
    return folder


def test_identity_cost_of_moves_finds_the_move_that_blurs_the_class() -> None:
    rng = np.random.default_rng(0)
    classes, per, dim = 40, 12, 32
    centres = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), per)
    blur = rng.normal(size=labels.size)            # the move that costs identity
    harmless = rng.normal(size=labels.size)        # a move the embedding ignores
    noise = rng.normal(size=(labels.size, dim))
    emb = centres[labels] + (0.2 + 0.6 * np.abs(blur))[:, None] * noise
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[3] = np.nan                                 # left out, not fitted as a zero
    cost = quality.identity_cost_of_moves(emb, labels, {"blur": blur, "harmless": harmless,
                                                        "constant": np.ones(labels.size)})
    assert list(cost["per_sd"]) == ["blur", "harmless"]      # a constant move says nothing
    assert cost["images"] == labels.size - 1
    b, h = cost["per_sd"]["blur"], cost["per_sd"]["harmless"]
    assert b["slope"] < -10 * b["se"] and abs(h["slope"]) < 3 * h["se"]
    assert 0 < cost["r2"] <= 1 and cost["intercept"] > 0.5
    # The same images as a class of one each: nothing to compare with.
    assert quality.identity_cost_of_moves(emb, np.arange(labels.size), {"blur": blur}) is None
    assert quality.identity_cost_of_moves(emb, labels, {}) is None


def test_read_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dataset(tmp_path / "ds")
    asked: list[list[str]] = []
    read_table = pq.read_table

    def spy(file: Path, columns: list[str]) -> pa.Table:
        asked.append(columns)
        return read_table(file, columns=columns)

    monkeypatch.setattr(pq, "read_table", spy)
    t = read_dataset(folder)
    assert "latent" not in asked[0] and "embedding_dlib" in asked[0]       # latents stay on disk
    assert t.manifest["label_model"] == "sface" and t.source == tmp_path / "ds" / "metadata.parquet"
    np.testing.assert_array_equal(t.labels, [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    np.testing.assert_array_equal(t.samples, [0, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    assert t.row_labels.size == 12 and t.paths[1] == "images/00000/00000_002.png"
    assert set(t.embeddings) == {"sface", "dlib"} and t.embedding("dlib").shape == (11, 128)
    assert t.embedding("dlib").dtype == np.float32 and np.isfinite(t.embedding("dlib")).all()
    np.testing.assert_allclose(np.linalg.norm(t.embedding("sface"), axis=1), 1, atol=1e-6)
    assert set(t.attributes) == {"yaw", "age", "smile"}                  # not offset, offset_norm
    np.testing.assert_array_equal(t.attributes["yaw"][:3], [0, 2, 10])
    assert np.isnan(t.attributes["age"][1]) and t.attributes["age"][3] == 31
    assert list(t.side[:3]) == ["same", "same", "same"] and t.offset_norm[1] == 1.0
    # Read through dataset.json as well.
    assert read_dataset(tmp_path / "ds" / "dataset.json").labels.size == 11


def test_read_dataset_parts_fallback(tmp_path: Path) -> None:
    whole = read_dataset(write_dataset(tmp_path / "a", seed=3))
    split = read_dataset(write_dataset(tmp_path / "b", seed=3, parts=True))
    assert split.source == tmp_path / "b" / "parts"
    np.testing.assert_array_equal(split.labels, whole.labels)         # sorted again
    np.testing.assert_array_equal(split.samples, whole.samples)
    np.testing.assert_array_equal(split.embedding("sface"), whole.embedding("sface"))


def test_read_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere is not a dataset folder: it does not exist"):
        read_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty is not a dataset folder: it has no dataset.json"):
        read_dataset(tmp_path / "empty")
    (tmp_path / "empty" / "dataset.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"empty has no metadata.parquet and no parts/\*.parquet"):
        read_dataset(tmp_path / "empty")
    (tmp_path / "empty" / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"dataset.json is not valid JSON"):
        read_dataset(tmp_path / "empty")
    folder = write_dataset(tmp_path / "sface_only", models=("sface",))
    with pytest.raises(ValueError, match=r"metadata.parquet has no column embedding_dlib .*it has: "
                                         r"embedding_sface"):
        read_dataset(folder, models=["dlib"])
    with pytest.raises(ValueError, match="no column embedding_dlib"):
        read_dataset(folder).embedding("dlib")
    pq.write_table(pq.read_table(folder / "metadata.parquet").drop_columns(["face"]),
                   folder / "metadata.parquet")
    with pytest.raises(ValueError, match=r"metadata.parquet lacks the column\(s\) face"):
        read_dataset(folder)


def test_dataset_quality(tmp_path: Path) -> None:
    t = read_dataset(write_dataset(tmp_path / "ds", classes=5, per_class=4, spread=0.1))
    q = dataset_quality(t, "dlib")
    json.dumps(q, allow_nan=False)
    assert (q["classes"], q["rows"], q["images"], q["images_without_face"]) == (5, 20, 19, 1)
    assert q["images_per_class"] == {"min": 3, "median": 4.0, "max": 4}
    assert q["genuine"]["pairs"] == 3 + 4 * 6 and q["impostor"]["pairs"] == 19 * 18 // 2 - 27
    assert not q["impostor"]["sampled"]
    assert q["eer"]["rate"] == 0.0 and q["genuine"]["mean"] > 0.9          # tight, distinct classes
    assert set(q["fnmr_at_fmr"]) == {"0.001", "0.01"} and not q["fnmr_at_fmr"]["0.001"]["resolved"]
    assert q["collisions"]["count"] == 0 and q["collisions"]["top"] == []
    assert list(q["intra_class_spread"]) == ["yaw", "age", "smile"]
    # yaw = 10 class + sample; class 0 lost sample 1 (no face).
    want = np.mean([np.std([0, 2, 3]), *[np.std([0, 1, 2, 3])] * 4])
    assert q["intra_class_spread"]["yaw"] == pytest.approx(want)
    sampled = dataset_quality(t, "dlib", max_impostor=20)
    assert sampled["impostor"]["pairs"] == 20 and sampled["impostor"]["sampled"]


def test_measuring_model() -> None:
    assert measuring_model({"label_model": "sface"})[0] == "dlib"
    assert measuring_model({"label_model": "dlib"})[0] == "sface"
    assert measuring_model({})[0] == "sface"


# -- the report -----------------------------------------------------------------------------------
def test_crop_grid_png(tmp_path: Path) -> None:
    from facelatent.datasets.report import crop_grid_png

    t = read_dataset(write_dataset(tmp_path / "ds"))
    png, bad = crop_grid_png(t, identities=2, images=4)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert bad == 0 and img.shape == (2 * 10 - 2, 4 * 10 - 2, 3)          # 8x8 crops, 2 px apart
    assert img[0, 0, 0] == 0 and img[0, 10, 0] == 20 and img[0, 20, 0] == 255   # class 0: 2 crops
    assert img[10, 0, 0] == 40 and img[10, 20, 0] == 60 and img[10, 30, 0] == 255  # class 1: 3
    (t.path / t.paths[0]).unlink()
    assert crop_grid_png(t, 1, 1)[1] == 1


def test_build_quality_report(tmp_path: Path) -> None:
    from facelatent.datasets.report import build_quality_report

    ds = write_dataset(tmp_path / "exface", label_model="sface", classes=5, per_class=4, spread=0.4)
    base = write_dataset(tmp_path / "random", label_model="dlib", classes=4, per_class=3, seed=1,
                         spread=4.0)
    summary = build_quality_report(ds, tmp_path / "out" / "q.html", baseline=base)
    html = (tmp_path / "out" / "q.html").read_text()
    assert summary["model"] == "dlib" and "labelled with sface" in summary["model_reason"]
    assert summary["dataset"]["model"] == summary["baseline"]["model"] == "dlib"
    json.dumps(summary, allow_nan=False)
    for q in (summary["dataset"], summary["baseline"]):
        assert f"{100 * q['eer']['rate']:.2f}% at cos" in html
    assert summary["baseline"]["eer"]["rate"] > summary["dataset"]["eer"]["rate"]
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 4       # histogram, DET, 2 grids
    assert "Measured with <b>dlib</b>" in html and "exface" in html and "random" in html
    assert "was labelled with dlib itself" in html                             # the baseline
    assert "paper" in html and "<td>max_off</td><td>2.5</td>" in html
    assert "http" not in html.replace("http-equiv", "")                        # nothing to fetch

    only = build_quality_report(base, tmp_path / "b.html", grid_identities=0)
    assert only["model"] == "sface" and only["baseline"] is None
    assert (tmp_path / "b.html").read_text().count("data:image/png;base64,") == 2   # no crop grid
