"""The rows of a comparison: what each representation is, and the registry of row kinds.

A row is ``{name, kind, ...}`` (YAML) or ``NAME=KIND:VALUE`` (``--row``). Its kind is a
function that turns the row into a :class:`PreparedRow`: frozen features of the train and test
sides (scored by a probe on each label draw), or a function that trains on the labelled samples
of a draw (supervised from scratch, fine-tuning). A new kind of representation (e.g. an embedding
product) is one function registered with :func:`register_row_kind`.

Built-in kinds:

``ckpt``
    a checkpoint of ``geossl pretrain`` (own SSL, or foundation weights + continued SSL: just
    another checkpoint), frozen; ``ckpt: PATH``.
``weights``
    named foundation weights, frozen: ``weights: torchgeo:<Enum.MEMBER>``,
    ``timm:<model>.<tag>`` or a local file, loaded by
    :func:`geossl.pretrained.checkpoint.load_source` with
    the data's bands (``preprocess: weights|dataset``). Needs a geossl whose ``load_source``
    resolves names (:mod:`geossl.pretrained.foundation`).
``random``
    the same architecture with random weights, frozen: ``backbone: NAME`` (default: the
    comparison's ``backbone``, else the architecture of the first ``ckpt``/``weights`` row).
``band-means``
    the mean of every band over the chip, one number per band: what a linear model gets without
    any representation learning.
``scratch``
    supervised from scratch: the architecture of ``random`` trained end to end on the labelled
    samples of each draw only (:func:`geossl.eval.finetune.finetune`).
``product``
    an embedding product's vectors, frozen: ``product: PATH`` (GeoParquet in geossl's or
    TorchGeo's EarthEmbeddings/MajorTOMEmbeddings layouts, a zarr cube of ``geossl embed``, or a
    GSE/Tessera-style GeoTIFF), one vector per chip matched by chip id or footprint
    (:func:`geossl.eval.product.product_feature_set`); ``column`` names the GeoParquet vector
    column (default ``embedding``). Every chip of both sides must be covered (else one line,
    nothing written); protocol ``linear`` or ``knn``.

Every frozen row takes ``protocol: linear`` (default; :func:`geossl.eval.linear.linear_probe`),
``knn`` (:func:`geossl.eval.knn.knn_scores`, k = 20) or ``finetune`` (the row's encoder trained
end to end on each draw, as ``scratch`` does from random weights); ``sensor`` chooses the
sensor(s) fed to a multi-sensor encoder.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from geossl.core.errors import ConfigError, DataError
from geossl.eval.features import FeatureSet, cached_features, image_of
from geossl.eval.finetune import finetune
from geossl.eval.knn import knn_scores
from geossl.eval.linear import linear_probe
from geossl.eval.product import product_feature_set, product_source
from geossl.pretrained.checkpoint import (
    EncoderSource,
    SensorSelection,
    load_source,
    random_like,
    select_sensors,
    sensor_list,
)
from geossl.pretrained.normalize import make_normalizer

#: protocols a frozen row may use
ROW_PROTOCOLS = ("linear", "knn", "finetune")
#: neighbours of the ``knn`` protocol
KNN_K = 20
_NAME_RE = re.compile(r"^[A-Za-z0-9][\w.+-]*$")


@dataclass(frozen=True)
class RowSpec:
    """One row as the user wrote it: a name, a kind and the kind's options."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """An option of the row (``None`` and absent read the same)."""
        value = self.options.get(key)
        return default if value is None else value


@dataclass
class TaskView:
    """The labels one task is scored on (the dataset's classes, or a binary task's 0/1)."""

    name: str
    #: labels of the train side, ``(N,)`` or ``(N, K)``, aligned with the context's train side
    train: Tensor
    #: labels of the test side
    test: Tensor
    num_classes: int
    classes: list[str] | None
    #: what end-to-end training reads samples (and their labels) from
    dataset: Dataset[dict[str, Any]]


