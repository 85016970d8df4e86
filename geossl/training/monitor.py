"""What to watch while pretraining: an online linear probe and t-SNE snapshots of the embedding.

Both are Lightning callbacks that ``geossl pretrain`` adds on request (``--online-probe``,
``--tsne-every N``); they never change the encoder's training.

:class:`OnlineProbe`
    A linear classifier trained *online* on the encoder's features of every training batch,
    **detached** (no gradient reaches the encoder), with its own optimiser, as in SimCLR's
    appendix and solo-learn. The batch is the data module's un-augmented batch (normalised,
    resized to the views' size), so the probe sees what the encoder would see at evaluation.
    Its accuracy is measured on each batch *before* the probe's update on it, i.e. on samples
    it has not been trained on within the first epoch. Logged: ``probe/loss``, ``probe/acc``
    (top-1 for single-label data; for multi-label data, e.g. BigEarthNet, the share of correct
    label decisions at 0.5) and, for multi-label data, ``probe/map`` (micro average precision of
    the batch). Per step and as epoch means. The probe's weights and optimiser are saved in the
    checkpoint, so ``--resume`` continues it. With a binary ``task`` (``--probe-task farmland``,
    a :class:`geossl.datasets.labels.BinaryTask`) the probe is a two-class classifier of the
    task's targets, computed from each batch's labels (positive when a sample carries any of
    the task's classes), and ``probe/acc`` is the task's accuracy.

:class:`TSNESnapshots`
    Every ``every`` epochs (and once before training: ``epoch=000``) the features of a fixed
    random subset of the training samples (``points``, centre-cropped, un-augmented) are
    embedded with t-SNE and written as ``OUT/tsne/epoch=NNN.png``, coloured by class when the
    samples carry labels. The same samples in every snapshot, so the pictures show the
    embedding organise itself across epochs.

Labels come from the dataset through the data module (``SSLDataModule(labels=True)``):
SEN12MS scene labels (IGBP or the simplified DFC scheme, also on geo-sampled chips), BigEarthNet
multi-hot labels, the classes of CIFAR-10, MNIST, Tiny ImageNet and the scene archives.

Written here rather than taken from a library: Lightning Bolts' ``SSLOnlineEvaluator`` is
unmaintained and expects ``(x, y)`` batches; lightly's ``OnlineLinearClassifier`` is a module
to wire into each method's step. A callback keeps the methods untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import Tensor, nn

from geossl.core.errors import ConfigError
from geossl.datasets.labels import BinaryTask, task_labels


def probe_input(pl_module: Any, batch: Mapping[str, Any]) -> tuple[Any, Tensor | None]:
    """The un-augmented encoder input of a batch, as the method's encoder takes it.

    Single-sensor and geo encoders take the first sensor (the query sensor of geo pairs);
    fusion encoders every sensor (a dict of ``image_<sensor>``, all present). Images are
    resized to the size of the training views when they differ (ViTs need it).

    Returns:
        ``(input, sensor_mask)``.
    """
    sensors = list(pl_module.sensors)
    fusion = getattr(pl_module, "pairing", "aug") in ("fusion", "partial-fusion")
    names = sensors if fusion else sensors[:1]
    size = getattr(pl_module, "crop_size", None)
    images: dict[str, Tensor] = {}
    for s in names:
        x = batch[f"image_{s}"].float()
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        images[f"image_{s}"] = x
    if fusion:
        first = images[f"image_{names[0]}"]
        mask = torch.ones(first.shape[0], len(names), device=first.device)
        return images, mask
    return images, None


@torch.no_grad()
def encoder_features(pl_module: Any, batch: Mapping[str, Any]) -> Tensor:
    """Detached features of the batch's un-augmented images (see :func:`probe_input`)."""
    x, mask = probe_input(pl_module, batch)
    was_training = pl_module.encoder.training
    pl_module.encoder.eval()  # batch-norm statistics of the encoder are not touched
    try:
        feats: Tensor = pl_module.encoder(x, sensor_mask=mask) if mask is not None else \
            pl_module.encoder(x)
    finally:
        pl_module.encoder.train(was_training)
    return feats.detach().float()


def num_outputs(labels: Tensor, classes: Sequence[str] | None) -> tuple[int, bool]:
    """Classes of the probe and whether the labels are multi-hot, from a label batch."""
    if labels.ndim == 2:
        return int(labels.shape[1]), True
    if classes:
        return len(classes), False
    raise ConfigError("the online probe needs the dataset's class names (its 'classes')")


