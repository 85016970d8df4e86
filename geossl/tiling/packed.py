"""A packed chip store: every chip of an index in one array that workers read without reprojection.

:func:`pack` writes every chip of an index into one store beside it: a memory-mappable
``chips.npy`` (``(N, C, H, W)``, the fastest: a read is a memcpy) or a ``chips.zarr`` array with
one chunk per chip, plus ``ids.json`` (the chip order) and ``meta.json`` (written last: a store
with ``meta.json`` is complete). :class:`geossl.datasets.chips.ChipDataset` reads from it
(:func:`packed_dir`, :func:`packed_rows`, :func:`open_packed`) whenever a store covering its
chips is present.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import atomic_path
from geossl.core.progress import progress as progress_bar
from geossl.tiling import chip_index

PathLike = str | os.PathLike[str]

#: folder of the packed store, beside the index
PACKED_DIR = "packed"
#: description of the packed store (written last: its presence means the store is complete)
PACKED_META = "meta.json"


def packed_dir(root: Path, packed: bool | PathLike | None) -> Path | None:
    """The packed store of the chips under ``root``, or ``None``.

    ``packed``: ``None`` looks in ``root/packed`` (``None`` when absent), ``True`` requires it
    there, a path names the store, ``False`` uses none.

    Raises:
        DataError: a store asked for by path or ``True`` is missing.
    """
    if packed is False:
        return None
    if packed is None or packed is True:
        path = root / PACKED_DIR
    else:
        path = Path(packed)
    if not (path / PACKED_META).is_file():
        if packed is not None:
            raise DataError("packed chip store not found (write one with `geossl tile "
                            "--format npy` or geossl.tiling.packed.pack)", path)
        return None
    return path


def packed_rows(store: Path, ids: list[str], required: bool) -> np.ndarray | None:
    """Row of each chip in the store, or None when the store lacks some of them."""
    meta = json.loads((store / PACKED_META).read_text())
    order = json.loads((store / meta["ids"]).read_text())
    pos = {cid: k for k, cid in enumerate(order)}
    rows = np.array([pos.get(c, -1) for c in ids], dtype=np.int64)
    if (rows < 0).any():
        if required:
            raise DataError(f"packed store lacks {(rows < 0).sum()} chip(s) of the index "
                            "(stale: pack it again)", store)
        return None
    return rows


def open_packed(store: PathLike) -> Any:
    """Open a packed store read-only: a memory-mapped ``(N, C, H, W)`` array or a zarr array."""
    store = Path(store)
    meta = json.loads((store / PACKED_META).read_text())
    if meta["format"] == "npy":
        return np.load(store / meta["data"], mmap_mode="r")
    import zarr

    return zarr.open_array(str(store / meta["data"]), mode="r")


def pack(
    index: PathLike,
    out: PathLike | None = None,
    fmt: str = "npy",
    progress: bool = True,
) -> Path:
    """Write every chip of an index into one store that workers read without reprojection.

    All chips must share band list, size and dtype. The data file is written atomically, then
    ``meta.json`` (so a store with ``meta.json`` is complete).

    Args:
        index: chip index file (or its folder).
        out: store folder (default: ``packed/`` beside the index, where :class:`ChipDataset`
            looks for it).
        fmt: ``npy`` (memory-mappable, fastest) or ``zarr`` (one chunk per chip, compressed).
        progress: show a progress bar.

    Returns:
        the store folder.

    Raises:
        DataError: chips of different shapes / dtypes, unreadable chip.
        ConfigError: unknown format.
    """
    import rasterio

    if fmt not in ("npy", "zarr"):
        raise ConfigError(f"unknown packed format {fmt!r} (npy or zarr)")
    gdf = chip_index.read_index(index)
    root = Path(gdf.attrs["root"])
    dest = Path(out) if out is not None else root / PACKED_DIR
    if len(gdf["bands"].unique()) != 1 or len(gdf[["height", "width"]].drop_duplicates()) != 1:
        raise DataError("cannot pack chips with different bands or sizes", index)
    n = len(gdf)
    count = len(str(gdf["bands"].iloc[0]).split(","))
    h, w = int(gdf["height"].iloc[0]), int(gdf["width"].iloc[0])
    with rasterio.open(root / gdf["path"].iloc[0]) as src:
        dtype = np.dtype(src.dtypes[0])
    dest.mkdir(parents=True, exist_ok=True)
    meta_file = dest / PACKED_META
    if meta_file.exists():
        meta_file.unlink()  # the store is incomplete from here until meta.json is rewritten
    paths = [root / p for p in gdf["path"]]

    def chips() -> Any:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            for p in progress_bar(paths, desc="pack", unit="chip", disable=not progress):
                with rasterio.open(p) as src:
                    arr = src.read()
                if arr.shape != (count, h, w):
                    raise DataError(f"chip has shape {arr.shape}, expected {(count, h, w)}", p)
                yield arr.astype(dtype, copy=False)

    if fmt == "npy":
        data_name = "chips.npy"
        with atomic_path(dest / data_name) as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, count, h, w))
            for k, arr in enumerate(chips()):
                mm[k] = arr
            mm.flush()
            del mm
            chip_index.set_default_mode(tmp)
    else:
        import zarr

        data_name = "chips.zarr"
        tmp_dir = dest / f".{data_name}.part"
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        z = zarr.open_array(str(tmp_dir), mode="w", shape=(n, count, h, w),
                            chunks=(1, count, h, w), dtype=dtype)
        for k, arr in enumerate(chips()):
            z[k] = arr
        final = dest / data_name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_dir, final)
    chip_index.write_text(dest / "ids.json", json.dumps(gdf["chip_id"].astype(str).tolist()))
    meta = {"format": fmt, "data": data_name, "ids": "ids.json", "shape": [n, count, h, w],
            "dtype": dtype.name, "bands": str(gdf["bands"].iloc[0]).split(",")}
    chip_index.write_text(meta_file, json.dumps(meta, indent=1))
    return dest
