"""Scaling benchmark of the data jobs: ``geossl tile`` / ``geossl embed`` on 1 and 2 Dask workers.

Three parts, same machine, same data (Major-TOM cells: ``--data``, default
``$GEOSSL_REAL_DATA/major_tom_s2l2a``; without either the command says so and stops). The
compared runs are interleaved (A B A B ..., after one warm-up of each), so a burst of someone
else's load hits both sides alike, and every ratio is printed with the CPU seconds behind it
and the machine's load average (``os.getloadavg``) during the runs:

(a) **tiling floor**, one cell, 64 chips of 128 px, 12 bands: ``geossl tile`` in one process
    against the floor of simply reading, resampling (bilinear, onto the 10 m grid) and writing
    the same chips with rasterio (each band file read once, whole; the same GeoTIFF profile:
    tiled, zstd, predictor). Best of ``--repeats``.
(b) **scaling on a local Dask cluster**: tiling (every cell) and embedding (one cell, a
    resnet10t SimCLR checkpoint on ``--embed-size`` px windows, CPU) with 1 and 2 single-threaded
    worker processes; chips (windows) per second, and the parallel efficiency
    ``rate(n) / (n x rate(1))``, plus the same rates per CPU second (worker processes and
    client together: on a machine other jobs share, wall time measures their load, CPU time
    measures ours). The cluster is started before the clock starts; every run writes to a
    fresh folder.
(c) **pretraining steps/s with 1 vs 2 processes** (gloo, CPU): ``geossl pretrain --accelerator
    cpu --devices N --strategy ddp`` through :mod:`geossl.bench.ddp` (:func:`bench_pretrain`).

Usage::

    geossl bench scale --cache /tmp/geossl-scale
    geossl bench scale --workers 1,2,4 --repeats 5 --json scale.json

Also callable: ``bench_scale(ScaleBenchConfig(cache=..., ...)) -> dict``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from geossl.bench import run_tool, tool_parser
from geossl.bench.data import MAJOR_TOM, MT_12, real_sample
from geossl.core.errors import DataError
from geossl.core.options import option, parse_ints


def default_data() -> Path:
    """``$GEOSSL_REAL_DATA/major_tom_s2l2a``: the default of ``--data``.

    Raises:
        ConfigError: the variable is not set (no folder layout is assumed).
    """
    return real_sample(MAJOR_TOM, what="Major-TOM cells, one folder of B01.tif .. B12.tif each")


def _cells(data: Path) -> list[Path]:
    cells = sorted(p.parent for p in Path(data).rglob("B02.tif"))
    if not cells:
        raise DataError("no Major-TOM cell (a folder with B02.tif) here", data)
    return cells


def _load() -> float:
    """The machine's 1-minute load average (NaN where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return float("nan")


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int,
                cpu: Callable[[], float] | dict[str, Callable[[], float]] = time.process_time,
                log: Callable[[str], None] | None = None) -> dict[str, dict[str, float]]:
    """Run the compared functions in turn (A B A B ...) and keep each one's best times.

    One untimed warm-up of each first; then ``repeats`` rounds, each running every function
    once in the given order, so that load from other jobs falls on all of them alike (the
    per-core figures of runs done one side after the other swung by 15 % between identical
    runs on a shared machine).

    Args:
        fns: the functions to compare, by name.
        repeats: timed rounds.
        cpu: the CPU clock to read (default: this process's), or one per name; CPU seconds are
            the fair per-core measure on a machine other jobs share, where wall time depends on
            their load.
        log: called with one progress line per run.

    Returns:
        per name: ``wall_s`` and ``cpu_s`` (best of the rounds) and ``load`` / ``load_max``
        (mean and highest 1-minute load average seen at the start of its timed runs).
    """
    for name, fn in fns.items():
        if log is not None:
            log(f"warm-up {name}")
        fn()
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in fns}
    for i in range(repeats):
        for name, fn in fns.items():
            clock = cpu[name] if isinstance(cpu, dict) else cpu
            load = _load()
            t, c = time.perf_counter(), clock()
            fn()
            wall, used = time.perf_counter() - t, clock() - c
            runs[name].append((wall, used, load))
            if log is not None:
                log(f"round {i + 1}/{repeats} {name}: {wall:.2f} s wall, {used:.2f} CPU-s, "
                    f"load {load:.2f}")
    return {name: {"wall_s": min(r[0] for r in rs), "cpu_s": min(r[1] for r in rs),
                   "load": float(np.mean([r[2] for r in rs])),
                   "load_max": float(np.max([r[2] for r in rs]))}
            for name, rs in runs.items()}


