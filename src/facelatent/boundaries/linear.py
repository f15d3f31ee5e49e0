"""Linear attribute boundaries fitted with InterFaceGAN's protocol (Shen et al. 2020).

The protocol, as `LinearBoundary.fit` runs it on latents `[N, D]` and scores `[N]`:

1. Sort the samples by score. The top `ratio` fraction are positives (label 1), the bottom
   `ratio` fraction negatives (label 0); `ratio=None` or 0.5 splits all samples at the median.
2. Shuffle each class with a generator seeded by `random_state` and keep the first `split`
   fraction of each for training, the rest for validation (so both sets are balanced).
3. Fit a linear classifier WITH an intercept (InterFaceGAN's release drops it).
4. Report the validation accuracy and the accuracy on the remaining samples, the ones between
   the two extremes, each labelled 1 when its score is strictly above the median of ALL scores
   and predicted 1 when `normal . x + intercept > 0`. NaN when there are none (median split).
5. Refit on `bootstrap` seeded resamples (with replacement, per class) of the training set; the
   stability is the mean cosine between the refitted normals, over all pairs.

`protocol="interfacegan"` is InterFaceGAN's `train_boundary` exactly (Shen et al.'s release,
`utils/manipulator.py`): "svc" on raw latents, classes of `int(N * ratio)` samples from each end
of a descending argsort, `int(n * split)` of each shuffled by numpy's legacy generator seeded
with `random_state` (so `np.random.seed(S)` before their function and `random_state=S` here
give the same split and the same normal), and the remaining samples labelled by the midpoint
`(max + min) / 2` of the scores.

Remaining accuracy comes in two versions, both always reported, because the two tools label
the samples between the extremes differently: `remaining_accuracy` (ours: above the median of
all scores is positive) and `remaining_accuracy_interfacegan` (InterFaceGAN's: at or above the
midpoint of the highest and lowest score is positive). Only the second can be set beside
InterFaceGAN's published figures.

Solvers:

- "svc" (default): libsvm's `SVC(kernel="linear")` on raw latents, InterFaceGAN's solver.
  Chosen by edit quality, not accuracy (every solver separates the 2 % extremes): on a
  20,000-sample MobileStyleGAN store, editing 12 held-out faces by the same latent distances
  along each boundary (`scripts/compare_solvers.py`, the README's table), svc on the 2 % split
  had the least identity loss and side-effect drift per unit of attribute change averaged
  over yaw, smile, age, gender and eyeglasses; the others were 2-20 % worse on that average,
  and the best of them within the split-to-split spread. O(N^2) time and memory, so on a
  median split of a large store prefer "logistic".
- "logistic": L2-penalised logistic regression (scikit-learn, lbfgs), penalty `C`; the fastest
  on median splits, within 2 % of svc's edit quality on 2 % splits.
- "lda": two-class linear discriminant analysis with a Ledoit-Wolf-shrunk covariance, closed
  form (`shrunk_lda`). Best on isotropic Gaussian latents at 2%, but Ledoit-Wolf shrinks almost
  fully toward the identity when the only structure is the class spike, so it loses accuracy
  on median splits and on W's anisotropic covariance.
- "linear-svc": liblinear's linear SVM (squared hinge, `dual="auto"`), penalty `C`; slower
  than "logistic" and no more accurate in those runs.
- "mean-diff": the difference of the two classes' means, the hyperplane through their midpoint
  (no covariance, no penalty): the simplest direction, a baseline for the others.

Standardisation. With `standardize=None` the features are centred and scaled by the training
set's mean and standard deviation for "lda", "linear-svc" and "logistic" (liblinear penalises the
intercept, which is harmless only for centred features; the iterative solvers converge faster),
and left raw for "svc", as InterFaceGAN fits it, and for "mean-diff". (Ledoit-Wolf shrinkage toward a multiple
of the identity also assumes comparable feature scales.) The fitted normal and intercept are always
mapped back to the raw space the latents came in, so the boundary is applied where it was fitted.
"""

from __future__ import annotations

import time
import warnings
from datetime import datetime, timezone
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC, LinearSVC

from facelatent import __version__
from facelatent.boundaries.boundary import Boundary