#: scoring of one draw: ``(task, rows of the train side, seed) -> (test scores, probabilities?,
#: info)``
Fit = Callable[[TaskView, np.ndarray, int], tuple[Tensor, bool, dict[str, Any]]]


@dataclass
class PreparedRow:
    """A row ready to be scored on label draws."""

    name: str
    kind: str
    #: scores the test side after learning from the labelled rows of a draw
    fit: Fit
    #: what ``compare.json`` records about the row (source, backbone, method, protocol, ...)
    meta: dict[str, Any] = field(default_factory=dict)
    #: labels of the train and test sides when the row read them (saves a pass over the data)
    labels: tuple[Tensor, Tensor] | None = None


@dataclass
class RowContext:
    """What every row kind may read: the data, its sides and the shared settings."""

    dataset: Dataset[dict[str, Any]]
    train_positions: list[int]
    test_positions: list[int]
    ids: list[str]
    data_key: str
    train_split: str
    test_split: str
    default_sensor: str | None
    sensor: SensorSelection
    cache_dir: Path | None
    device: torch.device
    batch_size: int = 256
    bf16: bool = False
    workers: int = 0
    backbone: str | None = None
    seed: int = 0
    finetune_steps: int = 200
    finetune_lr: float = 1e-3
    finetune_batch_size: int = 64
    log_dir: Path | None = None
    #: encoders of the ckpt/weights rows loaded so far, by row name (``random``/``scratch``
    #: copy their architecture)
    sources: dict[str, EncoderSource] = field(default_factory=dict)
    #: what each row's load phase returned, by row name
    loaded: dict[str, Any] = field(default_factory=dict)

    def first_sample(self) -> dict[str, Any]:
        """The first training sample (band count, band check)."""
        return self.dataset[self.train_positions[0]]

    def data_bands(self, sensor: SensorSelection = None) -> list[str] | None:
        """Band names of the data fed to a row (``None`` when the dataset names none)."""
        from geossl.datasets.bands import band_names

        names = band_names(self.dataset)
        chosen = sensor_list(sensor if sensor is not None else self.default_sensor)
        if chosen and all(s in names for s in chosen):
            return [b for s in chosen for b in names[s]]
        if len(names) == 1 and len(chosen) <= 1:
            return list(next(iter(names.values())))
        return None

    def channels(self, sensor: SensorSelection = None) -> int:
        """Band count of the images fed to a row."""
        chosen = select_sensors({}, sensor, self.default_sensor)
        return int(image_of(self.first_sample(), chosen).shape[0])


#: a row kind: ``(row, context) -> PreparedRow``
RowKindFn = Callable[[RowSpec, RowContext], PreparedRow]
#: a row kind's load phase: ``(row, context) -> what the row needs`` (kept in ``ctx.loaded``)
RowLoadFn = Callable[[RowSpec, RowContext], Any]


@dataclass(frozen=True)
class RowKind:
    """A registered kind: its function, the option a ``--row KIND:VALUE`` fills, a help line."""

    fn: RowKindFn
    value_key: str | None = None
    help: str = ""
    #: optional first phase, run for every row before anything is written: load and check
    #: what the row needs (a missing file, wrong bands) and keep it in ``ctx.loaded``
    load: RowLoadFn | None = None


#: registered row kinds, by name
ROW_KINDS: dict[str, RowKind] = {}


