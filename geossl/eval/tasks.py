"""Binary tasks defined as a set of a dataset's source classes (``--task``).

A binary task is positive for a sample that carries *any* of its source classes: on a
multi-label dataset (BigEarthNet) any of them among the sample's labels, on a single-label one
(AID, SEN12MS scenes) its class among them. :data:`PRESETS` holds the named ones (defined,
with :class:`BinaryTask` and the parsing of ``--task``, in :mod:`geossl.datasets.labels`, below
pretraining's online probe, which uses them too):

``farmland`` (BigEarthNet)
    "Complex cultivation patterns", "Land principally occupied by agriculture, with
    significant areas of natural vegetation" and "Non-irrigated arable land".

Any other task is written ``NAME=Class A;Class B`` (semicolons: class names contain commas),
e.g. ``forest=Broad-leaved forest;Coniferous forest;Mixed forest``, or as a YAML mapping
``{name: forest, classes: [...]}``. Class names are matched case-insensitively.

Nomenclatures: a source class may belong to a finer nomenclature than the labels the dataset
was built with. "Non-irrigated arable land" is a CORINE level-3 class (BigEarthNet's 43
classes); the 19-class nomenclature merges it with permanently irrigated land and rice fields
into "Arable land". Such a task is then computed from the 43-class labels of the very same
patches (v1: the label json files; v2: the ``Reference_Maps``), so the 19-class multi-label
metrics and the task are both exact. Only when no 43-class label source exists (a v2 copy with
``metadata.parquet`` but no ``Reference_Maps``) is each such class read as its 19-class parent;
the returned note says so and ``evaluate`` prints and records it.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset

from geossl.core.errors import ConfigError
from geossl.datasets.bands import SelectBands
from geossl.datasets.labels import (
    TASK_PRESETS,
    BinaryTask,
    match_classes,
    parse_task,
    parse_tasks,
    task_indices,
    task_labels,
)
from geossl.datasets.protocol import class_names
from geossl.eval.predictions import Relabelled

__all__ = ["PRESETS", "BinaryTask", "parse_task", "parse_tasks", "task_sides", "task_targets"]


#: named tasks (defined with the nomenclatures, below pretraining's monitors)
PRESETS: dict[str, BinaryTask] = TASK_PRESETS


def _unwrap(dataset: Any, position: int) -> tuple[Any, int]:
    """The sub-dataset and local index of ``position`` in a (nested) ConcatDataset."""
    while isinstance(dataset, ConcatDataset | SelectBands):
        if isinstance(dataset, SelectBands):
            dataset = dataset.dataset
            continue
        k = bisect.bisect_right(dataset.cumulative_sizes, position)
        position -= dataset.cumulative_sizes[k - 1] if k else 0
        dataset = dataset.datasets[k]
    return dataset, position


def _leaves(dataset: Any) -> list[Any]:
    if isinstance(dataset, SelectBands):
        return _leaves(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return [leaf for d in dataset.datasets for leaf in _leaves(d)]
    return [dataset]


def task_targets(
    task: BinaryTask,
    dataset: Any,
    positions: Sequence[int],
    labels: torch.Tensor,
) -> tuple[torch.Tensor, str | None]:
    """The task's 0/1 targets of the samples at ``positions``.

    Args:
        task: the task.
        dataset: the evaluation dataset (possibly a ``ConcatDataset`` of its sides).
        positions: sample positions in ``dataset``.
        labels: the dataset's own labels of those samples, ``(N,)`` classes or ``(N, K)``
            multi-hot, in the nomenclature of ``dataset.classes``.

    Returns:
        ``(int64 (N,) targets, note)``; the note says when a class was read in a coarser
        nomenclature (see the module docstring), else ``None``.

    Raises:
        ConfigError: a source class that is no class of the dataset (the closest names are
            suggested), or a dataset without class names.
    """
    leaf = _leaves(dataset)[0]
    classes = [str(c) for c in (class_names(leaf) or [])]
    if not classes:
        raise ConfigError(f"task {task.name!r}: the dataset has no class names to select from")
    found = match_classes(task.classes, classes)
    if all(i is not None for i in found):
        return task_labels(labels, [int(i) for i in found if i is not None]), None
    return _finer(task, dataset, positions, labels, classes, found)


def task_sides(
    task: BinaryTask,
    dataset: Any,
    train_pos: Sequence[int],
    train_labels: torch.Tensor,
    test_pos: Sequence[int],
    test_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, list[str], Relabelled]:
    """The task's targets of both sides of a split, and the dataset relabelled with them.

    Args:
        task: the task.
        dataset: the evaluation dataset.
        train_pos: positions of the training side in ``dataset``.
        train_labels: the dataset's own labels of those samples.
        test_pos: positions of the test side.
        test_labels: the dataset's own labels of those samples.

    Returns:
        ``(train targets, test targets, notes, relabelled dataset)``: the notes of
        :func:`task_targets` (none, one or both sides'), the dataset whose samples at those
        positions carry the task's 0/1 ``label``.

    Raises:
        ConfigError: as :func:`task_targets`.
    """
    tr, note_tr = task_targets(task, dataset, train_pos, train_labels)
    te, note_te = task_targets(task, dataset, test_pos, test_labels)
    relabel = {int(p): int(y) for p, y in zip(train_pos, tr.tolist())}
    relabel.update({int(p): int(y) for p, y in zip(test_pos, te.tolist())})
    notes = [n for n in (note_tr, note_te) if n]
    return tr, te, notes, Relabelled(dataset, relabel, task.class_names)


def _finer(
    task: BinaryTask, dataset: Any, positions: Sequence[int], labels: torch.Tensor,
    classes: Sequence[str], found: Sequence[int | None],
) -> tuple[torch.Tensor, str | None]:
    """Classes of a finer nomenclature: BigEarthNet's 43 CORINE classes behind its 19."""
    from geossl.datasets import labels as lab
    from geossl.datasets.bigearthnet import BigEarthNet
    from geossl.datasets.registry import get_dataset

    missing = [n for n, i in zip(task.classes, found) if i is None]
    leaves = _leaves(dataset)
    corine = match_classes(task.classes, lab.CORINE_CLASSES)
    if not all(isinstance(d, BigEarthNet) and d.num_classes == 19 for d in leaves) or \
            any(i is None for i in corine):
        close = difflib.get_close_matches(missing[0], classes, n=2, cutoff=0.5)
        hint = f" (closest: {'; '.join(close)})" if close else ""
        raise ConfigError(f"task {task.name!r}: {missing[0]!r} is not a class of the dataset"
                          f"{hint}; its classes: {'; '.join(classes)}")
    wanted = {int(i) for i in corine if i is not None}
    twins: dict[int, Any] = {}
    for d in leaves:
        try:
            twins[id(d)] = get_dataset("bigearthnet", d.root, version=d.version,
                                       sensors=d.sensors, num_classes=43, ids=list(d.ids))
        except ConfigError as err:  # v2 without Reference_Maps: no 43-class labels
            del err  # its text (a path, the files looked for) does not belong in the note
            coarse, parts = task_indices(task, lab.BEN19_CLASSES)
            note = (f"task {task.name}: this copy of BigEarthNet has no 43-class labels "
                    f"(no Reference_Maps): {'; '.join(parts)}")
            return task_labels(labels, coarse), note
    out = np.zeros(len(positions), dtype=np.int64)
    for row, p in enumerate(positions):
        leaf, local = _unwrap(dataset, int(p))
        indices = twins[id(leaf)].label_indices(local) or []
        out[row] = int(bool(wanted & set(indices)))
    return torch.from_numpy(out), None
