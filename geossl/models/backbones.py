"""timm backbones for any band count, with offline loading of local pretrained weights.

:func:`create_backbone` builds a feature extractor (``num_classes=0``) by timm name for any number
of input bands. Besides every name in timm's registry it accepts the short ViT names
``vit_<size>_patch<P>`` (``vit_small_patch4``, ``vit_base_patch8``, ...) that timm does not
register: they are built from ``vit_<size>_patch16_224`` with ``patch_size=P``, so patch 4 or 8
works at the 64-128 px chips of remote sensing (``img_size`` sets the input size).

Pretrained weights are never downloaded: ``pretrained`` must be a local file (a timm/torchvision
state dict or a checkpoint holding one). Its RGB stem is adapted to N bands with timm's own
:func:`timm.models._manipulate.adapt_input_conv` (repeat the RGB filters over the bands and scale
by ``3 / N``), the position embedding of a ViT is resampled to the new grid, and every other
tensor is loaded as it is; nothing is silently re-initialised.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
from timm.models import is_model_in_modules
from torch import Tensor, nn

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import load_torch_file

#: ViT-like families whose constructor takes ``img_size`` (and ``patch_size``)
_SIZED_PREFIXES = ("vit_", "deit", "eva", "beit", "flexivit", "cait", "xcit", "pit_")

#: timm modules whose models are ``VisionTransformer``s (they take ``fc_norm``; Swin, EVA, BEiT
#: and the other sized families do not)
_VIT_MODULES = ["vision_transformer", "deit"]
#: ``vit_<size>_patch<P>[_<img>]`` short names that timm does not register
_VIT_SHORT = re.compile(r"^(vit_(?:tiny|small|base|large))_patch(\d+)(?:_(\d+))?$")

#: prefixes stripped from checkpoint keys (Lightning, DDP, torch.compile, common wrappers)
_KEY_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.")


def resolve_name(name: str, img_size: int | None = None) -> tuple[str, dict[str, Any]]:
    """The timm model name and constructor kwargs for a backbone name.

    Args:
        name: a timm model name (``resnet50``, ``vit_small_patch16_224``, ``convnext_tiny``) or a
            short ViT name ``vit_<size>_patch<P>[_<img>]`` (``vit_small_patch4``).
        img_size: input size in pixels for ViT-like models (``None``: the model's default, or the
            size in a short name).

    Returns:
        ``(timm_name, kwargs)`` for :func:`timm.create_model`.

    Raises:
        ConfigError: if timm knows no such model.
    """
    kwargs: dict[str, Any] = {}
    if timm.is_model(name):
        model_name = name
    else:
        match = _VIT_SHORT.match(name)
        if match is None:
            raise ConfigError(
                f"unknown backbone {name!r}: not a timm model name (see timm.list_models()); "
                "short ViT names look like vit_small_patch4"
            )
        model_name = f"{match.group(1)}_patch16_224"
        kwargs["patch_size"] = int(match.group(2))
        if img_size is None and match.group(3):
            img_size = int(match.group(3))
        if img_size is None:
            img_size = 224
    if img_size is not None and model_name.startswith(_SIZED_PREFIXES):
        kwargs["img_size"] = int(img_size)
    return model_name, kwargs


def first_conv_name(model: nn.Module) -> str:
    """Dotted name of the model's first (stem) convolution.

    Uses timm's ``pretrained_cfg["first_conv"]`` when present, otherwise the first
    :class:`~torch.nn.Conv2d` in definition order.

    Raises:
        ConfigError: if the model has no convolution.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("first_conv") if isinstance(cfg, Mapping) else None
    if isinstance(name, str):
        try:
            if isinstance(model.get_submodule(name), nn.Conv2d):
                return name
        except AttributeError:
            pass
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return mod_name
    raise ConfigError(f"{type(model).__name__} has no input convolution")