def register_row_kind(name: str, fn: RowKindFn, value_key: str | None = None,
                      help: str = "", load: RowLoadFn | None = None) -> None:
    """Register a kind of row (a new representation) under ``name``.

    Args:
        name: the ``kind`` of a row.
        fn: builds the :class:`PreparedRow` of a row of this kind (features, training).
        value_key: the option ``--row NAME=KIND:VALUE`` sets (e.g. ``ckpt``).
        help: one line for the docs and ``--help``.
        load: optional check-and-load phase run for every row before the comparison writes
            anything (so that a missing file is one line and an untouched ``--out``); its
            result is ``ctx.loaded[row name]``.
    """
    ROW_KINDS[name] = RowKind(fn, value_key, help, load)


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------
def parse_row(value: str | Mapping[str, Any]) -> RowSpec:
    """A row from a YAML mapping ``{name, kind, ...}`` or a ``[NAME=]KIND[:VALUE]`` string.

    Raises:
        ConfigError: unknown kind, bad name, a mapping without ``kind``.
    """
    if isinstance(value, Mapping):
        opts = {str(k).replace("-", "_"): v for k, v in value.items()}
        kind = opts.pop("kind", None)
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"row {dict(value)} has no 'kind' (one of {', '.join(ROW_KINDS)})")
        kind = kind.strip().lower()
        name = opts.pop("name", None)
    else:
        text = str(value).strip()
        name = None
        head, sep, rest = text.partition(":")
        if "=" in head:
            name, _, head = head.partition("=")
        kind = head.strip().lower()
        opts = {}
        if sep:
            if kind not in ROW_KINDS or ROW_KINDS[kind].value_key is None:
                raise ConfigError(f"row {text!r}: kind {kind!r} takes no value (KIND:VALUE)"
                                  if kind in ROW_KINDS else _unknown(kind))
            opts[str(ROW_KINDS[kind].value_key)] = rest.strip()
    if kind not in ROW_KINDS:
        raise ConfigError(_unknown(kind))
    name = str(name).strip() if name not in (None, "") else _default_name(kind, opts)
    if not _NAME_RE.match(name):
        raise ConfigError(f"row name {name!r}: use letters, digits and . _ + -")
    protocol = opts.get("protocol")
    if protocol is not None and str(protocol) not in ROW_PROTOCOLS:
        raise ConfigError(f"row {name!r}: unknown protocol {protocol!r}; use one of "
                          f"{', '.join(ROW_PROTOCOLS)}")
    return RowSpec(name, kind, opts)


def _unknown(kind: str) -> str:
    return f"unknown row kind {kind!r}; use one of {', '.join(ROW_KINDS)}"


def _default_name(kind: str, opts: Mapping[str, Any]) -> str:
    key = ROW_KINDS[kind].value_key
    value = opts.get(key) if key else None
    if value is None:
        return kind
    text = str(value)
    if kind in ("ckpt",):  # a checkpoint: its run folder (RUN/checkpoints/last.ckpt -> RUN)
        p = Path(text)
        stem = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
        return re.sub(r"[^\w.+-]", "_", stem) or kind
    if kind == "product":  # an embedding product: its file or folder name (emb.parquet -> emb)
        p = Path(text.rstrip("/\\"))
        stem = p.stem if p.suffix.lower() in (".parquet", ".geoparquet", ".zarr", ".tif",
                                               ".tiff", ".vrt") else p.name
        return re.sub(r"[^\w.+-]", "_", stem).lstrip("_.+-") or kind
    return re.sub(r"[^\w.+-]", "_", text.split(":", 1)[-1]) or kind


def parse_rows(rows: Sequence[str | Mapping[str, Any] | RowSpec]) -> list[RowSpec]:
    """Rows of a comparison, checked: known kinds, unique names, at least one row.

    Raises:
        ConfigError: no row, two rows of one name, or a bad row.
    """
    specs = [r if isinstance(r, RowSpec) else parse_row(r) for r in rows]
    if not specs:
        raise ConfigError("no rows to compare: give rows in --config or --row/--ckpt/--weights")
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"two rows are named {dup[0]!r}; give each row its own name")
    return specs


# --------------------------------------------------------------------------------------------
# shared machinery of the encoder rows
# --------------------------------------------------------------------------------------------
def _protocol(spec: RowSpec, default: str = "linear") -> str:
    return str(spec.get("protocol", default))


