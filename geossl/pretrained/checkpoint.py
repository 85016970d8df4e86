"""Pretraining checkpoints: reading them, rebuilding their encoder, and their metadata.

The one owner of the checkpoint format. A checkpoint written by a
:class:`~geossl.methods.base.SSLMethod` holds, besides Lightning's ``state_dict`` and
``hyper_parameters``, a ``geossl`` entry with the encoder's build arguments and the data
metadata (sensors, bands, normalisation), written by the method's ``on_save_checkpoint``. Older
checkpoints without it are rebuilt from ``hyper_parameters`` alone.

:func:`read_checkpoint` loads one safely, :func:`load_encoder` rebuilds its encoder and
metadata, :func:`load_source` turns a checkpoint path (or ``random``/``none``, a baseline) into
an :class:`EncoderSource`, and the metadata readers (:func:`select_sensors`,
:func:`bands_for`, :func:`expected_channels`, ...) say what the encoder takes. ``geossl
evaluate``, ``export`` and ``embed`` read checkpoints only through this module.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import load_torch_file
from geossl.core.pairing import SensorSelection, sensor_list
from geossl.models import Encoder, build_encoder

#: checkpoint names that stand for a randomly initialised encoder (baselines)
RANDOM = ("random", "none")

#: metadata keys returned by :func:`load_encoder`
META_KEYS = ("backbone", "in_chans", "sensors", "bands", "method", "pairing", "adapter",
             "normalization", "img_size")

#: metadata of an encoder built from named weights (``method`` ``foundation``) adds
#: ``weights``/``pretrained_from`` (the spec), ``preprocess``, ``weights_meta``, ``band_match``


@dataclasses.dataclass
class EncoderSource:
    """An encoder together with what evaluation needs to know about it.

    Attributes:
        encoder: the module; ``encoder(x)`` gives ``(B, num_features)``.
        meta: checkpoint metadata (``backbone``, ``in_chans``, ``sensors``, ``bands``,
            ``method``, ``pairing``, ``adapter``, ``normalization``, ``img_size``).
        key: a string identifying the weights (content hash of the checkpoint, or
            ``random-<backbone>-<in_chans>-<seed>``), used in feature cache keys.
    """

    encoder: nn.Module
    meta: dict[str, Any]
    key: str


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint on the CPU, as data only.

    Only tensors, plain Python values and the few value types of
    :func:`geossl.core.io.safe_globals` are rebuilt (``torch.load(weights_only=True)``); a file
    naming any other Python object is refused, never unpickled: checkpoints are shared, and
    unpickling one could run arbitrary code.

    Raises:
        DataError: missing, truncated, not a checkpoint, or holding pickled objects.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("checkpoint not found", p)
    if not zipfile.is_zipfile(p):
        raise DataError("not a valid checkpoint (truncated or not a torch file)", p)
    obj = load_torch_file(p, "checkpoint")
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise DataError("not a geossl pretraining checkpoint (no state_dict)", p)
    return obj


def _encoder_config(ckpt: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Encoder build arguments and geossl metadata of a checkpoint."""
    meta = dict(ckpt.get("geossl") or {})
    hp = dict(ckpt.get("hyper_parameters") or {})
    config = meta.get("encoder_config")
    if config is None:
        if "backbone" not in hp or "in_chans" not in hp:
            raise DataError("checkpoint has no encoder configuration (not from geossl pretrain)",
                            path)
        sensors = list(hp.get("sensors") or [])
        pairing = hp.get("pairing", "aug")
        chans = dict(hp["in_chans"])
        if pairing in ("aug", "temporal"):
            in_chans: Any = int(chans[sensors[0]])
        elif pairing == "geo":
            in_chans = {s: int(chans[s]) for s in sensors[:2]}
        else:
            in_chans = {s: int(chans[s]) for s in sensors}
        config = {"backbone": hp["backbone"], "in_chans": in_chans, "adapter": hp.get("adapter"),
                  "adapter_out": hp.get("adapter_out", 3), "pretrained": None,
                  "img_size": hp.get("img_size"),
                  "fusion": pairing in ("fusion", "partial-fusion")}
        meta.setdefault("sensors", sensors)
        meta.setdefault("pairing", pairing)
        meta.setdefault("bands", hp.get("bands"))
        meta.setdefault("normalization", hp.get("normalization"))
    config = dict(config)
    config["pretrained"] = None
    return config, meta


