"""Which samples ``evaluate`` uses: the dataset, its labels, and its train and test sides.

Train and test come, in this order of preference, from

1. a saved split (``--splits FILE``, written by ``geossl split``);
2. the dataset's own split (``split="train"``/``"test"``: AID, UC Merced, EuroSAT, the
   BigEarthNet v2 ``metadata.parquet``), see :func:`geossl.datasets.registry.native_split`;
3. an overlap-aware split made now (:func:`auto_split`) for datasets without one (SEN12MS,
   PolSAR, chips, BigEarthNet v1): footprints that overlap never fall on both sides (strategy
   ``overlap``, stratified by class); it is saved as ``OUT/splits.json`` so that the run can be
   repeated with ``--splits``.

Labels are the dataset's (built by :func:`geossl.datasets.registry.evaluation_dataset`): a
PolSAR scene needs its class raster (``label_path``; default: the single image in
``ROOT/labels``), a patch takes its majority class when that covers ``purity`` of it
(:func:`geossl.datasets.polsar.patch_labels`, as the PolSAR benchmark does); chips take their
class from a column of the chip index (``label_column``; default ``label`` when the index has
one). Samples the dataset's ``labelled_mask()`` leaves out (impure or class-0 PolSAR patches,
chips without a value) are not used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import ConcatDataset, Dataset

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.chips import LabelledChips
from geossl.datasets.protocol import footprints_of, labelled_mask, sample_ids, targets_of
from geossl.datasets.registry import evaluation_args, evaluation_dataset, native_split

#: fractions and seed of the split made when none is given
AUTO_FRACTIONS = (0.8, 0.2)
AUTO_SEED = 0
#: file the automatic split is saved to, in the output folder
AUTO_SPLIT_FILE = "splits.json"


@dataclass
class EvalData:
    """A dataset and its two sides (positions into ``dataset``)."""

    dataset: Dataset[dict[str, Any]]
    train: list[int]
    test: list[int]
    ids: list[str]
    key: str
    #: ``file`` (--splits), ``native`` (the dataset's own) or ``auto`` (made now)
    split_source: str = "file"
    #: where the automatic split was saved
    split_path: Path | None = None
    #: lines worth printing (automatic split, samples left out)
    notes: list[str] = field(default_factory=list)
    #: constructor arguments the dataset was built with (label source included)
    args: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# dataset arguments and labels
# --------------------------------------------------------------------------------------------
def parse_data_args(text: str | dict[str, Any] | None,
                    bands: str | Sequence[str] | None = None) -> dict[str, Any]:
    """``--data-args``: a YAML/JSON mapping of dataset constructor arguments (and ``--bands``).

    Example: ``'{patch_size: 16, purity: 0.9}'`` or ``'{"version": 1}'``; ``bands``
    (``B04,B03,B02``) becomes the ``bands`` argument.

    Raises:
        ConfigError: not a mapping, or bands given twice.
    """
    args = _parse_mapping(text)
    if bands:
        names = [b.strip() for b in bands.split(",")] if isinstance(bands, str) else \
            [str(b) for b in bands]
        if "bands" in args:
            raise ConfigError("bands given both in --data-args and as --bands")
        args["bands"] = [b for b in names if b]
    return args


def _parse_mapping(text: str | dict[str, Any] | None) -> dict[str, Any]:
    from geossl.core.options import parse_mapping

    return parse_mapping("--data-args", text)


# --------------------------------------------------------------------------------------------
# sides
# --------------------------------------------------------------------------------------------
def _all_ids(dataset: Dataset[dict[str, Any]]) -> list[str]:
    ids = sample_ids(dataset)
    if ids is not None:
        return ids
    n = len(dataset)  # type: ignore[arg-type]
    return [str(dataset[i].get("id", i)) for i in range(n)]


def split_ids(splits: str | os.PathLike[str] | dict[str, Any], name: str) -> list[str]:
    """Ids of side ``name`` of a split file (or of its dict ``{"splits": {name: ids}}``).

    Raises:
        ConfigError: the side is missing or empty.
        DataError: unreadable file.
    """
    if isinstance(splits, dict):
        table = splits.get("splits", splits)
        if name not in table or not table[name]:
            raise ConfigError(f"split {name!r} missing or empty (has {', '.join(table)})")
        return [str(i) for i in table[name]]
    from geossl.splits import load_split_ids

    return load_split_ids(Path(splits), name)


def auto_split(
    dataset: Any,
    ids: Sequence[str],
    out: str | os.PathLike[str] | None = None,
    fractions: Sequence[float] = AUTO_FRACTIONS,
    seed: int = AUTO_SEED,
) -> tuple[dict[str, list[str]], Path | None, str]:
    """Split a dataset that has no split of its own, without leakage.

    With footprints: strategy ``overlap`` (chips whose footprints share area are kept on one
    side), stratified by ``label``. Without (an image archive, whose images do not overlap): a
    deterministic split stratified by class (``targets``). Unlabelled samples
    (:func:`labelled_mask`) are left out.

    Args:
        dataset: the dataset (every sample).
        ids: its sample ids, in order.
        out: folder to save ``splits.json`` in (nothing saved when ``None``).
        fractions: train and test fractions.
        seed: split seed.

    Returns:
        ``({"train": ids, "test": ids}, saved path or None, a line describing it)``.

    Raises:
        DataError: too few samples or footprint groups to make both sides.
    """
    from geossl.splits import make_splits, save_splits

    gdf = footprints_of(dataset)
    strategy = "overlap"
    if gdf is None:
        strategy = "random"
        targets = targets_of(dataset)
        if targets is None:
            from geossl.eval.features import label_of

            targets = [int(label_of(dataset[i])) for i in range(len(ids))]
        gdf = pd.DataFrame({"chip_id": list(ids), "label": np.asarray(targets)})
    have = [str(i) for i in gdf["chip_id"]]
    if have != [str(i) for i in ids]:
        raise DataError("the dataset's footprints do not list its samples in order; give "
                        "--splits FILE (written by `geossl split`)")
    mask = labelled_mask(dataset)
    if mask is not None:
        gdf = gdf[mask]
    split = make_splits(gdf, strategy, fractions, ["train", "test"], seed=seed, label="label")
    sides = {name: [str(i) for i, s in zip(gdf["chip_id"], split) if s == name]
             for name in ("train", "test")}
    path = None
    if out is not None:
        from geossl.core.io import mark_output

        mark_output(out, "evaluate")  # the first file evaluate writes into OUT
        path = save_splits(Path(out) / AUTO_SPLIT_FILE, split, gdf)
    why = ("footprints that overlap stay on one side" if strategy == "overlap"
           else "no footprints: stratified by class")
    line = (f"no --splits and no built-in split: made a split (strategy {strategy}: {why}; "
            f"seed {seed}): train {len(sides['train'])}, test {len(sides['test'])}"
            + (f" -> {path}" if path is not None else ""))
    return sides, path, line


def resolve(
    data: str | Dataset[dict[str, Any]],
    root: str | os.PathLike[str] | None,
    splits: str | os.PathLike[str] | dict[str, Any] | None,
    train_split: str = "train",
    test_split: str = "test",
    *,
    data_args: dict[str, Any] | None = None,
    label_path: str | os.PathLike[str] | None = None,
    label_column: str | None = None,
    out: str | os.PathLike[str] | None = None,
) -> EvalData:
    """The dataset and the positions of its train and test sides (see the module docstring).

    Args:
        data: a dataset name (built with :func:`geossl.datasets.registry.get_dataset`) or a dataset.
        root: dataset folder (for a name).
        splits: saved split file (or its dict); ``None``: the dataset's own split, or one made
            now (saved in ``out``).
        train_split: name of the training side.
        test_split: name of the test side.
        data_args: more constructor arguments (``--data-args``).
        label_path: PolSAR class raster.
        label_column: chip-index column with each chip's class.
        out: output folder (the automatic split is saved there).

    Raises:
        ConfigError: no split available for a dataset object, train and test share samples,
            missing labels.
        DataError: split ids absent from the dataset.
    """
    notes: list[str] = []
    path: Path | None = None
    extra: dict[str, Any] = {}
    if isinstance(data, str):
        if root is None:
            raise ConfigError(f"--root is required for dataset {data!r}")
        if not Path(root).exists():
            raise DataError("dataset folder not found", root)
        kwargs = evaluation_args(data, root, data_args, label_path, label_column)
        key = f"{data}:{Path(root).resolve()}"
        extra = {k: os.fspath(v) if isinstance(v, os.PathLike) else v
                 for k, v in sorted(kwargs.items())}
        if extra or label_column:
            key += "|" + json.dumps({"args": extra, "label_column": label_column},
                                    sort_keys=True, default=str)
        if splits is None and native_split(data, root, **kwargs):
            train_ds = evaluation_dataset(data, root, kwargs, label_column, train_split)
            test_ds = evaluation_dataset(data, root, kwargs, label_column, test_split)
            n_tr = len(train_ds)  # type: ignore[arg-type]
            n_te = len(test_ds)  # type: ignore[arg-type]
            ids = _all_ids(train_ds) + _all_ids(test_ds)
            common = set(ids[:n_tr]) & set(ids[n_tr:])
            if common:  # a built-in split must keep its sides apart; never score on train
                raise ConfigError(f"the built-in {train_split!r} and {test_split!r} splits of "
                                  f"{data!r} share {len(common)} samples: give --splits FILE")
            ds: Dataset[dict[str, Any]] = ConcatDataset([train_ds, test_ds])
            return EvalData(ds, list(range(n_tr)), list(range(n_tr, n_tr + n_te)), ids, key,
                            "native", args=extra)
        dataset = evaluation_dataset(data, root, kwargs, label_column, "all")
        source = "file"
        if splits is None:
            ids = _all_ids(dataset)
            made, path, line = auto_split(dataset, ids, out)
            notes.append(line)
            splits, train_split, test_split, source = dict(made), "train", "test", "auto"
            key += f"|auto-split={AUTO_SEED}:{','.join(map(str, AUTO_FRACTIONS))}"
    else:
        dataset = data
        key = f"{type(data).__module__}.{type(data).__qualname__}:{len(data)}"  # type: ignore[arg-type]
        if splits is None:
            raise ConfigError("give --splits FILE (a saved overlap-aware split)")
        source = "file"
    ids = _all_ids(dataset)
    where = {i: p for p, i in enumerate(ids)}
    sides = []
    for name in (train_split, test_split):
        wanted = split_ids(splits, name)
        missing = [i for i in wanted if i not in where]
        if missing:
            raise DataError(f"{len(missing)} ids of split {name!r} are not in dataset "
                            f"(first: {missing[0]!r})", splits if not isinstance(splits, dict)
                            else None)
        sides.append([where[i] for i in wanted])
    shared = set(sides[0]) & set(sides[1])
    if shared:
        raise ConfigError(f"splits {train_split!r} and {test_split!r} share {len(shared)} samples")
    mask = labelled_mask(dataset)
    if mask is not None:
        before = len(sides[0]) + len(sides[1])
        sides = [[p for p in side if mask[p]] for side in sides]
        left_out = before - len(sides[0]) - len(sides[1])
        if left_out:
            notes.append(f"left out {left_out} unlabelled samples (impure or class 0 PolSAR "
                         "patches, chips without a label)")
        for name, side in zip((train_split, test_split), sides):
            if not side:
                raise DataError(f"split {name!r} has no labelled sample")
    if label_column is not None or isinstance(dataset, LabelledChips):
        extra = {**extra, "label_column": dataset.column if isinstance(dataset, LabelledChips)
                 else label_column}
    return EvalData(dataset, sides[0], sides[1], ids, key, source, path, notes, extra)