def load_row_source(value: str | os.PathLike[str], ctx: RowContext, spec: RowSpec,
                    preprocess: str | None = None) -> EncoderSource:
    """Load a checkpoint or named weights through :func:`geossl.pretrained.checkpoint.load_source`.

    Named weights (a ``weights`` row, or a ``torchgeo:``/``timm:`` spec) get the data's band
    names and count (``data_bands``, ``in_chans``) and ``preprocess``: the encoder then takes
    the data's bands (:mod:`geossl.pretrained.foundation`). A checkpoint path is loaded as it is.

    Raises:
        ConfigError: named weights with a ``load_source`` that cannot resolve them.
    """
    named = spec.kind == "weights" or str(value).startswith(("torchgeo:", "timm:"))
    if not named:
        return load_source(value)
    if "data_bands" not in inspect.signature(load_source).parameters:
        raise ConfigError(f"row {spec.name!r}: weights by name ({value}) need "
                          "geossl.pretrained.foundation, which this installation lacks; "
                          "give a checkpoint (kind ckpt)")
    sensor = spec.get("sensor", ctx.sensor)
    kwargs: dict[str, Any] = {"data_bands": ctx.data_bands(sensor),
                              "in_chans": ctx.channels(sensor),
                              "preprocess": preprocess or "weights"}
    return load_source(value, **kwargs)


def _checked_sensors(spec: RowSpec, ctx: RowContext, source: EncoderSource) -> SensorSelection:
    """The sensor(s) fed to the row's encoder, checked against the samples' band count."""
    from geossl.eval.run import check_bands

    chosen = select_sensors(source.meta, spec.get("sensor", ctx.sensor), ctx.default_sensor)
    check_bands(source.meta, chosen, ctx.first_sample(), None)
    return chosen


def loaded(spec: RowSpec, ctx: RowContext) -> Any:
    """What the row's load phase returned (running it now when it has not run)."""
    if spec.name not in ctx.loaded:
        load = ROW_KINDS[spec.kind].load
        ctx.loaded[spec.name] = load(spec, ctx) if load is not None else None
    return ctx.loaded[spec.name]


def encoder_row(spec: RowSpec, ctx: RowContext, source: EncoderSource,
                normalize: bool = True) -> PreparedRow:
    """A row scoring ``source``'s encoder: frozen features + probe, or fine-tuned per draw.

    Args:
        spec: the row.
        ctx: the comparison's context.
        source: the encoder and its metadata.
        normalize: apply the normalisation the encoder was trained with (see
            :func:`geossl.pretrained.normalize.make_normalizer`).

    Raises:
        DataError: the samples' band count differs from what the encoder takes.
    """
    protocol = _protocol(spec)
    chosen = _checked_sensors(spec, ctx, source)
    normalizer = make_normalizer(source.meta, chosen) if normalize else None
    meta = {"source_key": source.key, "backbone": source.meta.get("backbone"),
            "method": source.meta.get("method"), "protocol": protocol,
            "sensor": ",".join(sensor_list(chosen)) or None,
            "bands": source.meta.get("bands")}
    if protocol == "finetune":
        return PreparedRow(spec.name, spec.kind, _finetune_fit(spec, ctx, lambda seed: source,
                                                               normalizer, chosen), meta)
    extract = {"normalizer": normalizer, "sensor": chosen, "batch_size": ctx.batch_size,
               "device": ctx.device, "bf16": ctx.bf16, "workers": ctx.workers}
    feature_key = f"{ctx.data_key}|sensor={','.join(sensor_list(chosen))}|norm={normalize}"
    sides = []
    for positions, split in ((ctx.train_positions, ctx.train_split),
                             (ctx.test_positions, ctx.test_split)):
        sides.append(cached_features(source, ctx.dataset, positions, dataset_key=feature_key,
                                     split=split, cache_dir=ctx.cache_dir,
                                     ids=[ctx.ids[p] for p in positions], **extract))
    train, test = sides
    meta["num_features"] = int(train.features.shape[1])
    source.encoder.to("cpu")  # kept for random/scratch rows built like it; off the GPU
    return PreparedRow(spec.name, spec.kind, _feature_fit(protocol, train.features,
                                                          test.features, ctx.device),
                       meta, (train.labels, test.labels))


