"""Fine-tuning with a small label budget, and its supervised-from-scratch baseline.

One function, :func:`finetune`, trains an encoder plus a linear head end to end on the labelled
samples of a budget and scores the test split. The seeds' central comparison ("MoCo-v2 with
1,024 labels vs supervised with 1,024 labels") is this function called twice with the very same
labels, schedule, augmentation and seed: once with the pretrained encoder, once with the same
architecture randomly initialised (:func:`geossl.pretrained.checkpoint.random_like`).

A plain torch loop rather than a Lightning ``Trainer``: a few hundred steps on a few hundred
images, where the trainer's start-up would dominate; the loss curve is written in the CSV layout
of Lightning's ``CSVLogger`` (``epoch,step,train_loss``) so the same plotting function reads both.
"""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from geossl.core.errors import ConfigError
from geossl.core.io import atomic_write_text
from geossl.core.progress import progress
from geossl.eval.features import EvalCollate, encode
from geossl.methods.optim import warmup_cosine
from geossl.pretrained.checkpoint import SensorSelection
from geossl.runtime.devices import resolve_device


class _Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_features: int, num_classes: int,
                 sensor: SensorSelection) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(num_features, num_classes)
        self.sensor = sensor

    def forward(self, x: Tensor) -> Tensor:
        return self.head(encode(self.encoder, x, self.sensor))  # type: ignore[no-any-return]


#: the part name that stands for an encoder's band adapter(s), whatever the encoder's kind
ADAPTERS = "adapters"


def requested(names: str | Sequence[str] | None) -> list[str]:
    """The part names given to ``--freeze``/``--reinit``, ``none`` and empty items dropped.

    Args:
        names: comma-separated names, a list of names, or ``None``.
    """
    if names is None:
        return []
    items = [str(n).strip() for n in (names.split(",") if isinstance(names, str) else names)]
    return [n for n in items if n and n.lower() != "none"]


def parts(encoder: nn.Module, names: str | Sequence[str] | None) -> list[str]:
    """Encoder part names from ``--freeze``/``--reinit`` (comma-separated or a list).

    ``adapters`` stands for the encoder's 1x1 band adapter(s): the per-sensor ``stems`` of a
    geo encoder, the ``adapter`` of a single-input or fusion encoder. ``none`` or empty: no
    part. Other names are module names of the encoder (``backbone.layer1``, ...), kept as given.

    Raises:
        ConfigError: a name that is no part of the encoder.
    """
    items = requested(names)
    if not items:
        return []
    modules = dict(encoder.named_modules())
    out: list[str] = []
    for name in items:
        if name == ADAPTERS and ADAPTERS not in modules:
            found = [n for n in ("stems", "adapter")
                     if isinstance(getattr(encoder, n, None), nn.Module)]
            if not found:
                raise ConfigError("no band adapter in this encoder to freeze or re-initialise "
                                  "('adapters' names the 1x1 adapters of a geossl encoder "
                                  "built with --adapter or per-sensor stems)")
            out.extend(found)
            continue
        if name not in modules:
            tops = sorted({n.split(".")[0] for n in modules if n})
            raise ConfigError(f"no encoder part {name!r} to freeze or re-initialise "
                              f"(top-level parts: {', '.join(tops)}; or adapters)")
        out.append(name)
    return out


def _reinit_and_freeze(encoder: nn.Module, reinit: str | Sequence[str],
                       freeze: str | Sequence[str]) -> None:
    """Draw the ``reinit`` parts afresh, then fix the ``freeze`` parts (see :func:`parts`).

    Raises:
        ConfigError: a name that is no module of the encoder.
    """
    modules = dict(encoder.named_modules())
    drawn, fixed = parts(encoder, reinit), parts(encoder, freeze)

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    for name, module in modules.items():
        if any(under(name, p) for p in drawn):
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    for name, param in encoder.named_parameters():
        if any(under(name, p) for p in fixed):
            param.requires_grad_(False)


