"""Self-supervised pretraining: the library behind ``geossl pretrain``.

:func:`pretrain` builds the data module, the SSL method and a Lightning ``Trainer`` from one
:class:`PretrainConfig`, writes ``OUT/config.yaml`` (the effective configuration, which
``geossl pretrain --config OUT/config.yaml`` reruns), trains, and leaves::

    OUT/checkpoints/last.ckpt       the latest state (resume with --resume last)
    OUT/checkpoints/step=N.ckpt     every --ckpt-every optimiser steps, and at the end
    OUT/logs/csv/metrics.csv        CSV log
    OUT/logs/tb/                    TensorBoard log (events.out.tfevents.*)
    OUT/loss_curve.png              training loss against step
    OUT/tsne/epoch=NNN.png          t-SNE snapshots of the embedding (--tsne-every N)

With ``--online-probe`` a linear classifier is trained on the detached features of every batch
and its accuracy is logged (``probe/acc``); SimCLR and MoCo log their contrastive top-1
accuracy (``train/contrastive_acc``). See :mod:`geossl.training.monitor`.

Checkpoints are written by Lightning through an fsspec transaction (temporary file, then a
rename), so a kill leaves the previous checkpoint intact; ``--resume`` loses at most the steps
since the last checkpoint interval, and keeps the CSV history logged before the checkpoint's
step. Ctrl-C (SIGINT) stops after the current step and saves a checkpoint and the loss curve
before :func:`pretrain` raises ``KeyboardInterrupt`` (exit status 130 from the CLI).
Checkpoints to resume from are read as data only (:func:`geossl.core.io.load_torch_file`) before
Lightning restores them.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from geossl.core.errors import ConfigError, DataError, GeosslError, Terminated, first_line
from geossl.core.io import (
    atomic_path,
    atomic_write_text,
    check_output,
    disk_full_as_error,
    jsonable,
    mark_output,
    safe_globals,
)
from geossl.core.pairing import IMAGE_PREFIX, SECOND_DATE, check_pairing, key_sensor
from geossl.runtime.devices import lightning_accelerator, resolve_precision
from geossl.training.config import (
    PATH_FIELDS,
    RUN_CONFIG_HEADER,
    PretrainConfig,
    parse_normalization,
    parse_sensors,
)

if TYPE_CHECKING:
    from geossl.methods import SSLMethod

def resolve_adapter(adapter: str | None, pairing: str) -> str | None:
    """The adapter kind to build: ``None`` (unset) and ``none`` give no adapter.

    Raises:
        ConfigError: an unknown kind, or ``none`` with ``geo`` pairing (whose per-sensor stems
            are the adapters: ``linear`` by default).
    """
    from geossl.models.adapters import ADAPTER_KINDS

    if adapter is None:
        return None
    kind = adapter.strip().lower().replace("_", "-")
    if kind == "none":
        if pairing == "geo":
            raise ConfigError("--adapter none is not possible with geo pairing: each sensor "
                              "has its own 1x1 stem (linear by default); choose one of "
                              f"{', '.join(ADAPTER_KINDS)}")
        return None
    if kind not in ADAPTER_KINDS:
        raise ConfigError(f"unknown adapter {adapter!r}; choose none or one of "
                          f"{', '.join(ADAPTER_KINDS)}")
    return kind


# --------------------------------------------------------------------------------------------
# resolution of "auto" values
# --------------------------------------------------------------------------------------------
def resolve_devices(devices: str | int) -> int | str:
    """``"2"`` -> ``2``; ``auto`` stays."""
    text = str(devices)
    return int(text) if text.isdigit() else text


def resolve_resume(resume: str | None, out: Path) -> str | None:
    """The checkpoint to resume from: a path, or ``last`` for the run's newest checkpoint.

    ``last`` is the most recently written complete checkpoint of ``OUT/checkpoints``: normally
    ``last.ckpt``, but a kill between writing ``step=N.ckpt`` and ``last.ckpt`` leaves
    ``last.ckpt`` one interval behind, and then ``step=N.ckpt`` is taken. ``last`` with no
    checkpoint yet starts from scratch (so one command can both start and resume a run); a run
    whose checkpoints are all damaged (truncated, overwritten) is refused instead: starting
    from scratch would replace its log history and, at the first interval, its checkpoints.

    Raises:
        DataError: if the checkpoint does not exist or is not a readable checkpoint, or every
            checkpoint of the run is damaged (naming them).
    """
    if not resume:
        return None
    if resume == "last":
        folder = out / "checkpoints"
        found = newest_checkpoint(folder)
        damaged = sorted(p.name for p in folder.glob("*.ckpt") if p.is_file())
        if found is None and damaged:
            raise DataError(f"--resume last: every checkpoint of this run is damaged (not a "
                            f"complete torch file): {', '.join(damaged)}; move them away to "
                            "start the run again, or resume from a copy with --resume FILE",
                            folder)
        if found is None:
            print(f"geossl pretrain: no checkpoint in {out / 'checkpoints'} yet, "
                  "starting from scratch")
            return None
        path = found
    else:
        path = Path(resume)
        if not path.exists():
            raise DataError("checkpoint to resume from not found", path)
    if not zipfile.is_zipfile(path):
        raise DataError("not a valid checkpoint (truncated or not a torch file)", path)
    return str(path)


def newest_checkpoint(folder: Path) -> Path | None:
    """The most recently written complete ``*.ckpt`` of ``folder`` (``last.ckpt`` on a tie).

    Checkpoints are renamed into place once written, so a complete file is a zip archive;
    anything else (a foreign or damaged file) is skipped.
    """
    candidates = [p for p in folder.glob("*.ckpt") if p.is_file() and zipfile.is_zipfile(p)]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"))


# --------------------------------------------------------------------------------------------
# method
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FoundationStart:
    """The named weights of a run, matched to its bands (:mod:`geossl.pretrained.foundation`)."""

    weights: Any  # geossl.pretrained.foundation.ResolvedWeights
    match: Any  # geossl.pretrained.foundation.BandMatch
    sensor: str


def foundation_start(config: PretrainConfig, dm: Any, in_chans: dict[str, int]
                     ) -> FoundationStart | None:
    """Resolve ``--pretrained torchgeo:...``/``timm:...`` and match the data's bands to it.

    With ``--preprocess weights`` the data module then normalises the sensor with the weights'
    own preprocessing (recorded in the checkpoints).

    Returns:
        ``None`` when ``--pretrained`` is not a weights spec (a local file, or unset).

    Raises:
        ConfigError: several sensors (named weights take one), unmatched bands, bad
            ``--preprocess``.
        DataError: weights not cached and no network.
    """
    from geossl.pretrained.foundation import (
        data_normalization,
        is_weights_spec,
        match_bands,
        resolve_weights,
    )

    if not is_weights_spec(config.pretrained):
        return None
    assert config.pretrained is not None
    if config.preprocess not in ("weights", "dataset"):
        raise ConfigError(f"--preprocess must be weights or dataset, got {config.preprocess!r}")
    if config.pairing not in ("aug", "temporal"):
        raise ConfigError(f"--pretrained {config.pretrained}: named weights take one sensor; "
                          f"use --pairing aug or temporal (not {config.pairing})")
    if config.adapter not in (None, "none", "linear", "linear-frozen"):
        raise ConfigError(f"--pretrained {config.pretrained}: the band adapter in front of named "
                          "weights is linear (--adapter linear or linear-frozen)")
    sensor = config.sensors[0]
    weights = resolve_weights(config.pretrained)
    bands = (dm.bands or {}).get(sensor)
    match = match_bands(bands, weights, n_data=in_chans[sensor])
    if match.missing or match.extra:
        print(f"geossl pretrain: warning: {config.pretrained}: {match.describe()}")
    if config.preprocess == "weights":
        norm = data_normalization(weights, match)
        if norm is None:
            raise ConfigError(f"--pretrained {config.pretrained}: the weights record no "
                              "preprocessing; use --preprocess dataset")
        dm.set_normalization(sensor, norm["mean"], norm["std"])
    if config.backbone != weights.backbone:
        print(f"geossl pretrain: backbone {weights.backbone} (the weights'), not "
              f"{config.backbone}")
        config.backbone = weights.backbone
    return FoundationStart(weights, match, sensor)


def load_foundation(method: SSLMethod, start: FoundationStart) -> None:
    """Load the named weights into the method's encoder (and its momentum copies)."""
    from geossl.pretrained.foundation import load_trunk, set_band_map

    load_trunk(method.encoder, start.weights)
    if method.encoder.adapter is not None:
        set_band_map(method.encoder, start.match)
    method.copy_momentum_pairs()
    method.data_meta["pretrained_from"] = start.weights.spec
    method.data_meta["band_match"] = {"weight_bands": start.match.weight_bands,
                                      "missing": start.match.missing,
                                      "extra": start.match.extra}


