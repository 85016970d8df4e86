"""SSLDataModule: keys per pairing, crops, normalisation, DeepCluster hooks, splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from geossl.data import datamodule as dmod
from geossl.data.datamodule import SSLDataModule, SSLSamples, required_keys
from geossl.errors import ConfigError, DataError


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
    assert set(batch) == {"image_s1", "image_s2", "index"}
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
    assert set(batch) == {"image_rgb", "index"}
    assert batch["image_rgb"].shape == (4, 3, 16, 16)
    # the image values match the index they come with
    assert torch.equal(batch["image_rgb"][:, 0, 0, 0].long(), batch["index"])


def test_missing_sensor_is_a_data_error() -> None:
    dm = _dm(SingleDataset(6), sensors=("s1", "s2"), pairing="geo")
    with pytest.raises(DataError, match="image_s1"):
        next(iter(dm.train_dataloader()))


def test_required_keys_per_pairing() -> None:
    assert set(required_keys("geo", ["s1", "s2"])) >= {"image_s1", "image_s2"}
    assert "image_s2" in required_keys("aug", ["s2"])
    assert "image_s2_t2" in required_keys("temporal", ["s2"])
    with pytest.raises(ConfigError):
        required_keys("nonsense", ["s2"])


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
    pytest.importorskip("geossl.data.splits")
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
    gen = pytest.importorskip("tests.data.sen12ms.data")
    pytest.importorskip("geossl.data.sen12ms")
    gen.generate(tmp_path)
    dm = SSLDataModule("sen12ms", tmp_path, ("s1", "s2"), "geo", batch_size=2, patch_size=32)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_s1"].shape[:2] == (2, 2)
    assert batch["image_s2"].shape[:2] == (2, 13)
    assert batch["image_s2"].shape[-2:] == (32, 32)
    assert torch.isfinite(batch["image_s1"]).all() and torch.isfinite(batch["image_s2"]).all()
    if pytest.importorskip("geossl.data.normalize"):
        # normalised per sensor: S1 dB clipped to [0, 1], S2 reflectance DN / 10,000
        for key in ("image_s1", "image_s2"):
            assert 0.0 <= float(batch[key].min()) and float(batch[key].max()) <= 1.0
        assert float(batch["image_s2"].std()) > 0.05


def test_samples_wrapper_len_with_indices() -> None:
    s = SSLSamples(PairDataset(10), ["image_s2"], indices=[2, 4])
    assert len(s) == 2
    assert s[1]["image_s2"][0, 0, 0] == 4.0 and s[1]["index"] == 1


def test_ucmerced_fake_data_rgb(tmp_path: Path) -> None:
    gen = pytest.importorskip("tests.data.aid.data")
    root = gen.generate(tmp_path, "ucmerced", n_per_class=2, size=32)
    dm = SSLDataModule("ucmerced", root, ("rgb",), "aug", batch_size=4, patch_size=24,
                       normalize=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image_rgb", "index"}
    assert batch["image_rgb"].shape == (4, 3, 24, 24)
    assert 0 <= float(batch["image_rgb"].min()) and float(batch["image_rgb"].max()) <= 255
    # the default training side of the dataset's own stratified split, not the whole archive
    assert dm.num_samples < 21 * 2
