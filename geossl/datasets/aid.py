"""AID: Aerial Image Dataset (Xia et al. 2017), a folder-per-class scene archive.

Layout ``AID/<Class>/<class>_<n>.jpg``; read by :class:`~geossl.datasets.scenefolder.SceneFolder`.
"""

from __future__ import annotations

from typing import ClassVar

from geossl.datasets.scenefolder import SceneFolder


class AID(SceneFolder):
    """AID: Aerial Image Dataset (Xia et al. 2017), 10,000 600 x 600 RGB JPGs in 30 classes.

    Layout: ``AID/<Class>/<class>_<n>.jpg``. Images of another size are resized to 600 x 600.
    """

    image_size = 600
    extensions_default = (".jpg", ".jpeg")
    #: the 30 AID classes (folder names of the official archive)
    all_classes: ClassVar[tuple[str, ...]] = (
        "Airport", "BareLand", "BaseballField", "Beach", "Bridge", "Center", "Church",
        "Commercial", "DenseResidential", "Desert", "Farmland", "Forest", "Industrial",
        "Meadow", "MediumResidential", "Mountain", "Park", "Parking", "Playground", "Pond",
        "Port", "RailwayStation", "Resort", "River", "School", "SparseResidential", "Square",
        "Stadium", "StorageTanks", "Viaduct",
    )
