"""Benchmark the split strategies on the SEN12MS-like layout of 180,662 overlapping footprints.

Generates the layout (geossl/testing/footprints.py: 256 px patches at 128 px stride, 10 m, 252
scenes in 12 UTM zones), then times each strategy and its leakage report and prints, per
strategy, the chips per split, the achieved test fraction, the leaking chips and seconds.
``checkerboard`` alternates blocks, so it is run at 0.5/0.5; the others at ``--fractions``.

    geossl bench splits [--n 180662] [--block-size 10240] [--buffer 0]
    geossl bench splits --n 2000 --scenes 8          # a tiny run
    geossl bench splits --strategies overlap,random --json splits.json

Also callable: ``bench_splits(n=..., ...) -> list[dict]`` (one record per strategy).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from geossl.bench import run_tool, tool_parser
from geossl.core.options import option, parse_names
from geossl.splits.config import DEFAULT_BLOCK_SIZE

#: SEN12MS totals (also in geossl/testing/footprints.py, imported only when running)
N_PATCHES = 180_662
N_SCENES = 252


@dataclasses.dataclass
class SplitsBenchConfig:
    """Options of ``geossl bench splits`` (each a flag: ``block_size`` -> ``--block-size``)."""

    n: int = option(N_PATCHES, "number of footprints, i.e. the size of the run (default: "
                    "SEN12MS, 180,662; e.g. 2000 for a tiny run)")
    scenes: int = option(N_SCENES, "scenes the footprints are spread over")
    block_size: float = option(DEFAULT_BLOCK_SIZE, "metres, for block and checkerboard")
    buffer: float = option(0.0, "metres")
    seed: int = option(0, "seed of the generated footprints and of the random strategies")
    strategies: list[str] | None = option(
        None, "comma-separated subset of the strategies (default all)", flag_type=str | None)
    json: str | None = option(None, "also write the records to this file")
    fractions: tuple[float, float] = option((0.8, 0.2), "train and test fractions", flag=False)

    def __post_init__(self) -> None:
        """Split ``--strategies``."""
        self.strategies = parse_names(self.strategies)


def bench_splits(config: SplitsBenchConfig, log: Callable[[str], None] = print
                 ) -> list[dict[str, Any]]:
    """Time every split strategy and its leakage report on ``n`` SEN12MS-like footprints.

    Returns:
        one record per strategy: counts per split, achieved test fraction, leaking chips and
        overlap area (km²) from the leakage report, and the seconds taken.
    """
    n, scenes, block_size, buffer = config.n, config.scenes, config.block_size, config.buffer
    seed, strategies, fractions = config.seed, config.strategies, config.fractions
    from geossl import splits as S
    from geossl.core.errors import ConfigError
    from geossl.testing.footprints import make_footprints

    chosen = list(strategies) if strategies else list(S.STRATEGIES)
    unknown = [s for s in chosen if s not in S.STRATEGIES]
    if unknown:
        raise ConfigError(f"unknown strategy {unknown[0]!r}; use {', '.join(S.STRATEGIES)}")
    if n < 2 or scenes < 2 or n < 4 * scenes:
        raise ConfigError(f"need n >= 4 x scenes and scenes >= 2, got n {n}, scenes {scenes}")
    t0 = time.perf_counter()
    gdf = make_footprints(n, scenes, seed=seed)
    log(f"generated {len(gdf):,} footprints, {gdf['scene'].nunique()} scenes, "
        f"{gdf['crs'].nunique()} UTM zones in {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    fp = S.footprints(gdf)
    pairs = S.conflict_pairs(fp, buffer)
    log(f"footprints + spatial index: {len(pairs[0]):,} overlapping pairs in "
        f"{time.perf_counter() - t0:.2f} s")
    log(f"{'strategy':<15}{'train':>8}{'test':>8}{'drop':>8}{'test frac':>10}"
        f"{'leak train':>11}{'leak test':>10}{'overlap km2':>12}{'split s':>9}"
        f"{'report s':>9}{'total s':>9}")
    out = []
    for strategy in chosen:
        frac = (0.5, 0.5) if strategy == "checkerboard" else fractions
        t0 = time.perf_counter()
        split = S.make_splits(gdf, strategy, frac, seed=seed, buffer=buffer,
                              block_size=block_size, tolerance=1.0)
        t1 = time.perf_counter()
        rep = S.leakage_report(gdf, split, buffer)
        t2 = time.perf_counter()
        r = rep.iloc[0]
        counts = split.value_counts()
        rec = {
            "strategy": strategy, "fractions": list(frac), "n": len(gdf),
            "train": int(counts.get("train", 0)), "test": int(counts.get("test", 0)),
            "drop": int(counts.get(S.DROP, 0)), "test_fraction": split.attrs["fractions"]["test"],
            "leaking_train": int(r["leaking_a"]), "leaking_test": int(r["leaking_b"]),
            "overlap_km2": float(r["overlap_km2"]), "split_s": t1 - t0, "report_s": t2 - t1,
        }
        out.append(rec)
        log(f"{strategy:<15}{rec['train']:>8}{rec['test']:>8}{rec['drop']:>8}"
            f"{rec['test_fraction']:>10.3f}{rec['leaking_train']:>11}{rec['leaking_test']:>10}"
            f"{rec['overlap_km2']:>12.1f}{t1 - t0:>9.2f}{t2 - t1:>9.2f}{t2 - t0:>9.2f}")
    return out


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The flags of this benchmark: one per field of :class:`SplitsBenchConfig`."""
    return tool_parser(SplitsBenchConfig, __doc__, prog)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run, print the table; returns 0.

    ``prog`` is the command's name in ``--help``.
    """
    return run_tool(build_parser(prog), SplitsBenchConfig, bench_splits, None, argv)


if __name__ == "__main__":
    sys.exit(main())
