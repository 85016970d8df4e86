"""Every config of conf/experiments/: named by step and command, documented in
docs/experiments.md, parsed by its command, built at full size (on the ``meta`` device), and run
on fake data in the real layouts (tiny backbone, batch and image size): one optimiser step of
every pretraining config, every evaluation and split config end to end, the sweep's cells laid
out, and the SEN12MS MoCo study chained split -> split -> pretrain -> fine-tune. Every pretraining
config through the real `geossl pretrain` command is in the slow tests."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from geossl.cli import main

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "conf" / "experiments"
CONFIGS = sorted(EXPERIMENTS.rglob("*.yaml"))
NAME = re.compile(r"^(\d\d)_(pretrain|evaluate|split|sweep)_[a-z0-9_]+\.yaml$")
STUDIES = ("simclr_backbones", "tsne_deepcluster", "bigearthnet_simclr", "moco_sen12ms")


def _command(config: Path) -> str:
    match = NAME.match(config.name)
    assert match, config.name
    return match.group(2)


def _ids(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _of(command: str) -> list[Path]:
    return [c for c in CONFIGS if _command(c) == command]


# ------------------------------------------------------------------------------ fake data
def _gen_cifar(root: Path) -> None:
    from tests.data.cifar.data import generate

    generate(root, per_batch=4, test=10)


def _gen_mnist(root: Path) -> None:
    from tests.data.mnist.data import generate

    generate(root, train=20, test=10)


def _gen_aid(root: Path) -> None:
    import shutil

    from tests.data.aid.data import generate_aid

    folder = generate_aid(root / "tmp", n_per_class=5, size=64)  # resized to 600 when read
    for item in folder.iterdir():
        shutil.move(str(item), root / item.name)


def _gen_tiny(root: Path) -> None:
    from tests.data.tinyimagenet.data import generate

    generate(root, train=6, val=3, test=1)


def _gen_ben(root: Path) -> None:
    from tests.data.bigearthnet.data import generate_v2

    generate_v2(root, n=24, s1=False)


def _gen_sen12ms(root: Path) -> None:
    from tests.data.sen12ms.data import generate

    generate(root, patches=4, size=32)


def _gen_polsar(root: Path) -> None:
    from tests.data.polsar.data import generate

    generate(root, rows=256, cols=256)  # 16 grid patches of 64 px, 4 checkerboard blocks


GENERATORS: dict[str, Callable[[Path], None]] = {
    "cifar10": _gen_cifar, "mnist": _gen_mnist, "aid": _gen_aid, "tinyimagenet": _gen_tiny,
    "bigearthnet": _gen_ben, "sen12ms": _gen_sen12ms, "polsar": _gen_polsar,
}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Fake data of a dataset in its real layout, written once per module."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            GENERATORS[name](root)
            made[name] = root
        return made[name]

    return get


def _tiny_backbone(backbone: str) -> str:
    if backbone.startswith("vit_"):
        return re.sub(r"^vit_[a-z]+_", "vit_tiny_", backbone)  # same patch size, tiny width
    return "test_convnext" if backbone.startswith("convnext") else "test_resnet"


def _tiny(raw: dict[str, Any], root: Path, out: Path) -> dict[str, Any]:
    """A config's values shrunk for a CPU step: backbone family and patch size kept."""
    cfg = dict(raw, root=str(root), out=str(out), batch_size=4, img_size=16, workers=0,
               accelerator="cpu", devices="1", precision="32", max_steps=1, splits=None,
               backbone=_tiny_backbone(raw["backbone"]), tsne_points=8)
    if cfg["backbone"] == "test_convnext":
        cfg["img_size"] = 32  # its stem and three downsamplings need 32 px
    if raw["method"] == "mae":  # patch 16 needs 32 px for 4 tokens; a 1-block decoder
        cfg["img_size"] = 32
        cfg["method_args"] = {**(raw.get("method_args") or {}), "decoder_dim": 32,
                              "decoder_depth": 1, "decoder_heads": 2}
    if raw.get("patch_size"):
        cfg["patch_size"] = cfg["img_size"]
    if raw.get("queue_size"):
        cfg["queue_size"] = 16
    if raw["method"] == "deepcluster":
        cfg["method_args"] = {**(raw.get("method_args") or {}), "num_clusters": 3}
    return cfg


