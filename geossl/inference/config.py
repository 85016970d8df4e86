"""The configurations of ``geossl embed`` and ``geossl export``, one field per flag.

:class:`EmbedConfig` and :class:`ExportConfig` are kept apart from :mod:`geossl.inference.embed`
and :mod:`geossl.inference.export` so that building the commands' parsers imports no torch.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from geossl.core.errors import ConfigError
from geossl.core.options import empty_to_default, option, parse_names

if TYPE_CHECKING:
    from geossl.pretrained.checkpoint import EncoderSource


#: the window samplers of ``geossl embed`` (``torchgeo-random`` is refused: see EmbedConfig)
EMBED_SAMPLERS = ("grid", "torchgeo-grid")


@dataclasses.dataclass
class EmbedConfig:
    """What :func:`geossl.inference.embed.embed` needs: the one declaration of ``geossl embed``.

    Each field is a flag (``block_rows`` -> ``--block-rows``, a key of ``--config`` YAML
    files) with its default and help declared here; ``__post_init__`` normalises and checks
    the values. Python callers may pass an
    :class:`~geossl.pretrained.checkpoint.EncoderSource` as ``ckpt``; the last fields
    (``col_chunk``, ``cluster_sample``, ``resume``, ``progress``) are the library's only.
    """

    ckpt: str | os.PathLike[str] | EncoderSource = option(
        positional=True, flag_type=str,
        help="pretraining checkpoint, or named weights torchgeo:<Enum.MEMBER> / "
        "timm:<model>.<tag> (matched to --bands, default the weights' own bands)")
    scene: Any = option(positional=True, flag_type=str,
                        help="GeoTIFF, per-band folder or chip index")
    out: str | os.PathLike[str] = option(
        flag_type=str, help="zarr store to write (OUT.zarr: absent, empty or an earlier embed "
        "store with the same parameters; or s3://bucket/OUT.zarr)")
    preprocess: str = option("weights", "named weights: weights (their own normalisation) or "
                             "dataset")
    size: int = option(64, "window size (pixels)")
    stride: int | None = option(None, "window step (default: --size)")
    batch_size: int = option(64, "windows per forward pass")
    block_rows: int = option(8, "window rows per block (unit of memory and resume)")
    bands: list[str] | None = option(None, "comma-separated bands (default: the checkpoint's)",
                                     flag_type=str | None)
    sensor: str | list[str] | None = option(
        None, "sensor of the scene for a geo encoder (per-sensor stems; default its first) or "
        "a fusion encoder (default: all, stacked)", flag_type=str | None)
    clusters: int = option(0, "k of the cluster map (0: none)")
    cluster_map: str | os.PathLike[str] | None = option(
        None, "cluster map GeoTIFF (default OUT_clusters.tif)", flag_type=str | None)
    scene_id: str | None = option(None, "scene to embed when a chip index or STAC file holds "
                                  "several")
    accelerator: str = option("auto", "cpu, gpu or auto")
    bf16: bool = option(False, "bf16 autocast", bare=True)
    seed: int = option(0, "seed of the k-means sample and fit of the cluster map")
    format: str | list[str] = option(
        "zarr", "products, comma-separated: zarr (the cube at --out), geoparquet (OUT.parquet, "
        "one row per chip), cog (OUT.tif, one band per dimension); see docs/embeddings.md",
        flag_type=str)
    sampler: str = option(
        "grid", "where the windows come from: grid (geossl's reads of the scene) or "
        "torchgeo-grid (TorchGeo's grid sampler over the scene as a RasterDataset); the same "
        "cube either way. torchgeo-random is refused: a dense map needs every window once")
    workers: int = option(0, "worker processes (0: in the main process)")
    scheduler: str | None = option(None, lambda: _cluster_help("SCHEDULER_HELP"))
    scheduler_file: str | None = option(None, lambda: _cluster_help("SCHEDULER_FILE_HELP"))
    # the library's only
    col_chunk: int = option(256, "window columns read at once within a block", flag=False)
    cluster_sample: int = option(20000, "embeddings sampled to fit k-means", flag=False)
    resume: bool = option(True, "continue an interrupted run with the same parameters",
                          flag=False)
    progress: bool | None = option(None, "progress bar (default: when writing to a terminal)",
                                   flag=False)

    def __post_init__(self) -> None:
        """Normalise ``--bands`` and empty values (their default), check the window parameters.

        Raises:
            ConfigError: one line naming the flag.
        """
        from geossl.runtime.dask import check_scheduler_flags

        self.bands = parse_names(self.bands)
        empty_to_default(self, "preprocess", "format")
        if self.size < 1 or self.window_step() < 1 or self.block_rows < 1:
            raise ConfigError("--size, --stride and block rows must be >= 1")
        if self.clusters < 0:
            raise ConfigError(f"--clusters must be >= 0 (0: no cluster map), got "
                              f"{self.clusters}")
        if self.sampler == "torchgeo-random":
            raise ConfigError("--sampler torchgeo-random: an embedding map needs every window "
                              "of the scene once, and random windows leave holes and overlaps; "
                              "use grid or torchgeo-grid (random windows are for training)")
        if self.sampler not in EMBED_SAMPLERS:
            raise ConfigError(f"--sampler {self.sampler!r}: choose one of "
                              f"{', '.join(EMBED_SAMPLERS)}")
        check_scheduler_flags(self.scheduler, self.scheduler_file)

    def window_step(self) -> int:
        """The step between windows: ``stride``, else ``size`` (windows side by side)."""
        return self.stride or self.size

    def scheduler_address(self) -> str | None:
        """The address of ``--scheduler`` or ``--scheduler-file`` (None: neither).

        Raises:
            ConfigError: a scheduler file that is missing or damaged.
        """
        from geossl.runtime.dask import scheduler_of

        return scheduler_of(self.scheduler, self.scheduler_file)


def _cluster_help(name: str) -> str:
    """A help text owned by :mod:`geossl.runtime.dask` (``SCHEDULER_HELP``, ...)."""
    import geossl.runtime.dask

    return str(getattr(geossl.runtime.dask, name))


#: ``geossl export --format``: a TorchGeo checkpoint or a bare timm state dict
EXPORT_FORMATS = ("torchgeo", "timm")
#: ``geossl export --task``: the TorchGeo task whose weight loading the checkpoint is laid out for
EXPORT_TASKS = ("classification", "segmentation")


@dataclasses.dataclass
class ExportConfig:
    """The one declaration of ``geossl export``.

    Each field is a flag (``keep_adapter`` -> ``--keep-adapter``) with its default and help;
    ``__post_init__`` checks the choices.
    """

    ckpt: str = option(positional=True,
                       help="pretraining checkpoint, or named weights: torchgeo:<Enum.MEMBER>, "
                       "timm:<model>.<tag> (see docs/cli.md)")
    out: str = option(help="file to write (timm: its stem gets a -<sha256[:8]> suffix)")
    format: str = option("torchgeo", "torchgeo or timm")
    task: str = option(
        "classification", "torchgeo format: the TorchGeo task the checkpoint is laid out for. "
        "classification (ClassificationTask; a ResNet's also loads into "
        "SemanticSegmentationTask) or segmentation (a ViT for SemanticSegmentationTask("
        "model='dpt', backbone='tu-<name>'), which the classification task cannot read; see "
        "docs/export.md)")
    keep_adapter: bool = option(False, "export a non-linear band adapter beside the backbone",
                                bare=True)
    sensor: str | None = option(None, "for per-sensor stems (geo pairing): the sensor to export")
    bands: list[str] | None = option(
        None, "named weights: the data's band names, comma-separated, matched to the weights' "
        "bands (default: the weights' own bands)", flag_type=str | None)
    preprocess: str = option("weights", "named weights: weights (their own normalisation) or "
                             "dataset")

    def __post_init__(self) -> None:
        """Normalise ``--bands`` and check ``--format`` / ``--task``.

        Raises:
            ConfigError: one line naming the flag.
        """
        self.bands = parse_names(self.bands)
        check_export_choices(self.format, self.task)


def check_export_choices(format: str, task: str) -> None:
    """Check ``--format`` and ``--task`` of ``geossl export`` (before anything is read).

    Raises:
        ConfigError: an unknown format or task, or ``--task segmentation`` with ``--format
            timm`` (a bare timm state dict has no TorchGeo layout).
    """
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {format!r} (--format); choose "
                          f"{' or '.join(EXPORT_FORMATS)}")
    if task not in EXPORT_TASKS:
        raise ConfigError(f"unknown export task {task!r} (--task); choose "
                          f"{' or '.join(EXPORT_TASKS)}")
    if task == "segmentation" and format != "torchgeo":
        raise ConfigError("--task segmentation lays out a TorchGeo checkpoint; it does not apply "
                          "to --format timm (a bare timm state dict for timm.create_model)")
