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

    With ``task="segmentation"`` a ViT is laid out for ``SemanticSegmentationTask(model="dpt",
    backbone="tu-<timm name>", weights=FILE)`` instead (see :func:`segmentation_layout`): smp's
    ViT encoder holds the timm model as ``encoder.model``, which the classification layout
    cannot reach through ``extract_backbone``. One file cannot serve both tasks for a ViT.

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

Multi-sensor encoders: per-sensor stems (``geo`` pairing) are exported one sensor at a time
(``sensor=``, the stem folded like an adapter); a fusion encoder is exported with its full
input, every sensor's bands stacked plus one mask channel per sensor (the sidecar's ``bands``).
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

from geossl.core.errors import ConfigError
from geossl.core.io import atomic_write_bytes, atomic_write_text, check_output, jsonable
from geossl.inference.config import check_export_choices
from geossl.pretrained.checkpoint import (
    EncoderSource,
    bands_for,
    checkpoint_sensors,
    load_source,
    sensor_list,
)
from geossl.pretrained.normalize import normalizer_for_sensor

#: the key prefix that TorchGeo's ``extract_backbone`` turns into smp's ``model.`` (its
#: ``backbone`` branch keeps keys holding ``model.backbone.model`` and removes this string)
SEG_PREFIX = "model.backbone.model."


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
        source: encoder with ``.backbone`` (timm model) and optionally ``.adapter`` or
            ``.stems`` (per-sensor stems) and ``.fusion``.
        keep_adapter: return a non-linear adapter beside the backbone instead of refusing.
        sensor: for per-sensor stems (``geo`` pairing encoders), the sensor whose stem is
            folded into the trunk (required); for a single-sensor encoder it must be the
            checkpoint's sensor; a fusion encoder is always exported with all its sensors
            stacked (plus one mask channel per sensor).

    Returns:
        ``(backbone, adapter)``; ``adapter`` is ``None`` unless a non-linear one was kept.

    Raises:
        ConfigError: non-linear adapter without ``keep_adapter``; a missing or unknown sensor;
            an encoder without a timm backbone.
    """
    if source.meta.get("mae_groups"):
        raise ConfigError("a spectral-grouped MAE encoder (--mae-groups) has one patch embedding "
                          "per band group, not a plain timm ViT: pretrain without --mae-groups "
                          "to export")
    enc = source.encoder
    backbone = getattr(enc, "backbone", None)
    if backbone is None:
        raise ConfigError("this encoder has no single timm backbone to export")
    backbone = copy.deepcopy(backbone)
    adapter = getattr(enc, "adapter", None)
    stems = getattr(enc, "stems", None)
    known = checkpoint_sensors(source.meta)
    if stems is not None and len(stems) > 0:
        if sensor is None:
            raise ConfigError(f"this encoder has one stem per sensor ({', '.join(stems)}); "
                              "pick the one to export with --sensor")
        if sensor not in stems:
            raise ConfigError(f"unknown sensor {sensor!r}: this encoder has stems for "
                              f"{', '.join(stems)}")
        adapter = stems[sensor]
    elif getattr(enc, "fusion", False):
        sensors = list(getattr(enc, "in_chans", {}) or known)
        if sensor is not None and sensor_list(sensor) != sensors:
            raise ConfigError(
                f"a fusion encoder is exported with all its sensors stacked ({', '.join(sensors)}"
                " and one mask channel per sensor); --sensor does not apply")
    elif sensor is not None and known and sensor not in known:
        raise ConfigError(f"unknown sensor {sensor!r}: the encoder was pretrained on "
                          f"{', '.join(known)}")
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


def exported_inputs(source: EncoderSource, sensor: str | None) -> dict[str, Any]:
    """Sensors, band names and normalisation of the exported model's input.

    Args:
        source: the encoder and its metadata.
        sensor: the sensor whose stem is exported (per-sensor stems), if any.

    Returns:
        ``{"sensors", "bands", "normalization", "mean", "std"}``; ``bands``/``mean``/``std``
        are ``None`` when not known. ``mean``/``std`` reproduce geossl's input scaling (for a
        ``WeightsEnum`` transform); geossl's Sentinel-2 normaliser also clips reflectance to
        [0, 1] and its Sentinel-1 one clips dB values, which a mean/std transform does not.
    """
    meta = source.meta
    enc = source.encoder
    known = checkpoint_sensors(meta)
    fusion = bool(getattr(enc, "fusion", False))
    if getattr(enc, "stems", None) and sensor is not None:
        sensors = [sensor]
    elif fusion:
        sensors = list(getattr(enc, "in_chans", {}) or known)
    else:
        sensors = known[:1]
    bands = bands_for(meta, sensors) if sensors else bands_for(meta, None)
    norm = meta.get("normalization")
    if isinstance(norm, dict) and not ("mean" in norm and "std" in norm) and sensors:
        norm = {s: norm.get(s) for s in sensors} if len(sensors) > 1 else norm.get(sensors[0])
    mean, std = _mean_std(meta, sensors)
    if fusion:  # the mask channels the fusion encoder appends: 1 = sensor present
        bands = bands + [f"mask_{s}" for s in sensors] if bands is not None else None
        if mean is not None and std is not None:
            mean, std = mean + [0.0] * len(sensors), std + [1.0] * len(sensors)
    return {"sensors": sensors or None, "bands": bands, "normalization": norm,
            "mean": mean, "std": std}


def _mean_std(meta: dict[str, Any], sensors: list[str]) -> tuple[list[float] | None,
                                                                   list[float] | None]:
    """Per-band mean/std equivalent to the encoder's normalisation, when it is one."""
    norm = meta.get("normalization")
    if isinstance(norm, dict) and "mean" in norm and "std" in norm:
        return [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]
    chans = meta.get("in_chans")
    mean: list[float] = []
    std: list[float] = []
    for s in sensors or [None]:  # type: ignore[list-item]
        n = chans.get(s) if isinstance(chans, dict) else chans
        f = normalizer_for_sensor(meta, s)
        if f is None or not isinstance(n, int):
            return None, None
        m, sd = getattr(f, "mean", None), getattr(f, "std", None)
        if isinstance(m, Tensor) and isinstance(sd, Tensor) and m.numel() in (1, n):
            mean += m.flatten().expand(n).tolist() if m.numel() == 1 else m.flatten().tolist()
            std += sd.flatten().expand(n).tolist() if sd.numel() == 1 else sd.flatten().tolist()
        elif hasattr(f, "scale") and hasattr(f, "offset"):  # S2Reflectance: (x + offset) / scale
            mean += [-float(f.offset)] * n
            std += [float(f.scale)] * n
        else:
            return None, None
    return mean, std


