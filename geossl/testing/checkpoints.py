"""Small checkpoints as ``geossl pretrain`` writes them, with random weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def random_simclr_checkpoint(path: Path, bands: Sequence[str], mean: float = 1500.0,
                             std: float = 900.0) -> Path:
    """A resnet10t SimCLR checkpoint over ``bands`` (seed 0, untrained).

    Its geossl metadata carries the band names and a per-band normalisation (``mean`` and
    ``std`` for every band).

    Returns:
        ``path`` (its folder is created).
    """
    import torch

    from geossl.methods import SimCLR

    torch.manual_seed(0)
    method = SimCLR.from_hparams({"backbone": "resnet10t", "sensors": ["s2"],
                                  "in_chans": {"s2": len(bands)}, "pairing": "aug",
                                  "proj_hidden": 32, "proj_dim": 16})
    ckpt: dict[str, Any] = {"state_dict": method.state_dict(),
                            "hyper_parameters": dict(method.hparams)}
    method.on_save_checkpoint(ckpt)
    ckpt["geossl"].update(bands=list(bands), normalization={"mean": [mean] * len(bands),
                                                            "std": [std] * len(bands)})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path
