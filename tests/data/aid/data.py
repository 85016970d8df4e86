"""Generate fake AID / UC Merced / EuroSAT archives in their exact on-disk layouts.

* AID:       ``AID/<Class>/<class>_<n>.jpg``, 600 x 600 RGB JPEG
* UC Merced: ``UCMerced_LandUse/Images/<class>/<class>NN.tif``, 256 x 256 RGB TIFF (one image of
  a class is 247 x 256, as in the real archive)
* EuroSAT:   ``EuroSAT_MS/<Class>/<Class>_<n>.tif``, 64 x 64, 13-band uint16 GeoTIFF (UTM)

Each class gets a distinct mean colour so a classifier can tell them apart.

Run ``python tests/data/aid/data.py`` to write small examples next to this script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image

AID_CLASSES = ("Airport", "BareLand", "Beach")
UCM_CLASSES = ("agricultural", "airplane", "forest")
EUROSAT_CLASSES = ("AnnualCrop", "Pasture", "SeaLake")


def _rgb(rng: np.random.Generator, k: int, h: int, w: int) -> np.ndarray:
    base = np.array([40 + 60 * k, 200 - 50 * k, 90 + 20 * k], dtype=np.float64)
    img = base + rng.normal(0, 20, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_aid(root: Path, n_per_class: int = 5, size: int = 600, seed: int = 0) -> Path:
    """Write ``root/AID/<Class>/<class>_<n>.jpg``; returns the ``AID`` folder."""
    rng = np.random.default_rng(seed)
    out = Path(root) / "AID"
    for k, cls in enumerate(AID_CLASSES):
        (out / cls).mkdir(parents=True, exist_ok=True)
        for n in range(1, n_per_class + 1):
            Image.fromarray(_rgb(rng, k, size, size)).save(
                out / cls / f"{cls.lower()}_{n}.jpg", quality=90)
    return out


def generate_ucmerced(root: Path, n_per_class: int = 5, size: int = 256, seed: int = 0) -> Path:
    """Write ``root/UCMerced_LandUse/Images/<class>/<class>NN.tif``; returns the archive folder.

    The first image of the last class is ``size - 9`` pixels high, as a few real images are.
    """
    rng = np.random.default_rng(seed)
    out = Path(root) / "UCMerced_LandUse"
    for k, cls in enumerate(UCM_CLASSES):
        folder = out / "Images" / cls
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(n_per_class):
            h = size - 9 if (k == len(UCM_CLASSES) - 1 and n == 0) else size
            Image.fromarray(_rgb(rng, k, h, size)).save(folder / f"{cls}{n:02d}.tif")
    return out


def generate_eurosat(root: Path, n_per_class: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Write ``root/EuroSAT_MS/<Class>/<Class>_<n>.tif`` (13-band uint16, UTM 32N)."""
    rng = np.random.default_rng(seed)
    out = Path(root) / "EuroSAT_MS"
    for k, cls in enumerate(EUROSAT_CLASSES):
        (out / cls).mkdir(parents=True, exist_ok=True)
        for n in range(1, n_per_class + 1):
            data = rng.integers(500 + 800 * k, 1500 + 800 * k, size=(13, size, size))
            profile = {
                "driver": "GTiff", "dtype": "uint16", "count": 13, "height": size,
                "width": size, "crs": "EPSG:32632",
                "transform": Affine(10.0, 0.0, 593926.0 + 640 * n, 0.0, -10.0, 5300811.0),
            }
            with rasterio.open(out / cls / f"{cls}_{n}.tif", "w", **profile) as dst:
                dst.write(data.astype(np.uint16))
    return out


def generate(root: Path, dataset: str = "aid", **kwargs: int) -> Path:
    """Write a fake ``aid``, ``ucmerced`` or ``eurosat`` archive under ``root``."""
    fn = {"aid": generate_aid, "ucmerced": generate_ucmerced, "eurosat": generate_eurosat}
    return fn[dataset](Path(root), **kwargs)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    generate_aid(here, n_per_class=2, size=600)
    generate_ucmerced(here, n_per_class=2)
    generate_eurosat(here, n_per_class=2)
