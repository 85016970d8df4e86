"""DINO: self-distillation with no labels (Caron et al., ICCV 2021).

* **Multi-crop.** Two global views (the pairing mode's two views, ``crop_size`` px, area in
  ``crop_scale``, default ``(0.4, 1.0)``) and ``local_crops`` local views (``local_crop_size``
  px, default 96/224 of the global size, area in ``local_crop_scale``, default
  ``(0.05, 0.4)``), made on the device by the same augmentation as the other methods. The local
  views come in pairs from the pairing mode's view maker, so with ``geo`` pairing the global
  views are S1 and S2 of one place and the local views alternate S1 and S2 crops of it (S1 and
  S2 crops of one place are views of one sample); ``temporal`` alternates the two dates,
  ``fusion`` / ``partial-fusion`` crop the stacked sensors (random sensor subsets per crop).
* **Student / teacher.** The student (``encoder`` + ``head``) sees every crop, the teacher
  (``teacher_encoder`` + ``teacher_head``, copies with no gradient) only the global ones. The
  teacher follows the student as an exponential moving average whose rate rises from
  ``momentum`` (0.996) to 1 on a cosine schedule over the run (BYOL's
  :func:`~geossl.methods.byol.cosine_momentum`), after every optimiser step.
* **Centring and sharpening.** The teacher's logits are centred (``center``, a buffer saved in
  checkpoints) and sharpened by a low temperature; the centre follows the mean teacher logits
  with rate ``center_momentum`` (:func:`~geossl.methods.losses.update_center`), updated after
  the loss of each step. The teacher temperature rises linearly from ``warmup_teacher_temp`` to
  ``teacher_temp`` over ``teacher_temp_warmup_steps``.
* **Head.** :class:`~geossl.models.DINOHead`: MLP to a 256-d bottleneck, L2 normalisation and a
  weight-normed last layer of ``out_dim`` prototypes, whose gradient is dropped for the first
  ``freeze_last_layer_steps`` steps (DINO freezes it for the first epoch).
* **The teacher is the exported encoder** (``export_teacher``): DINO evaluates and releases the
  teacher (its ``eval_knn.py`` / ``eval_linear.py`` read ``--checkpoint_key teacher``; the paper's
  Fig. 6: the teacher scores better than the student throughout training), an average of the
  student's recent weights whose BatchNorm statistics come from the global crops only (the
  student's also from the small local crops, a mismatch for whole-chip features).
* **ViT and ResNet backbones.** ViT-like backbones are switched to timm's dynamic input size so
  the local crops go through with their own token count (the position embedding is resampled;
  the weights, and so the exported model, are unchanged).

* **Optimiser.** As DINO's ``main_dino.py``: AdamW, lr 5e-4 per 256 samples, weight decay on
  a cosine from 0.04 to 0.4 over the run (``weight_decay`` -> ``weight_decay_end``), and each
  parameter's gradient clipped to norm 3 (``clip_grad``), all options of the shared
  :class:`~geossl.methods.specs.OptimSpec`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from geossl.core.errors import ConfigError
from geossl.core.pairing import PAIRING_MODES, image_key
from geossl.methods.augment import SSLAugment, build_augments
from geossl.methods.base import SSLMethod, fp32_region
from geossl.methods.byol import check_momentum, cosine_momentum
from geossl.methods.losses import dino_loss, update_center
from geossl.methods.specs import EncoderSpec, MethodOptions, OptimSpec, ViewSpec
from geossl.methods.views import View, make_views
from geossl.models import DINOHead, Encoder

#: DINO's global-crop area range (the shared default of the other methods is (0.2, 1.0))
GLOBAL_CROP_SCALE = (0.4, 1.0)
#: DINO's local crop size as a fraction of the global one (96 / 224)
LOCAL_SIZE_FRACTION = 96 / 224


def teacher_temperature(warmup_temp: float, temp: float, warmup_steps: int, step: int) -> float:
    """The teacher temperature at ``step``: linear from ``warmup_temp`` to ``temp``, then flat."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return temp
    return warmup_temp + (temp - warmup_temp) * step / warmup_steps


def allow_any_input_size(encoder: nn.Module) -> int:
    """Let timm ViTs inside ``encoder`` take any input size (multi-crop), weights unchanged.

    Sets what ``timm.create_model(..., dynamic_img_size=True, dynamic_img_pad=True)`` would
    have set: the position embedding is resampled to the token grid of each input (an input of
    the built size gives the same output as before), a side that is not a multiple of the patch
    is padded. Modules that are not timm ViTs are left alone.

    Returns:
        the patch size of the ViT (1 if there is none).
    """
    patch = 1
    from timm.layers import Format
    from timm.models.vision_transformer import VisionTransformer

    for module in encoder.modules():
        if isinstance(module, VisionTransformer):
            # timm declares it Final (set in __init__); the forward pass only reads it
            module.dynamic_img_size = True  # type: ignore[misc]
            embed = module.patch_embed
            embed.strict_img_size = False
            embed.flatten = False
            embed.output_fmt = Format.NHWC
            embed.dynamic_img_pad = True
            patch = int(embed.patch_size[0])
    return patch


