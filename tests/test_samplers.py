"""``--sampler``: a geo dataset's windows from geossl's grid or from TorchGeo's samplers."""

from __future__ import annotations

from pathlib import Path

import pytest
import shapely
import torch

from geossl.core.errors import ConfigError
from geossl.data.datamodule import SSLDataModule
from geossl.datasets.geogrid import GeoSamples


@pytest.fixture(scope="module")
def ssl4eo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.data.ssl4eo import data as gen

    return gen.generate(tmp_path_factory.mktemp("ssl4eo"), size=48)  # type: ignore[no-any-return]


def _boxes(base: GeoSamples) -> list[shapely.Polygon]:
    return [shapely.box(q[0].start, q[1].start, q[0].stop, q[1].stop) for q in base.queries]


def _inside(base: GeoSamples) -> list[bool]:
    geoms = list(base.dataset.index.geometry)
    return [any(g.buffer(1e-6).contains(b) for g in geoms) for b in _boxes(base)]


def test_torchgeo_samplers_draw_the_windows(ssl4eo: Path) -> None:
    mods = {}
    for sampler in ("grid", "torchgeo-grid", "torchgeo-random"):
        dm = SSLDataModule("ssl4eo", ssl4eo, ("s1", "s2"), "geo", batch_size=4, patch_size=16,
                           sampler=sampler, seed=3)
        dm.setup("fit")
        mods[sampler] = dm
        base = dm.train_dataset.base  # type: ignore[union-attr]
        assert isinstance(base, GeoSamples) and base.sampler == sampler
        rx, ry = base.dataset.res
        for box in _boxes(base):  # every query is a 32 px window on the reference grid
            x0, y0, x1, y1 = box.bounds
            assert round((x1 - x0) / rx) == 16 and round((y1 - y0) / ry) == 16
        batch = next(iter(dm.train_dataloader()))
        assert batch["image_s1"].shape == (4, 2, 16, 16)
        assert batch["image_s2"].shape == (4, 13, 16, 16)
    grid = mods["grid"].train_dataset.base  # type: ignore[union-attr]
    tg_grid = mods["torchgeo-grid"].train_dataset.base  # type: ignore[union-attr]
    rnd = mods["torchgeo-random"].train_dataset.base  # type: ignore[union-attr]
    # geossl's grid keeps every window inside its footprint (an oracle on the geometry)
    assert all(_inside(grid))
    # TorchGeo's grid sampler covers each footprint with windows from its own rule (0.8.1:
    # the last row/column reaches past the footprint; 0.10: stays inside): it is read as is
    assert len(tg_grid) >= 1
    # the random sampler draws as many windows as the grid has, seeded: the same seed gives the
    # same windows, another seed others
    assert len(rnd) == len(grid)
    again = SSLDataModule("ssl4eo", ssl4eo, ("s1", "s2"), "geo", batch_size=4, patch_size=16,
                          sampler="torchgeo-random", seed=3)
    again.setup("fit")
    assert [b.bounds for b in _boxes(again.train_dataset.base)] == \
        [b.bounds for b in _boxes(rnd)]  # type: ignore[union-attr]
    other = SSLDataModule("ssl4eo", ssl4eo, ("s1", "s2"), "geo", batch_size=4, patch_size=16,
                          sampler="torchgeo-random", seed=4)
    other.setup("fit")
    assert [b.bounds for b in _boxes(other.train_dataset.base)] != \
        [b.bounds for b in _boxes(rnd)]  # type: ignore[union-attr]
    # the same window read through either sampler holds the same pixels
    q = grid.queries[0]
    a = grid.dataset[q]["image_s2"]
    assert torch.equal(a, tg_grid.dataset[q]["image_s2"])
    # a window too large for TorchGeo's random sampler is one clear line
    big = SSLDataModule("ssl4eo", ssl4eo, ("s1", "s2"), "geo", batch_size=4, patch_size=40,
                        sampler="torchgeo-random")
    try:
        big.setup("fit")
    except ConfigError as err:  # TorchGeo 0.10: the eroded footprints hold no window
        assert "--sampler grid" in str(err)


