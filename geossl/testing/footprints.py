"""SEN12MS-like patch footprints in the chip-index format, for splits and their benchmark.

SEN12MS has 180,662 patches of 256 x 256 px at 10 m, cut with a stride of 128 px (half a
patch: each patch overlaps its 8 neighbours) from 252 scenes spread over the world, each scene
in its UTM zone, in four season folders. :func:`make_footprints` lays out the same numbers:
scenes are grids of patches (random aspect), placed in 12 UTM zones of both hemispheres, far
apart from each other, with ``chip_id`` ``"<roi>_<scene>_<patch>"`` as SEN12MS ids, ``scene``
``"<roi>_<scene>"``, ``season`` and a spatially coherent ``label`` (10 classes; each scene has
a dominant class covering about 70 % of its patches, the rest varies by 4 x 4 patch block).

``python geossl/testing/footprints.py`` writes ``footprints.parquet`` beside this script.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

ROIS = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")
#: UTM zones used, alternately north (326xx) and south (327xx)
ZONES = (32633, 32718, 32611, 32755, 32636, 32720, 32610, 32750, 32645, 32723, 32617, 32735)
#: SEN12MS totals
N_PATCHES = 180_662
N_SCENES = 252


def make_footprints(
    n_patches: int = N_PATCHES,
    n_scenes: int = N_SCENES,
    size: int = 256,
    stride: int = 128,
    res: float = 10.0,
    seed: int = 0,
    geometry: bool = True,
    classes: int = 10,
) -> gpd.GeoDataFrame:
    """Footprints of SEN12MS-like patches.

    Args:
        n_patches: total number of patches.
        n_scenes: number of scenes.
        size: patch size in pixels.
        stride: patch stride in pixels.
        res: pixel size in metres.
        seed: random seed (layout and labels).
        geometry: compute the EPSG:4326 footprints (else the geometry is the UTM box, with no
            CRS: only the ``minx .. maxy`` + ``crs`` columns are meaningful).
        classes: number of label classes.

    Returns:
        one row per patch, chip-index columns plus ``roi``, ``season``, ``patch``, ``label``.
    """
    rng = np.random.default_rng(seed)
    base, extra = divmod(n_patches, n_scenes)
    counts = np.full(n_scenes, base)
    counts[:extra] += 1
    step = stride * res
    side = size * res
    cols_all, rows_all, scene_all, patch_all, epsg_all, x0_all, y0_all = [], [], [], [], [], [], []
    roi_all = []
    per_zone: dict[int, int] = {}
    for k, count in enumerate(counts.tolist()):
        zone = ZONES[k % len(ZONES)]
        slot = per_zone.get(zone, 0)
        per_zone[zone] = slot + 1
        ncols = int(rng.integers(max(1, int(np.sqrt(count) * 0.7)), int(np.sqrt(count) * 1.4) + 2))
        p = np.arange(count)
        r, c = p // ncols, p % ncols
        north = zone < 32700
        x0 = 250_000.0 + (slot % 5) * 110_000.0
        y0 = (2_500_000.0 if north else 6_000_000.0) + (slot // 5) * 110_000.0
        cols_all.append(c)
        rows_all.append(r)
        scene_all.append(np.full(count, k))
        patch_all.append(p + 1)
        epsg_all.append(np.full(count, zone))
        x0_all.append(np.full(count, x0))
        y0_all.append(np.full(count, y0))
        roi_all.append(np.full(count, k % len(ROIS)))
    col = np.concatenate(cols_all)
    row = np.concatenate(rows_all)
    scene_no = np.concatenate(scene_all)
    patch = np.concatenate(patch_all)
    epsg = np.concatenate(epsg_all)
    roi_idx = np.concatenate(roi_all)
    minx = np.concatenate(x0_all) + col * step
    maxy = np.concatenate(y0_all) - row * step
    maxx, miny = minx + side, maxy - side
    rois = np.asarray(ROIS)[roi_idx]
    scene_num = scene_no // len(ROIS) + 1
    scene = np.char.add(np.char.add(rois.astype(str), "_"), scene_num.astype(str))
    chip_id = np.char.add(np.char.add(scene, "_"), patch.astype(str))
    # labels: dominant class per scene, else a class per 4 x 4 block of patches
    dominant = rng.integers(0, classes, n_scenes)[scene_no]
    block_hash = (scene_no * 7919 + (row // 4) * 104729 + (col // 4) * 1299709) % 1000
    label = np.where(block_hash < 700, dominant, block_hash % classes).astype(np.int64)
    frame = pd.DataFrame({
        "chip_id": chip_id,
        "path": [f"{r}/s2_{s}/{r}_s2_{s}_p{p}.tif" for r, s, p in zip(rois, scene_num, patch)],
        "scene": scene,
        "roi": rois,
        "season": [r.split("_")[1] for r in rois],
        "patch": patch.astype(np.int64),
        "sensor": "s2",
        "datetime": pd.NaT,
        "crs": [f"EPSG:{e}" for e in epsg],
        "res": res,
        "row": (row * stride).astype(np.int64),
        "col": (col * stride).astype(np.int64),
        "height": size,
        "width": size,
        "bands": "",
        "valid_fraction": 1.0,
        "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy,
        "label": label,
    })
    if not geometry:
        return gpd.GeoDataFrame(frame, geometry=shapely.box(minx, miny, maxx, maxy))
    geoms = np.empty(len(frame), dtype=object)
    for code in np.unique(epsg):
        sel = epsg == code
        tr = Transformer.from_crs(int(code), 4326, always_xy=True)
        xs = np.stack([minx[sel], maxx[sel], maxx[sel], minx[sel], minx[sel]], 1)
        ys = np.stack([miny[sel], miny[sel], maxy[sel], maxy[sel], miny[sel]], 1)
        lon, lat = tr.transform(xs, ys)
        geoms[sel] = shapely.polygons(np.stack([lon, lat], -1))
    return gpd.GeoDataFrame(frame, geometry=geoms, crs="EPSG:4326")


def generate(root: Path, **kwargs: int | float | bool) -> Path:
    """Write ``footprints.parquet`` (see :func:`make_footprints` for the arguments)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "footprints.parquet"
    make_footprints(**kwargs).to_parquet(path)  # type: ignore[arg-type]
    return path


if __name__ == "__main__":
    generate(Path(__file__).resolve().parent)
