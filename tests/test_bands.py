"""Band selection (--bands) for every dataset: the right bands in the asked order, the sensor
found from the names, checkpoints recording the selection, evaluation applying it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geossl.cli import main
from geossl.core.errors import ConfigError
from geossl.datasets.bands import SelectBands, band_names, parse_bands
from geossl.datasets.registry import get_dataset


def test_parse_bands() -> None:
    assert parse_bands("B04, B03,B02") == ["B04", "B03", "B02"]
    assert parse_bands("s2=B04,B03;s1=VV") == {"s2": ["B04", "B03"], "s1": ["VV"]}
    assert parse_bands({"s2": "B08"}) == {"s2": ["B08"]}
    assert parse_bands(None) is None and parse_bands("") is None
    with pytest.raises(ConfigError):
        parse_bands("s2=")


def test_select_bigearthnet_rgb(tmp_path: Path) -> None:
    from tests.data.bigearthnet.data import generate_v2

    generate_v2(tmp_path, n=2)
    both = get_dataset("bigearthnet", tmp_path, sensors=["s1", "s2"], split="all")
    full = both[0]
    rgb = SelectBands(both, "B04,b03,B02")  # names are case-insensitive; S2 has them, not S1
    s = rgb[0]
    assert s["image_s2"].shape == (3, 120, 120)
    s2 = band_names(both)["s2"]
    for i, name in enumerate(["B04", "B03", "B02"]):
        torch.testing.assert_close(s["image_s2"][i], full["image_s2"][s2.index(name)])
    torch.testing.assert_close(s["image_s1"], full["image_s1"])  # S1 untouched
    assert rgb.bands == {"s1": ["VV", "VH"], "s2": ["B04", "B03", "B02"]}
    assert rgb.ids == both.ids and len(rgb) == 2  # other attributes: the dataset's
    one = SelectBands(get_dataset("bigearthnet", tmp_path, split="all"), "B08")
    sample = one[1]
    assert sample["image"].shape == (1, 120, 120) and sample["image"] is sample["image_s2"]
    with pytest.raises(ConfigError, match=r"no band .B13.*B8A"):
        SelectBands(both, {"s2": ["B13"]})
    with pytest.raises(ConfigError, match="no sensor has all of them"):
        SelectBands(both, "VV,B02")


def test_select_positions_and_rgb_names(tmp_path: Path) -> None:
    from tests.data.cifar.data import generate

    generate(tmp_path, per_batch=2, test=2)
    ds = get_dataset("cifar10", tmp_path)
    bgr = SelectBands(ds, "B,G,R")
    torch.testing.assert_close(bgr[0]["image"], ds[0]["image"].flip(0))
    torch.testing.assert_close(SelectBands(ds, "2")[0]["image"], ds[0]["image"][2:])
    assert bgr.bands == ["B", "G", "R"] and bgr.classes == ds.classes


def test_pretrain_and_evaluate_with_bands(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.data.bigearthnet.data import generate_v1

    generate_v1(tmp_path / "ben", n=8, s1=False)
    out = tmp_path / "run"
    rc = main(["pretrain", "--data", "bigearthnet", "--root", str(tmp_path / "ben"), "--sensors",
               "s2", "--pairing", "aug", "--bands", "B04,B03,B02", "--backbone", "test_resnet",
               "--batch-size", "4", "--max-steps", "1", "--img-size", "16", "--accelerator",
               "cpu", "--workers", "0", "--out", str(out)])
    assert rc == 0
    from geossl.pretrained.checkpoint import read_checkpoint

    meta = read_checkpoint(out / "checkpoints" / "last.ckpt")["geossl"]
    assert meta["bands"] == {"s2": ["B04", "B03", "B02"]}
    assert meta["encoder_config"]["in_chans"] == 3
    ckpt = str(out / "checkpoints" / "last.ckpt")
    ev = ["evaluate", ckpt, "--data", "bigearthnet", "--root", str(tmp_path / "ben"),
          "--protocol", "knn", "--accelerator", "cpu", "--no-plots"]
    assert main([*ev, "--out", str(tmp_path / "e0")]) == 2  # 12 bands for a 3-band encoder
    assert "12 bands" in capsys.readouterr().err
    assert main([*ev, "--bands", "B04,B03,B02", "--out", str(tmp_path / "e1")]) == 0
