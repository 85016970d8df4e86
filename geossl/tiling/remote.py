"""Remote scenes: rasters behind URLs and STAC items, read with HTTP range requests.

Two kinds of remote scene, both opened lazily (headers first, then only the pixel windows a
chip or an embedding block needs, never the whole file):

* a raster URL: ``https://host/path/scene.tif`` (read by GDAL's ``/vsicurl/`` with HTTP range
  requests: cloud-optimised GeoTIFFs are read tile by tile), ``s3://bucket/key.tif``
  (``/vsis3/``; credentials from the usual ``AWS_*`` variables, ``AWS_NO_SIGN_REQUEST=YES``
  for public buckets, ``AWS_S3_ENDPOINT`` for other S3 services), ``gs://``, ``az://`` or any
  GDAL ``/vsi*/`` path. Its band names come from the band descriptions, as for a local file;
* a STAC Item or ItemCollection saved as JSON (e.g. a STAC API search result), local or at a
  URL, read with :mod:`pystac`: one scene per item, one band per raster asset band. Assets are
  chosen by band name: ``--bands`` may name an ``eo:bands`` band name (``B04``), its common
  name (``red``) or the asset key; without ``--bands`` every single-purpose ``data`` raster
  asset is used (``visual``, ``scl``, ``aot``, ``wvp``, thumbnails and duplicate copies of a
  band in another format are left out). ``--cloud-mask auto`` uses an ``scl`` asset (Sentinel-2
  scene classification) or a ``cloud``/``cloud_mask`` asset. The scene's name is the item id,
  its time the item's ``datetime``.

Remote reads go through GDAL's network layer with defaults suited to COGs (no directory listing
on open, retries, a block cache: :data:`geossl.core.io.REMOTE_GDAL_OPTIONS`), set only around remote
opens and reads (:func:`geossl.core.io.remote_env`) and only where the environment does not set
them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geossl.core.errors import DataError, first_line
from geossl.core.io import is_url, open_raster
from geossl.tiling.scenes import (
    BandSource,
    Scene,
    canonical_band_name,
    find_scenes,
    is_scene_ref,
    normalise_band_name,
    parse_datetime,
    safe_name,
    scene_from_sources,
    select_bands,
)

#: media types of raster assets
_RASTER_TYPES = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff", "application/x-geotiff")
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
#: assets never used as bands by default (masks, previews, atmosphere products)
_NOT_BANDS = re.compile(r"^(scl|aot|wvp|visual|tci|thumbnail|overview|preview|rendered_preview"
                        r"|cloud\w*|\w*mask\w*|snow\w*|granule_metadata|tileinfo_metadata)"
                        r"(-jp2|_jp2)?$", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteRaster:
    """One raster behind a URL (all its bands); a :class:`~.scenes.SceneRef`."""

    url: str

    @property
    def name(self) -> str:
        """The raster file's stem."""
        return safe_name(_url_path(self.url).rstrip("/").rsplit("/", 1)[-1].split(".")[0])

    def open(self, bands: Any = None, resolution: float | None = None,
             sensor: str | None = None, cloud_mask: str | None = None,
             resampling: str = "bilinear") -> Scene:
        """The scene on one common grid (headers only)."""
        return open_remote_scene(self, bands, resolution, sensor, cloud_mask, resampling)


@dataclass(frozen=True)
class StacBand:
    """One band of a STAC asset.

    Attributes:
        name: band name (``eo:bands`` name normalised, ``B04``; else the asset key).
        aliases: other names it answers to (asset key, common name), lower case.
        href: absolute URL or path of the asset.
        index: 1-based band index in the asset.
        asset: asset key.
        media_type: the asset's media type ('' when not given).
    """

    name: str
    aliases: tuple[str, ...]
    href: str
    index: int
    asset: str
    media_type: str


@dataclass(frozen=True)
class StacScene:
    """One STAC item as a scene: its raster asset bands, masks, time and platform."""

    id: str
    source: str
    datetime: str | None
    bands: tuple[StacBand, ...]
    masks: tuple[tuple[str, str, str], ...]  # (asset key, href, kind "scl" | "binary")
    constellation: str = ""

    @property
    def name(self) -> str:
        """Scene name: the item id, safe as a folder name."""
        return safe_name(self.id)

    def open(self, bands: Any = None, resolution: float | None = None,
             sensor: str | None = None, cloud_mask: str | None = None,
             resampling: str = "bilinear") -> Scene:
        """The scene on one common grid (headers only)."""
        return open_remote_scene(self, bands, resolution, sensor, cloud_mask, resampling)


def is_remote_ref(obj: Any) -> bool:
    """True for the remote scene objects of this module."""
    return isinstance(obj, RemoteRaster | StacScene)


def is_stac_json(path: str | os.PathLike[str]) -> bool:
    """True for a path or URL ending in ``.json`` (a STAC Item / ItemCollection)."""
    text = os.fspath(path)
    if not isinstance(text, str):
        return False
    return _url_path(text).lower().endswith((".json", ".geojson"))


