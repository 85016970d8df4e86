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

NAME = "embed"
HELP = ("embedding cube (zarr), GeoParquet / COG products and k-means cluster map (GeoTIFF) "
        "of a whole scene")


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl embed``: one per field of :class:`EmbedConfig`."""
    from geossl.inference.config import EmbedConfig  # light: no torch while the parser is built

    _common.add_dataclass_flags(parser, EmbedConfig)


def run(cfg: Namespace) -> int:
    """Run ``geossl embed``."""
    from geossl.core.options import config_from
    from geossl.inference.embed import EmbedConfig, embed

    res = embed(config_from(EmbedConfig, cfg))
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
