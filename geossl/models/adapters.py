"""1x1 band adapters in front of RGB-shaped backbones, and folding them into the stem.

A :class:`BandAdapter` maps N bands to ``out_chans`` (3 by default) with a 1x1 convolution,
linear or followed by BatchNorm and a non-linearity, learnable or frozen. It is how 2-band S1
and 13-band S2 inputs share an ImageNet-shaped trunk.

:func:`fold_adapter` merges a *linear* adapter into the backbone's first convolution so the
result is a plain timm model with N input channels (what ``geossl export`` writes). For a 1x1
map ``A`` (out x N) and a stem ``W`` (O x 3 x k x k), the folded stem is ``W'[o, n] = sum_c
W[o, c] A[c, n]``: exact, because both maps are linear and the 1x1 map commutes with the stem's
zero padding. A 1x1 *bias* does not commute with zero padding (the padded border sees 0, not
the bias), so linear adapters are built without bias; an adapter with a non-zero bias is folded
only into an unpadded stem (ViT patch embedding), where the bias becomes a stem bias exactly.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from geossl.core.errors import ConfigError
from geossl.models.backbones import first_conv_name

#: adapter kinds accepted by :class:`BandAdapter` / ``build_encoder(adapter=...)``
ADAPTER_KINDS = ("linear", "nonlinear", "linear-frozen", "nonlinear-frozen")


def parse_adapter(kind: str) -> tuple[str, bool]:
    """``"linear-frozen"`` -> ``("linear", True)``.

    Raises:
        ConfigError: unknown kind.
    """
    text = kind.lower().replace("_", "-")
    frozen = text.endswith("-frozen")
    base = text.removesuffix("-frozen")
    if base not in ("linear", "nonlinear"):
        raise ConfigError(f"unknown adapter {kind!r}; choose one of {', '.join(ADAPTER_KINDS)}")
    return base, frozen


class BandAdapter(nn.Module):
    """1x1 convolution from ``in_chans`` bands to ``out_chans`` channels.

    ``linear``: a bias-free 1x1 convolution (exactly foldable into the backbone stem).
    ``nonlinear``: 1x1 convolution + BatchNorm + ReLU (or GELU), not foldable.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int = 3,
        kind: str = "linear",
        frozen: bool = False,
        activation: str = "relu",
    ) -> None:
        """Create an adapter.

        Args:
            in_chans: input bands.
            out_chans: output channels (3 for an RGB-shaped backbone).
            kind: ``linear`` or ``nonlinear`` (a ``-frozen`` suffix sets ``frozen``).
            frozen: keep the weights fixed (no gradient).
            activation: ``relu`` or ``gelu`` for the non-linear kind.
        """
        super().__init__()
        base, suffix_frozen = parse_adapter(kind)
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.kind = base
        self.frozen = frozen or suffix_frozen
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False)
        self.act: nn.Module
        if base == "nonlinear":
            self.norm: nn.Module = nn.BatchNorm2d(out_chans)
            if activation not in ("relu", "gelu"):
                raise ConfigError(f"unknown adapter activation {activation!r} (relu or gelu)")
            self.act = nn.ReLU(inplace=True) if activation == "relu" else nn.GELU()
        else:
            self.norm = nn.Identity()
            self.act = nn.Identity()
        if self.frozen:
            for p in self.parameters():
                p.requires_grad_(False)

    @property
    def foldable(self) -> bool:
        """Whether :func:`fold_adapter` can merge this adapter into a stem exactly."""
        return self.kind == "linear"

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W)`` -> ``(B, out_chans, H, W)``."""
        out: Tensor = self.act(self.norm(self.conv(x)))
        return out


def _adapter_map(adapter: nn.Module) -> tuple[Tensor, Tensor | None]:
    """The ``(out, N)`` matrix and bias of a linear 1x1 adapter."""
    if isinstance(adapter, BandAdapter):
        if not adapter.foldable:
            raise ConfigError("cannot fold a non-linear adapter; export with --keep-adapter")
        conv = adapter.conv
    elif isinstance(adapter, nn.Conv2d):
        conv = adapter
    else:
        raise ConfigError(
            f"cannot fold a {type(adapter).__name__}; export with --keep-adapter"
        )
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.stride != (1, 1):
        raise ConfigError("only a plain 1x1 convolution adapter can be folded into the stem")
    bias = conv.bias.detach() if conv.bias is not None else None
    return conv.weight.detach()[:, :, 0, 0], bias


def fold_adapter(adapter: nn.Module, backbone: nn.Module) -> nn.Module:
    """A copy of ``backbone`` whose first convolution absorbs the linear 1x1 ``adapter``.

    Args:
        adapter: a linear :class:`BandAdapter` (or a 1x1 ``nn.Conv2d``) from N bands to the
            backbone's input channels.
        backbone: timm model whose stem takes the adapter's output.

    Returns:
        a new model taking N bands with ``folded(x) == backbone(adapter(x))`` (up to float
        rounding); ``adapter`` and ``backbone`` are left untouched.

    Raises:
        ConfigError: a non-linear adapter, channel counts that do not chain, or a non-zero
            adapter bias in front of a zero-padded stem (not exactly foldable).
    """
    amap, abias = _adapter_map(adapter)
    model = copy.deepcopy(backbone)
    name = first_conv_name(model)
    stem = model.get_submodule(name)
    assert isinstance(stem, nn.Conv2d)
    if stem.in_channels != amap.shape[0]:
        raise ConfigError(
            f"adapter gives {amap.shape[0]} channels but the backbone stem takes "
            f"{stem.in_channels}"
        )
    if stem.groups != 1:
        raise ConfigError("cannot fold an adapter into a grouped stem convolution")
    weight = stem.weight.detach()
    folded_w = torch.einsum("ockl,cn->onkl", weight.double(), amap.double()).to(weight.dtype)
    has_bias = abias is not None and bool(abias.abs().max() > 0)
    padded = any(int(p) > 0 for p in stem.padding) if isinstance(stem.padding, tuple) else (
        stem.padding != "valid"
    )
    if has_bias and padded:
        raise ConfigError(
            "cannot fold an adapter bias into a zero-padded stem exactly (borders differ); "
            "use a bias-free linear adapter or export with --keep-adapter"
        )
    new = nn.Conv2d(
        int(amap.shape[1]),
        stem.out_channels,
        kernel_size=stem.kernel_size,  # type: ignore[arg-type]
        stride=stem.stride,  # type: ignore[arg-type]
        padding=stem.padding,  # type: ignore[arg-type]
        dilation=stem.dilation,  # type: ignore[arg-type]
        bias=stem.bias is not None or has_bias,
        padding_mode=stem.padding_mode,
    ).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(folded_w)
        if new.bias is not None:
            bias = stem.bias.detach().clone() if stem.bias is not None else torch.zeros(
                stem.out_channels, dtype=weight.dtype, device=weight.device
            )
            if has_bias and abias is not None:
                bias += torch.einsum("ockl,c->o", weight.double(), abias.double()).to(bias.dtype)
            new.bias.copy_(bias)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
    # keep timm's bookkeeping of the input channels right
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict):
        size = tuple(cfg.get("input_size", (3, 224, 224)))
        model.pretrained_cfg = {  # type: ignore[assignment]
            **cfg, "input_size": (int(amap.shape[1]), *size[1:])}
    return model
