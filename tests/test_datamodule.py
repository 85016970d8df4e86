"""SSLDataModule: keys per pairing, crops, normalisation, DeepCluster hooks, splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from geossl.core.errors import ConfigError, DataError
from geossl.core.pairing import pairing_keys
from geossl.data import datamodule as dmod
from geossl.data.datamodule import SSLDataModule, SSLSamples
from geossl.datasets.geogrid import GeoSamples


class PairDataset(Dataset[dict[str, Any]]):
    """In-memory S1 + S2 samples in the architecture contract (plus keys SSL must drop)."""

    def __init__(self, n: int = 10, size: int = 16) -> None:
        self.n = n
        self.size = size
        self.ids = [f"p{i}" for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.size
        return {
            "image_s1": torch.full((2, s, s), float(i)) + torch.arange(s).float(),
            "image_s2": torch.full((13, s, s), float(i)) + torch.arange(s).float(),
            "mask_lc": torch.zeros(s, s, dtype=torch.long),
            "label": torch.tensor(i % 3),
            "id": self.ids[i],
        }


class SingleDataset(PairDataset):
    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": torch.full((3, self.size, self.size), float(i)), "label": i % 2}


def _dm(dataset: Dataset[dict[str, Any]], **kw: Any) -> SSLDataModule:
    args: dict[str, Any] = {"data": "custom", "root": ".", "sensors": ("s1", "s2"),
                            "pairing": "geo", "batch_size": 4, "workers": 0,
                            "dataset": dataset, "normalize": False}
    args.update(kw)
    dm = SSLDataModule(**args)
    dm.setup("fit")
    return dm


def test_geo_batches_carry_only_what_ssl_needs() -> None:
    dm = _dm(PairDataset(10), patch_size=8)
    batch = next(iter(dm.train_dataloader()))
    # filled_values: how many NaN/inf values the batch had (counted by the run, then dropped)
    assert set(batch) == {"image_s1", "image_s2", "index", "filled_values"}
    assert int(batch["filled_values"]) == 0
    assert batch["image_s1"].shape == (4, 2, 8, 8)
    assert batch["image_s2"].shape == (4, 13, 8, 8)
    assert batch["image_s1"].dtype == torch.float32
    assert batch["index"].dtype == torch.int64
    # the same crop window for both sensors: co-registration survives the crop
    assert torch.equal(batch["image_s1"][:, 0], batch["image_s2"][:, 0])
    # samples are the right ones: value = index + column
    col0 = batch["image_s2"][:, 0, 0, 0] - batch["image_s2"][:, 0, 0, 0].floor()
    assert torch.all(col0 == 0)
    assert dm.steps_per_epoch() == 2  # 10 samples, batch 4, drop_last


def test_single_sensor_image_is_renamed() -> None:
    dm = _dm(SingleDataset(6), sensors=("rgb",), pairing="aug")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image_rgb", "index", "filled_values"}
    assert batch["image_rgb"].shape == (4, 3, 16, 16)
    # the image values match the index they come with
    assert torch.equal(batch["image_rgb"][:, 0, 0, 0].long(), batch["index"])


def test_missing_sensor_is_a_data_error() -> None:
    dm = _dm(SingleDataset(6), sensors=("s1", "s2"), pairing="geo")
    with pytest.raises(DataError, match="image_s1"):
        next(iter(dm.train_dataloader()))


def test_pairing_keys_per_pairing() -> None:
    assert set(pairing_keys("geo", ["s1", "s2"])) >= {"image_s1", "image_s2"}
    assert "image_s2" in pairing_keys("aug", ["s2"])
    assert "image_s2_t2" in pairing_keys("temporal", ["s2"])
    with pytest.raises(ConfigError):
        pairing_keys("nonsense", ["s2"])


def test_normalisation_runs_once_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []

    def fake(sensor: str) -> Any:
        def norm(x: torch.Tensor) -> torch.Tensor:
            calls.append(tuple(x.shape))
            return (x - 1.0) * (10.0 if sensor == "s1" else 100.0)

        return norm

    monkeypatch.setattr(dmod, "sensor_normalizer", fake)
    plain = next(iter(_dm(PairDataset(8), pairing="geo").cluster_dataloader()))
    normed = next(iter(_dm(PairDataset(8), pairing="geo", normalize=True).cluster_dataloader()))
    assert torch.allclose(normed["image_s1"], (plain["image_s1"] - 1) * 10)
    assert torch.allclose(normed["image_s2"], (plain["image_s2"] - 1) * 100)
    assert sorted(calls) == [(4, 2, 16, 16), (4, 13, 16, 16)]  # batched, not per sample


def test_cluster_loader_is_ordered_and_complete() -> None:
    dm = _dm(PairDataset(10), patch_size=8)
    indices = torch.cat([b["index"] for b in dm.cluster_dataloader()])
    assert indices.tolist() == list(range(10))  # no shuffle, no drop_last
    # centre crop, deterministic
    a = next(iter(dm.cluster_dataloader()))["image_s2"]
    b = next(iter(dm.cluster_dataloader()))["image_s2"]
    assert torch.equal(a, b)


def test_sample_weights_drive_the_sampler() -> None:
    dm = _dm(PairDataset(12), batch_size=4)
    weights = torch.zeros(12)
    weights[[1, 5]] = 1.0
    dm.set_sample_weights(weights)
    seen = Counter(int(i) for _ in range(3) for b in dm.train_dataloader() for i in b["index"])
    assert set(seen) <= {1, 5}
    assert sum(seen.values()) == 36  # an epoch still has len(dataset) samples
    with pytest.raises(ValueError):
        dm.set_sample_weights(torch.ones(3))
    # the weights survive a checkpoint round trip
    state = dm.state_dict()
    dm2 = _dm(PairDataset(12), batch_size=4)
    dm2.load_state_dict(state)
    assert dm2.sample_weights is not None and torch.equal(dm2.sample_weights, weights.double())
    dm.set_sample_weights(None)
    seen = Counter(int(i) for b in dm.train_dataloader() for i in b["index"])
    assert len(seen) == 12  # uniform shuffling again (12 distinct samples in 3 batches of 4)


def test_bad_sizes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="batch size"):
        _dm(PairDataset(3), batch_size=4)
    dm = _dm(PairDataset(4), patch_size=32)
    with pytest.raises(ConfigError, match="patch size"):
        next(iter(dm.train_dataloader()))


def test_worker_processes_deliver_the_same_batches() -> None:
    dm = _dm(PairDataset(8), workers=1)
    loader = dm.cluster_dataloader()
    assert loader.persistent_workers
    batches = list(loader)
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(8))


def test_split_restricts_the_samples(tmp_path: Path) -> None:
    split = tmp_path / "split.json"
    split.write_text(json.dumps({
        "strategy": "random", "params": {},
        "splits": {"train": ["p1", "p3", "p5", "p7"], "test": ["p0", "p2"]},
    }))
    dm = _dm(PairDataset(10), splits=str(split), split="train")
    assert dm.num_samples == 4
    seen = {int(v) for b in dm.cluster_dataloader() for v in b["image_s2"][:, 0, 0, 0]}
    assert seen == {1, 3, 5, 7}
    with pytest.raises((ConfigError, DataError)):
        _dm(PairDataset(10), splits=str(split), split="val")


def test_sen12ms_fake_data(tmp_path: Path) -> None:
    from tests.data.sen12ms import data as gen

    gen.generate(tmp_path)
    dm = SSLDataModule("sen12ms", tmp_path, ("s1", "s2"), "geo", batch_size=2, patch_size=32)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_s1"].shape[:2] == (2, 2)
    assert batch["image_s2"].shape[:2] == (2, 13)
    assert batch["image_s2"].shape[-2:] == (32, 32)
    assert torch.isfinite(batch["image_s1"]).all() and torch.isfinite(batch["image_s2"]).all()
    # normalised per sensor: S1 dB clipped to [0, 1], S2 reflectance DN / 10,000
    for key in ("image_s1", "image_s2"):
        assert 0.0 <= float(batch[key].min()) and float(batch[key].max()) <= 1.0
    assert float(batch["image_s2"].std()) > 0.05


def test_samples_wrapper_len_with_indices() -> None:
    s = SSLSamples(PairDataset(10), "aug", ["s2"], indices=[2, 4])
    assert len(s) == 2
    assert s[1]["image_s2"][0, 0, 0] == 4.0 and s[1]["index"] == 1


def test_ucmerced_fake_data_rgb(tmp_path: Path) -> None:
    from tests.data.aid import data as gen

    root = gen.generate(tmp_path, "ucmerced", n_per_class=2, size=32)
    dm = SSLDataModule("ucmerced", root, ("rgb",), "aug", batch_size=4, patch_size=24,
                       normalize=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image_rgb", "index", "filled_values"}
    assert batch["image_rgb"].shape == (4, 3, 24, 24)
    assert 0 <= float(batch["image_rgb"].min()) and float(batch["image_rgb"].max()) <= 255
    # the default training side of the dataset's own stratified split, not the whole archive
    assert dm.num_samples < 21 * 2


# -- SSL4EO-S12 through a grid of geo queries --------------------------------------------------
@pytest.fixture(scope="module")
def ssl4eo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.data.ssl4eo import data as gen

    return gen.generate(tmp_path_factory.mktemp("ssl4eo"), size=48)  # type: ignore[no-any-return]


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_ssl4eo_geo_pairs_are_coregistered_windows(ssl4eo: Path) -> None:
    dm = SSLDataModule("ssl4eo", ssl4eo, ("s1", "s2"), "geo", batch_size=4, patch_size=32)
    dm.setup("fit")
    # 2 locations x 2 S2 dates (each with its closest S1 date); 48 px -> 2 x 2 windows of 32
    assert dm.num_samples == 16
    base = dm.train_dataset.base  # type: ignore[union-attr]
    assert isinstance(base, GeoSamples)
    x, y, _ = base.queries[0]
    rx, ry = base.dataset.res
    assert round((x.stop - x.start) / rx) == 32 and round((y.stop - y.start) / ry) == 32
    assert dm.bands == {"s1": ["VV", "VH"], "s2": list(base.dataset.datasets["s2"].bands)}
    assert len(dm.bands["s2"]) == 13  # s2 -> the L1C product (s2c) when present
    assert dm.normalization == {"s1": "s1", "s2": "s2"}
    # every window lies inside its footprint (the S1 x S2 overlap): no zero-filled no-data edge
    import shapely

    for qx, qy, _ in base.queries:
        box = shapely.box(qx.start, qy.start, qx.stop, qy.stop)
        assert any(g.buffer(1e-9).contains(box) for g in base.dataset.index.geometry)
    batches = list(dm.cluster_dataloader())
    assert sum(len(b["index"]) for b in batches) == 16
    for b in batches:  # fake S2 DN >= 500, S1 VV/VH <= -8 dB: no-data would show as 0 / 1
        assert float(b["image_s2"].min()) > 0.04 and float(b["image_s1"].max()) < 0.9
    batch = batches[0]
    assert batch["image_s1"].shape == (4, 2, 32, 32)
    assert batch["image_s2"].shape == (4, 13, 32, 32)
    assert 0 <= float(batch["image_s1"].min()) and float(batch["image_s2"].max()) <= 1
    # both sensors sample one ground pattern: co-registered views correlate strongly, and a
    # view shifted by a few pixels much less
    for i in range(4):
        vv, b2 = batch["image_s1"][i, 0], batch["image_s2"][i, 1]
        assert _corr(vv, b2) > 0.9
        assert _corr(vv[4:, :], b2[:-4, :]) < _corr(vv, b2) - 0.05


def test_ssl4eo_temporal_and_errors(ssl4eo: Path) -> None:
    dm = SSLDataModule("ssl4eo", ssl4eo, ("s2",), "temporal", batch_size=2, patch_size=32)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_s2"].shape == batch["image_s2_t2"].shape == (2, 13, 32, 32)
    assert dm.num_samples == 8  # 2 locations x one (first, next) date pair x 4 windows
    with pytest.raises(ConfigError, match="patch size 64 is larger"):
        SSLDataModule("ssl4eo", ssl4eo, ("s2",), "aug", batch_size=2).setup()
    with pytest.raises(ConfigError, match="unknown SSL4EO-S12 sensor 'rgb'"):
        SSLDataModule("ssl4eo", ssl4eo, ("rgb",), "aug", batch_size=2, patch_size=16).setup()


@pytest.mark.real
def test_real_ssl4eo_geo_batches() -> None:
    from tests.conftest import real_path

    root = real_path("ssl4eo_s12")
    dm = SSLDataModule("ssl4eo", root, ("s1", "s2"), "geo", batch_size=2, patch_size=128)
    dm.setup("fit")
    # one location, 2 L1C dates (each with its closest S1 date); ~260 px overlap -> 3 x 3
    # windows of 128 (the last row and column moved back onto the edge)
    assert dm.num_samples == 18
    batch = next(iter(dm.cluster_dataloader()))
    assert batch["image_s1"].shape == (2, 2, 128, 128)
    assert batch["image_s2"].shape == (2, 13, 128, 128)
    for key, nodata in (("image_s1", 1.0), ("image_s2", 0.0)):  # 0 dB -> 1; DN 0 -> 0
        x = batch[key]
        assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.std()) > 0.01
        # inside the footprints: no row or column of the windows is only no-data fill
        valid = x != nodata
        assert bool(valid.any(dim=(1, 2)).all()) and bool(valid.any(dim=(1, 3)).all())

# -- chip indexes holding several sensors ------------------------------------------------------
def _mixed_chips(folder: Path) -> Path:
    """A chip index of S2 (3 bands) and S1 (2 bands) chips on the same footprints, two dates."""
    import geopandas as gpd
    import pandas as pd

    from geossl.bench.train import make_chips

    frames = []
    for sensor, bands in (("s2", 3), ("s1", 2)):
        make_chips(folder / sensor, n=4, bands=bands, size=16, seed=bands)
        frame = gpd.read_parquet(folder / sensor / "index.parquet")
        frame["path"] = sensor + "/" + frame["path"]
        frame["chip_id"] = sensor + "_" + frame["chip_id"]
        frame["sensor"] = sensor
        late = frame.copy()
        late["chip_id"] = late["chip_id"] + "_t2"
        late["datetime"] = pd.Timestamp("2021-08-01", tz="UTC")
        frame["datetime"] = pd.Timestamp("2021-05-01", tz="UTC")
        frames += [frame, late]
    gpd.GeoDataFrame(pd.concat(frames, ignore_index=True)).to_parquet(folder / "index.parquet")
    return folder


def test_chip_index_is_filtered_to_the_sensor(tmp_path: Path) -> None:
    root = _mixed_chips(tmp_path)
    for sensor, bands in (("s2", 3), ("s1", 2)):
        dm = SSLDataModule("chips", root, (sensor,), "temporal", batch_size=2, normalize=False)
        batches = list(dm.cluster_dataloader())
        assert dm.num_samples == 4  # the 4 footprints of that sensor, each at two dates
        for b in batches:
            assert b[f"image_{sensor}"].shape == b[f"image_{sensor}_t2"].shape == (2, bands, 16,
                                                                                  16)
        aug = SSLDataModule("chips", root, (sensor,), "aug", batch_size=2, normalize=False)
        assert aug.num_samples == 8  # both dates
        assert next(iter(aug.train_dataloader()))[f"image_{sensor}"].shape[1] == bands
    with pytest.raises(DataError, match=r"no chip of sensor 'rgb' in the index \(has s1, s2\)"):
        SSLDataModule("chips", root, ("rgb",), "temporal", batch_size=2).setup()


# -- normalisation choices: named, statistics file, unknown sensor -----------------------------
class OffsetImages(Dataset[dict[str, Any]]):
    """Another dataset's ``image`` plus a constant (a DN offset)."""

    def __init__(self, base: Dataset[dict[str, Any]], offset: float) -> None:
        self.base, self.offset = base, offset

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.base[i]
        return {"image": sample["image"] + self.offset}


