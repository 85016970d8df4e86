"""Write a fake SEN12MS in the exact on-disk layout of the mediaTUM release.

    ROIs1158_spring/s1_<scene>/ROIs1158_spring_s1_<scene>_p<patch>.tif   2 x float32 (dB)
    ROIs1158_spring/s2_<scene>/ROIs1158_spring_s2_<scene>_p<patch>.tif   13 x uint16
    ROIs1158_spring/lc_<scene>/ROIs1158_spring_lc_<scene>_p<patch>.tif   4 x uint8 (IGBP, LCCS x 3)

Every scene lies in its own UTM zone; patches of a scene overlap by half a patch (as the real
patches, which were cut with a 50 % overlap). The IGBP band is made of horizontal stripes
covering about 60 %, 25 %, 9 % and 6 % of the patch (two stripes above 10 %), so
the majority and the >= 10 % multi-label are known.

Run ``python tests/data/sen12ms/data.py`` to write the default set beside this script.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

#: default scenes per season folder; 63, 43 and 135 are official hold-out scenes
DEFAULT_SCENES: dict[str, list[int]] = {
    "ROIs1158_spring": [1, 63],
    "ROIs1868_summer": [2, 43],
    "ROIs1970_fall": [5],
    "ROIs2017_winter": [135],
}

#: (EPSG code, origin x, origin y) per scene, cycled
_PLACES = [
    (32633, 400000.0, 5350000.0),
    (32618, 600000.0, 4500000.0),
    (32755, 300000.0, 6200000.0),
    (32611, 500000.0, 3800000.0),
    (32636, 350000.0, 5600000.0),
    (32720, 450000.0, 7300000.0),
]


def igbp_stripes(size: int, classes: tuple[int, int, int, int]) -> np.ndarray:
    """IGBP map with four horizontal stripes of the given IGBP values (1..17)."""
    rows = np.zeros(size, dtype=np.uint8)
    cut = [0, round(0.6 * size), round(0.85 * size), round(0.94 * size), size]
    for value, (a, b) in zip(classes, itertools.pairwise(cut)):
        rows[a:b] = value
    return np.repeat(rows[:, None], size, axis=1)


def stripe_classes(scene: int, patch: int) -> tuple[int, int, int, int]:
    """IGBP values of the four stripes of a patch (distinct, deterministic)."""
    first = (scene + patch) % 17
    return tuple(int((first + k * 4) % 17 + 1) for k in range(4))  # type: ignore[return-value]


def _write(path: Path, array: np.ndarray, crs: int, transform: rasterio.Affine) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": array.shape[1],
        "width": array.shape[2],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": f"EPSG:{crs}",
        "transform": transform,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)


def generate(
    root: Path,
    scenes: dict[str, list[int]] | None = None,
    patches: int = 3,
    size: int = 32,
    seed: int = 0,
    sources: tuple[str, ...] = ("s1", "s2", "lc"),
) -> list[str]:
    """Write the fake dataset under ``root``.

    Args:
        root: output folder (the SEN12MS root).
        scenes: scene numbers per season folder (default :data:`DEFAULT_SCENES`).
        patches: patches per scene, numbered 1..patches.
        size: patch size in pixels (the real patches are 256).
        seed: random seed.
        sources: which sources to write.

    Returns:
        the patch ids written (``"ROIs1158_spring_1_1"`` ...).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    scenes = DEFAULT_SCENES if scenes is None else scenes
    ids = []
    k = 0
    for roi, numbers in scenes.items():
        for scene in numbers:
            epsg, x0, y0 = _PLACES[k % len(_PLACES)]
            k += 1
            for patch in range(1, patches + 1):
                # half-overlapping patches along a row, 10 m pixels
                x = x0 + (patch - 1) * size * 10 / 2
                transform = from_origin(x, y0, 10.0, 10.0)
                for src in sources:
                    if src == "s1":
                        arr = rng.uniform(-25, 0, (2, size, size)).astype(np.float32)
                    elif src == "s2":
                        arr = rng.integers(0, 10000, (13, size, size)).astype(np.uint16)
                    else:
                        igbp = igbp_stripes(size, stripe_classes(scene, patch))
                        other = rng.integers(1, 40, (3, size, size)).astype(np.uint8)
                        arr = np.concatenate([igbp[None], other])
                    name = f"{roi}_{src}_{scene}_p{patch}.tif"
                    _write(root / roi / f"{src}_{scene}" / name, arr, epsg, transform)
                ids.append(f"{roi}_{scene}_{patch}")
    return ids


if __name__ == "__main__":
    generate(Path(__file__).resolve().parent)