# ------------------------------------------------------------------------------ the tests
def test_layout_and_docs() -> None:
    assert {p.name for p in EXPERIMENTS.iterdir() if p.is_dir()} == set(STUDIES)
    docs = (REPO / "docs" / "experiments.md").read_text()
    for config in CONFIGS:
        assert NAME.match(config.name), config.name
        assert str(config.relative_to(REPO)) in docs, f"{config} not in docs/experiments.md"
        raw = yaml.safe_load(config.read_text())
        if _command(config) in ("pretrain", "evaluate") and "out" in raw:
            assert raw["out"].startswith(f"runs/{config.parent.name}/"), config
    counts = {s: len(list((EXPERIMENTS / s).glob("*.yaml"))) for s in STUDIES}
    # 5 backbones x Adam/LAMB x CIFAR-10/AID (+ 2 evaluations, the AID split); SimCLR-R18 x 2
    # + DeepCluster x 2 (+ 2); BigEarthNet split, RGB, its grid, evaluation, the Tiny ImageNet
    # sanity run (+ evaluation, its six-cell grid), the epochs table's sweep;
    # MoCo: 2 splits, geo / fusion / optional fusion, fine-tuning on 1,024 labels, S1 + S2;
    # simclr_backbones also: MAE with ViT patch 4/8/16 on CIFAR-10 and AID, + AID batch 64 (7),
    # and the DINO arm of the ViT study: ViT p4/p8/p16 x CIFAR-10/AID (6) (issue 20); the
    # chip-size sweep, the PolSAR arm: split, ViT-B p4/p8/p16 x Adam/LAMB, evaluation (1 + 8)
    assert counts == {"simclr_backbones": 23 + 7 + 6 + 1 + 8, "tsne_deepcluster": 6,
                      "bigearthnet_simclr": 8, "moco_sen12ms": 7}


