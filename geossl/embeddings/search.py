"""Find places like this: top-k chips by cosine similarity, exact or through a saved ANN index.

A query is a chip id, a lon/lat point (the chip whose footprint holds it), a GeoJSON polygon
(the mean of the chips whose footprint meets it) or a vector; several positives are averaged
and negative examples ("like these, not like those") are subtracted (Rocchio:
``q = mean(positives) - beta * mean(negatives)`` on unit vectors). Optional filters: a lon/lat
bounding box (chip centres) and a date range (chip timestamps).

Exact search is one matrix product on numpy (the baseline, and used below
:data:`ANN_THRESHOLD` chips or with a filter that keeps few chips). Above it an HNSW index of
faiss (``IndexHNSWFlat``, inner product on unit vectors) is built once, saved beside the
embeddings (``<embeddings>.faiss`` + ``.faiss.json`` holding the content hash of the vectors
and ids), reused while the embeddings are unchanged and rebuilt when they change. faiss-cpu
was chosen over usearch by measurement on this machine (200,000 x 128 vectors, HNSW M=32 /
connectivity 16, 2 threads): build 54 s vs 181 s, p50 0.10 ms vs 0.21 ms, p99 0.21 ms vs
28 ms at recall@10 0.985 vs 0.982; see ``geossl bench search`` for the 1M run.
A faiss index file is plain data (no pickle): reading one runs no code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import atomic_path, atomic_write_text
from geossl.embeddings.records import EmbeddingTable

PathLike = str | os.PathLike[str]
#: chips from which search goes through the ANN index (``index="auto"``)
ANN_THRESHOLD = 50_000
#: HNSW parameters (links per node, build and search beam widths); efSearch 256 because
#: `geossl bench search` on 1,000,000 x 128 measured recall@10 0.897 at 64 and 0.948 at 128
#: (p50 0.25 / 0.41 ms): the beam is widened where the latency budget (5 ms) allows
HNSW_M = 32
EF_CONSTRUCTION = 64
EF_SEARCH = 256


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


# --------------------------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Query:
    """What to look for.

    Attributes:
        chip_ids: positive chips by id.
        points: positive ``(lon, lat)`` points (the chip holding each).
        polygon: GeoJSON (file path or text) whose chips are averaged.
        vector: a query vector.
        negatives: chip ids to move away from.
        beta: weight of the negatives.
    """

    chip_ids: Sequence[str] = ()
    points: Sequence[tuple[float, float]] = ()
    polygon: str | None = None
    vector: Sequence[float] | np.ndarray | None = None
    negatives: Sequence[str] = ()
    beta: float = 0.5

    def describe(self) -> dict[str, Any]:
        """The query as JSON-ready values."""
        return {"chip_ids": list(self.chip_ids), "points": [list(p) for p in self.points],
                "polygon": self.polygon if self.polygon is None or len(self.polygon) < 300
                else self.polygon[:300] + "...",
                "vector": None if self.vector is None else len(self.vector),
                "negatives": list(self.negatives), "beta": self.beta}


def read_polygon(text: str) -> Any:
    """A GeoJSON file or string (geometry, Feature or FeatureCollection) as one EPSG:4326 shape.

    Raises:
        DataError: unreadable or without a polygon.
    """
    import shapely
    from shapely.geometry import shape

    p = Path(text)
    try:
        is_file = p.is_file()
    except OSError:
        is_file = False
    where = p if is_file else None
    try:
        data = json.loads(p.read_text() if is_file else text)
        if data.get("type") == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in data["features"]]
        elif data.get("type") == "Feature":
            geoms = [shape(data["geometry"])]
        else:
            geoms = [shape(data)]
        geom = shapely.union_all(geoms)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DataError(f"--polygon is not GeoJSON ({type(err).__name__}: {err})",
                        where) from err
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise DataError(f"--polygon holds no polygon (got {geom.geom_type})", where)
    return geom


def parse_vector(text: str) -> np.ndarray:
    """A vector from ``"0.1,0.2,..."`` or a ``.npy`` file (read without pickle)."""
    p = Path(text)
    try:
        if text.endswith(".npy") and p.is_file():
            return np.asarray(np.load(p, allow_pickle=False), dtype=np.float32).reshape(-1)
        return np.asarray([float(v) for v in text.split(",") if v.strip()], dtype=np.float32)
    except ValueError as err:
        raise DataError(f"--vector is not a list of numbers ({err})",
                        p if p.suffix == ".npy" else None) from err


def _rows_of_ids(table: EmbeddingTable, ids: Sequence[str], flag: str) -> list[int]:
    by_id = {cid: i for i, cid in enumerate(table.ids)}
    rows = []
    for cid in ids:
        if str(cid) not in by_id:
            raise DataError(f"{flag}: no chip {cid!r} in the embeddings", table.source or None)
        rows.append(by_id[str(cid)])
    return rows


def resolve_query(table: EmbeddingTable, query: Query) -> tuple[np.ndarray, list[int]]:
    """The unit query vector and the rows of the chips it was made from.

    Raises:
        DataError: an unknown chip id, a point outside every footprint, a polygon with no
            chips, a vector of the wrong length.
        ConfigError: no query at all.
    """
    from shapely import points as make_points

    pos_rows: list[int] = []
    parts: list[np.ndarray] = []
    src = table.source or None
    if query.chip_ids:
        pos_rows += _rows_of_ids(table, query.chip_ids, "--chip")
    if query.points:
        for lon, lat in query.points:
            pt = make_points(lon, lat)
            hit = np.flatnonzero(table.frame.geometry.contains(pt).to_numpy()
                                 | table.frame.geometry.touches(pt).to_numpy())
            if len(hit) == 0:
                raise DataError(f"--point {lon},{lat} lies outside every chip footprint "
                                f"(the chips span lon {table.frame.total_bounds[0]:.4f}.."
                                f"{table.frame.total_bounds[2]:.4f}, lat "
                                f"{table.frame.total_bounds[1]:.4f}.."
                                f"{table.frame.total_bounds[3]:.4f})", src)
            # the chip whose centre is nearest the point (overlapping windows)
            d = (table.frame["centre_lon"].to_numpy()[hit] - lon) ** 2 + \
                (table.frame["centre_lat"].to_numpy()[hit] - lat) ** 2
            pos_rows.append(int(hit[int(np.argmin(d))]))
    if pos_rows:
        parts.append(normalise(table.vectors[pos_rows]).mean(axis=0))
    if query.polygon is not None:
        geom = read_polygon(query.polygon)
        hit = np.flatnonzero(table.frame.geometry.intersects(geom).to_numpy())
        if len(hit) == 0:
            raise DataError("--polygon covers no chip of the embeddings", src)
        parts.append(normalise(table.vectors[hit]).mean(axis=0))
        pos_rows += [int(h) for h in hit]
    if query.vector is not None:
        v = np.asarray(query.vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != table.dim:
            raise DataError(f"--vector has {v.shape[0]} values but the embeddings have "
                            f"{table.dim} dimensions", src)
        parts.append(normalise(v))
    if not parts:
        raise ConfigError("give a query: --chip, --point, --polygon or --vector")
    q = normalise(np.mean(parts, axis=0))
    if query.negatives:
        neg = normalise(table.vectors[_rows_of_ids(table, query.negatives, "--not")]).mean(0)
        q = normalise(q - query.beta * neg)
    return q, pos_rows


# --------------------------------------------------------------------------------------------
# filters
# --------------------------------------------------------------------------------------------
def filter_mask(table: EmbeddingTable, bbox: Sequence[float] | None = None,
                dates: tuple[str | None, str | None] | None = None) -> np.ndarray | None:
    """Rows kept by a lon/lat ``bbox`` (west, south, east, north) and a date range.

    Raises:
        ConfigError: a malformed bbox or date.
    """
    keep = None
    if bbox is not None:
        if len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
            raise ConfigError("--bbox wants west,south,east,north (west <= east, south <= north)")
        lon, lat = table.frame["centre_lon"].to_numpy(), table.frame["centre_lat"].to_numpy()
        keep = (lon >= bbox[0]) & (lon <= bbox[2]) & (lat >= bbox[1]) & (lat <= bbox[3])
    if dates is not None and any(d is not None for d in dates):
        ts = pd.to_datetime(table.frame["timestamp"], utc=True)
        m = np.ones(len(table), dtype=bool)
        try:
            if dates[0]:
                m &= (ts >= pd.Timestamp(dates[0], tz="UTC")).to_numpy()
            if dates[1]:
                m &= (ts <= pd.Timestamp(dates[1], tz="UTC")).to_numpy()
        except ValueError as err:
            raise ConfigError(f"--dates: not a date ({err})") from err
        keep = m if keep is None else keep & m
    return keep


# --------------------------------------------------------------------------------------------
# exact and ANN search
# --------------------------------------------------------------------------------------------
def exact_topk(xn: np.ndarray, q: np.ndarray, k: int,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of unit vectors ``xn`` by inner product with unit ``q`` (numpy).

    Returns:
        ``(rows, scores)``, best first.
    """
    cand = xn if rows is None else xn[rows]
    scores = cand @ q
    k = min(k, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    picked = top if rows is None else rows[top]
    return picked.astype(np.int64), scores[top].astype(np.float32)


def build_hnsw(xn: np.ndarray, m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION) -> Any:
    """A faiss HNSW index (inner product) of unit vectors."""
    import faiss

    index = faiss.IndexHNSWFlat(int(xn.shape[1]), m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(np.ascontiguousarray(xn, dtype=np.float32))
    return index


def ann_topk(index: Any, q: np.ndarray, k: int,
             ef_search: int = EF_SEARCH) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of a faiss index for one unit query."""
    index.hnsw.efSearch = max(ef_search, k)
    scores, rows = index.search(np.ascontiguousarray(q[None], dtype=np.float32), k)
    ok = rows[0] >= 0
    return rows[0][ok].astype(np.int64), scores[0][ok].astype(np.float32)


def index_path(embeddings: PathLike) -> Path:
    """Where the ANN index of some embeddings is saved: ``<embeddings>.faiss``."""
    p = Path(embeddings)
    return p.with_name(p.name.rstrip("/") + ".faiss")


def load_or_build_index(table: EmbeddingTable, path: PathLike | None,
                        log: Any = print) -> tuple[Any, str]:
    """The saved index when its content hash matches the table, else a new one (saved).

    Returns:
        ``(index, how)`` with ``how`` one of ``reused``, ``built``, ``rebuilt``.
    """
    import faiss

    key = table.content_hash()
    meta = {"hash": key, "n": len(table), "dim": table.dim, "kind": "faiss.IndexHNSWFlat",
            "m": HNSW_M, "ef_construction": EF_CONSTRUCTION}
    how = "built"
    if path is not None:
        p = Path(path)
        side = p.with_name(p.name + ".json")
        if p.is_file() and side.is_file():
            try:
                old = json.loads(side.read_text())
            except ValueError:
                old = {}
            if old == meta:
                return faiss.read_index(str(p)), "reused"
            how = "rebuilt"
    log(f"geossl search: building the HNSW index of {len(table)} chips ...")
    index = build_hnsw(normalise(table.vectors))
    if path is not None:
        p = Path(path)
        try:
            with atomic_path(p) as tmp:
                faiss.write_index(index, str(tmp))
            atomic_write_text(p.with_name(p.name + ".json"), json.dumps(meta, indent=1))
        except (OSError, RuntimeError) as err:  # faiss raises RuntimeError for I/O errors
            raise DataError(f"cannot save the ANN index here ({type(err).__name__}); give "
                            "--index PATH in a writable folder", p) from err
    return index, how


@dataclasses.dataclass
class SearchResult:
    """Hits of a search.

    Attributes:
        hits: GeoDataFrame of the hit chips (``rank``, ``score`` and the record columns).
        query: the unit query vector.
        query_rows: rows of the chips the query was made from.
        method: ``exact`` or ``ann``.
        index: ``reused``/``built``/``rebuilt`` for ANN, else ``None``.
    """

    hits: Any
    query: np.ndarray
    query_rows: list[int]
    method: str
    index: str | None = None


def search(table: EmbeddingTable, query: Query, k: int = 10, *,
           bbox: Sequence[float] | None = None,
           dates: tuple[str | None, str | None] | None = None,
           method: str = "auto", index_file: PathLike | None = None,
           log: Any = print) -> SearchResult:
    """Top-``k`` chips most similar to the query (cosine).

    Args:
        table: the embeddings.
        query: what to look for.
        k: hits wanted.
        bbox: keep chips whose centre lies in (west, south, east, north).
        dates: keep chips with a timestamp in [start, end] (either may be ``None``).
        method: ``exact``, ``ann`` or ``auto`` (ANN from :data:`ANN_THRESHOLD` chips).
        index_file: where the ANN index is saved and reused (``None``: not saved).
        log: progress messages.

    Raises:
        ConfigError: bad ``k``, ``method``, filter; a filter that keeps no chip.
        DataError: see :func:`resolve_query`.
    """
    if k < 1:
        raise ConfigError("--k must be >= 1")
    if method not in ("auto", "exact", "ann"):
        raise ConfigError(f"--method must be auto, exact or ann (got {method!r})")
    q, pos_rows = resolve_query(table, query)
    keep = filter_mask(table, bbox, dates)
    rows_kept = None if keep is None else np.flatnonzero(keep)
    if rows_kept is not None and len(rows_kept) == 0:
        raise ConfigError("the --bbox / --dates filter keeps no chip")
    use_ann = method == "ann" or (method == "auto" and len(table) >= ANN_THRESHOLD)
    how = None
    if use_ann:
        index, how = load_or_build_index(table, index_file, log)
        n_kept = len(table) if rows_kept is None else len(rows_kept)
        want = k if keep is None else min(len(table), k * max(4, len(table) // n_kept))
        rows, scores = ann_topk(index, q, want)
        if keep is not None:
            ok = keep[rows]
            rows, scores = rows[ok][:k], scores[ok][:k]
            if len(rows) < min(k, n_kept):  # the filter is too selective for ANN
                rows, scores = exact_topk(normalise(table.vectors), q, k, rows_kept)
                use_ann = False
    else:
        rows, scores = exact_topk(normalise(table.vectors), q, k, rows_kept)
    hits = table.frame.iloc[rows].reset_index(drop=True).copy()
    hits.insert(0, "rank", np.arange(1, len(rows) + 1))
    hits.insert(1, "score", np.clip(scores, -1.0, 1.0).astype(np.float64))
    hits["query"] = hits["chip_id"].isin([table.ids[r] for r in pos_rows])
    return SearchResult(hits, q, pos_rows, "ann" if use_ann else "exact", how)


def write_results(result: SearchResult, table: EmbeddingTable, out: PathLike,
                  query: Query | None = None, tile: int = 96) -> dict[str, Path]:
    """``hits.parquet`` (GeoParquet), ``hits.geojson``, ``mosaic.png`` and ``search.json``.

    Returns:
        the paths written, by name.
    """
    from geossl.embeddings.products import chip_picture
    from geossl.viz import plots

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    hits = result.hits
    paths = {"hits": out_dir / "hits.parquet", "geojson": out_dir / "hits.geojson",
             "mosaic": out_dir / "mosaic.png", "summary": out_dir / "search.json"}
    with atomic_path(paths["hits"]) as tmp:
        hits.to_parquet(tmp, index=False)
    geo = hits.drop(columns=["timestamp"]).assign(
        timestamp=hits["timestamp"].astype(str).replace("NaT", ""))
    atomic_write_text(paths["geojson"], geo.to_json(drop_id=True))
    pictures = [chip_picture(r) for _, r in hits.iterrows()]
    titles = [f"#{int(r['rank'])} {r['score']:.3f}\n{str(r['chip_id'])[-18:]}"
              for _, r in hits.iterrows()]
    plots.plot_search_mosaic(pictures, titles, paths["mosaic"], tile=tile)
    summary = {"query": query.describe() if query is not None else None,
               "method": result.method, "index": result.index, "n_chips": len(table),
               "source": table.source, "hits": [
                   {"rank": int(r["rank"]), "chip_id": str(r["chip_id"]),
                    "score": round(float(r["score"]), 6)} for _, r in hits.iterrows()]}
    atomic_write_text(paths["summary"], json.dumps(summary, indent=1))
    return paths


def run_search(embeddings: PathLike, query: Query, out: PathLike, k: int = 10, *,
               bbox: Sequence[float] | None = None,
               dates: tuple[str | None, str | None] | None = None, method: str = "auto",
               index_file: PathLike | None = None,
               column: str = "embedding") -> tuple[SearchResult, dict[str, Path]]:
    """``geossl search``: load the embeddings, search, write the results into ``out``.

    ``out`` must be absent, empty or an earlier search's output; the ANN index goes to
    ``index_file`` (default ``<embeddings>.faiss``).

    Raises:
        DataError: bad embeddings, query or output folder.
        ConfigError: bad options.
    """
    from geossl.core.io import check_writable
    from geossl.embeddings.products import load_embeddings

    out_dir = check_writable(out, folder=True)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "search.json").is_file():
        raise DataError("--out is a folder holding other files; give an empty or new folder",
                        out_dir)
    table = load_embeddings(embeddings, column=column)
    idx = index_file if index_file is not None else index_path(embeddings)
    result = search(table, query, k, bbox=bbox, dates=dates, method=method, index_file=idx)
    return result, write_results(result, table, out_dir, query)
