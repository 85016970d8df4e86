from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from geossl.cli import main
from geossl.core.errors import ConfigError, DataError
from geossl.data.stats import BandAccumulator, compute_band_stats, compute_stats
from geossl.datasets.registry import DATASETS, get_dataset
from tests.data.aid.data import generate as generate_aid
from tests.data.polsar.data import generate as generate_polsar


class ArrayDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.bands = [f"B{i}" for i in range(data.shape[1])]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(self.data[i]), "label": torch.tensor(0)}


def _reference(data: np.ndarray, nodata: float | None = None) -> dict[str, list[float]]:
    flat = np.moveaxis(data, 1, 0).reshape(data.shape[1], -1).astype(np.float64)
    out: dict[str, list[float]] = {k: [] for k in ("mean", "std", "min", "max", "p1", "p99")}
    for v in flat:
        v = v[np.isfinite(v)]
        if nodata is not None:
            v = v[v != nodata]
        out["mean"].append(v.mean())
        out["std"].append(v.std())
        out["min"].append(v.min())
        out["max"].append(v.max())
        out["p1"].append(np.percentile(v.astype(np.float32), 1))
        out["p99"].append(np.percentile(v.astype(np.float32), 99))
    return out


def test_matches_numpy_with_nan_and_nodata() -> None:
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(20, 3, 8, 8)) * [[[5]], [[1]], [[100]]] + [[[0]], [[3]], [[-50]]])
    data = data.astype(np.float32)
    data[0, 0, :2] = np.nan
    data[3, 1, 4] = -9999
    data[5, 2, 0, 0] = np.inf
    ds = ArrayDataset(data)
    stats = compute_band_stats(ds, nodata=-9999)
    ref = _reference(data, nodata=-9999)
    assert stats["bands"] == ["B0", "B1", "B2"] and stats["samples"] == 20
    for k, v in ref.items():
        np.testing.assert_allclose(stats[k], v, rtol=1e-5, atol=1e-5, err_msg=k)
    assert stats["invalid"] == [16, 8, 1]
    assert stats["count"] == [20 * 64 - 16, 20 * 64 - 8, 20 * 64 - 1]
    assert stats["percentiles_exact"]


def test_loader_and_small_reservoir_and_bands() -> None:
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 1, size=(40, 2, 16, 16)).astype(np.float32)
    loader = DataLoader(TensorDataset(torch.from_numpy(data)), batch_size=8)
    stats = compute_band_stats(loader, reservoir=2000, bands=[1])
    ref = _reference(data[:, 1:])
    np.testing.assert_allclose(stats["mean"], ref["mean"], rtol=1e-6)
    np.testing.assert_allclose(stats["std"], ref["std"], rtol=1e-6)
    # 10,240 distinct values, more than the reservoir: counted, so exact all the same
    assert stats["percentiles_exact"]
    # 2,000 uniform samples: 1st / 99th percentiles within 0.01 of the truth
    assert abs(stats["p1"][0] - 0.01) < 0.01 and abs(stats["p99"][0] - 0.99) < 0.01
    limited = compute_band_stats(loader, max_samples=16)
    assert limited["samples"] == 16
    np.testing.assert_allclose(limited["mean"], _reference(data[:16])["mean"], rtol=1e-6)


def test_streaming_merge_equals_one_batch() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(1e4, 1.0, size=(1, 10_000))  # large offset: naive sums lose precision
    acc = BandAccumulator(1, reservoir=100)
    for part in np.array_split(x, 37, axis=1):
        acc.update(part)
    res = acc.result()
    assert res["mean"][0] == pytest.approx(x.mean(), rel=1e-12)
    assert res["std"][0] == pytest.approx(x.std(), rel=1e-9)
    assert len(acc.values[0]) == 100


