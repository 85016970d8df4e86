"""geossl.train.pretrain as a library: DeepCluster end to end, BYOL, rerunning OUT/config.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from geossl.cli import main
from geossl.errors import ConfigError


def _methods() -> Any:
    methods = pytest.importorskip("geossl.methods")
    if not hasattr(methods, "METHODS"):
        pytest.skip("geossl.methods.METHODS not there yet")
    return methods


@pytest.fixture(scope="module")
def sen12ms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gen = pytest.importorskip("tests.data.sen12ms.data")
    root = tmp_path_factory.mktemp("sen12ms")
    gen.generate(root)
    return root


def _ckpt(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]


def test_deepcluster_on_aid_like_data(tmp_path: Path) -> None:
    """Clusters every epoch through cluster_dataloader and resamples via set_sample_weights."""
    _methods()
    gen = pytest.importorskip("tests.data.aid.data")
    from geossl.train import PretrainConfig, pretrain

    root = gen.generate(tmp_path / "data", "ucmerced", n_per_class=10, size=32)
    cfg = PretrainConfig(
        data="ucmerced", root=str(root), out=str(tmp_path / "run"), method="deepcluster",
        backbone="resnet18", sensors=["rgb"], pairing="aug", batch_size=8, workers=0,
        accelerator="cpu", devices="1", max_epochs=2, img_size=32, log_every=1,
        method_args={"num_clusters": 3, "pca_dim": 4, "kmeans_iters": 5},
    )
    last = pretrain(cfg)
    ckpt = _ckpt(last)
    # two epochs of the training side of the dataset's own split
    assert ckpt["epoch"] >= 1 and ckpt["global_step"] >= 4
    assert ckpt["deepcluster"]["clusterings"] == 2  # before epoch 0 and between the epochs
    weights = ckpt["SSLDataModule"]["sample_weights"]
    assert weights is not None and len(weights) == len(ckpt["deepcluster"]["labels"])
    # uniform over pseudo-labels: every cluster gets the same total weight
    labels = ckpt["deepcluster"]["labels"]
    totals = {int(c): float(weights[labels == c].sum()) for c in labels.unique()}
    assert max(totals.values()) == pytest.approx(min(totals.values()), rel=1e-6)
    assert ckpt["geossl"]["method"] == "deepcluster"


def test_deepcluster_refuses_geo_pairing(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    _methods()
    rc = main(["pretrain", "--root", str(tmp_path), "--out", str(tmp_path / "run"),
               "--method", "deepcluster", "--pairing", "geo", "--sensors", "s1,s2",
               "--max-steps", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "DeepCluster" in err and "\n" not in err


def test_option_the_method_lacks_is_refused(sen12ms: Path) -> None:
    _methods()
    from geossl.train import PretrainConfig, pretrain

    cfg = PretrainConfig(data="sen12ms", root=str(sen12ms), method="byol", sensors=["s2"],
                         pairing="aug", temperature=0.2, max_steps=1, batch_size=4,
                         backbone="resnet18", accelerator="cpu", workers=0)
    with pytest.raises(ConfigError, match="temperature"):
        pretrain(cfg)


def test_byol_and_rerun_from_effective_config(tmp_path: Path, sen12ms: Path) -> None:
    _methods()
    out = tmp_path / "run"
    assert main(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
                 "--method", "byol", "--pairing", "aug", "--sensors", "s2", "--backbone",
                 "resnet18", "--batch-size", "4", "--workers", "0", "--accelerator", "cpu",
                 "--devices", "1", "--img-size", "32", "--max-steps", "1", "--log-every",
                 "1"]) == 0
    effective = yaml.safe_load((out / "config.yaml").read_text())
    assert effective["method"] == "byol" and effective["sensors"] == "s2"
    assert effective["precision"] == "auto" and "resume" not in effective
    # OUT/config.yaml reruns the same experiment (here resumed and extended by one step)
    assert main(["pretrain", "--config", str(out / "config.yaml"), "--max-steps", "2",
                 "--resume", "last"]) == 0
    ckpt = _ckpt(out / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert ckpt["geossl"]["bands"] == {"s2": ["B01", "B02", "B03", "B04", "B05", "B06", "B07",
                                              "B08", "B8A", "B09", "B10", "B11", "B12"]}
    assert ckpt["geossl"]["normalization"] == {"s2": "s2"}
    # the CSV history of the first run survives the resume
    text = (out / "logs" / "csv" / "metrics.csv").read_text()
    steps = {line.split(",")[0] for line in text.splitlines()[1:]}
    assert len(text.splitlines()) > 2 and steps


def test_library_config_errors(tmp_path: Path) -> None:
    from geossl.train import PretrainConfig, pretrain

    with pytest.raises(ConfigError, match="root"):
        pretrain(PretrainConfig(root=None, max_steps=1))
    with pytest.raises(ConfigError, match="max-steps"):
        pretrain(PretrainConfig(root=str(tmp_path)))
    with pytest.raises(ConfigError, match="optimizer"):
        pretrain(PretrainConfig(root=str(tmp_path), max_steps=1, optimizer="rmsprop"))
