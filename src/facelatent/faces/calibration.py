"""Same person or not: each recogniser's threshold, calibrated on LFW through facelatent's own
pipeline, and the protocol that chooses it (the LFW reading and embedding are
`facelatent.faces.lfw`).

Two faces are the same person when the cosine of their unit embeddings is above the
recogniser's :data:`SAME_PERSON_THRESHOLD`; identity is reported as the fraction of faces above
it beside the mean cosine (:func:`identity_report`), never by a rule of thumb.

The measurement (:func:`verify_lfw`, ``facelatent verify lfw``) follows LFW's View 2 protocol:

1. Read ``pairs.txt`` (:func:`parse_pairs`): 10 folds of 300 same-person and 300
   different-person pairs.
2. Embed every image once, as any photo is embedded (:class:`FaceAnalyzer`: YuNet, 68
   landmarks, the recogniser's own alignment); both recognisers share one detection.
3. Cosine per pair; NaN where either face was not found.
4. For each fold, choose the threshold that maximises accuracy on the other folds
   (:func:`best_threshold`) and report accuracy on the held-out one (:func:`cross_validate`).
   A pair with NaN is wrong at every threshold: it counts as a failure, never dropped.
5. The threshold chosen on all folds is the one the library keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor


__all__ = ["SAME_PERSON_THRESHOLD", "best_threshold", "cross_validate", "identity_report",
           "pair_accuracy", "same_person"]

# Cosine above which two faces are the same person: the threshold that maximises accuracy on all
# 6,000 LFW View 2 pairs (7,701 photos, every face found), measured on 2026-12-06 with
#   facelatent verify lfw --lfw ../shared/datasets/lfw --model both --cache /tmp/lfw-cache
# 10-fold accuracy: sface 99.32 +- 0.40 %, dlib 98.98 +- 0.35 %. Mean cosine of same-person pairs
# sface 0.671, dlib 0.953; of different people sface 0.093, dlib 0.834 (dlib's unit embeddings
# sit close together, so its customary 0.6 distance is no guide here).
SAME_PERSON_THRESHOLD: dict[str, float] = {"sface": 0.3360, "dlib": 0.9089}


# -- same person -------------------------------------------------------------------------------

def _threshold(model: str) -> float:
    if model not in SAME_PERSON_THRESHOLD:
        raise ValueError(f"model must be one of {', '.join(map(repr, SAME_PERSON_THRESHOLD))} "
                         f"(a recogniser with a calibrated threshold), got {model!r}")
    return SAME_PERSON_THRESHOLD[model]


def _as_numpy(values: Tensor | np.ndarray | Sequence[float] | float, name: str) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers (a float, an array or a tensor of cosines), "
                         f"got {type(values).__name__}") from None


def same_person(cosine: Tensor | np.ndarray | Sequence[float] | float,
                model: str) -> np.ndarray:
    """Whether each cosine (of two unit embeddings from ``model``, "sface" or "dlib") is above
    the recogniser's calibrated :data:`SAME_PERSON_THRESHOLD`: a bool array of ``cosine``'s
    shape. NaN (no face found) is never the same person."""
    threshold = _threshold(model)
    return _as_numpy(cosine, "cosine") > threshold


def identity_report(cosines: Tensor | np.ndarray | Sequence[float],
                    model: str) -> dict[str, float]:
    """How well identity is kept over ``cosines`` ``[N]`` (each face against its reference,
    embedded by ``model``).

    Returns ``{"mean_cosine", "fraction_same", "threshold"}``: the mean over faces that were
    found (NaN if none was), the fraction of all ``N`` faces above the threshold (a face not
    found, NaN, counts as not the same person), and the threshold used.
    """
    values = _as_numpy(cosines, "cosines").reshape(-1)
    threshold = _threshold(model)
    if values.size == 0:
        raise ValueError("cosines is empty; pass at least one cosine")
    found = ~np.isnan(values)
    mean = float(values[found].mean()) if found.any() else float("nan")
    return {"mean_cosine": mean, "fraction_same": float((values > threshold).mean()),
            "threshold": threshold}


# -- the protocol ------------------------------------------------------------------------------

def _check_scores(cosines: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cosines`` as float64 ``[P]`` and ``same`` as bool ``[P]``, P >= 1, or a ValueError."""
    c = np.asarray(cosines, dtype=np.float64).reshape(-1)
    y = np.asarray(same).reshape(-1)
    if y.dtype != np.bool_:
        raise ValueError(f"same must be a bool array (True for same-person pairs), got dtype "
                         f"{y.dtype}")
    if c.shape != y.shape:
        raise ValueError(f"cosines has {c.size} values but same has {y.size}; pass one label "
                         "per pair")
    if c.size == 0:
        raise ValueError("cosines is empty; pass at least one pair")
    return c, y


