"""Assignment of groups of chips to splits: stratified, multi-label, and the checkerboard pattern.

Part of :mod:`geossl.splits` (see its docstring for the strategies and the metric rules).
"""


from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geossl.core.errors import ConfigError
from geossl.splits.footprints import Footprints, conflict_pairs, footprints

#: split strategies of :func:`make_splits`
STRATEGIES = ("overlap", "block", "scene", "random", "nonoverlapping", "checkerboard")
#: how ``checkerboard`` places a chip: in the block holding its footprint, or its centre
ASSIGN_MODES = ("footprint", "centroid")
#: label of chips removed to keep splits apart
DROP = "drop"


# --------------------------------------------------------------------------------------------
# assignment of groups to splits
# --------------------------------------------------------------------------------------------
def _check_fractions(fractions: Sequence[float], names: Sequence[str] | None,
                     single: bool = False) -> tuple[np.ndarray, list[str]]:
    """Fractions and split names; ``single`` allows one fraction (1: a subset, not a split)."""
    frac = np.asarray([float(f) for f in fractions], dtype=np.float64)
    if len(frac) < (1 if single else 2) or np.any(frac <= 0) or abs(frac.sum() - 1.0) > 1e-6:
        least = ">= 1" if single else ">= 2"
        raise ConfigError(f"fractions must be {least} positive numbers summing to 1, got "
                          f"{list(fractions)}")
    if names is None:
        names = ["train"] if len(frac) == 1 else ["train", "test"] if len(frac) == 2 else (
            ["train", "val", "test"] if len(frac) == 3 else [f"split{k}" for k in range(len(frac))])
    names = [str(n) for n in names]
    if len(names) != len(frac) or len(set(names)) != len(names) or DROP in names:
        raise ConfigError(f"split names {names} must be distinct, not {DROP!r}, one per fraction")
    return frac, names


_INDEX_LIST = re.compile(r"^\s*\d+(\s*,\s*\d+)*\s*$")


def _strata(gdf: pd.DataFrame, label: str | None) -> np.ndarray | None:
    """Class per row: ``(n,)`` int codes (single-label), ``(n, L)`` bool (multi-label), or None.

    Multi-label cells hold class indices (a list, tuple or int array, or a comma-separated
    string such as BigEarthNet's ``"3,7,12"``) or a boolean multi-hot array; a column where
    such cells cannot be read is not stratified on.
    """
    if label is None or label not in gdf.columns:
        return None
    col = gdf[label]
    if col.map(lambda v: isinstance(v, list | tuple | np.ndarray)).any():
        return _multi_hot(col.tolist())
    strings = col.dropna().astype(str)
    if len(strings) and strings.str.contains(",").any() and \
            strings.map(lambda v: not v.strip() or bool(_INDEX_LIST.match(v))).all():
        return _multi_hot(col.tolist())
    codes, _ = pd.factorize(col.astype(str))
    return np.asarray(codes, np.int64)


def _multi_hot(values: list[Any]) -> np.ndarray | None:
    """``(n, L)`` bool from multi-label cells, or None when a cell cannot be read."""
    rows: list[list[int]] = []
    try:
        for v in values:
            if isinstance(v, np.ndarray) and v.dtype == bool:
                rows.append(np.flatnonzero(v).tolist())
            elif isinstance(v, list | tuple | np.ndarray):
                rows.append([int(x) for x in v])
            elif isinstance(v, str):
                rows.append([int(x) for x in v.split(",")] if v.strip() else [])
            elif v is None or (isinstance(v, float) and np.isnan(v)):
                rows.append([])
            else:
                return None
    except (TypeError, ValueError):
        return None
    width = 1 + max((max(r) for r in rows if r), default=-1)
    if width == 0 or any(min(r) < 0 for r in rows if r):
        return None
    out = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        out[i, r] = True
    return out


