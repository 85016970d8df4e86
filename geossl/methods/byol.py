"""BYOL: an online network predicts an EMA target network's projection (Grill et al., 2020).

The target encoder/projector start as copies of the online ones and follow an exponential moving
average whose rate rises from ``momentum`` to 1 on a cosine schedule over the run
(``tau = 1 - (1 - momentum) (cos(pi k / K) + 1) / 2``), updated after every optimiser step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from geossl.errors import ConfigError
from geossl.methods.base import SSLMethod
from geossl.methods.losses import byol_loss
from geossl.methods.moco import momentum_update
from geossl.methods.views import View
from geossl.models import PredictionHead, ProjectionHead


def cosine_momentum(base: float, step: int, max_steps: int) -> float:
    """BYOL's target rate at ``step``: ``base`` at 0, rising to 1 at ``max_steps``."""
    if max_steps <= 0:
        return base
    progress = min(1.0, step / max_steps)
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


class BYOL(SSLMethod):
    """BYOL over any pairing mode."""

    method_name: ClassVar[str] = "byol"

    def __init__(  # noqa: D417 - shared arguments documented in SSLMethod
        self,
        backbone: str = "resnet50",
        sensors: Sequence[str] = ("s2",),
        in_chans: dict[str, int] | None = None,
        pairing: str = "aug",
        adapter: str | None = None,
        adapter_out: int = 3,
        pretrained: str | None = None,
        img_size: int | None = None,
        optimizer: str = "lars",
        lr: float = 0.2,
        weight_decay: float = 1.5e-6,
        batch_size: int = 256,
        base_batch_size: int = 256,
        warmup_steps: int | None = None,
        max_steps: int = -1,
        proj_dim: int = 256,
        proj_hidden: int = 4096,
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
        momentum: float = 0.99,
        pred_hidden: int = 4096,
    ) -> None:
        """Configure BYOL.

        Args:
            momentum: base target EMA rate (raised to 1 on a cosine schedule).
            pred_hidden: predictor hidden width.

        The other arguments are those of :class:`~geossl.methods.base.SSLMethod` (defaults:
        LARS, lr 0.2 per 256 samples, weight decay 1.5e-6, 4096-256 projector, as in BYOL).
        """
        super().__init__(
            backbone=backbone,
            sensors=sensors,
            in_chans=in_chans,
            pairing=pairing,
            adapter=adapter,
            adapter_out=adapter_out,
            pretrained=pretrained,
            img_size=img_size,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            base_batch_size=base_batch_size,
            warmup_steps=warmup_steps,
            max_steps=max_steps,
            proj_dim=proj_dim,
            proj_hidden=proj_hidden,
            crop_size=crop_size,
            crop_scale=crop_scale,
            same_crop=same_crop,
            augment=augment,
            sensor_augment=sensor_augment,
            sar_sensors=sar_sensors,
            bands=bands,
            normalization=normalization,
            channels_last=channels_last,
            compile=compile,
        )
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        self.base_momentum = momentum
        self.projector = ProjectionHead(self.encoder.num_features, proj_hidden, proj_dim)
        self.predictor = PredictionHead(proj_dim, pred_hidden, proj_dim)
        self.encoder_target = copy.deepcopy(self.encoder)
        self.projector_target = copy.deepcopy(self.projector)
        for p in [*self.encoder_target.parameters(), *self.projector_target.parameters()]:
            p.requires_grad_(False)

    def current_momentum(self) -> float:
        """Target EMA rate at the current step."""
        return cosine_momentum(self.base_momentum, int(self.global_step), self.total_steps())

    @torch.no_grad()
    def targets(self, view: View) -> Tensor:
        """Target projections of a view."""
        out: Tensor = self.projector_target(self.encode(view, self.encoder_target))
        return out

    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Symmetric BYOL loss: each view's prediction regresses the other's target."""
        h1, h2 = self.encode_pair(view1, view2)
        p1, p2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))
        z1, z2 = self.targets(view1), self.targets(view2)
        loss = (byol_loss(p1, z2) + byol_loss(p2, z1)) / 2
        return loss, {"tau": torch.tensor(self.current_momentum())}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """EMA update of the target after the optimiser step."""
        tau = self.current_momentum()
        momentum_update(self.encoder, self.encoder_target, tau)
        momentum_update(self.projector, self.projector_target, tau)
