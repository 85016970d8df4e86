"""Chip ids, split files (JSON or GeoParquet) and the footprints of a dataset for the CLI.

Part of :mod:`geossl.splits` (see its docstring for the strategies and the metric rules).
"""


from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from geossl.core.errors import ConfigError, DataError, first_line
from geossl.core.io import atomic_path, atomic_write_text, check_output, jsonable
from geossl.splits.config import SplitConfig
from geossl.splits.footprints import PathLike, chip_ids, footprints
from geossl.splits.leakage import _align, leakage_report, report_units
from geossl.splits.strategies import make_splits


# --------------------------------------------------------------------------------------------
# ids, files
# --------------------------------------------------------------------------------------------
def save_splits(
    path: PathLike,
    splits: pd.Series,
    gdf: pd.DataFrame | None = None,
    strategy: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Path:
    """Write splits atomically.

    JSON ``{"strategy", "params", "splits": {name: [ids]}}``, or, for a ``.parquet`` path, the
    footprints as GeoParquet with a ``split`` column.

    Args:
        path: ``.json`` or ``.parquet`` file.
        splits: split name per row of ``gdf`` (or indexed by chip id when ``gdf`` is None).
        gdf: the footprints the split was made on (required for GeoParquet).
        strategy: strategy name (default ``splits.attrs["strategy"]``).
        params: strategy parameters (default ``splits.attrs["params"]``).

    Returns:
        the written path.
    """
    path = Path(path)
    strategy = strategy or splits.attrs.get("strategy")
    params = dict(params if params is not None else splits.attrs.get("params", {}))
    ids = chip_ids(gdf) if gdf is not None else [str(i) for i in splits.index]
    names = splits.to_numpy()
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        if gdf is None:
            raise ConfigError("writing splits as GeoParquet needs the footprints (gdf)")
        out = gdf.copy()
        out["split"] = names
        out.attrs = {}
        with atomic_path(path) as tmp:
            out.to_parquet(tmp)
        return path
    groups: dict[str, list[str]] = {}
    for i, name in zip(ids, names):
        if isinstance(name, str):
            groups.setdefault(name, []).append(i)
    doc = {"strategy": strategy, "params": jsonable(params), "splits": groups}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path


def load_splits(path: PathLike, gdf: pd.DataFrame | None = None) -> pd.Series:
    """Read a split file written by :func:`save_splits` (JSON or GeoParquet).

    Args:
        path: the file.
        gdf: footprints to align with; every id of the file must be one of its chips.

    Returns:
        split name per row of ``gdf`` (None for rows in no split), or, without ``gdf``, per chip
        id (the Series' index); ``attrs`` hold ``strategy`` and ``params``.

    Raises:
        DataError: missing or malformed file, an id listed twice, or ids unknown to ``gdf``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("split file not found (write one with `geossl split`)", path)
    strategy: str | None = None
    params: dict[str, Any] = {}
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        try:
            frame = pd.read_parquet(path)
        except Exception as err:
            raise DataError(f"not a readable split GeoParquet ({first_line(err)})",
                            path) from err
        if "split" not in frame.columns:
            raise DataError("GeoParquet has no 'split' column", path)
        try:
            ids = chip_ids(frame)
        except DataError as err:
            raise DataError(str(err), path) from err
        series = pd.Series(frame["split"].to_numpy(), index=pd.Index(ids, name="chip_id"))
        series = series[series.notna()]
    else:
        try:
            doc = json.loads(path.read_text())
            groups = doc["splits"]
            if not isinstance(groups, dict):
                raise TypeError("'splits' is not an object")
            strategy, params = doc.get("strategy"), doc.get("params") or {}
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"not a split file ({err})", path) from err
        ids, names = [], []
        for name, members in groups.items():
            if not isinstance(members, list) or \
                    any(not isinstance(m, str | int) or isinstance(m, bool) for m in members):
                raise DataError(f"not a split file (side {name!r} is "
                                f"{json.dumps(members)[:40]}, not a list of ids)", path)
            ids += [str(m) for m in members]
            names += [str(name)] * len(members)
        series = pd.Series(names, index=pd.Index(ids, name="chip_id"), dtype=object)
    if not series.index.is_unique:
        dup = series.index[series.index.duplicated()][0]
        raise DataError(f"chip id {dup!r} is listed more than once", path)
    series.name = "split"
    if gdf is not None:
        try:
            aligned = _align(gdf, series)
        except DataError as err:
            raise DataError(str(err), path) from err
        series = pd.Series(aligned, index=gdf.index, name="split", dtype=object)
    series.attrs["strategy"] = strategy
    series.attrs["params"] = params
    return series


def split_names(splits: pd.Series) -> dict[str, int]:
    """Number of chips per split name."""
    return {str(k): int(v) for k, v in splits.value_counts().items()}


# --------------------------------------------------------------------------------------------
# footprints of a dataset (for the CLI)
# --------------------------------------------------------------------------------------------
def read_footprints(index: PathLike | None = None, data: str | None = None,
                    root: PathLike | None = None,
                    data_args: dict[str, Any] | None = None,
                    plain: bool = False) -> gpd.GeoDataFrame:
    """Footprints from a GeoParquet file (chip index or any footprint table) or a dataset.

    A dataset (built by :func:`geossl.datasets.registry.get_dataset`) gives its footprints by its
    ``footprints()`` (SEN12MS, BigEarthNet), by its grid of patches (``ids``, ``rows``,
    ``cols``, ``patch_size`` and ``transform``: a PolSAR scene, whose patch ids ``r<row>_c<col>``
    are what ``--splits`` later selects), or by its TorchGeo ``index`` (SSL4EO-S12, one row per
    acquisition, ids from ``filepath``).

    Args:
        index: GeoParquet with footprints (a chip index, a SEN12MS footprint cache, ...).
        data: dataset name (``--data``) whose footprints, patch grid or ``index`` gives
            footprints.
        root: dataset folder.
        data_args: more dataset constructor arguments (e.g. ``{"holdout": "train"}``: the
            SEN12MS training scenes only).
        plain: a dataset without footprints gives a plain table of its sample ids and classes
            (``chip_id``, ``label``), enough for a random split of separate images.

    Returns:
        the footprints.

    Raises:
        ConfigError: neither ``index`` nor ``data``/``root`` given, or a dataset without
            footprints.
        DataError: unreadable file.
    """
    if index is not None:
        path = Path(index)
        if path.is_dir():
            path = path / "index.parquet"
        if not path.is_file():
            raise DataError("footprint index not found", path)
        try:
            return gpd.read_parquet(path)
        except Exception as err:
            raise DataError(f"not a readable GeoParquet ({first_line(err)})",
                            path) from err
    if data is None or root is None:
        raise ConfigError("give --index FILE, or --data NAME and --root DIR")
    from geossl.datasets.protocol import footprints_of
    from geossl.datasets.registry import get_dataset

    dataset = get_dataset(data, root, **(data_args or {}))
    found = footprints_of(dataset)
    if found is None:
        if not plain:
            raise ConfigError(f"dataset {data!r} has no footprints to split (use --index, or "
                              "--strategy random for an archive of separate images)")
        return _plain_table(dataset)
    return found


def _plain_table(dataset: Any) -> pd.DataFrame:
    """``chip_id`` and ``label`` of an image archive without footprints (AID, ...).

    Its images do not overlap, so a random split stratified by class cannot leak.
    """
    from geossl.datasets.protocol import sample_ids, targets_of

    found = sample_ids(dataset)
    if found is None:
        raise ConfigError("the dataset has neither footprints nor sample ids to split")
    ids = list(found)
    table = pd.DataFrame({"chip_id": ids})
    targets = targets_of(dataset)
    if targets is not None and len(targets) == len(ids):
        table["label"] = [int(t) for t in targets]
    return table


def load_split_ids(path: str | Path, split: str) -> list[str]:
    """Ids of one side of a saved split (``geossl split`` JSON or GeoParquet).

    Args:
        path: split file.
        split: ``train``, ``val`` or ``test``.

    Returns:
        the chip / patch ids in that split.

    Raises:
        DataError: unreadable file.
        ConfigError: the split is absent or empty.
    """
    loaded: Any = load_splits(path)
    if isinstance(loaded, dict) and "splits" in loaded:
        loaded = loaded["splits"]
    if isinstance(loaded, dict):
        ids = loaded.get(split)
        if ids is None:
            raise ConfigError(f"split {split!r} not in {path} (has {', '.join(map(str, loaded))})")
        ids = list(ids)
    else:  # a pandas Series of split names indexed by id
        series = getattr(loaded, "splits", loaded)
        ids = [str(i) for i, s in series.items() if s == split]
    if not ids:
        raise ConfigError(f"split {split!r} of {path} is empty")
    return [str(i) for i in ids]


def split_and_save(config: SplitConfig) -> tuple[pd.Series, pd.DataFrame | None, str]:
    """What ``geossl split`` does: read footprints, split, save, optionally report leakage.

    Args:
        config: every option (:class:`~geossl.splits.config.SplitConfig`, the flags of
            ``geossl split``).

    Returns:
        the split, the leakage report (when asked) and a text summary to print.
    """
    out, index, data, root = config.out, config.index, config.data, config.root
    strategy, fractions, names = config.strategy, config.fractions or [], config.names
    seed, buffer, block_size, label = config.seed, config.buffer, config.block_size, config.label
    test_scenes, holdout, report = config.scenes, config.holdout, config.report
    origin, assign, data_args = config.origin, config.assign, config.data_args
    # before reading and splitting; never over the index it splits
    check_output(out, "split", folder=False, inputs=(index,))
    gdf = read_footprints(index, data, root, data_args, plain=strategy == "random")
    if report and "geometry" not in gdf:
        raise ConfigError(f"dataset {data!r} has no footprints: no leakage report (its images "
                          "are separate; drop --report)")
    fp = footprints(gdf) if report or strategy != "random" else None
    splits = make_splits(gdf, strategy, fractions, names, seed, buffer, block_size, label,
                         test_scenes=test_scenes, holdout=holdout, origin=origin,
                         assign=assign, fp=fp)
    path = save_splits(out, splits, gdf)
    counts = ", ".join(f"{k} {v}" for k, v in split_names(splits).items())
    frac = ", ".join(f"{k} {v:.3f}" for k, v in splits.attrs["fractions"].items())
    lines = [f"{strategy} split of {len(gdf)} chips: {counts} (fractions {frac}; max error "
             f"{splits.attrs['fraction_error']:.3f}) -> {path}"]
    table = None
    if report:
        fp = footprints(gdf) if fp is None else fp
        table = leakage_report(gdf, splits, buffer, fp)
        area_unit, length_unit, _ = report_units(fp)
        where = "" if not fp.planar else " (no georeferenced CRS: pixel-grid / CRS units)"
        lines.append(f"leakage report: areas in {area_unit}, distances in {length_unit}{where}")
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return splits, table, "\n".join(lines)