def test_sampler_refused_where_it_means_nothing(ssl4eo: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--sampler 'nope'"):
        SSLDataModule("ssl4eo", ssl4eo, ("s2",), "aug", batch_size=2, patch_size=32,
                      sampler="nope").setup()
    from tests.data.aid.data import generate

    root = generate(tmp_path / "eurosat", "eurosat", n_per_class=1)
    with pytest.raises(ConfigError, match="reads whole samples"):
        SSLDataModule("eurosat", root, ("s2",), "aug", batch_size=2,
                      sampler="torchgeo-random").setup()


@pytest.mark.real
def test_real_ssl4eo_torchgeo_random(real: Path) -> None:
    from tests.conftest import real_path

    root = real_path("ssl4eo_s12")
    dm = SSLDataModule("ssl4eo", root, ("s1", "s2"), "geo", batch_size=2, patch_size=128,
                       sampler="torchgeo-random", seed=0)
    dm.setup("fit")
    assert dm.num_samples == 18  # as many windows as geossl's grid lays (3 x 3 x 2 dates)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_s1"].shape == (2, 2, 128, 128)
    assert batch["image_s2"].shape == (2, 13, 128, 128)
    assert float(batch["image_s2"].std()) > 0.01


def test_bench_samplers_table(ssl4eo: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from geossl.cli import main

    out = tmp_path / "samplers.json"
    rc = main(["bench", "samplers", "--root", str(ssl4eo), "--patch-size", "16",
               "--repeats", "1", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    records = {r["sampler"]: r for r in json.loads(out.read_text())}
    assert set(records) == {"grid", "torchgeo-grid", "torchgeo-random"}
    assert records["grid"]["outside"] == 0 and records["grid"]["nodata_fraction"] == 0.0
    assert records["grid"]["coverage"] == pytest.approx(1.0)
    assert records["grid"]["time_ratio"] == 1.0
    text = capsys.readouterr().out
    assert "vs grid" in text and "torchgeo-random" in text
    # a --json that is a folder is refused before the benchmark runs
    rc = main(["bench", "samplers", "--root", str(ssl4eo), "--json", str(tmp_path)])
    assert rc == 2


# -- --data rasters: raw scenes read in windows ------------------------------------------------
def _pretrain(root: Path, out: Path, *extra: str) -> int:
    from geossl.cli import main

    return main(["pretrain", "--data", "rasters", "--root", str(root), "--out", str(out),
                 "--sensors", "s2", "--pairing", "aug", "--method", "simclr",
                 "--backbone", "test_resnet", "--batch-size", "4", "--workers", "0",
                 "--accelerator", "cpu", "--devices", "1", "--img-size", "16",
                 "--max-steps", "2", *extra])


def test_rasters_dataset_reads_band_folders(tmp_path: Path) -> None:
    import rasterio

    from geossl.datasets.rasters import SceneRasters
    from tests.data.chips.data import generate_major_tom

    cell = generate_major_tom(tmp_path / "mt", size10=48)
    ds = SceneRasters(tmp_path / "mt", "s2", bands=["B04", "B03", "B02", "B11"])
    assert ds.res == (10.0, 10.0) or ds.res == 10.0  # the finest band's grid
    samples = GeoSamples(ds, 16, sampler="grid")
    assert len(samples) == 9  # 48 px -> 3 x 3 windows
    q = samples.queries[0]
    image = ds[q]["image"]
    assert image.shape == (4, 16, 16)
    # oracle: the 10 m bands read straight from their files at the window's pixel offset
    with rasterio.open(cell / "B04.tif") as src:
        row, col = src.index(q[0].start + 1e-6, q[1].stop - 1e-6)
        want = src.read(1)[row:row + 16, col:col + 16].astype("float32")
    assert torch.equal(image[0], torch.from_numpy(want))
    with rasterio.open(cell / "B02.tif") as src:
        want2 = src.read(1)[row:row + 16, col:col + 16].astype("float32")
    assert torch.equal(image[2], torch.from_numpy(want2))
    with pytest.raises(ConfigError, match="--bands B99"):
        SceneRasters(tmp_path / "mt", "s2", bands=["B99"])


def test_pretrain_rasters_with_torchgeo_sampler(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from tests.data.chips.data import generate_major_tom

    generate_major_tom(tmp_path / "mt", size10=48)
    rc = _pretrain(tmp_path / "mt", tmp_path / "run", "--patch-size", "16",
                   "--sampler", "torchgeo-random")
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    # scenes in two CRSs are refused with one line (TorchGeo would warp them onto one grid)
    generate_major_tom(tmp_path / "two", size10=48)
    generate_major_tom(tmp_path / "two", size10=48, cell=("1U", "1U_1R"), crs="EPSG:32648",
                       product="S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_20230924T183543")
    capsys.readouterr()
    rc = _pretrain(tmp_path / "two", tmp_path / "run2", "--patch-size", "16")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "2 CRSs" in err and len(err.splitlines()) == 1


@pytest.mark.real
def test_real_major_tom_rasters_torchgeo_sampler(real: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import real_path

    cell = real_path("major_tom_s2l2a", "0U")
    rc = _pretrain(cell, tmp_path / "run", "--patch-size", "64", "--sampler", "torchgeo-random",
                   "--bands", "B02,B03,B04,B08")
    assert rc == 0, capsys.readouterr().err
    from geossl.pretrained.checkpoint import read_checkpoint

    meta = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["geossl"]
    assert meta["bands"] == {"s2": ["B02", "B03", "B04", "B08"]}
