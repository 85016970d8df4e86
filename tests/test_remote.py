"""Remote scenes: rasters by URL and STAC items, served over HTTP with range requests on
127.0.0.1, tiled and embedded exactly as the same files on disk, reading only byte ranges."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from rasterio.transform import from_origin

from geossl.cli import main
from geossl.core.errors import DataError
from geossl.inference.embed import EmbedConfig, embed
from geossl.tiling.remote import RemoteRaster, resolve_scenes, stac_scenes
from geossl.tiling.scenes import open_scene
from geossl.tiling.tile import TileOptions, tile
from tests._compare import assert_same_tiling
from tests._http import serve
from tests.conftest import REAL
from tests.data.chips.data import MT_BANDS, generate_major_tom, generate_multiband
from tests.test_embed import _geotiff, _source

pytestmark = pytest.mark.timeout(180)

COMMON = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
          "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
          "B11": "swir16", "B12": "swir22"}


def stac_item(folder: Path, root: Path, base: str, relative_to: str | None = None) -> pystac.Item:
    """A STAC item for a Major-TOM product folder served at ``base`` (Earth-Search-like assets:
    lower-case common-name keys, ``eo:bands``, a cloud mask, a thumbnail, a JP2 duplicate)."""
    with rasterio.open(folder / "B02.tif") as src:
        from rasterio.warp import transform_bounds

        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    from geossl.tiling.scenes import parse_datetime

    dt = parse_datetime(folder.name)
    assert dt is not None
    item = pystac.Item(
        id=folder.name, bbox=[west, south, east, north], datetime=dt,
        geometry={"type": "Polygon", "coordinates": [[[west, south], [east, south],
                                                      [east, north], [west, north],
                                                      [west, south]]]},
        properties={"constellation": "sentinel-2", "platform": "sentinel-2a"},
    )

    def href(name: str) -> str:
        rel = (folder / name).relative_to(root).as_posix()
        return rel if relative_to is not None else f"{base}/{rel}"

    for band in MT_BANDS:
        item.add_asset(COMMON[band], pystac.Asset(
            href(f"{band}.tif"), media_type=pystac.MediaType.COG, roles=["data"],
            extra_fields={"eo:bands": [{"name": band, "common_name": COMMON[band]}]}))
    # the same band as JP2 (Earth Search lists both): never preferred over the GeoTIFF
    item.add_asset("red-jp2", pystac.Asset(
        href("B04.tif"), media_type="image/jp2", roles=["data"],
        extra_fields={"eo:bands": [{"name": "B04", "common_name": "red"}]}))
    item.add_asset("cloud_mask", pystac.Asset(href("cloud_mask.tif"),
                                              media_type=pystac.MediaType.GEOTIFF,
                                              roles=["cloud"]))
    item.add_asset("thumbnail", pystac.Asset(href("thumbnail.png"), media_type="image/png",
                                             roles=["thumbnail"]))
    return item


def _cells(root: Path) -> list[Path]:
    a = generate_major_tom(root, size10=96, cloud_box=(0, 20, 0, 40))
    b = generate_major_tom(root, size10=96, cell=("1U", "1U_2R"),
                           product="S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_2023",
                           crs="EPSG:32648", nodata_rows=12)
    return [a, b]


def test_tile_url_equals_local(tmp_path: Path) -> None:
    data = tmp_path / "data"
    f = generate_multiband(data / "scene_20200101.tif", size=96, bands=3, nan_rows=10)
    before = os.environ.get("GDAL_DISABLE_READDIR_ON_OPEN")
    local = tmp_path / "local"
    tile([f], local, TileOptions(size=32, stride=16), progress=False)
    with serve(data) as (url, log):
        remote = tmp_path / "remote"
        report = tile([f"{url}/scene_20200101.tif"], remote, TileOptions(size=32, stride=16),
                      progress=False)
        assert not log.whole_file_gets(".tif")  # every pixel read is a range request
    assert report.written == assert_same_tiling(remote, local) == 20
    # the remote GDAL options are scoped: later local reads may list folders (ENVI .hdr files)
    assert os.environ.get("GDAL_DISABLE_READDIR_ON_OPEN") == before


def test_stac_item_collection_equals_local(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cells = _cells(data)
    opts = TileOptions(size=32, cloud_mask="auto", min_valid=0.8)
    local = tmp_path / "local"
    tile(cells, local, opts, progress=False)
    with serve(data) as (url, log):
        # a saved search result on disk, assets at absolute URLs
        search = tmp_path / "search.json"
        items = [stac_item(c, data, url) for c in cells]
        search.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
        remote = tmp_path / "remote"
        report = tile([search], remote, opts, progress=False)
        assert not log.whole_file_gets(".tif")
        assert not [p for _, p, _, _ in log.requests if p.endswith(".png")]  # no thumbnail
    assert report.rejected > 0  # the cloud and the nodata rows are honoured remotely too
    assert report.written == assert_same_tiling(remote, local)


def test_stac_json_by_url_relative_assets_and_common_names(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (cell, _) = _cells(data)
    with serve(data) as (url, _log):
        item = stac_item(cell, data, url, relative_to=".")
        (data / "item.json").write_text(json.dumps(item.to_dict()))
        (scene,) = resolve_scenes([f"{url}/item.json"])
        assert scene.id == cell.name and scene.bands[0].href.startswith(url)
        opened = open_scene(scene, bands=["red", "nir", "B03"])
        # canonical names, whatever name chose the band (issue 18 item 17)
        assert opened.band_names == ["B04", "B08", "B03"]
        assert opened.sensor == "s2" and opened.datetime is not None
        assert [Path(str(b.path)).name for b in opened.bands] == ["B04.tif", "B08.tif",
                                                                   "B03.tif"]
        assert all(str(b.path).endswith(".tif") for b in opened.bands)  # COG, not JP2
        out = tmp_path / "out"
        tile([f"{url}/item.json"], out, TileOptions(size=32, bands=("red", "nir")),
             progress=False)
    with rasterio.open(next(out.rglob("*_r00032_c00064.tif"))) as chip, \
            rasterio.open(cell / "B04.tif") as b04:
        assert chip.descriptions == ("B04", "B08")
        np.testing.assert_array_equal(chip.read(1), b04.read(1)[32:64, 64:96])


def test_remote_reads_only_the_ranges_it_needs(tmp_path: Path) -> None:
    # a 4-band, band-interleaved tiled GeoTIFF (a COG's layout); one band is a quarter of it
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 10000, (4, 512, 512), dtype=np.uint16)
    path = data / "big.tif"
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=4,
                       dtype="uint16", crs="EPSG:32633", transform=from_origin(0, 0, 10, 10),
                       tiled=True, blockxsize=128, blockysize=128, interleave="band",
                       compress="deflate") as dst:
        dst.write(arr)
        dst.descriptions = ("B02", "B03", "B04", "B08")
    size = path.stat().st_size
    with serve(data) as (url, log):
        out = tmp_path / "out"
        tile([f"{url}/big.tif"], out, TileOptions(size=128, bands=("B08",)), progress=False)
        sent = log.bytes_for("big.tif")
        assert not log.whole_file_gets(".tif")
    assert sent < 0.4 * size, (sent, size)
    with rasterio.open(out / "big" / "big_r00128_c00256.tif") as chip:
        np.testing.assert_array_equal(chip.read(1), arr[3, 128:256, 256:384])


def test_embed_by_url_and_stac_equals_local(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    tif = _geotiff(data / "scene.tif", bands=5, h=96, w=128)
    ref = embed(EmbedConfig(_source(5), tif, tmp_path / "local.zarr", size=32, accelerator="cpu"))
    item = pystac.Item(id="scene", geometry=None, bbox=None,
                       datetime=datetime(2021, 5, 1, tzinfo=UTC), properties={})
    item.add_asset("image", pystac.Asset(
        "scene.tif", media_type=pystac.MediaType.COG, roles=["data"],
        extra_fields={"eo:bands": [{"name": f"B0{i + 1}"} for i in range(5)]}))
    with serve(data) as (url, log):
        by_url = embed(EmbedConfig(_source(5), f"{url}/scene.tif", tmp_path / "url.zarr", size=32,
                                   accelerator="cpu"))
        (data / "item.json").write_text(json.dumps(item.to_dict()))
        by_stac = embed(EmbedConfig(_source(5), f"{url}/item.json", tmp_path / "stac.zarr", size=32,
                                    accelerator="cpu"))
        assert not log.whole_file_gets(".tif")
    want = xr.open_zarr(tmp_path / "local.zarr", decode_coords="all")
    for res, name in ((by_url, "url.zarr"), (by_stac, "stac.zarr")):
        assert res.shape == ref.shape
        got = xr.open_zarr(tmp_path / name, decode_coords="all")
        np.testing.assert_array_equal(got["embedding"].values, want["embedding"].values)
        assert got.rio.crs == want.rio.crs and got.rio.transform() == want.rio.transform()


@pytest.mark.real
@pytest.mark.slow  # two real cells tiled twice; the fake cells above run by default
def test_real_major_tom_through_stac(tmp_path: Path) -> None:
    root = REAL / "major_tom_s2l2a"
    if not root.is_dir():
        pytest.skip(f"real sample {root} not found")
    cells = sorted(p.parent for p in root.rglob("B02.tif"))
    opts = TileOptions(size=128, cloud_mask="auto")
    local = tmp_path / "local"
    tile(cells, local, opts, progress=False)
    with serve(root) as (url, log):
        search = tmp_path / "search.json"
        search.write_text(json.dumps(pystac.ItemCollection(
            [stac_item(c, root, url) for c in cells]).to_dict()))
        remote = tmp_path / "remote"
        tile([search], remote, opts, progress=False)
        assert not log.whole_file_gets(".tif")
    assert assert_same_tiling(remote, local) == 128  # 2 cells x 8 x 8 chips of 128 px


# ---- bad input: one line naming the file --------------------------------------------------


def test_bad_remote_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"type": "Catalog", "id": "c"}))
    with pytest.raises(DataError, match=r"x\.json: not a STAC Item or ItemCollection"):
        stac_scenes(tmp_path / "x.json")
    item = pystac.Item(id="noraster", geometry=None, bbox=None,
                       datetime=datetime(2021, 5, 1, tzinfo=UTC), properties={})
    item.add_asset("meta", pystac.Asset("meta.xml", media_type="application/xml"))
    (tmp_path / "y.json").write_text(json.dumps(item.to_dict()))
    with pytest.raises(DataError, match="has no raster data asset"):
        stac_scenes(tmp_path / "y.json")
    data = tmp_path / "data"
    cell = generate_major_tom(data, size10=48)
    with serve(data) as (url, _):
        (tmp_path / "z.json").write_text(json.dumps(stac_item(cell, data, url).to_dict()))
        with pytest.raises(DataError, match=r"has no band 'B10' \(has: .*blue"):
            tile([tmp_path / "z.json"], tmp_path / "o", TileOptions(size=16, bands=("B10",)),
                 progress=False)
        rc = main(["tile", f"{url}/missing.tif", "--out", str(tmp_path / "o2")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("geossl tile: error: ") and "missing.tif" in err
    assert isinstance(resolve_scenes(["s3://bucket/scene.tif"])[0], RemoteRaster)
