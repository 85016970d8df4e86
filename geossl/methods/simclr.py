"""SimCLR: NT-Xent between the projections of two views (Chen et al., 2020).

Under DDP the negatives of every device are gathered with gradients inside
:func:`geossl.methods.losses.nt_xent`, so the loss and gradients are those of the global batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from geossl.methods.base import SSLMethod
from geossl.methods.losses import nt_xent
from geossl.methods.metrics import contrastive_top1
from geossl.methods.specs import MethodOptions, OptimSpec
from geossl.methods.views import View
from geossl.models import ProjectionHead


@dataclasses.dataclass(frozen=True)
class SimCLROptions(MethodOptions):
    """SimCLR's own options.

    Attributes:
        temperature: NT-Xent temperature.
        proj_dim: projection size.
        proj_hidden: projector hidden width.
        proj_layers: Linear layers of the projector.
        gather: gather negatives across devices under DDP.
    """

    temperature: float = 0.1
    proj_dim: int = 128
    proj_hidden: int = 2048
    proj_layers: int = 2
    gather: bool = True


class SimCLR(SSLMethod[SimCLROptions]):
    """SimCLR over any pairing mode (``geo``: S1 view vs S2 view of one place).

    Optimiser defaults: LARS, lr 0.3 per 256 samples, weight decay 1e-6, as in the SimCLR paper.
    """

    method_name = "simclr"
    options_type = SimCLROptions
    default_optim = OptimSpec(optimizer="lars", lr=0.3, weight_decay=1e-6)

    def build_heads(self) -> None:
        """The projector."""
        o = self.options
        self.projector = ProjectionHead(self.encoder.num_features, o.proj_hidden, o.proj_dim,
                                        num_layers=o.proj_layers)

    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """NT-Xent of the two projected views, and its top-1 accuracy (``contrastive_acc``)."""
        h1, h2 = self.encode_pair(view1, view2)
        z1, z2 = self.projector(h1), self.projector(h2)
        loss = nt_xent(z1, z2, self.options.temperature, gather=self.options.gather)
        return loss, {"contrastive_acc": contrastive_top1(z1, z2)}
