"""Which representation for my archive: several representations on one split, paired.

Entry point: :func:`geossl.compare.run.compare` (``geossl compare``). Rows and the registry of
row kinds (own SSL checkpoints, named foundation weights, random init, band means, supervised
from scratch; a new kind is one function given to :func:`register_row_kind`) live in
:mod:`geossl.compare.rows`; the paired statistics in :mod:`geossl.eval.paired`.
"""

from __future__ import annotations

from typing import Any

from geossl.compare.rows import ROW_KINDS, PreparedRow, RowContext, RowSpec, register_row_kind

__all__ = ["ROW_KINDS", "PreparedRow", "RowContext", "RowSpec", "compare", "register_row_kind"]


def compare(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`geossl.compare.run.compare`."""
    from geossl.compare.run import compare as _compare

    return _compare(*args, **kwargs)
