"""The LightningModule every SSL method shares.

A method is a thin subclass (solo-learn / lightly style): it declares its own options (a frozen
:class:`~geossl.methods.specs.MethodOptions` dataclass with defaults and checks), its optimiser
defaults (an :class:`~geossl.methods.specs.OptimSpec`), its heads in :meth:`SSLMethod.build_heads`,
the online/copy module pairs it keeps as moving averages (``momentum_pairs``), and it computes its
pure loss (:mod:`geossl.methods.losses`) over the two views in :meth:`SSLMethod.compute_loss`.
The base class builds the encoder for the pairing mode, makes the views and augments them on the
device inside ``training_step`` (outside autocast, in float32), builds the optimiser and schedule,
and writes the metadata :func:`geossl.pretrained.checkpoint.load_encoder` needs into every
checkpoint.

Encoder per pairing mode: ``aug``/``temporal`` one input of the sensor's bands; ``geo``
per-sensor 1x1 stems into one shared trunk; ``fusion``/``partial-fusion`` the stacked sensors
with the missing-sensor mask (see :mod:`geossl.models.encoder`).

A method is built from typed specs, ``SimCLR(EncoderSpec(...), OptimSpec(...), ViewSpec(...),
SimCLROptions(...))``, or from flat options with :meth:`SSLMethod.from_hparams` (what
``geossl pretrain`` and checkpoints use). Every checkpoint's ``hyper_parameters`` holds the flat
options, under the names the methods have always saved, so older checkpoints load unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from geossl.core.errors import ConfigError, DataError, first_line
from geossl.core.pairing import (
    FUSION_MODES,
    PAIRING_MODES,
    check_method_pairing,
    image_key,
    mode_sensors,
)
from geossl.methods.augment import SSLAugment, build_augments
from geossl.methods.optim import (
    build_optimizer,
    clip_grad_per_parameter,
    cosine_value,
    param_groups,
    warmup_cosine,
)
from geossl.methods.specs import (
    EncoderSpec,
    MethodOptions,
    OptimSpec,
    ViewSpec,
    flatten,
    split_flat,
)
from geossl.methods.views import View, make_views
from geossl.models import Encoder, build_encoder

#: dB per unit of S1 data after geossl's default S1 normalisation (VV clipped to [-25, 0] dB,
#: VH to [-32.5, 0] dB, mapped to [0, 1]): what SAR speckle needs to add dB correctly
S1_DB_PER_UNIT = (25.0, 32.5)

OptionsT = TypeVar("OptionsT", bound=MethodOptions)


def fp32_region(device: torch.device) -> AbstractContextManager[Any]:
    """A context that turns autocast off on ``device`` if it is on (augmentation runs in fp32).

    A no-op where autocast is off or unknown (e.g. the ``meta`` device the sync tests use).
    """
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except RuntimeError:  # a device type autocast does not know
        return nullcontext()
    return torch.autocast(device_type=device.type, enabled=False) if enabled else nullcontext()


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for every parameter."""
    for p_o, p_t in zip(online.parameters(), target.parameters(), strict=True):
        p_t.mul_(momentum).add_(p_o.detach(), alpha=1 - momentum)