class OnlineProbe(Callback):
    """Linear classifier trained on detached features during pretraining (module docstring)."""

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.0,
                 task: BinaryTask | None = None,
                 task_classes: Sequence[int] | None = None) -> None:
        """Configure the probe.

        Args:
            lr: Adam learning rate of the probe.
            weight_decay: its weight decay.
            task: train on this binary task instead of the dataset's classes.
            task_classes: the label indices that make ``task`` positive
                (:func:`geossl.datasets.labels.task_indices` of the dataset's class names).

        Raises:
            ConfigError: a task without its class indices.
        """
        super().__init__()
        if task is not None and not task_classes:
            raise ConfigError(f"the online probe's task {task.name!r} needs the label indices "
                              "of its classes")
        self.lr = lr
        self.weight_decay = weight_decay
        self.task = task
        self.task_classes = [int(i) for i in task_classes or ()]
        self.head: nn.Linear | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.multilabel = False
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        """Key of this callback's state in the checkpoint."""
        return "OnlineProbe"

    def _build(self, pl_module: Any, num_classes: int, multilabel: bool) -> None:
        self.multilabel = multilabel
        dim = int(pl_module.encoder.num_features)
        self.head = nn.Linear(dim, num_classes).to(pl_module.device)
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=self.lr,
                                          weight_decay=self.weight_decay)
        if self._pending is not None:  # restored from a checkpoint before the first batch
            self.head.load_state_dict(self._pending["head"])
            self.optimizer.load_state_dict(self._pending["optimizer"])
            self._pending = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Probe the batch (accuracy before the update), then train the probe on it."""
        if "label" not in batch:
            raise ConfigError("the online probe needs labelled batches (SSLDataModule "
                              "labels=True on a dataset with labels)")
        labels = batch["label"]
        if self.task is not None:
            target_of = task_labels(labels, self.task_classes)
            labels = target_of if labels.ndim == 2 else torch.where(
                labels.long() >= 0, target_of, torch.full_like(target_of, -100))
        if self.head is None:
            if self.task is not None:
                self._build(pl_module, 2, False)
            else:
                dm = getattr(trainer, "datamodule", None)
                classes = getattr(dm, "classes", None) if dm is not None else None
                self._build(pl_module, *num_outputs(labels, classes))
        assert self.head is not None and self.optimizer is not None
        feats = encoder_features(pl_module, batch)
        with torch.enable_grad():
            logits = self.head(feats)
            if self.multilabel:
                target = labels.float()
                loss = F.binary_cross_entropy_with_logits(logits, target)
            else:
                target = labels.long()
                keep = target >= 0  # ignore-index labels (-100) are left out
                loss = F.cross_entropy(logits, target, ignore_index=-100)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        n = int(labels.shape[0])
        with torch.no_grad():
            logs: dict[str, Tensor] = {"probe/loss": loss.detach()}
            if self.multilabel:
                logs["probe/acc"] = ((logits > 0).float() == target).float().mean()
                logs["probe/map"] = _micro_ap(logits.detach(), target)
            else:
                hit = (logits.argmax(1) == target) & keep
                logs["probe/acc"] = hit.float().sum() / keep.float().sum().clamp_min(1)
        for key, value in logs.items():
            pl_module.log(key, value, on_step=True, on_epoch=True, batch_size=n,
                          prog_bar=key == "probe/acc")

    def state_dict(self) -> dict[str, Any]:
        """The probe's weights and optimiser state (empty before the first batch)."""
        if self.head is None or self.optimizer is None:
            return dict(self._pending or {})
        return {"head": self.head.state_dict(), "optimizer": self.optimizer.state_dict(),
                "multilabel": self.multilabel}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (applied when the probe is built)."""
        self._pending = dict(state_dict) if state_dict.get("head") is not None else None


def _micro_ap(logits: Tensor, target: Tensor) -> Tensor:
    """Micro average precision of a batch of multi-label scores, on the device.

    Ties are ordered arbitrarily (continuous logits rarely tie); exact AP on the test side is
    ``geossl evaluate``'s job, this is a monitor.
    """
    s = logits.flatten()
    y = target.flatten()
    order = torch.argsort(s, descending=True)
    y = y[order]
    hits = torch.cumsum(y, 0)
    precision = hits / torch.arange(1, len(y) + 1, device=y.device, dtype=hits.dtype)
    return (precision * y).sum() / y.sum().clamp_min(1)


class TSNESnapshots(Callback):
    """t-SNE pictures of the embedding of fixed training samples every N epochs."""

    def __init__(self, out: str | Path, every: int, points: int = 1000, seed: int = 0,
                 epochs: Sequence[int] | None = None,
                 neighbours: str | Path | None = None) -> None:
        """Configure the snapshots.

        Args:
            out: folder for ``epoch=NNN.png`` (``OUT/tsne``).
            every: a snapshot after every ``every`` epochs (and one before training); 0: only
                at ``epochs``.
            points: samples embedded (a fixed random subset of the training samples).
            seed: seed of the subset and of t-SNE.
            epochs: further snapshots after these epochs (a study's listed ones, e.g. 1, 21,
                51, 91).
            neighbours: folder for nearest-neighbour grids written with every snapshot
                (``epoch=NNN.png``: the same queries, one per class, and their nearest samples
                among the embedded ones); None: none.
        """
        super().__init__()
        listed = sorted({int(e) for e in epochs or ()})
        if every < 0 or (every == 0 and not listed) or (listed and listed[0] < 1):
            raise ConfigError(f"t-SNE snapshots every {every} epochs and after epochs {listed}: "
                              "give a positive interval or positive epochs")
        self.out = Path(out)
        self.every = int(every)
        self.epochs = set(listed)
        self.neighbours = Path(neighbours) if neighbours is not None else None
        self.points = int(points)
        self.seed = seed
        self.written: list[Path] = []

    def _snapshot(self, trainer: Any, pl_module: Any, epoch: int) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        n = dm.num_samples
        rng = np.random.default_rng(self.seed)
        chosen = np.sort(rng.permutation(n)[: min(self.points, n)]).tolist()
        if len(chosen) < 3:
            return
        feats, labels, images = [], [], []
        key = f"image_{pl_module.sensors[0]}"
        for batch in dm.cluster_dataloader(positions=chosen):
            batch = {k: v.to(pl_module.device) if isinstance(v, Tensor) else v
                     for k, v in batch.items()}
            feats.append(encoder_features(pl_module, batch).cpu())
            if "label" in batch:
                labels.append(batch["label"].cpu())
            if self.neighbours is not None and key in batch:
                images.append(batch[key].float().cpu())
        x = torch.cat(feats).numpy()
        y = torch.cat(labels).numpy() if labels else np.zeros(len(x), dtype=np.int64)
        names = list(getattr(dm, "classes", None) or []) if labels else ["samples"]
        path = self.out / f"epoch={epoch:03d}.png"
        from geossl.viz.plots import plot_tsne

        plot_tsne(x, y, path, class_names=names, seed=self.seed, max_points=len(x),
                  title=f"t-SNE of the embedding, epoch {epoch}")
        self.written.append(path)
        if self.neighbours is not None and images:
            bands = (getattr(dm, "bands", None) or {}).get(pl_module.sensors[0])
            self._neighbour_grid(torch.cat(feats), y, torch.cat(images), names, epoch, bands)

    def _neighbour_grid(self, feats: Tensor, y: np.ndarray, images: Tensor, names: list[str],
                        epoch: int, bands: Sequence[str] | None) -> None:
        """The nearest embedded samples of one query per class (the same queries every time)."""
        from geossl.viz.plots import plot_neighbour_grid

        assert self.neighbours is not None
        lab = y.argmax(1) if y.ndim == 2 else y
        queries = [int(np.flatnonzero(lab == c)[0]) for c in np.unique(lab)[:8]]
        # cosine similarity over the embedded samples, the query itself left out (a few lines
        # here: geossl.eval.knn sits above this module's layer)
        unit = F.normalize(feats.float(), dim=1)
        sim = unit[queries] @ unit.T
        sim[torch.arange(len(queries)), torch.tensor(queries)] = -2.0
        near = sim.topk(min(8, len(feats) - 1), dim=1).indices.tolist()

        def title(i: int) -> str:
            c = int(lab[i])
            return names[c] if c < len(names) else str(c)

        plot_neighbour_grid([images[q] for q in queries],
                            [[images[j] for j in row] for row in near],
                            self.neighbours / f"epoch={epoch:03d}.png", bands=bands,
                            query_titles=[title(q) for q in queries],
                            neighbour_titles=[[title(j) for j in row] for row in near])

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """The embedding before training (``epoch=000``), unless resuming."""
        if trainer.current_epoch == 0 and trainer.global_step == 0:
            self._snapshot(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """A snapshot after every ``every`` epochs and after each listed epoch."""
        epoch = trainer.current_epoch + 1
        if (self.every and epoch % self.every == 0) or epoch in self.epochs:
            self._snapshot(trainer, pl_module, epoch)
