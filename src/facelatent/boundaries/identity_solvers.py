"""Solvers of identity boundaries: every reference shares the same candidate latents X [N, D]
and differs only in its labels, so each solver fits a block of references at once.

- "lda" (default, closed form): with a shared covariance S, two-class LDA's direction is
  S^-1 (mu_same - mu_diff). For the total covariance S_T of a reference's training set,
  S_T = S_W + p1 p0 d d^T with d = mu_same - mu_diff, so by Sherman-Morrison
  S_T^-1 d = S_W^-1 d / (1 + p1 p0 d^T S_W^-1 d): the same direction as with the within-class
  covariance S_W. S_T barely varies between references (each trains on a random 70 % of the
  same candidates: all of them under the median split; under "quantile" the middle is missing,
  so the shared S is an approximation there), so ONE shrunk covariance of the standardised X
  serves every reference (`shrinkage`: None = Ledoit-Wolf, or a fixed intensity in [0, 1]),
  and every class-mean difference comes from one matrix product
  `(same / n_same - diff / n_diff) @ X`. The intercept puts the hyperplane midway between the
  projected class means of the training set: the Bayes threshold for equal Gaussian classes
  with equal priors, and both label rules give equal class sizes. (The best separating
  threshold of the training projections would need a sort per reference and gained nothing
  in bench/identity.py.)
- "logistic": L2-penalised logistic regression for all references at once in torch (weights
  [R, D], logits X @ W.T), by accelerated gradient descent (FISTA, a fixed step from a bound
  on the gradient's Lipschitz constant, so every reference's iterates are independent) in
  the coordinates whitened by that shared covariance, started from the LDA solution; penalty
  `1 / (2 C)` times the squared norm of the whitened weights against the sum of the training
  losses (scikit-learn's `C`).
- "linear-svc": ExFaceGAN's solver, one scikit-learn `LinearSVC(dual=False, C)` per reference,
  on latents min-max scaled to [-1, 1] per reference as ExFaceGAN does (`minmax=False` fits
  raw latents). Unlike ExFaceGAN, the normal and the intercept are mapped back to raw latent
  units, so the boundary is applied in the space it was fitted in. Slow: for parity checks.

bench/identity.py compares their speed and accuracy; the README quotes its figures.
Everything here works on the candidates centred by their mean ("centred space"); the caller
maps the intercepts back to raw latent units.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

IDENTITY_SOLVERS = ("lda", "logistic", "linear-svc")
MIN_TRAIN_PER_CLASS = 2
MIN_VAL_PER_CLASS = 1


def rows_where(select: np.ndarray) -> slice | np.ndarray:
    """Rows where `select` is true: a slice (a view, no copy) when it is every row."""
    return slice(None) if select.all() else np.flatnonzero(select)


def check_counts(labels: np.ndarray, split: float, ref_seeds: np.ndarray) -> None:
    each = np.minimum((labels == 1).sum(axis=1), (labels == 0).sum(axis=1))
    n_train = np.round(split * each)
    bad = (n_train < MIN_TRAIN_PER_CLASS) | (each - n_train < MIN_VAL_PER_CLASS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"too few candidates: reference seed {int(ref_seeds[i])} gets "
                         f"{int(each[i])} per class, and needs at least {MIN_TRAIN_PER_CLASS} "
                         f"to train and {MIN_VAL_PER_CLASS} to validate at split={split}; use "
                         "more samples, rule='median', or a larger quantile")


def train_mask(labels: np.ndarray, ref_seeds: np.ndarray, split: float, seed: int) -> np.ndarray:
    """bool [B, N]: the first round(split * n_c) of each class c after a per-reference shuffle."""
    keys = np.stack([np.random.default_rng([seed, int(s)]).random(labels.shape[1])
                     for s in ref_seeds])
    train = np.zeros(labels.shape, dtype=bool)
    for c in (0, 1):
        mine = labels == c
        n_train = np.round(split * mine.sum(axis=1)).astype(np.int64)
        masked = np.where(mine, keys, 2.0)        # keys are in [0, 1)
        cut = np.empty(len(labels))
        for k in np.unique(n_train):
            group = rows_where(n_train == k)
            cut[group] = np.partition(masked[group], int(k) - 1, axis=1)[:, int(k) - 1]
        train |= masked <= cut[:, None]
    return train



class SharedCovariance:
    """The candidates X [N, D] centred (`xc`), their mean, spread and shrunk correlation, and
    the whitening that correlation defines."""

    def __init__(self, x: np.ndarray, shrinkage: float | None = None) -> None:
        from sklearn.covariance import ledoit_wolf, shrunk_covariance

        self.mean = x.mean(axis=0)
        self.std = x.std(axis=0)
        self.std[self.std == 0] = 1.0
        # Standardised first: shrinkage towards a multiple of I assumes comparable scales.
        xs = (x - self.mean) / self.std
        if shrinkage is None:
            cov, shrinkage = ledoit_wolf(xs, assume_centered=True)
        else:
            cov = shrunk_covariance(xs.T @ xs / len(xs), float(shrinkage))
        self.shrinkage = float(shrinkage)
        eigval, eigvec = np.linalg.eigh(cov)
        if eigval.min() <= 0:
            raise ValueError("the candidates' latent covariance is singular; are latents repeated?")
        self.whiten = eigvec / np.sqrt(eigval)        # z = ((x - mean) / std) @ whiten, cov(z) = I
        # Centred, the float32 matrix products stay precise however far W is from the origin.
        self.xc = (x - self.mean).astype(np.float32)
        self._z: np.ndarray | None = None
        self._moment: float | None = None

    def whitened(self) -> np.ndarray:
        """The candidates [N, D] in whitened coordinates, float32 (computed once, then kept)."""
        if self._z is None:
            self._z = ((self.xc / self.std) @ self.whiten).astype(np.float32)
        return self._z

    def whitened_moment(self) -> float:
        """Largest eigenvalue of the second moment of [z, 1] over the candidates (z centred)."""
        if self._moment is None:
            z = self.whitened().astype(np.float64)
            self._moment = max(float(np.linalg.eigvalsh(z.T @ z / len(z))[-1]), 1.0)
        return self._moment

    def solve(self, d_std: np.ndarray) -> np.ndarray:
        """cov^-1 d for rows d [B, D] in standardised units."""
        return (d_std @ self.whiten) @ self.whiten.T


def _class_weights(labels: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [B, N] rows averaging over the training same (first) and different (second)."""
    same, diff = train & (labels == 1), train & (labels == 0)
    return ((same / same.sum(axis=1, keepdims=True)).astype(np.float32),
            (diff / diff.sum(axis=1, keepdims=True)).astype(np.float32))


