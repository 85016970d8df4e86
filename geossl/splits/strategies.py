"""The split strategies of :func:`make_splits` (overlap, block, scene, random, ...).

Part of :mod:`geossl.splits` (see its docstring for the strategies and the metric rules).
"""


from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geossl.core.errors import ConfigError, DataError
from geossl.splits.assign import (
    ASSIGN_MODES,
    DROP,
    STRATEGIES,
    _assign,
    _check_fractions,
    _drop_conflicts,
    _strata,
    checkerboard_codes,
)
from geossl.splits.config import DEFAULT_BLOCK_SIZE
from geossl.splits.footprints import (
    Footprints,
    conflict_pairs,
    footprints,
    nonoverlapping_subset,
    overlap_groups,
)


# --------------------------------------------------------------------------------------------
# the split functions
# --------------------------------------------------------------------------------------------
def make_splits(
    gdf: pd.DataFrame,
    strategy: str = "overlap",
    fractions: Sequence[float] = (0.8, 0.2),
    names: Sequence[str] | None = None,
    seed: int = 0,
    buffer: float = 0.0,
    block_size: float = DEFAULT_BLOCK_SIZE,
    label: str | None = "label",
    scene: str = "scene",
    test_scenes: Sequence[str] | None = None,
    holdout: str | None = None,
    tolerance: float = 0.05,
    origin: tuple[float, float] | None = None,
    assign: str = "footprint",
    fp: Footprints | None = None,
) -> pd.Series:
    """Split footprints into disjoint sets (see the module docstring for each strategy).

    Args:
        gdf: footprints (chip index, TorchGeo index, SEN12MS footprints, ...).
        strategy: ``overlap``, ``block``, ``scene``, ``random``, ``nonoverlapping`` or
            ``checkerboard``.
        fractions: fraction of chips per split (2: train/test, 3: train/val/test).
        names: split names (default from the number of fractions).
        seed: random seed; the same seed gives the same split.
        buffer: metres (pixel-grid units for footprints without a georeferenced CRS); chips
            closer than this conflict (``overlap``, ``block``, ``scene``, ``nonoverlapping``,
            ``checkerboard``: none of them end up in different splits).
        block_size: side of the blocks in metres, or pixel-grid units (``block``,
            ``checkerboard``).
        label: class column to stratify on, when present: one class per chip, or several
            (lists of class indices, comma-separated index strings, multi-hot bool arrays).
        scene: scene column (``scene``).
        test_scenes: scene ids forming the test side (``scene``); unknown ids are an error.
        holdout: ``"sen12ms"``: the official SEN12MS hold-out scenes are the test side.
        tolerance: warn when an achieved fraction is further than this from its target.
        origin: ``(x, y)`` corner of the checkerboard (default ``(0, 0)`` of each CRS).
        assign: ``checkerboard``: ``"footprint"`` drops chips straddling a block border,
            ``"centroid"`` places them by their centre.
        fp: precomputed :func:`footprints` of ``gdf``.

    Returns:
        split name per row, indexed like ``gdf``; ``attrs`` hold ``strategy``, ``params`` and
        the achieved ``fractions``.

    Raises:
        ConfigError: unknown strategy, bad fractions or names, unknown scene ids.
        DataError: no footprints, or a split would be empty.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown split strategy {strategy!r}; use one of "
                          f"{', '.join(STRATEGIES)}")
    # nonoverlapping with one fraction (1): the subset itself, all of it on one side
    frac, names = _check_fractions(fractions, names, single=strategy == "nonoverlapping")
    if len(gdf) == 0:
        raise DataError("no footprints to split")
    if not block_size > 0:
        raise ConfigError(f"block size must be > 0 (metres, or pixel-grid units), got "
                          f"{block_size}")
    if strategy == "checkerboard" and not np.allclose(frac, 1.0 / len(frac), atol=1e-6):
        even = ",".join(f"{1.0 / len(frac):.4g}" for _ in frac)
        raise ConfigError(f"a checkerboard alternates blocks: its fractions are equal (e.g. "
                          f"--fractions {even}), got {frac.tolist()}")
    rng = np.random.default_rng(seed)
    strata = _strata(gdf, label)
    if strategy != "random" and fp is None:
        fp = footprints(gdf)
    params: dict[str, Any] = {"fractions": frac.tolist(), "names": names, "seed": seed,
                              "buffer": buffer, "label": label if strata is not None else None}
    if strata is not None:
        params["stratify"] = "multi-label" if strata.ndim == 2 else "single-label"
    if strategy == "random":
        split = _assign(np.arange(len(gdf)), frac, rng, strata)
    elif strategy == "overlap":
        assert fp is not None
        groups = overlap_groups(fp, buffer)
        params["groups"] = int(groups.max() + 1)
        split = _assign(groups, frac, rng, strata)
    elif strategy == "block":
        assert fp is not None
        params["block_size"] = block_size
        b = fp.bounds
        bx = np.floor((b[:, 0] + b[:, 2]) / 2 / block_size).astype(np.int64)
        by = np.floor((b[:, 1] + b[:, 3]) / 2 / block_size).astype(np.int64)
        blocks = pd.MultiIndex.from_arrays([fp.group, bx, by]).factorize()[0]
        params["blocks"] = int(blocks.max() + 1)
        split = _assign(blocks, frac, rng, strata)
        split = _drop_conflicts(split, conflict_pairs(fp, buffer))
    elif strategy == "scene":
        assert fp is not None
        split = _scene_split(gdf, fp, frac, names, rng, strata, buffer, scene, test_scenes,
                             holdout, params)
        if test_scenes is not None or holdout is not None:
            tolerance = np.inf  # the listed scenes fix the test side, not the fractions
    elif strategy == "nonoverlapping":
        assert fp is not None
        keep = nonoverlapping_subset(gdf, buffer, None, fp)
        params["kept"] = int(keep.sum())
        split = np.full(len(gdf), -1, np.int64)
        kept = np.flatnonzero(keep)
        split[kept] = _assign(np.arange(len(kept)), frac, rng,
                              None if strata is None else strata[kept])
    else:  # checkerboard: the pattern fixes the sides; fractions are the pattern's
        assert fp is not None
        if assign not in ASSIGN_MODES:
            raise ConfigError(f"unknown checkerboard assignment {assign!r}; use "
                              f"{' or '.join(ASSIGN_MODES)}")
        params.update(block_size=block_size, assign=assign, label=None,
                      origin=None if origin is None else [float(v) for v in origin])
        params.pop("stratify", None)
        split = checkerboard_codes(fp, block_size, len(names), origin, assign, buffer)
        tolerance = np.inf
    if fp is not None and fp.planar:
        params["unit"] = fp.unit
    return _finish(gdf, split, names, frac, strategy, params, tolerance,
                   strata if params.get("label") is not None else None)


def _scene_split(gdf: pd.DataFrame, fp: Footprints, frac: np.ndarray, names: list[str],
                 rng: np.random.Generator, strata: np.ndarray | None, buffer: float,
                 scene: str, test_scenes: Sequence[str] | None, holdout: str | None,
                 params: dict[str, Any]) -> np.ndarray:
    if scene not in gdf.columns:
        raise ConfigError(f"scene split needs a {scene!r} column (have {', '.join(gdf.columns)})")
    scenes = gdf[scene].astype(str).to_numpy()
    pairs = conflict_pairs(fp, buffer)
    if holdout is not None:
        if holdout != "sen12ms":
            raise ConfigError(f"unknown hold-out list {holdout!r} (known: sen12ms)")
        from geossl.datasets.sen12ms import HOLDOUT_SCENES

        test_scenes = sorted(set(scenes) & set(HOLDOUT_SCENES))
        params["holdout"] = holdout
        if not test_scenes:
            raise DataError("no SEN12MS hold-out scene in the footprints: the test side would "
                            "be empty")
    if test_scenes is None:
        # scenes overlapping each other are merged, so whole merged scenes never leak
        codes, _ = pd.factorize(scenes)
        i, j = pairs
        n = int(codes.max()) + 1
        graph = coo_matrix((np.ones(len(i), np.int8), (codes[i], codes[j])), shape=(n, n))
        _, merged = connected_components(graph, directed=False)
        return _assign(np.asarray(merged)[codes], frac, rng, strata)
    wanted = [str(s) for s in test_scenes]
    present = set(scenes)
    unknown = [s for s in wanted if s not in present]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ConfigError(f"unknown scene id {unknown[0]!r}{more}: not in the {scene!r} column")
    params["test_scenes"] = wanted
    is_test = np.isin(scenes, wanted)
    split = np.full(len(gdf), len(frac) - 1, np.int64)
    rest = np.flatnonzero(~is_test)
    if len(rest):
        sub = frac[:-1] / frac[:-1].sum()
        if len(sub) == 1:
            split[rest] = 0
        else:
            codes, _ = pd.factorize(scenes[rest])
            split[rest] = _assign(codes, sub, rng, None if strata is None else strata[rest])
    # scenes of different sides that overlap: drop the non-test chips of the overlap
    return _drop_conflicts(split, pairs)


def _class_fraction_error(split: np.ndarray, frac: np.ndarray,
                          strata: np.ndarray | None) -> float | None:
    """Largest gap between a class's achieved and requested fractions (kept chips only).

    Only classes expected to have at least 5 chips in the smallest split are counted (smaller
    ones cannot be split to a tolerance); None without labels or without such a class.
    """
    if strata is None:
        return None
    kept = split >= 0
    onehot = strata if strata.ndim == 2 else (
        strata[:, None] == np.arange(int(strata.max()) + 1)[None, :])
    onehot = np.asarray(onehot[kept], dtype=np.float64)
    per_split = np.stack([onehot[split[kept] == k].sum(0) for k in range(len(frac))])
    total = per_split.sum(0)
    ok = total * frac.min() >= 5
    if not ok.any():
        return None
    achieved = per_split[:, ok] / total[ok]
    return float(np.abs(achieved - frac[:, None]).max())


def _finish(gdf: pd.DataFrame, split: np.ndarray, names: list[str], frac: np.ndarray,
            strategy: str, params: dict[str, Any], tolerance: float,
            strata: np.ndarray | None = None) -> pd.Series:
    labels = np.asarray([*names, DROP], dtype=object)
    out = pd.Series(labels[np.where(split < 0, len(names), split)], index=gdf.index,
                    name="split")
    counts = np.bincount(split[split >= 0], minlength=len(names))
    for name, c in zip(names, counts):
        if c == 0:
            raise DataError(f"split {name!r} is empty with strategy {strategy!r} "
                            f"({len(gdf)} chips, fractions {frac.tolist()}): too few groups; "
                            "try another strategy, smaller blocks or a smaller buffer")
    achieved = counts / max(counts.sum(), 1)
    out.attrs["strategy"] = strategy
    out.attrs["params"] = params
    out.attrs["fractions"] = {n: float(a) for n, a in zip(names, achieved)}
    out.attrs["dropped"] = int((split < 0).sum())
    worst = float(np.abs(achieved - frac).max())
    out.attrs["fraction_error"] = worst
    out.attrs["class_fraction_error"] = _class_fraction_error(split, frac, strata)
    if worst > tolerance:
        warnings.warn(f"{strategy} split: achieved fractions {np.round(achieved, 3).tolist()} "
                      f"differ from {frac.tolist()} by {worst:.3f} (> {tolerance}); groups are "
                      "too large for these fractions", stacklevel=3)
    return out