def _augment(x: Tensor) -> Tensor:
    """Random flips and 90-degree rotations, per sample (valid for any band set)."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if x.shape[-1] == x.shape[-2]:
        k = torch.randint(0, 4, (x.shape[0],), device=x.device)
        out = x.clone()
        for r in range(1, 4):
            sel = k == r
            if sel.any():
                out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
        x = out
    return x


def _cycle(loader: DataLoader[Any]) -> Iterator[Any]:
    while True:
        yield from loader


def finetune(
    encoder: nn.Module,
    dataset: Dataset[dict[str, Any]],
    train_positions: Sequence[int],
    test_positions: Sequence[int],
    num_classes: int,
    *,
    steps: int = 200,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    warmup: float = 0.1,
    normalizer: Callable[[Tensor], Tensor] | None = None,
    sensor: SensorSelection = None,
    device: str | torch.device | None = None,
    bf16: bool = False,
    seed: int = 0,
    workers: int = 0,
    log_csv: str | Path | None = None,
    desc: str = "finetune",
    freeze: str | Sequence[str] = (),
    reinit: str | Sequence[str] = (),
) -> dict[str, Any]:
    """Fine-tune a copy of ``encoder`` with a linear head on a label budget; score the test side.

    Args:
        encoder: the encoder (copied; the argument is not modified). Must have
            ``num_features``.
        dataset: sample dicts with ``image`` and ``label``.
        train_positions: labelled samples (the budget).
        test_positions: samples to score.
        num_classes: K.
        steps: optimiser steps (AdamW, linear warm-up then cosine decay).
        batch_size: batch size (capped at the budget size).
        lr: peak learning rate, the same for encoder and head.
        weight_decay: AdamW weight decay.
        warmup: warm-up fraction of ``steps``.
        normalizer: batch normalisation, as in pretraining.
        sensor: sensor name for multi-sensor encoders (a list: stacked fusion input).
        device: where to train (:func:`geossl.runtime.devices.resolve_device`; default: GPU when
            present).
        bf16: bf16 autocast.
        seed: seed of the head initialisation, batch order and augmentation.
        workers: data-loader workers.
        log_csv: write the loss curve here (Lightning ``CSVLogger`` layout).
        desc: progress-bar label.
        freeze: encoder parts kept fixed (partial freezing): module names of the encoder
            (``backbone.layer1``, ...), each with everything below it, or ``adapters`` (the
            band adapter(s), see :func:`parts`); a list or comma-separated.
        reinit: encoder parts whose weights are drawn afresh before fine-tuning (e.g. the band
            adapters: ``adapters``), by each module's own ``reset_parameters``.

    Returns:
        ``{"scores": (M, K) test logits, "labels": test labels, "curve": [(step, loss)]}``.
    """
    dev = resolve_device(device)
    torch.manual_seed(seed)
    num_features = int(getattr(encoder, "num_features"))  # noqa: B009 - part of the contract
    model = _Classifier(copy.deepcopy(encoder), num_features, num_classes, sensor).to(dev)
    _reinit_and_freeze(model.encoder, reinit, freeze)
    gen = torch.Generator().manual_seed(seed)
    collate = EvalCollate(sensor)
    loader = DataLoader(
        Subset(dataset, list(train_positions)), batch_size=min(batch_size, len(train_positions)),
        shuffle=True, drop_last=len(train_positions) > batch_size, generator=gen,
        num_workers=workers, collate_fn=collate,
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=weight_decay)
    sched = warmup_cosine(opt, max(1, int(warmup * steps)), steps)
    curve: list[tuple[int, float]] = []
    model.train()
    batches = _cycle(loader)
    for step in progress(range(steps), desc=desc, unit="step"):
        images, labels, _ = next(batches)
        x = images.to(dev, non_blocking=True)
        if normalizer is not None:
            x = normalizer(x)
        x = _augment(x)
        y = labels.to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        if y.ndim == 2:
            loss = F.binary_cross_entropy_with_logits(logits.float(), y.float())
        else:
            loss = F.cross_entropy(logits.float(), y.long())
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        curve.append((step, float(loss.detach())))
    scores, test_labels = predict(model, dataset, test_positions, normalizer=normalizer,
                                  sensor=sensor, device=dev, bf16=bf16, batch_size=batch_size,
                                  workers=workers)
    if log_csv is not None:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["epoch", "step", "train_loss"])
        per_epoch = max(1, len(loader))
        for step, value in curve:
            w.writerow([step // per_epoch, step, f"{value:.6g}"])
        atomic_write_text(log_csv, buf.getvalue())
    return {"scores": scores, "labels": test_labels, "curve": curve}


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset[dict[str, Any]],
    positions: Sequence[int],
    *,
    normalizer: Callable[[Tensor], Tensor] | None = None,
    sensor: SensorSelection = None,
    device: torch.device,
    bf16: bool = False,
    batch_size: int = 64,
    workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Logits and labels of a classifier over samples of a dataset."""
    loader = DataLoader(Subset(dataset, list(positions)), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=EvalCollate(sensor))
    model.eval()
    scores, labels = [], []
    for images, labs, _ in loader:
        x = images.to(device)
        if normalizer is not None:
            x = normalizer(x)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            scores.append(model(x).float().cpu())
        labels.append(labs)
    return torch.cat(scores), torch.cat(labels)
