"""Spectral-index proxy labels (geossl.demo.proxy_labels) on hand-made spectra."""

from __future__ import annotations

import numpy as np
import pytest

from geossl.core.errors import DataError
from geossl.demo import proxy_labels as pl

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
         "B12"]

#: digital numbers (x 1e-4 reflectance) of blue, green, red, NIR, SWIR1 per kind of pixel
SPECTRA = {
    "water": (900, 800, 500, 300, 100),        # NDWI = 0.45
    "dense": (300, 500, 300, 4000, 1800),       # NDVI = 0.86
    "sparse": (700, 900, 1000, 1800, 2000),     # NDVI = 0.29, NDWI < 0
    "bare": (2000, 2200, 2500, 2800, 3500),     # NDVI = 0.06, NDBI = 0.11
    "dark": (250, 300, 350, 400, 350),          # nothing: NDBI < 0, dim, NDVI 0.07
}
ROLE_BANDS = ("B02", "B03", "B04", "B08", "B11")


def chip(kinds: list[str], size: int = 4) -> np.ndarray:
    """A (13, size, size) chip whose pixels cycle through ``kinds`` row-major."""
    out = np.full((len(BANDS), size * size), 1000, dtype=np.uint16)
    for p in range(size * size):
        for band, value in zip(ROLE_BANDS, SPECTRA[kinds[p % len(kinds)]]):
            out[BANDS.index(band), p] = value
    return out.reshape(len(BANDS), size, size)


def test_pixel_rules_on_known_spectra() -> None:
    kinds = ["water", "dense", "sparse", "bare", "dark"]
    img = np.stack([chip([k], 1)[:, 0, 0] for k in kinds], -1)[:, None, :]  # (13, 1, 5)
    got = pl.pixel_classes(img, BANDS)[0].tolist()
    assert got == [0, 1, 2, 3, pl.UNLABELLED]
    idx = pl.spectral_indices(img, BANDS)
    np.testing.assert_allclose(idx["ndvi"][0, 1], (4000 - 300) / (4000 + 300), rtol=1e-6)
    np.testing.assert_allclose(idx["ndwi"][0, 0], (800 - 300) / (800 + 300), rtol=1e-6)
    np.testing.assert_allclose(idx["brightness"][0, 3], (2000 + 2200 + 2500) / 3 / 1e4,
                               rtol=1e-6)


def test_bright_pixel_without_positive_ndbi_is_bare() -> None:
    # bright (0.3 reflectance), NDBI < 0, low NDVI: bare/built by brightness
    img = np.full((len(BANDS), 1, 1), 3000, dtype=np.uint16)
    img[BANDS.index("B08")] = 3200
    img[BANDS.index("B11")] = 3000
    assert pl.pixel_classes(img, BANDS)[0, 0] == 3
    lower = pl.Thresholds(bright_built=0.5)
    assert pl.pixel_classes(img, BANDS, lower)[0, 0] == pl.UNLABELLED


def test_invalid_pixels_are_unlabelled() -> None:
    img = chip(["water"]).astype(np.float32)
    img[:, 0, 0] = 0
    img[:, 1, 1] = np.nan
    cls = pl.pixel_classes(img, BANDS)
    assert cls[0, 0] == pl.UNLABELLED and cls[1, 1] == pl.UNLABELLED and cls[0, 1] == 0


def test_chip_majority_and_purity() -> None:
    pure = chip(["dense"])
    mixed = chip(["dense", "dense", "dense", "water"])  # 75 % dense
    split = chip(["water", "sparse"])  # 50 / 50
    labels, purity, fractions = pl.chip_labels(np.stack([pure, mixed, split]), BANDS, 0.7)
    assert labels.tolist() == [1, 1, pl.UNLABELLED]
    np.testing.assert_allclose(purity, [1.0, 0.75, 0.5])
    np.testing.assert_allclose(fractions[1], [0.25, 0.75, 0.0, 0.0])
    np.testing.assert_allclose(fractions.sum(1), 1.0)
    # unclassified pixels count against purity
    dark = chip(["bare", "dark"])
    lab, pur, _ = pl.chip_labels(dark[None], BANDS, 0.6)
    assert lab[0] == pl.UNLABELLED and pur[0] == pytest.approx(0.5)
    lab, _, _ = pl.chip_labels(dark[None], BANDS, 0.5)
    assert lab[0] == 3


def test_offset_changes_indices() -> None:
    # Sentinel-2 baseline >= 04.00 adds 1000 to the digital numbers: without removing it,
    # a water pixel's NDWI shrinks
    img = chip(["water"], 1).astype(np.float32) + 1000
    raw = pl.spectral_indices(img, BANDS)["ndwi"][0, 0]
    fixed = pl.spectral_indices(img, BANDS, pl.Thresholds(offset=-1000))["ndwi"][0, 0]
    assert fixed == pytest.approx((800 - 300) / (800 + 300), rel=1e-5)
    assert raw < fixed


def test_missing_band_and_bad_shapes() -> None:
    with pytest.raises(DataError, match="swir1 band"):
        pl.band_roles(["B02", "B03", "B04", "B08"])
    assert pl.band_roles(["b2", "b3", "b4", "b8", "b11"]) == {
        "blue": 0, "green": 1, "red": 2, "nir": 3, "swir1": 4}
    with pytest.raises(DataError, match="N, C, H, W"):
        pl.chip_labels(chip(["water"]), BANDS)
    with pytest.raises(DataError, match="purity"):
        pl.chip_labels(chip(["water"])[None], BANDS, purity=0)