def backbone_state(
    backbone: nn.Module, name: str, timm_kwargs: dict[str, Any] | None = None
) -> tuple[dict[str, Tensor], int]:
    """State dict of ``backbone`` without its classifier, checked against timm's own model.

    Keys and shapes must equal those of ``timm.create_model(name, num_classes=0,
    in_chans=N, **timm_kwargs)`` (without kwargs: what TorchGeo builds by name); an absolute
    position embedding learnt at another image size is resampled to the reference's size
    (timm's ``resample_abs_pos_embed``).

    Args:
        backbone: plain timm model.
        name: timm model name.
        timm_kwargs: extra ``timm.create_model`` arguments of the reference (``img_size``,
            ``patch_size``); ``None`` for the model as TorchGeo builds it.

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
    ref = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans,
                            **(timm_kwargs or {})).state_dict()
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


def segmentation_layout(
    backbone: nn.Module, name: str, state: dict[str, Tensor], in_chans: int
) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Any]]:
    """Lay out ``state`` for TorchGeo's ``SemanticSegmentationTask`` (strict encoder load).

    The task (0.8.1 as ``torchgeo.trainers.SemanticSegmentationTask``, 0.10 as
    ``torchgeo.tasks.SemanticSegmentation``; the same code) builds a segmentation_models_pytorch
    model, calls ``extract_backbone(path)`` and loads the result into ``model.encoder`` with a
    strict ``load_state_dict``.

    * A **ViT** fits only smp's ``DPT`` (``backbone="tu-<timm name>"``): the other decoders'
      timm encoder (``TimmUniversalEncoder``) refuses a ViT's single stride-16 feature map
      ("Unsupported model downsampling pattern"). DPT's ``TimmViTEncoder`` keeps the timm
      model, classifier included, as ``encoder.model``, so it expects ``model.<timm key>`` and
      ``model.head.*``. ``extract_backbone``'s ``model`` branch removes *every* ``model.``
      from the keys, so no key can reach the encoder with that prefix; its ``backbone`` branch
      (taken when the hyper-parameters have no ``model``) keeps the keys holding
      ``model.backbone.model`` and removes that string once per key. The layout is therefore
      ``hyper_parameters = {"backbone": "tu-<name>", ...}`` (no ``model``) and keys
      ``model.backbone.model.model.<timm key>``. The classifier, which DPT never runs
      (``forward_intermediates``), is written as zeros of the shape smp builds. TorchGeo builds
      DPT without ``dynamic_img_size``: inputs must have the model's default size (224 px for
      ``*_224``), and the position embedding is the one resampled to it.
    * A CNN that smp has its own encoder for (the ResNets) loads the classification layout
      as it is (``model.<key>``, ``hyper_parameters["model"]``); it is checked against smp.

    Args:
        backbone: the plain timm model being exported.
        name: its timm name.
        state: its state dict as :func:`backbone_state` returns it (no classifier).
        in_chans: its input channels.

    Returns:
        ``(hyper_parameters, state_dict, sidecar)``: the checkpoint's two entries (without
        geossl's own hyper-parameters) and the sidecar's segmentation keys (``smp_model``,
        ``smp_backbone``, ``input_size``).

    Raises:
        ConfigError: smp has no encoder that takes these weights strictly.
    """
    import segmentation_models_pytorch as smp

    if getattr(backbone, "patch_embed", None) is not None:  # a timm ViT: DPT's encoder
        from segmentation_models_pytorch.encoders.timm_vit import TimmViTEncoder

        smp_name = f"tu-{name}"
        try:  # exactly what smp.DPT(encoder_name=smp_name, in_channels=N) builds
            encoder = TimmViTEncoder(name, pretrained=False, in_channels=in_chans, depth=4)
        except (ValueError, RuntimeError) as err:
            raise ConfigError(f"{name}: smp's DPT cannot build this ViT ({err}); export it for "
                              "the classification task") from err
        want = {k.removeprefix("model."): v for k, v in encoder.state_dict().items()}
        head = getattr(encoder.model, "get_classifier", lambda: None)()
        head_keys = {f"{prefix}.{k}" for prefix, module in encoder.model.named_modules()
                     if head is not None and module is head for k in module.state_dict()}
        _check_same(name, smp_name, state, want, allowed_extra=head_keys)
        full = dict(state)
        for key in sorted(set(want) - set(state)):  # the classifier smp keeps, never run
            full[key] = torch.zeros_like(want[key])
        size = getattr(encoder, "input_size", None)
        hparams: dict[str, Any] = {"backbone": smp_name, "in_channels": in_chans}
        layout = {f"{SEG_PREFIX}model.{k}": v for k, v in full.items()}
        side = {"smp_model": "dpt", "smp_backbone": smp_name,
                "input_size": list(size[1:]) if size else None}
        return hparams, layout, side
    try:  # the decoders with smp's own encoders (unet, deeplabv3+, upernet, ...)
        encoder = smp.encoders.get_encoder(name, in_channels=in_chans, depth=5, weights=None)
    except (KeyError, ValueError) as err:
        raise ConfigError(
            f"{name}: segmentation_models_pytorch has no encoder named {name!r} that TorchGeo's "
            "SemanticSegmentationTask could load these weights into (ResNets by name, ViTs "
            "through DPT); export it for the classification task") from err
    _check_same(name, name, state, encoder.state_dict(), allowed_extra=set())
    return (*classification_layout(name, state, in_chans),
            {"smp_model": None, "smp_backbone": name, "input_size": None})


def classification_layout(name: str, state: dict[str, Tensor], in_chans: int
                          ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The checkpoint entries ``(hyper_parameters, state_dict)`` for ``ClassificationTask``.

    The layout ``extract_backbone``'s ``model`` branch reads; a ResNet's also loads into
    ``SemanticSegmentationTask``.
    """
    return {"model": name, "in_channels": in_chans}, {f"model.{k}": v for k, v in state.items()}


