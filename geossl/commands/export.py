"""Export a pretrained encoder for TorchGeo (and timm).

Examples:
    geossl export RUN/checkpoints/last.ckpt --out resnet50_s2_moco.ckpt
        # then: ClassificationTask(model="resnet50", weights="resnet50_s2_moco.ckpt",
        #                          in_channels=13, num_classes=10)
    geossl export RUN/checkpoints/last.ckpt --out weights/resnet50_s2_moco.pth --format timm
        # writes weights/resnet50_s2_moco-<sha256[:8]>.pth and .json (for a WeightsEnum)
    geossl export MAE_RUN/checkpoints/last.ckpt --out vit_seg.ckpt --task segmentation
        # then: SemanticSegmentationTask(model="dpt", backbone="tu-vit_small_patch16_224",
        #                                weights="vit_seg.ckpt", in_channels=13, num_classes=5)

A linear band adapter is folded into the first convolution; a non-linear one is refused unless
--keep-adapter, which exports it beside the backbone. See docs/export.md.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

NAME = "export"
HELP = "export an encoder as TorchGeo/timm weights with a metadata sidecar"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl export``: one per field of :class:`ExportConfig`."""
    from geossl.inference.config import ExportConfig  # light: no torch while the parser is built

    _common.add_dataclass_flags(parser, ExportConfig)


def run(cfg: Namespace) -> int:
    """Run ``geossl export``."""
    from geossl.core.options import config_from
    from geossl.inference.config import ExportConfig
    from geossl.inference.export import export

    conf = config_from(ExportConfig, cfg)
    res = export(conf.ckpt, conf.out, format=conf.format, task=conf.task,
                 keep_adapter=conf.keep_adapter, sensor=conf.sensor, bands=conf.bands,
                 preprocess=conf.preprocess)
    print(f"wrote {res.weights} ({res.model}, {res.in_chans} input channels, "
          f"{res.num_tensors} tensors, sha256 {res.sha256[:8]})")
    print(f"wrote {res.metadata}")
    if res.adapter is not None:
        print(f"wrote {res.adapter}")
    return 0
