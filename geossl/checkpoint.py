"""Rebuild the (online) encoder of a pretraining checkpoint, with its metadata.

A checkpoint written by a :class:`~geossl.methods.base.SSLMethod` holds, besides Lightning's
``state_dict`` and ``hyper_parameters``, a ``geossl`` entry with the encoder's build arguments
and the data metadata (sensors, bands, normalisation). Older checkpoints without it are rebuilt
from ``hyper_parameters`` alone.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from geossl.errors import DataError
from geossl.io import load_torch_file
from geossl.models import Encoder, build_encoder

#: metadata keys returned by :func:`load_encoder`
META_KEYS = ("backbone", "in_chans", "sensors", "bands", "method", "pairing", "adapter",
             "normalization", "img_size")


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint on the CPU, as data only.

    Only tensors, plain Python values and the few value types of
    :func:`geossl.io.safe_globals` are rebuilt (``torch.load(weights_only=True)``); a file
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
    }
    return encoder, out
