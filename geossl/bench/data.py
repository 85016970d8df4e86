"""Data-layer benchmark: geossl chip index / ChipDataset vs TorchGeo, in one run, on the same data.

(a) Index build for N SEN12MS-like patch files (``ROIs1158_spring/s2_<scene>/
    ROIs1158_spring_s2_<scene>_p<patch>.tif``, 13 bands, 16 x 16 px, overlapping footprints,
    several UTM zones), generated once into ``--cache``:
    TorchGeo ``RasterDataset(paths=...)`` (its own file scan) vs building our chip index from the
    headers vs loading our prebuilt chip index (the ``chips`` dataset of the registry).
(b) Chips/s (12 bands, 128 px, num_workers=0) on the two real Major-TOM cells:
    TorchGeo ``RasterDataset`` (separate band files at 10/20/60 m, resampled to ``res=10`` by
    ``rasterio.merge``) + its random sampler (``RandomGeoSampler`` on 0.8, ``RandomPatchSampler``
    on 0.10: :func:`geossl.core.compat.random_sampler`) vs our ``ChipDataset`` on chips cut by
    ``geossl tile`` (GeoTIFF, and the packed npy / zarr stores).

Usage::

    geossl bench data --cache /tmp/geossl-bench              # N = 100,000
    geossl bench data --cache /tmp/geossl-bench --n-files 5000 --chips 256
    geossl bench data --cache /tmp/geossl-bench --n-files 5000

The Major-TOM cells come from ``--data`` or ``$GEOSSL_REAL_DATA/major_tom_s2l2a``; with neither,
the command says so in one line and stops (exit 2): no folder layout is assumed.

Also callable: ``bench_data(cache=..., n_files=..., ...) -> dict``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from geossl.bench import run_tool, tool_parser
from geossl.core.errors import ConfigError, DataError
from geossl.core.options import option
from geossl.runtime.machine import available_cores

#: environment variable naming the folder of real samples (one sub-folder per sample)
REAL_DATA_ENV = "GEOSSL_REAL_DATA"
#: the sample under ``$GEOSSL_REAL_DATA`` holding the Major-TOM cells
MAJOR_TOM = "major_tom_s2l2a"
S2_13 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
         "B12")
MT_12 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
SEASONS = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")
ZONES = (32633, 32618, 32755, 32611, 32636)


def real_sample(sample: str, flag: str = "--data", what: str = "") -> Path:
    """``$GEOSSL_REAL_DATA/<sample>``: the default of a benchmark's data flag.

    Args:
        sample: the sample's folder under ``$GEOSSL_REAL_DATA``.
        flag: the flag that would have given the folder (named in the error).
        what: what the folder holds (named in the error).

    Raises:
        ConfigError: the variable is not set (no folder layout is assumed).
    """
    root = os.environ.get(REAL_DATA_ENV, "").strip()
    if not root:
        raise ConfigError(f"{flag} not given and ${REAL_DATA_ENV} is not set: pass {flag} "
                          f"FOLDER{f' ({what})' if what else ''}")
    return Path(root) / sample


def major_tom_folder(data: str | Path | None) -> Path:
    """The folder of Major-TOM cells: ``data``, else ``$GEOSSL_REAL_DATA/major_tom_s2l2a``.

    Raises:
        ConfigError: no ``data`` and no ``$GEOSSL_REAL_DATA``.
        DataError: no cell (a folder with ``B02.tif``) there.
    """
    folder = Path(data) if data is not None else real_sample(
        MAJOR_TOM, what="Major-TOM cells, one folder of B01.tif .. B12.tif each")
    if not _major_tom_products(folder):
        raise DataError("no Major-TOM cell (a folder with B02.tif) here", folder)
    return folder


# ---- (a) SEN12MS-like file scan --------------------------------------------------------------


def generate_sen12ms_like(root: Path, n_files: int, px: int = 16,
                          per_scene: int = 500) -> list[Path]:
    """Write ``n_files`` tiny 13-band patches in the SEN12MS layout (skipped if already there).

    Patches of a scene lie on a grid with a stride of half a patch (overlapping footprints, as
    the real 256 px patches at 128 px stride).
    """
    import rasterio
    from rasterio.transform import from_origin

    from geossl.core.progress import progress

    done = root / f".done_{n_files}_{px}"
    files: list[Path] = []
    for k in range(n_files):
        scene, patch = divmod(k, per_scene)
        roi = SEASONS[scene % len(SEASONS)]
        sid = scene + 1
        files.append(root / roi / f"s2_{sid}" / f"{roi}_s2_{sid}_p{patch + 1}.tif")
    if done.exists():
        return files
    data = (np.arange(13 * px * px, dtype=np.uint16).reshape(13, px, px) % 4000) + 100
    side = int(np.ceil(np.sqrt(per_scene)))
    for k, path in enumerate(progress(files, desc="generate", unit="file")):
        if path.exists():
            continue
        scene, patch = divmod(k, per_scene)
        r, c = divmod(patch, side)
        x0 = 300000.0 + 50000.0 * (scene % 7) + c * px * 10 / 2
        y0 = 5000000.0 - 50000.0 * (scene // 7 % 7) - r * px * 10 / 2
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", count=13, height=px, width=px,
                           dtype="uint16", crs=f"EPSG:{ZONES[scene % len(ZONES)]}",
                           transform=from_origin(x0, y0, 10, 10)) as dst:
            dst.write(data)
    from geossl.core.io import atomic_write_text

    atomic_write_text(done, "ok")
    return files


def _timed(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of every run, ``repeats`` times each, after one untimed warm-up run each.

    The warm-up fills the page cache, GDAL's caches and lazy imports for every contender alike;
    the timed runs go round-robin, starting one contender later each round, so no contender is
    always the first (cold) or the last (warm) and a burst of load on a shared machine hits all.
    """
    from geossl.core.progress import progress

    names = list(runs)
    with progress(total=len(names) * (repeats + 1), desc="timed runs", unit="run") as bar:
        for fn in runs.values():
            fn()
            bar.update(1)
        times: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(repeats):
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
                t = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - t)
                bar.update(1)
    return times