def pair_accuracy(cosines: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs ``[P]`` classified right by ``cosine > threshold``; a pair whose
    cosine is NaN (a face not found) is wrong."""
    c, y = _check_scores(cosines, same)
    right = ((c > threshold) == y) & ~np.isnan(c)
    return float(right.mean())


def best_threshold(cosines: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold that maximises :func:`pair_accuracy` on ``cosines`` ``[P]`` with labels
    ``same`` ``[P]`` (bool), and that accuracy.

    Candidates are the midpoints between consecutive distinct cosines and one value outside
    each end, so a threshold never sits on a measured cosine. Among equally accurate candidates
    the middle one is taken. NaN pairs are wrong at every threshold (they lower the accuracy but
    cannot move the threshold); with no finite cosine the threshold is NaN.
    """
    c, y = _check_scores(cosines, same)
    valid = ~np.isnan(c)
    if not valid.any():
        return float("nan"), 0.0
    order = np.argsort(c[valid], kind="stable")
    s, labels = c[valid][order], y[valid][order]
    n = s.size
    # Cut k calls s[k:] the same person: right are the different pairs below plus the same above.
    different_below = np.concatenate([[0], np.cumsum(~labels)])
    same_above = labels.sum() - np.concatenate([[0], np.cumsum(labels)])
    right = different_below + same_above
    cut_ok = np.ones(n + 1, dtype=bool)
    cut_ok[1:n] = s[1:] > s[:-1]                   # never cut between equal cosines
    right = np.where(cut_ok, right, -1)
    ties = np.flatnonzero(right == right.max())
    k = int(ties[len(ties) // 2])
    cuts = np.concatenate([[np.nextafter(s[0], -np.inf)], (s[:-1] + s[1:]) / 2, [s[-1]]])
    return float(cuts[k]), float(right[k] / c.size)


def cross_validate(cosines: np.ndarray, same: np.ndarray, fold: np.ndarray,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LFW's protocol on pairs ``[P]`` with fold numbers ``fold`` ``[P]``: for each fold, the
    threshold chosen (:func:`best_threshold`) on the other folds and the accuracy on this one.

    Returns ``(folds [F], thresholds [F], accuracies [F])``, folds in ascending order. With a
    single fold there is nothing to hold out: its threshold is chosen on itself (optimistic).
    """
    c, y = _check_scores(cosines, same)
    f = np.asarray(fold).reshape(-1)
    if f.shape != c.shape:
        raise ValueError(f"fold has {f.size} values but cosines has {c.size}; pass one fold "
                         "number per pair")
    folds = np.unique(f)
    thresholds = np.empty(len(folds))
    accuracies = np.empty(len(folds))
    for i, k in enumerate(folds):
        test = f == k
        train = ~test if len(folds) > 1 else test
        thresholds[i], _ = best_threshold(c[train], y[train])
        accuracies[i] = pair_accuracy(c[test], y[test], thresholds[i])
    return folds, thresholds, accuracies
