"""How well a synthetic dataset's identities separate: verification scores, EER, FNMR at a fixed
FMR, identity collisions and intra-class attribute spread. The measures are pure numpy with
float64 arithmetic; `read_dataset` reads a dataset folder with pyarrow.

    table = read_dataset("runs/exfacegan")                  # rows with a face, as numpy arrays
    model, why = measuring_model(table.manifest)            # "dlib" for an SFace-labelled set
    q = dataset_quality(table, model)                       # JSON-able dict
    genuine, impostor = verification_scores(table.embedding(model), table.labels)
    eer(genuine, impostor), fnmr_at_fmr(genuine, impostor, 1e-3)

Protocol: every pair of images of one class is a genuine pair, every pair of images of two
classes an impostor pair, and a pair's score is the cosine of its two embeddings. A threshold t
accepts a pair when score >= t, so FMR(t) = share of impostor scores >= t and FNMR(t) = share of
genuine scores < t. A dataset is measured with the recogniser that did NOT label its identity
boundaries: the labelling recogniser separates the classes by construction, so its scores would
flatter the dataset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from facelatent.io import read_json

__all__ = ["DatasetTable", "OperatingPoint", "attribute_spreads", "dataset_quality", "det_curve",
           "eer", "fnmr_at_fmr", "identity_collisions", "identity_cost_of_moves", "identity_kept",
           "intra_class_spread", "measuring_model", "read_dataset", "verification_scores"]

# float64 entries of one block of a similarity matrix (32 MB): blocks keep N = 20,000 images
# (an N x N matrix would take 3.2 GB) within a small, fixed memory budget.
BLOCK_ELEMENTS = 4_000_000
# Spreads are listed in this order first (pose, expression, age, smile), then the others.
SPREAD_ORDER = ("yaw", "pitch", "roll", "expression_neutral", "expression_happy", "age", "smile")


class OperatingPoint(NamedTuple):
    """`fnmr_at_fmr`'s answer."""

    fnmr: float       # share of genuine scores < threshold
    threshold: float  # accept a pair when its score >= threshold
    resolved: bool    # at least 10 / fmr impostor scores, so the FMR is measured, not guessed


# -- checks ---------------------------------------------------------------------------------------
def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must have shape [N, D], got {list(x.shape)}")
    bad = int((~np.isfinite(x).all(axis=1)).sum())
    if bad:
        raise ValueError(f"embeddings has {bad} rows with NaN or inf; keep only the rows with a "
                         "face (face == True) and a finite embedding")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if (norm == 0).any():
        raise ValueError(f"embeddings has {int((norm == 0).sum())} all-zero rows: no direction, no cosine")
    return x / norm


def _labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape [N] = [{n}] to match embeddings, got {list(y.shape)}")
    return y


def _scores(values: np.ndarray, name: str) -> np.ndarray:
    """Finite float64 scores, sorted ascending."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError(f"{name} holds no scores: it needs at least one pair")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(v)).sum())} NaN or inf scores")
    return np.sort(v)


def _segments(sorted_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) row of each class in labels sorted ascending."""
    n = sorted_labels.shape[0]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]) if n else np.empty(0, int)
    return starts, np.r_[starts[1:], n].astype(int)