@pytest.mark.parametrize("config", [c for c in CONFIGS if _command(c) != "sweep"], ids=_ids)
def test_config_parses(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([_command(config), "--config", str(config), "--print_config"])
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    for key, value in yaml.safe_load(config.read_text()).items():
        assert printed[key.replace("-", "_")] == value, key


#: the split step that makes a study's split file, per dataset
SPLIT_STEPS = {"aid": EXPERIMENTS / "simclr_backbones" / "03_split_aid_5000_5000.yaml",
               "bigearthnet": EXPERIMENTS / "bigearthnet_simclr" / "00_split_quarter_3_1.yaml",
               "polsar": EXPERIMENTS / "simclr_backbones" / "06_split_polsar_checkerboard.yaml"}


#: bands per sensor of the fake datasets (what the data module reads off a sample)
CHANS = {"cifar10": {"rgb": 3}, "aid": {"rgb": 3}, "tinyimagenet": {"rgb": 3},
         "mnist": {"gray": 1}, "bigearthnet": {"s2": 12}, "sen12ms": {"s1": 2, "s2": 13},
         "polsar": {"polsar": 9}}


@pytest.mark.parametrize("config", _of("pretrain"), ids=_ids)
def test_pretrain_config_builds_full_size_on_meta(config: Path) -> None:
    """The configured backbone, optimiser, sizes and batch: built and stepped on ``meta``."""
    from geossl.datasets.bands import parse_bands
    from geossl.training.trainer import (
        PretrainConfig,
        build_method,
        check_combination,
        parse_sensors,
    )

    raw = yaml.safe_load(config.read_text())
    cfg = PretrainConfig(**raw)
    cfg.sensors = parse_sensors(raw["sensors"])
    check_combination(cfg)
    chans = dict(CHANS[cfg.data])
    selected = parse_bands(cfg.bands)
    if isinstance(selected, list):
        chans = {s: len(selected) for s in chans}
    with torch.device("meta"):
        method = build_method(cfg, chans, 1000)
        opt = method.configure_optimizers()["optimizer"]
        size = cfg.patch_size or cfg.img_size
        batch: dict[str, Any] = {f"image_{s}": torch.empty(cfg.batch_size, c, size, size)
                                 for s, c in chans.items()}
        batch["index"] = torch.arange(cfg.batch_size)
        if cfg.method == "deepcluster":
            method.pseudo_labels = torch.arange(cfg.batch_size) % method.options.num_clusters
        v1, v2 = method.make_views(batch)
        loss, _ = method.compute_loss(v1, v2, batch)
    assert loss.shape == () and method.hparams["backbone"] == cfg.backbone
    assert type(opt).__name__.lower().startswith(cfg.optimizer)
    assert v1.x.shape[-1] == cfg.img_size
    for key, value in (raw.get("method_args") or {}).items():
        assert method.hparams[key] == value


@pytest.mark.parametrize("config", _of("pretrain"), ids=_ids)
def test_pretrain_config_steps_on_fake_data(config: Path, fake: Callable[[str], Path],
                                            tmp_path: Path) -> None:
    """One optimiser step of the config's method, pairing, sensors, bands, labels and
    monitors on fake data in the real layout (tiny backbone of the same family)."""
    from geossl.data.datamodule import SSLDataModule
    from geossl.training.monitor import OnlineProbe
    from geossl.training.trainer import PretrainConfig, build_method, sample_in_chans

    raw = yaml.safe_load(config.read_text())
    cfg = PretrainConfig(**_tiny(raw, fake(raw["data"]), tmp_path))
    cfg.sensors = cfg.sensors.split(",") if isinstance(cfg.sensors, str) else cfg.sensors
    bands = cfg.bands.split(",") if isinstance(cfg.bands, str) else cfg.bands
    dm = SSLDataModule(cfg.data, cfg.root, sensors=cfg.sensors, pairing=cfg.pairing,
                       batch_size=cfg.batch_size, patch_size=cfg.patch_size,
                       labels=cfg.online_probe or cfg.tsne_every > 0 or bool(cfg.tsne_epochs),
                       label_scheme=cfg.label_scheme, band_selection=bands,
                       data_args=cfg.data_args, norm_names=cfg.normalization,
                       pin_memory=False)
    dm.setup("fit")
    assert dm.has_labels == (cfg.online_probe or cfg.tsne_every > 0 or bool(cfg.tsne_epochs))
    torch.manual_seed(0)
    method = build_method(cfg, sample_in_chans(dm), 10)
    batch = next(iter(dm.train_dataloader()))
    if cfg.method == "deepcluster":
        method.pseudo_labels = torch.arange(dm.num_samples) % method.options.num_clusters
    opt = method.configure_optimizers()["optimizer"]
    before = [p.detach().clone() for p in method.encoder.parameters()]
    v1, v2 = method.make_views(batch)
    loss, logs = method.compute_loss(v1, v2, batch)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, method.encoder.parameters()))
    if cfg.method in ("simclr", "moco"):
        assert 0 <= float(logs["contrastive_acc"]) <= 1
    if cfg.bands:
        assert sample_in_chans(dm)["s2"] == len(bands)  # the selection, from S2 only
    if cfg.online_probe:  # the probe as pretrain builds it (its task, e.g. farmland)
        from geossl.training.trainer import _monitors

        (probe,) = [m for m in _monitors(cfg, dm, tmp_path) if isinstance(m, OnlineProbe)]
        method.log = lambda *a, **k: None  # type: ignore[method-assign]
        probe.on_train_batch_end(type("T", (), {"datamodule": dm})(), method, None, batch, 0)
        assert probe.head is not None
        if cfg.probe_task:
            assert probe.task is not None and probe.task.name == cfg.probe_task
            assert probe.head.out_features == 2


