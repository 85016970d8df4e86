"""SimCLR: NT-Xent between the projections of two views (Chen et al., 2020).

Under DDP the negatives of every device are gathered with gradients inside
:func:`geossl.methods.losses.nt_xent`, so the loss and gradients are those of the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor

from geossl.methods.base import SSLMethod
from geossl.methods.losses import nt_xent
from geossl.methods.views import View
from geossl.models import ProjectionHead


class SimCLR(SSLMethod):
    """SimCLR over any pairing mode (``geo``: S1 view vs S2 view of one place)."""

    method_name: ClassVar[str] = "simclr"

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
        lr: float = 0.3,
        weight_decay: float = 1e-6,
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
        temperature: float = 0.1,
        proj_layers: int = 2,
        gather: bool = True,
    ) -> None:
        """Configure SimCLR.

        Args:
            temperature: NT-Xent temperature.
            proj_layers: Linear layers of the projector.
            gather: gather negatives across devices under DDP.

        The other arguments are those of :class:`~geossl.methods.base.SSLMethod` (defaults:
        LARS, lr 0.3 per 256 samples, weight decay 1e-6, as in the SimCLR paper).
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
        self.temperature = temperature
        self.gather = gather
        self.projector = ProjectionHead(
            self.encoder.num_features, proj_hidden, proj_dim, num_layers=proj_layers
        )

    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """NT-Xent of the two projected views."""
        h1, h2 = self.encode_pair(view1, view2)
        z1, z2 = self.projector(h1), self.projector(h2)
        loss = nt_xent(z1, z2, self.temperature, gather=self.gather)
        return loss, {}
