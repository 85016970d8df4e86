"""Label budgets: the few labelled samples a protocol may use, drawn from the TRAIN side.

A budget is drawn only from the training side of a saved overlap-aware split (callers pass the
training labels only), stratified by class and seeded, so "10 labels per class, seed 3" is the
same set of samples for every protocol and for the supervised-from-scratch baseline.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from geossl.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Budget:
    """A label budget: ``per_class`` samples of every class, or ``total`` samples overall.

    Both ``None`` means every training label.
    """

    per_class: int | None = None
    total: int | None = None

    def __post_init__(self) -> None:
        if self.per_class is not None and self.total is not None:
            raise ConfigError("give labels per class or a total number of labels, not both")
        for v in (self.per_class, self.total):
            if v is not None and v < 1:
                raise ConfigError(f"a label budget must be >= 1, got {v}")

    @property
    def name(self) -> str:
        """Short name used in result tables: ``10/class``, ``1024``, ``all``."""
        if self.per_class is not None:
            return f"{self.per_class}/class"
        if self.total is not None:
            return str(self.total)
        return "all"

    @property
    def slug(self) -> str:
        """File-name-safe name: ``10pc``, ``1024``, ``all``."""
        return self.name.replace("/class", "pc")


def draw_budget(labels: ArrayLike, budget: Budget, seed: int) -> np.ndarray:
    """Rows of the training set forming a label budget.

    Args:
        labels: training labels, ``(N,)`` classes or ``(N, K)`` multi-hot.
        budget: how many labels.
        seed: random seed; the same seed gives the same rows.

    Returns:
        sorted row indices into ``labels``.

    Raises:
        ConfigError: the budget asks for more labels than the training side has.
    """
    y = np.asarray(labels)
    n = len(y)
    rng = np.random.default_rng(seed)
    if budget.per_class is None and budget.total is None:
        return np.arange(n)
    if budget.total is not None and budget.total > n:
        raise ConfigError(f"label budget {budget.total} exceeds the {n} training samples")
    if y.ndim == 2:
        return _draw_multilabel(y, budget, rng)
    classes, counts = np.unique(y, return_counts=True)
    by_class = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    if budget.per_class is not None:
        take = {c: min(budget.per_class, len(by_class[c])) for c in classes}
    else:
        alloc = _allocate(counts, int(budget.total or 0))
        take = {c: t for c, t in zip(classes, alloc.tolist())}
    rows = np.concatenate([by_class[c][: take[c]] for c in classes])
    return np.sort(rows)


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder).

    Every class gets at least one label while the total allows, never more than it has.
    """
    k = len(counts)
    if total < k:  # fewer labels than classes: the largest classes get one each
        base = np.zeros(k, dtype=np.int64)
        base[np.argsort(-counts, kind="stable")[:total]] = 1
        return base
    quota = counts / counts.sum() * total  # Hamilton (largest remainder) apportionment
    base = np.minimum(np.floor(quota).astype(np.int64), counts)
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    while base.sum() < total:
        for i in order:
            if base.sum() == total:
                break
            if base[i] < counts[i]:
                base[i] += 1
    for i in np.flatnonzero(base == 0):  # every class at least once
        donor = int(np.argmax(base))
        base[donor] -= 1
        base[i] += 1
    return base


def _draw_multilabel(y: np.ndarray, budget: Budget, rng: np.random.Generator) -> np.ndarray:
    """Multi-label budgets: ``per_class`` positives of every class (greedy), or ``total``."""
    n = len(y)
    if budget.total is not None:
        return np.sort(rng.choice(n, size=budget.total, replace=False))
    chosen: set[int] = set()
    for c in range(y.shape[1]):
        pos = rng.permutation(np.flatnonzero(y[:, c] > 0))
        have = sum(1 for r in chosen if y[r, c] > 0)
        for r in pos:
            if have >= int(budget.per_class or 0):
                break
            if int(r) not in chosen:
                chosen.add(int(r))
                have += 1
    return np.array(sorted(chosen), dtype=np.int64)


def mean_std(values: list[float]) -> dict[str, Any]:
    """Mean and (population) standard deviation over seeds, with the count."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)}
