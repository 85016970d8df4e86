"""Export a pretrained encoder for TorchGeo (and timm).

Examples:
    geossl export RUN/checkpoints/last.ckpt --out resnet50_s2_moco.ckpt
        # then: ClassificationTask(model="resnet50", weights="resnet50_s2_moco.ckpt",
        #                          in_channels=13, num_classes=10)
    geossl export RUN/checkpoints/last.ckpt --out weights/resnet50_s2_moco.pth --format timm
        # writes weights/resnet50_s2_moco-<sha256[:8]>.pth and .json (for a WeightsEnum)

A linear band adapter is folded into the first convolution; a non-linear one is refused unless
--keep-adapter, which exports it beside the backbone. See docs/export.md.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

NAME = "export"
HELP = "export an encoder as TorchGeo/timm weights with a metadata sidecar"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl export``."""
    parser.add_argument("ckpt", type=str, help="pretraining checkpoint, or named weights: "
                        "torchgeo:<Enum.MEMBER>, timm:<model>.<tag> (see docs/cli.md)")
    parser.add_argument("--out", type=str, required=True,
                        help="file to write (timm: its stem gets a -<sha256[:8]> suffix)")
    parser.add_argument("--format", type=str, default="torchgeo", help="torchgeo or timm")
    parser.add_argument("--keep-adapter", default=False,
                        help="export a non-linear band adapter beside the backbone",
                        **_common.FLAG)
    parser.add_argument("--sensor", type=str | None, default=None,
                        help="for per-sensor stems (geo pairing): the sensor to export")
    parser.add_argument("--bands", type=str | None, default=None,
                        help="named weights: the data's band names, comma-separated, matched "
                        "to the weights' bands (default: the weights' own bands)")
    parser.add_argument("--preprocess", type=str, default="weights",
                        help="named weights: weights (their own normalisation) or dataset")


def run(cfg: Namespace) -> int:
    """Run ``geossl export``."""
    from geossl.inference.export import export

    keep = cfg.get("keep_adapter", cfg.get("keep-adapter", False))
    res = export(cfg.ckpt, cfg.out, format=cfg.format, keep_adapter=bool(keep),
                 sensor=cfg.get("sensor"),
                 bands=_common.band_list(cfg.get("bands")), preprocess=cfg.get("preprocess",
                                                                              "weights"))
    print(f"wrote {res.weights} ({res.model}, {res.in_chans} input channels, "
          f"{res.num_tensors} tensors, sha256 {res.sha256[:8]})")
    print(f"wrote {res.metadata}")
    if res.adapter is not None:
        print(f"wrote {res.adapter}")
    return 0
