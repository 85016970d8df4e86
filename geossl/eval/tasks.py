"""Binary tasks defined as a set of a dataset's source classes (``--task``).

A binary task is positive for a sample that carries *any* of its source classes: on a
multi-label dataset (BigEarthNet) any of them among the sample's labels, on a single-label one
(AID, SEN12MS scenes) its class among them. :data:`PRESETS` holds the named ones:

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset

from geossl.datasets.bands import SelectBands
from geossl.datasets.base import class_names
from geossl.errors import ConfigError
from geossl.eval.predictions import Relabelled


@dataclass(frozen=True)
class BinaryTask:
    """A binary task: positive when a sample carries any of ``classes``."""

    name: str
    classes: tuple[str, ...]

    @property
    def class_names(self) -> list[str]:
        """Names of the two classes, negative first (confusion-matrix labels)."""
        return [f"not {self.name}", self.name]

    def as_dict(self) -> dict[str, Any]:
        """Plain form stored in ``results.json``."""
        return {"name": self.name, "classes": list(self.classes)}


#: named tasks
PRESETS: dict[str, BinaryTask] = {
    "farmland": BinaryTask("farmland", (
        "Complex cultivation patterns",
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
        "Non-irrigated arable land",
    )),
}


def parse_task(spec: str | dict[str, Any] | BinaryTask) -> BinaryTask:
    """A task from a preset name, ``NAME=Class A;Class B`` or ``{name:, classes:}``.

    Raises:
        ConfigError: unknown preset, or a malformed definition.
    """
    if isinstance(spec, BinaryTask):
        return spec
    if isinstance(spec, dict):
        name, classes = spec.get("name"), spec.get("classes")
        if not isinstance(name, str) or not name.strip() or not isinstance(classes, list | tuple) \
                or not classes:
            raise ConfigError(f"a task mapping needs 'name' and a list of 'classes', got {spec}")
        return BinaryTask(name.strip(), tuple(str(c).strip() for c in classes))
    text = str(spec).strip()
    if "=" not in text:
        if text.lower() in PRESETS:
            return PRESETS[text.lower()]
        raise ConfigError(f"unknown task {text!r}: use one of {', '.join(PRESETS)} or "
                          "NAME=Class A;Class B")
    name, _, rest = text.partition("=")
    classes = tuple(c.strip() for c in rest.split(";") if c.strip())
    if not name.strip() or not classes:
        raise ConfigError(f"task {text!r}: expected NAME=Class A;Class B")
    return BinaryTask(name.strip(), classes)


def parse_tasks(value: Any) -> list[BinaryTask]:
    """Tasks from ``--task`` (one spec, or a list of specs); ``None`` gives none.

    Raises:
        ConfigError: a malformed spec, or two tasks of one name.
    """
    if value is None or value == "" or value == []:
        return []
    specs = value if isinstance(value, list | tuple) else [value]
    tasks = [parse_task(s) for s in specs]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"two tasks named {sorted(n for n in names if names.count(n) > 1)[0]!r}")
    return tasks


def _match(names: Sequence[str], classes: Sequence[str]) -> list[int | None]:
    lower = {c.lower(): i for i, c in enumerate(classes)}
    return [lower.get(n.lower()) for n in names]


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
    found = _match(task.classes, classes)
    if all(i is not None for i in found):
        return _from_labels(labels, [int(i) for i in found if i is not None]), None
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


def _from_labels(labels: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
    if labels.ndim == 2:
        return (labels[:, list(indices)] > 0.5).any(1).long()
    return torch.isin(labels.long(), torch.as_tensor(list(indices))).long()


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
    corine = _match(task.classes, lab.CORINE_CLASSES)
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
            coarse = sorted({lab.CORINE_TO_BEN19[i] for i in wanted if i in lab.CORINE_TO_BEN19})
            parts = []
            for name, i in zip(task.classes, corine):
                if name not in missing or i is None or i not in lab.CORINE_TO_BEN19:
                    continue
                parent = lab.CORINE_TO_BEN19[i]
                others = [lab.CORINE_CLASSES[j] for j, p in lab.CORINE_TO_BEN19.items()
                          if p == parent and j not in wanted]
                also = f", so {task.name} also counts {' and '.join(others)}" if others else ""
                parts.append(f"{name!r} is read as its 19-class parent "
                             f"{lab.BEN19_CLASSES[parent]!r}{also}")
            note = (f"task {task.name}: this copy of BigEarthNet has no 43-class labels "
                    f"(no Reference_Maps): {'; '.join(parts)}")
            return _from_labels(labels, coarse), note
    out = np.zeros(len(positions), dtype=np.int64)
    for row, p in enumerate(positions):
        leaf, local = _unwrap(dataset, int(p))
        indices = twins[id(leaf)].label_indices(local) or []
        out[row] = int(bool(wanted & set(indices)))
    return torch.from_numpy(out), None
