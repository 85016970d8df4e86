"""The one place that decides where computation runs.

Every command, library function and benchmark that takes a device or an accelerator resolves it
here, so ``auto``, ``gpu``/``cuda`` and a missing GPU mean the same everywhere:

* :func:`resolve_device`: a ``torch.device`` for plain torch code (features, probes, embedding
  maps, benchmarks);
* :func:`lightning_accelerator`: Lightning's accelerator name (``gpu``/``cpu``) for a
  ``Trainer``, and :func:`resolve_precision` the precision that goes with it.
"""

from __future__ import annotations

import torch

from geossl.core.errors import ConfigError

#: names that mean "the GPU when there is one, else the CPU"
AUTO = ("auto", "")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to compute on.

    Args:
        device: ``None`` or ``auto`` (the GPU when CUDA is available, else the CPU), ``gpu`` or
            ``cuda`` (the current CUDA device), ``cuda:1``, ``cpu``, ``mps``, ... or a
            ``torch.device``.

    Returns:
        the ``torch.device``.

    Raises:
        ConfigError: an unknown device name, or a CUDA device asked for on a machine without
            one.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = "auto" if device is None else str(device).strip().lower()
        if name in AUTO:
            name = "cuda" if torch.cuda.is_available() else "cpu"
        elif name == "gpu" or name.startswith("gpu:"):
            name = "cuda" + name[3:]
        try:
            dev = torch.device(name)
        except RuntimeError as err:
            raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} asked for, but no CUDA device is available")
    return dev


def lightning_accelerator(accelerator: str | torch.device | None = "auto") -> str:
    """Lightning's accelerator name: ``auto`` -> ``gpu`` when CUDA is available, else ``cpu``.

    ``cuda`` and ``cuda:N`` (or a CUDA ``torch.device``) -> ``gpu``; any other name (``cpu``,
    ``tpu``, ``mps``, ...) is passed on to Lightning unchanged.
    """
    if isinstance(accelerator, torch.device):
        return "gpu" if accelerator.type == "cuda" else accelerator.type
    name = "auto" if accelerator is None else str(accelerator).strip().lower()
    if name in AUTO:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        return "gpu"
    return name


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning's precision: ``auto`` -> ``bf16-mixed`` on a GPU, ``32-true`` elsewhere.

    Args:
        precision: ``auto``, ``32``, ``16``, ``64``, ``bf16`` or a Lightning name
            (``bf16-mixed``, ``16-mixed``, ``32-true``, ...), passed on unchanged.
        accelerator: the resolved Lightning accelerator (:func:`lightning_accelerator`).
    """
    if precision == "auto":
        return "bf16-mixed" if accelerator == "gpu" else "32-true"
    if precision in ("32", "16", "64"):
        return f"{precision}-true" if precision != "16" else "16-mixed"
    if precision == "bf16":
        return "bf16-mixed"
    return precision