class SSLMethod(LightningModule, Generic[OptionsT]):
    """Shared machinery of the SSL methods (see the module docstring)."""

    method_name: ClassVar[str] = "base"
    #: pairing modes the method supports
    pairings: ClassVar[tuple[str, ...]] = PAIRING_MODES
    #: why the other pairing modes are not supported (appended to the refusal)
    pairing_note: ClassVar[str | None] = None
    #: the method's own options (a :class:`MethodOptions` dataclass)
    options_type: ClassVar[type[Any]] = MethodOptions
    #: the method's optimiser and schedule defaults
    default_optim: ClassVar[OptimSpec] = OptimSpec()
    #: ``(online, copy)`` attribute names: the copy starts equal, gets no gradient and follows
    #: the online module as a moving average (:meth:`ema_update`)
    momentum_pairs: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: flat options accepted and ignored (saved by older versions; kept loadable)
    ignored_options: ClassVar[tuple[str, ...]] = ()
    #: the values of options added later that a checkpoint saved before them was trained and
    #: evaluated with (:meth:`load_from_checkpoint` uses them where the checkpoint has none;
    #: new runs get the options' own defaults)
    legacy_defaults: ClassVar[dict[str, Any]] = {}
    #: the Trainer must rebuild the training loader every epoch (e.g. new sample weights)
    reload_dataloaders_every_epoch: ClassVar[bool] = False

    def __init__(
        self,
        encoder: EncoderSpec,
        optim: OptimSpec | None = None,
        views: ViewSpec | None = None,
        options: OptionsT | None = None,
    ) -> None:
        """Configure the method.

        Args:
            encoder: what the encoder takes and how it is built.
            optim: optimiser and schedule (default: the method's ``default_optim``).
            views: view augmentation (default: :class:`ViewSpec`'s).
            options: the method's own options (default: its ``options_type``'s defaults).
        """
        super().__init__()
        optim = self.default_optim if optim is None else optim
        views = ViewSpec() if views is None else views
        own: OptionsT = self.options_type() if options is None else options
        self.save_hyperparameters(flatten(encoder, optim, views, own))
        self.encoder_spec, self.optim_spec, self.view_spec, self.options = (
            encoder, optim, views, own)
        pairing, in_chans = encoder.pairing, dict(encoder.in_chans or {})
        check_method_pairing(f"method {self.method_name}", pairing, self.pairings,
                             self.pairing_note)
        used = mode_sensors(pairing, [str(s) for s in encoder.sensors])
        missing = [s for s in used if s not in in_chans]
        if missing:
            raise ConfigError(f"in_chans has no entry for sensor(s) {missing}")
        self.sensors = used
        self.pairing = pairing
        img_size = encoder.img_size
        vit_like = encoder.backbone.startswith(("vit", "deit", "eva", "beit", "flexivit"))
        if img_size is None and views.crop_size is not None and vit_like:
            img_size = views.crop_size
        self.img_size = img_size
        self.crop_size = views.crop_size or img_size
        self.encoder = self.build_encoder(encoder.backbone, in_chans, encoder.adapter,
                                          encoder.adapter_out, encoder.pretrained, img_size)
        self._augments: dict[str, SSLAugment] | None = None
        self._compiled = False
        self.data_meta: dict[str, Any] = {"bands": encoder.bands,
                                          "normalization": encoder.normalization}
        self.build_heads()
        self.copy_momentum_pairs()

    @classmethod
    def specs_from_hparams(
        cls, hparams: Mapping[str, Any], strict: bool = True
    ) -> tuple[EncoderSpec, OptimSpec, ViewSpec, OptionsT]:
        """The specs and options of flat options (``hyper_parameters``, ``--method-args``).

        Args:
            hparams: option name -> value; the names are the fields of the specs and of the
                method's options. Optimiser options not given keep the method's defaults.
            strict: refuse a name neither the specs nor the method declare (else ignore it).

        Raises:
            ConfigError: an unknown option (``strict``) or a failed check.
        """
        kinds = (EncoderSpec, OptimSpec, ViewSpec, cls.options_type)
        (enc, opt, view, own), unknown = split_flat(hparams, kinds, cls.ignored_options)
        if unknown and strict:
            raise ConfigError(f"method {cls.method_name} has no option {unknown[0]!r}")
        options: OptionsT = cls.options_type(**own)
        return (EncoderSpec(**enc), dataclasses.replace(cls.default_optim, **opt),
                ViewSpec(**view), options)

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any], strict: bool = True) -> Self:
        """The method built from flat options (see :meth:`specs_from_hparams`)."""
        return cls(*cls.specs_from_hparams(hparams, strict))

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Self:
        """The method of a checkpoint, rebuilt from its flat options, with its state.

        Replaces Lightning's loader: the file is read as data only
        (:func:`geossl.pretrained.checkpoint.read_checkpoint`, which never unpickles code) and the
        specs
        are rebuilt from the flat ``hyper_parameters`` every geossl version saved.

        Args:
            checkpoint_path: the checkpoint.
            map_location: device to move the module to (default: the CPU).
            strict: weights must match the module exactly (default: true).
            kwargs: options overriding the saved ones, as in Lightning.

        Raises:
            DataError: unreadable file or weights that do not fit.
        """
        from geossl.pretrained.checkpoint import read_checkpoint

        ckpt = read_checkpoint(checkpoint_path)
        flat = {**cls.legacy_defaults, **dict(ckpt.get("hyper_parameters") or {}), **kwargs}
        method = cls.from_hparams(flat, strict=False)
        method.on_load_checkpoint(ckpt)
        try:
            method.load_state_dict(ckpt["state_dict"], strict=True if strict is None else strict)
        except RuntimeError as err:
            raise DataError(f"checkpoint weights do not fit {cls.__name__} "
                            f"({first_line(err)})", checkpoint_path) from err
        return method.to(map_location) if map_location is not None else method

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
        return build_encoder(backbone, chans, adapter, adapter_out, pretrained, img_size, fusion,
                             self.encoder_pool())

    def encoder_pool(self) -> str | None:
        """The trunk's timm ``global_pool`` (``None``: the backbone's default; MAE: ``avg``)."""
        return None

    def build_heads(self) -> None:
        """Create the method's heads.

        Called once the encoder exists (its width is ``self.encoder.num_features``); the copies
        of ``momentum_pairs`` are made after it.
        """

    def copy_momentum_pairs(self) -> None:
        """(Re)make every declared copy: equal to its online module, frozen (``momentum_pairs``).

        Done at construction; call it again after changing an online module's architecture.
        """
        for online, target in self.momentum_pairs:
            twin = copy.deepcopy(getattr(self, online))
            twin.requires_grad_(False)
            setattr(self, target, twin)

    @torch.no_grad()
    def ema_update(self, momentum: float) -> None:
        """Move every declared copy towards its online module (``momentum_pairs``)."""
        for online, target in self.momentum_pairs:
            momentum_update(getattr(self, online), getattr(self, target), momentum)

    def augments(self, size: int) -> dict[str, SSLAugment]:
        """The per-sensor augmentations (built on first use, when the view size is known)."""
        if self._augments is None:
            spec = self.view_spec
            options: dict[str, Any] = {"crop_scale": tuple(spec.crop_scale),
                                       **(spec.augment or {})}
            per_sensor: dict[str, dict[str, Any]] = {
                s: dict(v) for s, v in (spec.sensor_augment or {}).items()
            }
            in_chans = self.encoder_spec.in_chans or {}
            for s in self.sensors:
                if s in spec.sar_sensors and s == "s1" and in_chans.get(s) == len(S1_DB_PER_UNIT):
                    per_sensor.setdefault(s, {}).setdefault("db_per_unit", S1_DB_PER_UNIT)
            self._augments = build_augments(self.sensors, self.crop_size or size,
                                            spec.sar_sensors, options, per_sensor)
        return self._augments

    def make_views(self, batch: Mapping[str, Any]) -> tuple[View, View]:
        """Two augmented views of a batch (float32, outside autocast)."""
        ref = batch[image_key(self.sensors[0])]
        augs = self.augments(int(ref.shape[-1]))
        with fp32_region(ref.device):
            v1, v2 = make_views(batch, self.pairing, self.sensors, augs,
                                same_crop=self.view_spec.same_crop)
        if self.encoder_spec.channels_last:
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
        """Apply channels_last/compile.

        The data's band names and normalisation come with the :class:`EncoderSpec` (``bands``,
        ``normalization``: :func:`geossl.training.trainer.build_method` passes what the data
        module read), never from probing the data.
        """
        if self.encoder_spec.channels_last:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if self.encoder_spec.compile:
            self.compile_encoders()

    def global_batch_size(self) -> int:
        """Per-device batch size times the number of devices."""
        world = 1
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            world = int(getattr(trainer, "world_size", 1) or 1)
        return self.optim_spec.batch_size * world

    def total_steps(self) -> int:
        """Optimiser steps of the run (``max_steps`` or the trainer's estimate)."""
        steps = self.optim_spec.max_steps
        trainer = getattr(self, "_trainer", None)
        if steps <= 0 and trainer is not None:
            try:
                steps = int(trainer.estimated_stepping_batches)
            except Exception:
                steps = -1
        return steps

    def configure_optimizers(self) -> Any:
        """Optimiser over the trainable parameters; linear warm-up + cosine, per step."""
        spec = self.optim_spec
        opt = build_optimizer(spec.optimizer, self, spec.lr, spec.weight_decay,
                              self.global_batch_size(), spec.base_batch_size, betas=spec.betas)
        steps = self.total_steps()
        warmup = spec.warmup_steps
        if warmup is None:
            warmup = min(2000, steps // 10) if steps > 0 else 0
        # the groups whose weight decay follows ``weight_decay_end`` (not biases and norms)
        decayed = {id(p) for p in param_groups(self, 1.0)[0]["params"]}
        if spec.norm_bias_lr_scale != 1.0:  # before the scheduler records the base rates
            for group in opt.param_groups:
                if group["params"] and id(group["params"][0]) not in decayed:
                    group["lr"] *= spec.norm_bias_lr_scale
        if spec.backbone_lr_scale != 1.0:
            opt = scale_encoder_lr(opt, self.encoder, spec.backbone_lr_scale)
        sched = warmup_cosine(opt, warmup, steps)
        self._decayed_groups = [i for i, g in enumerate(opt.param_groups)
                                if g["params"] and id(g["params"][0]) in decayed]
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def current_weight_decay(self) -> float:
        """Weight decay of the decayed parameters at the current step (``weight_decay_end``)."""
        spec = self.optim_spec
        if spec.weight_decay_end is None:
            return spec.weight_decay
        return cosine_value(spec.weight_decay, spec.weight_decay_end, int(self.global_step),
                            self.total_steps())

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """The Trainer's clipping (if any), then each gradient clipped to ``clip_grad`` (DINO)."""
        super().configure_gradient_clipping(optimizer, gradient_clip_val,
                                            gradient_clip_algorithm)
        if self.optim_spec.clip_grad:
            clip_grad_per_parameter(self.parameters(), self.optim_spec.clip_grad)

    def stem_parameters(self) -> list[nn.Parameter]:
        """The band adapter(s)/stems and the trunk's first convolution of the online encoder."""
        from geossl.models.backbones import first_conv_name

        params: list[nn.Parameter] = []
        for part in (self.encoder.adapter, self.encoder.stems):
            if part is not None:
                params += list(part.parameters())
        params += list(self.encoder.backbone.get_submodule(
            first_conv_name(self.encoder.backbone)).parameters())
        return params

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Drop the stem's gradients during the first ``freeze_stem_steps`` steps; set the decay.

        A parameter without a gradient is skipped by every torch/timm optimiser (no update, no
        weight decay, no moment update), so the stem stays as loaded while the rest adapts.
        With ``weight_decay_end`` the decayed groups get :meth:`current_weight_decay` (a
        function of the step alone, so a resumed run continues the schedule).
        """
        if self.optim_spec.freeze_stem_steps > self.global_step:
            for p in self.stem_parameters():
                p.grad = None
        if self.optim_spec.weight_decay_end is not None:
            wd = self.current_weight_decay()
            for i in getattr(self, "_decayed_groups", ()):
                optimizer.param_groups[i]["weight_decay"] = wd

    # -- checkpoint metadata ------------------------------------------------------------------
    def geossl_metadata(self) -> dict[str, Any]:
        """What :func:`~geossl.pretrained.checkpoint.load_encoder` needs besides the weights."""
        config = dict(self.encoder.config)
        config["pretrained"] = None  # the weights are in the checkpoint
        return {
            **{k: v for k, v in self.data_meta.items() if k not in ("bands", "normalization")},
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


def scale_encoder_lr(opt: torch.optim.Optimizer, encoder: nn.Module,
                     scale: float) -> torch.optim.Optimizer:
    """The same optimiser with the encoder's parameters in groups at ``lr * scale``.

    Every group is split in two (encoder / the rest), keeping its other settings (weight
    decay), so the schedule scales both alike.
    """
    mine = {id(p) for p in encoder.parameters()}
    groups: list[dict[str, Any]] = []
    for group in opt.param_groups:
        settings = {k: v for k, v in group.items() if k != "params"}
        enc = [p for p in group["params"] if id(p) in mine]
        rest = [p for p in group["params"] if id(p) not in mine]
        if enc:
            groups.append({**settings, "params": enc, "lr": settings["lr"] * scale})
        if rest:
            groups.append({**settings, "params": rest})
    opt.param_groups.clear()  # before any step: the optimiser holds no state yet
    for group in groups:
        opt.add_param_group(group)
    return opt
