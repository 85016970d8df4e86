"""BYOL: an online network predicts an EMA target network's projection (Grill et al., 2020).

The target encoder/projector start as copies of the online ones and follow an exponential moving
average whose rate rises from ``momentum`` to 1 on a cosine schedule over the run
(``tau = 1 - (1 - momentum) (cos(pi k / K) + 1) / 2``), updated after every optimiser step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from geossl.core.errors import ConfigError
from geossl.methods.base import SSLMethod
from geossl.methods.losses import byol_loss
from geossl.methods.specs import MethodOptions, OptimSpec
from geossl.methods.views import View
from geossl.models import Encoder, PredictionHead, ProjectionHead


def cosine_momentum(base: float, step: int, max_steps: int) -> float:
    """BYOL's target rate at ``step``: ``base`` at 0, rising to 1 at ``max_steps``."""
    if max_steps <= 0:
        return base
    progress = min(1.0, step / max_steps)
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


def check_momentum(momentum: float) -> None:
    """Refuse a moving-average rate outside ``[0, 1)``."""
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum}")


@dataclasses.dataclass(frozen=True)
class BYOLOptions(MethodOptions):
    """BYOL's own options.

    Attributes:
        momentum: base target EMA rate (raised to 1 on a cosine schedule).
        proj_dim: projection size.
        proj_hidden: projector hidden width.
        pred_hidden: predictor hidden width.
    """

    momentum: float = 0.99
    proj_dim: int = 256
    proj_hidden: int = 4096
    pred_hidden: int = 4096

    def __post_init__(self) -> None:
        """Check the momentum."""
        check_momentum(self.momentum)


class BYOL(SSLMethod[BYOLOptions]):
    """BYOL over any pairing mode.

    Optimiser defaults: LARS, lr 0.2 per 256 samples, weight decay 1.5e-6, 4096-256 projector,
    as in BYOL.
    """

    method_name = "byol"
    options_type = BYOLOptions
    default_optim = OptimSpec(optimizer="lars", lr=0.2, weight_decay=1.5e-6)
    momentum_pairs = (
        ("encoder", "encoder_target"), ("projector", "projector_target"))
    encoder_target: Encoder
    projector_target: ProjectionHead

    def build_heads(self) -> None:
        """Projector and predictor (the target copies follow from ``momentum_pairs``)."""
        o = self.options
        self.projector = ProjectionHead(self.encoder.num_features, o.proj_hidden, o.proj_dim)
        self.predictor = PredictionHead(o.proj_dim, o.pred_hidden, o.proj_dim)

    def current_momentum(self) -> float:
        """Target EMA rate at the current step."""
        return cosine_momentum(self.options.momentum, int(self.global_step), self.total_steps())

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
        self.ema_update(self.current_momentum())
