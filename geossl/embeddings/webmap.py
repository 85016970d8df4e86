"""``geossl map``: one self-contained HTML page to look at a scene, its clusters and search hits.

The page works offline: Leaflet 1.9.4 (BSD-2-Clause, vendored from npm as package data in
``geossl/embeddings/static/leaflet``) and every picture are inlined (PNG data URIs). Layers,
switched on and off in Leaflet's layer control:

* the scene quick-look (true colour when B04/B03/B02 are known) and the k-means cluster map,
  each warped to Web Mercator (EPSG:3857, the map's projection) and placed as an image overlay
  at its true position;
* the chips' footprints (from an embeddings file: cube, GeoParquet or product);
* search hits (a ``geossl search`` folder or its ``hits.parquet``) as footprints coloured by
  score, each with a pop-up holding its rank, score, id and a thumbnail of the chip.

There is no base map (tiles would need the internet): the overlays are the map.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import atomic_write_text
from geossl.viz.plots import png_data_uri

PathLike = str | os.PathLike[str]
#: longest side of an overlay image in pixels
MAX_SIDE = 1024
#: footprints drawn at most in the chips layer
MAX_FOOTPRINTS = 5000


def _to_mercator(data: np.ndarray, valid: np.ndarray, src_crs: Any, src_transform: Any,
                 resampling: str) -> tuple[np.ndarray, np.ndarray, list[list[float]]]:
    """Warp ``(C, h, w)`` to EPSG:3857; returns data, valid mask and ``[[s, w], [n, e]]``."""
    from pyproj import Transformer
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    c, h, w = data.shape
    left, top = src_transform @ (0, 0)
    right, bottom = src_transform @ (w, h)
    dst_t, dw, dh = calculate_default_transform(src_crs, "EPSG:3857", w, h,
                                                left=min(left, right), bottom=min(top, bottom),
                                                right=max(left, right), top=max(top, bottom))
    out = np.zeros((c, dh, dw), dtype=np.float32)
    mask = np.zeros((dh, dw), dtype=np.float32)
    rs = getattr(Resampling, resampling)
    reproject(data.astype(np.float32), out, src_transform=src_transform, src_crs=src_crs,
              dst_transform=dst_t, dst_crs="EPSG:3857", resampling=rs)
    reproject(valid.astype(np.float32), mask, src_transform=src_transform, src_crs=src_crs,
              dst_transform=dst_t, dst_crs="EPSG:3857", resampling=Resampling.nearest,
              src_nodata=None, dst_nodata=0)
    to_ll = Transformer.from_crs("EPSG:3857", 4326, always_xy=True)
    x0, y0 = dst_t @ (0, 0)
    x1, y1 = dst_t @ (dw, dh)
    lon0, lat0 = to_ll.transform(x0, y0)
    lon1, lat1 = to_ll.transform(x1, y1)
    bounds = [[min(lat0, lat1), min(lon0, lon1)], [max(lat0, lat1), max(lon0, lon1)]]
    return out, mask > 0.5, bounds


def quicklook_layer(scene: PathLike) -> dict[str, Any]:
    """The scene's quick-look as an overlay: ``{"name", "url", "bounds"}``.

    Raises:
        DataError: unreadable scene.
    """
    import rasterio

    from geossl.tiling.scenes import open_scene
    from geossl.viz import plots

    sc = open_scene(Path(scene))
    names = [b.name for b in sc.bands]
    pick = plots._find(names, ("B04", "B03", "B02")) or plots._find(names, ("B4", "B3", "B2")) \
        or list(range(min(3, len(names))))
    grid = sc.grid
    scale = max(1.0, max(grid.height, grid.width) / MAX_SIDE)
    oh, ow = max(1, int(grid.height / scale)), max(1, int(grid.width / scale))
    bands = []
    for i in pick:
        b = sc.bands[i]
        with rasterio.open(b.path) as src:
            bands.append(src.read(b.index, out_shape=(oh, ow), out_dtype=np.float32))
    data = np.stack(bands)
    valid = np.isfinite(data).all(0) & (data != 0).any(0)
    t = grid.transform @ grid.transform.scale(grid.width / ow, grid.height / oh)
    warped, ok, bounds = _to_mercator(np.nan_to_num(data), valid, grid.crs, t, "bilinear")
    rgb = plots.composite(np.where(ok, warped, np.nan), [names[i] for i in pick]
                          if len(pick) == 3 else None)
    rgba = np.concatenate([np.nan_to_num(rgb), ok[..., None].astype(np.float32)], -1)
    return {"name": f"scene {sc.name}", "url": png_data_uri(rgba), "bounds": bounds}


def cluster_layer(path: PathLike) -> dict[str, Any]:
    """A cluster map GeoTIFF (``geossl embed --clusters``) as a coloured overlay."""
    import matplotlib
    import rasterio

    p = Path(path)
    try:
        with rasterio.open(p) as src:
            lab = src.read(1)
            nodata, crs, t = src.nodata, src.crs, src.transform
    except Exception as err:
        raise DataError(f"unreadable cluster map ({type(err).__name__})", p) from err
    valid = lab != nodata if nodata is not None else np.ones(lab.shape, dtype=bool)
    warped, ok, bounds = _to_mercator(lab[None].astype(np.float32), valid, crs, t, "nearest")
    cmap = matplotlib.colormaps["tab20"]
    colours = cmap(np.mod(warped[0].astype(int), 20))[..., :3]
    rgba = np.concatenate([colours, ok[..., None] * 0.8], -1).astype(np.float32)
    k = int(lab[valid].max()) + 1 if valid.any() else 0
    legend = [matplotlib.colors.to_hex(cmap(i % 20)) for i in range(k)]
    return {"name": f"clusters ({k})", "url": png_data_uri(rgba), "bounds": bounds,
            "legend": legend}


def _feature(geom: Any, props: dict[str, Any]) -> dict[str, Any]:
    from shapely.geometry import mapping

    return {"type": "Feature", "geometry": mapping(geom), "properties": props}


def footprint_layer(embeddings: PathLike) -> dict[str, Any]:
    """Chip footprints of some embeddings (at most :data:`MAX_FOOTPRINTS`)."""
    from geossl.embeddings.products import load_embeddings

    table = load_embeddings(embeddings)
    frame = table.frame.iloc[:MAX_FOOTPRINTS]
    feats = [_feature(g, {"chip_id": str(c)}) for g, c in zip(frame.geometry, frame["chip_id"])]
    return {"name": f"chips ({len(table)})", "geojson": {"type": "FeatureCollection",
                                                           "features": feats}}


def hits_layer(hits: PathLike, thumbs: bool = True) -> dict[str, Any]:
    """Search hits (a ``geossl search`` folder or ``hits.parquet``) with thumbnails."""
    import geopandas as gpd

    from geossl.embeddings.products import chip_picture
    from geossl.viz import plots

    p = Path(hits)
    f = p / "hits.parquet" if p.is_dir() else p
    if not f.is_file():
        raise DataError("no hits.parquet (give a `geossl search` output folder)", p)
    try:
        frame = gpd.read_parquet(f).to_crs(4326)
    except Exception as err:
        raise DataError(f"unreadable hits ({type(err).__name__})", f) from err
    feats = []
    for _, r in frame.iterrows():
        pic = chip_picture(r) if thumbs else None
        thumb = png_data_uri(plots._tile(pic, 96)) if pic is not None else ""
        feats.append(_feature(r.geometry, {
            "rank": int(r.get("rank", 0)), "score": float(r.get("score", float("nan"))),
            "chip_id": str(r.get("chip_id", "")), "query": bool(r.get("query", False)),
            "timestamp": "" if str(r.get("timestamp", "")) == "NaT" else str(r.get("timestamp",
                                                                                  "")),
            "thumb": thumb}))
    return {"name": f"search hits ({len(frame)})", "geojson": {"type": "FeatureCollection",
                                                               "features": feats}}


def _static() -> tuple[str, str, str]:
    """Leaflet's JS and CSS and the page's own script (``static/map.js``), as text."""
    root = resources.files("geossl.embeddings") / "static"
    leaflet = root / "leaflet"
    return ((leaflet / "leaflet.js").read_text(encoding="utf-8"),
            (leaflet / "leaflet.css").read_text(encoding="utf-8"),
            (root / "map.js").read_text(encoding="utf-8"))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{css}</style>
<style>
html, body {{ margin: 0; height: 100%; font-family: sans-serif; }}
#map {{ position: absolute; top: 0; bottom: 0; left: 0; right: 0; background: #d8dde3; }}
.geossl-pop img {{ display: block; width: 128px; height: 128px; image-rendering: pixelated; }}
.geossl-legend {{ background: white; padding: 4px 6px; font-size: 11px; line-height: 14px; }}
.geossl-legend i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
</style>
</head><body>
<div id="map"></div>
<div id="geossl-errors" style="display:none"></div>
<script>
window.onerror = function (msg, src, line) {{
  var box = document.getElementById('geossl-errors');
  box.textContent += msg + ' (line ' + line + ')\\n';
  box.setAttribute('data-count', String(Number(box.getAttribute('data-count') || 0) + 1));
}};
</script>
<script>{js}</script>
<script>
var DATA = {data};
</script>
<script>{app}</script>
</body></html>
"""


