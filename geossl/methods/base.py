"""The LightningModule every SSL method shares.

A method is a thin subclass: it declares its heads in ``__init__`` and implements
:meth:`SSLMethod.compute_loss` over the two views; the base class builds the encoder for the
pairing mode, makes the views and augments them on the device inside ``training_step``
(outside autocast, in float32), builds the optimiser and schedule, and writes the metadata
:func:`geossl.checkpoint.load_encoder` needs into every checkpoint.

Encoder per pairing mode: ``aug``/``temporal`` one input of the sensor's bands; ``geo``
per-sensor 1x1 stems into one shared trunk; ``fusion``/``partial-fusion`` the stacked sensors
with the missing-sensor mask (see :mod:`geossl.models.encoder`).

Constructors take explicit typed arguments (no ``**kwargs``) so that LightningCLI / jsonargparse
and ``geossl pretrain`` can build them from YAML; every argument is saved in the checkpoint's
``hyper_parameters``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from geossl.errors import ConfigError
from geossl.methods.augment import SSLAugment, build_augments
from geossl.methods.optim import build_optimizer, warmup_cosine
from geossl.methods.views import View, make_views
from geossl.models import Encoder, build_encoder
from geossl.pairing import (
    FUSION_MODES,
    PAIRING_MODES,
    check_method_pairing,
    image_key,
    mode_sensors,
)

#: dB per unit of S1 data after geossl's default S1 normalisation (VV clipped to [-25, 0] dB,
#: VH to [-32.5, 0] dB, mapped to [0, 1]): what SAR speckle needs to add dB correctly
S1_DB_PER_UNIT = (25.0, 32.5)


def fp32_region(device: torch.device) -> AbstractContextManager[Any]:
    """A context that turns autocast off on ``device`` if it is on (augmentation runs in fp32).

    A no-op where autocast is off or unknown (e.g. the ``meta`` device the sync tests use).
    """
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except RuntimeError:  # a device type autocast does not know
        return nullcontext()
    return torch.autocast(device_type=device.type, enabled=False) if enabled else nullcontext()


class SSLMethod(LightningModule):
    """Shared machinery of the SSL methods (see the module docstring)."""

    method_name: ClassVar[str] = "base"
    #: pairing modes the method supports
    pairings: ClassVar[tuple[str, ...]] = PAIRING_MODES
    #: why the other pairing modes are not supported (appended to the refusal)
    pairing_note: ClassVar[str | None] = None

    def __init__(
        self,
        backbone: str = "resnet50",
        sensors: Sequence[str] = ("s2",),
        in_chans: dict[str, int] | None = None,
        pairing: str = "aug",
        adapter: str | None = None,
        adapter_out: int = 3,
        pretrained: str | None = None,
        img_size: int | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        base_batch_size: int = 256,
        warmup_steps: int | None = None,
        max_steps: int = -1,
        proj_dim: int = 128,
        proj_hidden: int = 2048,
        crop_size: int | None = None,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        same_crop: bool = False,
        augment: dict[str, Any] | None = None,
        sensor_augment: dict[str, dict[str, Any]] | None = None,
        sar_sensors: Sequence[str] = ("s1",),
        bands: dict[str, list[str]] | None = None,
        normalization: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        """Configure the method.

        Args:
            backbone: timm backbone name (``resnet50``, ``vit_small_patch4``, ``convnext_tiny``).
            sensors: sensors in use, in order (``geo``: query sensor first).
            in_chans: bands per sensor, e.g. ``{"s1": 2, "s2": 13}``.
            pairing: ``geo``, ``aug``, ``fusion``, ``partial-fusion`` or ``temporal``.
            adapter: 1x1 band adapter kind (``linear``, ``nonlinear``, ``*-frozen``) or ``None``.
            adapter_out: channels out of the adapter(s) (3 for RGB-shaped backbones).
            pretrained: local weights file for the backbone (stem adapted to the bands).
            img_size: input size of ViT-like backbones (default: ``crop_size``).
            optimizer: ``adam``, ``adamw``, ``sgd``, ``lars`` or ``lamb``.
            lr: learning rate for ``base_batch_size`` samples (scaled linearly by batch).
            weight_decay: weight decay (not on biases and norms).
            batch_size: per-device batch size (times the devices for the lr scaling).
            base_batch_size: batch size ``lr`` refers to.
            warmup_steps: linear warm-up steps (default: a tenth of ``max_steps``, at most 2000).
            max_steps: total optimiser steps for the cosine schedule (-1: from the trainer).
            proj_dim: projection size.
            proj_hidden: projector hidden width.
            crop_size: size of the augmented views (default: ``img_size`` or the input size).
            crop_scale: area range of the random resized crop.
            same_crop: ``geo``: both sensors get the same geometric augmentation.
            augment: extra :class:`~geossl.methods.augment.SSLAugment` options for all sensors.
            sensor_augment: :class:`SSLAugment` options per sensor (override ``augment``).
            sar_sensors: sensors augmented as SAR (speckle, no grayscale).
            bands: band names per sensor (stored in the checkpoint).
            normalization: normalisation metadata (stored in the checkpoint).
            channels_last: channels-last memory format for the encoder and inputs.
            compile: ``torch.compile`` the encoder trunks.
        """
        super().__init__()
        self.save_hyperparameters()
        sensors = [str(s) for s in sensors]
        check_method_pairing(f"method {self.method_name}", pairing, self.pairings,
                             self.pairing_note)
        used = mode_sensors(pairing, sensors)
        if in_chans is None:
            raise ConfigError("in_chans (bands per sensor) is required")
        missing = [s for s in used if s not in in_chans]
        if missing:
            raise ConfigError(f"in_chans has no entry for sensor(s) {missing}")
        self.sensors = used
        self.pairing = pairing
        vit_like = backbone.startswith(("vit", "deit", "eva", "beit", "flexivit"))
        if img_size is None and crop_size is not None and vit_like:
            img_size = crop_size
        self.img_size = img_size
        self.crop_size = crop_size or img_size
        self.encoder = self.build_encoder(backbone, in_chans, adapter, adapter_out, pretrained,
                                          img_size)
        self.warmup = warmup_steps
        self._augments: dict[str, SSLAugment] | None = None
        self._compiled = False
        self.data_meta: dict[str, Any] = {"bands": bands, "normalization": normalization}

    # -- building blocks ----------------------------------------------------------------------
    def build_encoder(
        self,
        backbone: str,
        in_chans: Mapping[str, int],
        adapter: str | None,
        adapter_out: int,
        pretrained: str | None,
        img_size: int | None,
    ) -> Encoder:
        """The encoder for the pairing mode (see the module docstring)."""
        if self.pairing in ("aug", "temporal"):
            chans: int | dict[str, int] = int(in_chans[self.sensors[0]])
            fusion = False
        else:
            chans = {s: int(in_chans[s]) for s in self.sensors}
            fusion = self.pairing in FUSION_MODES
        return build_encoder(backbone, chans, adapter, adapter_out, pretrained, img_size, fusion)

    def augments(self, size: int) -> dict[str, SSLAugment]:
        """The per-sensor augmentations (built on first use, when the view size is known)."""
        if self._augments is None:
            hp = self.hparams
            options: dict[str, Any] = {"crop_scale": tuple(hp["crop_scale"]),
                                       **(hp.get("augment") or {})}
            per_sensor: dict[str, dict[str, Any]] = {
                s: dict(v) for s, v in (hp.get("sensor_augment") or {}).items()
            }
            for s in self.sensors:
                chans = (hp.get("in_chans") or {}).get(s)
                if s in hp["sar_sensors"] and s == "s1" and chans == len(S1_DB_PER_UNIT):
                    per_sensor.setdefault(s, {}).setdefault("db_per_unit", S1_DB_PER_UNIT)
            self._augments = build_augments(self.sensors, self.crop_size or size,
                                            hp["sar_sensors"], options, per_sensor)
        return self._augments

    def make_views(self, batch: Mapping[str, Any]) -> tuple[View, View]:
        """Two augmented views of a batch (float32, outside autocast)."""
        ref = batch[image_key(self.sensors[0])]
        augs = self.augments(int(ref.shape[-1]))
        with fp32_region(ref.device):
            v1, v2 = make_views(batch, self.pairing, self.sensors, augs,
                                same_crop=bool(self.hparams["same_crop"]))
        if self.hparams["channels_last"]:
            v1.x = v1.x.contiguous(memory_format=torch.channels_last)
            v2.x = v2.x.contiguous(memory_format=torch.channels_last)
        return v1, v2

    def encode(self, view: View, encoder: nn.Module | None = None) -> Tensor:
        """Features of a view with ``encoder`` (the online encoder by default)."""
        enc = self.encoder if encoder is None else encoder
        out: Tensor = enc(view.x, sensor=view.sensor, sensor_mask=view.sensor_mask)
        return out

    def encode_pair(
        self, view1: View, view2: View, encoder: nn.Module | None = None
    ) -> tuple[Tensor, Tensor]:
        """Features of both views; one forward pass over both when they share a sensor/shape."""
        same = (view1.sensor == view2.sensor and view1.x.shape == view2.x.shape
                and (view1.sensor_mask is None) == (view2.sensor_mask is None))
        if not same:
            return self.encode(view1, encoder), self.encode(view2, encoder)
        mask = None
        if view1.sensor_mask is not None and view2.sensor_mask is not None:
            mask = torch.cat([view1.sensor_mask, view2.sensor_mask])
        both = self.encode(View(torch.cat([view1.x, view2.x]), view1.sensor, mask), encoder)
        h1, h2 = both.chunk(2)
        return h1, h2

    def compile_encoders(self) -> None:
        """Compile the encoder trunks in place (state-dict keys unchanged); idempotent."""
        if self._compiled:
            return
        for module in self.modules():
            if isinstance(module, Encoder):
                module.backbone.compile()
        self._compiled = True

    # -- training -----------------------------------------------------------------------------
    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The method's loss on two views (and extra values to log)."""
        raise NotImplementedError

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Views -> encoder -> heads -> loss; logs ``train/loss``."""
        view1, view2 = self.make_views(batch)
        loss, logs = self.compute_loss(view1, view2, batch)
        n = int(view1.x.shape[0])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        for key, value in logs.items():
            self.log(f"train/{key}", value, on_step=True, on_epoch=False, batch_size=n)
        return loss

    def on_fit_start(self) -> None:
        """Apply channels_last/compile, and pick up band names/normalisation from the data."""
        if self.hparams["channels_last"]:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if self.hparams["compile"]:
            self.compile_encoders()
        trainer = getattr(self, "_trainer", None)
        dm = getattr(trainer, "datamodule", None) if trainer is not None else None
        if dm is not None:
            for key, names in (("bands", ("bands", "band_names")),
                               ("normalization", ("normalization", "normalisation"))):
                if self.data_meta.get(key) is None:
                    self.data_meta[key] = _find_attr(dm, names)

    def global_batch_size(self) -> int:
        """Per-device batch size times the number of devices."""
        world = 1
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            world = int(getattr(trainer, "world_size", 1) or 1)
        return int(self.hparams["batch_size"]) * world

    def total_steps(self) -> int:
        """Optimiser steps of the run (``max_steps`` or the trainer's estimate)."""
        steps = int(self.hparams["max_steps"])
        trainer = getattr(self, "_trainer", None)
        if steps <= 0 and trainer is not None:
            try:
                steps = int(trainer.estimated_stepping_batches)
            except Exception:
                steps = -1
        return steps

    def configure_optimizers(self) -> Any:
        """Optimiser over the trainable parameters; linear warm-up + cosine, per step."""
        hp = self.hparams
        opt = build_optimizer(hp["optimizer"], self, hp["lr"], hp["weight_decay"],
                              self.global_batch_size(), hp["base_batch_size"])
        steps = self.total_steps()
        warmup = self.warmup
        if warmup is None:
            warmup = min(2000, steps // 10) if steps > 0 else 0
        sched = warmup_cosine(opt, warmup, steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- checkpoint metadata ------------------------------------------------------------------
    def geossl_metadata(self) -> dict[str, Any]:
        """What :func:`~geossl.checkpoint.load_encoder` needs besides the weights."""
        config = dict(self.encoder.config)
        config["pretrained"] = None  # the weights are in the checkpoint
        return {
            "method": self.method_name,
            "encoder_prefix": "encoder.",
            "encoder_config": config,
            "sensors": list(self.sensors),
            "pairing": self.pairing,
            "bands": self.data_meta.get("bands"),
            "normalization": self.data_meta.get("normalization"),
            "img_size": self.img_size,
            "crop_size": self.crop_size,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Write :meth:`geossl_metadata` under ``checkpoint["geossl"]``."""
        checkpoint["geossl"] = self.geossl_metadata()


def _find_attr(obj: Any, names: Sequence[str]) -> Any:
    """The first of ``names`` found on ``obj``, its ``train_dataset`` or that one's ``base``."""
    candidates = [obj]
    ds = getattr(obj, "train_dataset", None)
    if ds is not None:
        candidates += [ds, getattr(ds, "base", None)]
    for cand in candidates:
        if cand is None:
            continue
        for name in names:
            value = getattr(cand, name, None)
            if value is not None and not callable(value):
                return _plain(value)
    return None


def _plain(value: Any) -> Any:
    """Checkpoint-safe plain Python (lists, dicts, numbers, strings)."""
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