def _feature_fit(protocol: str, train_x: Tensor, test_x: Tensor, device: torch.device) -> Fit:
    def fit(task: TaskView, rows: np.ndarray, seed: int) -> tuple[Tensor, bool, dict[str, Any]]:
        idx = torch.as_tensor(rows, dtype=torch.long)
        if protocol == "knn":
            s = knn_scores(train_x[idx], task.train[idx], test_x, task.num_classes, k=KNN_K,
                           device=device)
            return s, True, {"k": min(KNN_K, len(rows))}
        s, info = linear_probe(train_x[idx], task.train[idx], test_x, task.num_classes,
                               seed=seed, device=device)
        return s, False, dict(info)

    return fit


def _finetune_fit(spec: RowSpec, ctx: RowContext, make: Callable[[int], EncoderSource],
                  normalizer: Callable[[Tensor], Tensor] | None,
                  chosen: SensorSelection) -> Fit:
    steps = int(spec.get("finetune_steps", ctx.finetune_steps))
    lr = float(spec.get("finetune_lr", ctx.finetune_lr))

    def fit(task: TaskView, rows: np.ndarray, seed: int) -> tuple[Tensor, bool, dict[str, Any]]:
        positions = [ctx.train_positions[int(r)] for r in rows]
        log = None
        if ctx.log_dir is not None:
            log = ctx.log_dir / f"{spec.name}-{task.name}-{len(rows)}-seed{seed}.csv"
        res = finetune(make(seed).encoder, task.dataset, positions, ctx.test_positions,
                       task.num_classes, steps=steps, batch_size=ctx.finetune_batch_size, lr=lr,
                       normalizer=normalizer, sensor=chosen, device=ctx.device, bf16=ctx.bf16,
                       seed=seed, workers=ctx.workers, log_csv=log, desc=spec.name)
        return res["scores"], False, {"steps": steps, "lr": lr,
                                      "final_loss": res["curve"][-1][1] if res["curve"] else None}

    return fit


def _architecture(spec: RowSpec, ctx: RowContext) -> tuple[EncoderSource, SensorSelection]:
    """A random encoder for ``random``/``scratch``: ``backbone``, or a prepared row's."""
    backbone = spec.get("backbone") or (None if spec.get("like") else ctx.backbone)
    sensor = spec.get("sensor", ctx.sensor)
    if backbone:
        chosen = select_sensors({}, sensor, ctx.default_sensor)
        in_chans = int(image_of(ctx.first_sample(), chosen).shape[0])
        return load_source("random", backbone=str(backbone), in_chans=in_chans,
                           seed=ctx.seed), chosen
    like = spec.get("like")
    if like is not None:
        if like not in ctx.sources:
            raise ConfigError(f"row {spec.name!r}: like {like!r} names no earlier encoder row")
        base = ctx.sources[like]
    else:
        if not ctx.sources:
            raise ConfigError(f"row {spec.name!r} ({spec.kind}) needs a backbone: give "
                              "'backbone:' (or --backbone), or list a ckpt/weights row before it")
        base = next(iter(ctx.sources.values()))
    return random_like(base, ctx.seed), sensor


# --------------------------------------------------------------------------------------------
# built-in kinds
# --------------------------------------------------------------------------------------------
def load_ckpt(spec: RowSpec, ctx: RowContext) -> EncoderSource:
    """Load phase of ``ckpt``: the checkpoint's encoder, checked against the data."""
    value = spec.get("ckpt")
    if not value:
        raise ConfigError(f"row {spec.name!r} (ckpt) needs 'ckpt: PATH'")
    source = load_row_source(str(value), ctx, spec)
    _checked_sensors(spec, ctx, source)
    ctx.sources[spec.name] = source
    return source


