"""The linear probe on frozen, cached features: the one geossl uses everywhere.

Multinomial logistic regression (binary cross-entropy per class for multi-label) on
standardised features, fitted full-batch with L-BFGS in torch (:func:`fit_linear`, the only
solver): on the few thousand labelled features of a label budget this converges in a fraction of
a second on CPU or GPU, where scikit-learn's ``LogisticRegression`` would be run once per weight
decay on CPU only. ``geossl evaluate``, the demo and the benchmarks all call it; they differ only
in how the L2 strength is chosen:

* :func:`linear_probe`: from a grid, on a stratified hold-out of the labelled samples (``geossl
  evaluate``) or by stratified k-fold cross-validation (``folds``, the PolSAR benchmark); no
  extra labels are used, then the probe is refitted on all of them;
* :func:`logreg_scores`: fixed, in scikit-learn's parametrisation (``C = 1`` by default: the
  objective of ``LogisticRegression(C=1)`` on standardised features, whose optimum is unique),
  as class probabilities: the demo's probe and the PolSAR benchmark's classical baseline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from geossl.runtime.threads import few_threads

#: weight decays tried on the hold-out (L2 penalty on the weights, per sample)
WEIGHT_DECAYS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@dataclasses.dataclass
class LinearProbe:
    """A fitted probe: standardisation plus a linear layer."""

    mean: Tensor
    std: Tensor
    weight: Tensor
    bias: Tensor
    weight_decay: float
    multilabel: bool

    def scores(self, x: Tensor) -> Tensor:
        """Logits ``(N, K)`` of features ``x``."""
        z = (x.to(self.weight) - self.mean) / self.std
        return z @ self.weight.T + self.bias


def fit_linear(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    weight_decay: float,
    max_iter: int = 200,
    device: str | torch.device = "cpu",
) -> LinearProbe:
    """Fit one logistic regression with a given weight decay.

    Args:
        x: features ``(N, D)``.
        y: classes ``(N,)`` or multi-hot ``(N, K)``.
        num_classes: K.
        weight_decay: L2 penalty ``wd / 2 * ||W||^2`` added to the mean loss.
        max_iter: L-BFGS iterations.
        device: where to fit.

    Returns:
        the probe.
    """
    dev = torch.device(device)
    x = x.to(dev, torch.float32)
    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std
    multilabel = y.ndim == 2
    y = y.to(dev)
    w = torch.zeros(num_classes, x.shape[1], device=dev, requires_grad=True)
    b = torch.zeros(num_classes, device=dev, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10, history_size=20)

    def closure() -> Tensor:
        opt.zero_grad()
        logits = z @ w.T + b
        if multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, y.float())
        else:
            loss = F.cross_entropy(logits, y.long())
        loss = loss + 0.5 * weight_decay * (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[no-untyped-call]
    return LinearProbe(mean, std, w.detach(), b.detach(), weight_decay, multilabel)


def _holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A stratified train/val split of the labelled rows, or ``None`` when too small."""
    rng = np.random.default_rng(seed)
    if y.ndim == 2:
        n = len(y)
        if n < 10:
            return None
        perm = rng.permutation(n)
        k = max(1, round(fraction * n))
        return np.sort(perm[k:]), np.sort(perm[:k])
    tr, va = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        if len(rows) < 2:
            return None
        k = max(1, round(fraction * len(rows)))
        va.append(rows[:k])
        tr.append(rows[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def _val_score(probe: LinearProbe, x: Tensor, y: Tensor) -> float:
    s = probe.scores(x).cpu()
    if probe.multilabel:
        return -float(F.binary_cross_entropy_with_logits(s, y.float()))
    # accuracy, ties broken by the (negative) validation loss
    acc = float((s.argmax(1) == y).float().mean())
    return acc - 1e-3 * float(F.cross_entropy(s, y.long()))


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    num_classes: int,
    *,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    folds: int = 0,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 200,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, dict[str, float]]:
    """Fit a linear probe on labelled features and score test features.

    The weight decay is chosen among ``weight_decays`` on the labelled rows only: by stratified
    ``folds``-fold cross-validation when ``folds >= 2`` and every class (single-label) has at
    least two labelled rows (:func:`_cross_validate`), else on a stratified hold-out of
    ``val_fraction`` of them. Validation score: accuracy, ties broken by the lower validation
    loss (multi-label: the negative loss).

    Args:
        train_x: labelled features ``(N, D)``.
        train_y: their labels (``(N,)`` classes or ``(N, K)`` multi-hot).
        test_x: features to score ``(M, D)``.
        num_classes: K.
        weight_decays: the grid searched.
        folds: cross-validation folds (< 2: hold-out selection).
        val_fraction: hold-out fraction (per class).
        seed: seed of the hold-out or of the folds.
        max_iter: L-BFGS iterations.
        device: where to fit.

    Returns:
        test logits ``(M, K)`` (on CPU) and ``{"weight_decay": chosen}``, plus ``"cv_score"``
        (the chosen decay's mean validation score) when chosen by cross-validation.
    """
    on_cpu = torch.device(device).type == "cpu"
    work = float(train_x.shape[0]) * train_x.shape[1] * num_classes if on_cpu else float("inf")
    with few_threads(work):  # L-BFGS on a label budget: tiny operations, one thread is fastest
        return _linear_probe(train_x, train_y, test_x, num_classes, list(weight_decays), folds,
                             val_fraction, seed, max_iter, device)


def _linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, num_classes: int,
                  wds: list[float], folds: int, val_fraction: float, seed: int, max_iter: int,
                  device: str | torch.device) -> tuple[Tensor, dict[str, float]]:
    chosen = wds[len(wds) // 2]
    fold = _folds(train_y.numpy(), folds, seed) if folds >= 2 and len(wds) > 1 else None
    if fold is not None:
        chosen, score = _cross_validate(train_x, train_y, num_classes, wds, fold, max_iter,
                                        device)
        probe = fit_linear(train_x, train_y, num_classes, chosen, max_iter, device)
        return probe.scores(test_x).cpu(), {"weight_decay": chosen, "cv_score": score}
    split = _holdout(train_y.numpy(), val_fraction, seed) if len(wds) > 1 else None
    if split is not None:
        tr, va = (torch.as_tensor(a) for a in split)
        best = -np.inf
        for wd in wds:
            probe = fit_linear(train_x[tr], train_y[tr], num_classes, wd, max_iter, device)
            score = _val_score(probe, train_x[va], train_y[va])
            if score > best:
                best, chosen = score, wd
    probe = fit_linear(train_x, train_y, num_classes, chosen, max_iter, device)
    return probe.scores(test_x).cpu(), {"weight_decay": chosen}


def _folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray | None:
    """Stratified fold number of every labelled row, or ``None`` when a class has < 2 rows.

    The folds are ``min(folds, smallest class count)``; each class's rows are shuffled and dealt
    round-robin from a random starting fold.
    """
    if y.ndim != 1:
        return None
    counts = np.bincount(y)
    n_folds = min(folds, int(counts[counts > 0].min()))
    if n_folds < 2:
        return None
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        fold[rows] = (np.arange(len(rows)) + rng.integers(n_folds)) % n_folds
    return fold


def _cross_validate(x: Tensor, y: Tensor, num_classes: int, wds: Sequence[float],
                    fold: np.ndarray, max_iter: int, device: str | torch.device
                    ) -> tuple[float, float]:
    """The weight decay with the best mean validation score over the folds, and that score."""
    best, chosen = -np.inf, float(wds[len(wds) // 2])
    n_folds = int(fold.max()) + 1
    for wd in wds:
        score = 0.0
        for f in range(n_folds):
            tr, va = torch.as_tensor(fold != f), torch.as_tensor(fold == f)
            probe = fit_linear(x[tr], y[tr], num_classes, wd, max_iter, device)
            score += _val_score(probe, x[va], y[va])
        score /= n_folds
        if score > best:
            best, chosen = score, float(wd)
    return chosen, float(best)


def logreg_scores(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    num_classes: int,
    c: float = 1.0,
    max_iter: int = 200,
    device: str | torch.device = "cpu",
) -> NDArray[np.float64]:
    """Logistic regression with a fixed L2 strength ``C``: class probabilities of test rows.

    The objective of scikit-learn's ``LogisticRegression(C=c)`` (multinomial, bias not
    penalised) on standardised features, ``sum(loss) + ||W||^2 / (2 C)``, i.e. the mean loss
    plus ``||W||^2 / (2 C N)``: :func:`fit_linear` with ``weight_decay = 1 / (C N)``. The optimum
    is unique, so both solvers agree up to their tolerances; this one is geossl's probe (torch,
    CPU or GPU) instead of a second implementation.

    Args:
        train_x: ``(N, D)`` labelled features.
        train_y: ``(N,)`` classes in ``[0, num_classes)``.
        test_x: ``(M, D)`` features to score.
        num_classes: K; classes absent from ``train_y`` get probability 0.
        c: inverse regularisation strength (scikit-learn's ``C``).
        max_iter: L-BFGS iterations.
        device: where to fit.

    Returns:
        ``(M, K)`` probabilities.
    """
    x = torch.as_tensor(np.asarray(train_x), dtype=torch.float32)
    y = np.asarray(train_y, dtype=np.int64)
    present = np.unique(y)
    test = torch.as_tensor(np.asarray(test_x), dtype=torch.float32)
    on_cpu = torch.device(device).type == "cpu"
    work = float(x.shape[0]) * x.shape[1] * len(present) if on_cpu else float("inf")
    with few_threads(work):
        probe = fit_linear(x, torch.as_tensor(np.searchsorted(present, y)), len(present),
                           1.0 / (c * max(len(y), 1)), max_iter, device)
        proba = torch.softmax(probe.scores(test).double(), 1).cpu().numpy()
    out = np.zeros((len(test), num_classes), dtype=np.float64)
    out[:, present] = proba
    return out