def lda(xc: np.ndarray, labels: np.ndarray, train: np.ndarray, shared: SharedCovariance
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred-space (w [B, D], b [B], w @ xc.T [B, N]): w = S^-1 (mu_same - mu_diff), midway
    intercept."""
    a_same, a_diff = _class_weights(labels, train)
    delta = ((a_same - a_diff) @ xc).astype(np.float64)           # [B, D] class-mean differences
    w = shared.solve(delta / shared.std) / shared.std              # standardised -> raw units
    # Midway between the projected class means, from the projections `evaluate` needs anyway.
    proj = w.astype(np.float32) @ xc.T                             # [B, N]
    b = -0.5 * (np.einsum("bn,bn->b", a_same, proj) + np.einsum("bn,bn->b", a_diff, proj))
    return w, b.astype(np.float64), proj


def logistic(xc: np.ndarray, labels: np.ndarray, train: np.ndarray, shared: SharedCovariance,
              C: float, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Centred-space (w, b) of L2 logistic regression, all references at once (torch, FISTA)."""
    import torch

    z = torch.from_numpy(shared.whitened())                                      # [N, D]
    y = torch.from_numpy((labels == 1).astype(np.float32))
    weight = torch.from_numpy(train / train.sum(axis=1, keepdims=True)).float()    # mean loss
    lam = torch.from_numpy(1.0 / (C * train.sum(axis=1))).float()[:, None]         # [B, 1]
    a_same, a_diff = (torch.from_numpy(a) for a in _class_weights(labels, train))
    # Start from LDA's logistic parameters: the whitened class-mean difference, midway intercept.
    mu_same, mu_diff = a_same @ z, a_diff @ z
    u = mu_same - mu_diff
    c = -0.5 * (u * (mu_same + mu_diff)).sum(dim=1)
    # Step 1 / L, L a Lipschitz bound of the gradient: sigmoid' <= 1/4, and a training set's
    # second moment of [z, 1] is at most (N / n_train) times that of all N candidates.
    spread = shared.whitened_moment() * float((len(xc) / train.sum(axis=1)).max())
    step = 1.0 / (0.25 * spread + float(lam.max()))
    u_prev, c_prev, t = u.clone(), c.clone(), 1.0
    for _ in range(max_iter):
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        mom = (t - 1.0) / t_next
        u_look, c_look = u + mom * (u - u_prev), c + mom * (c - c_prev)
        g = weight * (torch.sigmoid(u_look @ z.T + c_look[:, None]) - y)             # [B, N]
        grad_u, grad_c = g @ z + lam * u_look, g.sum(dim=1)
        u_prev, c_prev, t = u, c, t_next
        u, c = u_look - step * grad_u, c_look - step * grad_c
        if float(grad_u.norm(dim=1).max()) < tol:
            break
    w = (u.double().numpy() @ shared.whiten.T) / shared.std      # whitened -> raw units
    return w, c.double().numpy()


def linear_svc(xc: np.ndarray, labels: np.ndarray, train: np.ndarray, C: float, minmax: bool,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred-space (w, b) from one LinearSVC(dual=False) per reference (ExFaceGAN's loop)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    w, b = np.zeros((len(labels), xc.shape[1])), np.zeros(len(labels))
    unconverged = 0
    for i in range(len(labels)):
        x = xc[labels[i] >= 0].astype(np.float64)
        scale, shift = np.ones(x.shape[1]), np.zeros(x.shape[1])
        if minmax:     # ExFaceGAN: MinMaxScaler((-1, 1)) on all of the reference's latents
            lo, hi = x.min(axis=0), x.max(axis=0)
            span = np.where(hi > lo, hi - lo, 1.0)
            scale, shift = 2.0 / span, -1.0 - 2.0 * lo / span
        rows = np.flatnonzero(train[i])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            svc = LinearSVC(dual=False, C=C, random_state=seed)
            svc.fit(xc[rows] * scale + shift, (labels[i, rows] == 1).astype(np.int64))
        unconverged += any(issubclass(c.category, ConvergenceWarning) for c in caught)
        coef = svc.coef_.reshape(-1)
        # coef . (x * scale + shift) + b_s = (coef * scale) . x + (b_s + coef . shift)
        w[i] = coef * scale
        b[i] = float(svc.intercept_[0]) + coef @ shift
    if unconverged:
        warnings.warn(f"linear-svc: {unconverged} of {len(labels)} fits did not converge",
                      stacklevel=3)
    return w, b


def evaluate(decision: np.ndarray, labels: np.ndarray, train: np.ndarray,
              out: dict[str, np.ndarray]) -> None:
    """Fill train/val accuracy and label counts of one block (views into the metric arrays)
    from the decision values [B, N] (> 0 = predicted same) of every candidate."""
    right = (decision > 0) == (labels == 1)
    used = labels >= 0
    val = used & ~train
    out["train_accuracy"][:] = (right & train).sum(axis=1) / train.sum(axis=1)
    out["val_accuracy"][:] = (right & val).sum(axis=1) / val.sum(axis=1)
    out["n_same"][:] = (labels == 1).sum(axis=1)
    out["n_different"][:] = (labels == 0).sum(axis=1)


def solver_options(solver: str, C: float, minmax: bool, max_iter: int, tol: float,
                    shrinkage: float | None) -> dict[str, Any]:
    covariance = ("shared, standardised, " +
                  ("Ledoit-Wolf shrinkage" if shrinkage is None else f"shrinkage {shrinkage}"))
    if solver == "lda":
        return {"covariance": covariance, "intercept": "midway between the class means"}
    if solver == "logistic":
        return {"C": C, "max_iter": max_iter, "tol": tol, "whitening": covariance, "init": "lda"}
    return {"C": C, "minmax": minmax, "dual": False}

