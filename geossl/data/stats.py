"""Per-band statistics of a dataset, streamed so memory stays bounded.

:func:`compute_band_stats` walks a dataset (map-style, a TorchGeo ``GeoDataset`` sampled on a grid,
or any iterable of batches such as a ``DataLoader``) once and returns, per band: number of valid
values, number of invalid ones (NaN, +-inf and the ``nodata`` value), mean, standard deviation
(population), min, max and percentiles (1 and 99 by default).

* Mean and variance are merged batch by batch in float64 with Chan et al.'s parallel update
  (numerically stable, no second pass).
* Percentiles come from a uniform random sample of at most ``reservoir`` valid values per band
  (bottom-k of random keys, which merges exactly across batches). They are exact while a band has
  at most ``reservoir`` valid values (``percentiles_exact`` in the result) and otherwise have a
  standard error of about ``sqrt(p (1 - p) / reservoir)`` in rank (0.02 percentile points for
  the 1st percentile with the default 200,000).

Memory: ``reservoir x bands x 8`` bytes plus one sample or batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from geossl.datasets.base import band_names
from geossl.errors import ConfigError, DataError
from geossl.pairing import key_sensor


class BandAccumulator:
    """Streaming statistics of ``(C, N)`` arrays of band values."""

    def __init__(self, channels: int, reservoir: int = 200_000, seed: int = 0,
                 nodata: float | None = None) -> None:
        """Create an empty accumulator.

        Args:
            channels: number of bands.
            reservoir: values kept per band for percentiles.
            seed: seed of the reservoir's random keys.
            nodata: value to ignore besides NaN and infinities.
        """
        self.channels = channels
        self.reservoir = reservoir
        self.nodata = nodata
        self.rng = np.random.default_rng(seed)
        self.count = np.zeros(channels, dtype=np.int64)
        self.invalid = np.zeros(channels, dtype=np.int64)
        self.mean = np.zeros(channels, dtype=np.float64)
        self.m2 = np.zeros(channels, dtype=np.float64)
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)
        self.values: list[np.ndarray] = [np.empty(0, np.float32) for _ in range(channels)]
        self.keys: list[np.ndarray] = [np.empty(0, np.float32) for _ in range(channels)]

    def update(self, x: np.ndarray) -> None:
        """Add values.

        Args:
            x: ``(C, N)`` band values.

        Raises:
            DataError: if the band count differs from the first update.
        """
        if x.shape[0] != self.channels:
            raise DataError(f"a sample has {x.shape[0]} bands, earlier ones had {self.channels}")
        for c in range(self.channels):
            v = x[c]
            ok = np.isfinite(v)
            if self.nodata is not None:
                ok &= v != self.nodata
            n_bad = int(v.size - ok.sum())
            if n_bad:
                v = v[ok]
            self.invalid[c] += n_bad
            n = v.size
            if n == 0:
                continue
            v64 = v.astype(np.float64, copy=False)
            b_mean = float(v64.mean())
            b_m2 = float(((v64 - b_mean) ** 2).sum())
            n_a = self.count[c]
            tot = n_a + n
            delta = b_mean - self.mean[c]
            self.mean[c] += delta * n / tot
            self.m2[c] += b_m2 + delta * delta * n_a * n / tot
            self.count[c] = tot
            self.min[c] = min(self.min[c], float(v.min()))
            self.max[c] = max(self.max[c], float(v.max()))
            self._sample(c, v.astype(np.float32, copy=False))

    def _sample(self, c: int, v: np.ndarray) -> None:
        keys = self.rng.random(v.size, dtype=np.float32)
        vals, ks = self.values[c], self.keys[c]
        if vals.size >= self.reservoir:  # only keys below the current k-th smallest can enter
            enter = keys < ks.max()
            v, keys = v[enter], keys[enter]
        vals, ks = np.concatenate([vals, v]), np.concatenate([ks, keys])
        if vals.size > self.reservoir:
            keep = np.argpartition(ks, self.reservoir - 1)[: self.reservoir]
            vals, ks = vals[keep], ks[keep]
        self.values[c], self.keys[c] = vals, ks

    def result(self, percentiles: Sequence[float] = (1, 99)) -> dict[str, Any]:
        """The statistics so far (lists, one value per band; NaN for bands without data)."""
        def clean(a: Iterable[float]) -> list[float | None]:
            return [float(x) if math.isfinite(float(x)) else None for x in a]

        has = self.count > 0
        std = np.where(has, np.sqrt(self.m2 / np.maximum(self.count, 1)), np.nan)
        out: dict[str, Any] = {
            "count": self.count.tolist(),
            "invalid": self.invalid.tolist(),
            "mean": clean(np.where(has, self.mean, np.nan)),
            "std": clean(std),
            "min": clean(np.where(has, self.min, np.nan)),
            "max": clean(np.where(has, self.max, np.nan)),
        }
        for p in percentiles:
            out[f"p{p:g}"] = clean(
                float(np.percentile(v, p)) if v.size else np.nan for v in self.values
            )
        out["percentiles_exact"] = bool(np.all(self.count <= self.reservoir))
        return out


# ----------------------------------------------------------------------------------------------
# iterating datasets and loaders
# ----------------------------------------------------------------------------------------------
def _identity(x: Any) -> Any:
    return x


def _int_indexable(dataset: Any) -> bool:
    try:
        from torchgeo.datasets import GeoDataset
    except ImportError:  # pragma: no cover
        return True
    if not isinstance(dataset, GeoDataset):
        return True
    try:
        dataset[0]  # type: ignore[index]
    except (TypeError, AttributeError, KeyError, ValueError, AssertionError):
        return False
    except IndexError:
        return len(dataset) == 0
    return True


def _samples(
    source: Any, max_samples: int | None, seed: int, workers: int, patch_size: int
) -> tuple[Iterator[Any], int | None, bool]:
    """Iterate the items to summarise: ``(iterator, expected count, items are batches)``."""
    if isinstance(source, DataLoader) or not hasattr(source, "__getitem__"):
        total = None
        if max_samples is None:
            try:
                total = len(source)
            except TypeError:
                total = None
        return iter(source), total, True
    items: Any
    if _int_indexable(source):
        n = len(source)
        positions = np.arange(n)
        items = source
    else:  # a TorchGeo GeoDataset: sample a grid of patch_size windows
        # Our grid, not TorchGeo 0.8's GridGeoSampler: its last row/column of windows reach past
        # the footprint and read zero fill, which biased the means (73 % fill on SSL4EO-S12).
        from geossl.datasets.geogrid import geo_grid

        queries = geo_grid(source, patch_size)
        n = len(queries)
        positions = np.arange(n)
        items = _Queries(source, queries)
    if n == 0:
        raise DataError("the dataset has no samples", getattr(source, "root", None))
    if max_samples is not None and n > max_samples:
        rng = np.random.default_rng(seed)
        positions = np.sort(rng.choice(n, size=max_samples, replace=False))
    subset = torch.utils.data.Subset(items, positions.tolist())
    if workers > 0:
        loader = DataLoader(subset, batch_size=None, shuffle=False, num_workers=workers,
                            collate_fn=_identity)
        return iter(loader), len(positions), False
    return (subset[i] for i in range(len(subset))), len(positions), False


class _Queries(Dataset[dict[str, Any]]):
    """A GeoDataset seen through a fixed list of queries (map-style)."""

    def __init__(self, dataset: Any, queries: list[Any]) -> None:
        self.dataset, self.queries = dataset, queries

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.dataset[self.queries[i]]  # type: ignore[no-any-return]


def _image_keys(item: Any) -> list[str]:
    if isinstance(item, dict):
        keys = [k for k, v in item.items() if k.startswith("image") and _is_array(v)]
        if not keys:
            raise DataError(f"samples have no image (keys: {', '.join(map(str, item))})")
        return keys
    return ["image"]


def _is_array(v: Any) -> bool:
    return isinstance(v, Tensor | np.ndarray)


def _get(item: Any, key: str) -> np.ndarray:
    if isinstance(item, dict):
        if key not in item:
            raise ConfigError(f"samples have no {key!r} (have {', '.join(map(str, item))})")
        value = item[key]
    elif isinstance(item, list | tuple):
        value = item[0]
    else:
        value = item
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _to_bands(x: np.ndarray, batched: bool) -> tuple[np.ndarray, int]:
    """``(C, N)`` values and the number of samples in ``x``."""
    if batched and x.ndim == 4:
        return np.moveaxis(x, 1, 0).reshape(x.shape[1], -1), x.shape[0]
    if x.ndim == 3:
        return x.reshape(x.shape[0], -1), 1
    if x.ndim == 2:
        return x.reshape(1, -1), 1
    raise DataError(f"expected images of shape (C, H, W) or (B, C, H, W), got {x.shape}")


def _band_names(source: Any, key: str, channels: int) -> list[str]:
    sensor = key_sensor(key)
    names = (band_names(source, [sensor]) or {}).get(sensor)
    if names is not None and len(names) == channels:
        return names
    return [f"b{i + 1}" for i in range(channels)]


def _select(names: list[str], bands: Sequence[str | int] | None) -> list[int]:
    if bands is None:
        return list(range(len(names)))
    out = []
    for b in bands:
        if isinstance(b, int) or (isinstance(b, str) and b.isdigit() and b not in names):
            i = int(b)
            if not 0 <= i < len(names):
                raise ConfigError(f"band index {i} out of range ({len(names)} bands)")
            out.append(i)
        elif b in names:
            out.append(names.index(b))
        else:
            raise ConfigError(f"unknown band {b!r}; bands are {', '.join(names)}")
    return out


def compute_stats(
    source: Any,
    max_samples: int | None = None,
    bands: Sequence[str | int] | None = None,
    keys: Sequence[str] | None = None,
    nodata: float | None = None,
    percentiles: Sequence[float] = (1, 99),
    reservoir: int = 200_000,
    seed: int = 0,
    workers: int = 0,
    patch_size: int = 256,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Band statistics of every image key of a dataset or loader, in one pass.

    Args:
        source: a map-style dataset of sample dicts, a TorchGeo ``GeoDataset`` (read on a grid of
            ``patch_size`` windows when it cannot be indexed by integers), or an iterable of
            batches (dicts of ``(B, C, H, W)`` tensors, or tensors).
        max_samples: at most this many samples, drawn at random with ``seed`` (all when
            ``None``); for loaders, stop after this many samples.
        bands: band names or positions to keep (default all).
        keys: image keys (default: every ``image*`` key of the first sample).
        nodata: value to ignore besides NaN and infinities.
        percentiles: percentiles to report.
        reservoir: values kept per band for percentiles.
        seed: random seed (sample choice and reservoir).
        workers: loader worker processes for map-style datasets.
        patch_size: window size for GeoDatasets sampled on a grid.
        progress: show a progress bar.

    Returns:
        ``{key: {"bands": [...], "samples": n, "count": [...], "invalid": [...], "mean": [...],
        "std": [...], "min": [...], "max": [...], "p1": [...], "p99": [...],
        "percentiles_exact": bool}}``.

    Raises:
        DataError: empty dataset, samples without images or with varying band counts.
        ConfigError: unknown key or band.
    """
    it, total, batched = _samples(source, max_samples, seed, workers, patch_size)
    accs: dict[str, BandAccumulator] = {}
    names: dict[str, list[str]] = {}
    chosen: dict[str, list[int]] = {}
    seen = 0
    bar = tqdm(total=total, desc="stats", unit="sample", disable=not progress, leave=False)
    try:
        for item in it:
            if keys is None:
                keys = _image_keys(item)
            n_item = 1
            for key in keys:
                x, n_item = _to_bands(_get(item, key), batched)
                if key not in accs:
                    names[key] = _band_names(source, key, x.shape[0])
                    chosen[key] = _select(names[key], bands)
                    accs[key] = BandAccumulator(len(chosen[key]), reservoir, seed, nodata)
                if x.shape[0] != len(names[key]):
                    raise DataError(f"a sample has {x.shape[0]} bands in {key!r}, earlier ones "
                                    f"had {len(names[key])}")
                accs[key].update(x[chosen[key]])
            seen += n_item
            bar.update(n_item)
            if batched and max_samples is not None and seen >= max_samples:
                break
    finally:
        bar.close()
    if not accs:
        raise DataError("the dataset has no samples", getattr(source, "root", None))
    out = {}
    for key, acc in accs.items():
        res = acc.result(percentiles)
        out[key] = {"bands": [names[key][i] for i in chosen[key]], "samples": seen, **res}
    return out