def load_encoder(
    ckpt_path: str | os.PathLike[str], method_name: str | None = None
) -> tuple[Encoder, dict[str, Any]]:
    """The online encoder of a pretraining checkpoint and its metadata.

    Args:
        ckpt_path: checkpoint written by ``geossl pretrain`` (any method).
        method_name: overrides the method name recorded in the metadata (rarely needed).

    Returns:
        ``(encoder, meta)``: the encoder in eval mode on the CPU, and ``meta`` with ``backbone``,
        ``in_chans`` (int, or dict per sensor), ``sensors``, ``bands``, ``method``, ``pairing``,
        ``adapter``, ``normalization``, ``img_size`` (plus ``fusion``, ``adapter_out``,
        ``crop_size``, ``patch_size``, ``timm_name``).

    Raises:
        DataError: missing/corrupt file, or weights that do not fit the recorded encoder.
    """
    path = Path(ckpt_path)
    ckpt = read_checkpoint(path)
    config, meta = _encoder_config(ckpt, path)
    if meta.get("mae_groups"):
        # its patch embeddings belong to the method, not to the timm trunk (see methods.mae)
        raise DataError("a spectral-grouped MAE checkpoint (--mae-groups) has no plain encoder; "
                        "use geossl.methods.MAE.load_from_checkpoint(...).features", path)
    try:
        encoder = build_encoder(**config)
    except Exception as err:
        raise DataError(f"cannot rebuild the encoder ({err})", path) from err
    prefix = str(meta.get("encoder_prefix", "encoder."))
    state = {}
    for key, value in ckpt["state_dict"].items():
        if key.startswith(prefix):
            state[key[len(prefix):].replace("_orig_mod.", "")] = value
    if not state:
        raise DataError(f"checkpoint has no {prefix!r} weights", path)
    result = encoder.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise DataError(
            f"checkpoint weights do not fit the encoder ({len(result.missing_keys)} missing, "
            f"{len(result.unexpected_keys)} unexpected, e.g. {bad})",
            path,
        )
    encoder.eval()
    hp = dict(ckpt.get("hyper_parameters") or {})
    from geossl.models.backbones import resolve_name

    timm_name, kwargs = resolve_name(config["backbone"], config.get("img_size"))
    out = {
        "backbone": config["backbone"],
        "in_chans": config["in_chans"],
        "sensors": meta.get("sensors"),
        "bands": meta.get("bands"),
        "method": method_name or meta.get("method") or hp.get("method"),
        "pairing": meta.get("pairing"),
        "adapter": config.get("adapter"),
        "normalization": meta.get("normalization"),
        "img_size": config.get("img_size"),
        "fusion": bool(config.get("fusion")),
        "adapter_out": config.get("adapter_out", 3),
        "crop_size": meta.get("crop_size"),
        "patch_size": kwargs.get("patch_size"),
        "timm_name": timm_name,
        "pretrained_from": meta.get("pretrained_from"),
    }
    return encoder, out


# --------------------------------------------------------------------------------------------
# checkpoint metadata: which sensors and bands the encoder takes
# --------------------------------------------------------------------------------------------
def encoder_sensor(sensor: SensorSelection) -> str | None:
    """The ``sensor=`` argument for the encoder: the one sensor, or ``None`` for a stack."""
    names = sensor_list(sensor)
    return names[0] if len(names) == 1 else None


def checkpoint_sensors(meta: dict[str, Any]) -> list[str]:
    """The sensors the encoder was pretrained on (``[]`` when not recorded)."""
    return sensor_list(meta.get("sensors"))


def is_fusion(meta: dict[str, Any]) -> bool:
    """Whether the encoder stacks several sensors (``fusion`` / ``partial-fusion`` pairing)."""
    return bool(meta.get("fusion")) or meta.get("pairing") in ("fusion", "partial-fusion")