# -- verification scores --------------------------------------------------------------------------
def _upper_pairs(x: np.ndarray) -> np.ndarray:
    """Cosines x[i] . x[j] for i < j, row-major, in blocks of rows."""
    k = x.shape[0]
    rows = max(1, BLOCK_ELEMENTS // max(k, 1))
    out = [np.empty(0)]
    for r0 in range(0, k, rows):
        r1 = min(k, r0 + rows)
        sim = x[r0:r1] @ x.T
        out.append(sim[np.arange(k)[None, :] > np.arange(r0, r1)[:, None]])
    return np.concatenate(out)


def _all_impostors(x: np.ndarray, row_end: np.ndarray) -> np.ndarray:
    """Every impostor cosine of label-sorted rows: row i against rows j >= row_end[i]."""
    n = x.shape[0]
    rows = max(1, BLOCK_ELEMENTS // max(n, 1))
    out = [np.empty(0)]
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        c0 = int(row_end[r0])  # row_end never decreases, so the block's first row has the smallest
        sim = x[r0:r1] @ x[c0:].T
        out.append(sim[np.arange(c0, n)[None, :] >= row_end[r0:r1, None]])
    return np.concatenate(out)


def _distinct(rng: np.random.Generator, total: int, m: int) -> np.ndarray:
    """`m` distinct integers drawn uniformly from range(total), sorted. Draws with rejection of
    repeats (the first m distinct draws are a uniform sample without replacement) unless m is
    at least half of total, where a permutation costs no more than the answer."""
    if 2 * m >= total:
        return np.sort(rng.permutation(total)[:m])
    got = np.empty(0, dtype=np.int64)
    while got.size < m:
        draws = np.concatenate([got, rng.integers(0, total, size=int(1.1 * (m - got.size)) + 16)])
        _, first = np.unique(draws, return_index=True)
        got = draws[np.sort(first)]
    return np.sort(got[:m])


def verification_scores(embeddings: np.ndarray, labels: np.ndarray, *, max_impostor: int = 2_000_000,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of genuine and impostor pairs.

    embeddings: [N, D] finite, non-zero (renormalised here); labels: [N] class of each row.
    Returns (genuine [G], impostor [I]) float64 in [-1, 1]: G = sum over classes of k(k-1)/2,
    every pair i < j of one class; I = every pair of two classes when there are at most
    `max_impostor` of them, else `max_impostor` distinct pairs drawn uniformly with `seed`.
    Similarities are computed in blocks of `BLOCK_ELEMENTS` entries, never as one N x N matrix.
    """
    x = _unit_rows(embeddings)
    y = _labels(labels, x.shape[0])
    if int(max_impostor) < 1:
        raise ValueError(f"max_impostor must be a positive number of pairs, got {max_impostor}")
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]
    starts, ends = _segments(y)
    genuine = np.concatenate([np.empty(0)] + [_upper_pairs(x[s:e]) for s, e in zip(starts, ends)])
    n = x.shape[0]
    row_end = np.repeat(ends, ends - starts)          # first row of the next class, per row
    per_row = (n - row_end).astype(np.int64)          # impostor partners j > i of each row
    total = int(per_row.sum())
    if total <= int(max_impostor):
        return genuine, _all_impostors(x, row_end)
    picks = _distinct(np.random.default_rng(seed), total, int(max_impostor))
    first = np.cumsum(per_row) - per_row              # pair index of each row's first pair
    i = np.searchsorted(first, picks, side="right") - 1
    j = row_end[i] + (picks - first[i])
    chunk = max(1, BLOCK_ELEMENTS // (2 * x.shape[1]))
    impostor = np.concatenate([np.einsum("nd,nd->n", x[i[c:c + chunk]], x[j[c:c + chunk]])
                               for c in range(0, picks.size, chunk)])
    return genuine, impostor


# -- error rates ----------------------------------------------------------------------------------
def _rates(g: np.ndarray, imp: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR) at thresholds t of sorted genuine g and impostor imp scores."""
    fmr = (imp.size - np.searchsorted(imp, t, side="left")) / imp.size
    fnmr = np.searchsorted(g, t, side="left") / g.size
    return fmr, fnmr


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """Equal error rate: (rate in [0, 1], threshold) where FMR == FNMR.

    genuine [G], impostor [I]: scores, higher = more alike. The sweep visits every distinct
    score (and one above the largest) as a threshold; between the last threshold where
    FNMR < FMR and the next, FMR and FNMR are interpolated linearly to where they meet.
    Perfectly separated scores give 0 at the smallest genuine score.
    """
    g, imp = _scores(genuine, "genuine"), _scores(impostor, "impostor")
    t = np.unique(np.concatenate([g, imp]))
    t = np.append(t, np.nextafter(t[-1], np.inf))
    fmr, fnmr = _rates(g, imp, t)
    d = fnmr - fmr          # -1 at the smallest score, +1 above the largest: it crosses 0
    k = int(np.argmax(d >= 0))
    a = d[k - 1] / (d[k - 1] - d[k])
    return float(fmr[k - 1] + a * (fmr[k] - fmr[k - 1])), float(t[k - 1] + a * (t[k] - t[k - 1]))


def fnmr_at_fmr(genuine: np.ndarray, impostor: np.ndarray, fmr: float = 1e-3) -> OperatingPoint:
    """FNMR at the threshold that lets through at most a share `fmr` of the impostors.

    genuine [G], impostor [I]: scores. The threshold is the smallest score (of either set; just
    above the largest rejected impostor score when none is above it) such that the share of
    impostor scores >= it is <= fmr, so ties never push the FMR past `fmr`. `resolved` is False
    when I < 10 / fmr: too few impostor pairs to tell such a small FMR from zero.
    """
    if not 0 < fmr < 1:
        raise ValueError(f"fmr must be a rate in (0, 1), e.g. 1e-3, got {fmr}")
    g, imp = _scores(genuine, "genuine"), _scores(impostor, "impostor")
    allowed = int(math.floor(fmr * imp.size * (1 + 1e-12)))   # impostors that may be accepted
    bar = imp[imp.size - 1 - allowed]                         # largest score that must be rejected
    above = [s[np.searchsorted(s, bar, side="right")] for s in (g, imp) if s[-1] > bar]
    threshold = float(min(above)) if above else float(np.nextafter(bar, np.inf))
    rate = np.searchsorted(g, threshold, side="left") / g.size
    return OperatingPoint(float(rate), threshold, bool(imp.size * fmr >= 10 * (1 - 1e-12)))


def det_curve(genuine: np.ndarray, impostor: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """DET curve: (fmr [P], fnmr [P]) at about `points` thresholds, spaced evenly on a log FMR
    axis from 1 / I to 1 (each threshold is an impostor score; P <= points)."""
    g, imp = _scores(genuine, "genuine"), _scores(impostor, "impostor")
    ranks = np.unique(np.round(np.geomspace(1, imp.size, max(2, points))).astype(np.int64))
    return _rates(g, imp, imp[imp.size - ranks])


# -- classes --------------------------------------------------------------------------------------
def identity_collisions(embeddings: np.ndarray, labels: np.ndarray,
                        threshold: float) -> list[tuple[Any, Any, float]]:
    """Pairs of classes that a recogniser would take for one identity.

    embeddings [N, D], labels [N]. Each class is represented by the mean of its (unit) embeddings,
    renormalised; returns (a, b, cos) for every pair of classes a < b with cos >= threshold,
    largest cosine first. The class means are compared in blocks, never as one C x C matrix.
    """
    x = _unit_rows(embeddings)
    y = _labels(labels, x.shape[0])
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]
    starts, _ = _segments(y)
    if starts.size < 2:
        return []
    classes = y[starts]
    means = np.add.reduceat(x, starts, axis=0)
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    c = classes.size
    rows = max(1, BLOCK_ELEMENTS // c)
    a_idx, b_idx, cos = [], [], []
    for r0 in range(0, c, rows):
        r1 = min(c, r0 + rows)
        sim = means[r0:r1] @ means.T
        hit = (sim >= threshold) & (np.arange(c)[None, :] > np.arange(r0, r1)[:, None])
        ra, rb = np.nonzero(hit)
        a_idx.append(ra + r0), b_idx.append(rb), cos.append(sim[ra, rb])
    a, b, s = np.concatenate(a_idx), np.concatenate(b_idx), np.concatenate(cos)
    order = np.lexsort((b, a, -s))
    return [(classes[a[k]].item(), classes[b[k]].item(), float(s[k])) for k in order]


def intra_class_spread(values: np.ndarray, labels: np.ndarray, *, ddof: int = 0) -> float:
    """Mean over classes of the within-class standard deviation of `values`.

    values [N] (NaN = not measured, ignored), labels [N]. Classes with fewer than 2 finite
    values are skipped; NaN when no class is left. ddof 0 = population std (numpy's default).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    y = _labels(labels, v.shape[0])
    keep = np.isfinite(v)
    v, y = v[keep], y[keep]
    if v.size == 0:
        return math.nan
    _, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    means = np.bincount(inv, weights=v) / counts
    squares = np.bincount(inv, weights=(v - means[inv]) ** 2)
    ok = counts >= 2
    return float(np.mean(np.sqrt(squares[ok] / (counts[ok] - ddof)))) if ok.any() else math.nan


def attribute_spreads(attributes: Mapping[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """`intra_class_spread` of every attribute score ([N] each): pose (yaw, pitch, roll),
    expression, age and smile first, then the others by name."""
    names = [n for n in SPREAD_ORDER if n in attributes]
    names += sorted(n for n in attributes if n not in names)
    return {n: intra_class_spread(attributes[n], labels) for n in names}


def identity_cost_of_moves(embeddings: np.ndarray, labels: np.ndarray,
                           moves: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    """How much identity each kind of move costs: a least-squares fit of every image's mean
    cosine to the other images of its class against the size of its moves, |move| / (the
    move's std over the dataset) per name, with an intercept; the varied mode's attribute
    steps ("strength_<name>" columns) and the offset along the identity normal.

    embeddings [N, D] unit rows (non-finite rows left out), labels [N], moves: name -> [N].
    Returns {"per_sd": {name: {"slope", "se"}}, "intercept", "images", "r2"}: slope = change
    of the mean genuine cosine per sd of that move, holding the others (negative: that move
    blurs the class), se its standard error. None with fewer images than terms + 2 or no move.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    y_lab = _labels(labels, emb.shape[0])
    cols = {n: np.abs(np.asarray(v, dtype=np.float64)) for n, v in moves.items()}
    keep = np.isfinite(emb).all(axis=1)
    for v in cols.values():
        keep &= np.isfinite(v)
    names = [n for n, v in cols.items() if np.std(v[keep]) > 0] if keep.any() else []
    emb, y_lab = emb[keep], y_lab[keep]
    sim = np.full(len(emb), np.nan)
    for c in np.unique(y_lab):
        idx = np.flatnonzero(y_lab == c)
        if idx.size < 2:
            continue
        e = emb[idx]
        s = e @ e.T
        sim[idx] = (s.sum(axis=1) - np.diag(s)) / (idx.size - 1)
    ok = np.isfinite(sim)
    if not names or ok.sum() < len(names) + 3:
        return None
    X = np.column_stack([cols[n][keep][ok] / np.std(cols[n][keep][ok]) for n in names]
                        + [np.ones(int(ok.sum()))])
    y = sim[ok]
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = max(1, y.size - X.shape[1])
    cov = (resid @ resid / dof) * np.linalg.pinv(X.T @ X)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    total = float(((y - y.mean()) ** 2).sum())
    return {"per_sd": {n: {"slope": float(coef[i]), "se": float(se[i])}
                       for i, n in enumerate(names)},
            "intercept": float(coef[-1]), "images": int(y.size),
            "r2": float(1 - resid @ resid / total) if total > 0 else math.nan}


# -- reading --------------------------------------------------------------------------------------
REQUIRED_COLUMNS = ("identity", "sample", "face", "path")
NOT_ATTRIBUTES = ("offset", "offset_norm", "max_off_raw")  # float columns of geometry, not scores
NOT_ATTRIBUTE_PREFIXES = ("strength_",)     # the varied mode's attribute steps (latent units)


@dataclass(frozen=True, eq=False)
class DatasetTable:
    """A dataset's manifest and its rows with a face (face == True), as numpy arrays, sorted by
    identity then sample."""

    path: Path                          # the dataset folder
    source: Path                        # metadata.parquet, or the parts/ folder that was read
    manifest: dict[str, Any]            # dataset.json
    labels: np.ndarray                  # [N] int64 identity (class index) of each image
    samples: np.ndarray                 # [N] int64 index of the image within its class
    paths: np.ndarray                   # [N] object (str): crop path relative to `path`
    embeddings: dict[str, np.ndarray]   # recogniser -> [N, D] float32, from "embedding_<name>"
    attributes: dict[str, np.ndarray]   # score name -> [N] float64, NaN = not scored
    offset_norm: np.ndarray             # [N] float64 (NaN when the column is absent)
    side: np.ndarray                    # [N] object (str): "same" / "other" ("" when absent)
    row_labels: np.ndarray              # [R] int64 identity of every row, with a face or not
    # The varied mode's attribute steps ("strength_<name>", latent units) and every image's signed
    # offset along its identity normal ("offset"); empty / None when the columns are absent.
    strengths: dict[str, np.ndarray] = field(default_factory=dict)
    offset: np.ndarray | None = None

    def embedding(self, model: str) -> np.ndarray:
        """[N, D] float32 embeddings of `model` ("sface" or "dlib"); unit length where finite."""
        if model not in self.embeddings:
            have = ", ".join(f"embedding_{m}" for m in self.embeddings) or "none"
            raise ValueError(f"{self.source} has no column embedding_{model} (the {model} "
                             f"embeddings); it has: {have}. Measure with another model, or embed "
                             f"the crops with {model} first")
        return self.embeddings[model]


def _read_table(folder: Path) -> tuple[Any, Path]:
    """metadata.parquet, else parts/*.parquet concatenated; and the path that was read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    single = folder / "metadata.parquet"
    files = [single] if single.is_file() else sorted(f for f in (folder / "parts").glob("*.parquet")
                                                     if not f.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{folder} has no metadata.parquet and no parts/*.parquet: the "
                                "dataset's metadata is missing (was its writing finished?)")
    tables = []
    for f in files:
        try:
            # Skip nested columns other than embeddings: the latents alone can outweigh the rest.
            schema = pq.read_schema(f)
            keep = [n for n, t in zip(schema.names, schema.types)
                    if n.startswith("embedding_") or not pa.types.is_nested(t)]
            tables.append(pq.read_table(f, columns=keep))
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"cannot read {f} as parquet: {exc}") from exc
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowException as exc:
        raise ValueError(f"the parts in {folder / 'parts'} do not share one schema: {exc}") from exc
    return table, (single if single.is_file() else folder / "parts")


def _list_column(column: Any, name: str, source: Path) -> np.ndarray:
    """A list<float> column of R rows as [R, D] float32; NaN rows where the value is null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks()
    t = arr.type
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        raise ValueError(f"{source}: column {name} must hold lists of floats "
                         f"(fixed_size_list<float>[D]), got {t}")
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    kept = arr.filter(pa.array(valid))
    lengths = np.unique(np.asarray(pc.list_value_length(kept).to_numpy(zero_copy_only=False)))
    if lengths.size > 1:
        raise ValueError(f"{source}: column {name} holds lists of different lengths {lengths.tolist()}")
    dim = int(lengths[0]) if lengths.size else int(getattr(t, "list_size", 0))
    out = np.full((len(arr), dim), np.nan, dtype=np.float32)
    if len(kept):
        values = np.asarray(kept.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        out[valid] = values.reshape(-1, dim)
    return out


def read_dataset(path: str | Path, *, models: Sequence[str] | None = None) -> DatasetTable:
    """Read a dataset folder: dataset.json and metadata.parquet (or parts/*.parquet when the
    single file is absent), sorted by identity then sample, keeping the rows with face == True.

    models: recognisers whose "embedding_<name>" column must be there (ValueError naming the
    column otherwise); None reads every embedding column there is. Raises FileNotFoundError for
    a missing folder, dataset.json or metadata, ValueError for unreadable or incomplete files.
    """
    import pyarrow as pa

    folder = Path(path)
    if folder.is_file() and folder.name in ("dataset.json", "metadata.parquet"):
        folder = folder.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a dataset folder: "
                                f"{'it is a file' if folder.exists() else 'it does not exist'}")
    manifest_file = folder / "dataset.json"
    if not manifest_file.is_file():
        raise FileNotFoundError(f"{folder} is not a dataset folder: it has no dataset.json (a dataset "
                                "folder holds dataset.json, metadata.parquet and images/)")
    manifest = read_json(manifest_file, kind="a dataset manifest")
    table, source = _read_table(folder)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{source} lacks the column(s) {', '.join(missing)}: dataset metadata needs "
                         f"{', '.join(REQUIRED_COLUMNS)}")
    for c in ("identity", "sample", "face"):
        if table.column(c).null_count:
            raise ValueError(f"{source}: column {c} has {table.column(c).null_count} null values")
    if not pa.types.is_boolean(table.schema.field("face").type):
        raise ValueError(f"{source}: column face must be bool, got {table.schema.field('face').type}")
    table = table.sort_by([("identity", "ascending"), ("sample", "ascending")])
    row_labels = np.asarray(table.column("identity").to_numpy(), dtype=np.int64)
    table = table.filter(table.column("face"))
    n = table.num_rows
    names = table.column_names
    wanted = [c[len("embedding_"):] for c in names if c.startswith("embedding_")]
    fields = {f.name: f.type for f in table.schema}
    attributes = {c: np.asarray(table.column(c).to_numpy(), dtype=np.float64) for c in names
                  if pa.types.is_floating(fields[c]) and c not in NOT_ATTRIBUTES
                  and not c.startswith(NOT_ATTRIBUTE_PREFIXES)}

    def text(c: str) -> np.ndarray:
        values = table.column(c).to_pylist() if c in names else [""] * n
        return np.asarray(["" if v is None else v for v in values], dtype=object)

    out = DatasetTable(
        path=folder, source=source, manifest=manifest,
        labels=np.asarray(table.column("identity").to_numpy(), dtype=np.int64),
        samples=np.asarray(table.column("sample").to_numpy(), dtype=np.int64),
        paths=text("path"),
        embeddings={m: _list_column(table.column(f"embedding_{m}"), f"embedding_{m}", source)
                    for m in wanted},
        attributes=attributes,
        offset_norm=(np.asarray(table.column("offset_norm").to_numpy(), dtype=np.float64)
                     if "offset_norm" in names else np.full(n, np.nan)),
        side=text("side"), row_labels=row_labels,
        strengths={c[len("strength_"):]: np.asarray(table.column(c).to_numpy(), dtype=np.float64)
                   for c in names if c.startswith("strength_") and pa.types.is_floating(fields[c])},
        offset=(np.asarray(table.column("offset").to_numpy(), dtype=np.float64)
                if "offset" in names else None))
    for m in models or ():
        out.embedding(m)
    return out


# -- the whole dataset ----------------------------------------------------------------------------
def measuring_model(manifest: Mapping[str, Any]) -> tuple[str, str]:
    """(recogniser, why): the one that did NOT label the identity boundaries, so the measure is
    independent of the labelling: "dlib" when dataset.json's label_model is "sface", else "sface"."""
    label = manifest.get("label_model")
    if label == "sface":
        return "dlib", ("the identity boundaries were labelled with sface, so dlib measures them "
                        "independently")
    if label is None:
        return "sface", "dataset.json records no label_model; sface by default"
    return "sface", (f"the identity boundaries were labelled with {label}, so sface measures them "
                     "independently")


def identity_kept(genuine: np.ndarray, impostor: np.ndarray, model: str) -> dict[str, Any] | None:
    """How many pairs `model` takes for one person at its LFW-calibrated threshold
    (`facelatent.faces.calibration.SAME_PERSON_THRESHOLD`): {"threshold", "genuine_same" (share
    of genuine pairs above it: the identity kept), "impostor_same" (share of impostor pairs
    above it: identities merged)}. None for a recogniser without a calibrated threshold."""
    from facelatent.faces.calibration import SAME_PERSON_THRESHOLD

    if model not in SAME_PERSON_THRESHOLD:
        return None
    t = SAME_PERSON_THRESHOLD[model]
    g, imp = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    return {"threshold": t, "genuine_same": _num((g > t).mean()) if g.size else None,
            "impostor_same": _num((imp > t).mean()) if imp.size else None}


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _stats(v: np.ndarray) -> dict[str, Any]:
    return {"pairs": int(v.size), "mean": _num(v.mean()) if v.size else None,
            "std": _num(v.std()) if v.size else None}


def dataset_quality(table: DatasetTable, model: str, *, max_impostor: int = 2_000_000, seed: int = 0,
                    scores: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Every measure of one dataset, as a JSON-able dict (NaN -> None).

    table: `read_dataset(path)`; model: the recogniser whose embeddings are scored ("sface" or
    "dlib", see `measuring_model`); scores: (genuine, impostor) from `verification_scores` of
    this table and model when they are already computed. Images whose embedding is not finite
    are left out and counted. The collisions use the FMR = 1e-3 threshold.
    """
    emb = table.embedding(model)
    ok = np.isfinite(emb).all(axis=1)
    labels = table.labels[ok]
    if scores is None:
        scores = verification_scores(emb[ok], labels, max_impostor=max_impostor, seed=seed)
    genuine, impostor = (np.asarray(s, dtype=np.float64) for s in scores)
    classes, counts = np.unique(table.row_labels, return_counts=True)
    faces = dict(zip(*np.unique(table.labels, return_counts=True)))
    per_class = np.array([faces.get(c, 0) for c in classes], dtype=np.int64)
    sizes = np.unique(labels, return_counts=True)[1]
    total = int(labels.size * (labels.size - 1) // 2 - (sizes * (sizes - 1) // 2).sum())
    q: dict[str, Any] = {
        "path": str(table.path), "model": model, "label_model": table.manifest.get("label_model"),
        "sampling": table.manifest.get("sampling"), "classes": int(classes.size),
        "rows": int(table.row_labels.size), "images": int(table.labels.size),
        "images_without_face": int(table.row_labels.size - table.labels.size),
        "images_without_embedding": int((~ok).sum()),
        "images_per_class": {"min": int(per_class.min()) if per_class.size else 0,
                             "median": float(np.median(per_class)) if per_class.size else 0.0,
                             "max": int(per_class.max()) if per_class.size else 0},
        "genuine": _stats(genuine),
        "impostor": {**_stats(impostor), "total_pairs": total, "sampled": impostor.size < total},
        "eer": None, "fnmr_at_fmr": {}, "collisions": None, "identity_kept": None,
        "intra_class_spread": {k: _num(v) for k, v in
                               attribute_spreads(table.attributes, table.labels).items()},
    }
    if genuine.size == 0 or impostor.size == 0:
        q["note"] = "no genuine or no impostor pairs: error rates need at least two classes with two images"
        return q
    rate, thr = eer(genuine, impostor)
    q["eer"] = {"rate": rate, "threshold": thr}
    for fmr in (1e-3, 1e-2):
        p = fnmr_at_fmr(genuine, impostor, fmr)
        q["fnmr_at_fmr"][f"{fmr:g}"] = {"fnmr": p.fnmr, "threshold": p.threshold, "resolved": p.resolved}
    q["identity_kept"] = identity_kept(genuine, impostor, model)
    if table.strengths:              # the varied mode: which move costs the class most
        moves = dict(table.strengths)
        if table.offset is not None:
            moves["identity offset"] = table.offset
        q["identity_cost_of_moves"] = identity_cost_of_moves(emb[ok], labels,
                                                             {k: v[ok] for k, v in moves.items()})
    thr = q["fnmr_at_fmr"]["0.001"]["threshold"]
    found = identity_collisions(emb[ok], labels, thr)
    q["collisions"] = {"threshold": thr, "fmr": 1e-3, "count": len(found),
                       "top": [[a, b, c] for a, b, c in found[:10]]}
    return q
