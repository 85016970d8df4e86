"""Run geossl end to end on the built-in real sample (a Sentinel-2 L1C crop shipped in geossl).

Examples:
    pip install geossl
    geossl demo                      # writes ./geossl-demo (about 40 s on 2 idle cores)
    geossl demo --steps 300          # pretrain longer
    geossl demo --method moco --out /tmp/demo

Stages (:data:`geossl.demo.run.STAGES`), each reading and extending a shared
:class:`~geossl.demo.run.DemoContext`:

1. ``locate``: find the sample scene (13 bands, UTM, 10/20/60 m);
2. ``tile``: cut it into chips with a GeoParquet chip index, and pack them for fast reading;
3. ``quicklook``: RGB composite with the chip footprints (``quicklook.png``);
4. ``labels``: **spectral-index proxy labels, not ground truth** (:mod:`geossl.demo.proxy_labels`:
   water by NDWI, dense/sparse vegetation by NDVI, bare/built by NDBI/brightness; a chip takes its
   majority class when it covers ``--purity`` of it), and per-chip band means
   (``proxy_labels.csv``);
5. ``split``: overlap-aware spatial-block train/test split (:mod:`geossl.splits`, blocks of
   4 x 4 chips, stratified by proxy class) with its leakage report (``splits.json``);
6. ``pretrain``: brief self-supervised pretraining on the training chips, through
   :func:`geossl.training.trainer.pretrain` (what ``geossl pretrain`` runs; SimCLR, resnet18,
   ``aug``
   pairing on all 13 bands, 32 px augmented views of the 64 px chips by default; a rerun
   starts it afresh): ``pretrain/checkpoints/last.ckpt``, its log and
   ``pretrain/loss_curve.png``;
7. ``features``: frozen features of every chip from the pretrained encoder and from the same
   encoder randomly initialised (:mod:`geossl.eval.features`);
8. ``evaluate``: linear probe, kNN and k-means (NMI/ARI) against the proxy labels for the SSL
   encoder, the random encoder and a hand-crafted baseline (per-chip band means, same probes:
   logistic regression etc.); ``table.md`` and ``results.json``, the table is printed;
9. ``pictures``: t-SNE of the SSL embeddings coloured by proxy class (``tsne.png``), query chips
   with their 10 nearest chips (``neighbours.png``);
10. ``map``: embedding map of the whole scene (:func:`geossl.inference.embed.embed`, zarr) and its
    label-free k-means cluster map (GeoTIFF), drawn next to the RGB quick-look
    (``cluster_map.png``).

Every number is one run (one split, one seed) of a deliberately short pretraining on one small
scene: the table shows that the pipeline works, not which encoder is better.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

NAME = "demo"
HELP = ("end to end on the built-in Sentinel-2 sample: tile, pretrain briefly, evaluate against "
        "spectral-index proxy labels, map clusters")


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl demo``."""
    _common.add_out(parser, default="geossl-demo", help="output folder")
    parser.add_argument("--size", type=int, default=64, help="chip size in pixels")
    parser.add_argument("--scene", type=str | None, default=None,
                        help="use this scene instead of the built-in sample")
    parser.add_argument("--steps", type=int, default=60,
                        help="pretraining steps (more: better encoder, longer demo)")
    parser.add_argument("--batch-size", type=int, default=64, help="pretraining batch size")
    parser.add_argument("--crop-size", type=int | None, default=32,
                        help="side of the augmented pretraining views in pixels (0 or null: "
                             "the chip size; smaller is faster)")
    parser.add_argument("--method", type=str, default="simclr",
                        help="simclr, moco, byol, dino, barlow or vicreg")
    parser.add_argument("--backbone", type=str, default="resnet18", help="timm backbone")
    parser.add_argument("--purity", type=float, default=0.6,
                        help="fraction of a chip its proxy class must cover to label the chip")
    parser.add_argument("--clusters", type=int, default=6, help="k of the cluster map")
    parser.add_argument("--map-stride", type=int | None, default=None,
                        help="stride of the embedding map in pixels (default: --size; smaller "
                             "is finer and slower)")
    _common.add_seed(parser)
    _common.add_workers(parser)


def run(cfg: Namespace) -> int:
    """Run ``geossl demo``."""
    from geossl.demo.run import DemoContext, demo

    demo(DemoContext(out=Path(cfg.out), size=cfg.size, workers=cfg.workers, seed=cfg.seed,
                     steps=cfg.steps, batch_size=cfg.batch_size, crop_size=cfg.crop_size or None,
                     method=cfg.method, backbone=cfg.backbone, purity=cfg.purity,
                     clusters=cfg.clusters, map_stride=cfg.map_stride,
                     scene=Path(cfg.scene) if cfg.scene else None))
    return 0
