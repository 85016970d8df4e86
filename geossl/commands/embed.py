r"""Slide an encoder over a whole scene: a georeferenced embedding cube (zarr) and a cluster map.

Examples:
    geossl embed RUN/checkpoints/last.ckpt S2_SCENE.tif --out scene.zarr --size 64 --stride 32
    geossl embed RUN/checkpoints/last.ckpt major_tom/0U/0U_199R/S2A_MSIL2A_... \\
        --out cell.zarr --clusters 8 --cluster-map cell_clusters.tif
    geossl embed RUN/checkpoints/last.ckpt CHIPS/index.parquet --out chips.zarr
    geossl embed RUN/checkpoints/last.ckpt S2_SCENE_FOLDER --sampler torchgeo-grid --out s.zarr
    geossl embed GEO_RUN/checkpoints/last.ckpt S2_SCENE.tif --sensor s2 --out s2.zarr
    geossl embed RUN/checkpoints/last.ckpt https://example.com/scene_cog.tif --out s.zarr
    geossl embed RUN/checkpoints/last.ckpt item.json --bands B02,B03,B04,B08 --out s.zarr
    geossl embed /shared/last.ckpt /shared/scene.tif --out /shared/s.zarr \\
        --scheduler tcp://10.0.0.5:8786

SCENE is a GeoTIFF, a folder with one file per band, a chip index, a raster URL (https://,
s3://; read by HTTP range requests) or a STAC Item / ItemCollection JSON (--scene-id picks the
item). Blocks of window rows are Dask tasks that write their regions of the cube in parallel
(--workers local processes, or the cluster at --scheduler). Rerunning the same command
continues an interrupted run.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common
from geossl.commands._common import get as _get

NAME = "embed"
HELP = ("embedding cube (zarr), GeoParquet / COG products and k-means cluster map (GeoTIFF) "
        "of a whole scene")


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl embed``."""
    parser.add_argument("ckpt", type=str, help="pretraining checkpoint, or named weights "
                        "torchgeo:<Enum.MEMBER> / timm:<model>.<tag> (matched to --bands, "
                        "default the weights' own bands)")
    parser.add_argument("--preprocess", type=str, default="weights",
                        help="named weights: weights (their own normalisation) or dataset")
    parser.add_argument("scene", type=str, help="GeoTIFF, per-band folder or chip index")
    parser.add_argument("--out", type=str, required=True,
                        help="zarr store to write (OUT.zarr: absent, empty or an earlier embed "
                             "store with the same parameters; or s3://bucket/OUT.zarr)")
    parser.add_argument("--size", type=int, default=64, help="window size (pixels)")
    parser.add_argument("--stride", type=int | None, default=None,
                        help="window step (default: --size)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="windows per forward pass")
    parser.add_argument("--block-rows", type=int, default=8,
                        help="window rows per block (unit of memory and resume)")
    parser.add_argument("--bands", type=str | None, default=None,
                        help="comma-separated bands (default: the checkpoint's)")
    parser.add_argument("--sensor", type=str | None, default=None,
                        help="sensor of the scene for a geo encoder (per-sensor stems; default "
                             "its first) or a fusion encoder (default: all, stacked)")
    parser.add_argument("--clusters", type=int, default=0, help="k of the cluster map (0: none)")
    parser.add_argument("--cluster-map", type=str | None, default=None,
                        help="cluster map GeoTIFF (default OUT_clusters.tif)")
    parser.add_argument("--scene-id", type=str | None, default=None,
                        help="scene to embed when a chip index or STAC file holds several")
    parser.add_argument("--accelerator", type=str, default="auto", help="cpu, gpu or auto")
    parser.add_argument("--bf16", default=False, help="bf16 autocast", **_common.FLAG)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the k-means sample and fit of the cluster map")
    parser.add_argument("--format", type=str, default="zarr",
                        help="products, comma-separated: zarr (the cube at --out), geoparquet "
                             "(OUT.parquet, one row per chip), cog (OUT.tif, one band per "
                             "dimension); see docs/embeddings.md")
    parser.add_argument("--sampler", type=str, default="grid",
                        help="where the windows come from: grid (geossl's reads of the scene) "
                             "or torchgeo-grid (TorchGeo's grid sampler over the scene as a "
                             "RasterDataset); the same cube either way. torchgeo-random is "
                             "refused: a dense map needs every window once")
    _common.add_workers(parser)
    _common.add_scheduler(parser)
    _common.add_scheduler_file(parser)


def run(cfg: Namespace) -> int:
    """Run ``geossl embed``."""
    from geossl.embed import embed

    bands = _get(cfg, "bands")
    res = embed(cfg.ckpt, cfg.scene, cfg.out, size=cfg.size, stride=cfg.stride,
                batch_size=_get(cfg, "batch_size"), block_rows=_get(cfg, "block_rows"),
                bands=bands.split(",") if bands else None, clusters=cfg.clusters,
                cluster_map=_get(cfg, "cluster_map"), seed=cfg.seed,
                device=_get(cfg, "accelerator"), bf16=bool(cfg.bf16),
                scene_id=_get(cfg, "scene_id"), sensor=_get(cfg, "sensor"),
                workers=cfg.workers, scheduler=_common.scheduler(cfg),
                preprocess=_get(cfg, "preprocess") or "weights",
                formats=_get(cfg, "format") or "zarr", sampler=_get(cfg, "sampler") or "grid")
    cube = "wrote" if "zarr" in res.products or not res.products else "computed (not kept)"
    print(f"{cube} {res.cube}: embedding {res.shape} in {res.crs} "
          f"({res.blocks_done} blocks written, {res.blocks_skipped} already done)")
    if res.cluster_map is not None:
        print(f"wrote {res.cluster_map}")
    for fmt, path in res.products.items():
        if fmt == "geoparquet":
            left = (f"; {res.rows_left_out} windows without a valid pixel left out"
                    if res.rows_left_out else "")
            print(f"wrote {path} ({fmt}: {res.product_rows} rows{left})")
        elif fmt != "zarr":
            print(f"wrote {path} ({fmt})")
    return 0
