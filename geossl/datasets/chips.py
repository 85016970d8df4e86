"""A dataset over GeoTIFF chips (``geossl tile`` output or any folder of chips).

:class:`ChipDataset` reads a chip index (:mod:`geossl.tiling.chip_index`): loading it opens no chip
file. Each sample is ``{"image": float32 (C, H, W), "id": str, "crs": str, "bounds": float64
(4,) = (minx, miny, maxx, maxy) in that CRS}``, which PyTorch's default collate batches (the
strings become lists).

Why not a TorchGeo ``RasterDataset`` + ``RandomGeoSampler``: for pre-cut chips it rebuilds a
spatial index by opening every file, then warps and merges files for every query; here a sample
is a single windowless read of one small file (or a slice of a memory-mapped array), which is
one to two orders of magnitude faster (see ``tools/bench_data.py``).

:func:`geossl.tiling.packed.pack` writes every chip of an index into one store beside it; the
dataset reads from it, with no reprojection, whenever a store covering its chips is present.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import torch
from torchgeo.datasets import NonGeoDataset

from geossl.errors import ConfigError, DataError
from geossl.tiling import chip_index
from geossl.tiling.packed import open_packed, packed_dir, packed_rows

PathLike = str | os.PathLike[str]

class ChipDataset(NonGeoDataset):
    """Chips listed in a chip index, as a map-style dataset of sample dicts.

    Example::

        ds = ChipDataset("chips/index.parquet", bands=["B04", "B03", "B02"])
        loader = DataLoader(ds, batch_size=64, num_workers=8, shuffle=True)
    """

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
            first = str(err).strip().splitlines()
            raise DataError(f"cannot read chip ({first[0] if first else err})",
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
            raise ConfigError(
                f"the chips have different bands ({' | '.join(list(uniq)[:3])}); pass bands=")
        names = next(iter(uniq.values())) if uniq else []
    else:
        names = list(bands)
    lookup: dict[str, np.ndarray] = {}
    for s, have in uniq.items():
        missing = [b for b in names if b not in have]
        if missing:
            raise DataError(f"chips with bands {s} lack band(s) {', '.join(missing)}", root)
        lookup[s] = np.array([have.index(b) + 1 for b in names], dtype=np.int64)
    return names, [lookup[s] for s in band_strings]
