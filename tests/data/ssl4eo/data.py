"""Write a fake SSL4EO-S12 in the exact on-disk layout of the release.

    s1/<location>/S1A_IW_GRDH_1SDV_<start>_<stop>_<orbit>_<id>_<crc>/{VV,VH}.tif + metadata.json
    s2a/<location>/<start>_<stop>_T<tile>/{B1..B12,B8A}.tif (12 bands, no B10) + metadata.json
    s2c/<location>/<start>_<stop>_T<tile>/{B1..B12,B8A,B10}.tif (13 bands) + metadata.json

One GeoTIFF per band in EPSG:4326; S2 10 m bands are ``size`` px, 20 m bands ``size / 2``,
60 m bands ``size / 6``; S1 lies on a slightly different grid (origin shifted by a few pixels,
pixels 0.75 % larger), as in the real data. Every band samples the same geographic pattern
:func:`pattern` (smooth waves plus a bright square) at its pixel centres, so co-registered
views of any two sensors correlate best at zero shift. Locations are 0.1 degree apart.

``python tests/data/ssl4eo/data.py`` writes the default set beside this script.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

S2_RES = (1.0141e-4, 8.797e-5)  # degrees, about 10 m at 30 N
S1_SCALE = 1.0075
S1_SHIFT_PX = (-3.7, 2.6)  # S1 origin offset in S2 pixels (x, y)
S2A_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
S2C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
BAND_RES = {"B1": 6, "B9": 6, "B10": 6, "B5": 2, "B6": 2, "B7": 2, "B8A": 2, "B11": 2, "B12": 2}
S1_DATES = ("20200607T010800", "20200903T131212")
S2_DATES = ("20200604T054639", "20200813T054639")


def origin(location: int) -> tuple[float, float]:
    """Top-left corner (lon, lat) of a location's S2 grid."""
    return 73.29 + 0.1 * location, 30.47


def pattern(lon: np.ndarray, lat: np.ndarray, location: int = 0) -> np.ndarray:
    """The ground truth every sensor sees, in [0, 1]."""
    lon0, lat0 = origin(location)
    u = (lon - lon0) / S2_RES[0]  # in S2 pixels
    v = (lat0 - lat) / S2_RES[1]
    waves = 0.5 + 0.25 * np.sin(u / 3.1) * np.cos(v / 4.3) + 0.15 * np.sin((u + 2 * v) / 5.7)
    square = ((u > 12) & (u < 22) & (v > 15) & (v < 27)).astype(np.float64)
    return np.clip(0.6 * waves + 0.4 * square, 0, 1)


def _grid(lon0: float, lat0: float, rx: float, ry: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5)
    return lon0 + cols * rx, lat0 - rows * ry


def _write(path: Path, array: np.ndarray, transform: rasterio.Affine) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": array.shape[0], "width": array.shape[1], "count": 1,
               "dtype": array.dtype.name, "crs": "EPSG:4326", "transform": transform}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def _meta(folder: Path, name: str, date: str) -> None:
    t = datetime.strptime(date, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    doc = {"system:index": name, "system:time_start": int(t.timestamp() * 1000)}
    (folder / "metadata.json").write_text(json.dumps(doc))


def generate(
    root: Path,
    locations: tuple[str, ...] = ("0000200", "0000201"),
    size: int = 48,
    s1_dates: tuple[str, ...] = S1_DATES,
    s2_dates: tuple[str, ...] = S2_DATES,
    products: tuple[str, ...] = ("s1", "s2a", "s2c"),
    seed: int = 0,
) -> Path:
    """Write the fake dataset under ``root`` and return it.

    Args:
        root: output folder (the SSL4EO-S12 root holding s1, s2a, s2c).
        locations: location ids; location k is 0.1 degree east of location k - 1.
        size: S2 10 m band size in px (a multiple of 6).
        s1_dates: S1 acquisition times (``%Y%m%dT%H%M%S``).
        s2_dates: S2 acquisition times.
        products: which product folders to write.
        seed: noise seed.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for k, loc in enumerate(locations):
        lon0, lat0 = origin(int(loc) - int(locations[0]))
        loc_no = int(loc) - int(locations[0])
        if "s1" in products:
            rx, ry = S2_RES[0] * S1_SCALE, S2_RES[1] * S1_SCALE
            x0 = lon0 + S1_SHIFT_PX[0] * S2_RES[0]
            y0 = lat0 + S1_SHIFT_PX[1] * S2_RES[1]
            lon, lat = _grid(x0, y0, rx, ry, size)
            f = pattern(lon, lat, loc_no)
            for d, date in enumerate(s1_dates):
                stop = f"{date[:9]}{int(date[9:]) + 25:06d}"
                name = f"S1A_IW_GRDH_1SDV_{date}_{stop}_03290{d}_03CFBA_D457"
                folder = root / "s1" / loc / name
                for band, (a, b) in {"VV": (-20.0, 12.0), "VH": (-26.0, 9.0)}.items():
                    noise = rng.normal(0, 0.05, f.shape)
                    _write(folder / f"{band}.tif", (a + b * f + noise).astype(np.float32),
                           from_origin(x0, y0, rx, ry))
                _meta(folder, name, date)
        for product in ("s2a", "s2c"):
            if product not in products:
                continue
            bands = S2A_BANDS if product == "s2a" else S2C_BANDS
            for date in s2_dates:
                name = f"{date}_{date[:9]}054831_T43RCP"
                folder = root / product / loc / name
                for i, band in enumerate(bands):
                    factor = BAND_RES.get(band, 1)
                    rx, ry = S2_RES[0] * factor, S2_RES[1] * factor
                    lon, lat = _grid(lon0, lat0, rx, ry, size // factor)
                    f = pattern(lon, lat, loc_no)
                    arr = (500 + 100 * i + 3000 * f).astype(np.uint16)
                    _write(folder / f"{band}.tif", arr, from_origin(lon0, lat0, rx, ry))
                _meta(folder, name, date)
        del k
    return root


if __name__ == "__main__":
    generate(Path(__file__).resolve().parent)
