"""A dataset defined outside the package, registered through the documented protocol, works with
the commands: `geossl split`, `stats`, `pretrain` and `evaluate` (the real CLI entry point).

``Plots`` is a made-up field-plot archive in its own on-disk layout::

    ROOT/plots.csv           id,label,x,y   (x, y: lower-left corner of a 320 m plot, EPSG:32633)
    ROOT/images/<id>.npy     uint8 (3, 32, 32) RGB

as a user would write it: it declares its sensor, bands, ids, classes and footprints
(docs/datasets.md, "Your own dataset").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import torch
from torchgeo.datasets import NonGeoDataset

from geossl.cli import main
from geossl.core.errors import ConfigError
from geossl.datasets import GeosslDataset, register, unregister
from geossl.datasets.registry import DATASETS, dataset_class
from geossl.pretrained.checkpoint import read_checkpoint

CLASSES = ("meadow", "forest", "water")
PER_CLASS = 8
SIZE = 32
PLOT_M = 320.0


class Plots(GeosslDataset, NonGeoDataset):
    """Field plots: one RGB image and one land-cover class per plot."""

    sensors = ("rgb",)
    arguments = ("ids",)

    def __init__(self, root: str | Path, ids: list[str] | None = None) -> None:
        self.root = Path(root)
        table = pd.read_csv(self.root / "plots.csv", dtype={"id": str})
        if ids is not None:
            table = table.set_index("id").loc[list(ids)].reset_index()
        self.table = table
        self.ids = table["id"].tolist()
        self.classes = list(CLASSES)
        self.targets = [self.classes.index(c) for c in table["label"]]
        self.bands = ["red", "green", "blue"]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = np.load(self.root / "images" / f"{self.ids[i]}.npy")
        return {"image": torch.from_numpy(image.astype(np.float32)),
                "label": torch.tensor(self.targets[i]), "id": self.ids[i]}

    def footprints(self) -> gpd.GeoDataFrame:
        x, y = self.table["x"].to_numpy(), self.table["y"].to_numpy()
        return gpd.GeoDataFrame({"chip_id": self.ids, "label": self.targets},
                                geometry=shapely.box(x, y, x + PLOT_M, y + PLOT_M),
                                crs="EPSG:32633")


def _write(root: Path) -> Path:
    """Plots whose class sets the brightness of one channel (what a probe can learn)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for k, name in enumerate(CLASSES):
        for j in range(PER_CLASS):
            pid = f"{name[:2]}{j:02d}"
            image = rng.integers(40, 90, (3, SIZE, SIZE))
            image[k] += 120
            np.save(root / "images" / f"{pid}.npy", image.astype(np.uint8))
            # plots 2 km apart on a grid: no two footprints overlap
            rows.append({"id": pid, "label": name, "x": 500000.0 + 2000 * j,
                         "y": 5300000.0 + 2000 * k})
    pd.DataFrame(rows).to_csv(root / "plots.csv", index=False)
    return root


@pytest.fixture()
def plots(tmp_path: Path) -> Path:
    register("plots", Plots)
    yield _write(tmp_path / "plots")
    unregister("plots")


def test_register_checks_the_protocol() -> None:
    class NotADataset:
        sensors = ("rgb",)

    with pytest.raises(ConfigError, match=r"subclass geossl\.datasets\.GeosslDataset"):
        register("nope", NotADataset)

    class BadSensor(Plots):
        sensors = ("R G B",)

    with pytest.raises(ConfigError, match="invalid sensor name"):
        register("bad", BadSensor)
    with pytest.raises(ConfigError, match="already registered"):
        register("aid", Plots)
    assert dataset_class(f"{__name__}:Plots").sensors == ("rgb",)


@pytest.mark.parametrize("missing", ["sensors", "arguments"])
def test_register_refuses_a_class_missing_a_declaration(missing: str) -> None:
    """Declarations are class attributes the registry checks; nothing is probed later."""
    body: dict[str, Any] = {"sensors": ("rgb",), "arguments": ("ids",)}
    del body[missing]
    Undeclared = type("Undeclared", (GeosslDataset, NonGeoDataset), body)
    with pytest.raises(ConfigError) as err:
        register("undeclared", Undeclared)
    line = str(err.value)
    assert "Undeclared" in line and f"does not declare {missing!r}" in line
    assert "\n" not in line
    assert "undeclared" not in DATASETS
    with pytest.raises(ConfigError, match=f"does not declare {missing!r}"):
        dataset_class(f"{__name__}:Plots_{missing}")


