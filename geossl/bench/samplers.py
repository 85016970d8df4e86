"""Why geossl lays its own grid of windows over a geo dataset: both ways, same scenes, one run.

``geossl pretrain --data ssl4eo|sen12ms-geo --sampler grid|torchgeo-grid|torchgeo-random``
chooses where the windows come from (:mod:`geossl.datasets.geogrid`). This benchmark reads the
same folder (an SSL4EO-S12 folder, or with ``--data rasters`` a folder of raw scenes such as a
Major-TOM cell) through each of them, round-robin (A B C A B C ...), and prints per sampler:
windows, windows reaching past their footprint, the share of no-data pixels read (``0``, what
TorchGeo fills outside the data), the share of the footprints' area the windows cover, and the
read time per window as a ratio to geossl's grid.

    geossl bench samplers [--root $GEOSSL_REAL_DATA/ssl4eo_s12] [--patch-size 128] [--repeats 3]
    geossl bench samplers --data rasters --root major_tom_s2l2a/0U --sensors s2

Also callable: ``bench_samplers(root, ...) -> list[dict]`` (one record per sampler).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from geossl.bench import run_tool, tool_parser
from geossl.core.errors import ConfigError, DataError
from geossl.core.options import option, parse_names


def _default_root() -> Path | None:
    """``$GEOSSL_REAL_DATA/ssl4eo_s12`` when that variable is set."""
    real = os.environ.get("GEOSSL_REAL_DATA")
    return Path(real) / "ssl4eo_s12" if real else None


def _window_stats(samples: Any) -> dict[str, float]:
    """Windows past their footprint and the footprint area the windows cover."""
    import shapely

    boxes = [shapely.box(q[0].start, q[1].start, q[0].stop, q[1].stop) for q in samples.queries]
    geoms = list(samples.dataset.index.geometry)
    outside = sum(not any(g.buffer(1e-9).contains(b) for g in geoms) for b in boxes)
    union = shapely.union_all(geoms)
    covered = shapely.union_all(boxes).intersection(union).area if boxes else 0.0
    return {"windows": len(boxes), "outside": outside,
            "coverage": float(covered / union.area) if union.area else 0.0}


def _read_all(samples: Any, key: str) -> tuple[float, float]:
    """Seconds to read every window, and the share of no-data (0) pixels in ``key``."""
    nodata = total = 0
    t0 = time.perf_counter()
    for i in range(len(samples)):
        x = samples[i][key]
        nodata += int((x == 0).sum())
        total += x.numel()
    return time.perf_counter() - t0, nodata / max(1, total)


def _root_default() -> str | None:
    root = _default_root()
    return None if root is None else str(root)


@dataclasses.dataclass
class SamplersBenchConfig:
    """Options of ``geossl bench samplers`` (each a flag: ``patch_size`` -> ``--patch-size``)."""

    root: str | None = option(factory=_root_default,
                              help="SSL4EO-S12 folder, or scenes for --data rasters (default: "
                              "$GEOSSL_REAL_DATA/ssl4eo_s12)")
    data: str = option("ssl4eo", "ssl4eo (S1 x S2 pairs) or rasters (a folder of one sensor's "
                       "scenes)")
    patch_size: int = option(128, "window side in pixels")
    sensors: list[str] = option(factory=lambda: ["s1", "s2"], flag_type=str,
                                help="sensors paired on the ground")
    repeats: int = option(3, "rounds of reading every window (samplers interleaved)")
    seed: int = option(0, "seed of the random sampler")
    json: str | None = option(None, "also write the records to this file")

    def __post_init__(self) -> None:
        """Check ``--root`` and ``--data``; split ``--sensors``.

        Raises:
            ConfigError: one line naming the flag.
        """
        if self.root is None:
            raise ConfigError("give --root (an SSL4EO-S12 folder) or set GEOSSL_REAL_DATA")
        if self.data not in ("ssl4eo", "rasters"):
            raise ConfigError(f"--data must be ssl4eo or rasters, got {self.data!r}")
        self.sensors = parse_names(self.sensors) or []


def bench_samplers(config: SamplersBenchConfig, log: Callable[[str], None] = print
                   ) -> list[dict[str, Any]]:
    """Read a geo dataset through every ``--sampler`` and compare them.

    Args:
        config: the options (:class:`SamplersBenchConfig`): the folder (SSL4EO-S12 with its
            ``s1``, ``s2a``/``s2c`` product folders, or scenes for ``data="rasters"``), the
            window side, the sensors paired on the ground, the rounds of reading every window
            (samplers interleaved in each round) and the random sampler's seed.
        log: where the table goes.

    Returns:
        one record per sampler: ``sampler``, ``windows``, ``outside``, ``coverage``,
        ``nodata_fraction``, ``s_per_window`` (median over rounds), ``time_ratio`` (to
        ``grid``).

    Raises:
        DataError: the folder does not exist.
        ConfigError: bad arguments.
    """
    from geossl.datasets.geogrid import SAMPLERS
    from geossl.datasets.registry import pretraining_dataset

    assert config.root is not None  # SamplersBenchConfig refuses None
    root, patch_size, sensors = config.root, config.patch_size, config.sensors
    repeats, seed, data = config.repeats, config.seed, config.data
    path = Path(root)
    if not path.is_dir():
        raise DataError("dataset folder not found (give --root or set GEOSSL_REAL_DATA)", path)
    if repeats < 1 or patch_size < 1:
        raise ConfigError("--repeats and --patch-size must be at least 1")
    if data not in ("rasters", "ssl4eo"):
        raise ConfigError(f"--data {data!r}: ssl4eo or rasters")
    if data == "rasters" and len(sensors) != 1:
        raise ConfigError("--data rasters reads one sensor (e.g. --sensors s2)")
    key = "image" if data == "rasters" else "image_s2" if "s2" in sensors else \
        f"image_{sensors[0]}"
    # the windows pretraining reads, built by the registry as `geossl pretrain --sampler` does
    pairing = "aug" if len(sensors) == 1 else "geo"
    samples = {s: pretraining_dataset(data, path, list(sensors), pairing, patch_size=patch_size,
                                      sampler=s, seed=seed) for s in SAMPLERS}
    dataset = samples["grid"].dataset
    times: dict[str, list[float]] = {s: [] for s in SAMPLERS}
    nodata: dict[str, float] = {}
    log(f"{len(dataset.index)} footprint(s) in {path}, windows of {patch_size} px, "
        f"{repeats} round(s), samplers interleaved")
    for r in range(repeats):
        for name, ds in samples.items():  # A B C, A B C, ...: the machine's load hits all
            seconds, nodata[name] = _read_all(ds, key)
            times[name].append(seconds / max(1, len(ds)))
        log(f"round {r + 1}/{repeats}: " + ", ".join(
            f"{n} {1e3 * times[n][-1]:.1f} ms/window" for n in samples))
    base = statistics.median(times["grid"])
    records = []
    log(f"{'sampler':<17}{'windows':>8}{'outside':>8}{'coverage':>9}{'no-data':>9}"
        f"{'ms/window':>10}{'vs grid':>8}")
    for name, ds in samples.items():
        med = statistics.median(times[name])
        rec = {"sampler": name, **_window_stats(ds), "nodata_fraction": nodata[name],
               "s_per_window": med, "time_ratio": med / base if base else float("nan")}
        records.append(rec)
        log(f"{name:<17}{rec['windows']:>8}{rec['outside']:>8}{rec['coverage']:>9.3f}"
            f"{rec['nodata_fraction']:>9.4f}{1e3 * med:>10.2f}{rec['time_ratio']:>8.2f}")
    return records


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The flags of this benchmark: one per field of :class:`SamplersBenchConfig`."""
    return tool_parser(SamplersBenchConfig, __doc__, prog)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run, print the table; returns 0.

    ``prog`` is the command's name in ``--help``.
    """
    return run_tool(build_parser(prog), SamplersBenchConfig, bench_samplers, None, argv)


if __name__ == "__main__":
    sys.exit(main())
