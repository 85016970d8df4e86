"""``tile`` and ``embed`` write to object stores (issue 18, item 2).

Against a local S3-compatible server (moto's server mode on a free 127.0.0.1 port, stopped
after the module): chips + GeoParquet index and the zarr cube are written for real, match what
the same commands write on disk, and a rerun resumes (writes nothing new). A prefix holding
someone else's objects is refused, as a non-empty folder is on disk.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geossl.cli import main
from tests._cli_helpers import one_line_error
from tests.test_write_safety import BANDS, _scene

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with an empty bucket; yields the bucket URL."""
    import s3fs

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(),
                                            verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL_S3": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        s3fs.S3FileSystem().mkdir("bucket")
        yield "s3://bucket"
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s3fs.S3FileSystem.clear_instance_cache()


def _fs():  # type: ignore[no-untyped-def]
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def test_tile_writes_chips_and_index_to_s3(s3: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import geopandas as gpd

    scene = _scene(tmp_path / "scene.tif")
    local = tmp_path / "chips"
    assert main(["tile", str(scene), "--out", str(local), "--size", "32"]) == 0
    url = f"{s3}/chips"
    assert main(["tile", str(scene), "--out", url, "--size", "32"]) == 0
    assert not Path("s3:").exists() and not (tmp_path / "s3:").exists()
    fs = _fs()
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.glob("bucket/chips/scene/*.tif"))
    assert names == sorted(p.name for p in (local / "scene").glob("*.tif")) and len(names) == 9
    with fs.open("bucket/chips/index.parquet", "rb") as f:
        remote = gpd.read_parquet(io.BytesIO(f.read()))
    ref = gpd.read_parquet(local / "index.parquet")
    assert list(remote["chip_id"]) == list(ref["chip_id"])
    assert list(remote["path"]) == list(ref["path"])
    np.testing.assert_allclose(remote[["minx", "miny", "maxx", "maxy"]].to_numpy(),
                               ref[["minx", "miny", "maxx", "maxy"]].to_numpy())
    chip = names[4]
    with rasterio.MemoryFile(fs.cat_file(f"bucket/chips/scene/{chip}")) as mem, \
            mem.open() as src, rasterio.open(local / "scene" / chip) as ref_src:
        assert src.crs == ref_src.crs and src.transform == ref_src.transform
        assert list(src.descriptions) == BANDS
        np.testing.assert_array_equal(src.read(), ref_src.read())
    # a rerun resumes: every chip is found, none written again
    capsys.readouterr()
    assert main(["tile", str(scene), "--out", url, "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "0 chip(s) written, 9 " in out, out


def test_embed_writes_a_zarr_cube_to_s3(s3: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import xarray as xr

    from geossl.testing.checkpoints import random_simclr_checkpoint

    ckpt = random_simclr_checkpoint(tmp_path / "last.ckpt", BANDS)
    scene = _scene(tmp_path / "scene.tif")
    local = tmp_path / "cube.zarr"
    args = [str(ckpt), str(scene), "--size", "32", "--block-rows", "1"]
    assert main(["embed", *args, "--out", str(local)]) == 0
    url = f"{s3}/cube.zarr"
    assert main(["embed", *args, "--out", url]) == 0
    capsys.readouterr()
    ref = xr.open_zarr(local, decode_coords="all")
    got = xr.open_zarr(url, decode_coords="all")
    np.testing.assert_allclose(got["embedding"].values, ref["embedding"].values, rtol=1e-5)
    assert got.rio.crs == ref.rio.crs
    np.testing.assert_allclose(got["x"].values, ref["x"].values)
    # resumed, not recomputed
    assert main(["embed", *args, "--out", url]) == 0
    assert "(0 blocks written, 3 already done)" in capsys.readouterr().out
    # other parameters: refused, the store unchanged
    assert main(["embed", *args, "--stride", "16", "--out", url]) == 2
    one_line_error(capsys, "embed", "stride")
    # the cluster map beside the store, on the object store too
    assert main(["embed", *args, "--out", url, "--clusters", "2"]) == 0
    with rasterio.MemoryFile(_fs().cat_file("bucket/cube_clusters.tif")) as mem, \
            mem.open() as src:
        labels = src.read(1)
        assert labels.shape == (3, 3) and set(np.unique(labels)) <= {0, 1}
        assert src.crs == ref.rio.crs


def test_a_prefix_with_other_objects_is_refused(s3: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    fs = _fs()
    fs.pipe_file("bucket/mine/report.pdf", b"%PDF precious")
    scene = _scene(tmp_path / "scene.tif")
    assert main(["tile", str(scene), "--out", f"{s3}/mine", "--size", "32"]) == 2
    one_line_error(capsys, "tile", "neither empty nor an earlier output")
    assert fs.find("bucket/mine") == ["bucket/mine/report.pdf"]
    assert fs.cat_file("bucket/mine/report.pdf") == b"%PDF precious"


def test_a_missing_bucket_is_one_line(s3: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "scene.tif")
    assert main(["tile", str(scene), "--out", "s3://no-such-bucket/chips", "--size", "32"]) == 2
    one_line_error(capsys, "tile", "no-such-bucket", "does not exist")


def test_a_failed_upload_is_one_line(s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Access denied in the middle of a run (after a few objects): one line, exit 2."""
    import s3fs

    real_put = s3fs.S3FileSystem._put_file
    calls = {"n": 0}

    async def denied(self: s3fs.S3FileSystem, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] > 3:
            raise PermissionError("Access Denied")
        return await real_put(self, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_put_file", denied)
    s3fs.S3FileSystem.clear_instance_cache()  # cached instances hold the unpatched method
    scene = _scene(tmp_path / "scene.tif")
    try:
        assert main(["tile", str(scene), "--out", f"{s3}/denied", "--size", "32"]) == 2
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    one_line_error(capsys, "tile", "cannot write to the object store", "Access Denied")
    assert calls["n"] > 3
    assert not _fs().exists("bucket/denied/index.parquet")
