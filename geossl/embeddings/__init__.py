"""Embedding products out and in, search and the map: one embedding record for all.

* :mod:`geossl.embeddings.records`: the embedding record (chip id, footprint, CRS, time,
  vector) as :class:`~geossl.embeddings.records.EmbeddingTable`; from the zarr cube of
  ``geossl embed``; GeoParquet and COG writers (``geossl embed --format``);
* :mod:`geossl.embeddings.products`: others' products in (GeoParquet layouts, GSE / Tessera
  rasters), per-chip vectors for ``evaluate`` / ``compare``, chip pictures;
* :mod:`geossl.embeddings.search`: ``geossl search`` (exact numpy, faiss HNSW index);
* :mod:`geossl.embeddings.webmap`: ``geossl map`` (offline HTML page, vendored Leaflet).

Below ``embed``, ``eval`` and the commands, above ``tiling`` and ``plots`` in the layers.
"""
