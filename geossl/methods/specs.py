"""The typed specs every SSL method takes, and the flat options they are saved as.

A method is built from three shared specs and its own options (a dataclass it declares):

* :class:`EncoderSpec`: what the encoder takes (sensors, bands per sensor, pairing mode) and how
  it is built (backbone, band adapter, weights, input size, speed options), with the band names
  and normalisation recorded in every checkpoint;
* :class:`OptimSpec`: optimiser, learning rate, weight decay and the step schedule (each method
  declares its own defaults as an ``OptimSpec``, e.g. LARS with lr 0.3 for SimCLR);
* :class:`ViewSpec`: how the two views are augmented.

Checkpoints (``hyper_parameters``), ``geossl pretrain``'s ``--method-args`` and the YAML configs
hold the same options *flat*: one mapping whose keys are the field names of the three specs and
of the method's options (``backbone``, ``lr``, ``crop_size``, ``temperature``, ...), the names the
methods have always saved. :func:`flatten` and :func:`split_flat` convert between the two.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from geossl.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """What the encoder takes and how it is built.

    Attributes:
        backbone: timm backbone name (``resnet50``, ``vit_small_patch4``, ``convnext_tiny``).
        sensors: sensors in use, in order (``geo``: query sensor first).
        in_chans: bands per sensor, e.g. ``{"s1": 2, "s2": 13}`` (required).
        pairing: ``geo``, ``aug``, ``fusion``, ``partial-fusion`` or ``temporal``.
        adapter: 1x1 band adapter kind (``linear``, ``nonlinear``, ``*-frozen``) or ``None``.
        adapter_out: channels out of the adapter(s) (3 for RGB-shaped backbones).
        pretrained: local weights file for the backbone (stem adapted to the bands).
        img_size: input size of ViT-like backbones (default: the views' ``crop_size``).
        bands: band names per sensor (stored in the checkpoint).
        normalization: normalisation metadata (stored in the checkpoint).
        channels_last: channels-last memory format for the encoder and inputs.
        compile: ``torch.compile`` the encoder trunks (in place: state-dict keys unchanged).
    """

    backbone: str = "resnet50"
    sensors: Sequence[str] = ("s2",)
    in_chans: Mapping[str, int] | None = None
    pairing: str = "aug"
    adapter: str | None = None
    adapter_out: int = 3
    pretrained: str | None = None
    img_size: int | None = None
    bands: Mapping[str, Sequence[str]] | None = None
    normalization: Mapping[str, Any] | None = None
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        """Check that every sensor's band count is known."""
        if self.in_chans is None:
            raise ConfigError("in_chans (bands per sensor) is required")


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    """Optimiser and learning-rate schedule (see :mod:`geossl.methods.optim`).

    Attributes:
        optimizer: ``adam``, ``adamw``, ``sgd``, ``lars`` or ``lamb``.
        lr: learning rate for ``base_batch_size`` samples (scaled linearly by the global batch).
        weight_decay: weight decay (not on biases and norms).
        batch_size: per-device batch size (times the devices for the lr scaling).
        base_batch_size: batch size ``lr`` refers to.
        warmup_steps: linear warm-up steps (default: a tenth of ``max_steps``, at most 2000).
        max_steps: total optimiser steps for the cosine schedule (-1: from the trainer).
        backbone_lr_scale: the encoder's learning rate is ``lr`` times this (continued
            pretraining from foundation weights: a lower rate keeps them from being washed out
            while the new heads learn at ``lr``).
        freeze_stem_steps: the band adapter and the trunk's first convolution get no update
            during the first N optimiser steps.
        betas: ``(beta1, beta2)`` of Adam, AdamW and LAMB (``None``: the optimiser's own
            default, (0.9, 0.999)); MAE uses (0.9, 0.95).
        weight_decay_end: weight decay at the end of the run, reached on a cosine from
            ``weight_decay`` (``None``: constant); DINO uses 0.04 -> 0.4.
        clip_grad: clip each parameter's gradient to this L2 norm before every optimiser step,
            as DINO (``None`` or 0: no clipping).
        norm_bias_lr_scale: the learning rate of the group without weight decay (biases, 1-d
            parameters such as normalisation weights, and a module's ``no_weight_decay()``
            names such as a ViT's ``pos_embed`` and ``cls_token``: the parameters LARS does not
            adapt) is ``lr`` times this, with every optimiser; Barlow Twins uses
            0.0048 / 0.2 = 0.024.
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    base_batch_size: int = 256
    warmup_steps: int | None = None
    max_steps: int = -1
    backbone_lr_scale: float = 1.0
    freeze_stem_steps: int = 0
    betas: tuple[float, float] | None = None
    weight_decay_end: float | None = None
    clip_grad: float | None = None
    norm_bias_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        """Check the continued-pretraining options, the betas, the decay and the clipping."""
        if self.betas is not None:
            if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
                raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
            object.__setattr__(self, "betas", (float(self.betas[0]), float(self.betas[1])))
        if self.weight_decay_end is not None and self.weight_decay_end < 0:
            raise ConfigError(f"weight_decay_end must be >= 0, got {self.weight_decay_end}")
        if self.clip_grad is not None and not self.clip_grad >= 0:
            raise ConfigError(f"clip_grad must be >= 0 (0: no clipping), got {self.clip_grad}")
        if not self.backbone_lr_scale > 0:
            raise ConfigError(f"backbone_lr_scale must be positive, got {self.backbone_lr_scale}")
        if not self.norm_bias_lr_scale > 0:
            raise ConfigError(f"norm_bias_lr_scale must be positive, got "
                              f"{self.norm_bias_lr_scale}")
        if self.freeze_stem_steps < 0:
            raise ConfigError(f"freeze_stem_steps must be >= 0, got {self.freeze_stem_steps}")


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """How the two views of a sample are made (see :mod:`geossl.methods.augment`).

    Attributes:
        crop_size: size of the augmented views (default: ``img_size`` or the input size).
        crop_scale: area range of the random resized crop.
        same_crop: ``geo``: both sensors get the same geometric augmentation.
        augment: extra :class:`~geossl.methods.augment.SSLAugment` options for all sensors.
        sensor_augment: :class:`SSLAugment` options per sensor (override ``augment``).
        sar_sensors: sensors augmented as SAR (speckle, no grayscale).
    """

    crop_size: int | None = None
    crop_scale: tuple[float, float] = (0.2, 1.0)
    same_crop: bool = False
    augment: Mapping[str, Any] | None = None
    sensor_augment: Mapping[str, Mapping[str, Any]] | None = None
    sar_sensors: Sequence[str] = ("s1",)


@dataclasses.dataclass(frozen=True)
class MethodOptions:
    """Base of a method's own options (a method subclasses it and adds fields with defaults).

    Checks go in ``__post_init__`` and raise :class:`~geossl.core.errors.ConfigError`.
    """


#: the shared specs, in the order a method takes them
SPECS: tuple[type[Any], ...] = (EncoderSpec, OptimSpec, ViewSpec)


def field_names(spec: type[Any]) -> tuple[str, ...]:
    """The option names of a spec or options dataclass."""
    return tuple(f.name for f in dataclasses.fields(spec))


def flatten(*specs: Any) -> dict[str, Any]:
    """The flat options of some specs (field name -> value, values as given, not copied)."""
    flat: dict[str, Any] = {}
    for spec in specs:
        flat.update({f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)})
    return flat


def split_flat(
    flat: Mapping[str, Any], kinds: Sequence[type[Any]], ignore: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[str]]:
    """Share flat options out among spec kinds by field name.

    Args:
        flat: option name -> value.
        kinds: spec / options dataclasses (a name goes to the first kind declaring it).
        ignore: names dropped silently (accepted for old checkpoints and shared configs).

    Returns:
        one dict of options per kind, and the names no kind declares.
    """
    names = [set(field_names(kind)) for kind in kinds]
    parts: list[dict[str, Any]] = [{} for _ in kinds]
    unknown: list[str] = []
    for key, value in flat.items():
        for part, declared in zip(parts, names, strict=True):
            if key in declared:
                part[key] = value
                break
        else:
            if key not in ignore:
                unknown.append(key)
    return parts, unknown
