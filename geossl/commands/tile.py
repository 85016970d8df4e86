r"""Cut scenes into chips on one common grid and write a GeoParquet chip index.

Examples:
    geossl tile ../shared/data/real/major_tom_s2l2a --out chips --size 128
    geossl tile S2A_MSIL1C_...SAFE --out chips --size 256 --stride 128 --min-valid 0.95 \
        --bands B02,B03,B04,B08 --cloud-mask auto --workers 4
    geossl tile scene.tif --out chips --format npy     # also pack chips into one store
    geossl tile https://example.com/cog.tif s3://bucket/scene.tif --out chips
    geossl tile search.json --bands red,green,blue,nir --cloud-mask auto --out chips  # STAC
    geossl tile major_tom/ --out /shared/chips --scheduler tcp://10.0.0.5:8786  # Dask cluster
    geossl tile scene.tif --out s3://bucket/chips         # chips and index on an object store
    geossl tile --config tile

A SCENE is a multi-band raster, a folder with one file per band (Major-TOM cell, SAFE
IMG_DATA, ...), a .SAFE product, a folder searched for those, a raster URL (https://, s3://;
read by HTTP range requests) or a STAC Item / ItemCollection JSON (one scene per item, assets
chosen by --bands). Tasks run in this process, on --workers local Dask processes, or on the
Dask cluster at --scheduler (see docs/scale.md). Every band is resampled onto
the finest band's grid (or --resolution). Chips under --min-valid valid pixels (nodata, NaN,
cloud) are skipped. Reruns skip chips already written; OUT/index.parquet is rewritten at the end.
"""

from __future__ import annotations

from typing import Any

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common
from geossl.commands._common import get as _get

NAME = "tile"
HELP = "cut scenes into GeoTIFF chips plus a GeoParquet chip index"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl tile``."""
    parser.add_argument("scenes", type=str, nargs="+",
                        help="scene files or folders (searched recursively), raster URLs or "
                             "STAC JSON files")
    _common.add_out(parser, default="chips",
                    help="output folder (chips and index.parquet): absent, empty or an earlier "
                         "tile output; or an object-store URL, s3://bucket/chips")
    parser.add_argument("--size", type=int, default=128, help="chip size in pixels")
    parser.add_argument("--stride", type=int | None, default=None,
                        help="step between chips in pixels (default: --size)")
    parser.add_argument("--min-valid", type=float, default=0.9,
                        help="minimum fraction of valid pixels (not nodata/NaN/cloud)")
    parser.add_argument("--bands", type=str | None, default=None,
                        help="comma-separated band names to keep, in order (default: all)")
    parser.add_argument("--cloud-mask", type=str | None, default=None,
                        help="cloud mask file (non-zero = cloud), 'auto' (cloud_mask.tif or "
                             "SCL beside the bands) or nothing")
    parser.add_argument("--sensor", type=str | None, default=None,
                        help="sensor name for the index (default: s2 for Sentinel-2 bands)")
    parser.add_argument("--resolution", type=float | None, default=None,
                        help="pixel size of the common grid (default: the finest band's)")
    parser.add_argument("--resampling", type=str, default="bilinear",
                        help="resampling of coarser bands: bilinear, nearest, cubic, average")
    parser.add_argument("--compress", type=str, default="zstd",
                        help="GeoTIFF compression: zstd, deflate, lzw, none")
    parser.add_argument("--format", type=str, default="tif",
                        help="tif (chips only), npy or zarr (also pack every chip into one "
                             "store OUT/packed read by the chip dataset)")
    _common.add_workers(parser)
    _common.add_scheduler(parser)
    _common.add_scheduler_file(parser)


def _scene_list(value: Any) -> list[str]:
    out: list[str] = []
    for v in value if isinstance(value, list | tuple) else [value]:
        out.extend(_scene_list(v) if isinstance(v, list | tuple) else [str(v)])
    return out


def run(cfg: Namespace) -> int:
    """Run ``geossl tile``."""
    from geossl.tiling.tile import TileOptions, tile

    bands = _get(cfg, "bands")
    opts = TileOptions(
        size=cfg.size,
        stride=cfg.stride,
        min_valid=_get(cfg, "min_valid"),
        bands=tuple(b.strip() for b in bands.split(",") if b.strip()) if bands else None,
        cloud_mask=_get(cfg, "cloud_mask"),
        sensor=cfg.sensor,
        resolution=cfg.resolution,
        resampling=cfg.resampling,
        compress=cfg.compress,
    )
    report = tile(_scene_list(cfg.scenes), cfg.out, opts, workers=cfg.workers,
                  fmt=cfg.format, scheduler=_common.scheduler(cfg))
    print(f"{report.scenes} scene(s): {report.written} chip(s) written, {report.existing} "
          f"already there, {report.rejected} window(s) under --min-valid; "
          f"index {report.index} ({report.chips} chips) in {report.seconds:.1f} s")
    if report.packed is not None:
        print(f"packed store: {report.packed}")
    return 0
