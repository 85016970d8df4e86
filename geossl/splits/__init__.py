"""Overlap-aware train/val/test splits of footprints, with a leakage report.

Works on any GeoDataFrame of footprints: a chip index (``geossl tile``), a TorchGeo
``GeoDataset.index`` or :meth:`geossl.datasets.sen12ms.SEN12MSPatches.footprints`. Every split
function returns a :class:`pandas.Series` of split names (``train``, ``val``, ``test``, or
``drop`` for chips removed to keep the splits apart) indexed like the input.

Strategies (:func:`make_splits`):

``overlap``
    chips that conflict (their footprints share interior area, or with ``buffer`` > 0 lie within
    ``buffer`` metres of each other) are grouped into connected components; whole components go
    to one split. Zero leakage by construction, nothing dropped.
``block``
    square blocks of ``block_size`` metres (a chip belongs to the block of its centre); whole
    blocks go to one split; then every chip that conflicts with a chip of another split is
    labelled ``drop`` (the one of the earlier split in ``names``: train loses the border band,
    not test). Zero leakage by construction.
``scene``
    whole scenes (column ``scene``); scenes that overlap each other are merged first. With an
    explicit test list (``test_scenes``, or ``holdout="sen12ms"`` for the official SEN12MS
    hold-out scenes) those scenes are the test side and conflicting chips of the other sides are
    dropped. Zero leakage by construction.
``random``
    chip by chip, for comparison only: overlapping chips fall on both sides (see the report).
``nonoverlapping``
    a greedy maximal subset of pairwise non-conflicting chips (the rest is ``drop``), split at
    random: zero leakage since no two kept chips overlap.
``checkerboard``
    square blocks of ``block_size`` CRS units coloured like a chessboard (block row ``i``
    counted down from ``origin``, column ``j`` from its left; colour ``(i + j) mod k`` for
    ``k`` splits, so blocks sharing an edge never share a split). A chip takes the colour of
    the one block its footprint lies in; a chip that straddles a block border is ``drop``
    (``assign="footprint"``, the default), or takes the colour of the block of its centre
    (``assign="centroid"``: fewer chips lost, then a chip that still conflicts with a chip of
    another split is dropped as in ``block``). ``buffer`` > 0 also drops the chips (of the
    earlier split) lying within ``buffer`` of another split. The fractions are those of the
    pattern, so they must be equal (``0.5, 0.5``); no stratification. Zero leakage by
    construction.

All strategies are deterministic given ``seed`` and (but ``checkerboard``) stratified by class
when a label column exists. Single-label: each group counts under its majority class; groups
are placed largest first into the split furthest below its target, so the achieved fractions
differ from the requested ones by at most about one group (block, scene) per class.
Multi-label (cells holding several class indices, e.g. BigEarthNet's ``"3,7,12"``): iterative
stratification (Sechidis et al., 2011, simplified for groups: groups visited by the rarity of
their rarest label, each placed where its labels and the chip count are most in deficit). The
achieved fractions are returned in ``series.attrs["fractions"]`` (a warning is issued beyond
``tolerance``, default 0.05), the largest gap in ``attrs["fraction_error"]`` and the largest
per-class gap (classes with >= 5 expected chips in the smallest split) in
``attrs["class_fraction_error"]``.

Metric coordinates: distances and areas are computed per CRS group, each footprint in a metric
CRS: the chip's own projected CRS when the frame has the chip-index columns ``minx .. maxy`` and
``crs`` (UTM for SEN12MS and ``geossl tile`` chips: exact boxes, no reprojection), else the
frame's CRS when projected, else (geographic footprints) the UTM zone of each footprint's
centre. Chips of different CRS groups (UTM zones) are compared in two steps: candidates are
found in the equal-area CRS EPSG:6933 with each buffer enlarged by that projection's largest
scale factor at the footprint's latitude (:func:`max_scale_6933`: 1.15 at the equator, 3 at 73
degrees, unbounded towards the poles), so no neighbour is missed at any latitude; each candidate
pair is then decided in a transverse Mercator projection centred on it (scale error below
1e-4), with the footprints densified every :data:`DENSIFY_M` metres in their own CRS so that
their straight edges stay straight. Frames with ``minx .. maxy`` and ``crs`` columns but no
georeferenced geometry get their EPSG:4326 footprints from those bounds. Two footprints that
only touch (shared edge, overlap below :data:`EPS_M` = 1 mm) do not conflict.

Pixel grids: footprints without a georeferenced CRS (``crs`` None, or a local engineering CRS
such as :data:`geossl.datasets.polsar.PIXEL_CRS` of a PolSAR scene without map information) are
used as they are, planar, in their own units (pixels for a pixel grid): ``buffer`` and
``block_size`` are then in those units, nothing is reprojected, footprints of different local
CRSs are never compared, and the leakage report names its columns after the unit
(``overlap_px2``, ``buffer_px``, ... instead of ``overlap_km2``, ``buffer_m``). Mixing such
footprints with georeferenced ones is an error.

Files: :func:`save_splits` writes JSON ``{"strategy", "params", "splits": {name: [ids]}}`` or a
GeoParquet copy of the footprints with a ``split`` column; :func:`load_splits` reads both and
checks the ids against the footprints.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geossl.splits.assign import (
        ASSIGN_MODES,
        DROP,
        STRATEGIES,
        checkerboard_codes,
        checkerboard_split,
    )
    from geossl.splits.config import DEFAULT_BLOCK_SIZE, SplitConfig
    from geossl.splits.files import (
        load_split_ids,
        load_splits,
        read_footprints,
        save_splits,
        split_and_save,
        split_names,
    )
    from geossl.splits.footprints import (
        COMMON_CRS,
        CROSS_CRS_TOLERANCE,
        DENSIFY_M,
        EPS_M,
        ID_COLUMNS,
        Footprints,
        chip_ids,
        conflict_pairs,
        footprints,
        max_scale_6933,
        nonoverlapping_subset,
        overlap_groups,
    )
    from geossl.splits.leakage import leakage_report, report_units
    from geossl.splits.strategies import make_splits

#: where each name of the package lives: imported when first used, so that the light
#: :mod:`geossl.splits.config` (read when the command line builds its parser) does not bring
#: pandas and geopandas
_WHERE = {name: module for module, names in {
    "geossl.splits.assign": (
        "ASSIGN_MODES", "DROP", "STRATEGIES", "checkerboard_codes", "checkerboard_split"
    ),
    "geossl.splits.config": ("DEFAULT_BLOCK_SIZE", "SplitConfig"),
    "geossl.splits.files": (
        "load_split_ids", "load_splits", "read_footprints", "save_splits", "split_and_save",
        "split_names"
    ),
    "geossl.splits.footprints": (
        "COMMON_CRS", "CROSS_CRS_TOLERANCE", "DENSIFY_M", "EPS_M", "ID_COLUMNS", "Footprints",
        "chip_ids", "conflict_pairs", "footprints", "max_scale_6933", "nonoverlapping_subset",
        "overlap_groups"
    ),
    "geossl.splits.leakage": ("leakage_report", "report_units"),
    "geossl.splits.strategies": ("make_splits",),
}.items() for name in names}


def __getattr__(name: str) -> Any:
    """A name of :data:`__all__`, imported from its module when first used (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """This package: ``geossl.splits.footprints`` is the function, as when it was imported eagerly.

    Importing the submodule :mod:`geossl.splits.footprints` binds the package attribute of that
    name to the module; the eager ``from geossl.splits.footprints import footprints`` used to
    rebind it to the function (``splits.footprints(gdf)``). Lazily, that binding is refused
    instead, and the name resolves to the function through :func:`__getattr__`.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "footprints" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "ASSIGN_MODES",
    "COMMON_CRS",
    "CROSS_CRS_TOLERANCE",
    "DEFAULT_BLOCK_SIZE",
    "DENSIFY_M",
    "DROP",
    "EPS_M",
    "ID_COLUMNS",
    "STRATEGIES",
    "Footprints",
    "SplitConfig",
    "checkerboard_codes",
    "checkerboard_split",
    "chip_ids",
    "conflict_pairs",
    "footprints",
    "leakage_report",
    "load_split_ids",
    "load_splits",
    "make_splits",
    "max_scale_6933",
    "nonoverlapping_subset",
    "overlap_groups",
    "read_footprints",
    "report_units",
    "save_splits",
    "split_and_save",
    "split_names",
]
