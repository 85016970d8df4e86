"""EuroSAT (Helber et al. 2019): Sentinel-2 patches in a folder-per-class archive.

Layout ``EuroSAT_MS/<Class>/<Class>_<n>.tif`` (13 bands) or the RGB JPG release; read by
:class:`~geossl.datasets.scenefolder.SceneFolder`.
"""

from __future__ import annotations

from geossl.datasets.scenefolder import SceneFolder


class EuroSAT(SceneFolder):
    """EuroSAT (Helber et al. 2019): 64 x 64 Sentinel-2 patches in 10 classes.

    Works on the 13-band GeoTIFF release (``EuroSAT_MS/<Class>/<Class>_<n>.tif``, raw L1C DN)
    and on the RGB JPG release (``.jpg`` files) alike.
    """

    sensors = ("s2",)
    image_size = 64
