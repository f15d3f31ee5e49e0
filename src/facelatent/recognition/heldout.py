"""Verification on a synthetic dataset's own identities: how well a recogniser tells apart people
from the same generator that it never saw in training.

    from facelatent.recognition.heldout import evaluate_on_dataset
    r = evaluate_on_dataset("runs/fr-compare/train/varied", "runs/fr-compare-128/datasets/paper",
                            classes=range(96, 128))
    r["eer"], r["tar_at_far"]["0.001"], r["groups"]["eer_mean"], r["overlap"]

LFW asks whether a recogniser trained on synthetic faces recognises real people; this asks the
same question inside the generator's domain. Set side by side, the two separate what the
training data teaches (invariance to pose, expression, age) from how far it transfers to real
photos. Every pair of crops of the chosen classes is scored (all genuine pairs, all impostor
pairs): EER, TAR at FAR 1e-3 and 1e-2 ("resolved" as in `pair_rates`: at least 10 / FAR
impostor pairs), the mean cosines, and the same EER in ``groups`` disjoint groups of classes
(mean ± std, like LFW's folds). ``overlap`` counts the evaluated identities (reference seed and
side) that the recogniser's own training dataset also held, read from its ``config.json``; it
must be 0 for a held-out measurement (None when that dataset is no longer there). The dataset's
identities were labelled with one pretrained net (``label_model``), whose scores here are then
not independent of the labelling.

The pretrained "sface" and "dlib" read the embeddings the dataset build stored; a folder written
by `facelatent fr train` embeds the crops (flip-averaged, as on LFW).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from facelatent.datasets.quality import verification_scores

__all__ = ["PRETRAINED", "evaluate_on_dataset", "identities_of"]

PRETRAINED = ("sface", "dlib")


def identities_of(dataset: str | Path) -> dict[int, tuple[int, str]]:
    """class number -> (reference seed, side) of every class of a dataset folder, read from
    those columns alone (metadata.parquet, else its parts)."""
    import pyarrow.parquet as pq

    folder = Path(dataset)
    files = ([folder / "metadata.parquet"] if (folder / "metadata.parquet").is_file()
             else sorted((folder / "parts").glob("shard-*.parquet")))
    out: dict[int, tuple[int, str]] = {}
    for f in files:
        names = pq.read_schema(f).names
        if "reference_seed" not in names:
            raise ValueError(f"{f} has no reference_seed column; not a `dataset build` output")
        t = pq.read_table(f, columns=["identity", "reference_seed"]
                          + (["side"] if "side" in names else []))
        sides = t.column("side").to_pylist() if "side" in names else [""] * t.num_rows
        out.update((int(c), (int(r), str(d or ""))) for c, r, d in
                   zip(t.column("identity").to_pylist(), t.column("reference_seed").to_pylist(),
                       sides))
    return out


def _rates(emb: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    from facelatent.recognition.compare import operating_points

    genuine, impostor = verification_scores(emb, labels)
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError("no genuine or no impostor pairs: the chosen classes need at least two "
                         "classes with two crops each")
    return {**operating_points(genuine, impostor), "genuine_mean": float(genuine.mean()),
            "impostor_mean": float(impostor.mean())}


def _embed(model: str, table: Any, keep: np.ndarray, device: str, batch_size: int,
           flip: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """The trained recogniser's embeddings of the crops of ``table``'s rows ``keep`` (only
    those are read), and its config."""
    import torch

    from facelatent.recognition.checkpoint import load_recognizer, read_config
    from facelatent.recognition.data import read_crops

    recognizer = load_recognizer(model, device=device, flip=flip)
    images, _ = read_crops(table, np.flatnonzero(keep))
    out = np.empty((len(images), recognizer.dim), np.float32)
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            # [N, 3, 112, 112] uint8 -> [-1, 1], as the training reads them
            x = images[i:i + batch_size].to(device).float().div_(127.5).sub_(1.0)
            out[i:i + len(x)] = recognizer.embed(x, batch_size).float().cpu().numpy()
    return out, read_config(model)


def _overlap(config: dict[str, Any], evaluated: set[tuple[int, str]]) -> int | None:
    trained_on = config.get("dataset")
    if not trained_on or not Path(trained_on).is_dir():
        return None
    used = set(config.get("classes") or [])
    seen = {v for c, v in identities_of(trained_on).items() if not used or c in used}
    return len(evaluated & seen)


def evaluate_on_dataset(model: str | Path, dataset: str | Path, *,
                        classes: Iterable[int] | None = None, groups: int = 4,
                        device: str = "cpu", batch_size: int = 128,
                        flip: bool = True) -> dict[str, Any]:
    """Verification of ``model`` ("sface", "dlib" or an `fr train` folder) on the crops of
    ``dataset``'s ``classes`` (class numbers; None: all). See the module docstring for what is
    measured. One-line ValueError for an unknown class, a model that is neither, or fewer than
    two classes per group (groups >= 1; 1 skips the per-group spread)."""
    from facelatent.datasets.quality import read_dataset

    folder = Path(dataset)
    if str(model) not in PRETRAINED and not Path(model).is_dir():
        raise ValueError(f"model {str(model)!r} is neither {' nor '.join(PRETRAINED)} nor a "
                         "folder written by `facelatent fr train`")
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    table = read_dataset(folder, models=[str(model)] if str(model) in PRETRAINED else ())
    have = np.unique(table.labels)
    wanted = have if classes is None else np.unique(np.asarray(list(classes), dtype=np.int64))
    missing = np.setdiff1d(wanted, have)
    if missing.size:
        raise ValueError(f"{folder} has no crop of class {int(missing[0])} ({missing.size} of the "
                         f"{wanted.size} asked for are missing; it has classes {int(have.min())}-"
                         f"{int(have.max())})")
    need = 2 if groups == 1 else 2 * groups          # impostor pairs within every group
    if wanted.size < need:
        raise ValueError(f"{wanted.size} classes cannot make {groups} group(s) of at least two "
                         f"classes (impostor pairs need two); choose at least {need} classes or "
                         "fewer --groups")
    keep = np.isin(table.labels, wanted)
    labels = table.labels[keep]
    config: dict[str, Any] = {}
    if str(model) in PRETRAINED:
        emb = table.embedding(str(model))[keep]
    else:
        emb, config = _embed(str(model), table, keep, device, batch_size, flip)
    norms = np.linalg.norm(emb, axis=1)
    ok = np.isfinite(norms)                        # NaN: no face found, no embedding
    emb = emb[ok] / np.maximum(norms[ok, None], 1e-12)   # a zero vector matches nothing
    labels = labels[ok]
    result = {"model": str(model), "dataset": str(folder), "classes": int(wanted.size),
              "class_range": [int(wanted.min()), int(wanted.max())],
              "images": int(labels.size), "images_without_embedding": int((~ok).sum()),
              **_rates(emb, labels)}
    split = np.array_split(wanted, groups)
    per_group = [_rates(emb[np.isin(labels, g)], labels[np.isin(labels, g)])["eer"]
                 for g in split] if groups > 1 else []
    result["groups"] = {"count": groups, "eer": per_group,
                        "eer_mean": float(np.mean(per_group)) if per_group else None,
                        "eer_std": float(np.std(per_group)) if per_group else None}
    ids = identities_of(folder)
    evaluated = {ids[int(c)] for c in wanted}
    # Pretrained nets never saw the dataset; a trained one may have (its config says which).
    result["overlap"] = 0 if not config else _overlap(config, evaluated)
    result["label_model"] = table.manifest.get("label_model")
    return result
