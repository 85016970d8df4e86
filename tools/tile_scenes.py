"""Tile a folder of new GeoTIFF scenes into a chip store, keeping the chips already there.

The everyday loop of an archive that grows: new scenes land in an inbox folder, and their chips
join the chip store that pretraining reads. ``geossl tile INBOX --out CHIPS`` alone would rewrite
``CHIPS/index.parquet`` with the inbox's chips only; this script tiles the inbox's scenes into
CHIPS (chips already written are skipped, so a rerun is cheap) and then rebuilds the index from
every chip in CHIPS, old scenes included, from the chips' own GeoTIFF tags.

It is a thin client of the library (no second implementation): scenes are found by
:func:`geossl.tiling.scenes.find_scenes`, tiled by :func:`geossl.tiling.tile.tile` and indexed by
:func:`geossl.tiling.chip_index.build_index` / :func:`~geossl.tiling.chip_index.write_index`,
the same calls as ``geossl tile`` and ``geossl index``::

    python tools/tile_scenes.py INBOX --out CHIPS [--size 128] [--bands B02,B03,B04,B08]
        [--min-valid 0.9] [--cloud-mask auto] [--workers N] [--scheduler tcp://HOST:PORT]

Bad input is one line and exit code 2, as for every geossl command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The script's flags (the names and defaults of ``geossl tile``)."""
    p = argparse.ArgumentParser(prog="tools/tile_scenes.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("inbox", nargs="+", help="folders (searched recursively) or scene files")
    p.add_argument("--out", required=True, help="chip store: CHIPS/index.parquet and the chips")
    p.add_argument("--size", type=int, default=128, help="chip size in pixels")
    p.add_argument("--stride", type=int, default=None, help="step between chips (default: size)")
    p.add_argument("--min-valid", type=float, default=0.9,
                   help="minimum fraction of valid pixels (not nodata/NaN/cloud)")
    p.add_argument("--bands", default=None, help="comma-separated band names to keep, in order")
    p.add_argument("--cloud-mask", default=None, help="cloud mask file, 'auto' or nothing")
    p.add_argument("--workers", type=int, default=0, help="local Dask worker processes")
    p.add_argument("--scheduler", default=None, help="address of a Dask scheduler")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Tile the inbox into the store and rebuild the store's index; 2 on bad input."""
    args = parse_args(argv)
    from pathlib import Path

    from geossl.core.errors import GeosslError
    from geossl.tiling import chip_index
    from geossl.tiling.scenes import find_scenes, scene_name
    from geossl.tiling.tile import TileOptions, tile

    out = Path(args.out)
    try:
        scenes = find_scenes(args.inbox)
        index = chip_index.index_path(out)
        known: set[str] = set()
        if out.is_dir() and index.is_file():
            known = set(chip_index.read_index(index)["scene"].astype(str))
        new = [s for s in scenes if scene_name(s) not in known]
        print(f"{len(scenes)} scene(s) in the inbox: {len(new)} new, "
              f"{len(scenes) - len(new)} already in {index}")
        bands = tuple(b.strip() for b in args.bands.split(",") if b.strip()) \
            if args.bands else None
        opts = TileOptions(size=args.size, stride=args.stride, min_valid=args.min_valid,
                           bands=bands, cloud_mask=args.cloud_mask)
        report = tile([str(s) for s in scenes], out, opts, workers=args.workers,
                      progress=not args.no_progress, scheduler=args.scheduler)
        # the store's index from every chip in it (scenes tiled earlier included)
        gdf = chip_index.build_index(out, workers=args.workers, progress=not args.no_progress,
                                     scheduler=args.scheduler)
        chip_index.write_index(gdf, index)
    except GeosslError as err:
        print(f"tile_scenes: error: {err}", file=sys.stderr)
        return 2
    print(f"{report.written} chip(s) written, {report.existing} already there; "
          f"index {index}: {len(gdf)} chips from {gdf['scene'].nunique()} scene(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