def _summary(seconds: list[float]) -> dict[str, Any]:
    return {"min_s": float(np.min(seconds)), "median_s": float(np.median(seconds)),
            "runs_s": [float(s) for s in seconds]}


def bench_index(cache: Path, n_files: int, workers: int = 1, repeats: int = 3) -> dict[str, Any]:
    """TorchGeo's file scan vs building / loading our chip index for the same files.

    Like for like: TorchGeo's ``RasterDataset`` scans in one process, so our index is built in
    one process too (``geossl_build``); with ``workers`` > 1 a further row builds it with that
    many processes, reported apart and never compared with TorchGeo's single process.
    """
    from torchgeo.datasets import RasterDataset

    from geossl.datasets.registry import get_dataset
    from geossl.tiling import chip_index

    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    root = cache / f"sen12ms_like_{n_files}"
    files = generate_sen12ms_like(root, n_files)

    class SEN12MSLikeS2(RasterDataset):
        filename_glob = "ROIs*_s2_*_p*.tif"
        filename_regex = r"^ROIs\d+_(?P<season>[a-z]+)_s2_(?P<scene>\d+)_p(?P<patch>\d+)\.tif$"
        all_bands = S2_13

    index_file = cache / f"sen12ms_like_{n_files}.parquet"

    def torchgeo_scan() -> None:
        ds = SEN12MSLikeS2(paths=str(root))
        assert len(ds.index) == n_files, (len(ds.index), n_files)

    def geossl_build(procs: int) -> None:
        gdf = chip_index.build_index(root, files=files, workers=procs, progress=False,
                                     bands=list(S2_13), sensor="s2", root=cache)
        chip_index.write_index(gdf, index_file)

    def geossl_load() -> None:
        assert len(get_dataset("chips", index_file)) == n_files

    runs: dict[str, Callable[[], Any]] = {
        "torchgeo_scan": torchgeo_scan,
        "geossl_build": lambda: geossl_build(1),
    }
    if workers > 1:
        runs["geossl_build_parallel"] = lambda: geossl_build(workers)
    runs["geossl_load"] = geossl_load
    times = _timed(runs, repeats)
    out: dict[str, Any] = {"n_files": n_files, "repeats": repeats,
                           "processes": {"torchgeo_scan": 1, "geossl_build": 1,
                                         "geossl_load": 1}}
    if workers > 1:
        out["processes"]["geossl_build_parallel"] = workers
    for name, seconds in times.items():
        out[name] = _summary(seconds)
    base = out["torchgeo_scan"]["median_s"]
    for name in ("geossl_build", "geossl_load"):
        out[f"ratio_{name}_vs_torchgeo"] = base / out[name]["median_s"]
    return out


# ---- (b) chips/s on Major-TOM ----------------------------------------------------------------