@dataclasses.dataclass(frozen=True)
class DINOOptions(MethodOptions):
    """DINO's own options (defaults of the DINO repository's ``main_dino.py``).

    Attributes:
        out_dim: prototypes of the last layer (65536).
        proj_hidden: hidden width of the head's MLP (2048).
        proj_dim: bottleneck size before the last layer (256).
        proj_layers: Linear layers of the head's MLP (3).
        proj_batch_norm: BatchNorm in the head's MLP (false, as DINO's default).
        norm_last_layer: fix the norm of the last layer's weights (true).
        freeze_last_layer_steps: steps during which the last layer gets no update (0).
        momentum: base teacher EMA rate, raised to 1 on a cosine over the run (0.996).
        teacher_temp: teacher temperature after the warm-up (0.04).
        warmup_teacher_temp: teacher temperature at step 0 (0.04).
        teacher_temp_warmup_steps: steps of the linear teacher-temperature warm-up (0).
        student_temp: student temperature (0.1).
        center_momentum: EMA rate of the teacher centre (0.9).
        local_crops: number of local crops per sample (8).
        local_crop_size: local crop side in pixels (default: 96/224 of the global view).
        local_crop_scale: area range of the local crops (0.05, 0.4).
        export_teacher: the checkpoint's encoder (``geossl export``, ``load_encoder``, the
            evaluations) is the teacher's, as in DINO's own evaluations (true; false: the
            student's).
    """

    out_dim: int = 65536
    proj_hidden: int = 2048
    proj_dim: int = 256
    proj_layers: int = 3
    proj_batch_norm: bool = False
    norm_last_layer: bool = True
    freeze_last_layer_steps: int = 0
    momentum: float = 0.996
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    teacher_temp_warmup_steps: int = 0
    student_temp: float = 0.1
    center_momentum: float = 0.9
    local_crops: int = 8
    local_crop_size: int | None = None
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    export_teacher: bool = True

    def __post_init__(self) -> None:
        """Check the rates, temperatures and crops."""
        check_momentum(self.momentum)
        if not 0 <= self.center_momentum < 1:
            raise ConfigError(f"center_momentum must be in [0, 1), got {self.center_momentum}")
        for name in ("teacher_temp", "warmup_teacher_temp", "student_temp"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.out_dim < 1 or self.local_crops < 0:
            raise ConfigError(f"out_dim must be >= 1 and local_crops >= 0, got {self.out_dim} "
                              f"and {self.local_crops}")
        if self.local_crop_size is not None and self.local_crop_size < 1:
            raise ConfigError(f"local_crop_size must be >= 1, got {self.local_crop_size}")
        lo, hi = self.local_crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"local_crop_scale must satisfy 0 < min <= max <= 1, got "
                              f"{tuple(self.local_crop_scale)}")