def create_backbone(
    name: str, in_chans: int, pretrained: str | None = None, img_size: int | None = None,
    global_pool: str | None = None,
) -> nn.Module:
    """A timm feature extractor (no classifier) for ``in_chans`` input bands.

    Args:
        name: timm model name or short ViT name (see :func:`resolve_name`).
        in_chans: number of input bands.
        pretrained: local weights file (state dict or checkpoint); ``None`` for random weights.
        img_size: input size for ViT-like models.
        global_pool: timm's ``global_pool`` (``None``: the model's default). For a ViT,
            ``avg`` (the mean of the patch tokens) keeps the final ``norm`` and adds no
            ``fc_norm`` (``fc_norm=False``), so the state dict is that of the default
            (class-token) model and loads into it, and into TorchGeo, tensor for tensor.

    Returns:
        the model; ``model.num_features`` is the feature size of ``model(x)``.

    Raises:
        ConfigError: unknown model, ``in_chans < 1``, or ``pretrained`` not a local path.
        DataError: the weights file is missing, unreadable or does not fit the model.
    """
    if in_chans < 1:
        raise ConfigError(f"in_chans must be >= 1, got {in_chans}")
    model_name, kwargs = resolve_name(name, img_size)
    if global_pool is not None:
        kwargs = {**kwargs, "global_pool": global_pool}
        if is_model_in_modules(model_name, _VIT_MODULES):
            kwargs["fc_norm"] = False  # the same weights as the class-token model
    try:
        model = timm.create_model(
            model_name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs
        )
    except (TypeError, ValueError, AssertionError) as err:
        raise ConfigError(f"cannot build backbone {name!r} with {kwargs}: {err}") from err
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a weights file: a bare state dict or a checkpoint with one inside."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:  # pragma: no cover - safetensors ships with timm
            raise DataError("reading .safetensors needs the safetensors package", path) from err
        try:
            return dict(load_file(str(path)))
        except Exception as err:
            raise DataError(f"not a readable safetensors file ({err})", path) from err
    obj = load_torch_file(path, "weights file")  # data only: never runs code from the file
    for key in ("state_dict", "model", "model_state", "module", "teacher", "params"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise DataError("holds no state dict", path)
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise DataError("holds no tensors", path)
    return state


def _strip_prefixes(state: dict[str, Tensor], model_keys: set[str]) -> dict[str, Tensor]:
    """Remove wrapper prefixes (``module.``, ``model.``, ...) until keys match the model."""
    changed = True
    while changed and not (set(state) & model_keys):
        changed = False
        for prefix in _KEY_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
                break
        else:
            # some keys carry the prefix (e.g. "model." backbone + other heads): keep those
            for prefix in _KEY_PREFIXES:
                sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                if set(sub) & model_keys:
                    state = sub
                    changed = True
                    break
    return state


def load_pretrained(model: nn.Module, pretrained: str | os.PathLike[str]) -> nn.Module:
    """Load local weights into ``model``, adapting the RGB stem to the model's bands.

    The stem convolution (``pretrained_cfg["first_conv"]``) is adapted with timm's
    ``adapt_input_conv`` when its input channels differ (e.g. 3 -> 13), an absolute position
    embedding is resampled (``resample_abs_pos_embed``) and a patch embedding of another patch
    size is resampled (``resample_patch_embed``). Classifier weights are ignored (the backbone
    has no classifier). Every other backbone tensor must be in the file.

    Args:
        model: timm model built with ``num_classes=0``.
        pretrained: path to the weights.

    Returns:
        ``model`` (loaded in place).

    Raises:
        ConfigError: ``pretrained`` names a download (``imagenet``, a URL, a hub tag).
        DataError: missing/corrupt file, or weights of another architecture.
    """
    text = os.fspath(pretrained)
    path = Path(text).expanduser()
    if not path.exists():
        if text.lower() in ("imagenet", "true", "default") or "://" in text or text.startswith(
            "hf-hub:"
        ) or ("/" not in text and "." not in text):
            raise ConfigError(
                f"pretrained={text!r}: geossl never downloads weights (offline); pass the path "
                "of a local weights file (e.g. a timm .pth or .safetensors)"
            )
        raise DataError("pretrained weights file not found", path)
    return load_state(model, _read_state_dict(path), path)


def load_state(
    model: nn.Module, state: Mapping[str, Tensor], where: str | os.PathLike[str]
) -> nn.Module:
    """Load a state dict into ``model`` as :func:`load_pretrained` loads a file.

    Args:
        model: timm model built with ``num_classes=0``.
        state: the tensors (wrapper prefixes are stripped).
        where: the file or name the tensors come from, for error messages.

    Returns:
        ``model`` (loaded in place).

    Raises:
        DataError: weights of another architecture.
    """
    from timm.layers import resample_abs_pos_embed, resample_patch_embed
    from timm.models._manipulate import adapt_input_conv

    path = where
    target = model.state_dict()
    state = _strip_prefixes(dict(state), set(target))
    stem = first_conv_name(model) + ".weight"
    if stem in state and state[stem].ndim == 4:
        weight = state[stem]
        want = target[stem]
        if weight.shape[2:] != want.shape[2:]:
            weight = resample_patch_embed(weight, list(want.shape[2:]))
        if weight.shape[1] != want.shape[1]:
            weight = adapt_input_conv(int(want.shape[1]), weight, base_chans=int(weight.shape[1]))
        state[stem] = weight
    for key in [k for k in state if k.endswith("pos_embed")]:
        if key in target and state[key].shape != target[key].shape and state[key].ndim == 3:
            prefix = int(getattr(model, "num_prefix_tokens", 1))
            side = round((target[key].shape[1] - prefix) ** 0.5)
            state[key] = resample_abs_pos_embed(state[key], [side, side], num_prefix_tokens=prefix)
    bad = [k for k in target if k in state and state[k].shape != target[k].shape]
    if bad:
        raise DataError(
            f"weights do not fit {type(model).__name__}: {bad[0]} has shape "
            f"{tuple(state[bad[0]].shape)}, the model {tuple(target[bad[0]].shape)}",
            path,
        )
    state = {k: v for k, v in state.items() if k in target}
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise DataError(
            f"weights are not for this backbone: {len(missing)} tensors missing "
            f"(e.g. {missing[0]})",
            path,
        )
    model.load_state_dict(state, strict=False)
    return model