def build_method(config: PretrainConfig, in_chans: dict[str, int], max_steps: int,
                 start: FoundationStart | None = None,
                 bands: Mapping[str, Sequence[str]] | None = None,
                 normalization: Mapping[str, Any] | None = None) -> SSLMethod:
    """Instantiate the SSL method named in ``config``.

    The options left ``None`` in ``config`` (``lr``, ``temperature``, ...) keep the method's
    defaults; ``method_args`` adds any other option of the method or of its specs.

    Args:
        config: run configuration.
        in_chans: channels per sensor, read off the data.
        max_steps: total optimiser steps (for the learning-rate schedule).
        start: named weights to start from (:func:`foundation_start`): the encoder gets their
            backbone and, unless the bands match exactly, a linear adapter to their bands;
            load them with :func:`load_foundation`.
        bands: band names per sensor, read off the data (the checkpoint's metadata; MAE's
            ``mae_groups`` name bands).
        normalization: the data's normalisation per sensor (the data module's record, the
            checkpoint's metadata: what evaluation reapplies).

    Returns:
        the LightningModule.

    Raises:
        ConfigError: unknown method or adapter, or an option the method does not take.
    """
    from geossl.methods import METHODS

    if config.method not in METHODS:
        raise ConfigError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    options: dict[str, Any] = {
        "backbone": config.backbone,
        "sensors": tuple(config.sensors),
        "in_chans": in_chans,
        "pairing": config.pairing,
        "max_steps": max_steps,
        "batch_size": config.batch_size,
        "compile": config.compile,  # the method applies compile / channels_last at fit start
        "channels_last": config.channels_last,
    }
    optional: dict[str, Any] = {
        "adapter": resolve_adapter(config.adapter, config.pairing),
        "pretrained": config.pretrained,
        "img_size": config.img_size,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "warmup_steps": config.warmup_steps,
        "temperature": config.temperature,
        "momentum": config.momentum,
        "queue_size": config.queue_size,
        "backbone_lr_scale": config.backbone_lr_scale,
        "freeze_stem_steps": config.freeze_stem_steps,
        "mae_groups": config.mae_groups,
        **config.method_args,
    }
    if start is not None:
        optional["pretrained"] = None  # loaded by load_foundation
        optional["adapter"] = None
        if not start.match.identity:
            optional["adapter"] = config.adapter if config.adapter == "linear-frozen" \
                else "linear"
            optional["adapter_out"] = start.weights.in_chans
    options.update({k: v for k, v in optional.items() if v is not None})
    if bands is not None:
        options.setdefault("bands", {s: list(b) for s, b in bands.items()})
    if normalization is not None:  # checkpoint-safe plain Python (no numpy scalars)
        options.setdefault("normalization", jsonable(dict(normalization)))
    try:
        return METHODS[config.method].from_hparams(options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"method {config.method}: {err}") from err