SOLVERS = ("svc", "logistic", "lda", "linear-svc", "mean-diff")
PROTOCOLS = ("facelatent", "interfacegan")
MIN_TRAIN_PER_CLASS = 2
MIN_VAL_PER_CLASS = 1


class LinearBoundary(BaseEstimator):
    """Fit a hyperplane that separates high-score from low-score latents (a scikit-learn
    estimator: `get_params`, `set_params` and `sklearn.base.clone` work).

    The hyperparameters below are stored as given and checked in `fit`, which returns self;
    learned values end in `_`. See the module docstring for the protocol and the solvers.
    """

    def __init__(
        self,
        solver: str = "svc",          # "svc", "logistic", "lda", "linear-svc", "mean-diff" (docstring)
        ratio: float | None = 0.02,   # fraction per class from each end; None or 0.5 = median split
        split: float = 0.7,           # fraction of each class used for training, the rest validates
        C: float = 1.0,               # inverse regularisation strength (linear-svc, logistic, svc)
        random_state: int = 0,        # seeds the split, the bootstrap and the solver
        bootstrap: int = 5,           # refits for the stability estimate; 0 = skip
        standardize: bool | None = None,  # None = True except for svc (InterFaceGAN fits raw)
        protocol: str = "facelatent",  # or "interfacegan": its train_boundary exactly (docstring)
    ) -> None:
        self.solver = solver
        self.ratio = ratio
        self.split = split
        self.C = C
        self.random_state = random_state
        self.bootstrap = bootstrap
        self.standardize = standardize
        self.protocol = protocol

    # --- public API ----------------------------------------------------------------------
    def fit(self, latents: np.ndarray, scores: np.ndarray) -> LinearBoundary:
        """Fit on latents `[N, D]` (or W+ `[N, num_ws, D]`) and attribute scores `[N]`.

        Sets `normal_` (unit, `[D]` or `[num_ws, D]`), `intercept_` (so `normal_ . x +
        intercept_` is the signed distance to the hyperplane, positive = high score),
        `val_accuracy_`, `train_accuracy_`, `remaining_accuracy_`, `stability_`,
        `train_time_` (seconds, main fit only), `n_train_`, `n_val_`, `n_remaining_`, and
        `sigma_` (std of all samples' distances to the hyperplane: the unit of edit strengths).
        """
        self._check_params()
        x, latent_shape = self._check_latents(latents)
        s = self._check_scores(scores, len(x))
        n_each = self._per_class(len(x))
        rng = np.random.default_rng(self.random_state)
        if self.protocol == "interfacegan":
            train_pos, val_pos, train_neg, val_neg, middle = self._split_interfacegan(s, n_each)
        else:
            order = np.argsort(s, kind="stable")
            neg_idx, pos_idx = order[:n_each], order[len(x) - n_each:]
            middle = order[n_each: len(x) - n_each]
            n_train = self._n_train(n_each)
            perm_pos, perm_neg = rng.permutation(pos_idx), rng.permutation(neg_idx)
            train_pos, val_pos = perm_pos[:n_train], perm_pos[n_train:]
            train_neg, val_neg = perm_neg[:n_train], perm_neg[n_train:]
        n_train = len(train_pos)
        x_train = x[np.concatenate([train_pos, train_neg])]
        y_train = np.r_[np.ones(n_train), np.zeros(n_train)].astype(np.int64)

        start = time.perf_counter()
        w, b = self._fit_solver(x_train, y_train, self.random_state)
        self.train_time_ = time.perf_counter() - start
        norm = float(np.linalg.norm(w))
        if norm == 0.0 or not np.isfinite(norm):
            raise ValueError(f"solver {self.solver!r} returned a zero or non-finite normal; the "
                             "classes may be identical in latent space (check the scores)")
        self._normal = w / norm
        self.intercept_ = float(b / norm)
        self.normal_ = self._normal.reshape(latent_shape).astype(np.float32)

        self.train_accuracy_ = self._accuracy(x_train, y_train)
        x_val = x[np.concatenate([val_pos, val_neg])]
        y_val = np.r_[np.ones(len(val_pos)), np.zeros(len(val_neg))].astype(np.int64)
        self.val_accuracy_ = self._accuracy(x_val, y_val)
        if len(middle):
            y_mid = (s[middle] > np.median(s)).astype(np.int64)
            self.remaining_accuracy_ = self._accuracy(x[middle], y_mid)
            y_ifg = (s[middle] >= (s.max() + s.min()) / 2.0).astype(np.int64)
            self.remaining_accuracy_interfacegan_ = self._accuracy(x[middle], y_ifg)
        else:
            self.remaining_accuracy_ = self.remaining_accuracy_interfacegan_ = float("nan")
        self.n_train_, self.n_val_, self.n_remaining_ = len(y_train), len(y_val), len(middle)
        self.n_samples_, self.n_features_in_ = len(x), x.shape[1]
        # Spread of all samples along the normal: editing strengths are given in units of it,
        # so "+2" means the same for every attribute (the samples spread 1.0 along one normal
        # and 1.9 along another on MobileStyleGAN).
        self.sigma_ = float(np.std(x @ self._normal))
        self.stability_ = self._stability(x, train_pos, train_neg, rng)
        self.fitted_at_ = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self

    def decision_function(self, latents: np.ndarray) -> np.ndarray:
        """Signed distance to the hyperplane of latents `[N, D]` (or `[N, num_ws, D]`) -> `[N]`."""
        self._check_fitted()
        x, _ = self._check_latents(latents)
        if x.shape[1] != self._normal.size:
            raise ValueError(f"latents have {x.shape[1]} features, the boundary was fitted on "
                             f"{self._normal.size}")
        return x @ self._normal + self.intercept_

    def predict(self, latents: np.ndarray) -> np.ndarray:
        """1 on the high-score side of the hyperplane, 0 on the low side; `[N]` int64."""
        return (self.decision_function(latents) > 0).astype(np.int64)

    def metrics(self) -> dict[str, Any]:
        """The fitted accuracies, stability, timing and sample counts, as plain Python values."""
        self._check_fitted()
        return {
            "val_accuracy": self.val_accuracy_,
            "train_accuracy": self.train_accuracy_,
            "remaining_accuracy": self.remaining_accuracy_,
            "remaining_accuracy_interfacegan": self.remaining_accuracy_interfacegan_,
            "stability": self.stability_,
            "sigma": self.sigma_,
            "train_time_s": self.train_time_,
            "n_samples": self.n_samples_,
            "n_train": self.n_train_,
            "n_val": self.n_val_,
            "n_remaining": self.n_remaining_,
        }

    def to_boundary(self, attribute: str, space: str, provenance: dict[str, Any] | None = None) -> Boundary:
        """The fitted hyperplane as a `Boundary`, with metrics and the fit's provenance.

        `provenance` (command, store, ...) is merged over what the estimator knows: solver,
        hyperparameters, seed, sample counts, versions and the fit time.
        """
        self._check_fitted()
        prov: dict[str, Any] = {
            "method": "interfacegan-linear",
            "protocol": self.protocol,
            "solver": self.solver,
            "ratio": self.ratio,
            "split": self.split,
            "C": self.C,
            "seed": self.random_state,
            "bootstrap": self.bootstrap,
            "standardize": self._standardize(),
            "package": f"facelatent {__version__}",
            "scikit_learn": sklearn.__version__,
            "numpy": np.__version__,
            "fitted_at": self.fitted_at_,
            "intercept_known": True,
        }
        prov.update(provenance or {})
        return Boundary(self.normal_, self.intercept_, space=space, attribute=attribute,
                        metrics=self.metrics(), provenance=prov)

    # --- validation ------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.protocol == "interfacegan" and (self.solver != "svc" or self.standardize
                                                or float(self.C) != 1.0):
            raise ValueError("protocol 'interfacegan' is InterFaceGAN's train_boundary: solver "
                             "'svc' with C=1 on raw latents (standardize None or False); got "
                             f"solver={self.solver!r}, C={self.C}, standardize={self.standardize}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.ratio is not None and not 0.0 < float(self.ratio) <= 0.5:
            raise ValueError(f"ratio must be in (0, 0.5] (or None for a median split), got {self.ratio}")
        if not 0.0 < float(self.split) < 1.0:
            raise ValueError(f"split must be in (0, 1): the training fraction, got {self.split}")
        if not float(self.C) > 0.0:
            raise ValueError(f"C must be positive, got {self.C}")
        if int(self.bootstrap) < 0 or int(self.bootstrap) == 1:
            raise ValueError(f"bootstrap must be 0 (skip) or at least 2 (a mean cosine needs a pair), "
                             f"got {self.bootstrap}")

    @staticmethod
    def _check_latents(latents: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        x = np.asarray(latents)
        if x.ndim == 1:
            raise ValueError(f"Expected latents of shape [N, D] (or [N, num_ws, D]), got a 1-D array "
                             f"of shape {list(x.shape)}; for one latent use latents.reshape(1, -1)")
        if x.ndim not in (2, 3):
            raise ValueError(f"latents must have shape [N, D] or [N, num_ws, D], got {list(x.shape)}")
        if x.dtype.kind not in "fiu":
            raise ValueError(f"latents must be numeric, got dtype {x.dtype}")
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x.reshape(len(x), -1)).all(axis=1)).sum())
            raise ValueError(f"latents contain NaN or infinite values ({bad} of {len(x)} rows); "
                             "drop or repair those rows (for a store: `facelatent store verify "
                             "STORE`)")
        return x.reshape(len(x), -1).astype(np.float64), tuple(x.shape[1:])

    @staticmethod
    def _check_scores(scores: np.ndarray, n: int) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        if s.ndim != 1:
            raise ValueError(f"scores must have shape [N], got {list(s.shape)}")
        if len(s) != n:
            raise ValueError(f"latents and scores have different lengths: {n} latents, {len(s)} scores")
        if not np.isfinite(s).all():
            raise ValueError("scores contain NaN or infinite values; drop unscored samples first")
        return s

    def _n_train(self, n_each: int) -> int:
        if self.protocol == "interfacegan":
            return int(n_each * self.split)
        return int(round(self.split * n_each))

    def _split_interfacegan(self, s: np.ndarray, n_each: int) -> tuple[np.ndarray, ...]:
        """InterFaceGAN's selection, index for index: a descending argsort of the `[N, 1]`
        scores, then `np.random.shuffle` of each class's positions with the legacy generator
        (the calls its `train_boundary` makes after `np.random.seed(random_state)`)."""
        order = np.argsort(s.reshape(-1, 1), axis=0)[::-1, 0]
        n_train = self._n_train(n_each)
        legacy = np.random.RandomState(self.random_state)
        pos_perm = np.arange(n_each)
        legacy.shuffle(pos_perm)
        neg_perm = np.arange(n_each)
        legacy.shuffle(neg_perm)
        top, bottom = order[:n_each], order[len(s) - n_each:]
        return (top[pos_perm[:n_train]], top[pos_perm[n_train:]],
                bottom[neg_perm[:n_train]], bottom[neg_perm[n_train:]],
                order[n_each: len(s) - n_each])

    def _per_class(self, n: int) -> int:
        ratio = 0.5 if self.ratio is None else float(self.ratio)
        n_each = n // 2 if ratio >= 0.5 else int(n * ratio)
        n_train = self._n_train(n_each)
        if n_train < MIN_TRAIN_PER_CLASS or n_each - n_train < MIN_VAL_PER_CLASS:
            need = MIN_TRAIN_PER_CLASS + MIN_VAL_PER_CLASS
            raise ValueError(f"too few samples: ratio={self.ratio} of N={n} gives {n_each} per class "
                             f"({n_train} to train, {n_each - n_train} to validate); need at least "
                             f"{MIN_TRAIN_PER_CLASS} and {MIN_VAL_PER_CLASS} ({need} per class). Use "
                             "more samples or a larger ratio")
        return n_each

    def _check_fitted(self) -> None:
        if not hasattr(self, "normal_"):
            raise ValueError("this LinearBoundary is not fitted yet; call fit(latents, scores) first")

    # --- fitting ---------------------------------------------------------------------------
    def _standardize(self) -> bool:
        if self.standardize is None:
            return self.solver not in ("svc", "mean-diff")
        return bool(self.standardize)

    def _fit_solver(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        """Raw-space `(w [D], b)` with `w . x + b > 0` on the positive side (not normalised)."""
        if self._standardize():
            mean = x.mean(axis=0)
            std = x.std(axis=0)
            std[std == 0] = 1.0
            w_std, b_std = self._raw_solver_fit((x - mean) / std, y, seed)
            # w_std . (x - mean) / std + b_std = (w_std / std) . x + (b_std - w_std . mean / std)
            w = w_std / std
            return w, float(b_std - w @ mean)
        return self._raw_solver_fit(x, y, seed)

    def _raw_solver_fit(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        if self.solver == "lda":
            return shrunk_lda(x, y)
        if self.solver == "mean-diff":
            m1, m0 = x[y == 1].mean(axis=0), x[y == 0].mean(axis=0)
            w = m1 - m0
            return w, float(-w @ (m1 + m0) / 2.0)
        model: Any
        if self.solver == "linear-svc":
            model = LinearSVC(C=self.C, dual="auto", max_iter=5000, random_state=seed)
        elif self.solver == "logistic":
            model = LogisticRegression(C=self.C, max_iter=2000)
        else:
            model = SVC(kernel="linear", C=self.C)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            warnings.warn(f"solver {self.solver!r} did not fully converge; the normal may be "
                          "imprecise (try a smaller C)", stacklevel=4)
        coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
        return coef, float(np.asarray(model.intercept_).reshape(-1)[0])

    def _accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        if len(y) == 0:
            return float("nan")
        pred = (x @ self._normal + self.intercept_ > 0).astype(np.int64)
        return float(np.mean(pred == y))

    def _stability(self, x: np.ndarray, train_pos: np.ndarray, train_neg: np.ndarray,
                   rng: np.random.Generator) -> float:
        if int(self.bootstrap) == 0:
            return float("nan")
        normals = []
        y = np.r_[np.ones(len(train_pos)), np.zeros(len(train_neg))].astype(np.int64)
        for i in range(int(self.bootstrap)):
            idx = np.concatenate([rng.choice(train_pos, len(train_pos), replace=True),
                                  rng.choice(train_neg, len(train_neg), replace=True)])
            w, _ = self._fit_solver(x[idx], y, self.random_state + 1 + i)
            normals.append(w / np.linalg.norm(w))
        n = np.stack(normals)
        cos = n @ n.T
        pairs = cos[np.triu_indices(len(n), k=1)]
        return float(pairs.mean())


def shrunk_lda(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Two-class LDA with equal priors and a Ledoit-Wolf-shrunk shared covariance, closed form.

    x `[n, D]`, y `[n]` in {0, 1} -> `(w [D], b)`, positive on class 1's side. The shared
    covariance S of the class-centred samples is shrunk toward `mu I` (`mu = tr(S) / D`) by
    the intensity of Ledoit & Wolf (2004), `min(beta2, delta2) / delta2` with
    `delta2 = ||S - mu I||_F^2` and `beta2 = sum_k ||x_k x_k^T - S||_F^2 / n^2`; the sum has the
    closed form `sum_k ||x_k||^4 - n ||S||_F^2`, so no n x D x D tensor is built. Then
    `w = S_shrunk^-1 (m1 - m0)` and the hyperplane passes through the midpoint of the means.
    """
    pos, neg = y == 1, y == 0
    m1, m0 = x[pos].mean(axis=0), x[neg].mean(axis=0)
    xc = np.where(pos[:, None], x - m1, x - m0)
    n, dim = xc.shape
    cov = xc.T @ xc / n
    mu = float(np.trace(cov)) / dim
    s_sq = float(np.sum(cov * cov))
    delta2 = s_sq - 2.0 * mu * np.trace(cov) + dim * mu * mu  # ||S - mu I||_F^2
    row_sq = np.einsum("ij,ij->i", xc, xc)
    beta2 = max(float(np.sum(row_sq**2)) - n * s_sq, 0.0) / n**2
    shrinkage = 0.0 if delta2 <= 0.0 else min(beta2, delta2) / delta2
    cov *= 1.0 - shrinkage
    cov[np.diag_indices(dim)] += shrinkage * mu
    try:
        w = np.linalg.solve(cov, m1 - m0)
    except np.linalg.LinAlgError as exc:
        raise ValueError("LDA: the shared covariance is singular (are all latents identical "
                         "within a class?)") from exc
    return w, float(-w @ (m1 + m0) / 2.0)