def select_sensors(
    meta: dict[str, Any], sensor: SensorSelection = None, default: str | None = None,
    side_by_side: bool = False,
) -> str | list[str] | None:
    """The sensor(s) whose images feed the encoder during evaluation, export or embedding.

    * single-sensor encoders (``aug``/``temporal``): the checkpoint's sensor;
    * per-sensor stems (``geo``): ``sensor`` when given, else the first (query) sensor;
    * fusion encoders: every sensor stacked in the checkpoint's order by default, or the
      subset in ``sensor`` (the others are zero-filled and flagged missing, as in
      ``partial-fusion``).

    Args:
        meta: checkpoint metadata (``sensors``, ``pairing``, ``fusion``).
        sensor: requested sensor(s): a name, ``"s1,s2"`` or a list; ``None`` for the default.
        default: the dataset's sensor, for encoders that record no sensor (random baselines).
        side_by_side: several sensors for an encoder with per-sensor stems (``geo``) are
            allowed: each through its own stem, the features concatenated (evaluation of S1
            and S2 together, :func:`geossl.eval.features.encode`).

    Returns:
        one sensor name, a list of several (a stacked fusion input), or ``None`` (unknown).

    Raises:
        ConfigError: a sensor the encoder was not pretrained on, or several sensors for an
            encoder that takes one at a time.
    """
    known = checkpoint_sensors(meta)
    wanted = sensor_list(sensor)
    if not known:  # nothing recorded: trust the request, else the dataset's sensor
        if wanted:
            return wanted[0] if len(wanted) == 1 else wanted
        return primary_sensor(meta, default)
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ConfigError(f"unknown sensor {unknown[0]!r}: the encoder was pretrained on "
                          f"{', '.join(known)}")
    fusion = is_fusion(meta) and len(known) > 1
    if not wanted:
        return list(known) if fusion else known[0]
    if len(wanted) > 1 and not fusion and not side_by_side:
        raise ConfigError(f"this encoder takes one sensor at a time (one of {', '.join(known)}); "
                          "give a single --sensor")
    ordered = [s for s in known if s in wanted]
    return ordered[0] if len(ordered) == 1 else ordered


def expected_channels(meta: dict[str, Any], sensor: SensorSelection) -> int | None:
    """Input bands the encoder expects for ``sensor`` (``None`` when not recorded)."""
    chans = meta.get("in_chans")
    if isinstance(chans, int):
        return chans
    if isinstance(chans, dict):
        names = sensor_list(sensor)
        if names and all(s in chans for s in names):
            return sum(int(chans[s]) for s in names)
    return None


def bands_for(meta: dict[str, Any], sensor: SensorSelection) -> list[str] | None:
    """Band names of the encoder's input for ``sensor`` (per-sensor lists are concatenated)."""
    bands = meta.get("bands")
    if bands is None:
        return None
    if isinstance(bands, dict):
        names = sensor_list(sensor) or checkpoint_sensors(meta)[:1]
        if not names or any(s not in bands or bands[s] is None for s in names):
            return None
        return [str(b) for s in names for b in bands[s]]
    return [str(b) for b in bands]


def primary_sensor(meta: dict[str, Any], default: str | None = None) -> str | None:
    """The sensor evaluation feeds the encoder.

    The checkpoint's first sensor, else ``default`` (the dataset's sensor,
    :func:`geossl.datasets.base.single_sensor`).
    """
    sensors = checkpoint_sensors(meta)
    if sensors:
        return str(sensors[0])
    return default