def check_combination(config: PretrainConfig) -> None:
    """Refuse an invalid method x pairing x sensors combination with a one-line reason."""
    from geossl.methods.optim import OPTIMIZERS

    if config.optimizer is not None and config.optimizer.lower() not in OPTIMIZERS:
        raise ConfigError(
            f"unknown optimizer {config.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    check_pairing(config.pairing, config.sensors)
    resolve_adapter(config.adapter, config.pairing)
    unknown = sorted(set(parse_normalization(config.normalization)) - set(config.sensors))
    if unknown:
        raise ConfigError(f"--normalization names sensor(s) {', '.join(unknown)} not in "
                          f"--sensors {','.join(config.sensors)}")
    if config.stats is not None and not Path(config.stats).is_file():
        raise DataError("statistics file not found (write one with `geossl stats --out`)",
                        config.stats)
    from geossl.methods import check_method_pairing

    check_method_pairing(config.method, config.pairing)
    from geossl.datasets.registry import check_sensors

    check_sensors(config.data, config.sensors)  # e.g. --sensors s1 on EuroSAT (S2 only)


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------
def _remove_partial(folder: Path, since: float) -> None:
    """Delete the checkpoints a full disk cut short in ``folder``: never resumed from.

    Those still being written (``*.ckpt.pending``), and ``*.ckpt`` files written since
    ``since`` (a time stamp) that are not whole zip archives (torch checkpoints are; a cut
    file lacks the archive's closing directory).
    """
    for path in folder.glob(f"*.ckpt{PENDING}"):
        path.unlink(missing_ok=True)
    for path in folder.glob("*.ckpt"):
        try:
            if path.stat().st_mtime >= since and not zipfile.is_zipfile(path):
                path.unlink()
        except OSError:
            pass




def write_config(config: PretrainConfig, path: Path) -> None:
    """Write the effective configuration as YAML (rerunnable with ``--config``)."""
    values = dataclasses.asdict(config)
    values["sensors"] = ",".join(config.sensors)
    if config.bands and not isinstance(config.bands, dict):
        values["bands"] = ",".join(config.bands)
    values.pop("resume", None)
    for key in PATH_FIELDS:  # absolute: the file reruns the same run from any folder
        value = values.get(key)
        if isinstance(value, str) and (key != "pretrained" or Path(value).expanduser().exists()):
            values[key] = str(Path(value).expanduser().absolute())
    atomic_write_text(path, f"{RUN_CONFIG_HEADER}\n{yaml.safe_dump(values, sort_keys=False)}")


def plot_loss_curve(metrics_csv: Path, png: Path) -> bool:
    """Plot every logged ``*loss*`` column against the step.

    Args:
        metrics_csv: Lightning CSVLogger ``metrics.csv``.
        png: output image.

    Returns:
        whether a plot was written (false when nothing was logged yet).
    """
    import pandas as pd

    from geossl.viz.plots import plot_loss_curve as draw

    if not metrics_csv.exists():
        return False
    return draw(pd.read_csv(metrics_csv), png)


def progress_bar(refresh_rate: int = 10) -> Any:
    """Lightning's tqdm progress bar (step, it/s, ETA, loss), without the logger version.

    It refreshes every ``refresh_rate`` steps: reading the loss for display synchronises the
    device, so it is not done every step.
    """
    from lightning.pytorch.callbacks import TQDMProgressBar

    class _ProgressBar(TQDMProgressBar):  # type: ignore[misc]
        def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
            metrics = dict(super().get_metrics(trainer, pl_module))
            metrics.pop("v_num", None)  # "v_tb": the logger's fixed version name, noise here
            return metrics

    return _ProgressBar(refresh_rate=refresh_rate)


def keep_history(metrics_csv: Path, before: int) -> list[str]:
    """Keep the rows of ``metrics_csv`` logged before step ``before`` (atomically).

    A resumed run restarts at its checkpoint's step: rows the interrupted run logged after it
    are logged again, rows before it are the run's history. Rows are written back under a
    sorted header, as Lightning's CSV logger writes it, so that new rows can be appended.

    Returns:
        the header (empty when there is no file yet).
    """
    import csv

    if not metrics_csv.is_file():
        return []
    try:
        text = metrics_csv.read_text()
        reader = csv.DictReader(text.splitlines())
        rows = list(reader)
        keys = sorted(reader.fieldnames or [])
    except (OSError, csv.Error, UnicodeDecodeError):
        return []  # unreadable log: Lightning starts a new one
    if rows and not text.endswith("\n"):
        rows.pop()  # a row cut short by a kill

    def step(row: dict[str, Any]) -> float:
        try:
            return float(row.get("step") or "nan")
        except ValueError:
            return float("nan")

    kept = [row for row in rows if not step(row) >= before]
    with atomic_path(metrics_csv) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
    return keys


def _loggers(out: Path, keep_before: int | None = None) -> list[Any]:
    """CSV and TensorBoard loggers under ``OUT/logs``.

    Lightning's CSV logger deletes ``metrics.csv`` when it starts; for a resumed run
    (``keep_before``: the checkpoint's step) the history before that step is kept in the file
    instead and new rows are appended to it, each as it is logged, so a kill at any time
    leaves the whole history.
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter
    from lightning.pytorch.loggers.logger import rank_zero_experiment

    class HistoryWriter(ExperimentWriter):  # type: ignore[misc]
        def _check_log_dir_exists(self) -> None:
            if keep_before is None:
                super()._check_log_dir_exists()
            else:
                self.metrics_keys = keep_history(Path(self.metrics_file_path), keep_before)

    class HistoryCSVLogger(CSVLogger):  # type: ignore[misc]
        @property
        @rank_zero_experiment  # type: ignore[untyped-decorator,misc]
        def experiment(self) -> Any:
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = HistoryWriter(log_dir=self.log_dir)
            return self._experiment

    # every row reaches the disk when logged (an append): a kill loses nothing logged before it
    loggers: list[Any] = [HistoryCSVLogger(save_dir=str(out / "logs"), name="", version="csv",
                                           flush_logs_every_n_steps=1)]
    try:
        loggers.append(TensorBoardLogger(save_dir=str(out / "logs"), name="", version="tb",
                                         default_hp_metric=False))
    except ModuleNotFoundError:
        # lightning needs the optional `tensorboard` (or tensorboardX) package for this logger
        print("geossl pretrain: tensorboard is not installed; writing the CSV log only")
    return loggers


PENDING = ".pending"
"""Suffix of a checkpoint written but not yet published (see :func:`_checkpoints`)."""


def _checkpoints(folder: Path, every: int | None) -> Any:
    """Lightning's checkpoint callback, publishing a checkpoint once its step's row is logged.

    ``step=N.ckpt`` every ``every`` steps (``None``: none) and ``last.ckpt``, as
    ``ModelCheckpoint`` writes them.

    Lightning saves the periodic checkpoint in ``on_train_batch_end``, before it logs that
    step's metrics: a kill in between left ``step=N.ckpt`` without row N-1 in ``metrics.csv``,
    and a resume from it lost that row for good. Here each checkpoint is written to
    ``NAME.pending`` and renamed into place (atomically) at the start of the next batch, when
    the row has been logged and flushed, or when training ends. A kill before the rename
    leaves the previous checkpoint as the newest (resume then relogs the steps after it);
    stale ``*.pending`` files are removed when the next run starts.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    class RowFirstCheckpoint(ModelCheckpoint):  # type: ignore[misc]
        def __init__(self) -> None:
            # no version counter: a resumed run (perhaps with another interval, which
            # Lightning sees as another callback and so does not restore its state) overwrites
            # last.ckpt and step=N.ckpt instead of writing last-v1.ckpt beside a stale last.ckpt
            super().__init__(dirpath=str(folder), filename="step={step}",
                             auto_insert_metric_name=False, every_n_train_steps=every,
                             save_top_k=-1, save_last=True, enable_version_counter=False)
            self._pending: list[str] = []

        def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
            super()._save_checkpoint(trainer, filepath + PENDING)
            self._last_checkpoint_saved = filepath
            self._pending.append(filepath)

        def _publish(self, trainer: Any) -> None:
            pending, self._pending = self._pending, []
            if trainer.is_global_zero:
                for path in pending:
                    if os.path.exists(path + PENDING):
                        os.replace(path + PENDING, path)

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            super().on_fit_start(trainer, pl_module)
            if trainer.is_global_zero:
                for stale in folder.glob(f"*.ckpt{PENDING}"):
                    stale.unlink(missing_ok=True)

        def on_train_batch_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
            self._publish(trainer)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            super().on_train_end(trainer, pl_module)
            self._publish(trainer)

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            # the checkpoint is complete; its step's row is on disk unless the error struck in
            # the instant between the two (a lost row is cheaper than a lost interval)
            super().on_exception(trainer, pl_module, exception)
            self._publish(trainer)

    return RowFirstCheckpoint()


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def pretrain(config: PretrainConfig, callbacks: Sequence[Any] = ()) -> Path:
    """Pretrain an encoder with self-supervision.

    Args:
        config: run configuration (see :class:`PretrainConfig`).
        callbacks: extra Lightning callbacks (after geossl's checkpoint, learning-rate monitor
            and progress bar).

    Returns:
        the path of the last checkpoint (``OUT/checkpoints/last.ckpt``).

    Raises:
        ConfigError: invalid options or combination (method x pairing, ...).
        DataError: missing or unreadable data or checkpoint.
    """
    from lightning.pytorch import seed_everything
    from lightning.pytorch.utilities import rank_zero_only

    from geossl.data.datamodule import SSLDataModule

    if config.batch_size < 2:
        # BatchNorm cannot normalise one sample, and contrastive losses need other samples
        # in the batch as negatives: one sample per device cannot train
        raise ConfigError(f"--batch-size must be at least 2 (samples per device), got "
                          f"{config.batch_size}: BatchNorm layers and contrastive losses need "
                          "several samples in a batch")
    if config.root is None:
        raise ConfigError("--root is required (the dataset folder)")
    if config.max_steps <= 0 and not config.max_epochs:
        raise ConfigError("give --max-steps or --max-epochs")
    if config.ckpt_every <= 0:
        raise ConfigError("--ckpt-every must be positive")
    if config.num_nodes < 1:
        raise ConfigError(f"--num-nodes must be >= 1, got {config.num_nodes}")
    if config.join_timeout <= 0:
        raise ConfigError(f"--join-timeout must be positive (seconds), got {config.join_timeout}")
    if config.sync_batchnorm not in SYNC_BATCHNORM:
        raise ConfigError(f"--sync-batchnorm must be one of {', '.join(SYNC_BATCHNORM)}, got "
                          f"{config.sync_batchnorm!r}")
    config.sensors = parse_sensors(config.sensors)
    config.normalization = parse_normalization(config.normalization)
    check_combination(config)
    # absent, empty or an earlier pretrain run (resume); never a user's folder or a URL
    check_output(config.out, "pretrain", own=("config.yaml", "checkpoints"),
                 inputs=(config.root, config.index, config.stats))
    out = Path(config.out).expanduser().absolute()
    ckpt_path = resolve_resume(config.resume, out)
    resumed = read_resume_checkpoint(ckpt_path, config) if ckpt_path else None
    if ckpt_path is not None:
        print(f"geossl pretrain: resuming from {ckpt_path}")
    accelerator = lightning_accelerator(config.accelerator)
    seed_everything(config.seed, workers=True, verbose=False)

    dm = SSLDataModule(
        data=config.data,
        root=config.root,
        sensors=config.sensors,
        pairing=config.pairing,
        batch_size=config.batch_size,
        workers=config.workers,
        patch_size=config.patch_size,
        splits=config.splits,
        split=config.split,
        index=config.index,
        pin_memory=accelerator == "gpu",
        norm_names=config.normalization,
        stats=config.stats,
        data_args=config.data_args,
        band_selection=config.bands,
        labels=config.online_probe or config.tsne_every > 0 or bool(config.tsne_epochs),
        label_scheme=config.label_scheme,
        sampler=config.sampler,
        seed=config.seed,
    )
    dm.setup("fit")
    monitors = _monitors(config, dm, out)
    in_chans = sample_in_chans(dm)
    max_steps = config.max_steps
    if max_steps <= 0:
        max_steps = dm.steps_per_epoch() * int(config.max_epochs or 1)
    start = foundation_start(config, dm, in_chans)
    method = build_method(config, in_chans, max_steps, start, dm.bands, dm.normalization)
    if start is not None:
        load_foundation(method, start)
    if resumed is not None and ckpt_path is not None:
        check_resume_fits(resumed, method, Path(ckpt_path))

    if resumed is not None:
        # a resumed run restarts its epoch's loader: with the run's seed it would draw the
        # very augmentations (and order) of the epoch's first batches again; the checkpoint's
        # step reseeds it (the data and model above were built with the run's own seed)
        step0 = int(resumed.get("global_step", 0))
        seed_everything((config.seed + step0) % 2**32, workers=True, verbose=False)
    # OUT/config.yaml only once the run has started correctly (resumed state restored): a
    # failed start, e.g. resuming with another --method, keeps the run's own config
    try:
        if getattr(rank_zero_only, "rank", 0) == 0:
            # every input checked: OUT is this run's before Lightning writes anything into it
            mark_output(out, "pretrain")
        # a checkpoint cut short by a full disk is removed (never resumed from)
        started = time.time() - 1
        with disk_full_as_error(out, partial=lambda: _remove_partial(out / "checkpoints",
                                                                     started)):
            fit(method, dm, max_steps=config.max_steps, max_epochs=config.max_epochs,
                accelerator=accelerator, devices=config.devices, precision=config.precision,
                num_nodes=config.num_nodes, strategy=config.strategy,
                join_timeout=config.join_timeout, sync_batchnorm=config.sync_batchnorm,
                on_trainer=lambda trainer: _per_rank_schedule(trainer, config, dm, method),
                out=out, ckpt_every=config.ckpt_every, resume=ckpt_path,
                resumed_step=int(resumed.get("global_step", 0)) if resumed is not None else None,
                log_every=config.log_every or max(1, min(50, max_steps // 20)),
                reload_data=method.reload_dataloaders_every_epoch,
                on_start=lambda: write_config(config, out / "config.yaml")
                if getattr(rank_zero_only, "rank", 0) == 0 else None,
                callbacks=[*monitors, *callbacks])
    finally:  # also when interrupted
        filled = dm.filled_values()
        if filled:
            print(f"geossl pretrain: {filled} image value(s) were NaN or infinite and were "
                  "filled with 0 (the band mean after normalisation)")
    return out / "checkpoints" / "last.ckpt"


def _per_rank_schedule(trainer: Any, config: PretrainConfig, dm: Any, method: Any) -> None:
    """With several processes and an epoch budget, size the LR schedule to the steps per rank."""
    world = int(trainer.world_size)
    if config.max_steps <= 0 and world > 1:
        # each of the ``world`` processes reads 1/world of the chips per epoch
        per_rank = -(-dm.num_samples // world)
        steps = per_rank // config.batch_size if dm.drop_last else -(-per_rank //
                                                                      config.batch_size)
        method.hparams["max_steps"] = max(1, steps) * int(config.max_epochs or 1)


def fit(
    module: Any,
    data: Any,
    *,
    max_steps: int = -1,
    max_epochs: int | None = None,
    accelerator: str | torch.device = "auto",
    devices: str | int = "auto",
    precision: str = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    join_timeout: float = 300,
    sync_batchnorm: str = "auto",
    on_trainer: Callable[[Any], Any] | None = None,
    out: Path | None = None,
    ckpt_every: int | None = None,
    resume: str | None = None,
    resumed_step: int | None = None,
    log_every: int = 50,
    progress: bool = True,
    reload_data: bool = False,
    on_start: Callable[[], Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Train a LightningModule: the one fit loop of ``geossl pretrain``, the demo and benchmarks.

    A Lightning ``Trainer`` with geossl's settings (resolved accelerator and precision, no
    validation loop, cuDNN autotuning on a GPU). With ``out`` it is a run folder: a checkpoint
    every ``ckpt_every`` steps plus ``last.ckpt`` (one more at the end when the run stops between
    two intervals), the CSV and TensorBoard logs (a resumed run keeps the rows logged before
    ``resumed_step``), the learning rate, and ``loss_curve.png``. Without ``out`` nothing is
    written (benchmarks keep what they need through ``callbacks``). A checkpoint to resume from
    is loaded as data only. Ctrl-C stops after the current step (a second one at once): the run
    folder keeps that step's checkpoint, and ``KeyboardInterrupt`` is raised with where it
    stopped.

    Args:
        module: the LightningModule (an SSL method, or any other, e.g. a TorchGeo task).
        data: a LightningDataModule, or the training DataLoader (any iterable of batches).
        max_steps: stop after this many optimiser steps (-1: ``max_epochs`` decides).
        max_epochs: stop after this many epochs.
        accelerator: ``auto``, ``cpu``, ``gpu``/``cuda`` or a ``torch.device``
            (:func:`geossl.runtime.devices.lightning_accelerator`).
        devices: number of devices or ``auto``.
        precision: ``auto`` or a precision (:func:`geossl.runtime.devices.resolve_precision`).
        num_nodes: machines taking part (Lightning's cluster environments: torchrun, SLURM).
        strategy: Lightning strategy (``auto``, ``ddp``, ...).
        join_timeout: with ``num_nodes`` > 1, seconds to wait for every process to join
            (the other nodes may start late, or never); collectives during training keep
            torch's 30 minutes.
        sync_batchnorm: ``auto``/``on``: BatchNorm layers compute their batch statistics over
            every process's batch when several processes train (as one process would over
            the whole batch); ``off``: per process.
        on_trainer: called with the Trainer once it exists (before fitting).
        out: run folder (``None``: no checkpoints or logs).
        ckpt_every: checkpoint interval in optimiser steps (with ``out``; default: only
            ``last.ckpt``, and the end of the run).
        resume: checkpoint to resume from (:func:`resolve_resume`).
        resumed_step: its step: the log rows before it are kept.
        log_every: logging interval in steps.
        progress: show the progress bar.
        reload_data: rebuild the training loader every epoch (DeepCluster's new pseudo-labels).
        on_start: called once training has started (a resumed state is then restored).
        callbacks: extra callbacks (after geossl's own).

    Returns:
        the fitted ``Trainer`` (``global_step``, ``callback_metrics``, ...).

    Raises:
        DataError: the run could not resume from ``resume``.
        KeyboardInterrupt: Ctrl-C, after saving (see above).
    """
    from lightning.pytorch import LightningDataModule

    lightning = lightning_accelerator(accelerator)
    started = _on_train_start(on_start or (lambda: None))
    own: list[Any] = []
    if out is not None:
        from lightning.pytorch.callbacks import LearningRateMonitor

        own += [_checkpoints(out / "checkpoints", ckpt_every), LearningRateMonitor("step")]
    if progress:
        own.append(progress_bar())
    if num_nodes > 1 and strategy in ("auto", "ddp"):
        from datetime import timedelta

        from lightning.pytorch.strategies import DDPStrategy

        # a bounded wait for the other nodes (torch's default is 30 minutes of silence)
        strategy_arg: Any = DDPStrategy(timeout=timedelta(seconds=join_timeout))
        own.append(_joined())
    else:
        strategy_arg = strategy
    sync, plugins = _batchnorm_sync(sync_batchnorm, lightning)
    trainer = _trainer(
        accelerator=lightning,
        devices=resolve_devices(devices),
        num_nodes=num_nodes,
        strategy=strategy_arg,
        sync_batchnorm=sync,
        plugins=plugins,
        precision=resolve_precision(precision, lightning),  # type: ignore[arg-type]
        max_steps=max_steps,
        max_epochs=max_epochs,
        callbacks=[*own, started, *callbacks],
        logger=_loggers(out, resumed_step) if out is not None else False,
        enable_checkpointing=out is not None,
        enable_progress_bar=progress,
        default_root_dir=str(out) if out is not None else None,
        log_every_n_steps=log_every,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        reload_dataloaders_every_n_epochs=1 if reload_data else 0,
        benchmark=lightning == "gpu",
        enable_model_summary=False,
    )
    if num_nodes > 1:
        _announce_join(trainer, num_nodes, join_timeout)
    if on_trainer is not None:
        on_trainer(trainer)
    fit_kwargs: dict[str, Any] = {"ckpt_path": resume}
    if "weights_only" in inspect.signature(trainer.fit).parameters:
        fit_kwargs["weights_only"] = True  # Lightning's own load of the resumed checkpoint
    if isinstance(data, LightningDataModule):
        fit_kwargs["datamodule"] = data
    else:
        fit_kwargs["train_dataloaders"] = data
    interrupt = _Interrupt(trainer, saving=out is not None)
    hard_stop: BaseException | None = None
    # data only in Lightning's load too (the file was already checked by read_resume_checkpoint)
    with interrupt, torch.serialization.safe_globals(safe_globals()):
        try:
            trainer.fit(module, **fit_kwargs)
        except (Exception, SystemExit) as err:
            if not interrupt.requested:
                if isinstance(err, SystemExit | GeosslError):
                    raise
                if num_nodes > 1 and not started.done and _join_timed_out(err):
                    raise ConfigError(
                        f"--num-nodes {num_nodes}: not every process joined within "
                        f"{join_timeout:g} s ({first_line(err)}); start the run on every "
                        "node (srun, torchrun, or MASTER_ADDR, MASTER_PORT and NODE_RANK set "
                        "on each; docs/scale.md), or raise --join-timeout") from err
                if resume is not None and not started.done:
                    raise DataError(f"cannot resume from this checkpoint "
                                    f"({type(err).__name__}: {first_line(err)})",
                                    resume) from err
                raise
            # Ctrl-C twice, or a loader worker that died of the Ctrl-C; Lightning's own stop
            # after a SIGTERM (SIGTERMException, at the end of a step) is a clean stop
            hard_stop = None if _sigterm_stop(err) else err
    where = "nothing saved"
    if out is not None:
        where = _end_of_run(trainer, out, hard_stop)
    if interrupt.requested:
        stop = Terminated if interrupt.signum == signal.SIGTERM else KeyboardInterrupt
        raise stop(f"stopped at step {trainer.global_step}; {where}; continue "
                   f"with --resume last" if out is not None else
                   f"stopped at step {trainer.global_step}; {where}")
    return trainer


def _sigterm_stop(err: BaseException) -> bool:
    """Whether ``err`` is Lightning's exit at the end of a step after a SIGTERM."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    return isinstance(err, SIGTERMException)


#: values of ``--sync-batchnorm``
SYNC_BATCHNORM = ("auto", "on", "off")


def _batchnorm_sync(mode: str, accelerator: str) -> tuple[bool, list[Any]]:
    """Lightning's ``sync_batchnorm`` flag and plugins for ``--sync-batchnorm``.

    On a GPU, torch's ``SyncBatchNorm`` (Lightning's ``sync_batchnorm=True``); on CPUs, where
    torch's refuses to run, :class:`geossl.models.syncbn.CPUSyncBatchNorm`. Lightning converts
    the layers only under a multi-process strategy, so ``auto`` and ``on`` change nothing for
    one process.
    """
    if mode == "off":
        return False, []
    if accelerator == "cpu":
        from geossl.models.syncbn import CPULayerSync

        return False, [CPULayerSync()]
    return True, []


def _joined() -> Any:
    """A callback giving collectives torch's default timeout back once every process joined."""
    from lightning.pytorch.callbacks import Callback

    class Joined(Callback):  # type: ignore[misc]
        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            import torch.distributed as dist
            from lightning.fabric.plugins.collectives.torch_collective import (
                default_pg_timeout,
            )

            if dist.is_available() and dist.is_initialized():
                # torch has no public way to change a process group's timeout
                from torch.distributed.distributed_c10d import _set_pg_timeout

                _set_pg_timeout(default_pg_timeout)

    return Joined()


def _announce_join(trainer: Any, num_nodes: int, seconds: float) -> None:
    """Say, before the processes meet, what the run waits for and for how long."""
    env = trainer.strategy.cluster_environment
    where = f"{env.main_address}:{env.main_port}" if env is not None else "the main node"
    if trainer.global_rank == 0:
        print(f"geossl pretrain: waiting up to {seconds:g} s for the {trainer.world_size} "
              f"processes of --num-nodes {num_nodes} to join at {where} (this is node "
              f"{trainer.node_rank}; --join-timeout sets the wait)", flush=True)


def _join_timed_out(err: BaseException) -> bool:
    """Whether ``err`` is torch's store or process group giving up on missing processes."""
    text = f"{type(err).__name__}: {err}".lower()
    return "timed out" in text or "timeout" in text or "disttimeout" in text


def _end_of_run(trainer: Any, out: Path, hard_stop: BaseException | None) -> str:
    """Save the end of a run between two checkpoint intervals, plot its loss; say where it is.

    Returns:
        the checkpoint that holds the run's end, in words.
    """
    ckpt_dir = out / "checkpoints"
    step_ckpt = ckpt_dir / f"step={trainer.global_step}.ckpt"
    saved = False
    save_end = (trainer.global_step > 0 and not step_ckpt.exists()
                and not isinstance(hard_stop, SystemExit))
    if trainer.world_size > 1:
        # rank 0's decision for all: save_checkpoint waits for every process (a barrier), and
        # the file rank 0 is writing may or may not exist yet when another rank looks. After a
        # hard stop the other processes may be gone: the last periodic checkpoint stands.
        save_end = hard_stop is None and bool(trainer.strategy.broadcast(save_end, src=0))
    if save_end:
        # the run ended (or was interrupted) between two checkpoint intervals: keep its end
        # (every process calls save_checkpoint; Lightning writes the file on rank 0 only)
        trainer.save_checkpoint(step_ckpt)
        trainer.save_checkpoint(ckpt_dir / "last.ckpt")
        saved = True
    if trainer.is_global_zero:
        plot_loss_curve(out / "logs" / "csv" / "metrics.csv", out / "loss_curve.png")
    newest = newest_checkpoint(ckpt_dir)
    return (f"checkpoint {step_ckpt}" if saved or step_ckpt.exists() else
            f"newest checkpoint {newest}" if newest else "no checkpoint yet")


def _trainer(**kwargs: Any) -> Any:
    """A Lightning ``Trainer``; a device, node or strategy setting it refuses is one line.

    Raises:
        ConfigError: Lightning's refusal of ``--accelerator``, ``--devices``, ``--num-nodes``
            or ``--strategy`` (an unknown strategy, more devices than the machine has, ...).
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch import Trainer

    strategy = kwargs["strategy"]  # a name, or DDPStrategy (bounded join of --num-nodes)
    try:
        return Trainer(**kwargs)
    except (MisconfigurationException, ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot set up training with --accelerator {kwargs['accelerator']} "
                          f"--devices {kwargs['devices']} --num-nodes {kwargs['num_nodes']} "
                          f"--strategy {getattr(strategy, 'strategy_name', strategy)}: "
                          f"{first_line(err)}") from err


def _monitors(config: PretrainConfig, dm: Any, out: Path) -> list[Any]:
    """The online probe and t-SNE snapshot callbacks the config asks for.

    Raises:
        ConfigError: an online probe on a dataset whose samples carry no labels, or a bad
            snapshot interval.
    """
    from geossl.training.monitor import OnlineProbe, TSNESnapshots

    found: list[Any] = []
    if config.online_probe:
        if not dm.has_labels:
            raise ConfigError(f"--online-probe needs labelled samples, and {config.data!r} "
                              f"gives none in {config.root}")
        task, task_classes = None, None
        if config.probe_task:
            from geossl.datasets.labels import parse_task, task_indices

            task = parse_task(config.probe_task)
            task_classes, readings = task_indices(task, dm.classes)
            if readings:  # a CORINE class read as its 19-class parent: say so once
                print(f"geossl pretrain: online probe task {task.name}: the labels are "
                      f"BigEarthNet's 19 classes: {'; '.join(readings)} (data_args: "
                      "{num_classes: 43} gives the exact task)")
        found.append(OnlineProbe(lr=config.probe_lr, task=task, task_classes=task_classes))
    elif config.probe_task:
        raise ConfigError(f"--probe-task {config.probe_task} trains the online probe: add "
                          "--online-probe")
    if config.tsne_every < 0:
        raise ConfigError(f"--tsne-every must be 0 (off) or positive, got {config.tsne_every}")
    if config.neighbour_grids and not (config.tsne_every > 0 or config.tsne_epochs):
        raise ConfigError("--neighbour-grids are written with the t-SNE snapshots: give "
                          "--tsne-every N or --tsne-epochs E1,E2")
    if config.tsne_every > 0 or config.tsne_epochs:
        found.append(TSNESnapshots(out / "tsne", config.tsne_every, config.tsne_points,
                                   config.seed, epochs=config.tsne_epochs,
                                   neighbours=out / "neighbours" if config.neighbour_grids
                                   else None))
    return found



def read_resume_checkpoint(path: str, config: PretrainConfig) -> dict[str, Any]:
    """Read the checkpoint to resume from, as data only, and check it is one of this method.

    Lightning loads the file again to restore the training state; it is read here first with
    the same data-only loader, so a file holding pickled code is refused with one line before
    Lightning sees it, and a checkpoint of another method is refused before any work.

    Raises:
        DataError: unreadable, not a geossl pretraining checkpoint, or another method's.
    """
    from geossl.pretrained.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    for key in ("global_step", "loops", "optimizer_states"):
        if key not in ckpt:
            raise DataError(f"not a checkpoint to resume from (no {key}; e.g. an exported "
                            "encoder)", path)
    meta = ckpt.get("geossl") or {}
    hp = ckpt.get("hyper_parameters") or {}
    method = meta.get("method") or hp.get("method")
    if method is not None and str(method) != config.method:
        raise DataError(f"checkpoint of a {method} run: cannot resume it with --method "
                        f"{config.method} (resume with --method {method}, or start a new "
                        "run in another --out)", path)
    return ckpt


def check_resume_fits(ckpt: dict[str, Any], method: Any, path: Path) -> None:
    """Refuse a checkpoint whose weights do not fit the method built from the config.

    Raises:
        DataError: missing, unexpected or differently shaped weights (another backbone,
            sensors, pairing, adapter, ...), naming the first one.
    """
    want = {k.replace("_orig_mod.", ""): tuple(v.shape) for k, v in method.state_dict().items()}
    have = {k.replace("_orig_mod.", ""): tuple(v.shape) for k, v in ckpt["state_dict"].items()
            if hasattr(v, "shape")}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    shaped = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or unexpected or shaped:
        hint = (f"{shaped[0]} is {have[shaped[0]]} in the checkpoint, {want[shaped[0]]} here"
                if shaped else f"e.g. {(missing or unexpected)[0]}")
        raise DataError(f"checkpoint weights do not fit this run's model ({len(missing)} "
                        f"missing, {len(unexpected)} unexpected, {len(shaped)} of another "
                        f"shape: {hint}); resume with the run's own options (--config "
                        "RUN/config.yaml)", path)


def _on_train_start(action: Any) -> Any:
    """A Lightning callback running ``action`` once training has started (state restored).

    Its ``done`` attribute tells whether it ran.
    """
    from lightning.pytorch.callbacks import Callback

    class OnTrainStart(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.done = False

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            action()
            self.done = True

    return OnTrainStart()


class _Interrupt:
    """Ctrl-C (SIGINT) or SIGTERM during training: stop after the current step, not at once.

    Lightning turns a ``KeyboardInterrupt`` into ``sys.exit(1)`` without saving, and a SIGTERM
    into a ``SystemExit`` with status 0 (a job scheduler would record success); here the first
    signal asks the trainer to stop at the end of the step, so that :func:`fit` saves a
    checkpoint, plots the loss and reports the stop: ``KeyboardInterrupt`` after SIGINT (exit
    status 130 from the CLI), :class:`geossl.core.errors.Terminated` after SIGTERM (143; SLURM and
    Kubernetes stop jobs with SIGTERM and wait a grace period before SIGKILL). A second signal
    stops at once. Loader workers forked during training inherit the handler, so they keep
    serving the last batches instead of dying of the signal.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, trainer: Any, saving: bool = True) -> None:
        self.trainer = trainer
        self.saving = saving
        self.requested = False
        self.signum: int | None = None
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked loader worker: the main process decides
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum
        self.trainer.should_stop = True
        name = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
        again = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        what = f"geossl pretrain: {name}, saving" if self.saving else \
            f"geossl: {name}, stopping"
        print(f"\n{what} after this step ({again} again to stop at once)", flush=True)

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                # Lightning adds its own SIGTERM handler at fit start and keeps calling this one
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            # None: a handler not installed from Python, which cannot be put back
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
        sys.stdout.flush()


def sample_in_chans(dm: Any) -> dict[str, int]:
    """Channels per sensor, read off the first training sample."""
    sample = dm.train_dataset[0]
    chans: dict[str, int] = {}
    for key, value in sample.items():
        if key.startswith(IMAGE_PREFIX) and not key.endswith(SECOND_DATE):
            chans[key_sensor(key)] = int(value.shape[0])
    if not chans:
        raise DataError("the samples carry no image", dm.root)
    return chans