def test_named_normalisation_and_unknown_sensor() -> None:
    ds = SingleDataset(8)  # image value = sample index, 3 bands
    shifted = OffsetImages(ds, 1000.0)  # value = index + 1000: baseline >= 04.00 DN
    dm = _dm(shifted, sensors=("s2",), pairing="aug", normalize=True,
             norm_names={"s2": "s2_offset"})
    batch = next(iter(dm.cluster_dataloader()))
    # (DN - 1000) / 10,000: the same reflectance as the unshifted data with the plain s2
    torch.testing.assert_close(batch["image_s2"][:, 0, 0, 0], torch.arange(4.0) / 10000)
    assert dm.normalization == {"s2": "s2_offset"}  # recorded for evaluate / embed / export
    plain = _dm(ds, sensors=("s2",), pairing="aug", normalize=True)
    assert plain.normalization == {"s2": "s2"}
    torch.testing.assert_close(next(iter(plain.cluster_dataloader()))["image_s2"][:, 0, 0, 0],
                               torch.arange(4.0) / 10000)
    with pytest.raises(ConfigError, match=r"no normalisation for sensor 'hsi'.*hsi=none"):
        _dm(ds, sensors=("hsi",), pairing="aug", normalize=True)
    raw = _dm(ds, sensors=("hsi",), pairing="aug", normalize=True, norm_names={"hsi": "none"})
    assert raw.normalization == {"hsi": "none"}
    assert float(next(iter(raw.cluster_dataloader()))["image_hsi"].max()) == 3.0
    with pytest.raises(ConfigError, match="no normalisation for sensor 'nope'"):
        _dm(ds, sensors=("s2",), pairing="aug", normalize=True, norm_names={"s2": "nope"})
    with pytest.raises(ConfigError, match="s1 not in --sensors"):
        _dm(ds, sensors=("s2",), pairing="aug", normalize=True, norm_names={"s1": "s1"})


