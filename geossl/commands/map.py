r"""A self-contained HTML map (works offline): scene quick-look, cluster map, chips, search hits.

Examples:
    geossl map --scene major_tom/0U/0U_199R/S2A_MSIL2A_... --clusters cell_clusters.tif \\
        --embeddings cell.parquet --hits hits/ --out cell_map.html
    geossl map --hits hits/ --out hits.html

The quick-look and the cluster map are image overlays at their true position (warped to Web
Mercator), the chips and hits are footprints (hits coloured by score, with the chip's thumbnail
in a pop-up); a layer control switches them. Leaflet (BSD-2-Clause) is inlined: no internet.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

NAME = "map"
HELP = "offline HTML map of a scene, its cluster map, chips and search hits"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl map``."""
    parser.add_argument("--out", type=str, required=True, help="HTML file to write")
    parser.add_argument("--scene", type=str | None, default=None,
                        help="scene for the quick-look (GeoTIFF, per-band folder, SAFE)")
    parser.add_argument("--clusters", type=str | None, default=None,
                        help="cluster map GeoTIFF (geossl embed --clusters)")
    parser.add_argument("--embeddings", type=str | None, default=None,
                        help="embeddings whose chip footprints are drawn")
    parser.add_argument("--hits", type=str | None, default=None,
                        help="geossl search output folder(s), comma-separated")
    parser.add_argument("--title", type=str, default="geossl map",
                        help="title of the HTML page")


def run(cfg: Namespace) -> int:
    """Run ``geossl map``."""
    from geossl.embeddings.webmap import write_map

    hits = [h for h in (cfg.hits or "").split(",") if h.strip()]
    path = write_map(cfg.out, scene=cfg.scene, clusters=cfg.clusters,
                     embeddings=cfg.embeddings, hits=hits, title=cfg.title)
    print(f"wrote {path}")
    return 0