@pytest.mark.parametrize("config", _of("evaluate"), ids=_ids)
def test_evaluate_config_runs_on_fake_data(config: Path, fake: Callable[[str], Path],
                                           tmp_path: Path) -> None:
    raw = yaml.safe_load(config.read_text())
    if raw["data"] == "sen12ms":
        pytest.skip("the fine-tuning config runs in test_moco_study_chain (it needs the split)")
    out = tmp_path / "eval"
    extra = []
    if raw.get("splits"):  # the study's split, made by its split step
        split = tmp_path / "split.json"
        step = SPLIT_STEPS[raw["data"]]
        assert main(["split", "--config", str(step), "--root", str(fake(raw["data"])), "--out",
                     str(split)]) == 0
        sides = json.loads(split.read_text())["splits"]
        assert sides["train"] and sides["test"] and not set(sides["train"]) & set(sides["test"])
        if raw["data"] == "aid":  # half of every class per side (5 per class: 2 or 3 of each)
            assert abs(len(sides["train"]) - len(sides["test"])) <= 3
        elif raw["data"] == "polsar":  # a checkerboard of 128 px blocks: 2 blocks per side
            assert len(sides["train"]) == len(sides["test"]) == 8
        else:  # a quarter of the data, 3:1; the rest unused
            assert len(sides["rest"]) > len(sides["train"]) > len(sides["test"])
        extra = ["--splits", str(split)]
    rc = main(["evaluate", "--config", str(config), "random", "--backbone", "test_resnet",
               "--root", str(fake(raw["data"])), "--out", str(out), "--accelerator", "cpu",
               "--workers", "0", "--batch-size", "16", "--no-plots", *extra,
               *(["--finetune-steps", "2", "--finetune-batch-size", "4"]
                 if "finetune" in raw["protocol"] else [])])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    protocols = {r["protocol"] for r in results["runs"]}
    wanted = {"knn20" if p == "knn" else p for p in raw["protocol"].split(",")}
    wanted |= {"scratch"} if "finetune" in wanted else set()  # the supervised row
    assert wanted <= protocols
    if raw.get("task") == "farmland":
        farm = [r for r in results["runs"] if r.get("task") == "farmland"]
        assert farm and {"sensitivity", "specificity"} <= set(farm[0]["metrics"])
        main_runs = [r for r in results["runs"] if r.get("task") == "classes"]
        assert "map_macro" in main_runs[0]["metrics"]


def test_sweep_config_lays_out_its_cells(fake: Callable[[str], Path], tmp_path: Path) -> None:
    # BigEarthNet and Tiny ImageNet grids, the epochs table, the backbone study's chip sizes
    assert len(_of("sweep")) == 4
    config = EXPERIMENTS / "bigearthnet_simclr" / "02_sweep_batch_temperature.yaml"
    out = tmp_path / "grid"
    assert main(["sweep", str(config), "--root", str(fake("bigearthnet")), "--out", str(out),
                 "--dry-run"]) == 0
    cells = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert cells == [f"batch_size={b},temperature={t}" for b in (1024, 2048, 256)
                     for t in (0.25, 0.5)]
    cell = yaml.safe_load((out / "batch_size=2048,temperature=0.25" / "pretrain.yaml")
                          .read_text())
    assert cell["batch_size"] == 2048 and cell["temperature"] == 0.25
    assert cell["method_args"]["base_batch_size"] == 2048 and cell["lr"] == 1.0
    assert cell["bands"] == "B04,B03,B02" and cell["online_probe"] is True
    table = (out / "results.csv").read_text().splitlines()
    assert len(table) == 7 and all(",pending" in row for row in table[1:])
    epochs = tmp_path / "epochs"  # the epochs table's three pretraining lengths
    assert main(["sweep", str(EXPERIMENTS / "bigearthnet_simclr" / "07_sweep_epochs.yaml"),
                 "--root", str(fake("bigearthnet")), "--out", str(epochs), "--dry-run"]) == 0
    assert sorted(p.name for p in epochs.iterdir() if p.is_dir()) == [
        "max_epochs=10", "max_epochs=25", "max_epochs=50"]
    cell = yaml.safe_load((epochs / "max_epochs=10" / "pretrain.yaml").read_text())
    assert cell["max_epochs"] == 10 and cell["probe_task"] == "farmland" and cell["lr"] == 1.0
    assert (epochs / "results_epochs.md").read_text().splitlines()[0] == "| epochs | repeats |"
    sizes = tmp_path / "chip_size"  # the chip-size figure's cells: 3 ViTs x 3 view sizes
    assert main(["sweep", str(EXPERIMENTS / "simclr_backbones" / "05_sweep_chip_size_aid.yaml"),
                 "--root", str(fake("aid")), "--out", str(sizes), "--dry-run"]) == 0
    cells = sorted(p.name for p in sizes.iterdir() if p.is_dir())
    assert len(cells) == 9 and "backbone=vit_base_patch4,img_size=224" in cells
    cell = yaml.safe_load((sizes / "backbone=vit_base_patch4,img_size=224" / "pretrain.yaml")
                          .read_text())
    assert (cell["img_size"], cell["patch_size"], cell["optimizer"]) == (224, 448, "adam")