def _assign_multilabel(group: np.ndarray, frac: np.ndarray, rng: np.random.Generator,
                       labels: np.ndarray) -> np.ndarray:
    """Split index per row, whole groups together, by iterative stratification of labels.

    A simplification of Sechidis et al. (2011) for groups: groups are visited by the rarity of
    their rarest label (then largest first, random among equals); each goes to the split with
    the largest deficit, the deficit being that of the group's labels (each relative to its
    total, weighted by the group's count of it) plus the overall deficit in chips. Groups
    without labels count the overall deficit only.
    """
    n = len(group)
    gid, ginv = np.unique(group, return_inverse=True)
    ng, nl = len(gid), labels.shape[1]
    sizes = np.bincount(ginv, minlength=ng).astype(np.float64)
    counts = np.zeros((ng, nl))
    np.add.at(counts, ginv, labels.astype(np.float64))
    total = counts.sum(0)
    share = counts / np.where(total > 0, total, 1.0)[None, :]  # share of each label's total
    weight = counts.sum(1)
    rarity = np.where(counts > 0, total[None, :], np.inf).min(1)
    order = np.lexsort((rng.random(ng), -sizes, rarity))
    # deficits relative to each split's target (1: nothing placed yet, 0: target met), so that
    # a large split does not win every group just for being large
    deficit_l = np.ones((len(frac), nl))
    deficit = np.ones(len(frac))
    target = frac * n
    gsplit = np.zeros(ng, np.int64)
    for g in order.tolist():
        score = deficit.copy()
        if weight[g] > 0:
            score += deficit_l @ counts[g] / weight[g]
        k = int(np.argmax(score))
        gsplit[g] = k
        deficit_l[k] -= share[g] / frac[k]
        deficit[k] -= sizes[g] / target[k]
    return gsplit[ginv]


def _assign(group: np.ndarray, frac: np.ndarray, rng: np.random.Generator,
            strata: np.ndarray | None) -> np.ndarray:
    """Split index per row, whole groups together, per stratum (majority class of a group).

    ``strata`` ``(n, L)`` (multi-label) goes to :func:`_assign_multilabel`.
    """
    if strata is not None and strata.ndim == 2:
        return _assign_multilabel(group, frac, rng, strata)
    n = len(group)
    gid, ginv = np.unique(group, return_inverse=True)
    sizes = np.bincount(ginv)
    if strata is None:
        gstrat = np.zeros(len(gid), np.int64)
    elif len(gid) == n:  # singletons: the class of the chip
        gstrat = np.zeros(len(gid), np.int64)
        gstrat[ginv] = strata
    else:  # majority class of each group
        counts = pd.crosstab(ginv, strata)
        gstrat = counts.to_numpy().argmax(1)
        gstrat = np.asarray(counts.columns.to_numpy()[gstrat], np.int64)
    gsplit = np.zeros(len(gid), np.int64)
    if np.all(sizes == 1):  # singletons: exact counts per class, vectorised
        for s in np.unique(gstrat):
            perm = rng.permutation(np.flatnonzero(gstrat == s))
            cuts = np.round(np.cumsum(frac)[:-1] * len(perm)).astype(np.int64)
            for k, part in enumerate(np.split(perm, cuts)):
                gsplit[part] = k
        return gsplit[ginv]
    # biggest groups first (random order within a size octave); each goes to the split furthest
    # below its target: its class's deficit plus the overall deficit, both in chips, so that
    # the overall term outweighs the class term of a small class (a class of one or two groups
    # cannot be balanced; every such class's group must not go to the largest split) while a
    # large class is balanced too; relative deficits (1 - have / target) overfill small
    # splits with coarse groups (0.6/0.2/0.2 over 24 scenes gave 0.5/0.25/0.25)
    nstrat = int(gstrat.max()) + 1
    class_total = np.bincount(gstrat, weights=sizes, minlength=nstrat)
    target_c = class_total[:, None] * frac[None, :]
    target = frac * n
    have_c = np.zeros((nstrat, len(frac)))
    have = np.zeros(len(frac))
    octave = np.floor(np.log2(sizes)).astype(np.int64)
    order = np.lexsort((rng.random(len(gid)), -octave))
    for g in order.tolist():
        c = gstrat[g]
        score = (target_c[c] - have_c[c]) + (target - have)
        k = int(np.argmax(score))
        gsplit[g] = k
        have_c[c, k] += sizes[g]
        have[k] += sizes[g]
    out = gsplit[ginv]
    assert len(out) == n
    return out


def _drop_conflicts(split: np.ndarray, pairs: tuple[np.ndarray, np.ndarray],
                    priority: np.ndarray | None = None) -> np.ndarray:
    """Mark with -1 one chip of every pair whose chips lie in different splits.

    The dropped chip is the one of the split with the lower priority (default: lower split
    index, i.e. train before val before test). One pass suffices: each cross pair loses one
    chip and dropping never creates a new cross pair.
    """
    i, j = pairs
    si, sj = split[i], split[j]
    cross = (si != sj) & (si >= 0) & (sj >= 0)
    i, j, si, sj = i[cross], j[cross], si[cross], sj[cross]
    rank = np.arange(split.max() + 1) if priority is None else priority
    victim = np.where(rank[si] <= rank[sj], i, j)
    out = split.copy()
    out[victim] = -1
    return out