def _say(text: str) -> None:
    print(f"geossl bench scale: {text}", file=sys.stderr, flush=True)


# ---- (a) tiling against the rasterio floor ---------------------------------------------------


def rasterio_floor(cell: Path, out: Path, size: int = 128) -> int:
    """Read every band of a cell once, resample it onto the 10 m grid, write every chip.

    The least any tiler must do: no validity mask, no tags, no index, no resume checks.
    Returns the number of chips written.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    with rasterio.open(cell / "B02.tif") as ref:
        height, width, transform, crs = ref.height, ref.width, ref.transform, ref.crs
    stack = np.empty((len(MT_12), height, width), dtype=np.uint16)
    for i, band in enumerate(MT_12):
        with rasterio.open(cell / f"{band}.tif") as src:
            stack[i] = src.read(1, out_shape=(height, width), resampling=Resampling.bilinear)
    out.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "dtype": "uint16", "count": len(MT_12), "height": size,
               "width": size, "crs": crs, "interleave": "pixel", "compress": "zstd",
               "predictor": 2, "tiled": True, "blockxsize": size, "blockysize": size}
    n = 0
    for r in range(0, height - size + 1, size):
        for c in range(0, width - size + 1, size):
            t = window_transform(Window(c, r, size, size), transform)
            with rasterio.open(out / f"chip_{r}_{c}.tif", "w", transform=t, **profile) as dst:
                dst.write(stack[:, r:r + size, c:c + size])
            n += 1
    return n


def bench_floor(cache: Path, data: Path, repeats: int, size: int = 128) -> dict[str, Any]:
    """``geossl tile`` (one process) against :func:`rasterio_floor` on one cell."""
    from geossl.tiling.tile import TileOptions, tile

    cell = _cells(data)[0]
    opts = TileOptions(size=size, min_valid=0.0)
    counter: dict[str, int] = {"floor": 0, "tile": 0}

    def floor() -> None:
        out = cache / f"floor_{counter['floor']}"
        counter["floor"] += 1
        shutil.rmtree(out, ignore_errors=True)
        rasterio_floor(cell, out, size)

    def geossl_tile() -> None:
        out = cache / f"tile_{counter['tile']}"
        counter["tile"] += 1
        shutil.rmtree(out, ignore_errors=True)
        tile([cell], out, opts, progress=False)

    chips = rasterio_floor(cell, cache / "floor_check", size)
    t = interleaved({"floor": floor, "tile": geossl_tile}, repeats, log=_say)
    f, g = t["floor"], t["tile"]
    return {"cell": cell.name, "chips": chips, "size": size, "floor_s": f["wall_s"],
            "floor_cpu_s": f["cpu_s"], "tile_s": g["wall_s"], "tile_cpu_s": g["cpu_s"],
            "tile_vs_floor": g["wall_s"] / f["wall_s"],
            "tile_vs_floor_cpu": g["cpu_s"] / f["cpu_s"],
            "load": (f["load"] + g["load"]) / 2, "load_max": max(f["load_max"], g["load_max"])}


# ---- (b) 1 vs 2 workers on a local Dask cluster ------------------------------------------------


def _checkpoint(path: Path) -> Path:
    """A resnet10t SimCLR checkpoint over the 12 Major-TOM bands (random weights), reused."""
    if path.is_file():
        return path
    from geossl.testing.checkpoints import random_simclr_checkpoint

    return random_simclr_checkpoint(path, MT_12, std=900.0)


def _timed_runs(workers: list[int], cache: Path, cells: list[Path], ckpt: Path, repeats: int,
                size: int, embed_size: int) -> list[dict[str, Any]]:
    """Best tiling and embedding times on local clusters of ``workers`` workers, interleaved.

    Every cluster is started before the clock starts and kept up: each round tiles and embeds
    on 1, then 2, ... workers (idle workers of the other clusters cost nothing measurable).
    """
    import contextlib
    import logging

    import dask
    from distributed import Client, LocalCluster

    from geossl.inference.embed import EmbedConfig, embed
    from geossl.runtime.dask import LOCAL_WORKER_CONFIG
    from geossl.tiling.tile import TileOptions, tile

    opts = TileOptions(size=size, min_valid=0.0)
    runs: dict[str, int] = {}
    counts = {"tile": 0, "embed": 0}
    with contextlib.ExitStack() as stack:
        fns: dict[str, Callable[[], Any]] = {}
        cpus: dict[str, Callable[[], float]] = {}
        for n in workers:
            _say(f"starting a local cluster of {n} worker(s)")
            # the cluster `geossl tile --workers N` starts (same worker settings)
            with dask.config.set(LOCAL_WORKER_CONFIG):
                cluster = stack.enter_context(LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True,
                    dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
            address = cluster.scheduler_address

            def cpu(client: Any = client) -> float:  # CPU-s of its workers and of this process
                return float(sum(client.run(time.process_time).values())) + time.process_time()

            def run_tile(n: int = n, address: str = address) -> None:
                k = runs[f"tile{n}"] = runs.get(f"tile{n}", -1) + 1
                out = cache / f"scale_tile_{n}_{k}"
                shutil.rmtree(out, ignore_errors=True)
                counts["tile"] = tile(cells, out, opts, progress=False,
                                      scheduler=address).written

            def run_embed(n: int = n, address: str = address) -> None:
                k = runs[f"embed{n}"] = runs.get(f"embed{n}", -1) + 1
                out = cache / f"scale_embed_{n}_{k}.zarr"
                shutil.rmtree(out, ignore_errors=True)
                res = embed(EmbedConfig(str(ckpt), cells[0], out, size=embed_size, block_rows=4,
                                        accelerator="cpu", scheduler=address, progress=False))
                counts["embed"] = res.shape[1] * res.shape[2]

            fns[f"tile {n}"], fns[f"embed {n}"] = run_tile, run_embed
            cpus[f"tile {n}"] = cpus[f"embed {n}"] = cpu
        # rounds of tile 1, tile 2, ..., embed 1, embed 2, ...: the compared runs side by side,
        # each timed with the CPU clock of its own cluster
        order = [f"{what} {n}" for what in ("tile", "embed") for n in workers]
        timed = interleaved({k: fns[k] for k in order}, repeats, cpus, log=_say)
    rows = []
    for n in workers:
        t, e = timed[f"tile {n}"], timed[f"embed {n}"]
        rows.append({
            "workers": n, "tile_s": t["wall_s"], "tile_cpu_s": t["cpu_s"],
            "tile_chips": counts["tile"], "tile_chips_s": counts["tile"] / t["wall_s"],
            "tile_chips_cpu_s": counts["tile"] / t["cpu_s"], "embed_s": e["wall_s"],
            "embed_cpu_s": e["cpu_s"], "embed_windows": counts["embed"],
            "embed_windows_s": counts["embed"] / e["wall_s"],
            "embed_windows_cpu_s": counts["embed"] / e["cpu_s"],
            "load": (t["load"] + e["load"]) / 2, "load_max": max(t["load_max"], e["load_max"])})
    return rows


def bench_workers(cache: Path, data: Path, workers: list[int], repeats: int,
                  size: int = 128, embed_size: int = 32) -> dict[str, Any]:
    """Tiling and embedding rates on local clusters of ``workers`` single-threaded processes."""
    cells = _cells(data)
    ckpt = _checkpoint(cache / "resnet10t_simclr.ckpt")
    rows = _timed_runs(workers, cache, cells, ckpt, repeats, size, embed_size)
    base = rows[0]
    for row in rows:
        k = row["workers"] / base["workers"]
        row["tile_efficiency"] = row["tile_chips_s"] / (k * base["tile_chips_s"])
        row["embed_efficiency"] = row["embed_windows_s"] / (k * base["embed_windows_s"])
        # per core: work per CPU second against one worker's (1.0 = no overhead from scaling)
        row["tile_cpu_efficiency"] = row["tile_chips_cpu_s"] / base["tile_chips_cpu_s"]
        row["embed_cpu_efficiency"] = row["embed_windows_cpu_s"] / base["embed_windows_cpu_s"]
    return {"cells": len(cells), "size": size, "embed_size": embed_size, "rows": rows}


# ---- (c) pretraining with 1 vs 2 processes -----------------------------------------------------


def bench_pretrain(cache: Path) -> dict[str, Any] | None:
    """Pretraining steps/s with 1 vs 2 gloo CPU processes (:func:`geossl.bench.ddp.bench_ddp`).

    ``geossl pretrain --accelerator cpu --devices N --strategy ddp`` for N = 1, 2, SimCLR on
    resnet18, 8 chips per process and step, 10 timed steps (``geossl bench ddp`` runs the same
    with other settings). ``cache`` is not used: the chips are written to a temporary folder.
    """
    from geossl.bench.ddp import DdpBenchConfig, bench_ddp

    result = bench_ddp(DdpBenchConfig())
    return {"rows": [{"processes": r["processes"], "steps_s": r["steps_per_s"],
                      "chips_s": r["chips_per_s"]} for r in result["rows"]],
            "efficiency": result["efficiency"]}


# ---- report --------------------------------------------------------------------------------------


def _cache_default() -> str:
    return str(Path.home() / ".cache" / "geossl-scale")


@dataclasses.dataclass
class ScaleBenchConfig:
    """Options of ``geossl bench scale`` (each a flag: ``embed_size`` -> ``--embed-size``)."""

    cache: str = option(factory=_cache_default, help="folder for outputs and the checkpoint "
                        "(reused across runs)")
    data: str | None = option(None, "Major-TOM folder (default "
                              "$GEOSSL_REAL_DATA/major_tom_s2l2a)")
    workers: list[int] = option(factory=lambda: [1, 2], flag_type=str,
                                help="worker counts, comma-separated")
    repeats: int = option(3, "timed runs (best kept)")
    size: int = option(128, "chip size (tiling)")
    embed_size: int = option(32, "window size (embedding)")
    skip_floor: bool = option(False, "skip part (a)")
    json: str | None = option(None, "also write the figures to this file")

    def __post_init__(self) -> None:
        """Split ``--workers``."""
        self.workers = parse_ints("--workers", self.workers) or [1, 2]


def bench_scale(config: ScaleBenchConfig) -> dict[str, Any]:
    """Run every part; returns every figure (also printed by :func:`main`)."""
    import torch

    workers, repeats = config.workers, config.repeats
    size, embed_size, skip_floor = config.size, config.embed_size, config.skip_floor

    torch.set_num_threads(1)
    data = Path(config.data) if config.data is not None else default_data()
    _cells(data)  # before anything runs: a wrong folder is one line
    from geossl.core.io import check_output, mark_output

    # the runs below remove their own earlier outputs inside the cache: never a user's folder
    # (absent, empty or an earlier cache of this benchmark)
    cache = Path(check_output(config.cache, "bench", flag="--cache"))
    mark_output(cache, "bench")
    result: dict[str, Any] = {"cpu_count": os.cpu_count(), "repeats": repeats}
    if not skip_floor:
        result["floor"] = bench_floor(cache, data, repeats, size)
    result["workers"] = bench_workers(cache, data, workers or [1, 2], repeats, size,
                                      embed_size)
    result["pretrain"] = bench_pretrain(cache)
    return result


def format_report(r: dict[str, Any]) -> str:
    """Human-readable report."""
    lines = [f"geossl scaling benchmark (cpu_count={r['cpu_count']}, best of {r['repeats']} "
             "interleaved rounds; load = 1-minute load average at the start of the runs)"]
    if "floor" in r:
        f = r["floor"]
        lines += [
            f"(a) one Major-TOM cell ({f['cell']}), {f['chips']} chips of {f['size']} px, "
            f"{len(MT_12)} bands, one process",
            f"    rasterio floor (read + resample + write) : {f['floor_s']:7.3f} s wall, "
            f"{f['floor_cpu_s']:7.3f} s CPU",
            f"    geossl tile                              : {f['tile_s']:7.3f} s wall, "
            f"{f['tile_cpu_s']:7.3f} s CPU  ({f['tile_vs_floor']:.2f}x the floor, "
            f"{f['tile_vs_floor_cpu']:.2f}x in CPU time; load {_fmt_load(f)})",
        ]
    w = r["workers"]
    lines += [
        f"(b) local Dask cluster, single-threaded workers: tile {w['cells']} cells "
        f"({w['size']} px chips), embed one cell ({w['embed_size']} px windows, resnet10t, CPU)",
        "    workers | tile chips/s | efficiency | chips/CPU-s | per core | tile CPU-s | "
        "embed windows/s | efficiency | windows/CPU-s | per core | embed CPU-s | load",
    ]
    for row in w["rows"]:
        lines.append(
            f"    {row['workers']:7d} | {row['tile_chips_s']:12.1f} | "
            f"{row['tile_efficiency']:10.2f} | {row['tile_chips_cpu_s']:11.1f} | "
            f"{row['tile_cpu_efficiency']:8.2f} | {row.get('tile_cpu_s', float('nan')):10.2f} | "
            f"{row['embed_windows_s']:15.1f} | "
            f"{row['embed_efficiency']:10.2f} | {row['embed_windows_cpu_s']:13.1f} | "
            f"{row['embed_cpu_efficiency']:8.2f} | {row.get('embed_cpu_s', float('nan')):11.2f} | "
            f"{_fmt_load(row)}")
    p = r.get("pretrain")
    if p is None:
        lines.append("(c) pretrain steps/s, 1 vs 2 processes (gloo, CPU): not measured")
    else:
        lines.append("(c) pretrain (SimCLR, resnet18, 8 chips per process and step), gloo, "
                     "CPU: processes | steps/s | chips/s")
        for row in p["rows"]:
            lines.append(f"    {row['processes']:9d} | {row['steps_s']:7.2f} | "
                         f"{row['chips_s']:7.1f}")
        lines.append(f"    parallel efficiency {p['efficiency']:.2f}")
    return "\n".join(lines)


def _fmt_load(row: dict[str, Any]) -> str:
    if "load" not in row:
        return "not recorded"
    return f"{row['load']:.2f} (max {row['load_max']:.2f})"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The flags of this benchmark (``prog``: the command's name in ``--help``).

    One per field of :class:`ScaleBenchConfig`.
    """
    return tool_parser(ScaleBenchConfig, __doc__, prog)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the scaling benchmark with command-line flags ``argv`` (``prog``: the name in --help)."""
    return run_tool(build_parser(prog), ScaleBenchConfig, bench_scale, format_report, argv)


if __name__ == "__main__":
    sys.exit(main())