# --------------------------------------------------------------------------------------------
# encoders for evaluation, export and embedding
# --------------------------------------------------------------------------------------------
def load_source(
    ckpt: str | os.PathLike[str] | EncoderSource,
    backbone: str | None = None,
    in_chans: int | None = None,
    seed: int = 0,
    img_size: int | None = None,
    data_bands: list[str] | None = None,
    preprocess: str = "weights",
) -> EncoderSource:
    """Load the encoder of a pretraining checkpoint, or build a random one.

    Args:
        ckpt: a checkpoint written by ``geossl pretrain``; ``random``/``none`` for a randomly
            initialised encoder of ``backbone`` (a baseline); a weights spec
            (``torchgeo:<Enum.MEMBER>``, ``timm:<model>.<tag>``, see
            :mod:`geossl.pretrained.foundation`):
            an encoder taking ``data_bands`` with the weights loaded (``method`` ``foundation``);
            or an :class:`EncoderSource`, returned as it is.
        backbone: timm backbone for ``random`` (and for a plain state-dict file, loaded as
            weights matched to ``data_bands``).
        in_chans: input channels for ``random``.
        seed: seed of the random initialisation.
        img_size: input size for ``random`` ViTs (and ViT weights).
        data_bands: the data's band names in input order, matched to a weights spec's bands
            (``None``: the data has the weights' bands; ``in_chans`` then counts them).
        preprocess: for a weights spec, ``weights`` (their own normalisation, recorded in
            ``meta["normalization"]``) or ``dataset`` (the data's default normalisation).

    Returns:
        the encoder and its metadata.

    Raises:
        ConfigError: ``random`` without a backbone or channel count.
        DataError: missing or unreadable checkpoint.
    """
    if isinstance(ckpt, EncoderSource):
        return ckpt
    name = os.fspath(ckpt)
    from geossl.pretrained.foundation import foundation_source, is_weights_spec

    if is_weights_spec(name):
        encoder, meta, key = foundation_source(name, data_bands, preprocess, n_data=in_chans,
                                               img_size=img_size)
        return EncoderSource(encoder, meta, key)
    if name.lower() in RANDOM:
        if not backbone or not in_chans:
            raise ConfigError(f"CKPT {name!r} needs --backbone (and a dataset to know the bands)")
        from geossl.models import build_encoder

        torch.manual_seed(seed)
        kwargs: dict[str, Any] = {"img_size": img_size} if img_size else {}
        encoder = build_encoder(backbone, in_chans, **kwargs)
        meta = {"backbone": backbone, "in_chans": in_chans, "method": "random", "sensors": None,
                "bands": None, "adapter": None, "normalization": None, "img_size": img_size}
        return EncoderSource(encoder, meta, f"random-{backbone}-{in_chans}-{seed}")
    path = Path(name)
    if not path.is_file():
        raise DataError("checkpoint not found", path)
    try:
        encoder, meta = load_encoder(path)
    except DataError as err:
        plain = "no state_dict" in str(err) or "no encoder configuration" in str(err)
        if not (plain and backbone):
            raise
        # a plain state dict of a named backbone: weights from a file
        # (geossl.pretrained.foundation); the
        # key covers the file, the data's bands and the preprocessing
        enc, info, _ = foundation_source(name, data_bands, preprocess, n_data=in_chans,
                                         img_size=img_size, backbone=backbone)
        extra = f"{','.join(info['bands'])}|{preprocess}|{img_size}"
        digest = hashlib.sha256(f"{file_hash(path)}|{extra}".encode()).hexdigest()
        return EncoderSource(enc, info, f"weights-{digest[:32]}")
    return EncoderSource(encoder, dict(meta), file_hash(path))


def random_like(source: EncoderSource, seed: int) -> EncoderSource:
    """The same architecture as ``source`` with fresh random weights (the scratch baseline).

    Rebuilt with :func:`geossl.models.build_encoder` from the metadata when possible (the
    architecture's own initialisation); otherwise a deep copy whose layers are re-initialised
    with their ``reset_parameters``.

    Args:
        source: the pretrained encoder.
        seed: seed of the initialisation.

    Returns:
        a new :class:`EncoderSource` (method ``random``).
    """
    meta = dict(source.meta)
    torch.manual_seed(seed)
    encoder: nn.Module | None = None
    try:
        from geossl.models import build_encoder

        config = getattr(source.encoder, "config", None)
        if isinstance(config, dict) and config.get("backbone"):
            encoder = build_encoder(**{**config, "pretrained": None})
        elif meta.get("backbone") and meta.get("in_chans"):
            kwargs: dict[str, Any] = {}
            for key in ("adapter", "img_size"):
                if meta.get(key) is not None:
                    kwargs[key] = meta[key]
            encoder = build_encoder(meta["backbone"], meta["in_chans"], **kwargs)
        if encoder is not None:
            same = {k: v.shape for k, v in encoder.state_dict().items()} == {
                k: v.shape for k, v in source.encoder.state_dict().items()
            }
            if not same:
                encoder = None
    except Exception:
        encoder = None
    if encoder is None:
        encoder = copy.deepcopy(source.encoder)
        for module in encoder.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    meta["method"] = "random"
    return EncoderSource(encoder, meta, f"random-{source.key[:16]}-{seed}")


def file_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's content (hex)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
