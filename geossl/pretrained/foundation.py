"""Foundation weights by name: ``torchgeo:<Enum.MEMBER>``, ``timm:<model>.<tag>`` or a file.

The one owner of named weights. :func:`resolve_weights` turns a spec into a
:class:`ResolvedWeights` (trunk state dict in timm's layout, the bands the weights expect, their
own preprocessing, the upstream metadata):

* ``torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO``: any name the installed TorchGeo's
  ``torchgeo.models.get_weight`` knows whose ``meta["model"]`` is a timm model. The file is read
  through TorchGeo's own loader (``weights.get_state_dict``, i.e. ``torch.hub``'s cache
  ``$TORCH_HOME/hub/checkpoints/<file name of the url>``) with ``weights_only=True``.
* ``timm:resnet50.a1_in1k``: timm's own loader (``timm.create_model(pretrained=True)``) on the
  file in the Hugging Face cache (``HF_HUB_CACHE``); ImageNet weights take R, G, B.
* a local path: a plain state dict (``backbone`` must then be given) or a geossl checkpoint.

A file that is not cached is downloaded through the same loaders only when the network answers
within a few seconds (and neither ``GEOSSL_OFFLINE`` nor ``HF_HUB_OFFLINE`` is set); otherwise
one line names the exact path the file is expected at (a :class:`~geossl.core.errors.DataError`,
exit code 2).

:func:`match_bands` matches the data's bands to the weights' by name (``B8a``/``B8A``,
``B1``/``B01``, ``VV``/``vv``, common names such as ``red``/``nir``/``swir16``), and
:func:`build_foundation_encoder` builds a geossl :class:`~geossl.models.Encoder` that takes the
DATA's bands: when they are the weights' bands in the same order the trunk's stem takes them as
they are; otherwise a linear 1x1 :class:`~geossl.models.BandAdapter` maps the data bands to the
weights' bands, initialised to the selection matrix (each matched band passes straight through,
extra data bands get weight 0), and every band the data lacks gets a zero row: after the
weights' own normalisation 0 is the band's mean (or zero reflectance for a ``/10000`` scale,
which is what the cirrus band B10 that L2A products drop shows almost everywhere).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from geossl.core.errors import ConfigError, DataError, GeosslWarning, first_line
from geossl.core.io import load_torch_file
from geossl.datasets.bands import canonical_band
from geossl.models import Encoder, build_encoder
from geossl.models.backbones import load_state, resolve_name

#: prefixes of a weights spec
PREFIXES = ("torchgeo:", "timm:")

#: seconds the network gets to answer before a missing file is reported as missing
PROBE_TIMEOUT = 3.0

#: ImageNet weights (timm) take these bands, in this order
RGB_BANDS = ["B04", "B03", "B02"]

#: classifier tensors dropped from an upstream state dict (geossl trunks have no classifier)
_HEAD_PREFIXES = ("fc.", "head.", "classifier.", "last_linear.")


@dataclasses.dataclass
class ResolvedWeights:
    """Named weights, ready to load into a geossl trunk.

    Attributes:
        spec: the spec as given.
        backbone: geossl/timm backbone name (``resnet18``, ``vit_small_patch16_224``).
        state_dict: trunk tensors in timm's layout.
        bands: canonical band names in the weights' input order (``None``: not recorded).
        in_chans: input channels of the weights' stem.
        mean: per-band mean of the weights' own preprocessing (``None``: not recorded).
        std: per-band std of it (a ``/10000`` scale is mean 0, std 10000).
        source: ``torchgeo``, ``timm`` or ``file``.
        meta: the rest of the upstream metadata (model, publication, licence, url, path...).
    """

    spec: str
    backbone: str
    state_dict: dict[str, Tensor]
    bands: list[str] | None
    in_chans: int
    mean: list[float] | None
    std: list[float] | None
    source: str
    meta: dict[str, Any]


def is_weights_spec(spec: Any) -> bool:
    """True for ``torchgeo:...`` and ``timm:...`` specs (not for paths)."""
    return isinstance(spec, str) and spec.strip().lower().startswith(PREFIXES)


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------
_PROBED: dict[str, bool] = {}


def offline(url: str | None = None) -> bool:
    """Whether downloading must not be tried.

    True when ``GEOSSL_OFFLINE`` or ``HF_HUB_OFFLINE`` is set, or when the url's host does not
    accept a connection within :data:`PROBE_TIMEOUT` seconds (name resolution included: the
    probe runs in a thread that is abandoned after the timeout, so nothing hangs).
    """
    for var in ("GEOSSL_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    host = urlparse(url).hostname if url else "huggingface.co"
    if not host:
        return True
    if host in _PROBED:
        return not _PROBED[host]
    result: dict[str, bool] = {"ok": False}

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=PROBE_TIMEOUT):
                result["ok"] = True
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT + 0.5)
    _PROBED[host] = result["ok"]
    return not result["ok"]


# --------------------------------------------------------------------------------------------
# resolution
# --------------------------------------------------------------------------------------------
def resolve_weights(spec: str, backbone: str | None = None,
                    progress: bool = False) -> ResolvedWeights:
    """Resolve a weights spec (see the module docstring).

    Args:
        spec: ``torchgeo:<Enum.MEMBER>``, ``timm:<model>.<tag>`` or a local file.
        backbone: backbone of a plain state-dict file (ignored for named weights).
        progress: show a download progress bar.

    Returns:
        the weights.

    Raises:
        ConfigError: unknown name, weights of a model geossl cannot build.
        DataError: file not cached and no network (naming the expected path), unreadable file.
    """
    text = spec.strip()
    low = text.lower()
    if low.startswith("torchgeo:"):
        return _torchgeo(text, text[len("torchgeo:"):].strip(), progress)
    if low.startswith("timm:"):
        return _timm(text, text[len("timm:"):].strip())
    return _file(text, backbone)


def torchgeo_weight(name: str) -> Any:
    """The TorchGeo ``WeightsEnum`` member called ``name`` (``ResNet18_Weights.X``).

    Raises:
        ConfigError: TorchGeo knows no such weights.
    """
    from torchgeo.models import get_weight

    try:
        return get_weight(name)
    except (ValueError, KeyError, AttributeError) as err:
        raise ConfigError(f"torchgeo:{name}: not a weights name this TorchGeo knows (e.g. "
                          "ResNet18_Weights.SENTINEL2_ALL_MOCO; see "
                          "torchgeo.models.list_models / get_model_weights)") from err


def torchgeo_cache_path(weight: Any) -> Path:
    """Where ``torch.hub`` (TorchGeo's loader) keeps the file of ``weight``."""
    name = os.path.basename(urlparse(str(weight.url)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _transform_stats(transforms: Any, n: int) -> tuple[list[float] | None, list[float] | None]:
    """Mean and std of the ``Normalize`` step of TorchGeo's transforms (torchvision/kornia)."""
    modules = list(transforms.modules()) if isinstance(transforms, nn.Module) else [transforms]
    for module in modules:
        if type(module).__name__ != "Normalize":
            continue
        mean, std = getattr(module, "mean", None), getattr(module, "std", None)
        if mean is None or std is None:  # kornia keeps them in flags
            flags = getattr(module, "flags", {}) or {}
            mean, std = flags.get("mean"), flags.get("std")
        if mean is None or std is None:
            continue
        m = [float(v) for v in torch.as_tensor(mean, dtype=torch.float64).flatten()]
        s = [float(v) for v in torch.as_tensor(std, dtype=torch.float64).flatten()]
        if len(m) == 1:
            m = m * n
        if len(s) == 1:
            s = s * n
        if len(m) == n and len(s) == n:
            return m, s
    return None, None


def _trunk(state: Mapping[str, Any]) -> dict[str, Tensor]:
    return {str(k): v for k, v in state.items()
            if isinstance(v, Tensor) and not str(k).startswith(_HEAD_PREFIXES)}


def _torchgeo(spec: str, name: str, progress: bool) -> ResolvedWeights:
    import timm

    weight = torchgeo_weight(name)
    meta = dict(weight.meta)
    model = str(meta.get("model", ""))
    if not timm.is_model(model):
        raise ConfigError(f"{spec}: weights of a {model or 'non-timm'} model; geossl builds timm "
                          "trunks (ResNet, ViT weights of torchgeo.models work)")
    path = torchgeo_cache_path(weight)
    if not path.is_file() and offline(str(weight.url)):
        raise DataError(f"weights {name} are not in the torch.hub cache and there is no network "
                        f"to download them: put the file from {weight.url} at this path "
                        "(TORCH_HOME sets the cache folder)", path)
    import pickle

    timeout = socket.getdefaulttimeout()
    if not path.is_file():  # a download: a stalled connection fails instead of hanging
        socket.setdefaulttimeout(60.0)
    try:
        state = weight.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except pickle.UnpicklingError as err:
        raise DataError(f"weights file holds objects other than tensors, refused "
                        f"({first_line(err)})", path) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise DataError(f"unreadable weights file ({first_line(err)})", path) from err
    finally:
        socket.setdefaulttimeout(timeout)
    in_chans = int(meta.get("in_chans", 3))
    bands = meta.get("bands")
    mean, std = _transform_stats(getattr(weight, "transforms", None), in_chans)
    meta.update({"url": str(weight.url), "path": str(path), "name": name})
    return ResolvedWeights(spec, model, _trunk(state),
                           [canonical_band(str(b)) for b in bands] if bands else None,
                           in_chans, mean, std, "torchgeo", meta)


def _hf_cached(repo: str) -> Path | None:
    """The weights file of a Hugging Face repo in the local cache, if any."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return None
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def _hf_cache_dir() -> Path:
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return Path.home() / ".cache" / "huggingface" / "hub"


def _timm(spec: str, name: str) -> ResolvedWeights:
    import timm
    from timm.models import get_pretrained_cfg

    arch = name.split(".")[0]
    if not timm.is_model(arch):
        raise ConfigError(f"{spec}: timm knows no model {arch!r}")
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise ConfigError(f"{spec}: timm has no pretrained weights called {name!r} (see "
                          "timm.list_pretrained())")
    repo = getattr(cfg, "hf_hub_id", None)
    overlay: dict[str, Any] = {}
    cached = _hf_cached(repo) if repo else None
    if cached is not None:
        overlay = {"file": str(cached)}  # timm's own loader on the cached file: no network
    elif offline(getattr(cfg, "url", None) or "https://huggingface.co"):
        where = (_hf_cache_dir() / f"models--{repo.replace('/', '--')}" / "snapshots"
                 if repo else Path(torch.hub.get_dir()) / "checkpoints")
        raise DataError(f"timm weights {name} are not in the cache and there is no network to "
                        f"download them: put model.safetensors of {repo or cfg.url} under this "
                        "folder (e.g. `hf download` on a machine with network, then copy the "
                        "cache; HF_HUB_CACHE sets it)", where)
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay=overlay or None)
    except Exception as err:  # timm/hf raise many kinds; one line for the user
        raise DataError(f"timm could not load {name} ({first_line(err)})",
                        cached or repo) from err
    mean = [float(m) * 255.0 for m in cfg.mean] if cfg.mean else None
    std = [float(s) * 255.0 for s in cfg.std] if cfg.std else None
    in_chans = int(cfg.input_size[0]) if cfg.input_size else 3
    meta = {"model": arch, "tag": name, "hf_hub_id": repo, "license": cfg.license,
            "path": str(cached) if cached else None,
            "preprocessing": "8-bit RGB: ImageNet mean/std times 255"}
    return ResolvedWeights(spec, arch, _trunk(model.state_dict()),
                           list(RGB_BANDS) if in_chans == 3 else None, in_chans, mean, std,
                           "timm", meta)


def _file(spec: str, backbone: str | None) -> ResolvedWeights:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError("weights file not found", path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = dict(load_file(str(path)))
    else:
        obj = load_torch_file(path, "weights file")
    if not isinstance(obj, Mapping):
        raise DataError("holds no state dict", path)
    meta: dict[str, Any] = {"path": str(path)}
    bands = None
    norm = None
    if isinstance(obj.get("geossl"), Mapping) and isinstance(obj.get("state_dict"), Mapping):
        geo = dict(obj["geossl"])
        config = dict(geo.get("encoder_config") or {})
        if config.get("adapter") or isinstance(config.get("in_chans"), Mapping):
            raise ConfigError(f"{path}: a geossl checkpoint with a band adapter or per-sensor "
                              "stems; pass it as a checkpoint (not a weights spec)")
        backbone = str(config.get("backbone") or backbone or "")
        prefix = str(geo.get("encoder_prefix", "encoder.")) + "backbone."
        state = {k[len(prefix):]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)}
        bands = geo.get("bands")
        norm = geo.get("normalization")
        meta.update({"method": geo.get("method"), "normalization": norm})
    else:
        for key in ("state_dict", "model", "model_state", "module", "teacher"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        state = _trunk(obj)
    if not backbone:
        raise ConfigError(f"{path}: a plain state dict does not say its architecture; give "
                          "--backbone")
    if not state:
        raise DataError("holds no trunk tensors", path)
    in_chans = _stem_channels(backbone, state)
    band_list = [canonical_band(str(b)) for b in bands] if isinstance(bands, list) else None
    mean = std = None
    if isinstance(norm, Mapping) and "mean" in norm and "std" in norm:
        mean, std = [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]
    return ResolvedWeights(spec, backbone, dict(state), band_list, in_chans, mean, std, "file",
                           meta)


def _stem_channels(backbone: str, state: Mapping[str, Tensor]) -> int:
    """Input channels of the stem tensor of ``state`` (the first 4-d weight of the model)."""
    import timm

    from geossl.models.backbones import first_conv_name

    name, kwargs = resolve_name(backbone)
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    key = first_conv_name(model) + ".weight"
    stem = state.get(key)
    if stem is None or stem.ndim != 4:
        raise DataError(f"no stem tensor {key} for backbone {backbone}")
    return int(stem.shape[1])


# --------------------------------------------------------------------------------------------
# band matching
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class BandMatch:
    """How the data's bands feed the weights' bands.

    Attributes:
        data_bands: the data's band names, in input order.
        weight_bands: the weights' band names, in the stem's order.
        source: for each weight band, the position of the data band feeding it (``None``:
            missing in the data, zero-initialised).
        missing: weight bands the data lacks.
        extra: data bands the weights do not take (weight 0 in the adapter).
    """

    data_bands: list[str]
    weight_bands: list[str]
    source: list[int | None]
    missing: list[str]
    extra: list[str]

    @property
    def identity(self) -> bool:
        """The data bands are exactly the weights' bands, in the same order."""
        return self.source == list(range(len(self.data_bands))) and not self.extra

    def matrix(self) -> Tensor:
        """``(n_weight_bands, n_data_bands)`` 1x1 map: 1 where a data band feeds a weight band."""
        out = torch.zeros(len(self.weight_bands), len(self.data_bands))
        for j, i in enumerate(self.source):
            if i is not None:
                out[j, i] = 1.0
        return out

    def describe(self) -> str:
        """One line for the user (missing and extra bands)."""
        parts = []
        if self.missing:
            parts.append(f"the data lacks {', '.join(self.missing)} (zero-initialised in the "
                         "adapter)")
        if self.extra:
            parts.append(f"data band(s) {', '.join(self.extra)} are not used by the weights")
        return "; ".join(parts)


def match_bands(data_bands: Sequence[str] | None, weights: ResolvedWeights,
                n_data: int | None = None) -> BandMatch:
    """Match the data's bands to the weights' by name.

    Args:
        data_bands: the data's band names in input order (``None``: not named).
        weights: resolved weights.
        n_data: the data's band count, used when the bands are not named.

    Returns:
        the match.

    Raises:
        ConfigError: no band in common (e.g. S1 weights on S2 data), or unnamed bands whose
            count differs from the weights'.
    """
    wbands = list(weights.bands) if weights.bands else None
    if data_bands is None or wbands is None:
        count = len(data_bands) if data_bands is not None else n_data
        if count != weights.in_chans:
            have = f"{count} band(s)" if count is not None else "bands of unknown names"
            raise ConfigError(f"{weights.spec}: the weights take {weights.in_chans} bands "
                              f"{'(' + ', '.join(wbands) + ') ' if wbands else ''}and the "
                              f"data has {have}; name the data's bands to match them")
        names = list(data_bands) if data_bands is not None else (
            wbands or [str(i) for i in range(weights.in_chans)])
        return BandMatch([str(n) for n in names], wbands or [str(n) for n in names],
                         list(range(weights.in_chans)), [], [])
    canon = [canonical_band(str(b)) for b in data_bands]
    source: list[int | None] = []
    for wb in wbands:
        source.append(canon.index(wb) if wb in canon else None)
    if all(s is None for s in source):
        raise ConfigError(f"{weights.spec}: no band in common between the weights "
                          f"({', '.join(wbands)}) and the data ({', '.join(map(str, data_bands))})")
    used = {s for s in source if s is not None}
    missing = [wb for wb, s in zip(wbands, source) if s is None]
    extra = [str(data_bands[i]) for i in range(len(data_bands)) if i not in used]
    return BandMatch([str(b) for b in data_bands], wbands, source, missing, extra)


# --------------------------------------------------------------------------------------------
# encoders
# --------------------------------------------------------------------------------------------
def load_trunk(encoder: Encoder, weights: ResolvedWeights) -> None:
    """Load the weights into ``encoder.backbone`` (ViT position embeddings resampled).

    Raises:
        DataError: the weights do not fit the backbone.
    """
    where = weights.meta.get("path") or weights.spec
    load_state(encoder.backbone, dict(weights.state_dict), where)


def set_band_map(encoder: Encoder, match: BandMatch) -> None:
    """Initialise the encoder's linear adapter to the selection matrix of ``match``."""
    assert encoder.adapter is not None
    with torch.no_grad():
        encoder.adapter.conv.weight.copy_(match.matrix()[:, :, None, None])


def build_foundation_encoder(
    weights: ResolvedWeights,
    data_bands: Sequence[str] | None,
    n_data: int | None = None,
    img_size: int | None = None,
    adapter: str = "linear",
) -> tuple[Encoder, BandMatch]:
    """An encoder taking the data's bands, with the weights loaded.

    Args:
        weights: resolved weights.
        data_bands: the data's band names in input order.
        n_data: band count when the data's bands are unnamed.
        img_size: input size for ViT backbones (position embeddings resampled).
        adapter: kind of the band adapter when the bands differ (``linear`` learnable,
            ``linear-frozen`` fixed).

    Returns:
        the encoder (eval mode, CPU) and the band match.

    Raises:
        ConfigError: bands that cannot be matched.
        DataError: weights that do not fit the backbone.
    """
    match = match_bands(data_bands, weights, n_data)
    kwargs: dict[str, Any] = {"img_size": img_size} if img_size else {}
    if match.identity:
        encoder = build_encoder(weights.backbone, weights.in_chans, **kwargs)
    else:
        encoder = build_encoder(weights.backbone, len(match.data_bands), adapter=adapter,
                                adapter_out=weights.in_chans, **kwargs)
        set_band_map(encoder, match)
    load_trunk(encoder, weights)
    encoder.eval()
    return encoder, match


def data_normalization(weights: ResolvedWeights, match: BandMatch) -> dict[str, list[float]] | None:
    """The weights' own mean/std for each DATA band (extra bands: mean 0, std 1)."""
    if weights.mean is None or weights.std is None:
        return None
    mean = [0.0] * len(match.data_bands)
    std = [1.0] * len(match.data_bands)
    for j, i in enumerate(match.source):
        if i is not None:
            mean[i], std[i] = weights.mean[j], weights.std[j]
    return {"mean": mean, "std": std}


def foundation_source(
    spec: str,
    data_bands: Sequence[str] | None = None,
    preprocess: str = "weights",
    n_data: int | None = None,
    img_size: int | None = None,
    backbone: str | None = None,
) -> tuple[Encoder, dict[str, Any], str]:
    """Encoder, metadata and cache key of named weights for evaluation/export/embedding.

    The metadata has the keys of :func:`geossl.pretrained.checkpoint.load_encoder`'s (``bands`` =
    the data
    bands, ``normalization`` per ``preprocess``, ``method`` = ``foundation``) plus
    ``weights`` / ``pretrained_from`` (the spec), ``weights_meta`` and ``band_match``.

    Raises:
        ConfigError: unknown preprocess, weights or unmatched bands.
        DataError: weights file missing (no network) or unreadable.
    """
    if preprocess not in ("weights", "dataset"):
        raise ConfigError(f"--preprocess must be weights or dataset, got {preprocess!r}")
    weights = resolve_weights(spec, backbone=backbone)
    encoder, match = build_foundation_encoder(weights, data_bands, n_data, img_size)
    if match.missing or match.extra:
        warnings.warn(f"{spec}: {match.describe()}", GeosslWarning, stacklevel=2)
    norm = data_normalization(weights, match) if preprocess == "weights" else None
    if preprocess == "weights" and norm is None:
        raise ConfigError(f"{spec}: the weights record no preprocessing; use --preprocess "
                          "dataset")
    timm_name, kw = resolve_name(weights.backbone, img_size)
    meta: dict[str, Any] = {
        "backbone": weights.backbone,
        "in_chans": len(match.data_bands),
        "sensors": None,
        "bands": list(match.data_bands),
        "method": "foundation",
        "pairing": None,
        "adapter": None if match.identity else "linear",
        "normalization": norm,
        "img_size": img_size,
        "fusion": False,
        "adapter_out": weights.in_chans,
        "crop_size": None,
        "patch_size": kw.get("patch_size"),
        "timm_name": timm_name,
        "weights": spec,
        "pretrained_from": spec,
        "preprocess": preprocess,
        "weights_meta": {k: v for k, v in weights.meta.items()
                         if isinstance(v, str | int | float | bool | list) or v is None},
        "band_match": {"weight_bands": match.weight_bands, "missing": match.missing,
                       "extra": match.extra},
    }
    digest = hashlib.sha256(
        f"{spec}|{','.join(match.data_bands)}|{preprocess}|{img_size}|"
        f"{_file_stamp(weights.meta.get('path'))}".encode()).hexdigest()
    return encoder, meta, f"weights-{digest[:32]}"


def _file_stamp(path: Any) -> str:
    try:
        st = os.stat(str(path))
    except (OSError, TypeError):
        return ""
    return f"{st.st_size}-{int(st.st_mtime)}"


def dataset_bands(dataset: Any, sensor: str | None) -> list[str] | None:
    """The band names of ``dataset``'s images for ``sensor`` (``None`` when unnamed)."""
    from geossl.datasets.bands import band_names

    names = band_names(dataset)
    if sensor is not None and sensor in names:
        return list(names[sensor])
    if len(names) == 1:
        return list(next(iter(names.values())))
    return None
