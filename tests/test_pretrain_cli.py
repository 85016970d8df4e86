"""`geossl pretrain`: configs parse, bad combinations are refused, every pairing mode trains two
steps on fake SEN12MS data, writes valid checkpoints and logs, and `--resume` continues."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from geossl.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "conf" / "pretrain").glob("*.yaml"))


def _methods() -> Any:
    import geossl.methods as methods

    assert methods.METHODS  # a missing method registry is a failure, never a skip
    return methods


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--data", "sen12ms", "--root", str(root), "--out", str(out),
            "--backbone", "test_resnet", "--batch-size", "4", "--workers", "0",
            "--accelerator", "cpu", "--devices", "1", "--img-size", "16", "--log-every", "1",
            *extra]


def _ckpt_step(path: Path) -> int:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return int(ckpt["global_step"])


def test_expected_configs_exist() -> None:
    names = {p.stem for p in CONFIGS}
    for name in ["simclr_backbones_resnet50", "simclr_backbones_vit_p4", "simclr_backbones_vit_p8",
                 "simclr_backbones_vit_p16", "simclr_backbones_convnext_t", "simclr_optim_adam",
                 "simclr_optim_lamb", "simclr_optim_lars", "simclr_bs_temp_grid",
                 "moco_sen12ms_geo", "moco_sen12ms_fusion", "moco_sen12ms_partial_fusion",
                 "deepcluster_aid"]:
        assert name in names, name


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_parses(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--config", str(config), "--print_config"])
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    raw = yaml.safe_load(config.read_text())
    for key, value in raw.items():
        assert printed[key] == value, key


#: bands per sensor of the datasets the configs name (what the data module reads off a sample)
DATA_CHANS = {"sen12ms": {"s1": 2, "s2": 13}, "aid": {"rgb": 3}}


def _meta_batch(cfg: Any, chans: dict[str, int]) -> dict[str, Any]:
    size = cfg.patch_size or cfg.img_size or 64
    batch: dict[str, Any] = {f"image_{s}": torch.empty(cfg.batch_size, c, size, size)
                             for s, c in chans.items()}
    batch.update({f"{k}_t2": v for k, v in batch.items()})
    batch["index"] = torch.arange(cfg.batch_size)
    return batch


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_and_steps_on_meta(config: Path) -> None:
    """Config -> PretrainConfig -> method, optimiser and one training step, on ``meta``.

    Tensors on the ``meta`` device have shapes but no data: the full-size models of the configs
    (ResNet50, ViT-S, ConvNeXt-T at the configured batch and image size) are built and stepped
    without allocating or computing anything, so every shape and option is checked in seconds.
    """
    _methods()
    from geossl.training.trainer import (
        PretrainConfig,
        build_method,
        check_combination,
        parse_sensors,
    )

    raw = yaml.safe_load(config.read_text())
    cfg = PretrainConfig(**raw)
    cfg.sensors = parse_sensors(raw["sensors"])
    check_combination(cfg)  # must not raise
    chans = {s: DATA_CHANS[cfg.data][s] for s in cfg.sensors}
    with torch.device("meta"):
        method = build_method(cfg, chans, cfg.max_steps if cfg.max_steps > 0 else 1000)
        opt = method.configure_optimizers()["optimizer"]
        batch = _meta_batch(cfg, chans)
        if cfg.method == "deepcluster":  # as cluster() leaves them
            method.pseudo_labels = torch.arange(cfg.batch_size) % method.options.num_clusters
        view1, view2 = method.make_views(batch)
        loss, _ = method.compute_loss(view1, view2, batch)
    assert type(method) is _methods().METHODS[cfg.method] and loss.shape == ()
    assert method.hparams["backbone"] == cfg.backbone and method.pairing == cfg.pairing
    for key in ("temperature", "momentum", "queue_size", "lr", "weight_decay", "img_size"):
        if raw.get(key) is not None:
            assert method.hparams[key] == raw[key], key
    for key, value in (raw.get("method_args") or {}).items():
        assert method.hparams[key] == value, key
    if cfg.optimizer:
        name = type(opt).__name__.lower()
        assert name == cfg.optimizer or name.startswith(cfg.optimizer), name
    size = cfg.img_size or cfg.patch_size
    assert view1.x.shape[0] == cfg.batch_size and view1.x.shape[-1] == size


@pytest.mark.parametrize("config", sorted((REPO / "conf").rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(REPO / "conf")))
def test_every_conf_yaml_parses(config: Path) -> None:
    """Every YAML under conf/ is a mapping (the other commands' configs are tested with them)."""
    raw = yaml.safe_load(config.read_text())
    assert isinstance(raw, dict) and raw


def _invalid_combinations() -> list[tuple[str, str]]:
    try:
        from geossl.core.pairing import PAIRING_MODES
        from geossl.methods import METHODS, VALID_PAIRINGS
    except ImportError:  # pragma: no cover
        return []
    return [(m, p) for m in METHODS for p in PAIRING_MODES if p not in VALID_PAIRINGS[m]]


@pytest.mark.parametrize(("method", "pairing"), _invalid_combinations())
def test_every_invalid_method_pairing_is_refused(method: str, pairing: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Exit code 2 and one line naming the method and the pairing; nothing trained or written."""
    sensors = "s2" if pairing in ("aug", "temporal") else "s1,s2"
    rc = main(["pretrain", "--root", str(tmp_path), "--out", str(tmp_path / "run"),
               "--method", method, "--pairing", pairing, "--sensors", sensors,
               "--max-steps", "2"])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == 2 and err.startswith("geossl pretrain: error:") and "\n" not in err
    assert pairing in err and (method in err.lower()), err
    assert not (tmp_path / "run").exists()


def test_missing_resume_checkpoint(tmp_path: Path, sen12ms: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    _methods()
    rc = main(_args(sen12ms, tmp_path / "run", "--sensors", "s2", "--pairing", "aug",
                    "--max-steps", "2", "--resume", str(tmp_path / "nope.ckpt")))
    assert rc == 2 and "nope.ckpt" in capsys.readouterr().err
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"truncated")
    rc = main(_args(sen12ms, tmp_path / "run", "--sensors", "s2", "--pairing", "aug",
                    "--max-steps", "2", "--resume", str(bad)))
    assert rc == 2 and "bad.ckpt" in capsys.readouterr().err


PAIRINGS = [
    ("simclr", "geo", "s1,s2"),
    ("moco", "partial-fusion", "s1,s2"),
    ("moco", "aug", "s2"),
    ("simclr", "fusion", "s1,s2"),
]


@pytest.mark.parametrize(("method", "pairing", "sensors"), PAIRINGS)
def test_two_steps_then_resume(method: str, pairing: str, sensors: str, tmp_path: Path,
                               sen12ms: Path) -> None:
    methods = _methods()
    check = getattr(methods, "check_method_pairing", None)
    if check is not None:
        check(method, pairing)
    out = tmp_path / "run"
    rc = main(_args(sen12ms, out, "--method", method, "--pairing", pairing, "--sensors", sensors,
                    "--max-steps", "2", "--ckpt-every", "1"))
    assert rc == 0
    ckpts = out / "checkpoints"
    assert (ckpts / "last.ckpt").exists() and (ckpts / "step=2.ckpt").exists()
    assert (ckpts / "step=1.ckpt").exists()
    assert zipfile.is_zipfile(ckpts / "last.ckpt")  # complete, loadable file
    assert _ckpt_step(ckpts / "last.ckpt") == 2
    assert not list(ckpts.glob("*.part")) and not list(ckpts.glob(".*"))
    effective = yaml.safe_load((out / "config.yaml").read_text())
    assert effective["method"] == method and effective["pairing"] == pairing
    metrics = out / "logs" / "csv" / "metrics.csv"
    assert metrics.exists() and "loss" in metrics.read_text().splitlines()[0]
    assert (out / "loss_curve.png").stat().st_size > 0

    # kill-safety / resume: continue from last.ckpt to step 4
    rc = main(_args(sen12ms, out, "--method", method, "--pairing", pairing, "--sensors", sensors,
                    "--max-steps", "4", "--ckpt-every", "100", "--resume", "last"))
    assert rc == 0
    assert _ckpt_step(ckpts / "last.ckpt") == 4
    assert (ckpts / "step=4.ckpt").exists()
    # the weights moved on from step 2
    w2 = torch.load(ckpts / "step=2.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    w4 = torch.load(ckpts / "step=4.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert w2.keys() == w4.keys()
    assert any(not torch.equal(w2[k], w4[k]) for k in w2 if w2[k].is_floating_point())


def _two_date_chips(folder: Path) -> Path:
    """A chip index with every location seen at two dates (same grid, different datetime)."""
    import pandas as pd

    from geossl.bench.train import make_chips

    index = make_chips(folder, n=4, bands=3, size=16)
    import geopandas as gpd

    frame = gpd.read_parquet(index)
    late = frame.copy()
    late["chip_id"] = late["chip_id"] + "_t2"
    late["datetime"] = pd.Timestamp("2021-08-01", tz="UTC")
    frame["datetime"] = pd.Timestamp("2021-05-01", tz="UTC")
    pd.concat([frame, late], ignore_index=True).to_parquet(index)
    return folder


def test_temporal_pairing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Temporal pairs need a dataset with two dates per place: a chip index with datetimes."""
    _methods()
    root = _two_date_chips(tmp_path / "chips")
    out = tmp_path / "run"
    rc = main(["pretrain", "--data", "chips", "--root", str(root), "--out", str(out),
               "--method", "simclr", "--pairing", "temporal", "--sensors", "s2",
               "--backbone", "resnet18", "--batch-size", "2", "--workers", "0",
               "--accelerator", "cpu", "--devices", "1", "--img-size", "16", "--max-steps", "2"])
    err = capsys.readouterr().err
    # temporal pairing is documented: a refusal ("needs a second date") is a failure
    assert rc == 0, err
    assert _ckpt_step(out / "checkpoints" / "last.ckpt") == 2


# -- --adapter: the help and the accepted values agree --------------------------------------------
def test_adapter_help_lists_only_accepted_values(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from geossl.training.trainer import resolve_adapter

    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.rindex("--adapter ADAPTER")  # the option's entry, not the usage line
    helptext = text[start:text.index("--pretrained PRETRAINED", start)]
    found = re.search(r"one of: ([a-z, -]+)\.", helptext)
    assert found is not None, helptext
    listed = [x.replace(" ", "") for x in found.group(1).split(",")]  # wrapped at hyphens
    assert listed == ["none", "linear", "nonlinear", "linear-frozen", "nonlinear-frozen"]
    for kind in listed:
        pairing = "aug" if kind == "none" else "geo"
        assert resolve_adapter(kind, pairing) in (None, kind)


def test_unknown_adapter_is_one_line(tmp_path: Path, sen12ms: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _methods()
    for adapter, pairing, why in (("stems", "geo", "unknown adapter 'stems'"),
                                  ("none", "geo", "not possible with geo pairing")):
        rc = main(_args(sen12ms, tmp_path / "run", "--sensors", "s1,s2", "--pairing", pairing,
                        "--adapter", adapter, "--max-steps", "1"))
        err = capsys.readouterr().err.strip()
        assert rc == 2 and why in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


# -- --stats / --normalization ------------------------------------------------------------------
def test_stats_and_named_normalisation(tmp_path: Path, sen12ms: Path) -> None:
    """`geossl stats` output drives pretraining; named normalisers per sensor; both recorded."""
    _methods()
    import json

    stats = tmp_path / "stats.json"
    assert main(["stats", "--data", "sen12ms", "--root", str(sen12ms), "--key", "image_s2",
                 "--out", str(stats), "--workers", "0"]) == 0
    out = tmp_path / "run"
    rc = main(_args(sen12ms, out, "--method", "simclr", "--pairing", "geo", "--sensors", "s1,s2",
                    "--stats", str(stats), "--normalization", "s1=s1_std", "--max-steps", "1"))
    assert rc == 0
    meta = _ckpt(out / "checkpoints" / "last.ckpt")["geossl"]
    mean = json.loads(stats.read_text())["stats"]["image_s2"]["mean"]
    assert meta["normalization"]["s1"] == "s1_std"
    assert meta["normalization"]["s2"]["mean"] == pytest.approx(mean)
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["stats"] == str(stats) and written["normalization"] == {"s1": "s1_std"}
    # --adapter none (the help's "none") trains with no adapter
    out2 = tmp_path / "run2"
    rc = main(_args(sen12ms, out2, "--method", "simclr", "--pairing", "aug", "--sensors", "s2",
                    "--adapter", "none", "--normalization", "s2=s2_offset", "--max-steps", "1"))
    assert rc == 0
    meta = _ckpt(out2 / "checkpoints" / "last.ckpt")["geossl"]
    assert meta["normalization"] == {"s2": "s2_offset"}
    assert meta["encoder_config"]["adapter"] is None


def _ckpt(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]


# -- --data ssl4eo ------------------------------------------------------------------------------
def test_pretrain_on_ssl4eo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SSL4EO-S12 product folders train directly (grid of geo windows over the S1 x S2 pairs)."""
    _methods()
    from tests.data.ssl4eo import data as gen

    root = gen.generate(tmp_path / "ssl4eo", size=48)
    out = tmp_path / "run"
    rc = main(_args(root, out, "--data", "ssl4eo", "--method", "simclr", "--pairing", "geo",
                    "--sensors", "s1,s2", "--patch-size", "32", "--max-steps", "2"))
    assert rc == 0, capsys.readouterr().err
    meta = _ckpt(out / "checkpoints" / "last.ckpt")
    assert int(meta["global_step"]) == 2
    assert meta["geossl"]["bands"]["s1"] == ["VV", "VH"]
    assert len(meta["geossl"]["bands"]["s2"]) == 13
    rc = main(_args(root, tmp_path / "bad", "--data", "ssl4eo", "--pairing", "aug",
                    "--sensors", "s2", "--max-steps", "1"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "patch size 64 is larger" in err and len(err.splitlines()) == 1


def test_temporal_pairing_on_a_multi_sensor_chip_index(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _methods()
    from tests.test_datamodule import _mixed_chips

    root = _mixed_chips(tmp_path / "chips")
    out = tmp_path / "run"
    rc = main(["pretrain", "--data", "chips", "--root", str(root), "--out", str(out),
               "--method", "byol", "--pairing", "temporal", "--sensors", "s1",
               "--backbone", "test_resnet", "--batch-size", "2", "--workers", "0",
               "--accelerator", "cpu", "--devices", "1", "--img-size", "16", "--max-steps", "1"])
    assert rc == 0, capsys.readouterr().err
    assert _ckpt(out / "checkpoints" / "last.ckpt")["geossl"]["encoder_config"]["in_chans"] == 2
    rc = main(["pretrain", "--data", "chips", "--root", str(root), "--out", str(out),
               "--method", "byol", "--pairing", "temporal", "--sensors", "s3",
               "--accelerator", "cpu", "--max-steps", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no chip of sensor 's3' in the index (has s1, s2)" in err
    assert len(err.splitlines()) == 1


def test_pretrain_says_how_many_values_were_filled(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """NaN/inf pixels are filled with 0 for training, and the run says how many."""
    import numpy as np
    from rasterio.transform import from_origin

    from tests.data.chips.data import write_raster

    for k in range(4):
        arr = np.full((3, 16, 16), 100.0 + k, dtype=np.float32)
        arr[0, :2, :] = np.nan  # 32 NaN values per chip
        arr[2, 5, :3] = np.inf  # and 3 infinite ones
        write_raster(tmp_path / "chips" / "s" / f"c{k}.tif", arr, "EPSG:32633",
                     from_origin(160.0 * k, 160, 10, 10), descriptions=["B04", "B03", "B02"])
    assert main(["index", str(tmp_path / "chips"), "--sensor", "s2"]) == 0
    out = tmp_path / "run"
    rc = main(["pretrain", "--data", "chips", "--root", str(tmp_path / "chips"), "--out",
               str(out), "--method", "simclr", "--pairing", "aug", "--sensors", "s2",
               "--backbone", "test_resnet", "--batch-size", "2", "--workers", "0",
               "--normalization", "s2=none", "--accelerator", "cpu", "--devices", "1",
               "--img-size", "16", "--max-steps", "2"])
    assert rc == 0, capsys.readouterr().err
    # 2 steps x 2 chips x 35 values
    assert "140 image value(s) were NaN or infinite and were filled with 0" in \
        capsys.readouterr().out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.mark.parametrize("sensors", ["s1,s2", "s1"])
def test_sensors_checked_against_the_dataset_up_front(tmp_path: Path, sensors: str,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    from tests.data.aid.data import generate_eurosat

    root = generate_eurosat(tmp_path / "data", n_per_class=1, size=16)
    out = tmp_path / "run"
    rc = main(["pretrain", "--data", "eurosat", "--root", str(root), "--out", str(out),
               "--sensors", sensors, "--pairing", "geo" if "," in sensors else "aug",
               "--backbone", "test_resnet", "--batch-size", "2", "--workers", "0",
               "--accelerator", "cpu", "--max-steps", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err == ("geossl pretrain: error: dataset 'eurosat' has sensor(s) s2; --sensors "
                   f"{sensors} asks for s1 (use --sensors s2)")
    assert not (out / "checkpoints").exists()  # refused before any training


# -- the SEN12MS configs do what their comments say ----------------------------------------------
SEN12MS_CONFIGS = ["moco_sen12ms_geo", "moco_sen12ms_fusion", "moco_sen12ms_partial_fusion"]


class _Stop(Exception):
    """Raised once the data module is set up: nothing needs to train."""


@pytest.mark.parametrize("name", SEN12MS_CONFIGS)
def test_sen12ms_configs_train_without_the_holdout_scenes(
        name: str, tmp_path: Path, sen12ms: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geossl.data.datamodule import SSLDataModule
    from geossl.datasets.sen12ms import HOLDOUT_SCENES, SEN12MSPatches

    seen: dict[str, list[str]] = {}
    real_setup = SSLDataModule.setup

    def setup(self: SSLDataModule, stage: str | None = None) -> None:
        real_setup(self, stage)
        assert self.train_dataset is not None
        seen["ids"] = [self.train_dataset.base.ids[i] for i in range(len(self.train_dataset))]
        raise _Stop

    monkeypatch.setattr(SSLDataModule, "setup", setup)
    config = REPO / "conf" / "pretrain" / f"{name}.yaml"
    with pytest.raises(_Stop):
        main(["pretrain", "--config", str(config), "--root", str(sen12ms), "--out",
              str(tmp_path / "run"), "--backbone", "test_resnet", "--batch-size", "2",
              "--workers", "0", "--accelerator", "cpu", "--max-steps", "1"])
    scene = ["_".join(i.split("_")[:3]) for i in seen["ids"]]
    everything = ["_".join(i.split("_")[:3]) for i in SEN12MSPatches(sen12ms, label=None).ids]
    assert set(everything) & HOLDOUT_SCENES  # the fake data has hold-out scenes ...
    assert not set(scene) & HOLDOUT_SCENES  # ... and the training side has none of them
    assert set(scene) == set(everything) - HOLDOUT_SCENES


def test_fusion_config_has_the_adapter_it_describes() -> None:
    from geossl.training.trainer import PretrainConfig, build_method, parse_sensors

    raw = yaml.safe_load((REPO / "conf" / "pretrain" /
                          "moco_sen12ms_fusion.yaml").read_text())
    cfg = PretrainConfig(**raw)
    cfg.sensors = parse_sensors(raw["sensors"])
    with torch.device("meta"):
        method = build_method(cfg, {"s1": 2, "s2": 13}, 1000)
    adapter = method.encoder.adapter
    assert adapter is not None and (adapter.in_chans, adapter.out_chans) == (17, 3)
    stem = next(m for m in method.encoder.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.in_channels == 3  # the 17 fused channels never reach the stem directly


def test_pretrain_selects_bands_of_a_mixed_index(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.tiling import chip_index
    from tests.data.chips.data import generate_chips

    folder = tmp_path / "chips"
    generate_chips(folder, n=3, size=16, bands=4, scene="full")  # B02,B03,B04,B08
    generate_chips(folder, n=3, size=16, bands=3, scene="short")  # a scene without B08
    gdf = chip_index.build_index(folder, progress=False)
    gdf["sensor"] = "s2"
    chip_index.write_index(gdf, folder)
    args = ["pretrain", "--data", "chips", "--root", str(folder), "--out", str(tmp_path / "run"),
            "--method", "simclr", "--pairing", "aug", "--sensors", "s2", "--backbone",
            "test_resnet", "--batch-size", "2", "--workers", "0", "--normalization", "s2=none",
            "--accelerator", "cpu", "--devices", "1", "--img-size", "16", "--max-steps", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--bands B02,B03,B04" in err and "bands=" not in err
    assert main([*args, "--bands", "B04,B03,B02"]) == 0, capsys.readouterr().err
    meta = _ckpt(tmp_path / "run" / "checkpoints" / "last.ckpt")["geossl"]
    assert meta["bands"] == {"s2": ["B04", "B03", "B02"]}
    assert meta["encoder_config"]["in_chans"] == 3
    assert "bands: B04,B03,B02" in (tmp_path / "run" / "config.yaml").read_text()


def test_build_method_records_the_datas_bands_and_normalisation() -> None:
    """The fit loop hands the data's band names and normalisation to the method when it builds
    it (the method never probes the data module for them): checkpoint metadata as plain
    Python, also for a method that is never fitted."""
    import numpy as np

    from geossl.training.trainer import PretrainConfig, build_method

    cfg = PretrainConfig(data="sen12ms", backbone="test_resnet", method="simclr",
                         sensors=["s2"], pairing="aug")
    norm = {"s2": {"mean": [np.float32(0.5)] * 3, "std": [np.float64(2.0)] * 3}}
    with torch.device("meta"):
        method = build_method(cfg, {"s2": 3}, 10, bands={"s2": ("B04", "B03", "B02")},
                              normalization=norm)
    meta = method.geossl_metadata()
    assert meta["bands"] == {"s2": ["B04", "B03", "B02"]}
    assert meta["normalization"] == {"s2": {"mean": [0.5] * 3, "std": [2.0] * 3}}
    assert type(meta["normalization"]["s2"]["mean"][0]) is float  # checkpoint-safe
    from geossl.methods import base

    assert not hasattr(base, "_find_attr")  # no attribute probing left in the methods