def compute_band_stats(
    dataset_or_loader: Any,
    max_samples: int | None = None,
    bands: Sequence[str | int] | None = None,
    key: str = "image",
    nodata: float | None = None,
    percentiles: Sequence[float] = (1, 99),
    reservoir: int = 200_000,
    seed: int = 0,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Band statistics of one image key (see :func:`compute_stats` for the arguments).

    Returns:
        ``{"bands", "samples", "count", "invalid", "mean", "std", "min", "max", "p1", "p99",
        "percentiles_exact"}``, one list entry per band.
    """
    return compute_stats(dataset_or_loader, max_samples, bands, [key], nodata, percentiles,
                         reservoir, seed, workers, progress=progress)[key]


def format_table(stats: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of :func:`compute_stats` results, one row per key and band."""
    cols = ["mean", "std", "min", "max"]
    pcols = [k for k in next(iter(stats.values())) if k.startswith("p") and k[1:2].isdigit()]
    header = ["key", "band", *cols, *pcols, "valid", "invalid"]
    rows = []
    for key, s in stats.items():
        for i, band in enumerate(s["bands"]):
            vals = [s[c][i] for c in cols + pcols]
            rows.append([key, band, *("nan" if v is None else f"{v:.6g}" for v in vals),
                         str(s["count"][i]), str(s["invalid"][i])])
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


class RasterFiles(Dataset[dict[str, Any]]):
    """Every GeoTIFF of a folder (or listed in a chip index) as a map-style dataset.

    The fallback ``geossl stats --data chips`` uses for a plain folder of GeoTIFFs (no chip
    index) or while :mod:`geossl.datasets.chips` is unavailable. Pixels equal to a file's nodata
    value are returned as NaN, so statistics ignore them.
    """

    def __init__(self, root: str | Path, index: str | Path | None = None) -> None:
        """List the files (nothing is read yet).

        Args:
            root: folder searched recursively for ``*.tif`` / ``*.tiff``.
            index: a chip index (GeoParquet with a ``path`` column relative to its folder); used
                instead of searching ``root`` when given.

        Raises:
            DataError: no files, or an unreadable index.
        """
        self.root = Path(root)
        if index is not None:
            import geopandas as gpd

            try:
                table = gpd.read_parquet(index)
            except Exception as err:  # pyarrow / geopandas raise many types
                raise DataError(f"unreadable chip index ({err})", index) from err
            if "path" not in table.columns:
                raise DataError("chip index has no 'path' column", index)
            base = Path(index).parent
            self.files = [base / str(p) for p in table["path"]]
        else:
            if not self.root.is_dir():
                raise DataError("folder not found", self.root)
            self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in
                                (".tif", ".tiff") and not p.name.startswith("."))
        if not self.files:
            raise DataError("no GeoTIFF files found", index or self.root)
        from geossl.io import open_raster

        with open_raster(self.files[0]) as src:
            desc = list(src.descriptions)
        self.bands = [d if d else f"b{i + 1}" for i, d in enumerate(desc)]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from geossl.io import open_raster

        path = self.files[i]
        with open_raster(path) as src:
            try:
                data = src.read(masked=True).astype(np.float32)
            except Exception as err:  # rasterio raises RasterioIOError / CPLE_* on corrupt data
                raise DataError(f"unreadable raster ({err})", path) from err
        return {"image": torch.from_numpy(np.ma.filled(data, np.nan)), "id": str(path)}