def test_max_samples_subset_and_errors() -> None:
    data = np.arange(10 * 2 * 4, dtype=np.float32).reshape(10, 2, 2, 2)
    ds = ArrayDataset(data)
    a = compute_band_stats(ds, max_samples=4, seed=1)
    b = compute_band_stats(ds, max_samples=4, seed=1)
    assert a == b and a["samples"] == 4
    with pytest.raises(ConfigError, match="unknown band"):
        compute_band_stats(ds, bands=["B7"])
    with pytest.raises(ConfigError, match="no 'image_s1'"):
        compute_band_stats(ds, key="image_s1")
    with pytest.raises(DataError, match="no samples"):
        compute_band_stats(ArrayDataset(data[:0]))
    allnan = ArrayDataset(np.full((2, 1, 2, 2), np.nan, dtype=np.float32))
    assert compute_band_stats(allnan)["mean"] == [None]


def test_polsar_geodataset_stats(tmp_path: Path) -> None:
    paths = generate_polsar(tmp_path)
    ds = get_dataset("polsar", str(tmp_path), patch_size=16)
    stats = compute_stats(ds, progress=False)["image"]
    full = ds.scene()[:, :48, :64]
    np.testing.assert_allclose(stats["mean"], full.reshape(9, -1).mean(1), rtol=1e-4, atol=1e-6)
    assert stats["bands"][0] == "T11_db"
    assert paths["t3"].exists()


def test_registry(tmp_path: Path) -> None:
    root = generate_aid(tmp_path, "aid", n_per_class=5, size=32)
    ds = get_dataset("aid", str(root), size=32)
    assert len(ds) == 12  # 80 % of 3 x 5
    by_ids = get_dataset("aid", str(root), ids=["Beach/beach_5.jpg"], sensors=("rgb",))
    assert by_ids.ids == ["Beach/beach_5.jpg"]  # ids select from the whole archive
    with pytest.raises(ConfigError, match="unknown dataset"):
        get_dataset("nope", str(root))
    with pytest.raises(ConfigError, match="takes no argument 'colour'"):
        get_dataset("aid", str(root), colour=1)
    with pytest.raises(DataError, match="not found"):
        get_dataset("aid", str(tmp_path / "missing"))
    assert {"sen12ms", "bigearthnet", "chips", "aid", "ucmerced", "polsar"} <= set(DATASETS)


def test_registry_missing_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(DATASETS, "ghost", ("geossl.data.ghost_dataset", "Ghost"))
    with pytest.raises(ConfigError, match="'ghost' is not available"):
        get_dataset("ghost", str(tmp_path))


def test_cli_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = generate_aid(tmp_path, "ucmerced", n_per_class=2)
    out = tmp_path / "out" / "stats.json"
    rc = main(["stats", "--data", "ucmerced", "--root", str(root), "--out", str(out),
               "--max-samples", "3"])
    assert rc == 0
    doc = json.loads(out.read_text())
    s = doc["stats"]["image"]
    assert doc["data"] == "ucmerced" and s["samples"] == 3 and len(s["mean"]) == 3
    assert 0 <= s["min"][0] <= s["mean"][0] <= s["max"][0] <= 255
    assert not list(out.parent.glob(".*part"))  # atomic write left no temporary file
    printed = capsys.readouterr().out
    assert "mean" in printed and "b1" in printed
    # the file feeds the normaliser
    from geossl.pretrained.normalize import get_normalizer

    norm = get_normalizer("rgb", stats=out)
    assert norm(torch.zeros(3, 2, 2)).shape == (3, 2, 2)


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--data", "aid", "--root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("geossl stats: error:") and "not found" in err and "\n" not in err
    assert main(["stats", "--data", "nope", "--root", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["stats", "--data", "polsar", "--root", str(tmp_path / "empty")]) == 2
    assert "no PolSARpro" in capsys.readouterr().err
    root = generate_aid(tmp_path, "ucmerced", n_per_class=1)
    assert main(["stats", "--data", "ucmerced", "--root", str(root), "--bands", "x"]) == 2
    assert "unknown band" in capsys.readouterr().err


def test_cli_chips_folder_fallback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import rasterio

    root = generate_aid(tmp_path, "eurosat", n_per_class=1)
    out = tmp_path / "s.json"
    assert main(["stats", "--data", "chips", "--root", str(root), "--out", str(out)]) == 0
    s = json.loads(out.read_text())["stats"]["image"]
    assert len(s["mean"]) == 13 and s["samples"] == 3
    with rasterio.open(sorted(root.rglob("*.tif"))[0]) as src:
        first = src.read(1).astype(np.float64)
    assert s["min"][0] <= first.min() and s["max"][0] >= first.max()
    (root / "Pasture" / "broken.tif").write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["stats", "--data", "chips", "--root", str(root)]) == 2
    assert "broken.tif" in capsys.readouterr().err