def test_moco_study_chain(fake: Callable[[str], Path], tmp_path: Path) -> None:
    """The SEN12MS study as shipped: hold-out split, non-overlapping subset of the training
    scenes, MoCo geo pretraining on it, fine-tuning on a label budget vs supervised."""
    study = EXPERIMENTS / "moco_sen12ms"
    root = fake("sen12ms")
    hold, subset = tmp_path / "holdout.json", tmp_path / "subset.json"
    assert main(["split", "--config", str(study / "01_split_holdout.yaml"), "--root",
                 str(root), "--out", str(hold)]) == 0
    assert main(["split", "--config", str(study / "02_split_nonoverlapping.yaml"), "--root",
                 str(root), "--out", str(subset)]) == 0
    from geossl.datasets.sen12ms import HOLDOUT_SCENES

    sides = json.loads(hold.read_text())["splits"]
    kept = json.loads(subset.read_text())["splits"]
    assert all(i.rsplit("_", 1)[0] in HOLDOUT_SCENES for i in sides["test"])
    assert not set(kept["train"]) & set(sides["test"])  # pretraining never sees a test scene
    run = tmp_path / "moco_geo"
    assert main(["pretrain", "--config", str(study / "03_pretrain_moco_geo.yaml"), "--root",
                 str(root), "--splits", str(subset), "--out", str(run), "--backbone",
                 "test_resnet", "--batch-size", "4", "--queue-size", "16", "--patch-size",
                 "16", "--img-size", "16", "--max-steps", "1", "--workers", "0",
                 "--accelerator", "cpu", "--precision", "32"]) == 0
    out = tmp_path / "ft"
    assert main(["evaluate", str(run / "checkpoints" / "last.ckpt"), "--config",
                 str(study / "06_evaluate_finetune_1024.yaml"), "--root", str(root),
                 "--splits", str(hold), "--labels", "6", "--seeds", "0", "--finetune-steps",
                 "2", "--finetune-batch-size", "4", "--sensor", "s2", "--out", str(out),
                 "--accelerator", "cpu", "--workers", "0", "--no-plots",
                 "--reinit", "adapters"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {r["protocol"] for r in runs} == {"finetune", "scratch"}
    assert all(r["n_labels"] == 6 for r in runs)
    # the config's frozen adapters (a geo encoder's stems) and the flag's re-initialisation
    assert all(r["info"]["freeze"] == ["stems"] and r["info"]["reinit"] == ["stems"]
               for r in runs)
    both = tmp_path / "s1_s2"  # the study's best row: S1 and S2 together, frozen features
    assert main(["evaluate", str(run / "checkpoints" / "last.ckpt"), "--config",
                 str(study / "07_evaluate_s1_s2_together.yaml"), "--root", str(root),
                 "--splits", str(hold), "--labels", "6", "--seeds", "0", "--out", str(both),
                 "--accelerator", "cpu", "--workers", "0", "--no-plots"]) == 0
    doc = json.loads((both / "results.json").read_text())
    assert {r["protocol"] for r in doc["runs"]} >= {"linear", "knn20"}


@pytest.mark.slow
@pytest.mark.parametrize("config", _of("pretrain"), ids=_ids)
def test_pretrain_config_through_the_cli(config: Path, fake: Callable[[str], Path],
                                         tmp_path: Path) -> None:
    """`geossl pretrain --config CONFIG` with the tiny overrides, one step, checkpoint written."""
    raw = yaml.safe_load(config.read_text())
    small = _tiny(raw, fake(raw["data"]), tmp_path / "run")
    args = ["pretrain", "--config", str(config)]
    keys = ["root", "out", "batch_size", "img_size", "workers", "accelerator", "devices",
            "precision", "max_steps", "backbone"]
    keys += [k for k in ("patch_size", "queue_size") if raw.get(k)]
    keys += ["tsne_points"] if raw.get("tsne_every") or raw.get("tsne_epochs") else []
    for key in keys:
        args += [f"--{key.replace('_', '-')}", str(small[key])]
    if raw["method"] == "deepcluster":
        args += ["--method-args", json.dumps(small["method_args"])]
    if raw.get("splits"):
        args += ["--splits", "null"]
    assert main(args) == 0
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
