"""Export a pretrained encoder as weights TorchGeo and timm load directly.

Two formats (``geossl export CKPT --out FILE --format ...``):

``torchgeo`` (default)
    A Lightning-style checkpoint ``{"hyper_parameters": {"model": <timm name>, ...},
    "state_dict": {"model.<timm key>": tensor}}``: the exact layout that TorchGeo 0.8.1's
    ``trainers.utils.extract_backbone`` reads when ``ClassificationTask(model=<timm name>,
    weights=FILE, in_channels=N, num_classes=K)`` or ``SemanticSegmentationTask(backbone=...,
    weights=FILE)`` is given a file path. Every backbone tensor loads; only the new classifier
    head (or the segmentation decoder) starts from random weights. Contains only tensors and
    plain Python values, so it loads with ``torch.load(weights_only=True)`` as TorchGeo does.

``timm``
    A bare timm state dict named ``<stem>-<sha256[:8]>.pth`` (the torchvision/TorchGeo
    convention that ``torch.hub.load_state_dict_from_url(check_hash=True)`` verifies), for a
    TorchGeo ``WeightsEnum`` entry or ``timm.create_model(...).load_state_dict``.

Both come with a JSON sidecar holding what TorchGeo's weight enums carry in ``meta`` (model,
in_chans, bands, ssl_method, mean/std normalisation, ...). See ``docs/export.md``.

Band adapters: a linear 1x1 adapter is folded exactly into the first convolution
(:func:`geossl.models.fold_adapter`), so the export is a plain timm model with N input channels.
A non-linear adapter cannot be folded: the export is refused, or with ``keep_adapter=True`` the
backbone (with the adapter's output channels) is exported and the adapter's weights are written
beside it (``geossl_adapter`` in the checkpoint, ``<stem>-adapter.pth`` for timm), to be applied
before the backbone by the user.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from geossl.errors import ConfigError
from geossl.eval.features import EncoderSource, load_source
from geossl.io import atomic_write_bytes, atomic_write_text

FORMATS = ("torchgeo", "timm")


@dataclasses.dataclass
class ExportResult:
    """What :func:`export` wrote."""

    weights: Path
    metadata: Path
    adapter: Path | None
    model: str
    in_chans: int
    sha256: str
    num_tensors: int


# --------------------------------------------------------------------------------------------
# building the plain timm backbone
# --------------------------------------------------------------------------------------------
def _first_conv(model: nn.Module) -> nn.Module:
    """The first module in definition order (what TorchGeo's ``load_state_dict`` inspects)."""
    module: nn.Module = model
    children = list(module.named_children())
    while children:
        module = children[0][1]
        children = list(module.named_children())
    return module


def _architecture(backbone: nn.Module, meta: dict[str, Any]) -> str:
    cfg = getattr(backbone, "pretrained_cfg", None) or getattr(backbone, "default_cfg", None)
    if isinstance(cfg, dict) and cfg.get("architecture"):
        return str(cfg["architecture"])
    if meta.get("backbone"):
        return str(meta["backbone"])
    raise ConfigError("cannot tell the timm model name of this encoder (no 'backbone' in meta)")


def plain_backbone(
    source: EncoderSource, keep_adapter: bool = False, sensor: str | None = None
) -> tuple[nn.Module, nn.Module | None]:
    """The encoder as a plain timm model (adapter folded) and the kept adapter, if any.

    Args:
        source: encoder with ``.backbone`` (timm model) and optionally ``.adapter``.
        keep_adapter: return a non-linear adapter beside the backbone instead of refusing.
        sensor: for per-sensor stems (``geo`` pairing encoders), the sensor whose stem is
            folded into the trunk.

    Returns:
        ``(backbone, adapter)``; ``adapter`` is ``None`` unless a non-linear one was kept.

    Raises:
        ConfigError: non-linear adapter without ``keep_adapter``; per-sensor or fusion encoders
            (no single backbone).
    """
    enc = source.encoder
    backbone = getattr(enc, "backbone", None)
    if backbone is None:
        raise ConfigError("this encoder has no single timm backbone to export "
                          "(per-sensor stems or fusion encoders are not exportable to TorchGeo)")
    backbone = copy.deepcopy(backbone)
    if getattr(enc, "fusion", False):
        raise ConfigError("fusion encoders (stacked sensors + mask channels) are not exportable "
                          "as a plain timm model")
    adapter = getattr(enc, "adapter", None)
    stems = getattr(enc, "stems", None)
    if stems is not None and len(stems) > 0:
        if sensor is None or sensor not in stems:
            raise ConfigError(f"this encoder has one stem per sensor ({', '.join(stems)}); "
                              "pick the one to export with --sensor")
        adapter = stems[sensor]
    elif sensor is not None and source.meta.get("sensors") and sensor not in list(
            source.meta["sensors"]):
        raise ConfigError(f"sensor {sensor!r} not in the checkpoint's sensors")
    if adapter is None:
        return backbone, None
    from geossl.models import fold_adapter

    try:
        return fold_adapter(adapter, backbone), None
    except ConfigError as err:
        if not keep_adapter:
            raise ConfigError(
                f"cannot fold the band adapter into the backbone ({err}); pass --keep-adapter to "
                "export the backbone and the adapter weights side by side") from err
        return backbone, copy.deepcopy(adapter)


def backbone_state(backbone: nn.Module, name: str) -> tuple[dict[str, Tensor], int]:
    """State dict of ``backbone`` without its classifier, checked against timm's own model.

    Keys and shapes must equal those of ``timm.create_model(name, num_classes=0,
    in_chans=N)``, which is what TorchGeo builds; an absolute position embedding learnt at
    another image size is resampled to the default size (timm's ``resample_abs_pos_embed``).

    Args:
        backbone: plain timm model.
        name: timm model name.

    Returns:
        the state dict (CPU tensors, contiguous) and N.

    Raises:
        ConfigError: the backbone differs from ``timm.create_model(name, ...)`` (e.g. a ViT with
            a non-default patch size, which TorchGeo's trainers cannot build by name).
    """
    import timm

    model = copy.deepcopy(backbone).cpu()
    reset = getattr(model, "reset_classifier", None)
    if callable(reset):
        reset(0)
    first = _first_conv(model)
    in_chans = int(getattr(first, "in_channels", 0))
    if not in_chans:
        raise ConfigError(f"first layer of {name} is not a convolution: cannot tell its bands")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    ref = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans).state_dict()
    missing = sorted(set(ref) - set(state))
    extra = sorted(set(state) - set(ref))
    if missing or extra:
        raise ConfigError(f"{name}: exported keys differ from timm.create_model({name!r}) "
                          f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for key, want in ref.items():
        have = state[key]
        if have.shape == want.shape:
            continue
        if key.endswith("pos_embed") and have.ndim == 3:
            from timm.layers import resample_abs_pos_embed

            prefix = int(getattr(model, "num_prefix_tokens", 1))
            side = round((want.shape[1] - prefix) ** 0.5)
            state[key] = resample_abs_pos_embed(have, [side, side],
                                                num_prefix_tokens=prefix).contiguous()
            continue
        raise ConfigError(
            f"{name}: tensor {key} has shape {tuple(have.shape)} but timm.create_model({name!r}) "
            f"has {tuple(want.shape)}; TorchGeo's trainers cannot build this variant by name "
            "(export with --format timm and create the model with the kwargs in the sidecar)")
    bad = [k for k in state if "model." in k]
    if bad:  # extract_backbone strips every 'model.' substring
        raise ConfigError(f"{name}: key {bad[0]!r} would be mangled by TorchGeo's extract_backbone")
    return state, in_chans


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def metadata(source: EncoderSource, name: str, in_chans: int, sha256: str,
             adapter: nn.Module | None) -> dict[str, Any]:
    """The sidecar: what a TorchGeo ``WeightsEnum`` entry carries, plus provenance."""
    meta = source.meta
    norm = meta.get("normalization")
    mean = std = None
    if isinstance(norm, dict) and "mean" in norm and "std" in norm:
        mean, std = list(norm["mean"]), list(norm["std"])
    bands = meta.get("bands")
    timm_kwargs = {k: meta[k] for k in ("img_size", "patch_size") if meta.get(k) is not None}
    return _jsonable({
        "model": name,
        "in_chans": in_chans,
        "bands": list(bands) if bands is not None else None,
        "sensors": meta.get("sensors"),
        "ssl_method": meta.get("method"),
        "pairing": meta.get("pairing"),
        "mean": mean,
        "std": std,
        "normalization": norm,
        "timm_kwargs": timm_kwargs,
        "adapter": None if adapter is None else {"kind": meta.get("adapter"),
                                                  "out_chans": _first_conv(adapter).out_channels
                                                  if hasattr(_first_conv(adapter), "out_channels")
                                                  else None},
        "adapter_folded": meta.get("adapter") is not None and adapter is None,
        "source_checkpoint": source.key,
        "sha256": sha256,
        "publication": None,
        "repo": "geossl",
        "license": None,
    })


def _bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------
def export(
    ckpt: str | os.PathLike[str] | EncoderSource,
    out: str | os.PathLike[str],
    format: str = "torchgeo",
    keep_adapter: bool = False,
    sensor: str | None = None,
) -> ExportResult:
    """Export the encoder of a pretraining checkpoint for TorchGeo / timm.

    Args:
        ckpt: checkpoint written by ``geossl pretrain`` (or an :class:`EncoderSource`).
        out: ``torchgeo``: the checkpoint file to write (``.ckpt``); ``timm``: a file name whose
            stem is used, ``<stem>-<sha256[:8]>.pth`` being written in its folder.
        format: ``torchgeo`` or ``timm``.
        keep_adapter: export a non-linear band adapter beside the backbone instead of refusing.
        sensor: the sensor whose stem is folded, for encoders with per-sensor stems.

    Returns:
        the paths written and the model's name, channel count and hash.

    Raises:
        ConfigError: unknown format, non-foldable adapter, or a backbone TorchGeo cannot build.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose {' or '.join(FORMATS)}")
    source = load_source(ckpt)
    backbone, adapter = plain_backbone(source, keep_adapter, sensor)
    name = _architecture(backbone, source.meta)
    state, in_chans = backbone_state(backbone, name)
    dest = Path(out)
    adapter_path: Path | None = None
    adapter_blob = None
    if adapter is not None:
        adapter_blob = {"state_dict": {k: v.detach().cpu() for k, v in
                                       adapter.state_dict().items()},
                        "kind": str(source.meta.get("adapter")),
                        "repr": repr(adapter)}
    if format == "torchgeo":
        hparams: dict[str, Any] = {"model": name, "in_channels": in_chans,
                                   "geossl": _jsonable(source.meta)}
        blob: dict[str, Any] = {"hyper_parameters": hparams,
                                "state_dict": {f"model.{k}": v for k, v in state.items()}}
        if adapter_blob is not None:
            blob["geossl_adapter"] = adapter_blob
        data = _bytes(blob)
        sha = hashlib.sha256(data).hexdigest()
        weights = dest
        sidecar = dest.with_suffix(".json")
    else:
        data = _bytes(state)
        sha = hashlib.sha256(data).hexdigest()
        stem = dest.name.removesuffix(dest.suffix) if dest.suffix else dest.name
        weights = dest.parent / f"{stem}-{sha[:8]}.pth"
        sidecar = weights.with_suffix(".json")
        if adapter_blob is not None:
            adapter_path = dest.parent / f"{stem}-{sha[:8]}-adapter.pth"
            atomic_write_bytes(adapter_path, _bytes(adapter_blob))
    atomic_write_bytes(weights, data)
    meta = metadata(source, name, in_chans, sha, adapter)
    meta["file"] = weights.name
    meta["format"] = format
    if adapter_path is not None:
        meta["adapter_file"] = adapter_path.name
    atomic_write_text(sidecar, json.dumps(meta, indent=2) + "\n")
    return ExportResult(weights, sidecar, adapter_path, name, in_chans, sha, len(state))
