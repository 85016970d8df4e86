from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from geossl.core.errors import ConfigError, DataError
from geossl.pretrained.normalize import (
    NORMALIZERS,
    S2_L1C_MEAN,
    PolSARNormalize,
    Standardize,
    get_normalizer,
    s1_db_clip,
    s2_offset,
    s2_reflectance,
    standardize,
)


def test_s1_db_clip_values() -> None:
    x = torch.tensor([[[-30.0, -25.0, -12.5, 3.0]], [[-40.0, -32.5, -16.25, float("nan")]]])
    out = s1_db_clip(x)
    expected = torch.tensor([[[0.0, 0.0, 0.5, 1.0]], [[0.0, 0.0, 0.5, 0.0]]])
    torch.testing.assert_close(out, expected)
    batch = get_normalizer("s1")(x[None].repeat(3, 1, 1, 1))
    assert batch.shape == (3, 2, 1, 4)
    torch.testing.assert_close(batch[1], expected)
    with pytest.raises(ConfigError, match="2 band values but the image has 3"):
        s1_db_clip(torch.zeros(3, 2, 2))


def test_s2_reflectance_and_offset() -> None:
    x = torch.tensor([[[0.0, 1000.0, 5000.0, 12000.0]]])
    torch.testing.assert_close(s2_reflectance(x), torch.tensor([[[0.0, 0.1, 0.5, 1.0]]]))
    torch.testing.assert_close(s2_reflectance(x, clip=None)[..., -1], torch.tensor([[1.2]]))
    torch.testing.assert_close(get_normalizer("s2_offset")(x), torch.tensor([[[0, 0, 0.4, 1.0]]]))
    assert s2_offset("04.00") == -1000 and s2_offset("N0509") == -1000
    assert s2_offset("02.09") == 0 and s2_offset(None) == 0
    with pytest.raises(ConfigError):
        s2_offset("abc")


def test_standardize_and_registry() -> None:
    x = torch.randn(2, 13, 4, 4) * 100 + 1000
    out = get_normalizer("s2_std")(x)
    mean = torch.tensor(S2_L1C_MEAN).reshape(13, 1, 1)
    assert out.shape == x.shape and torch.allclose(out[0, 0], (x[0, 0] - mean[0]) / 791.0)
    assert get_normalizer("s2_std")(x[:, :12]).shape == (2, 12, 4, 4)  # L2A stats
    with pytest.raises(ConfigError, match="no statistics for 5 bands"):
        get_normalizer("s2_std")(x[:, :5])
    rgb = get_normalizer("rgb")(torch.full((3, 2, 2), 255.0))
    torch.testing.assert_close(rgb[0, 0, 0], torch.tensor((1 - 0.485) / 0.229))
    with pytest.raises(ConfigError, match="no normalisation for sensor"):
        get_normalizer("landsat")
    assert get_normalizer("S2L2A").__class__.__name__ == "S2Reflectance"
    for name in NORMALIZERS:  # every normaliser survives pickling (loader workers)
        pickle.loads(pickle.dumps(get_normalizer(name)))
    torch.testing.assert_close(standardize(torch.ones(2, 1, 1), [1.0, 0.0], [1.0, 0.0]),
                               torch.tensor([[[0.0]], [[1.0]]]))


def test_polsar_normalize() -> None:
    x = torch.zeros(9, 2, 2)
    x[:3] = -15.0
    x[3:] = 0.5
    out = PolSARNormalize()(x)
    assert torch.all(out[:3] == 0) and torch.all(out[3:] == 0.5)
    out13 = PolSARNormalize()(torch.full((2, 13, 1, 1), 5.0))
    assert out13[0, 12, 0, 0] == 2.0 and out13[0, 5, 0, 0] == 5.0
    with pytest.raises(ConfigError):
        PolSARNormalize()(torch.zeros(7, 1, 1))


def test_from_stats_file(tmp_path: Path) -> None:
    stats = {"stats": {"image": {"bands": ["a", "b"], "mean": [1.0, 2.0], "std": [2.0, 4.0]}}}
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    norm = get_normalizer("whatever", stats=path)
    torch.testing.assert_close(norm(torch.tensor([[[3.0]], [[6.0]]])),
                               torch.tensor([[[1.0]], [[1.0]]]))
    only_b = Standardize.from_stats(path, bands=["b"])
    torch.testing.assert_close(only_b(torch.tensor([[[6.0]]])), torch.tensor([[[1.0]]]))
    with pytest.raises(ConfigError, match="band 'c'"):
        Standardize.from_stats(path, bands=["c"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match=r"bad\.json"):
        Standardize.from_stats(tmp_path / "bad.json")


def test_device_follow() -> None:
    norm = get_normalizer("rgb").to(torch.float64)
    out = norm(torch.zeros(1, 3, 2, 2, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_sensor_stats_picks_the_sensor_entry(tmp_path: Path) -> None:
    from geossl.pretrained.normalize import sensor_stats

    s1 = {"bands": ["VV", "VH"], "mean": [-12.0, -19.0], "std": [4.0, 5.0]}
    s2 = {"bands": ["B02", "B03", "B04"], "mean": [1.0, 2.0, 3.0], "std": [10.0, 20.0, 30.0]}
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"data": "x", "stats": {"image_s1": s1, "image_s2": s2}}))
    assert sensor_stats(path, "s1") == ([-12.0, -19.0], [4.0, 5.0])
    # reordered and subset to the samples' bands when the file names them all
    assert sensor_stats(path, "s2", bands=["B04", "B02"]) == ([3.0, 1.0], [30.0, 10.0])
    assert sensor_stats(path, "s2", bands=["B04", "B8A"]) == ([1.0, 2.0, 3.0],
                                                               [10.0, 20.0, 30.0])
    with pytest.raises(ConfigError, match=r"stats\.json: no statistics for sensor 'rgb' "
                                          r"\(key image_rgb; has image_s1, image_s2\)"):
        sensor_stats(path, "rgb", sole=True)
    # one entry (``image`` of a chip index) or a flat file serves a run with one sensor only
    single = {"stats": {"image": s2}}
    assert sensor_stats(single, "s2", sole=True)[0] == [1.0, 2.0, 3.0]
    with pytest.raises(ConfigError, match="no statistics for sensor 's2'"):
        sensor_stats(single, "s2", sole=False)
    assert sensor_stats(s1, "anything", sole=True)[1] == [4.0, 5.0]
    # a band with no valid value has null statistics: refused, naming the band
    empty = {"stats": {"image_s2": {**s2, "mean": [1.0, None, 3.0]}}}
    with pytest.raises(DataError, match="band B03 of s2"):
        sensor_stats(empty, "s2")