def ckpt_row(spec: RowSpec, ctx: RowContext) -> PreparedRow:
    """``ckpt``: a pretraining checkpoint (own SSL, or foundation + continued SSL), frozen."""
    row = encoder_row(spec, ctx, loaded(spec, ctx))
    row.meta["ckpt"] = str(spec.get("ckpt"))
    return row


def _preprocess(spec: RowSpec) -> str:
    preprocess = str(spec.get("preprocess", "weights"))
    if preprocess not in ("weights", "dataset"):
        raise ConfigError(f"row {spec.name!r}: preprocess must be weights or dataset, got "
                          f"{preprocess!r}")
    return preprocess


def load_weights(spec: RowSpec, ctx: RowContext) -> EncoderSource:
    """Load phase of ``weights``: the named weights' encoder on the data's bands."""
    value = spec.get("weights")
    if not value:
        raise ConfigError(f"row {spec.name!r} (weights) needs 'weights: torchgeo:Enum.MEMBER' "
                          "(or timm:model.tag, or a file)")
    source = load_row_source(str(value), ctx, spec, _preprocess(spec))
    _checked_sensors(spec, ctx, source)
    ctx.sources[spec.name] = source
    return source


def weights_row(spec: RowSpec, ctx: RowContext) -> PreparedRow:
    """``weights``: named foundation weights (``torchgeo:...``, ``timm:...``), frozen."""
    row = encoder_row(spec, ctx, loaded(spec, ctx))
    row.meta.update({"weights": str(spec.get("weights")), "preprocess": _preprocess(spec)})
    return row


def load_random(spec: RowSpec, ctx: RowContext) -> EncoderSource:
    """Load phase of ``random`` and ``scratch``: the random encoder, checked against the data."""
    if spec.kind == "scratch" and spec.get("protocol") not in (None, "finetune"):
        raise ConfigError(f"row {spec.name!r}: scratch is trained end to end (protocol "
                          "finetune); use kind random for a frozen random encoder")
    source, _ = _architecture(spec, ctx)
    _checked_sensors(spec, ctx, source)
    return source


def random_row(spec: RowSpec, ctx: RowContext) -> PreparedRow:
    """``random``: the architecture with random weights, frozen."""
    row = encoder_row(spec, ctx, loaded(spec, ctx))
    row.meta["method"] = "random"
    return row


class BandMeans(nn.Module):
    """The mean of every band over the chip: ``(B, C, H, W) -> (B, C)``."""

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        self.num_features = in_chans

    def forward(self, x: Tensor) -> Tensor:
        """Band means of a batch."""
        return x.float().mean(dim=(-2, -1))


def load_band_means(spec: RowSpec, ctx: RowContext) -> EncoderSource:
    """Load phase of ``band-means``: a band-mean "encoder" for the data's band count."""
    if _protocol(spec) == "finetune":
        raise ConfigError(f"row {spec.name!r}: band means have nothing to fine-tune; use "
                          "protocol linear or knn")
    chosen = select_sensors({}, spec.get("sensor", ctx.sensor), ctx.default_sensor)
    in_chans = int(image_of(ctx.first_sample(), chosen).shape[0])
    meta = {"backbone": "band-means", "in_chans": in_chans, "method": "band-means",
            "sensors": None, "bands": ctx.data_bands(chosen), "normalization": None}
    return EncoderSource(BandMeans(in_chans), meta, f"band-means-{in_chans}")


def band_means_row(spec: RowSpec, ctx: RowContext) -> PreparedRow:
    """``band-means``: one number per band (the chip's mean), no representation learning."""
    # raw values: the probe standardises every feature, so a per-band normalisation (affine)
    # would change nothing
    return encoder_row(spec, ctx, loaded(spec, ctx), normalize=False)


