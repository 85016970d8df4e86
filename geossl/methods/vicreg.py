"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce and LeCun, ICLR 2022).

The two views' projections are pulled together (invariance, mean squared error) while each
embedding dimension keeps a standard deviation of at least 1 over the batch (variance) and the
dimensions are decorrelated (covariance), each view on its own
(:func:`geossl.methods.losses.vicreg_loss`). No negatives, no momentum encoder, no large batch;
the two branches need not share weights or even inputs, which suits the ``geo`` pairing (S1 and
S2 views through per-sensor stems).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from geossl.core.errors import ConfigError
from geossl.methods.barlow import PairProjectorMethod
from geossl.methods.losses import vicreg_terms
from geossl.methods.specs import MethodOptions, OptimSpec
from geossl.methods.views import View


@dataclasses.dataclass(frozen=True)
class VICRegOptions(MethodOptions):
    """VICReg's own options.

    Attributes:
        sim_coeff: weight of the invariance term (25, the paper's lambda).
        std_coeff: weight of the variance term (25, mu).
        cov_coeff: weight of the covariance term (1, nu).
        proj_dim: projection size (8192 in the paper).
        proj_hidden: projector hidden width (8192 in the paper).
        proj_layers: Linear layers of the projector (3: two Linear-BN-ReLU blocks, then Linear).
    """

    sim_coeff: float = 25.0
    std_coeff: float = 25.0
    cov_coeff: float = 1.0
    proj_dim: int = 8192
    proj_hidden: int = 8192
    proj_layers: int = 3

    def __post_init__(self) -> None:
        """Check the weights."""
        for name in ("sim_coeff", "std_coeff", "cov_coeff"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


class VICReg(PairProjectorMethod[VICRegOptions]):
    """VICReg over every pairing mode (a positive pair is all it needs).

    The views per mode are those of :class:`~geossl.methods.barlow.BarlowTwins`; the expander
    (Linear-BN-ReLU blocks, then Linear) is :class:`~geossl.methods.barlow.PairProjectorMethod`'s
    projector.

    Optimiser defaults: LARS, lr 0.2 per 256 samples, weight decay 1e-6, as in the paper.
    """

    method_name = "vicreg"
    options_type = VICRegOptions
    default_optim = OptimSpec(optimizer="lars", lr=0.2, weight_decay=1e-6)

    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """VICReg loss of the two projected views; its three terms are logged unweighted."""
        z1, z2 = self.project_pair(view1, view2)
        o = self.options
        inv, var, cov = vicreg_terms(z1, z2)
        loss = o.sim_coeff * inv + o.std_coeff * var + o.cov_coeff * cov
        return loss, {"invariance": inv.detach(), "variance": var.detach(),
                      "covariance": cov.detach()}
