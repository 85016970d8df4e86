"""Barlow Twins: two views' cross-correlation driven to the identity (Zbontar et al., 2021).

No negatives, no momentum encoder and no large batch: the loss decorrelates the embedding
dimensions over the batch (:func:`geossl.methods.losses.barlow_twins_loss`), which is why it is
the method for the small-batch studies (the paper reports it stable down to batch 256 and
usable below). Under DDP the cross-correlation is that of the global batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, cast

from torch import Tensor

from geossl.core.errors import ConfigError
from geossl.core.pairing import PAIRING_MODES
from geossl.methods.base import OptionsT, SSLMethod
from geossl.methods.losses import barlow_twins_loss
from geossl.methods.specs import MethodOptions, OptimSpec
from geossl.methods.views import View
from geossl.models import ProjectionHead


@dataclasses.dataclass(frozen=True)
class BarlowTwinsOptions(MethodOptions):
    """Barlow Twins' own options.

    Attributes:
        lambda_offdiag: weight of the redundancy-reduction (off-diagonal) term (5e-3, the
            paper's ``lambda`` and lightly's ``lambda_param``).
        proj_dim: projection size (8192 in the paper).
        proj_hidden: projector hidden width (8192 in the paper).
        proj_layers: Linear layers of the projector (3: two Linear-BN-ReLU blocks, then Linear).
    """

    lambda_offdiag: float = 5e-3
    proj_dim: int = 8192
    proj_hidden: int = 8192
    proj_layers: int = 3

    def __post_init__(self) -> None:
        """Check the weight."""
        if self.lambda_offdiag < 0:
            raise ConfigError(f"lambda_offdiag must be >= 0, got {self.lambda_offdiag}")


class _ProjectorOptions(Protocol):
    """The projector options of :class:`PairProjectorMethod`'s options."""

    @property
    def proj_dim(self) -> int: ...
    @property
    def proj_hidden(self) -> int: ...
    @property
    def proj_layers(self) -> int: ...


class PairProjectorMethod(SSLMethod[OptionsT]):
    """Base of the methods whose two views go through one batch-norm projector.

    Barlow Twins and VICReg: a positive pair is all their losses need, so every pairing mode
    serves; their options carry ``proj_dim``, ``proj_hidden`` and ``proj_layers``.
    """

    #: a positive pair is all the loss needs: every mode that makes one
    pairings = PAIRING_MODES

    def build_heads(self) -> None:
        """The projector (Linear-BN-ReLU blocks, then Linear)."""
        o = cast(_ProjectorOptions, self.options)
        self.projector = ProjectionHead(self.encoder.num_features, o.proj_hidden, o.proj_dim,
                                        num_layers=o.proj_layers, batch_norm=True)

    def project_pair(self, view1: View, view2: View) -> tuple[Tensor, Tensor]:
        """The two views encoded (:meth:`encode_pair`), then projected."""
        h1, h2 = self.encode_pair(view1, view2)
        return self.projector(h1), self.projector(h2)


class BarlowTwins(PairProjectorMethod[BarlowTwinsOptions]):
    """Barlow Twins over every pairing mode (a positive pair is all it needs).

    ``geo``: view 1 is the first sensor (e.g. S1), view 2 the second (S2) of the same place,
    through per-sensor stems and one shared trunk and projector; ``temporal``: one place at two
    dates; ``fusion`` / ``partial-fusion``: two augmentations (random sensor subsets) of the
    stacked sensors. Optimiser defaults, as in the paper: LARS, lr 0.2 per 256 samples for the
    weights and 0.0048 for the biases and normalisation parameters (``norm_bias_lr_scale``
    0.024), weight decay 1.5e-6.
    """

    method_name = "barlow"
    options_type = BarlowTwinsOptions
    #: the paper's (and its repository's ``--learning-rate-biases``) 0.0048 for biases and
    #: norms against 0.2 for the weights. LARS does not adapt those parameters, so at the
    #: weights' rate they take raw gradients of a loss summed over every projection dimension
    #: (~2000 at the start with 2048 of them): measured on the demo scene (120 steps of 64
    #: chips, ResNet-18, seed 0), kNN OA 0.954 at the shared rate against 0.985 with this
    #: one (random init 0.965)
    default_optim = OptimSpec(optimizer="lars", lr=0.2, weight_decay=1.5e-6,
                              norm_bias_lr_scale=0.024)  # 0.0048 / 0.2
    #: Barlow Twins checkpoints saved before ``norm_bias_lr_scale`` existed trained every
    #: parameter at the weights' rate
    legacy_defaults: ClassVar[dict[str, Any]] = {"norm_bias_lr_scale": 1.0}

    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Barlow Twins loss of the two projected views."""
        z1, z2 = self.project_pair(view1, view2)
        return barlow_twins_loss(z1, z2, self.options.lambda_offdiag), {}