def scratch_row(spec: RowSpec, ctx: RowContext) -> PreparedRow:
    """``scratch``: the architecture from random weights, trained on each draw's labels only."""
    source: EncoderSource = loaded(spec, ctx)
    chosen = _checked_sensors(spec, ctx, source)
    normalizer = make_normalizer(source.meta, chosen)

    def make(seed: int) -> EncoderSource:
        return random_like(source, seed)

    meta = {"source_key": source.key, "backbone": source.meta.get("backbone"),
            "method": "scratch", "protocol": "finetune",
            "sensor": ",".join(sensor_list(chosen)) or None}
    return PreparedRow(spec.name, spec.kind, _finetune_fit(spec, ctx, make, normalizer, chosen),
                       meta)


def load_product(spec: RowSpec, ctx: RowContext
                 ) -> tuple[EncoderSource, FeatureSet, FeatureSet]:
    """Load phase of ``product``: the product's vectors for every chip of both sides.

    Runs before anything is written, so a product that lacks a chip of the train or test side
    (or is unreadable, or has no vector column) is one line and an untouched ``--out``.

    Returns:
        ``(source naming the product, train FeatureSet, test FeatureSet)``.

    Raises:
        ConfigError: no ``product: PATH``, or protocol ``finetune``.
        DataError: missing/unreadable product, or chips it does not cover.
    """
    from geossl.datasets.protocol import footprints_of

    value = spec.get("product")
    if not value:
        raise ConfigError(f"row {spec.name!r} (product) needs 'product: PATH' (GeoParquet, "
                          "zarr cube or GeoTIFF of embeddings)")
    if _protocol(spec) == "finetune":
        raise ConfigError(f"row {spec.name!r}: an embedding product gives frozen features "
                          "only; use protocol linear or knn")
    path = Path(str(value)).expanduser()
    train_pos, test_pos = ctx.train_positions, ctx.test_positions
    positions = list(train_pos) + list(test_pos)
    try:
        source = product_source(path)
        both = product_feature_set(path, ctx.dataset, positions, [ctx.ids[p] for p in positions],
                                   footprints_of(ctx.dataset),
                                   column=str(spec.get("column", "embedding")),
                                   hint="compare on chips it covers: give --splits listing "
                                        "only those")
    except DataError as err:
        raise DataError(f"row {spec.name!r} (product): {err}") from err
    n = len(train_pos)
    train = FeatureSet(both.features[:n], both.labels[:n], both.ids[:n], both.positions[:n])
    test = FeatureSet(both.features[n:], both.labels[n:], both.ids[n:], both.positions[n:])
    return source, train, test


def product_row(spec: RowSpec, ctx: RowContext) -> PreparedRow:
    """``product``: an embedding product's vectors per chip, frozen (no encoder is run)."""
    source, train, test = loaded(spec, ctx)
    protocol = _protocol(spec)
    meta = {"source_key": source.key, "backbone": source.meta.get("backbone"),
            "method": source.meta.get("method"), "protocol": protocol,
            "product": source.meta.get("product"),
            "column": str(spec.get("column", "embedding")),
            "num_features": int(train.features.shape[1])}
    return PreparedRow(spec.name, spec.kind, _feature_fit(protocol, train.features,
                                                          test.features, ctx.device),
                       meta, (train.labels, test.labels))


register_row_kind("ckpt", ckpt_row, "ckpt", "a geossl pretraining checkpoint (own SSL, or "
                  "foundation weights + continued SSL), frozen", load_ckpt)
register_row_kind("weights", weights_row, "weights", "named foundation weights "
                  "(torchgeo:Enum.MEMBER, timm:model.tag), frozen", load_weights)
register_row_kind("random", random_row, "backbone", "the architecture with random weights, "
                  "frozen", load_random)
register_row_kind("band-means", band_means_row, None, "the mean of every band over the chip",
                  load_band_means)
register_row_kind("scratch", scratch_row, "backbone", "the architecture trained from random "
                  "weights on the labels of each draw only", load_random)
register_row_kind("product", product_row, "product", "an embedding product's vectors per chip "
                  "(GeoParquet, zarr cube, GSE/Tessera GeoTIFF), frozen", load_product)
