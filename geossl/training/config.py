"""Configuration of the library's entry points: the one declaration of a command's flags.

:class:`PretrainConfig` lists every option of :func:`geossl.training.trainer.pretrain`, each with
its
default and help (:func:`geossl.core.options.option`); ``geossl pretrain``'s flags are generated
from
it. This module is light (no torch, no rasterio) because the command line imports it to build
its parser.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geossl.core.errors import ConfigError, first_line
from geossl.core.options import option
from geossl.runtime.machine import default_workers


def _datasets_help() -> str:
    from geossl.datasets.registry import DATASETS

    return "dataset: " + ", ".join(DATASETS)


@dataclasses.dataclass
class PretrainConfig:
    """Everything one pretraining run needs: the one declaration of ``geossl pretrain``'s flags.

    Each field is a flag (``max_steps`` -> ``--max-steps``, a key of ``--config`` YAML files)
    with the default and help declared here; ``None`` for a method option (``lr``,
    ``temperature``, ``momentum``, ...) keeps the method's own default.
    """

    data: str = option("sen12ms", _datasets_help)
    root: str | None = option(None, "dataset folder")
    out: str = option("runs/pretrain", "output folder")
    seed: int = option(0, "random seed")
    workers: int = option(factory=default_workers,
                          help=lambda: "data-loader worker processes (0: in the main process; "
                          f"default min(4, available cores) = {default_workers()} here)")
    accelerator: str = option("auto", "cpu, gpu or auto")
    devices: str = option("auto", "devices per node: a number, a list (0,2) or auto",
                          flag_type=str | int)
    num_nodes: int = option(1, "machines taking part (under SLURM or torchrun: the job's nodes)")
    strategy: str = option("auto", "Lightning strategy: auto (DDP on several devices), ddp, "
                           "ddp_spawn, fsdp, ...")
    max_steps: int = option(-1, "stop after N optimiser steps")
    max_epochs: int | None = option(None, "stop after N epochs")
    batch_size: int = option(64, "batch size per device")
    precision: str = option("auto", "auto (bf16-mixed on GPU, 32 on CPU), 32, bf16-mixed, "
                            "16-mixed")
    method: str = option("simclr", "simclr, moco, byol, deepcluster, mae, dino, barlow or "
                         "vicreg")
    backbone: str = option("resnet50", "timm model name (resnet18, resnet50, "
                           "vit_small_patch16_224, convnext_tiny, ...)")
    sensors: list[str] = option(factory=lambda: ["s1", "s2"], flag_type=str | list[str],
                                help="comma-separated sensors, e.g. s1,s2 or s2")
    pairing: str = option("geo", "geo, aug, fusion, partial-fusion or temporal")
    resume: str | None = option(None, "checkpoint to continue from, or 'last' "
                                "(OUT/checkpoints/last.ckpt)")
    lr: float | None = option(None, "base learning rate (method default when unset)")
    optimizer: str | None = option(None, "adam, adamw, sgd, lars or lamb (method default when "
                                   "unset)")
    weight_decay: float | None = option(None, "weight decay")
    warmup_steps: int | None = option(None, "linear warm-up steps before the cosine schedule")
    temperature: float | None = option(None, "contrastive temperature (SimCLR, MoCo)")
    momentum: float | None = option(None, "MoCo/BYOL momentum of the key/target encoder "
                                    "(e.g. 0.99)")
    queue_size: int | None = option(None, "MoCo queue length")
    adapter: str | None = option(
        None, "1x1 band adapter before an RGB-shaped backbone, one of: none, linear, nonlinear, "
        "linear-frozen, nonlinear-frozen. Unset or none: no adapter, the backbone's first layer "
        "takes the N bands (not possible with geo pairing); with geo pairing it is the kind of "
        "the per-sensor stems (default linear)")
    pretrained: str | None = option(
        None, "weights to start from: torchgeo:<Enum.MEMBER> (e.g. torchgeo:ResNet50_Weights."
        "SENTINEL2_ALL_MOCO; the data's bands are matched to the weights' by name, --backbone "
        "follows the weights), timm:<model>.<tag>, or a local file of backbone weights (RGB "
        "stems are adapted)")
    preprocess: str = option("weights", "with named --pretrained weights: weights (normalise "
                             "with the weights' own preprocessing, e.g. /10000) or dataset "
                             "(--normalization/--stats/the sensor's default)")
    backbone_lr_scale: float | None = option(None, "the encoder learns at lr times this "
                                             "(e.g. 0.1 when continuing from --pretrained)")
    freeze_stem_steps: int | None = option(None, "keep the band adapter and the first "
                                           "convolution fixed for the first N steps")
    patch_size: int | None = option(None, "crop loaded samples to this many pixels (full samples "
                                    "when unset; --data ssl4eo: size of the grid windows read, "
                                    "default 64)")
    img_size: int | None = option(None, "size of the augmented views fed to the encoder")
    splits: str | None = option(None, "split file from `geossl split`: train on its --split "
                                "side only")
    split: str = option("train", "which side of --splits")
    index: str | None = option(None, "chip index for --data chips (default ROOT/index.parquet)")
    bands: list[str] | dict[str, list[str]] | None = option(
        None, "comma-separated band names to read, in order, e.g. B04,B03,B02 (every dataset: "
        "read by those that select bands, e.g. chips, where a mixed-band index needs it; sliced "
        "from the samples of the others), or per sensor: '{s2: [B04, B03, B02], s1: [VV]}' "
        "(or s2=B04,B03,B02;s1=VV); checkpoints record the selection",
        flag_type=dict[str, list[str]] | str | list[str] | None)
    data_args: dict[str, Any] = option(
        factory=dict, flag_type=dict[str, Any] | None,
        help="further dataset arguments as a YAML/JSON mapping, e.g. '{holdout: train}' "
        "(SEN12MS without the official hold-out scenes)")
    stats: str | None = option(None, "band statistics JSON from `geossl stats --out`: "
                               "standardise each sensor with its mean/std (key image_<sensor>, "
                               "or the file's only entry for one sensor) instead of the "
                               "sensor's default")
    normalization: dict[str, str] = option(
        factory=dict, flag_type=str | dict[str, str] | None,
        help="per-sensor normaliser, SENSOR=NAME[,SENSOR=NAME], e.g. s2=s2_offset (Sentinel-2 "
        "from processing baseline 04.00 on: DN - 1000), s1=s1_std, x=none (raw values); names "
        "of geossl.pretrained.normalize.NORMALIZERS")
    ckpt_every: int = option(500, "save a checkpoint every N optimiser steps (and last.ckpt)")
    log_every: int | None = option(None, "log metrics every N steps (default: ~20 points per "
                                   "run, at most 50)")
    compile: bool = option(False, "torch.compile the encoders (worth it on a GPU for long runs)")
    channels_last: bool = option(False, "channels_last memory format (faster convolutions on "
                                 "GPUs)")
    method_args: dict[str, Any] = option(factory=dict, flag_type=dict[str, Any] | None,
                                         help="further method options, e.g. {num_clusters: 30}")
    mae_groups: str | None = option(None, "MAE spectral groups by band name, ';' between groups "
                                    "(SatMAE), e.g. B02,B03,B04;B05,B06,B07,B08,B8A;B11,B12")
    online_probe: bool = option(False, "train a linear classifier on the detached features of "
                                "every batch and log its accuracy (probe/acc); needs labelled "
                                "samples")
    probe_lr: float = option(1e-3, "Adam learning rate of the online probe")
    label_scheme: str | None = option(None, "SEN12MS scene labels for the probe and t-SNE: igbp "
                                      "(17 classes, default) or dfc (10-class simplified IGBP)")
    sampler: str = option("grid", "windows of a geo dataset (--data ssl4eo, sen12ms-geo): grid "
                          "(geossl's grid inside every footprint), torchgeo-grid or "
                          "torchgeo-random (TorchGeo's GridGeoSampler/RandomGeoSampler or "
                          "their 0.10 successors, drawn once with --seed)")
    tsne_every: int = option(0, "write OUT/tsne/epoch=NNN.png every N epochs (and before "
                             "training); 0: off")
    tsne_points: int = option(1000, "training samples embedded in each t-SNE snapshot")
    join_timeout: int = option(300, "with --num-nodes > 1: seconds to wait for every node's "
                               "processes to join before giving up with one line (the wait "
                               "for a node started late, or never)")
    sync_batchnorm: str = option("auto", "BatchNorm statistics over every process's batch "
                                 "(SyncBatchNorm) when several processes train: auto (on with "
                                 "several processes), on or off")
    tsne_epochs: list[int] | None = option(
        None, "also write OUT/tsne/epoch=NNN.png after these epochs, e.g. 1,21,51,91 (a "
        "study's listed snapshots; with or without --tsne-every)",
        flag_type=str | list[int] | None)
    neighbour_grids: bool = option(False, "with every t-SNE snapshot also write "
                                   "OUT/neighbours/epoch=NNN.png: the nearest samples of the "
                                   "same queries (one per class), to compare across epochs")
    probe_task: str | None = option(
        None, "with --online-probe: train the probe on a binary task instead of the classes, "
        "e.g. farmland (BigEarthNet) or NAME=Class A;Class B (positive when a sample has any of "
        "them); probe/acc is then the task's accuracy")

    @classmethod
    def from_namespace(cls, ns: Any) -> PretrainConfig:
        """Build a config from a parsed CLI namespace (extra keys are ignored)."""
        values = dict(vars(ns)) if not hasattr(ns, "as_dict") else ns.as_dict()
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k.replace("-", "_"): v for k, v in values.items()}
        kwargs = {k: v for k, v in kwargs.items() if k in names}
        if isinstance(kwargs.get("sensors"), str):
            kwargs["sensors"] = parse_sensors(kwargs["sensors"])
        if kwargs.get("method_args") is None:
            kwargs["method_args"] = {}
        if kwargs.get("bands") is not None:
            kwargs["bands"] = parse_band_flag(kwargs["bands"])
        if kwargs.get("data_args") is None:
            kwargs["data_args"] = {}
        kwargs["tsne_epochs"] = parse_epochs(kwargs.get("tsne_epochs"))
        kwargs["normalization"] = parse_normalization(kwargs.get("normalization"))
        if kwargs.get("devices") is not None:
            kwargs["devices"] = str(kwargs["devices"])
        _run_config_paths(kwargs, values.get("config"))
        return cls(**kwargs)


def parse_epochs(value: Any) -> list[int] | None:
    """``"1,21,51,91"`` or ``[1, 21, 51, 91]`` -> sorted positive epochs; None/empty -> None.

    Raises:
        ConfigError: an item that is not a positive whole number.
    """
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        epochs = sorted({int(str(v).strip()) for v in items if str(v).strip()})
    except ValueError:
        raise ConfigError(f"--tsne-epochs expects epochs like 1,21,51,91, got {value!r}") from None
    if not epochs or epochs[0] < 1:
        raise ConfigError(f"--tsne-epochs expects positive epochs like 1,21,51,91, got {value!r}")
    return epochs


#: fields holding paths; ``OUT/config.yaml`` stores them absolute
PATH_FIELDS = ("root", "out", "index", "splits", "stats", "pretrained")


#: first line of ``OUT/config.yaml``: marks the file as the configuration of the run beside it
RUN_CONFIG_HEADER = "# geossl pretrain: configuration of the run in this folder"


def _run_config_paths(kwargs: dict[str, Any], config_files: Any) -> None:
    """Read the paths of a run's own ``config.yaml`` the same from any folder.

    A run's ``OUT/config.yaml`` (marked by :data:`RUN_CONFIG_HEADER`) belongs to its folder:
    unless ``--out`` is given on the command line, ``out`` is the config's folder, so
    ``geossl pretrain --config RUN/config.yaml --resume last`` resumes RUN from anywhere, even
    after RUN was moved. Files written before (no header) hold paths relative to the folder
    the run was started from; when their ``out`` is the tail of the config's folder that folder
    is recovered, and ``out`` and the other relative paths read from the file are resolved
    against it.
    """
    import yaml

    files = list(config_files or [])
    if not files:
        return
    cfile = Path(os.fspath(files[-1])).expanduser().absolute()
    run = cfile.parent
    try:
        text = cfile.read_text()
        doc = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return
    if not isinstance(doc, dict) or kwargs.get("out") != doc.get("out"):
        return  # not a run's config, or --out given on the command line (it wins)
    if text.startswith(RUN_CONFIG_HEADER):
        kwargs["out"] = str(run)
        return
    stored = Path(str(doc.get("out") or ""))
    parts = stored.parts
    if stored.is_absolute() or not parts or run.parts[-len(parts):] != parts:
        return
    base = Path(*run.parts[: len(run.parts) - len(parts)])
    for key in PATH_FIELDS:
        value = doc.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and kwargs.get(key) == value:
            kwargs[key] = str(base / value)


def parse_band_flag(value: Any) -> list[str] | dict[str, list[str]] | None:
    """``--bands``: ``B04,B03`` -> list; ``{s2: [B04], s1: [VV]}`` or ``s2=B04;s1=VV`` -> dict.

    Raises:
        ConfigError: a mapping whose values are not band lists, or a malformed item.
    """
    import yaml

    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise ConfigError(f"--bands {text!r} is not a valid mapping "
                                  f"({first_line(err)})") from None
        elif "=" in text:
            value = {}
            for item in (x.strip() for x in text.split(";")):
                sensor, sep, names = item.partition("=")
                if not sep or not sensor.strip():
                    raise ConfigError(f"--bands expects SENSOR=B1,B2[;SENSOR=...], got {item!r}")
                value[sensor.strip()] = names
        else:
            return [b.strip() for b in text.split(",") if b.strip()] or None
    if isinstance(value, Mapping):
        out: dict[str, list[str]] = {}
        for sensor, names in value.items():
            items = names.split(",") if isinstance(names, str) else names
            if not isinstance(items, Sequence) or not items:
                raise ConfigError(f"--bands: sensor {sensor} needs a list of band names, got "
                                  f"{names!r}")
            out[str(sensor)] = [str(b).strip() for b in items if str(b).strip()]
        return out or None
    return [str(b).strip() for b in value if str(b).strip()] or None


def parse_sensors(value: str | Sequence[str]) -> list[str]:
    """``"s1,s2"`` or ``["s1", "s2"]`` -> ``["s1", "s2"]``."""
    items = value.split(",") if isinstance(value, str) else list(value)
    sensors = [s.strip() for s in items if s.strip()]
    if not sensors:
        raise ConfigError("--sensors is empty")
    return sensors


def parse_normalization(value: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"s2=s2_offset,s1=s1_std"`` (or a mapping) -> ``{"s2": "s2_offset", "s1": "s1_std"}``.

    Raises:
        ConfigError: an item without ``=``, or an unknown normaliser name.
    """
    from geossl.pretrained.normalize import get_normalizer

    if value is None:
        return {}
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for item in (x.strip() for x in value.split(",")):
            if not item:
                continue
            sensor, sep, name = item.partition("=")
            if not sep or not sensor.strip() or not name.strip():
                raise ConfigError(f"--normalization expects SENSOR=NAME[,SENSOR=NAME], got "
                                  f"{item!r}")
            pairs[sensor.strip()] = name.strip()
    else:
        pairs = {str(k).strip(): str(v).strip() for k, v in dict(value).items()}
    for name in pairs.values():
        get_normalizer(name)  # ConfigError naming the choices for an unknown one
    return pairs
