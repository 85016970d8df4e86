"""The encoder: band adapter or per-sensor stems in front of one timm trunk.

Three layouts, chosen by :func:`build_encoder`'s arguments:

* **single input** (``in_chans`` an int): an optional 1x1 :class:`BandAdapter` (N -> k bands)
  and the backbone; without an adapter the backbone's own stem takes the N bands.
* **per-sensor stems** (``in_chans`` a dict such as ``{"s1": 2, "s2": 13}``, ``fusion=False``):
  one 1x1 adapter per sensor (``adapter`` kind, ``linear`` by default) maps each sensor to
  ``adapter_out`` channels of one shared trunk; ``forward(x, sensor="s1")`` picks the stem. This
  is the ``geo`` pairing encoder: the S1 view and the S2 view go through the same trunk.
* **fusion** (``in_chans`` a dict, ``fusion=True``): the sensors are stacked in the dict's
  order (``sum(C)`` bands), each sensor's bands are multiplied by its entry of the
  ``sensor_mask`` (so a missing sensor is zero-filled) and the mask itself is appended as one
  constant channel per sensor, so the trunk knows a zero block means "missing" rather than
  "dark". The trunk therefore takes ``sum(C) + n_sensors`` channels (or ``adapter_out`` after an
  adapter). Without a mask every sensor counts as present.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from geossl.core.errors import ConfigError
from geossl.models.adapters import BandAdapter, parse_adapter
from geossl.models.backbones import create_backbone


def _sensor_name(key: str) -> str:
    return key.removeprefix("image_")


class Encoder(nn.Module):
    """Backbone features ``(B, num_features)`` for single-sensor, multi-sensor or fused input."""

    def __init__(
        self,
        backbone: str,
        in_chans: int | Mapping[str, int],
        adapter: str | None = None,
        adapter_out: int = 3,
        pretrained: str | None = None,
        img_size: int | None = None,
        fusion: bool = False,
        global_pool: str | None = None,
    ) -> None:
        """Build the encoder (see :func:`build_encoder`)."""
        super().__init__()
        chans: int | dict[str, int] = (
            int(in_chans) if isinstance(in_chans, int) else {str(k): int(v)
                                                             for k, v in in_chans.items()}
        )
        if isinstance(chans, dict) and not chans:
            raise ConfigError("in_chans is an empty dict: give at least one sensor")
        if fusion and not isinstance(chans, dict):
            raise ConfigError("fusion needs in_chans per sensor, e.g. {'s1': 2, 's2': 13}")
        if adapter is not None:
            parse_adapter(adapter)  # validate early
        self.config: dict[str, Any] = {
            "backbone": backbone,
            "in_chans": chans,
            "adapter": adapter,
            "adapter_out": adapter_out,
            "pretrained": pretrained,
            "img_size": img_size,
            "fusion": fusion,
        }
        if global_pool is not None:  # only when set: older configs stay as they were
            self.config["global_pool"] = global_pool
        self.fusion = fusion
        self.sensors: list[str] | None = list(chans) if isinstance(chans, dict) else None
        self.in_chans = chans
        self.adapter: BandAdapter | None = None
        self.stems: nn.ModuleDict | None = None
        if isinstance(chans, dict) and not fusion and len(chans) > 1:
            kind = adapter or "linear"
            self.stems = nn.ModuleDict(
                {s: BandAdapter(c, adapter_out, kind) for s, c in chans.items()}
            )
            trunk_in = adapter_out
        else:
            if isinstance(chans, int):
                n = chans
            elif fusion:
                n = sum(chans.values()) + len(chans)
            else:
                n = next(iter(chans.values()))
            if adapter is not None:
                self.adapter = BandAdapter(n, adapter_out, adapter)
                trunk_in = adapter_out
            else:
                trunk_in = n
        self.backbone = create_backbone(backbone, trunk_in, pretrained, img_size, global_pool)
        self.num_features: int = int(self.backbone.num_features)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------
    def fuse(
        self,
        x: Tensor | Mapping[str, Tensor],
        sensor: str | None = None,
        sensor_mask: Tensor | None = None,
    ) -> Tensor:
        """Stack the sensors, zero-fill missing ones and append the mask channels.

        Args:
            x: dict ``{sensor: (B, C_s, H, W)}`` (missing sensors may be absent), a stacked
                ``(B, sum(C), H, W)`` tensor, or one sensor's ``(B, C_s, H, W)`` with ``sensor``.
            sensor: the sensor of a single-sensor tensor.
            sensor_mask: ``(B, n_sensors)``, 1 where the sensor is present.

        Returns:
            ``(B, sum(C) + n_sensors, H, W)``.
        """
        assert isinstance(self.in_chans, dict)
        chans = self.in_chans
        parts: dict[str, Tensor] = {}
        if isinstance(x, Mapping):
            parts = {_sensor_name(k): v for k, v in x.items()}
        elif sensor is not None and x.shape[1] == chans.get(sensor, -1) and x.shape[1] != sum(
            chans.values()
        ):
            parts = {sensor: x}
        elif x.shape[1] == sum(chans.values()):
            parts = dict(zip(chans, torch.split(x, list(chans.values()), dim=1)))
        else:
            raise ValueError(
                f"fusion encoder takes {sum(chans.values())} stacked bands ({chans}), "
                f"got {x.shape[1]}"
            )
        unknown = set(parts) - set(chans)
        if unknown:
            raise ValueError(f"unknown sensors {sorted(unknown)}; encoder has {list(chans)}")
        ref = next(iter(parts.values()))
        b, h, w = ref.shape[0], ref.shape[-2], ref.shape[-1]
        if sensor_mask is None:  # fill kernels: no constant copied to the device
            sensor_mask = torch.stack(
                [ref.new_ones(b) if s in parts else ref.new_zeros(b) for s in chans], dim=1)
        mask = sensor_mask.to(device=ref.device, dtype=ref.dtype)
        blocks: list[Tensor] = []
        for i, (s, c) in enumerate(chans.items()):
            m = mask[:, i].view(b, 1, 1, 1)
            if s in parts:
                blocks.append(parts[s] * m)
            else:
                blocks.append(ref.new_zeros(b, c, h, w))
        blocks.append(mask.view(b, -1, 1, 1).expand(b, len(chans), h, w))
        return torch.cat(blocks, dim=1)

    def forward(
        self,
        x: Tensor | Mapping[str, Tensor],
        sensor: str | None = None,
        sensor_mask: Tensor | None = None,
    ) -> Tensor:
        """Features of a batch.

        Args:
            x: ``(B, C, H, W)``, or a dict ``{sensor or image_<sensor>: tensor}`` (one sensor
                for per-sensor stems, any subset for fusion).
            sensor: which sensor ``x`` comes from (per-sensor stems; fusion with one sensor).
            sensor_mask: ``(B, n_sensors)`` presence mask (fusion encoders).

        Returns:
            ``(B, num_features)``.
        """
        if self.fusion:
            x = self.fuse(x, sensor, sensor_mask)
        elif isinstance(x, Mapping):
            if len(x) != 1:
                raise ValueError(
                    f"a non-fusion encoder takes one sensor at a time, got {list(x)}"
                )
            key, x = next(iter(x.items()))
            sensor = _sensor_name(key)
        assert isinstance(x, Tensor)
        if self.stems is not None:
            stem = self._stem(x, sensor)
            x = stem(x)
        elif self.adapter is not None:
            x = self.adapter(x)
        out: Tensor = self.backbone(x)
        return out

    def _stem(self, x: Tensor, sensor: str | None) -> nn.Module:
        assert self.stems is not None and isinstance(self.in_chans, dict)
        if sensor is None:
            match = [s for s, c in self.in_chans.items() if c == x.shape[1]]
            if len(match) != 1:
                raise ValueError(
                    f"pass sensor= (one of {list(self.in_chans)}) for a {x.shape[1]}-band input"
                )
            sensor = match[0]
        if sensor not in self.stems:
            raise ValueError(f"unknown sensor {sensor!r}; encoder has {list(self.in_chans)}")
        return self.stems[sensor]

    def for_sensor(self, sensor: str) -> Encoder:
        """A single-input encoder (stem of ``sensor`` as its adapter + a copy of the trunk).

        Lets a per-sensor-stem encoder be evaluated or exported like a single-sensor one.
        """
        if self.stems is None or not isinstance(self.in_chans, dict):
            return copy.deepcopy(self)
        if sensor not in self.stems:
            raise ConfigError(f"unknown sensor {sensor!r}; encoder has {list(self.in_chans)}")
        stem = self.stems[sensor]
        kind = str(getattr(stem, "kind", "linear")) + ("-frozen" if getattr(stem, "frozen", False)
                                                      else "")
        enc = Encoder(self.config["backbone"], self.in_chans[sensor], kind,
                      self.config["adapter_out"], None, self.config["img_size"],
                      global_pool=self.config.get("global_pool"))
        assert enc.adapter is not None
        enc.adapter.load_state_dict(stem.state_dict())
        enc.backbone.load_state_dict(self.backbone.state_dict())
        return enc.to(next(self.backbone.parameters()).device)


def build_encoder(
    backbone: str,
    in_chans: int | dict[str, int],
    adapter: str | None = None,
    adapter_out: int = 3,
    pretrained: str | None = None,
    img_size: int | None = None,
    fusion: bool = False,
    global_pool: str | None = None,
) -> Encoder:
    """Build an encoder (see the module docstring for the three layouts).

    Args:
        backbone: timm name (``resnet50``, ``convnext_tiny``, ``vit_small_patch16_224``) or short
            ViT name (``vit_small_patch4``).
        in_chans: bands (int) or bands per sensor (dict, e.g. ``{"s1": 2, "s2": 13}``).
        adapter: ``linear`` / ``nonlinear`` (``-frozen`` suffix for fixed weights) 1x1 adapter;
            ``None`` for none (per-sensor stems default to ``linear``).
        adapter_out: channels the adapter(s) give the trunk (3 for RGB-shaped weights).
        pretrained: local weights file for the trunk (its stem is adapted to the bands).
        img_size: input size for ViT-like backbones.
        fusion: stack the sensors of a dict ``in_chans`` (with the missing-sensor mask).
        global_pool: the trunk's timm ``global_pool`` (``None``: its default; see
            :func:`~geossl.models.backbones.create_backbone`; MAE uses ``avg`` for ViTs).

    Returns:
        the :class:`Encoder`; ``encoder.config`` rebuilds it with ``build_encoder(**config)``.
    """
    return Encoder(backbone, in_chans, adapter, adapter_out, pretrained, img_size, fusion,
                   global_pool)
