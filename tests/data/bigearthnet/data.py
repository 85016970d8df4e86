"""Write a fake BigEarthNet in the exact on-disk layouts of v1.0 and v2 (reBEN).

v1::

    BigEarthNet-v1.0/<S2 patch>/<S2 patch>_B01.tif ... _B12.tif   (12 bands, B8A, no B10)
    BigEarthNet-v1.0/<S2 patch>/<S2 patch>_labels_metadata.json
    BigEarthNet-S1-v1.0/<S1 patch>/<S1 patch>_VV.tif, _VH.tif, _labels_metadata.json

v2::

    BigEarthNet-S2/<S2 product>/<S2 product>_<x>_<y>/<patch>_B01.tif ... _B12.tif
    BigEarthNet-S1/<S1 product>/<S1 product>_<tile>_<x>_<y>/<s1patch>_VV.tif, _VH.tif
    Reference_Maps/<S2 product>/<patch>/<patch>_reference_map.tif
    metadata.parquet

10 m bands are 120 x 120 px, 20 m bands 60 x 60, 60 m bands 20 x 20, uint16; S1 float32 dB;
UTM zone 33N (EPSG:32633), patch (x, y) of tile 33UUP at (300000 + 1200 x, 5400000 - 1200 y).
Labels: patch k gets the CLC codes ``LABEL_SETS[k % 4]`` (reference map stripes; json /
metadata names consistent with the map).

Run ``python tests/data/bigearthnet/data.py`` to write both layouts beside this script.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin

from geossl.datasets import labels as lab

BANDS_RES = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20,
    "B07": 20, "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20,
}  # fmt: skip
EPSG = 32633
TILE = "33UUP"
TILE_ORIGIN = (300000.0, 5400000.0)
S2_PRODUCTS = [
    "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP",
    "S2B_MSIL2A_20180204T094029_N9999_R036_T33UUP",
]
S1_PRODUCTS = ["S1A_IW_GRDH_1SDV_20170613T165043", "S1B_IW_GRDH_1SDV_20180204T050304"]
#: CLC codes per patch (cycled): 1 class / 3 classes incl. one not in the 19-class set
#: (122 road and rail) / 2 classes / the sea
LABEL_SETS: list[tuple[int, ...]] = [(211,), (112, 122, 311), (231, 313), (523,)]


def patch_cells(n: int) -> list[tuple[int, int]]:
    """Grid cells (x, y) of the first ``n`` patches."""
    return [(10 + k, 20 + k // 2) for k in range(n)]


def _write(path: Path, array: np.ndarray, x: int, y: int, res: int, nodata: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": array.shape[0],
        "width": array.shape[1],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": f"EPSG:{EPSG}",
        "transform": from_origin(TILE_ORIGIN[0] + 1200 * x, TILE_ORIGIN[1] - 1200 * y, res, res),
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def _s2_bands(folder: Path, name: str, x: int, y: int, rng: np.random.Generator) -> None:
    for band, res in BANDS_RES.items():
        side = 1200 // res
        arr = rng.integers(1, 10000, (side, side)).astype(np.uint16)
        _write(folder / f"{name}_{band}.tif", arr, x, y, res, 0.0)


def _s1_bands(folder: Path, name: str, x: int, y: int, rng: np.random.Generator) -> None:
    for band in ("VV", "VH"):
        arr = rng.uniform(-25, 0, (120, 120)).astype(np.float32)
        _write(folder / f"{name}_{band}.tif", arr, x, y, 10, None)


def _names(codes: tuple[int, ...]) -> list[str]:
    return [lab.CORINE_CLASSES[lab.CLC_CODES.index(c)] for c in codes]


def _names19(codes: tuple[int, ...]) -> list[str]:
    return [lab.BEN19_CLASSES[i] for i in lab.clc_codes_to_indices(codes, 19)]


def generate_v1(root: Path, n: int = 3, s1: bool = True, seed: int = 0) -> list[str]:
    """Write ``n`` v1 patches (and their S1 pairs) under ``root``; return the S2 patch names."""
    rng = np.random.default_rng(seed)
    ids = []
    for k, (x, y) in enumerate(patch_cells(n)):
        product = S2_PRODUCTS[k % 2]
        s2 = f"{'_'.join(product.split('_')[:3])}_{x}_{y}"
        folder = Path(root) / "BigEarthNet-v1.0" / s2
        _s2_bands(folder, s2, x, y, rng)
        codes = LABEL_SETS[k % len(LABEL_SETS)]
        meta = {
            "labels": _names(codes),
            "coordinates": {"ulx": 300000 + 1200 * x, "uly": 5400000 - 1200 * y,
                            "lrx": 301200 + 1200 * x, "lry": 5398800 - 1200 * y},
            "projection": f"EPSG:{EPSG}",
            "tile_source": product.replace("MSIL2A", "MSIL1C"),
            "acquisition_date": "2017-06-13 10:10:31",
        }
        (folder / f"{s2}_labels_metadata.json").write_text(json.dumps(meta))
        if s1:
            s1name = f"{S1_PRODUCTS[k % 2]}_{TILE}_{x}_{y}"
            s1folder = Path(root) / "BigEarthNet-S1-v1.0" / s1name
            _s1_bands(s1folder, s1name, x, y, rng)
            s1meta = dict(meta, corresponding_s2_patch=s2, scene_source=S1_PRODUCTS[k % 2])
            (s1folder / f"{s1name}_labels_metadata.json").write_text(json.dumps(s1meta))
        ids.append(s2)
    return ids


def generate_v2(
    root: Path,
    n: int = 3,
    s1: bool = True,
    metadata: bool = True,
    reference_maps: bool = True,
    seed: int = 0,
) -> list[str]:
    """Write ``n`` v2 patches under ``root``; return the S2 patch names."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    rows = []
    for k, (x, y) in enumerate(patch_cells(n)):
        product = S2_PRODUCTS[k % 2]
        s2 = f"{product}_{x}_{y}"
        _s2_bands(root / "BigEarthNet-S2" / product / s2, s2, x, y, rng)
        s1name = f"{S1_PRODUCTS[k % 2]}_{TILE}_{x}_{y}"
        if s1:
            _s1_bands(root / "BigEarthNet-S1" / S1_PRODUCTS[k % 2] / s1name, s1name, x, y, rng)
        codes = LABEL_SETS[k % len(LABEL_SETS)]
        if reference_maps:
            ref = np.zeros((120, 120), dtype=np.uint16)
            for j, band in enumerate(np.array_split(np.arange(120), len(codes))):
                ref[band] = codes[j]
            path = root / "Reference_Maps" / product / s2 / f"{s2}_reference_map.tif"
            _write(path, ref, x, y, 10, 0.0)
        rows.append(
            {
                "patch_id": s2,
                "labels": _names19(codes),
                "split": ("train", "validation", "test")[k % 3],
                "country": "Austria",
                "s1_name": s1name,
                "s2v1_name": f"{'_'.join(product.split('_')[:3])}_{x}_{y}",
                "contains_seasonal_snow": False,
                "contains_cloud_or_shadow": False,
            }
        )
    if metadata:
        pd.DataFrame(rows).to_parquet(root / "metadata.parquet", index=False)
    return [r["patch_id"] for r in rows]


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    generate_v1(here / "v1")
    generate_v2(here / "v2")
