"""UC Merced Land Use (Yang and Newsam 2010), a folder-per-class scene archive.

Layout ``UCMerced_LandUse/Images/<class>/<class>NN.tif``; read by
:class:`~geossl.datasets.scenefolder.SceneFolder`.
"""

from __future__ import annotations

from typing import ClassVar

from geossl.datasets.scenefolder import SceneFolder


class UCMerced(SceneFolder):
    """UC Merced Land Use (Yang and Newsam 2010): 2,100 RGB TIFs, 21 classes, 256 x 256 px.

    Layout: ``UCMerced_LandUse/Images/<class>/<class>NN.tif`` (the ``Images`` folder or its
    parent may be given). A few images are not exactly 256 x 256: they are resized to 256 x 256
    (bilinear, antialiased), see the module docstring.
    """

    image_size = 256
    extensions_default = (".tif", ".tiff")
    #: the 21 UC Merced classes
    all_classes: ClassVar[tuple[str, ...]] = (
        "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral",
        "denseresidential", "forest", "freeway", "golfcourse", "harbor", "intersection",
        "mediumresidential", "mobilehomepark", "overpass", "parkinglot", "river", "runway",
        "sparseresidential", "storagetanks", "tenniscourt",
    )