def resolve_scenes(inputs: Any) -> list[Any]:
    """Expand command-line scene arguments: local paths, raster URLs and STAC JSON files.

    Local files and folders go through :func:`~.scenes.find_scenes`; a URL of a raster
    (``https://.../scene.tif``, ``s3://bucket/scene.tif``) is one scene; a STAC Item or
    ItemCollection JSON (a file or a URL, e.g. a saved search result) gives one scene per item.

    Args:
        inputs: the arguments (paths, URL strings, or scenes already resolved).

    Returns:
        local scene paths (sorted, unique), then remote scenes in the order given.
    """
    local: list[Any] = []
    out: list[Any] = []
    for item in inputs:
        if is_scene_ref(item):
            out.append(item)
        elif isinstance(item, str | os.PathLike) and is_stac_json(item):
            out.extend(stac_scenes(item))
        elif isinstance(item, str) and is_url(item):
            out.append(RemoteRaster(item))
        else:
            local.append(item)
    return [*(find_scenes(local) if local else []), *out]


def _url_path(url: str) -> str:
    """The path part of a URL (no query or fragment)."""
    return url.split("?", 1)[0].split("#", 1)[0]


# ----------------------------------------------------------------------------------------------
# STAC
# ----------------------------------------------------------------------------------------------
def stac_scenes(path: str | os.PathLike[str]) -> list[StacScene]:
    """The scenes of a STAC Item or ItemCollection JSON (a file or a URL), one per item.

    Raises:
        DataError: unreadable JSON, not a STAC Item / ItemCollection, or an item without a
            raster asset.
    """
    import pystac

    text = os.fspath(path)
    href = text if is_url(text) else str(Path(text).resolve())
    if not is_url(text) and not Path(text).is_file():
        raise DataError("STAC file not found", text)
    try:
        doc = pystac.StacIO.default().read_json(href)
    except Exception as err:  # urllib, json and OS errors
        raise DataError(f"cannot read STAC JSON ({first_line(err)})", text) from err
    kind = doc.get("type") if isinstance(doc, dict) else None
    try:
        if kind == "Feature":
            items = [pystac.Item.from_dict(doc, href=href, preserve_dict=False)]
        elif kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(doc, preserve_dict=False).items)
        else:
            raise DataError("not a STAC Item or ItemCollection (type is "
                            f"{kind!r}, expected 'Feature' or 'FeatureCollection')", text)
    except DataError:
        raise
    except Exception as err:  # pystac raises KeyError / STACTypeError on malformed items
        raise DataError(f"invalid STAC item ({first_line(err)})", text) from err
    if not items:
        raise DataError("the STAC ItemCollection holds no item", text)
    return [_stac_scene(item, href) for item in items]


def _absolute(asset_href: str, base: str) -> str:
    """``asset_href`` resolved against the STAC JSON's location ``base``."""
    if is_url(asset_href) or os.path.isabs(asset_href):
        return asset_href
    if is_url(base):
        from urllib.parse import urljoin

        return urljoin(base, asset_href)
    return str((Path(base).parent / asset_href).resolve())


def _stac_scene(item: Any, base: str) -> StacScene:
    bands: list[StacBand] = []
    masks: list[tuple[str, str, str]] = []
    props = item.properties
    constellation = str(props.get("constellation") or props.get("platform") or "").lower()
    sensor = "s2" if "sentinel-2" in constellation else None
    for key, asset in item.assets.items():
        href = _absolute(asset.href, base)
        media = (asset.media_type or "").lower()
        roles = [r.lower() for r in (asset.roles or [])]
        is_raster = any(media.startswith(t) for t in _RASTER_TYPES) or (
            not media and _url_path(href).lower().endswith(_RASTER_SUFFIXES))
        if not is_raster:
            continue
        low = key.lower()
        if low in ("scl", "scl-jp2") or "scl" in roles:
            masks.append((key, href, "scl"))
            continue
        if "cloud" in low or "cloud" in roles or "cloud-mask" in roles:
            masks.append((key, href, "binary"))
            continue
        if roles and "data" not in roles:
            continue
        info = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
        if not info:
            info = [{}]
        for i, b in enumerate(info, start=1):
            raw = b.get("name") if isinstance(b, dict) else None
            common = (b.get("common_name") or b.get("eo:common_name")) if isinstance(b, dict) \
                else None
            # canonical names (B04, not red) in chips and indexes, as checkpoints have them
            if raw:
                name = canonical_band_name(str(raw), common, sensor)
            elif common or len(info) == 1:
                name = canonical_band_name(key if len(info) == 1 else str(common), common,
                                           sensor)
            else:
                name = f"{key}_{i}"
            aliases = {key.lower(), name.lower()} if len(info) == 1 else {name.lower()}
            if common:
                aliases.add(str(common).lower())
            bands.append(StacBand(name, tuple(sorted(aliases)), href, i, key, media))
    if not bands:
        raise DataError(f"STAC item {item.id!r} has no raster data asset", base)
    dt = item.datetime or _parse_iso(item.properties.get("start_datetime"))
    return StacScene(
        id=str(item.id), source=base,
        datetime=dt.astimezone(UTC).isoformat() if dt is not None else None,
        bands=tuple(bands), masks=tuple(masks), constellation=constellation,
    )


