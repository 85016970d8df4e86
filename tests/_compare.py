"""Compare two ``geossl tile`` outputs chip by chip (pixels, georeferencing, tags, index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio

from geossl.tiling import chip_index


def assert_same_tiling(got: Path, want: Path) -> int:
    """Assert that two chip folders hold the same chips and index; returns the chip count."""
    a = chip_index.read_index(got).sort_values("chip_id").reset_index(drop=True)
    b = chip_index.read_index(want).sort_values("chip_id").reset_index(drop=True)
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(pd.DataFrame(a.drop(columns="geometry")),
                                  pd.DataFrame(b.drop(columns="geometry")))
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()
    for rel in a["path"]:
        with rasterio.open(got / rel) as x, rasterio.open(want / rel) as y:
            assert x.crs == y.crs, rel
            assert x.transform == y.transform, rel
            assert x.descriptions == y.descriptions, rel
            assert x.tags() == y.tags(), rel
            assert x.dtypes == y.dtypes, rel
            np.testing.assert_array_equal(x.read(), y.read(), err_msg=rel)
    assert not list(got.rglob("*.part")), "temporary files left behind"
    return len(a)