def checkerboard_codes(
    fp: Footprints,
    block_size: float,
    k: int = 2,
    origin: tuple[float, float] | None = None,
    assign: str = "footprint",
    buffer: float = 0.0,
) -> np.ndarray:
    """Split index per row for a checkerboard of ``k`` colours (-1: dropped).

    Block ``(i, j)``: row ``i`` counted down from ``origin``'s ``y``, column ``j`` right from
    its ``x`` (default ``(0, 0)`` of each CRS, so the grid does not move with the data);
    blocks are half-open (a footprint touching a border from one side is not in the other
    block). Colour ``(i + j) mod k``. See the module docstring for ``assign`` and ``buffer``.

    Args:
        fp: footprints.
        block_size: block side in CRS units (metres, or pixels for a pixel grid).
        k: number of colours (splits).
        origin: ``(x, y)`` of a block corner.
        assign: ``"footprint"`` (drop border-straddlers) or ``"centroid"``.
        buffer: also drop chips of an earlier split within this distance of a later one.

    Returns:
        ``(n,)`` int64 split index per row, -1 for dropped rows.

    Raises:
        ConfigError: bad block size, colour count or ``assign``.
    """
    if not block_size > 0:
        raise ConfigError(f"checkerboard block size must be positive, got {block_size}")
    if k < 2:
        raise ConfigError(f"a checkerboard needs at least 2 colours, got {k}")
    if assign not in ASSIGN_MODES:
        raise ConfigError(f"unknown checkerboard assignment {assign!r}; use "
                          f"{' or '.join(ASSIGN_MODES)}")
    n = len(fp)
    if n == 0:
        return np.zeros(0, np.int64)
    x0, y0 = (0.0, 0.0) if origin is None else (float(origin[0]), float(origin[1]))
    b = fp.bounds
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    if assign == "centroid":
        j0 = np.floor((cx - x0) / block_size)
        i0 = np.floor((y0 - cy) / block_size)
        single = np.ones(n, dtype=bool)
    else:  # half-open blocks: a footprint ending on a border lies in one block
        eps = 1e-9 * block_size
        j0 = np.floor((b[:, 0] - x0) / block_size)
        j1 = np.floor((b[:, 2] - x0 - eps) / block_size)
        i0 = np.floor((y0 - b[:, 3]) / block_size)
        i1 = np.floor((y0 - b[:, 1] - eps) / block_size)
        single = (j0 == j1) & (i0 == i1)
    colour = np.mod(i0 + j0, k).astype(np.int64)
    split = np.where(single, colour, -1)
    # centroid assignment, a buffer or neighbours across CRS groups: chips of different colours
    # may still conflict; one chip of each such pair is dropped (a no-op for footprint
    # assignment at buffer 0 in one CRS, where kept chips lie inside single blocks)
    if assign == "centroid" or buffer > 0 or len(np.unique(fp.group)) > 1:
        # the victim is the chip whose centre lies nearer its block's border (symmetric between
        # colours, unlike ``block``'s train-loses rule), ties: the earlier split's chip
        left, top = x0 + j0 * block_size, y0 - i0 * block_size
        depth = np.minimum.reduce([cx - left, left + block_size - cx, top - cy,
                                   cy - (top - block_size)])
        i, j = conflict_pairs(fp, buffer)
        si, sj = split[i], split[j]
        cross = (si != sj) & (si >= 0) & (sj >= 0)
        i, j, si, sj = i[cross], j[cross], si[cross], sj[cross]
        first = np.where(depth[i] != depth[j], depth[i] < depth[j], si <= sj)
        split = split.copy()
        split[np.where(first, i, j)] = -1
    return split


def checkerboard_split(
    gdf: pd.DataFrame,
    block_size: float,
    names: Sequence[str] = ("train", "test"),
    origin: tuple[float, float] | None = None,
    assign: str = "footprint",
    buffer: float = 0.0,
    fp: Footprints | None = None,
) -> pd.Series:
    """Checkerboard split names per row (``drop`` for removed chips), without any checks.

    The building block of ``make_splits(..., strategy="checkerboard")`` (which also checks
    that no split is empty and records the achieved fractions); see
    :func:`checkerboard_codes` for the arguments. Works on footprints in a pixel grid
    (``block_size`` and ``buffer`` in pixels).

    Returns:
        split names indexed like ``gdf`` (an empty Series for an empty frame).
    """
    names = [str(x) for x in names]
    if len(gdf) == 0:
        return pd.Series([], index=gdf.index, dtype=object, name="split")
    fp = footprints(gdf) if fp is None else fp
    codes = checkerboard_codes(fp, block_size, len(names), origin, assign, buffer)
    labels = np.asarray([*names, DROP], dtype=object)
    return pd.Series(labels[np.where(codes < 0, len(names), codes)], index=gdf.index,
                     dtype=object, name="split")