def _parse_iso(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _pick_bands(scene: StacScene, wanted: list[str] | None) -> list[tuple[str, StacBand]]:
    """``(output name, band)`` for every wanted band (default: the data bands, deduplicated).

    Raises:
        DataError: a wanted band matches no asset (the message lists the bands there are).
    """
    where = f"{scene.source}#{scene.id}"
    if not wanted:
        chosen: dict[str, StacBand] = {}
        for b in scene.bands:
            if _NOT_BANDS.match(b.asset) or _NOT_BANDS.match(b.name):
                continue
            prev = chosen.get(b.name)
            # the same band in two formats (Earth Search: ``red`` and ``red-jp2``): keep the
            # GeoTIFF (a COG answers range requests tile by tile)
            if prev is None or ("tiff" in b.media_type and "tiff" not in prev.media_type):
                chosen[b.name] = b
        if not chosen:
            raise DataError(f"STAC item {scene.id!r} has no band asset", where)
        return [(b.name, b) for b in chosen.values()]
    out: list[tuple[str, StacBand]] = []
    for w in wanted:
        norm = normalise_band_name(w)
        hits = [b for b in scene.bands if b.name == norm] or \
               [b for b in scene.bands if w.lower() in b.aliases]
        if not hits:
            have = sorted({b.name for b in scene.bands} |
                          {a for b in scene.bands for a in b.aliases})
            raise DataError(f"STAC item {scene.id!r} has no band {w!r} (has: "
                            f"{', '.join(have)})", where)
        hits.sort(key=lambda b: "tiff" not in b.media_type)
        out.append((hits[0].name, hits[0]))  # its canonical name, whatever name chose it
    return out


# ----------------------------------------------------------------------------------------------
# opening
# ----------------------------------------------------------------------------------------------
def open_remote_scene(
    ref: RemoteRaster | StacScene,
    bands: Any = None,
    resolution: float | None = None,
    sensor: str | None = None,
    cloud_mask: str | None = None,
    resampling: str = "bilinear",
) -> Scene:
    """Open a remote scene on one common grid (headers only; see :func:`~.scenes.open_scene`).

    Raises:
        DataError: unreachable or unreadable raster, missing band, CRS mismatch.
    """
    wanted = [str(b) for b in bands] if bands else None
    mask: str | None = None
    mask_kind = "binary"
    if isinstance(ref, RemoteRaster):
        with open_raster(ref.url) as src:
            descs = list(src.descriptions)
            res = float(src.res[0])
            count = src.count
        name = ref.name
        if count == 1 and not descs[0]:
            names = [name]
        else:
            names = [normalise_band_name(d) if d else f"B{i + 1}" for i, d in enumerate(descs)]
        sources = select_bands([BandSource(n, ref.url, i + 1, res) for i, n in enumerate(names)],
                               wanted, ref.url)
        # as for a local file: the file stem, then its folders
        segments = _url_path(ref.url).rstrip("/").split("/")
        dt = parse_datetime(name, *reversed(segments[-4:-1]))
        if cloud_mask and cloud_mask != "auto":
            mask = cloud_mask
            mask_kind = "scl" if "SCL" in _url_path(cloud_mask).upper() else "binary"
        where: str = ref.url
    else:
        picked = _pick_bands(ref, wanted)
        sources = []
        for out_name, b in picked:
            with open_raster(b.href) as src:
                res = float(src.res[0])
            sources.append(BandSource(out_name, b.href, b.index, res))
        name = ref.name
        dt = _parse_iso(ref.datetime)
        if dt is not None and dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        if cloud_mask == "auto" and ref.masks:
            scl = [m for m in ref.masks if m[2] == "scl"]
            _, mask, mask_kind = sorted(scl or ref.masks,
                                        key=lambda m: m[0].lower().endswith("jp2"))[0]
        elif cloud_mask and cloud_mask != "auto":
            mask = cloud_mask
            mask_kind = "scl" if "SCL" in _url_path(cloud_mask).upper() else "binary"
        if sensor is None and "sentinel-2" in ref.constellation:
            sensor = "s2"
        where = f"{ref.source}#{ref.id}"
    return scene_from_sources(name, where, sources, resolution=resolution, sensor=sensor,
                              cloud_mask=mask, cloud_mask_kind=mask_kind,
                              resampling=resampling, dt=dt)



__all__ = [
    "RemoteRaster", "StacBand", "StacScene",
    "is_remote_ref", "is_stac_json", "open_remote_scene", "resolve_scenes", "stac_scenes",
]
