r"""Find places like this: the chips most similar to a query, by cosine similarity.

Examples:
    geossl search cell.parquet --chip S2A_MSIL2A_..._0_64 --k 10 --out hits/
    geossl search cell.zarr --point 15.52,3.41 --out hits/
    geossl search cell.parquet --polygon field.geojson --not CHIP_A,CHIP_B --out hits/
    geossl search gse_tiles/ --vector query.npy --bbox 15.4,3.3,15.6,3.5 --out hits/
    geossl search world.parquet --chip X --dates 2021-01-01,2021-12-31 --method ann --out hits/

EMBEDDINGS is a zarr cube or GeoParquet written by ``geossl embed``, another product's
GeoParquet (TorchGeo's EarthEmbeddings / MajorTOMEmbeddings layouts) or a GSE/Tessera-style
GeoTIFF (file or folder). Writes OUT/hits.parquet (GeoParquet), OUT/hits.geojson,
OUT/mosaic.png (the hit chips with their scores) and OUT/search.json. From 50,000 chips
(or with --method ann) the search goes through a faiss HNSW index saved as
EMBEDDINGS.faiss, reused while the embeddings are unchanged (content hash).
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from geossl.commands._common import get as _get
from geossl.core.errors import ConfigError

NAME = "search"
HELP = "top-k chips most similar to a chip, point, polygon or vector (exact or ANN)"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl search``."""
    parser.add_argument("embeddings", type=str,
                        help="zarr cube, GeoParquet (file/folder) or GeoTIFF embedding product")
    parser.add_argument("--out", type=str, required=True, help="output folder")
    parser.add_argument("--chip", type=str | None, default=None,
                        help="query chip id(s), comma-separated (averaged)")
    parser.add_argument("--point", type=str | None, default=None,
                        help="query point lon,lat (the chip whose footprint holds it)")
    parser.add_argument("--polygon", type=str | None, default=None,
                        help="GeoJSON file or text: the mean of the chips it covers")
    parser.add_argument("--vector", type=str | None, default=None,
                        help="query vector: comma-separated numbers or a .npy file")
    parser.add_argument("--not", type=str | None, default=None,
                        help="negative examples: chip ids to move away from, comma-separated")
    parser.add_argument("--beta", type=float, default=0.5, help="weight of the negatives")
    parser.add_argument("--k", type=int, default=10, help="hits wanted")
    parser.add_argument("--bbox", type=str | None, default=None,
                        help="keep chips centred in west,south,east,north (degrees)")
    parser.add_argument("--dates", type=str | None, default=None,
                        help="keep chips with a timestamp in START,END (either may be empty)")
    parser.add_argument("--method", type=str, default="auto", help="auto, exact or ann")
    parser.add_argument("--index", type=str | None, default=None,
                        help="ANN index file (default EMBEDDINGS.faiss)")
    parser.add_argument("--column", type=str, default="embedding",
                        help="vector column of a GeoParquet product")


def _floats(text: str, flag: str, n: int) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise ConfigError(f"{flag} wants {n} comma-separated numbers (got {text!r})")
    return values


def run(cfg: Namespace) -> int:
    """Run ``geossl search``."""
    from geossl.embeddings.search import Query, parse_vector, run_search

    chip, point, neg = _get(cfg, "chip"), _get(cfg, "point"), _get(cfg, "not")
    dates = _get(cfg, "dates")
    date_range = None
    if dates:
        if "," not in dates:
            raise ConfigError("--dates wants START,END (either may be empty)")
        a, b = dates.split(",", 1)
        date_range = (a.strip() or None, b.strip() or None)
    query = Query(
        chip_ids=[c.strip() for c in chip.split(",") if c.strip()] if chip else (),
        points=[tuple(_floats(point, "--point", 2))] if point else (),  # type: ignore[list-item]
        polygon=_get(cfg, "polygon"),
        vector=parse_vector(cfg.vector) if _get(cfg, "vector") else None,
        negatives=[c.strip() for c in neg.split(",") if c.strip()] if neg else (),
        beta=cfg.beta)
    bbox = _floats(cfg.bbox, "--bbox", 4) if _get(cfg, "bbox") else None
    res, paths = run_search(cfg.embeddings, query, cfg.out, k=cfg.k, bbox=bbox,
                            dates=date_range, method=cfg.method, index_file=_get(cfg, "index"),
                            column=cfg.column)
    for _, r in res.hits.iterrows():
        print(f"{int(r['rank']):3d}  {r['score']:.6f}  {r['chip_id']}")
    how = f" (index {res.index})" if res.index else ""
    print(f"{res.method} search{how}; wrote {', '.join(str(p) for p in paths.values())}")
    return 0