#: import-path spellings of the same incomplete classes (``--data module:Class``)
Plots_sensors = type("Plots_sensors", (GeosslDataset,), {"arguments": ()})
Plots_arguments = type("Plots_arguments", (GeosslDataset,), {"sensors": ()})


def test_a_user_dataset_is_built_only_with_what_it_declares(plots: Path) -> None:
    from geossl.datasets.registry import get_dataset

    ds = get_dataset("plots", plots, ids=["me00", "wa01"], sensors=["rgb"])
    assert isinstance(ds, Plots) and ds.ids == ["me00", "wa01"]
    assert ds[1]["label"].item() == CLASSES.index("water")
    with pytest.raises(ConfigError, match=r"takes no argument 'size' \(it declares ids\)"):
        get_dataset("plots", plots, size=8)


def test_registered_dataset_through_the_cli(plots: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    splits = tmp_path / "splits.json"
    assert main(["split", "--data", "plots", "--root", str(plots), "--strategy", "overlap",
                 "--fractions", "0.5,0.5", "--seed", "0", "--out", str(splits)]) == 0
    sides = json.loads(splits.read_text())["splits"]
    assert sorted(sides["train"] + sides["test"]) == sorted(Plots(plots).ids)
    assert main(["stats", "--data", "plots", "--root", str(plots)]) == 0
    assert "red" in capsys.readouterr().out  # the bands the dataset declares

    run = tmp_path / "run"
    assert main(["pretrain", "--data", "plots", "--root", str(plots), "--out", str(run),
                 "--sensors", "rgb", "--pairing", "aug", "--method", "simclr",
                 "--backbone", "test_resnet", "--img-size", "16", "--batch-size", "4",
                 "--workers", "0", "--accelerator", "cpu", "--devices", "1",
                 "--splits", str(splits), "--split", "train", "--max-steps", "2"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    meta = read_checkpoint(ckpt)["geossl"]
    assert meta["bands"] == {"rgb": ["red", "green", "blue"]}
    assert meta["normalization"] == {"rgb": "rgb"}

    out = tmp_path / "eval"
    assert main(["evaluate", str(ckpt), "--data", "plots", "--root", str(plots),
                 "--splits", str(splits), "--protocol", "linear,knn", "--out", str(out),
                 "--accelerator", "cpu", "--batch-size", "8", "--no-plots", "true"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["n_train"] == len(sides["train"])
    assert res["meta"]["n_test"] == len(sides["test"])
    assert {r["protocol"] for r in res["runs"]} == {"linear", "knn20", "knn200"}
    for r in res["runs"]:
        assert 0 <= r["metrics"]["oa"] <= 1
        assert np.asarray(r["metrics"]["confusion"]).sum() == len(sides["test"])
    # the classes differ by one channel's brightness: frozen features separate them
    assert next(r for r in res["runs"] if r["protocol"] == "linear")["metrics"]["oa"] >= 0.75


def test_dataset_by_import_path(tmp_path: Path) -> None:
    """`--data module:Class` needs no registration; without --splits the dataset's footprints
    give the automatic overlap-aware split."""
    torch.set_num_threads(1)
    root = _write(tmp_path / "plots")
    out = tmp_path / "eval"
    assert main(["evaluate", "random", "--backbone", "test_resnet", "--data",
                 f"{__name__}:Plots", "--root", str(root), "--protocol", "knn", "--out",
                 str(out), "--accelerator", "cpu", "--batch-size", "8",
                 "--no-plots", "true"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["n_train"] + res["meta"]["n_test"] == len(CLASSES) * PER_CLASS
    assert (out / "splits.json").is_file()


def test_unknown_dataset_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["evaluate", "random", "--backbone", "test_resnet", "--data", "nowhere:Plots",
               "--root", str(tmp_path), "--protocol", "knn"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("geossl evaluate: error:") and "\n" not in err
    assert "nowhere" in err
