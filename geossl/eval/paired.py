"""Paired differences between two lines of results on the same label draws, with 95 % intervals.

Two representations scored on the very same label draws (same seed, same budget, same labelled
samples, same test side) differ by a per-draw gap; its mean, a two-sided Student t interval of
that mean, and how many draws the first line won are what a comparison should report, not two
means with their own spreads (the draw-to-draw spread is shared and cancels in the difference).

Used by ``geossl compare`` (:mod:`geossl.compare`) and the PolSAR benchmark
(:mod:`geossl.bench.polsar`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

K = TypeVar("K")

#: confidence level of the intervals
LEVEL = 0.95


def difference_stats(diffs: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Mean, spread and wins of per-draw differences ``a - b``.

    Args:
        diffs: one difference per paired draw (at least one).

    Returns:
        ``{"mean", "std" (ddof 1; 0 for one draw), "wins" (draws where a > b), "n"}``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    return {"mean": float(d.mean()), "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "wins": int((d > 0).sum()), "n": len(d)}


def with_interval(gap: dict[str, Any], level: float = LEVEL) -> dict[str, Any]:
    """Add the two-sided Student t interval of the mean gap: ``low``, ``high``, ``clear``.

    ``clear`` is true when the interval lies above zero (the first line is ahead); with a single
    draw the interval is infinite and nothing is clear.

    Args:
        gap: :func:`difference_stats` output.
        level: confidence level.
    """
    from scipy import stats

    n = int(gap["n"])
    half = (float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(gap["std"]) / math.sqrt(n)
            if n > 1 else math.inf)
    out = {**gap, "low": gap["mean"] - half, "high": gap["mean"] + half}
    out["clear"] = bool(out["low"] > 0)
    return out


def paired_difference(a: Mapping[K, float], b: Mapping[K, float],
                      level: float = LEVEL) -> dict[str, Any] | None:
    """The paired difference ``a - b`` over the draws both lines share, with its interval.

    Args:
        a: value of the first line per draw (e.g. per seed).
        b: value of the second line per draw.
        level: confidence level.

    Returns:
        :func:`with_interval` of :func:`difference_stats` plus ``"below"`` (the interval lies
        below zero: the first line is behind), or ``None`` when no draw is shared.
    """
    keys = [k for k in a if k in b and a[k] is not None and b[k] is not None]
    if not keys:
        return None
    gap = with_interval(difference_stats([float(a[k]) - float(b[k]) for k in keys]), level)
    gap["below"] = bool(gap["high"] < 0)
    return gap
