"""Self-supervised methods: pure losses, GPU augmentation, views and thin LightningModules.

``METHODS`` maps a method name to its LightningModule; ``VALID_PAIRINGS`` lists the pairing
modes each method supports, and :func:`check_method_pairing` refuses the others with a one-line
reason. :func:`load_encoder` rebuilds the encoder of any pretraining checkpoint.
"""

from __future__ import annotations

from geossl.checkpoint import load_encoder
from geossl.errors import ConfigError
from geossl.methods.base import SSLMethod
from geossl.methods.byol import BYOL
from geossl.methods.deepcluster import DeepCluster
from geossl.methods.moco import MoCo
from geossl.methods.simclr import SimCLR
from geossl.methods.views import PAIRING_MODES

METHODS: dict[str, type[SSLMethod]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "byol": BYOL,
    "deepcluster": DeepCluster,
}

#: pairing modes each method supports
VALID_PAIRINGS: dict[str, tuple[str, ...]] = {name: cls.pairings for name, cls in METHODS.items()}

_WHY_NOT = {
    "deepcluster": "DeepCluster clusters one image per sample, so it takes a single sensor "
    "('aug') or stacked sensors ('fusion'), not {pairing!r}",
}


def check_method_pairing(method: str, pairing: str) -> None:
    """Refuse an unknown method or a pairing the method does not support.

    Raises:
        ConfigError: with a one-line reason.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if pairing not in PAIRING_MODES:
        raise ConfigError(f"unknown pairing {pairing!r}; choose one of {', '.join(PAIRING_MODES)}")
    if pairing not in VALID_PAIRINGS[method]:
        why = _WHY_NOT.get(method, "{method} does not support pairing {pairing!r}")
        raise ConfigError(why.format(method=method, pairing=pairing))


__all__ = [
    "BYOL",
    "METHODS",
    "PAIRING_MODES",
    "VALID_PAIRINGS",
    "DeepCluster",
    "MoCo",
    "SSLMethod",
    "SimCLR",
    "check_method_pairing",
    "load_encoder",
]