def write_map(out: PathLike, *, scene: PathLike | None = None,
              clusters: PathLike | None = None, embeddings: PathLike | None = None,
              hits: Sequence[PathLike] = (), title: str = "geossl map") -> Path:
    """Write the HTML page (atomically).

    Args:
        out: the ``.html`` file to write.
        scene: scene for the quick-look (GeoTIFF, per-band folder, SAFE product).
        clusters: cluster map GeoTIFF.
        embeddings: embeddings whose chip footprints are drawn.
        hits: ``geossl search`` output folders (or ``hits.parquet`` files).
        title: page title.

    Raises:
        ConfigError: nothing to draw.
        DataError: an unreadable input.
    """
    from geossl.core.io import check_writable

    if scene is None and clusters is None and embeddings is None and not hits:
        raise ConfigError("nothing to draw: give --scene, --clusters, --embeddings or --hits")
    dest = check_writable(out, folder=False)
    images, vectors, legend = [], [], []
    if scene is not None:
        images.append(quicklook_layer(scene))
    if clusters is not None:
        layer = cluster_layer(clusters)
        legend = layer.pop("legend")
        images.append(layer)
    if embeddings is not None:
        vectors.append(footprint_layer(embeddings))
    scores: list[float] = []
    for h in hits:
        layer = hits_layer(h)
        vectors.append(layer)
        scores += [f["properties"]["score"] for f in layer["geojson"]["features"]]
    js, css, app = _static()
    data = {"images": images, "vectors": vectors, "legend": legend,
            "score_min": float(min(scores)) if scores else 0.0}
    page = _PAGE.format(title=html.escape(title), css=css, js=js, app=app,
                        data=json.dumps(data).replace("</", "<\\/"))
    atomic_write_text(dest, page)
    return dest
