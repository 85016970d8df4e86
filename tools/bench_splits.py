"""Benchmark the split strategies on the SEN12MS-like layout of 180,662 overlapping footprints.

Generates the layout (tests/data/footprints.py: 256 px patches at 128 px stride, 10 m, 252
scenes in 12 UTM zones), then times each strategy and its leakage report and prints, per
strategy, the chips per split, the achieved test fraction, the leaking chips and seconds.

    python tools/bench_splits.py [--n 180662] [--block-size 10240] [--buffer 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geossl.data import splits as S
from tests.data.footprints import N_PATCHES, N_SCENES, make_footprints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N_PATCHES)
    parser.add_argument("--scenes", type=int, default=N_SCENES)
    parser.add_argument("--block-size", type=float, default=10240.0)
    parser.add_argument("--buffer", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    gdf = make_footprints(args.n, args.scenes, seed=args.seed)
    print(f"generated {len(gdf):,} footprints, {gdf['scene'].nunique()} scenes, "
          f"{gdf['crs'].nunique()} UTM zones in {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    pairs = S.conflict_pairs(S.footprints(gdf), args.buffer)
    print(f"footprints + spatial index: {len(pairs[0]):,} overlapping pairs in "
          f"{time.perf_counter() - t0:.2f} s")
    header = (f"{'strategy':<15}{'train':>8}{'test':>8}{'drop':>8}{'test frac':>10}"
              f"{'leak train':>11}{'leak test':>10}{'overlap km2':>12}{'split s':>9}"
              f"{'report s':>9}{'total s':>9}")
    print(header)
    for strategy in S.STRATEGIES:
        t0 = time.perf_counter()
        split = S.make_splits(gdf, strategy, (0.8, 0.2), seed=args.seed, buffer=args.buffer,
                              block_size=args.block_size, tolerance=1.0)
        t1 = time.perf_counter()
        rep = S.leakage_report(gdf, split, args.buffer)
        t2 = time.perf_counter()
        r = rep.iloc[0]
        counts = split.value_counts()
        print(f"{strategy:<15}{counts.get('train', 0):>8}{counts.get('test', 0):>8}"
              f"{counts.get(S.DROP, 0):>8}{split.attrs['fractions']['test']:>10.3f}"
              f"{r['leaking_a']:>11}{r['leaking_b']:>10}{r['overlap_km2']:>12.1f}"
              f"{t1 - t0:>9.2f}{t2 - t1:>9.2f}{t2 - t0:>9.2f}")


if __name__ == "__main__":
    main()
