"""Configuration of :func:`geossl.bench.train.bench_train`: the flags of ``geossl bench train``.

Each field of :class:`BenchConfig` is an option of the benchmark and a flag of ``geossl bench
train`` (``batch_size`` -> ``--batch-size``, a key of ``--config`` YAML files), with its default
and help declared once (:func:`geossl.core.options.option`). Light (no torch): the command line
imports it to build its parser.
"""

from __future__ import annotations

import dataclasses

from geossl.core.options import option
from geossl.runtime.machine import default_workers


@dataclasses.dataclass
class BenchConfig:
    """Options of ``geossl bench train``."""

    backbone: str = option("resnet18", "timm model name")
    bands: int = option(13, "input bands")
    size: int = option(64, "image size in pixels")
    batch_size: int = option(32, "batch size")
    steps: int = option(10, "timed steps per measurement")
    warmup: int = option(3, "untimed steps before timing")
    precision: str = option("auto", "auto (bf16-mixed on GPU, 32 on CPU), 32-true, bf16-mixed, "
                            "16-mixed")
    compile: bool = option(False, "torch.compile the encoders (geossl and ceiling)")
    channels_last: bool | None = option(None, "channels_last memory format (default: on a GPU)",
                                        flag_type=bool)
    device: str = option("auto", "auto, cpu, cuda, cuda:1")
    workers: int = option(factory=default_workers,
                          help="loader workers for the end-to-end measurement (default min(4, "
                          "available cores))")
    chips: str | None = option(None, "folder with a chip index (index.parquet) for the "
                               "end-to-end measurement (default: chips written to a temporary "
                               "folder)")
    num_chips: int | None = option(None, "chips to write when --chips is not given")
    only: list[str] | None = option(None, "subset of geossl-simclr, geossl-moco, "
                                    "torchgeo-simclr, torchgeo-moco, ceiling, loader, "
                                    "e2e-simclr, geossl-mae, torchgeo-mae")
    out: str | None = option(None, "folder for bench_train.json and bench_train.md")
    repeats: int = option(1, "measure the in-memory rows this many times, round-robin; keep "
                          "the best (use 2-3 on a shared machine)")
    mae_backbone: str = option("vit_tiny_patch16_224", "ViT of the geossl-mae / torchgeo-mae "
                               "rows (run at its native size)")
