"""The four studies geossl came from: the settings each states, run by run, in one table.

Every config under ``conf/experiments/`` is one run of a study. This module is the one
owner of what each run must be:

* :data:`STUDIES`: per study, its title and where its settings come from;
* :data:`RUNS`: per config (``<study>/<file stem>``), the table or figure it reproduces, the
  published number where one is public, the settings the study **states** (checked against the
  YAML), the settings the study **leaves open** (geossl's choice, with why), and each
  **difference** from the study (the study's value and the reason geossl differs).

Each config's header is rendered from this table (:func:`header`) and checked against it, with
the YAML values, by :func:`check_config` (``tests/test_studies.py``). The header convention::

    # study: <key> -- <title>
    # reproduces: <table or figure>
    # published: <number and source, or why there is none>
    # settings: as in the study                  (when nothing differs) or, per difference,
    # difference: <key>: study <value>; <reason>
    # open: <key> -- <why geossl chose its value>   (a value the study leaves open)

A config that belongs to no study (a new method's recipe) says so in its first line:
``# study: none -- <what it is>``; :func:`check_config` skips it. Any other config under
``experiments/`` that is missing from :data:`RUNS` is reported.

Sources of the stated settings: the four studies as issue 13 describes them and the differences
issue 22 lists. A value those texts do not give is marked open, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geossl.conf import conf_dir, list_configs, resolve_config

#: the experiment configs' folder (the top-level conf/experiments/, or its copy in a wheel)
EXPERIMENTS_DIR = conf_dir() / "experiments"
#: header keys of the convention (in this order)
HEADER_KEYS = ("study", "reproduces", "published", "settings", "difference", "open")


@dataclass(frozen=True)
class Study:
    """One study.

    Attributes:
        key: folder name under ``experiments/``.
        title: what it asks, in a few words.
        source: where its settings are written down.
    """

    key: str
    title: str
    source: str


@dataclass(frozen=True)
class Run:
    """One run (one config) of a study.

    Attributes:
        config: ``<study>/<file stem>``.
        reproduces: the table or figure it reproduces.
        published: the published number and its source, or why none is given.
        stated: the settings the study states, as YAML keys and values of the config.
        open: settings the study leaves open (or that its description does not record): key
            -> why geossl chose its value.
        differences: key -> (the study's value, why the config differs).
    """

    config: str
    reproduces: str
    published: str
    stated: dict[str, Any] = field(default_factory=dict)
    open: dict[str, str] = field(default_factory=dict)
    differences: dict[str, tuple[Any, str]] = field(default_factory=dict)

    @property
    def study(self) -> str:
        """The study's key."""
        return self.config.split("/", 1)[0]


STUDIES: dict[str, Study] = {s.key: s for s in (
    Study("simclr_backbones", "SimCLR with ResNet-50, ViT-B patch 4/8/16 and ConvNeXt-T, each "
          "with Adam and LAMB, on CIFAR-10 then AID",
          "issue 13 (study 1) and issue 22 (ViT-B, AID 5,000/5,000, 3 repeats, clustering)"),
    Study("tsne_deepcluster", "SimCLR ResNet-18 + LARS at batch 128 with t-SNE snapshots across "
          "epochs; DeepCluster on MNIST and CIFAR-10",
          "issue 13 (study 2) and issue 22 (snapshot epochs 1, 21, 51, 91)"),
    Study("bigearthnet_simclr", "SimCLR ResNet-50 on BigEarthNet-S2 RGB, a batch x temperature "
          "grid, the farmland task, Tiny ImageNet as the sanity run",
          "issue 13 (study 3) and issue 22 (quarter of the data, 3:1, no silent lr rescaling)"),
    Study("moco_sen12ms", "MoCo v2 on SEN12MS S1/S2 (geo pairs, fusion, optional fusion), "
          "1,024-label fine-tuning vs supervised",
          "issue 13 (study 4) and issue 22 (10 S2 bands, frozen 1x1 adapter)"),
)}

# ------------------------------------------------------------------------------ shared notes
_NOT_RECORDED = ("not recorded in the study's description (issues 13, 22); geossl's choice "
                 "until the study's value is known")
_SIMCLR_B9 = ("SimCLR (Chen et al., ICML 2020) appendix B.9: ResNet-50 reaches about 94 % "
              "linear-evaluation accuracy on CIFAR-10 (long training, large batch); the authors' "
              "repository (google-research/simclr, README) gives about 91 % for ResNet-18 at "
              "32 px (batch 512, 1,000 epochs, lr 1.0, temperature 0.5, jitter strength 0.5, "
              "no blur); no public number for the other backbones")
_IIC = ("IIC (Ji et al., ICCV 2019) table 1: DeepCluster clustering accuracy 37.4 % on CIFAR-10, "
        "65.6 % on MNIST")
_NONE_PUBLIC = "none public: the study's own figures are not in this repository"

#: the study's 5,000 / 5,000 AID split (written by simclr_backbones/03_split_aid_5000_5000)
_AID_SPLIT = "runs/simclr_backbones/aid_split.json"
_BACKBONES = {"resnet50": "resnet50", "vit_p4": "vit_base_patch4", "vit_p8": "vit_base_patch8",
              "vit_p16": "vit_base_patch16", "convnext_t": "convnext_tiny"}


def _backbone_runs() -> list[Run]:
    runs = []
    for data, step in (("cifar10", "01"), ("aid", "03")):
        for short, name in _BACKBONES.items():
            for opt in ("adam", "lamb"):
                open_ = {k: _NOT_RECORDED for k in ("lr", "temperature", "max_epochs")}
                if data == "aid":
                    open_["img_size"] = ("the study's AID image size is not recorded here; "
                                         "geossl's choice: 128 px views of 256 px crops")
                    open_["batch_size"] = ("the study's AID batch is not recorded here; "
                                           "geossl's choice: 256")
                else:
                    open_["batch_size"] = _NOT_RECORDED
                runs.append(Run(
                    f"simclr_backbones/{step}_pretrain_{data}_{short}_{opt}",
                    reproduces=f"the study's backbone x optimiser table on {data} (linear probe, "
                               "kNN, clustering; mean +- std of 3 repeats)",
                    published=_SIMCLR_B9 if data == "cifar10" else _NONE_PUBLIC,
                    stated={"data": data, "method": "simclr", "backbone": name, "optimizer": opt,
                            "pairing": "aug", **({"splits": _AID_SPLIT, "split": "train"}
                                                 if data == "aid" else {})},
                    open=open_))
    for short in ("vit_p4", "vit_p8", "vit_p16"):  # the PolSAR arm: the study's ViT-B runs
        for opt in ("adam", "lamb"):
            runs.append(Run(
                f"simclr_backbones/07_pretrain_polsar_{short}_{opt}",
                reproduces="the study's PolSAR runs (AIRSAR San Francisco): ViT-B patch 4 / 8 / "
                           "16 x Adam / LAMB, read out by 08",
                published=_NONE_PUBLIC,
                stated={"data": "polsar", "method": "simclr", "backbone": _BACKBONES[short],
                        "optimizer": opt, "pairing": "aug", "splits": _POLSAR_SPLIT,
                        "split": "train"},
                open={"lr": _NOT_RECORDED, "temperature": _NOT_RECORDED,
                      "max_epochs": _NOT_RECORDED,
                      "patch_size": "64 px grid patches of the scene (the split's grid)",
                      "img_size": "64 px views (patch 4: 256 tokens, 8: 64, 16: 16)",
                      "batch_size": "32: the training blocks hold 112 patches of 64 px (real "
                                    "scene); the study's PolSAR batch is not recorded"}))
    return runs


#: the PolSAR split of the backbone study (written by simclr_backbones/06_split_polsar_...)
_POLSAR_SPLIT = "runs/simclr_backbones/polsar_split.json"


#: the supervised row of the t-SNE / DeepCluster study: the scratch row of --protocol finetune
_SUPERVISED = {"finetune_steps": "2,000 steps of batch 64 for the fine-tuned and the supervised "
               "(scratch) rows; " + _NOT_RECORDED}


def _evaluations() -> list[Run]:
    return [
        Run("simclr_backbones/02_evaluate_cifar10",
            reproduces="the study's CIFAR-10 table (frozen features), 3 repeats as mean +- std",
            published=_SIMCLR_B9,
            stated={"data": "cifar10", "protocol": "linear,knn,cluster", "seeds": "0,1,2"}),
        Run("simclr_backbones/04_evaluate_aid",
            reproduces="the study's AID table (frozen features), 3 repeats as mean +- std",
            published=_NONE_PUBLIC,
            stated={"data": "aid", "protocol": "linear,knn,cluster", "seeds": "0,1,2",
                    "splits": _AID_SPLIT}),
        Run("simclr_backbones/03_split_aid_5000_5000",
            reproduces="the study's AID split: 5,000 training and 5,000 test images",
            published="not applicable (a split)",
            stated={"data": "aid", "strategy": "random", "fractions": "0.5,0.5",
                    "out": _AID_SPLIT},
            open={"seed": "0; stratified by class (half of every class on each side)"}),
        Run("simclr_backbones/05_sweep_chip_size_aid",
            reproduces="the study's chip-size figure (accuracy against the image size, AID)",
            published=_NONE_PUBLIC,
            stated={"pretrain": "03_pretrain_aid_vit_p8_adam.yaml"},
            open={"grid": "backbone vit_base_patch4 / 8 / 16 (the study's ViTs) x img_size "
                          "64 / 128 / 224 px, each from a crop of twice its size (03's ratio): "
                          "the sizes and arms of the study's figure are not recorded",
                  "scale_lr": "none: 03's rate in every cell (the batch does not change)"}),
        Run("simclr_backbones/06_split_polsar_checkerboard",
            reproduces="the study's PolSAR data: AIRSAR San Francisco split into training and "
                       "test blocks",
            published="not applicable (a split)",
            stated={"data": "polsar", "out": _POLSAR_SPLIT},
            open={"strategy": "checkerboard of 128 px blocks, half per side (how the study "
                              "split the scene is not recorded); leak-free: no training patch "
                              "touches a test block",
                  "block_size": "128 px (two 64 px patches a side)",
                  "fractions": "0.5,0.5", "seed": "0"}),
        Run("simclr_backbones/08_evaluate_polsar",
            reproduces="the study's PolSAR table (frozen features), 3 repeats as mean +- std",
            published=_NONE_PUBLIC,
            stated={"data": "polsar", "protocol": "linear,knn,cluster", "seeds": "0,1,2",
                    "splits": _POLSAR_SPLIT}),
        Run("tsne_deepcluster/05_evaluate_cifar10",
            reproduces="the study's CIFAR-10 table (clustering NMI, ARI, accuracy; probes; the "
                       "supervised row) and t-SNE",
            published=_IIC,
            stated={"data": "cifar10", "protocol": "linear,knn,cluster,finetune"},
            open=_SUPERVISED),
        Run("tsne_deepcluster/06_evaluate_mnist",
            reproduces="the study's MNIST table (clustering NMI, ARI, accuracy; probes; the "
                       "supervised row) and t-SNE",
            published=_IIC,
            stated={"data": "mnist", "protocol": "linear,knn,cluster,finetune"},
            open=_SUPERVISED),
    ]


def _tsne_runs() -> list[Run]:
    runs = []
    for step, data in (("01", "cifar10"), ("02", "mnist")):
        runs.append(Run(
            f"tsne_deepcluster/{step}_pretrain_simclr_resnet18_{data}",
            reproduces="the study's figures of t-SNE snapshots and nearest-neighbour grids at "
                       "epochs 1, 21, 51 and 91",
            published="none public: a figure, judged by eye against the study's",
            stated={"data": data, "method": "simclr", "backbone": "resnet18",
                    "optimizer": "lars", "batch_size": 128, "tsne_epochs": [1, 21, 51, 91],
                    "neighbour_grids": True},
            open={"lr": _NOT_RECORDED, "temperature": _NOT_RECORDED,
                  "max_epochs": "at least 91 for the last snapshot; 100"}))
    for step, data in (("03", "mnist"), ("04", "cifar10")):
        runs.append(Run(
            f"tsne_deepcluster/{step}_pretrain_deepcluster_{data}",
            reproduces=f"the study's DeepCluster row on {data}",
            published=_IIC,
            stated={"data": data, "method": "deepcluster", "tsne_epochs": [1, 21, 51, 91],
                    "neighbour_grids": True},
            open={"backbone": "ResNet-18, as the SimCLR runs of the study",
                  "batch_size": _NOT_RECORDED, "lr": _NOT_RECORDED,
                  "max_epochs": _NOT_RECORDED,
                  "method_args": "100 clusters: DeepCluster's over-clustering of 10 classes"}))
    return runs


#: the study's batch x temperature grid
_GRID = {"batch_size": [256, 1024, 2048], "temperature": [0.25, 0.5]}
#: the study's quarter of BigEarthNet split 3:1 (written by bigearthnet_simclr/00_split_quarter_3_1)
_BEN_SPLIT = "runs/bigearthnet_simclr/quarter_split.json"


def _ben_runs() -> list[Run]:
    return [
        Run("bigearthnet_simclr/00_split_quarter_3_1",
            reproduces="the study's data: a quarter of BigEarthNet, split 3:1",
            published="not applicable (a split)",
            stated={"data": "bigearthnet", "fractions": "0.1875,0.0625,0.75",
                    "names": "train,test,rest", "out": _BEN_SPLIT},
            open={"strategy": "overlap: patches whose footprints touch stay on one side (how "
                              "the study drew its quarter is not recorded)",
                  "seed": "0"}),
        Run("bigearthnet_simclr/01_pretrain_simclr_resnet50_rgb",
            reproduces="the study's BigEarthNet row at batch 1024, temperature 0.5",
            published=_NONE_PUBLIC,
            stated={"data": "bigearthnet", "bands": "B04,B03,B02", "method": "simclr",
                    "backbone": "resnet50", "optimizer": "lars", "lr": 1.0, "max_epochs": 50,
                    "splits": _BEN_SPLIT, "split": "train", "online_probe": True,
                    "probe_task": "farmland"},
            open={"batch_size": "1024, a cell of the study's grid",
                  "temperature": "0.5, a cell of the study's grid",
                  "img_size": "120, the whole BigEarthNet patch",
                  "data_args": "num_classes 43: the CORINE labels of the same patches, so the "
                               "probe's 'Non-irrigated arable land' is exact (the 19 classes "
                               "merge it into 'Arable land'); needs v2's Reference_Maps or v1",
                  "probe_lr": "0.001 (geossl's default); the study's probe optimiser is not "
                              "recorded"}),
        Run("bigearthnet_simclr/02_sweep_batch_temperature",
            reproduces="the study's batch x temperature table (256 / 1024 / 2048 x 0.25 / 0.5)",
            published=_NONE_PUBLIC,
            stated={"pretrain": "01_pretrain_simclr_resnet50_rgb.yaml", "scale_lr": "none",
                    "grid": _GRID}),
        Run("bigearthnet_simclr/07_sweep_epochs",
            reproduces="the study's epochs table (results per number of pretraining epochs)",
            published=_NONE_PUBLIC,
            stated={"pretrain": "01_pretrain_simclr_resnet50_rgb.yaml", "scale_lr": "none"},
            open={"grid": "max_epochs 10 / 25 / 50: the study's 50 and two shorter runs (the "
                          "lengths of its table are not recorded); each keeps 01's 1,000 "
                          "warm-up steps (about 9 epochs at batch 1024 on the quarter), so the "
                          "10-epoch run is mostly warm-up"}),
        Run("bigearthnet_simclr/03_evaluate_multilabel_farmland",
            reproduces="the study's 19-class mAP and farmland accuracy / sensitivity / "
                       "specificity with the normalised confusion matrix",
            published=_NONE_PUBLIC,
            stated={"data": "bigearthnet", "bands": "B04,B03,B02", "task": "farmland",
                    "splits": _BEN_SPLIT}),
        Run("bigearthnet_simclr/04_pretrain_simclr_resnet50_tinyimagenet",
            reproduces="the study's Tiny ImageNet sanity run at batch 1024, temperature 0.5 (06: "
                       "all six cells)",
            published="none public: judged against chance (0.5 %)",
            stated={"data": "tinyimagenet", "method": "simclr", "backbone": "resnet50",
                    "optimizer": "lars", "lr": 1.0, "max_epochs": 50},
            open={"batch_size": "1024, a cell of the grid", "temperature": "0.5, a cell",
                  "img_size": "64, the whole Tiny ImageNet image"},
            ),
        Run("bigearthnet_simclr/06_sweep_tinyimagenet",
            reproduces="the study's six Tiny ImageNet cells (256 / 1024 / 2048 x 0.25 / 0.5)",
            published="none public: judged against chance (0.5 %)",
            stated={"pretrain": "04_pretrain_simclr_resnet50_tinyimagenet.yaml",
                    "scale_lr": "none", "grid": _GRID}),
        Run("bigearthnet_simclr/05_evaluate_tinyimagenet",
            reproduces="the sanity run's linear probe and kNN",
            published="none public: judged against chance (0.5 %)",
            stated={"data": "tinyimagenet", "protocol": "linear,knn"}),
    ]


_S2_10 = "B02,B03,B04,B05,B06,B07,B08,B8A,B11,B12"  # S2's 10 bands; S1 stays whole
_MOCO_OPEN = {
    "momentum": "0.99 (the seed recipe's value); the study's value is not recorded here",
    "batch_size": "256; the study's batch is not recorded here",
    "lr": _NOT_RECORDED, "max_epochs": _NOT_RECORDED, "queue_size": _NOT_RECORDED,
    "temperature": "0.2 (the seed recipe's value)",
    "patch_size": "128 px random crops of the 256 px patches",
    "img_size": "128 px (the crop, not resized)",
    "method_args": "elastic augmentation on, as in the study (augment.elastic_p 0.5, kornia's "
                   "default strength: the study's probability and strength are not recorded)",
}


def _moco_runs() -> list[Run]:
    runs = [
        Run("moco_sen12ms/01_split_holdout",
            reproduces="the study's test side: the official SEN12MS hold-out scenes",
            published="not applicable (a split)",
            stated={"data": "sen12ms", "strategy": "scene", "holdout": "sen12ms"}),
        Run("moco_sen12ms/02_split_nonoverlapping",
            reproduces="the study's 35,792-patch non-overlapping subset",
            published="35,792 patches (the study); a greedy subset gives about 35,800",
            stated={"data": "sen12ms", "strategy": "nonoverlapping"}),
    ]
    for step, pairing, name in (("03", "geo", "geo"), ("04", "fusion", "fusion"),
                                ("05", "partial-fusion", "partial_fusion")):
        runs.append(Run(
            f"moco_sen12ms/{step}_pretrain_moco_{name}",
            reproduces=f"the study's {pairing} pretraining (MoCo v2), read out by 06",
            published=_NONE_PUBLIC,
            stated={"data": "sen12ms", "sensors": "s1,s2", "pairing": pairing,
                    "method": "moco", "backbone": "resnet50", "bands": _S2_10,
                    "adapter": "linear-frozen",
                    "splits": "runs/moco_sen12ms/nonoverlapping_split.json"},
            open=dict(_MOCO_OPEN)))
    runs.append(Run(
        "moco_sen12ms/06_evaluate_finetune_1024",
        reproduces="the study's table: MoCo v2 + 1,024 labels vs supervised with the same labels",
        published=_NONE_PUBLIC,
        stated={"data": "sen12ms", "protocol": "finetune", "labels": "1024", "bands": _S2_10,
                "splits": "runs/moco_sen12ms/holdout_split.json"},
        open={"seeds": "5 label draws", "finetune_steps": _NOT_RECORDED,
              "finetune_lr": _NOT_RECORDED,
              "freeze": "adapters: the 1x1 adapter, frozen in pretraining (issue 22), stays "
                        "frozen while fine-tuning; which further parts the study's partial "
                        "freezing option fixed is not recorded",
              "reinit": "none: the pretrained adapter is kept; the study's option to draw the "
                        "adapter afresh is --reinit adapters (whether its table used it is not "
                        "recorded)"},
        differences={"sensor": ("S1 + S2 together (the study's best row)", "fine-tuning reads "
                                "one sensor of a geo encoder (--sensor); 07 reads both, on "
                                "frozen features")}))
    runs.append(Run(
        "moco_sen12ms/07_evaluate_s1_s2_together",
        reproduces="the study's best row: the geo encoder on S1 and S2 together, 1,024 labels",
        published=_NONE_PUBLIC,
        stated={"data": "sen12ms", "sensor": "s1,s2", "labels": "1024", "bands": _S2_10,
                "splits": "runs/moco_sen12ms/holdout_split.json"},
        open={"seeds": "5 label draws"},
        differences={"protocol": ("fine-tuning", "frozen features (linear, kNN): fine-tuning "
                                  "reads one sensor of a geo encoder")}))
    return runs


RUNS: dict[str, Run] = {r.config: r for r in (
    _backbone_runs() + _evaluations() + _tsne_runs() + _ben_runs() + _moco_runs())}


# ------------------------------------------------------------------------------ headers
def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def header(run: Run) -> list[str]:
    """The header lines (with ``# ``) that open the config of ``run``."""
    lines = [f"# study: {run.study} -- {STUDIES[run.study].title}",
             f"# reproduces: {run.reproduces}",
             f"# published: {run.published}"]
    if not run.differences:
        lines.append("# settings: as in the study")
    for key, (value, why) in run.differences.items():
        lines.append(f"# difference: {key}: study {_show(value)}; {why}")
    for key, why in run.open.items():
        lines.append(f"# open: {key} -- {why}")
    return lines


def header_fields(path: Path) -> dict[str, list[str]]:
    """The convention's ``# key: value`` lines at the top of ``path`` (key -> values)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line.lstrip("#").strip().partition(":")
        if sep and key in HEADER_KEYS:
            found.setdefault(key, []).append(value.strip())
    return found


def source_of(path: Path) -> str:
    """One line saying what a shipped config is: a study's run, a recipe or a default."""
    fields = header_fields(path)
    study = (fields.get("study") or [""])[0].split(" -- ")[0].strip()
    if study and study != "none":
        where = (fields.get("reproduces") or ["?"])[0]
        return f"experiment (study {study}: {where})"
    if "recipe" in path.read_text(encoding="utf-8").split("\n", 1)[0]:
        return "recipe (not a study run)"
    if study == "none":
        return "method config (no study)"
    return "defaults of a command"


def config_key(path: Path) -> str:
    """``<study>/<stem>`` of a config under ``experiments/``."""
    return f"{path.parent.name}/{path.stem}"


def check_config(path: Path) -> list[str]:
    """Every way the config at ``path`` disagrees with :data:`RUNS` (empty: none).

    Checks that the config is in the table (or says ``# study: none``), that its header is the
    rendered :func:`header`, that every stated setting has the study's value, and that every
    difference really differs.
    """
    fields = header_fields(path)
    study = (fields.get("study") or [""])[0].split(" -- ")[0].strip()
    if study == "none":
        return []
    key = config_key(path)
    if key not in RUNS:
        return [f"{key}: not in geossl.conf.studies.RUNS (add it, or start its header with "
                "'# study: none -- ...')"]
    run = RUNS[key]
    problems = []
    lines = path.read_text(encoding="utf-8").splitlines()
    want = header(run)
    if lines[: len(want)] != want:
        problems.append(f"{key}: header is not the table's (geossl.conf.studies.header)")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for name, value in run.stated.items():
        if name in run.differences:
            continue
        if values.get(name) != value:
            problems.append(f"{key}: {name} is {values.get(name)!r}, the study states {value!r}")
    for name, (value, _why) in run.differences.items():
        if values.get(name) == value:
            problems.append(f"{key}: {name} is listed as a difference but equals the study's")
    return problems


def describe(name: str | None = None) -> str:
    """Text of ``geossl config``: the list of shipped configurations, or one of them.

    It lives here, beside :func:`source_of`, so that ``geossl.conf`` never imports this module.

    Args:
        name: a shipped configuration (or a file) to print; None lists them all.
    """
    if name is not None:
        path = resolve_config(name)
        return f"# {path}\n{path.read_text(encoding='utf-8')}"
    configs = list_configs()
    width = max(len(c.name) for c in configs)
    groups: dict[str, list[str]] = {}
    for c in configs:
        source = source_of(c.path)
        kind = source.split(" ", 1)[0]
        text = source.removeprefix("experiment ") if kind == "experiment" else c.summary
        groups.setdefault(kind, []).append(f"  {c.name:<{width}}  {text}".rstrip())
    titles = {"experiment": "experiments: runs of the four studies (study: the table or figure "
                            "it reproduces; `geossl config show NAME` for its settings)",
              "method": "method configs (no study)",
              "recipe": "recipes: starting points for your own runs, not runs of a study",
              "defaults": "defaults of a command and dataset references"}
    lines = [f"{len(configs)} configurations shipped in {conf_dir()} (use the name with --config):"]
    for kind, title in titles.items():
        if groups.get(kind):
            lines += [title, *groups[kind]]
    return "\n".join(lines)