class DINO(SSLMethod[DINOOptions]):
    """DINO over every pairing mode, for ViT and ResNet backbones (see the module docstring).

    Optimiser defaults: AdamW, lr 5e-4 per 256 samples, weight decay 0.04 rising to 0.4 on a
    cosine, gradients clipped to norm 3 per parameter, as DINO.
    """

    method_name = "dino"
    #: a positive pair is all the loss needs: every mode that makes one
    pairings = PAIRING_MODES
    options_type = DINOOptions
    default_optim = OptimSpec(optimizer="adamw", lr=5e-4, weight_decay=0.04,
                              weight_decay_end=0.4, clip_grad=3.0)
    momentum_pairs = (("encoder", "teacher_encoder"), ("head", "teacher_head"))
    teacher_encoder: Encoder
    teacher_head: DINOHead
    center: Tensor

    def __init__(
        self,
        encoder: EncoderSpec,
        optim: OptimSpec | None = None,
        views: ViewSpec | None = None,
        options: DINOOptions | None = None,
    ) -> None:
        """Configure DINO (global crops default to DINO's area range ``(0.4, 1.0)``)."""
        views = ViewSpec(crop_scale=GLOBAL_CROP_SCALE) if views is None else views
        super().__init__(encoder, optim, views, options)
        self._local_augments: dict[str, SSLAugment] | None = None

    @classmethod
    def specs_from_hparams(
        cls, hparams: Mapping[str, Any], strict: bool = True
    ) -> tuple[EncoderSpec, OptimSpec, ViewSpec, DINOOptions]:
        """As the base, with DINO's global-crop area range unless ``crop_scale`` is given."""
        flat = dict(hparams)
        flat.setdefault("crop_scale", GLOBAL_CROP_SCALE)
        return super().specs_from_hparams(flat, strict)

    def build_heads(self) -> None:
        """The DINO head and the centre; ViTs take any input size (the teacher copies follow)."""
        o = self.options
        #: the ViT's patch size (1: not a ViT): the default local crop size is a multiple of it
        self.patch = allow_any_input_size(self.encoder) if o.local_crops > 0 else 1
        self.head = DINOHead(self.encoder.num_features, o.out_dim, o.proj_hidden,
                             o.proj_dim, o.proj_layers, o.proj_batch_norm,
                             o.norm_last_layer)
        self.register_buffer("center", torch.zeros(o.out_dim))

    # -- schedules ------------------------------------------------------------------------------
    def current_momentum(self) -> float:
        """Teacher EMA rate at the current step."""
        return cosine_momentum(self.options.momentum, int(self.global_step), self.total_steps())

    def current_teacher_temp(self) -> float:
        """Teacher temperature at the current step."""
        o = self.options
        return teacher_temperature(o.warmup_teacher_temp, o.teacher_temp,
                                   o.teacher_temp_warmup_steps, int(self.global_step))

    # -- views ----------------------------------------------------------------------------------
    def local_size(self, global_size: int) -> int:
        """Side of the local crops for global views of ``global_size`` px."""
        size, p = self.options.local_crop_size, self.patch
        if size is not None:
            return int(size)
        return max(p, round(global_size * LOCAL_SIZE_FRACTION / p) * p)

    def local_augments(self, global_size: int) -> dict[str, SSLAugment]:
        """The per-sensor augmentations of the local crops (built on first use)."""
        if self._local_augments is None:
            spec = self.view_spec
            options: dict[str, Any] = {**(spec.augment or {}),
                                       "crop_scale": tuple(self.options.local_crop_scale)}
            per_sensor = {s: dict(v) for s, v in (spec.sensor_augment or {}).items()}
            # the same sensor kinds / dB scales as the global views
            for s, aug in self.augments(global_size).items():
                per_sensor.setdefault(s, {}).setdefault("sensor_kind", aug.sensor_kind)
                if aug.sensor_kind == "sar":
                    per_sensor[s].setdefault("db_per_unit", aug.db_per_unit)
            self._local_augments = build_augments(self.sensors, self.local_size(global_size),
                                                  spec.sar_sensors, options, per_sensor)
        return self._local_augments

    def make_local_views(self, batch: Mapping[str, Any], global_size: int) -> list[View]:
        """``local_crops`` local views (pairs from the pairing mode's view maker, in order)."""
        n = self.options.local_crops
        if n == 0:
            return []
        ref = batch[image_key(self.sensors[0])]
        augs = self.local_augments(global_size)
        out: list[View] = []
        with fp32_region(ref.device):
            while len(out) < n:
                out.extend(make_views(batch, self.pairing, self.sensors, augs,
                                      same_crop=self.view_spec.same_crop))
        if self.encoder_spec.channels_last:
            for v in out:
                v.x = v.x.contiguous(memory_format=torch.channels_last)
        return out[:n]

    def encode_views(self, views: Sequence[View], encoder: nn.Module | None = None) -> list[Tensor]:
        """Features of every view: one forward pass per (sensor, size, mask) group."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, v in enumerate(views):
            groups.setdefault((v.sensor, tuple(v.x.shape[1:]), v.sensor_mask is None), []).append(i)
        out: list[Tensor | None] = [None] * len(views)
        for idx in groups.values():
            first = views[idx[0]]
            x = torch.cat([views[i].x for i in idx])
            mask = None
            if first.sensor_mask is not None:
                mask = torch.cat([views[i].sensor_mask for i in idx])  # type: ignore[misc]
            feats = self.encode(View(x, first.sensor, mask), encoder)
            for i, chunk in zip(idx, feats.chunk(len(idx)), strict=True):
                out[i] = chunk
        return [t for t in out if t is not None]

    # -- training -------------------------------------------------------------------------------
    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """DINO loss of the student on every crop against the teacher on the global crops.

        Updates the centre (after the loss, from this step's teacher logits).
        """
        local = self.make_local_views(batch, int(view1.x.shape[-1]))
        crops = [view1, view2, *local]
        student = [self.head(h) for h in self.encode_views(crops)]
        with torch.no_grad():
            teacher = [self.teacher_head(h).detach()
                       for h in self.encode_views([view1, view2], self.teacher_encoder)]
        o = self.options
        temp = self.current_teacher_temp()
        loss = dino_loss(student, teacher, self.center, temp, o.student_temp)
        with torch.no_grad():
            self.center.copy_(update_center(self.center, teacher, o.center_momentum))
        return loss, {"teacher_temp": torch.tensor(temp),
                      "tau": torch.tensor(self.current_momentum())}

    def on_after_backward(self) -> None:
        """Drop the last layer's gradient during the first ``freeze_last_layer_steps`` steps."""
        if int(self.global_step) < self.options.freeze_last_layer_steps:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """EMA update of the teacher after the optimiser step."""
        self.ema_update(self.current_momentum())

    def geossl_metadata(self) -> dict[str, Any]:
        """As the base; the exported encoder is the teacher's unless ``export_teacher`` is off."""
        meta = super().geossl_metadata()
        if self.options.export_teacher:
            meta["encoder_prefix"] = "teacher_encoder."
        return meta
