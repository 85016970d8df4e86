"""Per-sample test predictions of every evaluation run, and datasets relabelled for a task.

``evaluate`` writes one CSV per (task, protocol, budget, seed) under ``OUT/predictions/``, so
that any reported number can be recomputed from the predictions by hand (the tests do):

* single-label (and binary tasks): ``id, label, pred, score_0 .. score_{K-1}`` (the scores the
  metrics were computed from: logits of a linear probe or fine-tuning, vote shares of kNN);
* multi-label: ``id, label_0 .. label_{K-1}, score_0 .. score_{K-1}`` with scores in [0, 1]
  (sigmoid of the logits; kNN vote shares), the input of mAP.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from geossl.core.io import atomic_path
from geossl.datasets.protocol import DatasetWrapper


def write_predictions(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    labels: torch.Tensor,
    scores: torch.Tensor,
    probabilities: bool = False,
) -> Path:
    """Write one run's test predictions as CSV (layout in the module docstring).

    Args:
        path: CSV file to write (atomically).
        ids: sample ids of the test side.
        labels: ``(N,)`` classes or ``(N, K)`` multi-hot.
        scores: ``(N, K)`` scores.
        probabilities: multi-label scores are already in [0, 1] (else a sigmoid is applied).

    Returns:
        the path written.
    """
    import pandas as pd

    y = labels.detach().cpu()
    s = scores.detach().float().cpu()
    columns: dict[str, Any] = {"id": [str(i) for i in ids]}
    if y.ndim == 2:
        probs = s if probabilities else torch.sigmoid(s)
        for k in range(y.shape[1]):
            columns[f"label_{k}"] = y[:, k].numpy().astype(np.int64)
        for k in range(probs.shape[1]):
            columns[f"score_{k}"] = probs[:, k].numpy()
    else:
        columns["label"] = y.numpy().astype(np.int64)
        columns["pred"] = s.argmax(1).numpy().astype(np.int64)
        for k in range(s.shape[1]):
            columns[f"score_{k}"] = s[:, k].numpy()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        pd.DataFrame(columns).to_csv(tmp, index=False, float_format="%.9g")
    return out


class Relabelled(DatasetWrapper, Dataset[dict[str, Any]]):
    """A dataset whose samples at some positions get another ``label`` (a binary task's).

    A :class:`~geossl.datasets.protocol.DatasetWrapper`: the same samples in the same order
    (its ``ids``, ``bands``, ``sensors``, footprints are the wrapped dataset's); it states its
    own ``classes`` (the task's) and no ``targets`` or ``labelled_mask`` (only the positions a
    protocol reads have a task label).
    """

    @property
    def wrapped(self) -> Any:
        """The evaluation dataset."""
        return self.dataset

    def stated(self) -> Mapping[str, Any]:
        """``classes``: the task's; no ``targets`` or ``labelled_mask`` of the wrapped one."""
        return {"classes": self.classes, "targets": None, "labelled_mask": None}

    def __init__(self, dataset: Dataset[dict[str, Any]], targets: Mapping[int, int],
                 classes: Sequence[str]) -> None:
        """Wrap ``dataset``.

        Args:
            dataset: the evaluation dataset.
            targets: position -> new int label (the positions a protocol reads).
            classes: names of the new classes.
        """
        self.dataset = dataset
        self.targets = dict(targets)
        self.classes = list(classes)

    def __len__(self) -> int:
        """Length of the wrapped dataset."""
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The wrapped sample with the task's label.

        Raises:
            KeyError: a position without a task label (never read by the protocols).
        """
        sample = dict(self.dataset[index])
        sample["label"] = torch.tensor(self.targets[int(index)], dtype=torch.int64)
        return sample
