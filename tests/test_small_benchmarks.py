"""CIFAR-10, MNIST and Tiny ImageNet read from their usual local files (fake data in the real
layouts), never downloaded; a tampered CIFAR pickle is refused without running anything."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.registry import get_dataset, native_split
from tests.data.cifar.data import CLASSES as CIFAR_CLASSES
from tests.data.cifar.data import dumps_py2
from tests.data.cifar.data import generate as gen_cifar
from tests.data.mnist.data import generate as gen_mnist
from tests.data.mnist.data import idx_bytes
from tests.data.tinyimagenet.data import generate as gen_tiny


def test_cifar10_reads_the_python_archive(tmp_path: Path) -> None:
    gen_cifar(tmp_path, per_batch=4, test=6)
    assert native_split("cifar10", tmp_path)
    train = get_dataset("cifar10", tmp_path, split="train")
    test = get_dataset("cifar10", tmp_path / "cifar-10-batches-py", split="test")
    assert (len(train), len(test)) == (20, 6)
    assert train.classes == CIFAR_CLASSES and train.sensors == ("rgb",)
    s = train[5]
    assert s["image"].shape == (3, 32, 32) and str(s["image"].dtype) == "torch.float32"
    assert int(s["label"]) == 1 and s["id"] == "train/5"  # batch 2, 2nd image
    # channel planes: the red plane is the first 1024 values of the row, as in the real data
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_2").read_bytes(),
                       encoding="latin1")["data"]
    np.testing.assert_array_equal(s["image"][0].numpy().ravel(), raw[1, :1024])
    np.testing.assert_array_equal(s["image"][2].numpy().ravel(), raw[1, 2048:])
    assert not set(train.ids) & set(test.ids)
    both = get_dataset("cifar10", tmp_path, split="all")
    assert len(both) == 26
    picked = get_dataset("cifar10", tmp_path, ids=["test/2", "train/0"])
    assert picked.ids == ["train/0", "test/2"] and picked.targets.tolist() == [0, 2]
    with pytest.raises(ConfigError, match="not samples"):
        get_dataset("cifar10", tmp_path, ids=["train/99"])


def test_cifar10_missing_files_say_where_they_go(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar-10-batches-py/data_batch_1.*never downloaded"):
        get_dataset("cifar10", tmp_path)
    gen_cifar(tmp_path, per_batch=2, test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3: missing CIFAR batch"):
        get_dataset("cifar10", tmp_path)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch PWNED",))


def test_cifar10_tampered_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    gen_cifar(tmp_path, per_batch=2, test=2)
    monkeypatch.chdir(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch: not a CIFAR pickle .*posix.system|"
                                        r"test_batch: not a CIFAR pickle .*os.system"):
        get_dataset("cifar10", tmp_path, split="test")
    assert not (tmp_path / "PWNED").exists()
    # an object array (arbitrary objects inside numpy's reconstructor) is refused too
    batch.write_bytes(dumps_py2({b"data": np.array([1, "x"], dtype=object), b"labels": [0]}))
    with pytest.raises(DataError, match="not a CIFAR pickle"):
        get_dataset("cifar10", tmp_path, split="test")


def test_mnist_reads_idx_files(tmp_path: Path) -> None:
    gen_mnist(tmp_path, train=30, test=10)
    ds = get_dataset("mnist", tmp_path)
    assert len(ds) == 30 and ds.sensors == ("gray",) and ds.classes[3] == "3"
    s = ds[13]
    assert s["image"].shape == (1, 28, 28) and int(s["label"]) == 3 and s["id"] == "train/13"
    assert float(s["image"].max()) == 230.0
    assert len(get_dataset("mnist", tmp_path / "MNIST" / "raw", split="test")) == 10
    # gzip only, as some copies keep them
    gz = tmp_path / "gz"
    gen_mnist(gz, train=10, test=10, gz=True)
    for f in (gz / "MNIST" / "raw").glob("*-ubyte"):
        f.unlink()
    assert len(get_dataset("mnist", gz, split="all")) == 20
    fm = tmp_path / "fm"
    gen_mnist(fm, train=10, test=10, folder="FashionMNIST")
    assert get_dataset("fashionmnist", fm).classes[9] == "Ankle boot"


def test_mnist_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"MNIST/raw/ inside this folder .*never downloaded"):
        get_dataset("mnist", tmp_path)
    gen_mnist(tmp_path, train=10, test=10)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(9, np.uint8)))
    with pytest.raises(DataError, match="do not pair up"):
        get_dataset("mnist", tmp_path)
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    (raw / "train-images-idx3-ubyte").write_bytes(data[:-5])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: IDX header says"):
        get_dataset("mnist", tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x1f\x8b" + data[2:])
    with pytest.raises(DataError, match="bad magic"):
        get_dataset("mnist", tmp_path)
    (raw / "train-images-idx3-ubyte").unlink()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(data)[:20])
    with pytest.raises(DataError, match="unreadable gzip"):
        get_dataset("mnist", tmp_path)


def test_tinyimagenet_layout(tmp_path: Path) -> None:
    gen_tiny(tmp_path, train=4, val=2, test=2)
    assert native_split("tinyimagenet", tmp_path)
    train = get_dataset("tinyimagenet", tmp_path, split="train")
    test = get_dataset("tinyimagenet", tmp_path / "tiny-imagenet-200", split="test")
    assert train.classes == ["n01443537", "n02124075", "n04067472"]  # sorted, not wnids order
    assert train.class_names == ["goldfish", "Egyptian cat", "reel"]
    assert (len(train), len(test)) == (12, 6)
    assert train.ids[0] == "train/n01443537/images/n01443537_0.JPEG"
    grey = train[0]  # the greyscale JPEG comes out as three equal bands
    assert grey["image"].shape == (3, 64, 64) and int(grey["label"]) == 0
    assert (grey["image"][0] == grey["image"][2]).all()
    # val labels come from val_annotations.txt: val_0 is n02124075 (class 1)
    first = test[0]
    assert first["id"] == "val/images/val_0.JPEG" and int(first["label"]) == 1
    colour = train[5]["image"].mean((1, 2))  # class 1: mean colour (120, 140, 120)
    assert abs(float(colour[0]) - 120) < 10 and abs(float(colour[1]) - 140) < 10
    assert get_dataset("tinyimagenet", tmp_path, split="val").ids == test.ids
    assert len(get_dataset("tinyimagenet", tmp_path, split="all")) == 18


def test_tinyimagenet_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"tiny-imagenet-200/wnids.txt.*never downloaded"):
        get_dataset("tinyimagenet", tmp_path)
    gen_tiny(tmp_path, train=1, val=1, test=0)
    ann = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"val_annotations.txt: line 1"):
        get_dataset("tinyimagenet", tmp_path, split="test")
    with pytest.raises(ConfigError, match="unknown split"):
        get_dataset("tinyimagenet", tmp_path, split="holdout")