def _major_tom_products(data: Path) -> list[Path]:
    return sorted(p.parent for p in data.rglob("B02.tif"))


def bench_chips(cache: Path, n_chips: int, size: int = 128, data: Path | None = None,
                seed: int = 0, repeats: int = 3) -> dict[str, Any]:
    """Chips/s of TorchGeo RasterDataset + random sampler vs ChipDataset, num_workers=0.

    Every reader is warmed up once, then timed ``repeats`` times round-robin (see
    :func:`_timed`); the ratios compare median runs.
    """
    import torch
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset

    from geossl.core.compat import random_sampler, stack_samples
    from geossl.datasets.registry import get_dataset
    from geossl.tiling.packed import pack
    from geossl.tiling.tile import TileOptions, tile

    products = _major_tom_products(major_tom_folder(data))
    out: dict[str, Any] = {"cells": len(products), "bands": len(MT_12), "size": size,
                           "chips": n_chips}
    batch = 16

    class MajorTOM(RasterDataset):
        # one entry per cell (B02), the other bands found by replacing the band group;
        # bands at 20/60 m are resampled onto the 10 m query grid by rasterio.merge (res=10)
        filename_glob = "B02.tif"
        filename_regex = r"^(?P<band>B02)\.tif$"
        separate_files = True
        all_bands = MT_12

    # one dataset per cell: the cells are in different UTM zones and a single RasterDataset
    # would warp the second cell into the first cell's zone
    loaders = []
    torch.manual_seed(seed)
    for p in products:
        ds = MajorTOM(paths=str(p), res=10.0)
        sampler = random_sampler(ds, size, length=n_chips // len(products))
        loaders.append(DataLoader(ds, sampler=sampler, batch_size=batch, num_workers=0,
                                  collate_fn=stack_samples))
    out["torchgeo_sampler"] = type(loaders[0].sampler).__name__ if loaders else ""

    def run_torchgeo() -> int:
        n = 0
        for loader in loaders:
            for b in loader:
                assert b["image"].shape[1:] == (len(MT_12), size, size)
                n += b["image"].shape[0]
        return n

    chips_dir = cache / f"major_tom_chips_{size}"
    tile(products, chips_dir, TileOptions(size=size, stride=size, min_valid=0.0),
         progress=False)
    for fmt in ("npy", "zarr"):
        pack(chips_dir, out=chips_dir / f"packed_{fmt}", fmt=fmt, progress=False)

    def run_chips(packed: Any) -> int:
        ds = get_dataset("chips", chips_dir, packed=packed)
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(ds), (n_chips,), generator=g).tolist()
        loader = DataLoader(ds, sampler=idx, batch_size=batch, num_workers=0)
        n = 0
        for b in loader:
            assert b["image"].shape[1:] == (len(MT_12), size, size)
            n += b["image"].shape[0]
        return n

    runs = {
        "torchgeo": run_torchgeo,
        "geossl_tif": lambda: run_chips(False),
        "geossl_npy": lambda: run_chips(chips_dir / "packed_npy"),
        "geossl_zarr": lambda: run_chips(chips_dir / "packed_zarr"),
    }
    counts: dict[str, int] = {}

    def counted(name: str, fn: Callable[[], int]) -> Callable[[], None]:
        def run() -> None:
            counts[name] = fn()
        return run

    times = _timed({name: counted(name, fn) for name, fn in runs.items()}, repeats)
    out["repeats"] = repeats
    for name, seconds in times.items():
        summary = _summary(seconds)
        summary["chips"] = counts[name]
        # chips/s of the fastest run and of the median run
        summary["best_chips_s"] = counts[name] / summary["min_s"]
        summary["median_chips_s"] = counts[name] / summary["median_s"]
        out[name] = summary
    for name in ("geossl_tif", "geossl_npy", "geossl_zarr"):
        out[f"ratio_{name}_vs_torchgeo"] = (out[name]["median_chips_s"]
                                            / out["torchgeo"]["median_chips_s"])
    return out


def _cache_default() -> str:
    return str(Path.home() / ".cache" / "geossl-bench")


