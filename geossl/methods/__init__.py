"""Self-supervised methods: pure losses, GPU augmentation, views and thin LightningModules.

Every method takes the same typed specs (:class:`EncoderSpec`, :class:`OptimSpec`,
:class:`ViewSpec`) and declares only its own options; ``SimCLR.from_hparams({...})`` builds one
from flat options (see :mod:`geossl.methods.specs`).

``METHODS`` maps a method name to its LightningModule; ``VALID_PAIRINGS`` lists the pairing
modes each method supports, and :func:`check_method_pairing` refuses the others with a one-line
reason. :func:`load_encoder` rebuilds the encoder of any pretraining checkpoint.
"""

from __future__ import annotations

from geossl.core import pairing as pairing_contract
from geossl.core.errors import ConfigError
from geossl.methods.barlow import BarlowTwins
from geossl.methods.base import SSLMethod
from geossl.methods.byol import BYOL
from geossl.methods.deepcluster import DeepCluster
from geossl.methods.dino import DINO
from geossl.methods.mae import MAE
from geossl.methods.moco import MoCo
from geossl.methods.simclr import SimCLR
from geossl.methods.specs import EncoderSpec, MethodOptions, OptimSpec, ViewSpec
from geossl.methods.vicreg import VICReg
from geossl.pretrained.checkpoint import load_encoder

METHODS: dict[str, type[SSLMethod]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "byol": BYOL,
    "deepcluster": DeepCluster,
    "mae": MAE,
    "dino": DINO,
    "barlow": BarlowTwins,
    "vicreg": VICReg,
}

#: pairing modes each method supports
VALID_PAIRINGS: dict[str, tuple[str, ...]] = {name: cls.pairings for name, cls in METHODS.items()}

def check_method_pairing(method: str, pairing: str) -> None:
    """Refuse an unknown method or a pairing the method does not support.

    The rule and the message belong to :func:`geossl.core.pairing.check_method_pairing`; the modes
    and the reason are the method's own (``pairings``, ``pairing_note``).

    Raises:
        ConfigError: with a one-line reason.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    cls = METHODS[method]
    pairing_contract.check_method_pairing(method, pairing, cls.pairings, cls.pairing_note)


__all__ = [
    "BYOL",
    "DINO",
    "MAE",
    "METHODS",
    "VALID_PAIRINGS",
    "BarlowTwins",
    "DeepCluster",
    "EncoderSpec",
    "MethodOptions",
    "MoCo",
    "OptimSpec",
    "SSLMethod",
    "SimCLR",
    "VICReg",
    "ViewSpec",
    "check_method_pairing",
    "load_encoder",
]
