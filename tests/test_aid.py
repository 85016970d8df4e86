from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.aid import AID
from geossl.datasets.eurosat import EuroSAT
from geossl.datasets.scenefolder import SceneFolder, split_indices
from geossl.datasets.ucmerced import UCMerced
from tests.conftest import real_path
from tests.data.aid.data import generate


@pytest.fixture(scope="module")
def aid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("aid"), "aid", n_per_class=10, size=64)


def test_aid_samples(aid_root: Path) -> None:
    ds = AID(aid_root, split="all", size=64)
    assert ds.classes == ["Airport", "BareLand", "Beach"]
    assert len(ds) == 30
    s = ds[0]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 64, 64)
    assert s["label"].dtype == torch.int64 and int(s["label"]) == 0
    assert s["id"] == "Airport/airport_1.jpg"
    assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 255
    # class colours survive: red channel mean grows with the class index
    means = [float(ds[i]["image"][0].mean()) for i in (0, 10, 20)]
    assert means[0] < means[1] < means[2]


def test_aid_nominal_size_resizes(aid_root: Path) -> None:
    ds = AID(aid_root, split="all")
    assert ds[0]["image"].shape == (3, 600, 600)


def test_split_stratified_deterministic_disjoint(aid_root: Path) -> None:
    parts = {s: AID(aid_root, split=s, fractions=(0.6, 0.2, 0.2), seed=3, size=64)
             for s in ("train", "val", "test")}
    ids = {s: set(d.ids) for s, d in parts.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert sum(len(v) for v in ids.values()) == 30
    for s, n in (("train", 6), ("val", 2), ("test", 2)):
        assert parts[s].class_counts() == {"Airport": n, "BareLand": n, "Beach": n}
    again = AID(aid_root, split="test", fractions=(0.6, 0.2, 0.2), seed=3, size=64)
    assert again.ids == parts["test"].ids
    other = AID(aid_root, split="test", fractions=(0.6, 0.2, 0.2), seed=4, size=64)
    assert other.ids != parts["test"].ids


def test_split_indices_pinned() -> None:
    # pins the algorithm: the same seed must give the same split on any machine / version
    labels = [0] * 5 + [1] * 5
    out = split_indices(labels, ["a", "b"], (0.6, 0.2, 0.2), seed=0)
    again = split_indices(labels, ["a", "b"], (0.6, 0.2, 0.2), seed=0)
    assert out == again
    assert len(out["train"]) == 6 and len(out["val"]) == 2 and len(out["test"]) == 2
    with pytest.raises(ConfigError):
        split_indices(labels, ["a", "b"], (0.5, 0.2, 0.2), seed=0)


def test_ids_filter(aid_root: Path) -> None:
    ds = AID(aid_root, split="all", size=64, ids=["Beach/beach_3.jpg", "Airport/airport_2.jpg"])
    assert ds.ids == ["Airport/airport_2.jpg", "Beach/beach_3.jpg"]
    with pytest.raises(ConfigError, match="not images"):
        AID(aid_root, split="all", ids=["nope.jpg"])


def test_ucmerced_odd_size_resized(tmp_path: Path) -> None:
    root = generate(tmp_path, "ucmerced", n_per_class=3)
    ds = UCMerced(root, split="all")
    assert ds.classes == ["agricultural", "airplane", "forest"]
    assert ds.ids[6] == "forest/forest00.tif"
    assert ds[6]["image"].shape == (3, 256, 256)  # 247 px on disk
    # the Images folder itself works too
    assert UCMerced(root / "Images", split="all").ids == ds.ids


def test_eurosat_multiband(tmp_path: Path) -> None:
    root = generate(tmp_path, "eurosat", n_per_class=2)
    ds = EuroSAT(root, split="all")
    s = ds[0]
    assert s["image"].shape == (13, 64, 64)
    assert float(s["image"].min()) >= 500  # raw DN, not rescaled


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        SceneFolder(tmp_path / "missing")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        SceneFolder(tmp_path / "empty")
    with pytest.raises(ConfigError, match="unknown split"):
        SceneFolder(tmp_path / "empty", split="training")
    bad = tmp_path / "bad" / "cls"
    bad.mkdir(parents=True)
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    (bad / "broken.tif").write_bytes(b"not a tiff")
    ds = SceneFolder(tmp_path / "bad", split="all")
    for i in range(2):
        with pytest.raises(DataError, match="broken") as err:
            ds[i]
        assert "\n" not in str(err.value)


@pytest.mark.real
def test_real_ucmerced() -> None:
    root = real_path("ucmerced")
    ds = UCMerced(root, split="all")
    assert ds.classes == ["airplane", "forest"]
    assert len(ds) == 4
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 256, 256)
        assert torch.isfinite(s["image"]).all() and 0 <= s["image"].min() <= s["image"].max() <= 255
    assert ds.ids[0] == "airplane/airplane00.tif"
    # forest is green-dominated, airplane (runway/tarmac) is not
    forest = ds[2]["image"].mean(dim=(1, 2))
    assert forest[1] >= forest[0]
    train = UCMerced(root, split="train", fractions=(0.5, 0.0, 0.5))
    test = UCMerced(root, split="test", fractions=(0.5, 0.0, 0.5))
    assert len(train) == 2 and len(test) == 2 and not set(train.ids) & set(test.ids)


@pytest.mark.real
def test_real_eurosat_ms() -> None:
    ds = EuroSAT(real_path("eurosat_ms"), split="all")
    assert ds.classes == ["AnnualCrop", "Pasture", "SeaLake"]
    s = ds[2]
    assert s["image"].shape == (13, 64, 64)
    img = s["image"].numpy()
    assert np.isfinite(img).all() and img.max() > 100
