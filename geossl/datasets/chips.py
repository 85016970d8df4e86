"""A dataset over GeoTIFF chips (``geossl tile`` output or any folder of chips).

:class:`ChipDataset` reads a chip index (:mod:`geossl.tiling.chip_index`): loading it opens no chip
file. Each sample is ``{"image": float32 (C, H, W), "id": str, "crs": str, "bounds": float64
(4,) = (minx, miny, maxx, maxy) in that CRS}``, which PyTorch's default collate batches (the
strings become lists).

Why not a TorchGeo ``RasterDataset`` + ``RandomGeoSampler``: for pre-cut chips it rebuilds a
spatial index by opening every file, then warps and merges files for every query; here a sample
is a single windowless read of one small file (or a slice of a memory-mapped array), which is
one to two orders of magnitude faster (see ``geossl bench data``).

:func:`geossl.tiling.packed.pack` writes every chip of an index into one store beside it; the
dataset reads from it, with no reprojection, whenever a store covering its chips is present.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from torchgeo.datasets import NonGeoDataset

from geossl.core.errors import ConfigError, DataError, first_line
from geossl.datasets.base import GeosslDataset, PretrainingRequest, construct
from geossl.datasets.multisensor import PairedChips
from geossl.datasets.protocol import declared_bands
from geossl.tiling import chip_index
from geossl.tiling.packed import open_packed, packed_dir, packed_rows

PathLike = str | os.PathLike[str]

#: default chip-index column holding each chip's class
DEFAULT_LABEL_COLUMN = "label"

class ChipDataset(GeosslDataset, NonGeoDataset):
    """Chips listed in a chip index, as a map-style dataset of sample dicts.

    Example::

        ds = ChipDataset("chips/index.parquet", bands=["B04", "B03", "B02"])
        loader = DataLoader(ds, batch_size=64, num_workers=4, shuffle=True)

    The chips' sensor is the index's ``sensor`` column (or ``--sensors``); with several
    sensors or dates :meth:`for_pretraining` joins them on footprint
    (:class:`~geossl.datasets.multisensor.PairedChips`). For evaluation the class of each chip
    comes from a column of the index (:class:`LabelledChips`).
    """

    #: decided per instance (the index's ``sensor`` column, ``--sensors``)
    sensors: tuple[str, ...] = ()
    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("bands", "transforms", "ids", "root", "packed", "workers")

    def __init__(
        self,
        index: PathLike | gpd.GeoDataFrame,
        bands: Sequence[str] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        root: PathLike | None = None,
        packed: bool | PathLike | None = None,
        workers: int = 0,
    ) -> None:
        """Open a chip index.

        Args:
            index: chip index file, a folder holding ``index.parquet``, a folder of GeoTIFF
                chips without an index (the index is built from their headers, not written),
                or an index GeoDataFrame.
            bands: band names to return, in this order (default: every band of the chips,
                which must then all have the same bands).
            transforms: applied to each sample dict.
            ids: keep only these chip ids (one side of a split), in this order.
            root: folder the ``path`` column is relative to (default: the index's folder;
                required for a GeoDataFrame without ``attrs["root"]``).
            packed: read from a packed store: None (default) uses ``<root>/packed`` when it
                exists and holds every chip, True requires it, False never uses it, a path
                names the store folder.
            workers: processes reading headers when ``index`` is a folder without an index.

        Raises:
            DataError: missing / invalid index, chips lacking a requested band, unknown ids,
                or a required packed store missing.
            ConfigError: chips with different bands and no ``bands`` given.
        """
        if isinstance(index, gpd.GeoDataFrame | pd.DataFrame):
            gdf = index
            chip_index.validate_index(gdf)
            base = root if root is not None else gdf.attrs.get("root")
            if base is None:
                raise ConfigError("ChipDataset(GeoDataFrame) needs root= (the chips' folder)")
            self.root = Path(base)
        else:
            path = Path(index)
            if path.is_dir() and not (path / chip_index.INDEX_NAME).is_file():
                gdf = chip_index.build_index(path, workers=workers, progress=False)
                self.root = Path(root) if root is not None else path
            else:
                gdf = chip_index.read_index(path)
                self.root = Path(root) if root is not None else Path(gdf.attrs["root"])
        if ids is not None:
            pos = pd.Series(np.arange(len(gdf)), index=gdf["chip_id"].to_numpy())
            missing = [i for i in ids if i not in pos.index]
            if missing:
                raise DataError(f"{len(missing)} chip id(s) not in the index, e.g. "
                                f"{missing[0]!r}", self.root)
            gdf = gdf.iloc[pos.loc[list(ids)].to_numpy()]
        self.index: gpd.GeoDataFrame = gdf.reset_index(drop=True)
        self.transforms = transforms
        self.ids: list[str] = self.index["chip_id"].astype(str).tolist()
        # joined per read: 100,000 pathlib joins here would cost seconds
        self._root = str(self.root)
        self._rel = self.index["path"].astype(str).to_numpy()
        self._crs = self.index["crs"].astype(str).tolist()
        self._bounds = self.index[["minx", "miny", "maxx", "maxy"]].to_numpy(np.float64)
        self.bands: list[str]
        self.bands, self._band_idx = _band_indexes(self.index["bands"].astype(str), bands,
                                                   self.root)
        self._packed_dir = packed_dir(self.root, packed)
        self._packed_rows: np.ndarray | None = None
        self._store: Any = None
        if self._packed_dir is not None:
            self._packed_rows = packed_rows(self._packed_dir, self.ids,
                                             required=packed is not None and packed is not False)
            if self._packed_rows is None:
                self._packed_dir = None

    # -- the dataset protocol -------------------------------------------------------------
    @classmethod
    def locate(cls, root: Path, index: PathLike | None = None) -> Path:
        """The chip index.

        ``index`` when given, else ``ROOT/index.parquet`` (or ``ROOT`` when it is the file).

        Raises:
            DataError: the index does not exist.
        """
        path = Path(index) if index else (root if root.is_file() else root / "index.parquet")
        if not path.exists():
            raise DataError("chip index not found (write one with `geossl tile` or "
                            "`geossl index`)", path)
        return path

    @classmethod
    def for_pretraining(cls, request: PretrainingRequest) -> Dataset[dict[str, Any]]:
        """The chips of ``sensors``.

        One sensor: the chips as they are (``options``: constructor arguments such as
        ``bands`` from ``--bands``); several (or two dates): joined on footprint
        (:func:`paired_chips`).

        Raises:
            DataError: missing index, or no chip of a sensor.
            ConfigError: ``options`` with several sensors or two dates.
        """
        sensors, ids, kwargs = request.sensors, request.ids, dict(request.options)
        path = Path(request.index) if request.index else request.root / "index.parquet"
        if not path.exists():
            raise DataError("chip index not found (write one with `geossl tile`)", path)
        if request.pairing == "temporal" or len(sensors) > 1:
            if kwargs:
                raise ConfigError(f"{', '.join(sorted(kwargs))} (--bands, --data-args) is not "
                                  "supported with several sensors or temporal pairs of chips")
            return paired_chips(path, sensors, request.pairing)
        gdf = chip_index.read_index(path)
        part = sensor_chips(gdf, sensors[0], path)
        if len(part) == len(gdf):  # one sensor: the index as it is (and its packed store)
            return construct(cls, path, "chips", ids=ids, **kwargs)  # type: ignore[no-any-return]
        if ids is not None:  # a split of the whole index: its chips of this sensor
            have = set(part["chip_id"].astype(str))
            ids = [i for i in ids if i in have]
            if not ids:
                raise DataError(f"no chip of sensor {sensors[0]!r} in the split", path)
        return cls(part, root=gdf.attrs.get("root", path.parent), ids=ids, **kwargs)

    @classmethod
    def evaluation_args(
        cls,
        root: Path,
        args: Mapping[str, Any],
        label_path: PathLike | None = None,
        label_column: str | None = None,
    ) -> dict[str, Any]:
        """Chips take their classes from a column of the index (``label_column``).

        Raises:
            ConfigError: a label raster (``--label-path`` is PolSAR's).
        """
        return super().evaluation_args(root, args, label_path)

    def for_evaluation(self, label_column: str | None = None) -> Dataset[dict[str, Any]]:
        """The chips with ``label`` from ``label_column`` (default ``label``).

        Raises:
            ConfigError: no such column (the default one included).
        """
        column = label_column or DEFAULT_LABEL_COLUMN
        if label_column is None and column not in self.index.columns:
            raise ConfigError("chips carry no labels: give --label-column COLUMN, a column of "
                              "the chip index holding each chip's class")
        return LabelledChips(self, column)

    def footprints(self) -> gpd.GeoDataFrame:
        """The chip index (``chip_id``, bounds, footprint ``geometry``, extra columns)."""
        return self.index.reset_index(drop=True)

    @property
    def packed(self) -> bool:
        """True when samples are read from a packed store."""
        return self._packed_dir is not None

    def __len__(self) -> int:
        """Number of chips."""
        return len(self.ids)

    def _path(self, i: int) -> str:
        return os.path.join(self._root, str(self._rel[i]))

    def _read(self, i: int) -> np.ndarray:
        if self._packed_dir is not None and self._packed_rows is not None:
            if self._store is None:  # opened lazily: once per DataLoader worker
                self._store = open_packed(self._packed_dir)
            bands = self._band_idx[i] - 1
            arr = self._store[int(self._packed_rows[i])]
            return np.asarray(arr)[bands] if len(bands) != arr.shape[0] else np.asarray(arr)
        import rasterio
        from rasterio.errors import RasterioError

        try:
            # no directory listing on open (it dominates with thousands of chips per folder)
            with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), \
                    rasterio.open(self._path(i)) as src:
                return np.asarray(src.read([int(b) for b in self._band_idx[i]]))
        except RasterioError as err:
            raise DataError(f"cannot read chip ({first_line(err)})",
                            self._path(i)) from err

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Sample ``i``: ``image`` (float32, C x H x W), ``id``, ``crs``, ``bounds``."""
        arr = self._read(i)
        sample: dict[str, Any] = {
            "image": torch.from_numpy(arr.astype(np.float32, copy=False)),
            "id": self.ids[i],
            "crs": self._crs[i],
            "bounds": torch.from_numpy(self._bounds[i].copy()),
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the open store (reopened in each worker)."""
        state = self.__dict__.copy()
        state["_store"] = None
        return state


def _band_indexes(
    band_strings: pd.Series, bands: Sequence[str] | None, root: Path
) -> tuple[list[str], list[np.ndarray]]:
    """Band names returned and, per chip, their 1-based indexes in the chip file."""
    uniq = {s: s.split(",") for s in band_strings.unique()}
    if bands is None:
        if len(uniq) > 1:
            first = next(iter(uniq.values()))
            common = [b for b in first if all(b in have for have in uniq.values())]
            choose = (f"select common bands with --bands {','.join(common)}" if common else
                      "no band is common to all of them")
            raise ConfigError(f"the chips have different bands ({' | '.join(list(uniq)[:3])}"
                              f"{' | ...' if len(uniq) > 3 else ''}); {choose}", root)
        names = next(iter(uniq.values())) if uniq else []
    else:
        names = list(bands)
    lookup: dict[str, np.ndarray] = {}
    for s, have in uniq.items():
        missing = [b for b in names if b not in have]
        if missing:
            n = int((band_strings == s).sum())
            raise DataError(f"{n} chip(s) with bands {s} lack band(s) {', '.join(missing)} "
                            "asked for by --bands", root)
        lookup[s] = np.array([have.index(b) + 1 for b in names], dtype=np.int64)
    return names, [lookup[s] for s in band_strings]


class LabelledChips(GeosslDataset, Dataset[dict[str, Any]]):
    """A :class:`~geossl.datasets.chips.ChipDataset` whose samples get ``label`` from a column.

    Classes are the sorted distinct values of the column (as text); a chip whose value is
    missing gets ``label`` -1 and is left out of evaluation (:meth:`labelled_mask`).
    """

    #: decided per instance (the index's ``sensor`` column, ``--sensors``)
    sensors: tuple[str, ...] = ()
    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("column",)

    def __init__(self, chips: Any, column: str = DEFAULT_LABEL_COLUMN) -> None:
        """Wrap ``chips``.

        Raises:
            ConfigError: the index has no such column, or no chip has a value in it.
        """
        index = chips.index
        if column not in index.columns:
            extra = [c for c in index.columns if c not in _CHIP_COLUMNS]
            raise ConfigError(f"the chip index has no label column {column!r}: give "
                              f"--label-column NAME with one of its extra columns "
                              f"({', '.join(extra) or 'none: add one'})")
        values = index[column]
        present = values.notna().to_numpy() & (values.astype(str).str.strip() != "").to_numpy()
        if not present.any():
            raise ConfigError(f"no chip has a value in label column {column!r}")
        text = values.astype(str).str.strip()
        numeric = pd.to_numeric(text[present], errors="coerce")
        if numeric.notna().all():  # integer classes sort as numbers: 2 before 10
            order = sorted(set(numeric.tolist()))
            classes = [_num_text(v) for v in order]
            codes = {v: i for i, v in enumerate(order)}
            targets = np.full(len(index), -1, np.int64)
            targets[present] = [codes[v] for v in numeric.tolist()]
        else:
            classes = sorted(set(text[present].tolist()))
            lookup = {c: i for i, c in enumerate(classes)}
            targets = np.asarray([lookup[t] if p else -1 for t, p in zip(text, present)],
                                 np.int64)
        self.chips = chips
        self.column = column
        self.classes = classes
        self.targets = targets
        self.ids: list[str] = list(chips.ids)
        self.bands = declared_bands(chips)
        self.index = index

    def __len__(self) -> int:
        """Number of chips."""
        return len(self.chips)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """The chip's sample dict with its ``label``."""
        sample = dict(self.chips[i])
        sample["label"] = torch.tensor(int(self.targets[i]), dtype=torch.int64)
        return sample

    def labelled_mask(self) -> np.ndarray:
        """Chips with a value in the label column."""
        return np.asarray(self.targets >= 0)

    def footprints(self) -> pd.DataFrame:
        """The chip index with ``label`` set to the class index (NaN where missing)."""
        gdf = self.index.copy()
        gdf["label"] = np.where(self.targets >= 0, self.targets.astype(np.float64), np.nan)
        return gdf


_CHIP_COLUMNS = frozenset(chip_index.COLUMNS)


def _num_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def sensor_chips(gdf: Any, sensor: str, path: str | Path | None = None) -> Any:
    """The rows of a chip index that hold ``sensor`` (its ``sensor`` column).

    An index whose chips record no sensor (``geossl index`` without ``--sensor``) is taken
    whole, as one sensor; otherwise only the chips of ``sensor`` are kept.

    Args:
        gdf: chip index.
        sensor: sensor name (``--sensors``).
        path: the index file, for error messages.

    Returns:
        the index rows of that sensor (``gdf`` itself when it records no sensor).

    Raises:
        DataError: the index records sensors but none of its chips is ``sensor``.
    """
    if "sensor" not in gdf.columns:
        return gdf
    names = gdf["sensor"].fillna("").astype(str)
    if not (names != "").any():
        return gdf
    if bool((names == sensor).all()):
        return gdf
    part = gdf[(names == sensor).to_numpy()].reset_index(drop=True)
    if not len(part):
        have = ", ".join(sorted({n or "(none)" for n in names.unique()}))
        raise DataError(f"no chip of sensor {sensor!r} in the index (has {have})", path)
    return part


def paired_chips(path: Path, sensors: Sequence[str], pairing: str) -> Dataset[dict[str, Any]]:
    """Chips of several sensors (the index's ``sensor`` column) or dates, joined on footprint."""
    gdf = chip_index.read_index(path)
    root = gdf.attrs.get("root", path.parent)
    if len(sensors) == 1:
        # temporal: dates of one sensor; chips of other sensors would pair with them on
        # footprint (and then fail to stack: different band counts)
        indexes = {sensors[0]: sensor_chips(gdf, sensors[0], path)}
    else:
        if "sensor" not in gdf.columns:
            raise DataError("chip index has no 'sensor' column to pair sensors with", path)
        indexes = {}
        for s in sensors:
            part = gdf[gdf["sensor"].astype(str) == s].reset_index(drop=True)
            if not len(part):
                have = ", ".join(sorted(map(str, gdf["sensor"].unique())))
                raise DataError(f"no chip of sensor {s!r} in the index (has {have})", path)
            indexes[s] = part
    return PairedChips(  # type: ignore[no-any-return]
        indexes,
        reference=sensors[-1] if len(sensors) > 1 else sensors[0],
        temporal=sensors[0] if pairing == "temporal" else None,
        require="reference" if pairing == "partial-fusion" else "all",
        roots={s: root for s in indexes},
    )
