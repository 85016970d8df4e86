"""Configuration of :func:`geossl.eval.run.evaluate`: the one declaration of ``geossl evaluate``.

Each field of :class:`EvaluateConfig` is an option of the library function and a flag of the
command (``labels_per_class`` -> ``--labels-per-class``, a key of ``--config`` YAML files),
with its default and help declared once (:func:`geossl.core.options.option`). ``__post_init__``
normalises and validates the values the same whether they come from the command line, a YAML
file or Python. Light (no torch): the command line imports it to build its parser.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from geossl.core.errors import ConfigError
from geossl.core.options import (
    empty_to_default,
    option,
    parse_ints,
    parse_mapping,
    parse_names,
)

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from geossl.eval.tasks import BinaryTask
    from geossl.pretrained.checkpoint import EncoderSource


def _data_help() -> str:
    from geossl.datasets.registry import data_help

    return data_help()


def _knn_k() -> tuple[int, ...]:
    from geossl.eval.knn import KS

    return tuple(KS)


def _knn_temperature() -> float:
    from geossl.eval.knn import TEMPERATURE

    return float(TEMPERATURE)


@dataclasses.dataclass
class EvaluateConfig:
    """Everything one evaluation needs: the one declaration of ``geossl evaluate``'s flags.

    Python callers may pass objects where the command line passes names: an
    :class:`~geossl.pretrained.checkpoint.EncoderSource` as ``ckpt``, a dataset of sample dicts as
    ``data``, a ``{"train": ids, "test": ids}`` mapping as ``splits``. The last fields
    (``cache_dir``, ``knn_k``, ``knn_temperature``, ``predictions``) are the library's only.
    """

    ckpt: str | os.PathLike[str] | EncoderSource = option(
        positional=True, flag_type=str,
        help="pretraining checkpoint, 'random'/'none' with --backbone, or named weights "
        "torchgeo:<Enum.MEMBER> / timm:<model>.<tag> (frozen, matched to the data's bands), "
        "or product:PATH (an embedding product: GeoParquet, zarr cube or GSE/Tessera "
        "GeoTIFF, matched to the chips by id or footprint)")
    preprocess: str = option("weights", "named weights: weights (their own normalisation, e.g. "
                             "/10000) or dataset (the data's default normalisation)")
    protocol: str | list[str] = option("linear,knn", "comma-separated: linear, knn, finetune, "
                                       "cluster", flag_type=str)
    data: str | Dataset[dict[str, Any]] | None = option(None, _data_help, flag_type=str | None)
    root: str | os.PathLike[str] | None = option(None, "dataset folder", flag_type=str | None)
    splits: str | os.PathLike[str] | dict[str, Any] | None = option(
        None, "saved overlap-aware split (JSON/GeoParquet); default: the dataset's own split, "
        "else an overlap-aware split made now and saved as OUT/splits.json",
        flag_type=str | None)
    data_args: dict[str, Any] = option(
        factory=dict, flag_type=str | dict[str, Any] | None,
        help="dataset arguments as a YAML/JSON mapping, e.g. '{patch_size: 16, purity: 0.9}' "
        "(polsar) or '{version: 1}' (bigearthnet)")
    bands: list[str] | None = option(
        None, "comma-separated band names to read, in order, e.g. B04,B03,B02 (every dataset: "
        "read by those that select bands, e.g. chips, sliced from the samples of the others); "
        "the encoder must take that many bands", flag_type=str | None)
    label_path: str | None = option(None, "polsar: class raster aligned with the scene (0 = "
                                    "unlabelled; default: the single image in ROOT/labels)")
    label_column: str | None = option(None, "chips: chip-index column holding each chip's class "
                                      "(default: 'label' when the index has it)")
    task: str | list[Any] | BinaryTask | None = option(
        None, "binary task(s) scored next to the classes: farmland (BigEarthNet) or NAME=Class "
        "A;Class B (positive when a sample has any of them); a list in YAML",
        flag_type=str | list[str] | None)
    train_split: str = option("train", "name of the training side in --splits or the dataset's "
                              "own split")
    test_split: str = option("test", "name of the test side in --splits or the dataset's own "
                             "split")
    labels_per_class: list[int] | None = option(
        None, "label budget(s) per class, e.g. 10 or 10,50", flag_type=str | None)
    labels: list[int] | None = option(None, "label budget(s) in total (stratified), e.g. 1024",
                                      flag_type=str | None)
    seeds: list[int] = option("0", "comma-separated seeds", flag_type=str)
    out: str | os.PathLike[str] | None = option("eval", "output folder", flag_type=str | None)
    sensor: str | list[str] | None = option(
        None, "sensor(s) fed to the encoder: for a geo encoder (per-sensor stems) the one to "
        "evaluate (default: its first), for a fusion encoder a subset such as s2 (default: "
        "all, stacked)", flag_type=str | None)
    backbone: str | None = option(None, "timm backbone for CKPT 'random' (or a plain "
                                  "state-dict file)")
    batch_size: int = option(256, "extraction batch size")
    accelerator: str = option("auto", "cpu, gpu or auto")
    bf16: bool = option(False, "bf16 autocast", bare=True)
    finetune_steps: int = option(200, "optimiser steps of the fine-tuned and from-scratch "
                                 "encoders")
    finetune_lr: float = option(1e-3, "learning rate of the fine-tuned and from-scratch "
                                "encoders")
    finetune_batch_size: int = option(64, "batch size of the fine-tuned and from-scratch "
                                      "encoders")
    freeze: str | list[str] | None = option(
        None, "finetune: encoder parts kept fixed while fine-tuning (partial freezing), "
        "comma-separated: adapters (the 1x1 band adapter(s)) or module names such as "
        "backbone.layer1; applied to the finetune and scratch rows alike",
        flag_type=str | list[str] | None)
    reinit: str | list[str] | None = option(
        None, "finetune: encoder parts whose weights are drawn afresh before fine-tuning, "
        "comma-separated, e.g. adapters", flag_type=str | list[str] | None)
    no_plots: bool = option(False, "skip the PNGs", bare=True)
    workers: int = option(0, "worker processes (0: in the main process)")
    # the library's only
    cache_dir: str | os.PathLike[str] | None = option(
        None, "feature cache (default OUT/cache when data is a name)", flag=False)
    knn_k: tuple[int, ...] = option(factory=_knn_k, help="kNN neighbourhood sizes", flag=False)
    knn_temperature: float = option(factory=_knn_temperature, help="kNN vote temperature",
                                    flag=False)
    predictions: bool = option(True, "write every run's test predictions to OUT/predictions/",
                               flag=False)

    def __post_init__(self) -> None:
        """Normalise the values given as text (``"10,50"``, ``"{version: 1}"``) and check them.

        Raises:
            ConfigError: one line naming the flag.
        """
        if self.data is None or self.data == "":
            raise ConfigError("--data is required (see geossl evaluate --help for the names)")
        self.labels_per_class = parse_ints("--labels-per-class", self.labels_per_class)
        self.labels = parse_ints("--labels", self.labels)
        self.seeds = parse_ints("--seeds", self.seeds) or [0]
        empty_to_default(self, "preprocess")
        self.data_args = parse_mapping("--data-args", self.data_args)
        self.bands = parse_names(self.bands)
        if self.bands and "bands" in self.data_args:
            raise ConfigError("bands given both in --data-args and as --bands")

    def dataset_args(self) -> dict[str, Any]:
        """The dataset's constructor arguments: ``data_args``, and ``bands`` when given."""
        return {**self.data_args, **({"bands": list(self.bands)} if self.bands else {})}