def _check_same(name: str, smp_name: str, state: dict[str, Tensor], want: dict[str, Tensor],
                allowed_extra: set[str]) -> None:
    """Refuse unless ``state`` fills smp's encoder ``want`` exactly.

    Every tensor of ``want`` but ``allowed_extra`` (the classifier) with its shape, nothing else.
    """
    missing = sorted(set(want) - set(state) - allowed_extra)
    extra = sorted(set(state) - set(want))
    if missing or extra:
        raise ConfigError(f"{name}: the keys differ from smp's encoder {smp_name!r} (missing "
                          f"{missing[:3]}, unexpected {extra[:3]}); export it for the "
                          "classification task")
    for key, have in state.items():
        if have.shape != want[key].shape:
            raise ConfigError(f"{name}: tensor {key} has shape {tuple(have.shape)} but smp's "
                              f"encoder {smp_name!r} has {tuple(want[key].shape)}")


def metadata(source: EncoderSource, name: str, in_chans: int, sha256: str,
             adapter: nn.Module | None, sensor: str | None = None,
             timm_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar: what a TorchGeo ``WeightsEnum`` entry carries, plus provenance."""
    meta = source.meta
    inputs = exported_inputs(source, sensor)
    return jsonable({
        "model": name,
        "in_chans": in_chans,
        "bands": inputs["bands"],
        "sensors": inputs["sensors"],
        "ssl_method": meta.get("method"),
        "pairing": meta.get("pairing"),
        "fusion": bool(getattr(source.encoder, "fusion", False)),
        "mean": inputs["mean"],
        "std": inputs["std"],
        "normalization": inputs["normalization"],
        "timm_kwargs": dict(timm_kwargs or {}),
        "adapter": None if adapter is None else {"kind": meta.get("adapter"),
                                                  "out_chans": _first_conv(adapter).out_channels
                                                  if hasattr(_first_conv(adapter), "out_channels")
                                                  else None},
        "adapter_folded": meta.get("adapter") is not None and adapter is None,
        "source_checkpoint": source.key,
        "pretrained_from": meta.get("pretrained_from"),
        "sha256": sha256,
        "publication": None,
        "repo": "geossl",
        "license": None,
    })


def _timm_kwargs(backbone: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``timm.create_model`` arguments that rebuild ``backbone`` (ViT size, patch, pooling)."""
    kwargs: dict[str, Any] = {}
    if meta.get("backbone"):
        from geossl.models import resolve_name

        try:
            kwargs = dict(resolve_name(str(meta["backbone"]), meta.get("img_size"))[1])
        except ConfigError:
            kwargs = {}
    embed = getattr(backbone, "patch_embed", None)
    if embed is not None:  # read the truth off the module when it is a timm ViT
        size = getattr(embed, "img_size", None)
        patch = getattr(embed, "patch_size", None)
        if size is not None:
            kwargs["img_size"] = int(size[0] if isinstance(size, (tuple, list)) else size)
        if patch is not None:
            kwargs["patch_size"] = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
    else:
        kwargs.pop("img_size", None)
        kwargs.pop("patch_size", None)
    from timm.models.vision_transformer import VisionTransformer

    pool = getattr(backbone, "global_pool", None)
    if isinstance(backbone, VisionTransformer) and isinstance(pool, str) and pool != "token":
        # a ViT pooling its patch tokens (MAE): the same weights as the class-token model
        # (no fc_norm), rebuilt with its pooling
        kwargs.update(global_pool=pool, fc_norm=False)
    return kwargs


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
    bands: list[str] | None = None,
    preprocess: str = "weights",
    task: str = "classification",
) -> ExportResult:
    """Export the encoder of a pretraining checkpoint for TorchGeo / timm.

    Args:
        ckpt: checkpoint written by ``geossl pretrain`` (or an :class:`EncoderSource`).
        out: ``torchgeo``: the checkpoint file to write (``.ckpt``); ``timm``: a file name whose
            stem is used, ``<stem>-<sha256[:8]>.pth`` being written in its folder.
        format: ``torchgeo`` or ``timm``.
        keep_adapter: export a non-linear band adapter beside the backbone instead of refusing.
        sensor: the sensor whose stem is folded, for encoders with per-sensor stems
            (required for them; checked against the checkpoint's sensor otherwise).
        bands: for a weights spec (``torchgeo:...``, ``timm:...``): the band names of the data
            the exported model will take (default: the weights' own bands).
        preprocess: for a weights spec: ``weights`` or ``dataset`` normalisation in the sidecar.
        task: ``torchgeo`` format: ``classification`` (the layout ``ClassificationTask`` reads,
            which ``SemanticSegmentationTask`` also loads for a ResNet) or ``segmentation``
            (:func:`segmentation_layout`: a ViT for ``model="dpt"``, ``backbone="tu-<name>"``;
            refused for a backbone smp cannot take).

    Returns:
        the paths written and the model's name, channel count and hash.

    Raises:
        ConfigError: unknown format, task or sensor, non-foldable adapter, or a backbone
            TorchGeo cannot build (for the task).
        DataError: missing or unreadable checkpoint.
    """
    check_export_choices(format, task)
    # never over the checkpoint it reads (export CKPT --out CKPT), nor to a URL
    check_output(out, "export", folder=False,
                 inputs=(ckpt if isinstance(ckpt, str | os.PathLike) else None,))
    source = load_source(ckpt, data_bands=bands, preprocess=preprocess)
    backbone, adapter = plain_backbone(source, keep_adapter, sensor)
    name = _architecture(backbone, source.meta)
    kwargs = _timm_kwargs(backbone, source.meta)
    if format == "torchgeo":  # TorchGeo builds the model by name: default size and patch
        state, in_chans = backbone_state(backbone, name)
        kwargs = {}
    else:  # a bare state dict for timm.create_model(name, **timm_kwargs)
        state, in_chans = backbone_state(backbone, name, kwargs)
    dest = Path(out)
    adapter_path: Path | None = None
    adapter_blob = None
    if adapter is not None:
        adapter_blob = {"state_dict": {k: v.detach().cpu() for k, v in
                                       adapter.state_dict().items()},
                        "kind": str(source.meta.get("adapter")),
                        "repr": repr(adapter)}
    seg_side: dict[str, Any] = {}
    if format == "torchgeo":
        if task == "segmentation":
            hparams, layout, seg_side = segmentation_layout(backbone, name, state, in_chans)
        else:
            hparams, layout = classification_layout(name, state, in_chans)
        hparams["geossl"] = jsonable(source.meta)
        blob: dict[str, Any] = {"hyper_parameters": hparams, "state_dict": layout}
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
    meta = metadata(source, name, in_chans, sha, adapter, sensor, kwargs)
    meta["file"] = weights.name
    meta["format"] = format
    meta["task"] = task if format == "torchgeo" else None
    meta.update(seg_side)
    if adapter_path is not None:
        meta["adapter_file"] = adapter_path.name
    atomic_write_text(sidecar, json.dumps(meta, indent=2) + "\n")
    return ExportResult(weights, sidecar, adapter_path, name, in_chans, sha, len(state))