def test_conf_files_build(tmp_path: Path) -> None:
    import importlib

    import yaml

    from tests.conftest import REPO

    root = generate_aid(tmp_path, "aid", n_per_class=2, size=16)
    paths = generate_polsar(tmp_path / "polsar")
    for name, data_root in (("aid", root), ("polsar", paths["t3"].parent)):
        cfg = yaml.safe_load((REPO / "conf" / "data" / f"{name}.yaml").read_text())
        mod, cls = cfg["class_path"].rsplit(".", 1)
        args = {**cfg["init_args"], "root": data_root}
        if name == "polsar":
            args["patch_size"] = 16
        ds = getattr(importlib.import_module(mod), cls)(**args)
        assert len(ds) > 0
    stats_cfg = yaml.safe_load((REPO / "conf" / "stats.yaml").read_text())
    assert stats_cfg["data"] == "chips"
    conf = REPO / "conf" / "stats.yaml"
    assert main(["stats", "--config", str(conf), "--data", "polsar",
                 "--root", str(paths["t3"].parent), "--max-samples", "2"]) == 2  # 64 px > 48


# ---- band selection and split restriction (issue 11) ------------------------------------------


def _mixed_band_chips(folder: Path) -> Path:
    """A chip index of two scenes, one missing band B08 (as tiled from a scene lacking it)."""
    from geossl.tiling import chip_index
    from tests.data.chips.data import generate_chips

    generate_chips(folder, n=3, bands=4, scene="full")  # B02,B03,B04,B08
    generate_chips(folder, n=2, bands=3, scene="short")  # B02,B03,B04
    chip_index.write_index(chip_index.build_index(folder, progress=False), folder)
    return folder


def test_cli_stats_selects_bands_of_a_mixed_index(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = _mixed_band_chips(tmp_path / "chips")
    assert main(["stats", "--data", "chips", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("select common bands with --bands B02,B03,B04") and "bands=" not in err
    assert len(err.splitlines()) == 1
    out = tmp_path / "s.json"
    assert main(["stats", "--data", "chips", "--root", str(root), "--bands", "B04,B02",
                 "--out", str(out)]) == 0
    stats = json.loads(out.read_text())["stats"]["image"]
    assert stats["bands"] == ["B04", "B02"] and stats["samples"] == 5
    # generate_chips: band b of chip k holds 100 k + b + a ramp; B04 is b = 2, B02 is b = 0
    assert stats["mean"][0] - stats["mean"][1] == pytest.approx(2.0)


def test_cli_stats_restricted_to_the_training_side(tmp_path: Path) -> None:
    from geossl.datasets.chips import ChipDataset
    from geossl.tiling import chip_index
    from tests.data.chips.data import generate_chips

    folder = tmp_path / "chips"
    generate_chips(folder, n=6, size=16, bands=2)
    chip_index.write_index(chip_index.build_index(folder, progress=False), folder)
    ids = ChipDataset(folder).ids
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"strategy": "random", "params": {},
                                 "splits": {"train": ids[:4], "test": ids[4:]}}))
    out = tmp_path / "train.json"
    assert main(["stats", "--data", "chips", "--root", str(folder), "--split", str(split),
                 "--split-name", "train", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["split"] == {"file": str(split), "name": "train"}
    stats = doc["stats"]["image"]
    assert stats["samples"] == 4
    train = np.stack([ChipDataset(folder)[i]["image"].numpy() for i in range(4)])
    np.testing.assert_allclose(stats["mean"], train.mean(axis=(0, 2, 3)), rtol=1e-6)
    whole = tmp_path / "all.json"
    assert main(["stats", "--data", "chips", "--root", str(folder), "--out", str(whole)]) == 0
    # the test chips (higher values) are left out of the normalisation statistics
    assert json.loads(whole.read_text())["stats"]["image"]["mean"][0] > stats["mean"][0]
