"""Benchmark named weights: geossl's resolution + band matching + first batch vs TorchGeo's.

Both sides start from the same cached file (``$TORCH_HOME/hub/checkpoints``; with none there a
file in TorchGeo's format is built in a temporary ``TORCH_HOME``: same keys and shapes, random
values) and end with the features of one batch:

* **geossl**: ``load_source("torchgeo:<name>", data_bands=...)`` (name resolution, the file read
  through TorchGeo's loader, band matching, encoder with the identity-initialised adapter when
  the bands differ), the weights' normalisation, and the forward pass of the batch in the data's
  bands (by default Major-TOM's 12 L2A bands against 13-band weights: through the adapter);
* **torchgeo** (the baseline): ``torchgeo.models.<model>(weights=get_weight(name))``, ``/10000``
  by hand and the forward pass of the same batch with the bands in the weights' order (the
  missing band zero-filled by hand).

The two are run interleaved (alternating which goes first), ``--repeats`` times after one
untimed warm-up of each, and the medians are compared: ``ratio = geossl / torchgeo`` (above 1:
geossl's extra work costs that factor). The features are compared too (max abs difference).

    geossl bench weights                              # resnet18 S2 MoCo, 12 L2A bands
    geossl bench weights --spec torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO --repeats 7
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from geossl.core.options import add_argparse_flags, config_from, option, parse_names

#: Major-TOM Sentinel-2 L2A bands (no B10)
L2A_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11",
             "B12"]


@contextlib.contextmanager
def torch_home(path: str | None) -> Iterator[None]:
    """Set ``TORCH_HOME`` for the block (``None``: leave it)."""
    old = os.environ.get("TORCH_HOME")
    if path is not None:
        os.environ["TORCH_HOME"] = path
    try:
        yield
    finally:
        if path is not None:
            if old is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = old


def build_cached_file(name: str) -> Path:
    """Write a TorchGeo-format file for ``name`` (random values) where TorchGeo expects it."""
    import torchgeo.models

    from geossl.pretrained.foundation import torchgeo_cache_path, torchgeo_weight

    weight = torchgeo_weight(name)
    model = getattr(torchgeo.models, weight.meta["model"])(weights=None,
                                                            in_chans=weight.meta["in_chans"])
    path = torchgeo_cache_path(weight)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in model.state_dict().items()
                if not k.startswith(("fc.", "head."))}, path)
    return path


@dataclasses.dataclass
class WeightsBenchConfig:
    """Options of ``geossl bench weights`` (each a flag: ``batch_size`` -> ``--batch-size``)."""

    spec: str = option("torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO", "torchgeo:<Enum.MEMBER>")
    bands: list[str] = option(factory=lambda: list(L2A_BANDS), flag_type=str,
                              help="the data's bands, comma-separated (default: Major-TOM L2A, "
                              "12)")
    batch_size: int = option(16, "images per forward pass")
    size: int = option(64, "image size in pixels")
    repeats: int = option(5, "timed runs of each side (best kept)")
    json: str | None = option(None, "write the result here")
    seed: int = option(0, "seed of the random images", flag=False)

    def __post_init__(self) -> None:
        """Split ``--bands``."""
        self.bands = parse_names(self.bands) or []


def bench_weights(config: WeightsBenchConfig, log: Callable[[str], None] = print
                  ) -> dict[str, Any]:
    """Time geossl's named weights against TorchGeo's constructor (see the module docstring).

    Returns:
        ``{"spec", "bands", "geossl_s", "torchgeo_s" (lists), "geossl_median_s",
        "torchgeo_median_s", "ratio", "max_abs_diff", "file", "built_file"}``.
    """
    import torchgeo.models

    from geossl.core.errors import ConfigError
    from geossl.pretrained.checkpoint import load_source
    from geossl.pretrained.foundation import match_bands, torchgeo_cache_path, torchgeo_weight
    from geossl.pretrained.normalize import make_normalizer

    spec, bands, batch_size = config.spec, config.bands, config.batch_size
    size, repeats, seed = config.size, config.repeats, config.seed
    if not spec.startswith("torchgeo:"):
        raise ConfigError("geossl bench weights compares against torchgeo.models: give "
                          "--spec torchgeo:<Enum.MEMBER>")
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    name = spec.removeprefix("torchgeo:")
    weight = torchgeo_weight(name)
    build = getattr(torchgeo.models, weight.meta["model"])
    match = match_bands(list(bands), _meta_only(spec, weight), len(bands))
    gen = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 10000, (batch_size, len(bands), size, size), generator=gen).float()
    # the baseline's input: the weights' band order, a missing band zero-filled by hand
    full = torch.zeros(batch_size, len(match.weight_bands), size, size)
    for j, i in enumerate(match.source):
        if i is not None:
            full[:, j] = data[:, i]

    def run_geossl() -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = load_source(spec, data_bands=list(bands), preprocess="weights")
        norm = make_normalizer(src.meta, None)
        assert norm is not None
        with torch.no_grad():
            out: torch.Tensor = src.encoder(norm(data))
        return out

    def run_torchgeo() -> torch.Tensor:
        model = build(weights=torchgeo_weight(name))
        model.eval()
        with torch.no_grad():
            out: torch.Tensor = model.forward_head(model.forward_features(full / 10000.0),
                                                   pre_logits=True)
        return out

    times: dict[str, list[float]] = {"geossl": [], "torchgeo": []}
    runs = {"geossl": run_geossl, "torchgeo": run_torchgeo}
    feats = {k: f() for k, f in runs.items()}  # warm-up: imports, first allocations
    diff = float((feats["geossl"] - feats["torchgeo"]).abs().max())
    for r in range(repeats):
        order = ["geossl", "torchgeo"] if r % 2 == 0 else ["torchgeo", "geossl"]
        for key in order:
            t0 = time.perf_counter()
            runs[key]()
            times[key].append(time.perf_counter() - t0)
    g, t = statistics.median(times["geossl"]), statistics.median(times["torchgeo"])
    result = {"spec": spec, "bands": list(bands), "batch_size": batch_size, "size": size,
              "repeats": repeats, "geossl_s": times["geossl"], "torchgeo_s": times["torchgeo"],
              "geossl_median_s": g, "torchgeo_median_s": t, "ratio": g / t,
              "max_abs_diff": diff, "file": str(torchgeo_cache_path(weight)),
              "missing_bands": match.missing, "extra_bands": match.extra}
    log(f"named weights {spec}, data bands {','.join(bands)} (missing in the data: "
        f"{','.join(match.missing) or 'none'}), batch {batch_size} x {size} px, "
        f"{repeats} interleaved repeats")
    log("| path | median s |")
    log("| --- | --- |")
    log(f"| geossl: resolve + band matching + first batch | {g:.3f} |")
    log(f"| torchgeo.models.{weight.meta['model']}(weights=...) + first batch | {t:.3f} |")
    log(f"ratio geossl / torchgeo: {g / t:.2f}  (features max |diff| {diff:.2e})")
    return result


def _meta_only(spec: str, weight: Any) -> Any:
    """A metadata-only :class:`~geossl.pretrained.foundation.ResolvedWeights` (band matching)."""
    from geossl.datasets.bands import canonical_band
    from geossl.pretrained.foundation import ResolvedWeights

    bands = weight.meta.get("bands")
    return ResolvedWeights(spec, str(weight.meta["model"]), {},
                           [canonical_band(str(b)) for b in bands] if bands else None,
                           int(weight.meta["in_chans"]), None, None, "torchgeo", {})


def build_parser(prog: str | None = "geossl bench weights") -> argparse.ArgumentParser:
    """The flags of this benchmark (``prog``: the command's name in ``--help``).

    One per field of :class:`WeightsBenchConfig`.
    """
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_argparse_flags(parser, WeightsBenchConfig)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "geossl bench weights") -> int:
    """``geossl bench weights`` (see the module docstring)."""
    args = build_parser(prog).parse_args(list(argv) if argv is not None else None)
    config = config_from(WeightsBenchConfig, args)
    from geossl.core.io import atomic_write_text
    from geossl.pretrained.foundation import torchgeo_cache_path, torchgeo_weight

    name = config.spec.removeprefix("torchgeo:")
    with tempfile.TemporaryDirectory(prefix="geossl-bench-weights-") as tmp:
        home = None
        if not torchgeo_cache_path(torchgeo_weight(name)).is_file():
            home = tmp
            with torch_home(home):
                path = build_cached_file(name)
            print(f"no cached file: built one in TorchGeo's format at {path}")
        with torch_home(home):
            res = bench_weights(config)
        res["built_file"] = home is not None
    if config.json:
        atomic_write_text(config.json, json.dumps(res, indent=2) + "\n")
        print(f"wrote {config.json}")
    return 0
