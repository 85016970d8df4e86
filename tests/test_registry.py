"""The dataset registry: a split a dataset cannot select is an error (never train == test),
which datasets have their own split, and BigEarthNet's version read from its folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.bigearthnet import layout_version as bigearthnet_version
from geossl.datasets.registry import NoNativeSplit, get_dataset, native_split


def test_split_is_never_dropped(tmp_path: Path) -> None:
    from tests.data.sen12ms.data import generate

    ids = generate(tmp_path, scenes={"ROIs1158_spring": [1]}, patches=2, size=8)
    for split in ("train", "test"):
        with pytest.raises(NoNativeSplit, match="no built-in split"):
            get_dataset("sen12ms", tmp_path, split=split)
    assert issubclass(NoNativeSplit, ConfigError)
    # "all" (or no split) selects every sample: safe for a class without splits
    assert get_dataset("sen12ms", tmp_path, split="all").ids == ids
    assert get_dataset("sen12ms", tmp_path, split=None).ids == ids


def test_native_split(tmp_path: Path) -> None:
    from tests.data.aid.data import generate_ucmerced
    from tests.data.bigearthnet.data import generate_v1, generate_v2
    from tests.data.polsar.data import generate as generate_polsar
    from tests.data.sen12ms.data import generate as generate_sen12ms

    uc = generate_ucmerced(tmp_path / "uc", n_per_class=5, size=16)
    assert native_split("ucmerced", uc)
    train = get_dataset("ucmerced", uc, split="train", size=16)
    test = get_dataset("ucmerced", uc, split="test", size=16)
    assert len(test) > 0 and not set(train.ids) & set(test.ids)
    generate_sen12ms(tmp_path / "s", scenes={"ROIs1158_spring": [1]}, patches=1, size=8)
    assert not native_split("sen12ms", tmp_path / "s")
    generate_polsar(tmp_path / "p", rows=16, cols=16)
    assert not native_split("polsar", tmp_path / "p")
    assert not native_split("chips", tmp_path)
    generate_v1(tmp_path / "b1", n=2, s1=False)
    generate_v2(tmp_path / "b2", n=3, s1=False)
    generate_v2(tmp_path / "b2n", n=3, s1=False, metadata=False)
    assert not native_split("bigearthnet", tmp_path / "b1")
    assert native_split("bigearthnet", tmp_path / "b2")  # official split of metadata.parquet
    assert not native_split("bigearthnet", tmp_path / "b2n")


def test_bigearthnet_version_from_layout(tmp_path: Path) -> None:
    from tests.data.bigearthnet.data import generate_v1, generate_v2

    v1 = generate_v1(tmp_path / "v1", n=2, s1=False)
    v2 = generate_v2(tmp_path / "v2", n=2, s1=False)
    assert bigearthnet_version(tmp_path / "v1") == 1
    assert bigearthnet_version(tmp_path / "v1" / "BigEarthNet-v1.0") == 1  # the S2 folder
    assert bigearthnet_version(tmp_path / "v2") == 2
    for root in (tmp_path / "v1", tmp_path / "v1" / "BigEarthNet-v1.0"):
        ds = get_dataset("bigearthnet", root)  # was: "BigEarthNet-S2 folder not found"
        assert ds.version == 1 and ds.ids == v1
        assert ds[0]["image"].shape == (12, 120, 120) and ds[0]["label"].shape == (19,)
    ds = get_dataset("bigearthnet", tmp_path / "v2")
    assert ds.version == 2 and sorted(ds.ids) == sorted(v2)
    # an explicit version still wins
    with pytest.raises(DataError, match="BigEarthNet-S2 folder not found"):
        get_dataset("bigearthnet", tmp_path / "v1", version=2)


def test_label_scheme_is_checked_against_the_declared_schemes(tmp_path: Path) -> None:
    """``--label-scheme`` reaches only a class that declares label schemes, and only one of them."""
    from geossl.datasets.registry import pretraining_dataset

    with pytest.raises(ConfigError, match="has its own labels"):
        pretraining_dataset("eurosat", tmp_path, ["s2"], "aug", labels="dfc")
    with pytest.raises(ConfigError, match="has the schemes igbp, dfc"):
        pretraining_dataset("sen12ms", tmp_path, ["s1", "s2"], "aug", labels="lccs")


def test_every_builtin_dataset_declares_its_constructor_arguments() -> None:
    """The declared ``arguments`` (what the registry passes) match each constructor.

    The registry never reads a signature; this test keeps the declarations true.
    """
    import inspect

    from geossl.datasets.base import REQUIRED
    from geossl.datasets.registry import DATASETS, dataset_class

    for name in DATASETS:
        cls = dataset_class(name)
        params = list(inspect.signature(cls).parameters)[1:]
        assert set(cls.arguments) == set(params), name
        assert all(hasattr(cls, attr) for attr in REQUIRED), name
