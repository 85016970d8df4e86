r"""Build a chip index (GeoParquet) over a folder of GeoTIFF chips, reading only their headers.

Examples:
    geossl index my_chips/                       # writes my_chips/index.parquet
    geossl index SEN12MS/ROIs1158_spring --sensor s2 \
        --bands B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B10,B11,B12 --workers 8 \
        --out s2_index.parquet
    geossl index /shared/chips --scheduler tcp://10.0.0.5:8786   # on a Dask cluster

Chips written by ``geossl tile`` carry their scene, datetime, grid offset and valid fraction
in tags; other chips get their parent folder as scene and a datetime parsed from the name.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

NAME = "index"
HELP = "build a chip index over a folder of GeoTIFF chips (headers only, parallel)"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl index``."""
    parser.add_argument("folder", type=str, help="folder of GeoTIFF chips (searched recursively)")
    _common.add_out(parser, help="index file to write (default: FOLDER/index.parquet; the "
                                 "chip paths are stored relative to the index's folder)")
    parser.add_argument("--bands", type=str | None, default=None,
                        help="comma-separated band names, for chips without band descriptions")
    parser.add_argument("--sensor", type=str | None, default=None,
                        help="sensor name, for chips that do not record one")
    _common.add_workers(parser)
    _common.add_scheduler(parser)
    _common.add_scheduler_file(parser)


def run(cfg: Namespace) -> int:
    """Run ``geossl index``."""
    import time

    from geossl.core.io import check_output
    from geossl.tiling.chip_index import INDEX_NAME, build_index, invalid_pixels, write_index

    start = time.perf_counter()
    folder = Path(cfg.folder)
    # before reading every chip's header; a URL is refused, not made a local folder "s3:"
    check_output(cfg.out or folder / INDEX_NAME, "index", folder=False)
    out = Path(cfg.out) if cfg.out else folder / INDEX_NAME
    bands = [b.strip() for b in cfg.bands.split(",")] if cfg.bands else None
    # paths in the index are relative to the index file's folder
    gdf = build_index(folder, workers=cfg.workers, bands=bands, sensor=cfg.sensor,
                      root=out.parent.resolve() if out.parent != folder else None,
                      scheduler=_common.scheduler(cfg))
    write_index(gdf, out)
    print(f"{len(gdf)} chips indexed in {time.perf_counter() - start:.1f} s: {out}")
    invalid = invalid_pixels(gdf)
    if invalid.any():
        print(f"{int((invalid > 0).sum())} chip(s) hold {int(invalid.sum())} invalid pixel(s) "
              "(NaN, inf or nodata; see the valid_fraction column); pretraining fills NaN/inf "
              "with 0 after normalisation")
    return 0
