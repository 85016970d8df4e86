"""Linear probe on frozen, cached features.

Multinomial logistic regression (binary cross-entropy per class for multi-label) on
standardised features, fitted full-batch with L-BFGS in torch: on the few thousand labelled
features of a label budget this converges in a fraction of a second on CPU or GPU, where
scikit-learn's ``LogisticRegression`` would be run once per weight decay on CPU only. The weight
decay is picked from a small grid on a stratified hold-out of the labelled samples (no extra
labels are used), then the probe is refitted on all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from geossl.eval.threads import few_threads

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
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 200,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, dict[str, float]]:
    """Fit a linear probe on labelled features and score test features.

    Args:
        train_x: labelled features ``(N, D)``.
        train_y: their labels.
        test_x: features to score ``(M, D)``.
        num_classes: K.
        weight_decays: grid searched on a hold-out of the labelled rows.
        val_fraction: hold-out fraction (per class).
        seed: seed of the hold-out.
        max_iter: L-BFGS iterations.
        device: where to fit.

    Returns:
        test logits ``(M, K)`` (on CPU) and ``{"weight_decay": chosen}``.
    """
    on_cpu = torch.device(device).type == "cpu"
    work = float(train_x.shape[0]) * train_x.shape[1] * num_classes if on_cpu else float("inf")
    with few_threads(work):  # L-BFGS on a label budget: tiny operations, one thread is fastest
        return _linear_probe(train_x, train_y, test_x, num_classes, list(weight_decays),
                             val_fraction, seed, max_iter, device)


def _linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, num_classes: int,
                  wds: list[float], val_fraction: float, seed: int, max_iter: int,
                  device: str | torch.device) -> tuple[Tensor, dict[str, float]]:
    chosen = wds[len(wds) // 2]
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