class RandomBands(Dataset[dict[str, Any]]):
    """Bands with very different means and spreads (like DN of several sensors)."""

    def __init__(self, n: int = 12) -> None:
        gen = torch.Generator().manual_seed(0)
        scale = torch.tensor([1.0, 30.0, 500.0]).view(3, 1, 1)
        shift = torch.tensor([-5.0, 100.0, 3000.0]).view(3, 1, 1)
        self.images = [torch.randn(3, 8, 8, generator=gen) * scale + shift for _ in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image_s1": self.images[i].clone(), "image_s2": self.images[i][:2] * 2}


def test_stats_file_standardises_each_band(tmp_path: Path) -> None:
    from geossl.data.stats import compute_stats

    ds = RandomBands()
    stats = compute_stats(ds, progress=False)
    assert set(stats) == {"image_s1", "image_s2"}
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"data": "custom", "stats": stats}))
    dm = _dm(ds, normalize=True, stats=str(path))
    x = torch.cat([b["image_s1"] for b in dm.cluster_dataloader()])
    y = torch.cat([b["image_s2"] for b in dm.cluster_dataloader()])
    for t in (x, y):
        mean, std = t.mean(dim=(0, 2, 3)), t.std(dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-4, rtol=0)
        torch.testing.assert_close(std, torch.ones_like(std), atol=1e-4, rtol=0)
    assert dm.normalization is not None
    assert dm.normalization["s1"]["mean"] == pytest.approx(stats["image_s1"]["mean"])
    # a named normaliser wins over the file for its sensor
    named = _dm(ds, normalize=True, stats=str(path), norm_names={"s2": "none"})
    assert named.normalization is not None and named.normalization["s2"] == "none"
    # statistics of another band count are refused at setup, naming the file
    path.write_text(json.dumps({"stats": {"image_s1": stats["image_s2"],
                                          "image_s2": stats["image_s2"]}}))
    with pytest.raises(ConfigError, match=r"stats\.json: the statistics have 2 band\(s\) for s1"):
        _dm(ds, normalize=True, stats=str(path))
    # a file without the sensor's entry
    path.write_text(json.dumps({"stats": {"image_s1": stats["image_s1"]}}))
    with pytest.raises(ConfigError, match=r"no statistics for sensor 's2' \(key image_s2; has "):
        _dm(ds, normalize=True, stats=str(path))


def test_bigearthnet_v1_layout_is_detected(tmp_path: Path) -> None:
    from tests.data.bigearthnet import data as gen

    gen.generate_v1(tmp_path, n=3)
    dm = SSLDataModule("bigearthnet", tmp_path, ("s1", "s2"), "geo", batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_s1"].shape[:2] == (2, 2) and batch["image_s2"].shape[:2] == (2, 12)


def test_stats_grid_reads_no_fill(ssl4eo: Path) -> None:
    """Band statistics of a GeoDataset come from windows inside its footprints (no zero fill)."""
    from geossl.data.stats import compute_stats
    from geossl.datasets.ssl4eo import SSL4EOS12

    ds = SSL4EOS12(ssl4eo, sensor="s2c")
    stats = compute_stats(ds, patch_size=32, progress=False)
    (entry,) = stats.values()
    assert entry["count"][0] == pytest.approx(entry["count"][-1])
    # 48 px rasters read as 2 x 2 windows of 32 (the last moved back onto the edge): no fill
    assert min(entry["min"]) > 0
