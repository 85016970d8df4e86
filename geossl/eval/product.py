"""Embedding products as a feature source: ``geossl evaluate product:PATH`` (and ``compare``).

An embedding product (a GeoParquet file/folder in geossl's or TorchGeo's layouts, a zarr cube
of ``geossl embed``, or a GSE/Tessera-style GeoTIFF) stands where an encoder would: its vectors
for the dataset's chips, matched by chip id or footprint
(:func:`geossl.embeddings.products.product_features`), become the frozen features of the
linear probe, kNN and clustering. ``finetune`` needs an encoder and is refused.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from geossl.core.errors import DataError
from geossl.eval.features import FeatureSet, label_of
from geossl.pretrained.checkpoint import EncoderSource

PREFIX = "product:"


def product_ref(ckpt: Any) -> Path | None:
    """The product path of ``product:PATH`` (``None`` for anything else)."""
    if isinstance(ckpt, (str, os.PathLike)) and os.fspath(ckpt).startswith(PREFIX):
        return Path(os.fspath(ckpt)[len(PREFIX):])
    return None


class _NoEncoder(nn.Module):
    """Stands for the encoder of an embedding product: refuses to be run."""

    num_features = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called
        """Refuse: a product has no encoder."""
        raise DataError("an embedding product has no encoder to run")


def product_source(product: Path) -> EncoderSource:
    """An :class:`EncoderSource` naming the product (for the report and cache keys).

    Raises:
        DataError: the product does not exist.
    """
    from geossl.embeddings.products import kind_of

    kind = kind_of(product)
    h = hashlib.sha256()
    files = sorted(product.rglob("*")) if product.is_dir() else [product]
    for f in files:
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(product.parent)}|{st.st_size}|{st.st_mtime_ns}".encode())
    meta = {"backbone": f"embedding product ({kind})", "method": "embedding-product",
            "product": str(product), "bands": None, "sensors": None}
    return EncoderSource(_NoEncoder(), meta, f"product-{h.hexdigest()[:16]}")


def product_feature_set(product: Path, dataset: Dataset[dict[str, Any]],
                        positions: Sequence[int], ids: Sequence[str],
                        footprints: Any = None, column: str = "embedding",
                        hint: str = "evaluate on chips it covers") -> FeatureSet:
    """The product's vectors for the samples ``positions`` of ``dataset`` (ids ``ids``).

    Args:
        product: the embedding product (zarr cube, GeoParquet, GeoTIFF).
        dataset: the samples (their labels are read).
        positions: the samples wanted, by position in ``dataset``.
        ids: their chip ids.
        footprints: the chips' footprints (GeoDataFrame with ``chip_id``), or ``None``.
        column: the vector column of a GeoParquet product.
        hint: what the error line tells the user to do about chips the product lacks.

    Raises:
        DataError: the product lacks a vector for some of the chips (named in the message).
    """
    from geossl.embeddings.products import product_features

    vec, found = product_features(product, [str(i) for i in ids], footprints, column)
    if not found.all():
        missing = [str(i) for i, f in zip(ids, found) if not f]
        raise DataError(f"embedding product has no vector for {len(missing)} of {len(ids)} "
                        f"chips (e.g. {missing[0]}); {hint}", product)
    labels = torch.stack([label_of(dataset[p]) for p in positions])
    return FeatureSet(torch.from_numpy(vec), labels, [str(i) for i in ids],
                      [int(p) for p in positions])