@dataclasses.dataclass
class DataBenchConfig:
    """Options of ``geossl bench data`` (each a flag: ``n_files`` -> ``--n-files``)."""

    cache: str = option(factory=_cache_default, help="folder for the generated files and chips "
                        "(reused across runs)")
    n_files: int = option(100_000, "SEN12MS-like files for the index benchmark")
    chips: int = option(512, "chips read per measurement")
    workers: int | None = option(None, "processes of the extra parallel index-build row "
                                 "(default: up to 8; 1: no such row; the row compared with "
                                 "TorchGeo uses one process, as TorchGeo)")
    repeats: int = option(3, "timed runs of every measurement, after one warm-up run")
    data: str | None = option(None, lambda: f"Major-TOM folder (default "
                              f"${REAL_DATA_ENV}/{MAJOR_TOM})")
    skip_index: bool = option(False, "only part (b)")
    json: str | None = option(None, "also write the figures to this file")


def bench_data(config: DataBenchConfig) -> dict[str, Any]:
    """Run both parts; returns every figure (also printed by :func:`main`).

    Args:
        config: the options (:class:`DataBenchConfig`): the cache folder for the generated
            files and chips (reused across runs), the SEN12MS-like files of the index
            benchmark, the chips read per measurement, the processes of the extra parallel
            index-build row, the Major-TOM folder (default
            ``$GEOSSL_REAL_DATA/major_tom_s2l2a``), part (b) only, and the timed runs of
            every measurement (after one warm-up run).
    """
    cache, n_files, n_chips = Path(config.cache), config.n_files, config.chips
    workers, data, skip_index, repeats = (config.workers, config.data, config.skip_index,
                                          config.repeats)
    import torch

    folder = major_tom_folder(data)  # checked before any measurement
    torch.set_num_threads(1)
    cache.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cpu_count": os.cpu_count(), "available_cores": available_cores()}
    if not skip_index:
        result["index"] = bench_index(cache, n_files, workers if workers is not None
                                      else min(8, available_cores()), repeats)
    result["chips"] = bench_chips(cache, n_chips, data=folder, repeats=repeats)
    return result


def format_report(r: dict[str, Any]) -> str:
    """Markdown tables (min and median of the timed runs) with ratios against TorchGeo."""
    lines = [f"geossl data benchmark (cpu_count={r['cpu_count']})"]
    if "index" in r:
        a = r["index"]
        lines += [
            "",
            f"(a) index for {a['n_files']:,} SEN12MS-like patch files; one warm-up run each, "
            f"then {a['repeats']} timed runs, round-robin",
            "",
            "| how the index is built | processes | min s | median s | x TorchGeo (median) |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        rows = [("torchgeo_scan", "TorchGeo RasterDataset(paths=...) file scan"),
                ("geossl_build", "geossl chip index built from the headers"),
                ("geossl_build_parallel", "geossl chip index built from the headers"),
                ("geossl_load", "geossl prebuilt chip index loaded")]
        base = a["torchgeo_scan"]["median_s"]
        for key, label in rows:
            if key not in a:
                continue
            procs = a["processes"][key]
            # only rows with TorchGeo's single process are compared with it
            ratio = f"{base / a[key]['median_s']:.1f}" if procs == 1 else \
                "- (not like for like)"
            lines.append(f"| {label} | {procs} | {a[key]['min_s']:.3f} | "
                         f"{a[key]['median_s']:.3f} | {ratio} |")
    b = r["chips"]
    lines += [
        "",
        f"(b) chips/s, {b['bands']} bands, {b['size']} px, num_workers=0, {b['chips']} chips, "
        f"{b['cells']} Major-TOM cells; one warm-up run each, then {b['repeats']} timed runs, "
        "round-robin",
        "",
        "| reader | chips/s (best run) | chips/s (median run) | x TorchGeo (median) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, label in (("torchgeo", "TorchGeo RasterDataset + RandomGeoSampler"),
                        ("geossl_tif", "geossl ChipDataset, GeoTIFF chips"),
                        ("geossl_npy", "geossl ChipDataset, packed npy"),
                        ("geossl_zarr", "geossl ChipDataset, packed zarr")):
        vs_torchgeo = 1.0 if name == "torchgeo" else b[f"ratio_{name}_vs_torchgeo"]
        lines.append(f"| {label} | {b[name]['best_chips_s']:,.1f} | "
                     f"{b[name]['median_chips_s']:,.1f} | {vs_torchgeo:.1f} |")
    return "\n".join(lines)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The flags of this benchmark (``prog``: the command's name in ``--help``).

    One per field of :class:`DataBenchConfig`.
    """
    return tool_parser(DataBenchConfig, __doc__, prog)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the data benchmark with command-line flags ``argv`` (``prog``: the name in --help)."""
    return run_tool(build_parser(prog), DataBenchConfig, bench_data, format_report, argv)


if __name__ == "__main__":
    sys.exit(main())
