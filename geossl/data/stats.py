"""Per-band statistics of a dataset, streamed so memory stays bounded.

:func:`compute_band_stats` walks a dataset (map-style, a TorchGeo ``GeoDataset`` sampled on a grid,
or any iterable of batches such as a ``DataLoader``) once and returns, per band: number of valid
values, number of invalid ones (NaN, +-inf and the ``nodata`` value), mean, standard deviation
(population), min, max and percentiles (1 and 99 by default).

* Mean and variance are merged batch by batch in float64 with Chan et al.'s parallel update
  (numerically stable, no second pass).
* Percentiles are exact while a band has at most ``exact_values`` distinct values (default
  262,144: any 16-bit DN band, any 8-bit band, quantised reflectances): every distinct value is
  counted, counts add up exactly across batches and Dask chunks, and the percentile is
  NumPy's linear interpolation between the two order statistics of all the values. So a run
  in this process and a run on any Dask cluster give the same percentiles.
* Beyond that (float bands with millions of distinct values) they come from a uniform random
  sample of at most ``reservoir`` valid values per band (bottom-k of random keys, which merges
  exactly across batches), with a standard error of about ``sqrt(p (1 - p) / reservoir)`` in
  rank (0.02 percentile points for the 1st percentile with the default 200,000), and the result
  says ``percentiles_exact: false``.

Memory: ``(reservoir x 8 + exact_values x 16) x bands`` bytes plus one sample or batch.
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from geossl.core.errors import ConfigError, DataError
from geossl.core.pairing import key_sensor
from geossl.core.progress import progress as progress_bar
from geossl.data.config import StatsConfig
from geossl.datasets.protocol import bands_of_sensors

#: distinct values per band counted for exact percentiles (4 MiB per band): every 16-bit band
EXACT_VALUES = 4 * 65536


class BandAccumulator:
    """Streaming statistics of ``(C, N)`` arrays of band values."""

    def __init__(self, channels: int, reservoir: int = 200_000, seed: int | Sequence[int] = 0,
                 nodata: float | None = None, exact_values: int = EXACT_VALUES) -> None:
        """Create an empty accumulator.

        Args:
            channels: number of bands.
            reservoir: values kept per band for percentiles.
            seed: seed of the reservoir's random keys (an int or a sequence of ints).
            nodata: value to ignore besides NaN and infinities.
            exact_values: distinct values counted per band for exact percentiles (beyond:
                the reservoir's estimate).
        """
        self.channels = channels
        self.reservoir = reservoir
        self.exact_values = exact_values
        #: per band: sorted distinct values and their counts, or None once there are too many
        self.hist: list[tuple[np.ndarray, np.ndarray] | None] = [
            (np.empty(0, np.float64), np.empty(0, np.int64)) for _ in range(channels)]
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
            if self.hist[c] is not None:
                self.hist[c] = _add_counts(self.hist[c], _counts(v), self.exact_values)

    def merge(self, other: BandAccumulator) -> None:
        """Add the values ``other`` saw (Chan et al.'s pairwise update; reservoirs merged by key).

        The reservoirs hold the values with the smallest random keys, so keeping the
        ``reservoir`` smallest keys of both is the reservoir of all the values.

        Raises:
            DataError: different band counts.
        """
        if other.channels != self.channels:
            raise DataError(f"a sample has {other.channels} bands, earlier ones had "
                            f"{self.channels}")
        self.invalid += other.invalid
        for c in range(self.channels):
            n_b = int(other.count[c])
            if n_b == 0:
                continue
            n_a = int(self.count[c])
            tot = n_a + n_b
            delta = other.mean[c] - self.mean[c]
            self.mean[c] += delta * n_b / tot
            self.m2[c] += other.m2[c] + delta * delta * n_a * n_b / tot
            self.count[c] = tot
            self.min[c] = min(self.min[c], other.min[c])
            self.max[c] = max(self.max[c], other.max[c])
            vals = np.concatenate([self.values[c], other.values[c]])
            ks = np.concatenate([self.keys[c], other.keys[c]])
            if vals.size > self.reservoir:
                keep = np.argpartition(ks, self.reservoir - 1)[: self.reservoir]
                vals, ks = vals[keep], ks[keep]
            self.values[c], self.keys[c] = vals, ks
            self.hist[c] = _add_counts(self.hist[c], other.hist[c], self.exact_values)

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
                _hist_percentile(h, p) if h is not None and h[1].size
                else float(np.percentile(v, p)) if v.size else np.nan
                for v, h in zip(self.values, self.hist)
            )
        out["percentiles_exact"] = bool(all(
            h is not None or n <= self.reservoir for h, n in zip(self.hist, self.count)))
        return out


def _counts(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``v`` (float64) and their counts; fast for 16-bit DN."""
    lo, hi = float(v.min()), float(v.max())
    if 0 <= lo and hi < 65536 and np.array_equal(v, np.floor(v)):
        n = np.bincount(v.astype(np.int64))
        u = np.flatnonzero(n)
        return u.astype(np.float64), n[u]
    u, n = np.unique(v, return_counts=True)
    return u.astype(np.float64), n.astype(np.int64)


def _add_counts(a: tuple[np.ndarray, np.ndarray] | None, b: tuple[np.ndarray, np.ndarray] | None,
                cap: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Sum of two value histograms (sorted distinct values, counts); None beyond ``cap`` values.

    Own code rather than a sketch library (t-digest, KLL): those are approximate by design,
    and counting distinct values is exact and small for the integer DN of satellite bands.
    """
    if a is None or b is None:
        return None
    if not b[0].size:
        return a
    if not a[0].size:
        return b if b[0].size <= cap else None
    vals = np.union1d(a[0], b[0])
    if vals.size > cap:
        return None
    counts = np.zeros(vals.size, np.int64)
    counts[np.searchsorted(vals, a[0])] += a[1]
    counts[np.searchsorted(vals, b[0])] += b[1]  # distinct values: no repeated index
    return vals, counts


def _hist_percentile(hist: tuple[np.ndarray, np.ndarray], p: float) -> float:
    """The ``p``-th percentile of the values a histogram counts, as ``np.percentile`` (linear)."""
    vals, counts = hist
    cum = np.cumsum(counts)
    pos = (int(cum[-1]) - 1) * p / 100.0
    lo = math.floor(pos)
    frac = pos - lo
    a = float(vals[np.searchsorted(cum, lo, side="right")])
    b = float(vals[np.searchsorted(cum, min(lo + 1, int(cum[-1]) - 1), side="right")])
    return a + (b - a) * frac if frac else a


# ----------------------------------------------------------------------------------------------
# iterating datasets and loaders
# ----------------------------------------------------------------------------------------------
def _identity(x: Any) -> Any:
    return x


def _int_indexable(dataset: Any) -> bool:
    geo = sys.modules.get("torchgeo.datasets")
    if geo is None:  # not imported: not a GeoDataset (and no TorchGeo import, seconds, here)
        return True
    if not isinstance(dataset, geo.GeoDataset):
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
    positions = _positions(n, max_samples, seed)
    subset = torch.utils.data.Subset(items, positions.tolist())
    if workers > 0:
        loader = DataLoader(subset, batch_size=None, shuffle=False, num_workers=workers,
                            collate_fn=_identity)
        return iter(loader), len(positions), False
    return (subset[i] for i in range(len(subset))), len(positions), False


def _positions(n: int, max_samples: int | None, seed: int) -> np.ndarray:
    """The samples summarised: all ``n``, or ``max_samples`` drawn at random with ``seed``."""
    if max_samples is not None and n > max_samples:
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(n, size=max_samples, replace=False))
    return np.arange(n)


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
    names = (bands_of_sensors(source, [sensor]) or {}).get(sensor)
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
    bar = progress_bar(total=total, desc="stats", unit="sample", disable=not progress)
    try:
        part = _accumulate(it, source, keys, bands, nodata, reservoir, seed, batched,
                           max_samples, bar.update)
    finally:
        bar.close()
    return _results(part, percentiles, getattr(source, "root", None))


class _Partial:
    """Accumulators of a part of a dataset, per image key (what a stats task returns)."""

    def __init__(self) -> None:
        self.accs: dict[str, BandAccumulator] = {}
        self.names: dict[str, list[str]] = {}
        self.chosen: dict[str, list[int]] = {}
        self.seen = 0

    def merge(self, other: _Partial) -> None:
        """Add ``other`` (same keys and bands)."""
        for key, acc in other.accs.items():
            if key not in self.accs:
                self.accs[key] = acc
                self.names[key], self.chosen[key] = other.names[key], other.chosen[key]
            else:
                if other.names[key] != self.names[key]:
                    raise DataError(f"a sample has {len(other.names[key])} bands in {key!r}, "
                                    f"earlier ones had {len(self.names[key])}")
                self.accs[key].merge(acc)
        self.seen += other.seen


def _accumulate(it: Iterable[Any], source: Any, keys: Sequence[str] | None,
                bands: Sequence[str | int] | None, nodata: float | None, reservoir: int,
                seed: int | Sequence[int], batched: bool, max_samples: int | None,
                update: Any = None) -> _Partial:
    """Feed the items of ``it`` to per-key accumulators."""
    part = _Partial()
    for item in it:
        if keys is None:
            keys = _image_keys(item)
        n_item = 1
        for key in keys:
            x, n_item = _to_bands(_get(item, key), batched)
            if key not in part.accs:
                part.names[key] = _band_names(source, key, x.shape[0])
                part.chosen[key] = _select(part.names[key], bands)
                part.accs[key] = BandAccumulator(len(part.chosen[key]), reservoir, seed, nodata)
            if x.shape[0] != len(part.names[key]):
                raise DataError(f"a sample has {x.shape[0]} bands in {key!r}, earlier ones "
                                f"had {len(part.names[key])}")
            part.accs[key].update(x[part.chosen[key]])
        part.seen += n_item
        if update is not None:
            update(n_item)
        if batched and max_samples is not None and part.seen >= max_samples:
            break
    return part


def _results(part: _Partial, percentiles: Sequence[float], where: Any) -> dict[str, Any]:
    if not part.accs:
        raise DataError("the dataset has no samples", where)
    out = {}
    for key, acc in part.accs.items():
        res = acc.result(percentiles)
        out[key] = {"bands": [part.names[key][i] for i in part.chosen[key]],
                    "samples": part.seen, **res}
    return out


# ----------------------------------------------------------------------------------------------
# a dataset named on the command line, summarised by Dask tasks
# ----------------------------------------------------------------------------------------------
def open_dataset(data: str, root: str, index: str | None = None,
                 bands: Sequence[str | int] | None = None, split_file: str | None = None,
                 split_name: str = "train") -> Any:
    """The dataset ``geossl stats`` summarises; ``chips`` falls back to reading GeoTIFFs.

    ``data='chips'`` uses the chip dataset on a chip index (``index`` or ROOT/index.parquet);
    a folder of GeoTIFFs without an index, or a missing chip module, is read file by file
    (:class:`RasterFiles`). Other names come from the dataset registry. Band names are passed
    to a dataset that selects bands (chips: an index mixing band sets needs them); positions
    are selected later by :func:`compute_stats`. With ``split_file`` only its ``split_name``
    side is read, so statistics for normalisation leave the test data out.

    Raises:
        DataError: missing chip index named by ``index``, or the dataset's own errors.
        ConfigError: unknown dataset, or a split for a folder without a chip index.
    """
    from geossl.datasets.registry import dataset_class, get_dataset

    kwargs: dict[str, Any] = {}
    if split_file is not None:
        from geossl.splits import load_split_ids

        kwargs["ids"] = load_split_ids(split_file, split_name)
    names = [str(b) for b in bands or [] if not str(b).lstrip("-").isdigit()]
    if names and len(names) == len(bands or []) and \
            "bands" in dataset_class(data).arguments:
        kwargs["bands"] = names
    if data != "chips":
        return get_dataset(data, root, **({"index": index} if index else {}), **kwargs)
    index_path = Path(index) if index else Path(root) / "index.parquet"
    if not index_path.exists():
        if index:
            raise DataError("chip index not found", index_path)
        if split_file is not None:
            raise ConfigError("--split needs a chip index (write one with `geossl index`)")
        return RasterFiles(root)  # without TorchGeo: seconds less to start on every worker
    try:
        return get_dataset("chips", root, index=str(index_path), **kwargs)
    except ConfigError as err:
        if "not available" not in str(err):
            raise
        return RasterFiles(root, index_path)


@dataclass(frozen=True)
class DatasetSpec:
    """How to open a dataset in any process (what stats tasks receive instead of the data)."""

    data: str
    root: str
    index: str | None = None
    patch_size: int = 256
    #: band names passed to the dataset (``--bands``), hashable
    bands: tuple[str | int, ...] | None = None
    split_file: str | None = None
    split_name: str = "train"


#: opened datasets of this process: spec -> (dataset, map-style items)
_OPENED: OrderedDict[DatasetSpec, tuple[Any, Any]] = OrderedDict()


def _opened(spec: DatasetSpec) -> tuple[Any, Any]:
    """The dataset of ``spec`` and its map-style items (GeoDatasets: on a grid), cached."""
    hit = _OPENED.get(spec)
    if hit is None:
        source = open_dataset(spec.data, spec.root, spec.index, spec.bands, spec.split_file,
                              spec.split_name)
        if _int_indexable(source):
            items = source
        else:
            from geossl.datasets.geogrid import geo_grid

            items = _Queries(source, geo_grid(source, spec.patch_size))
        hit = _OPENED[spec] = (source, items)
        while len(_OPENED) > 2:
            _OPENED.popitem(last=False)
    return hit


def stats_chunk(spec: DatasetSpec, positions: list[int], keys: Sequence[str],
                bands: Sequence[str | int] | None, nodata: float | None, reservoir: int,
                seed: Sequence[int]) -> _Partial:
    """Accumulate the samples at ``positions`` (one stats task; reads only)."""
    source, items = _opened(spec)
    return _accumulate((items[i] for i in positions), source, keys, bands, nodata, reservoir,
                       seed, False, None)


def dataset_stats(config: StatsConfig) -> dict[str, dict[str, Any]]:
    """Band statistics of a named dataset (``geossl stats``), in this process or on Dask.

    In this process (no scheduler, ``workers`` <= 1) this is :func:`compute_stats` on the
    dataset. On a cluster (see :mod:`geossl.runtime.dask`) the chosen samples are cut into chunks
    of ``chunk`` samples; each task opens the dataset on its worker (once per worker),
    accumulates its chunk, and the partial results are merged here in chunk order (exact
    for counts, means and variances; reservoirs merged by key), so the result does not depend
    on the number of workers. With ``out``, that file is checked first (absent, or an earlier
    statistics file) and written by :func:`write_stats`.

    Args:
        config: every option (:class:`~geossl.data.config.StatsConfig`, the flags of
            ``geossl stats``): the dataset (``data``, ``root``, ``index``; on a cluster a path
            every worker sees), at most ``max_samples`` samples drawn with ``seed``, the bands
            and image ``key``, the ``nodata`` value ignored besides NaN and infinities, a split
            file's side (``split``, ``split_name``: normalisation statistics without the test
            data) and where the tasks run.

    Returns:
        as :func:`compute_stats`.
    """
    from geossl.core.io import check_output
    from geossl.runtime.dask import Runner

    if config.out:
        check_output(config.out, "stats", folder=False)  # before computing anything
    assert config.data is not None and config.root is not None  # StatsConfig requires them
    data, root, index, max_samples = config.data, config.root, config.index, config.max_samples
    bands: Sequence[str | int] | None = config.bands
    keys: Sequence[str] | None = [config.key] if config.key else None
    nodata, percentiles, reservoir = config.nodata, config.percentiles, config.reservoir
    seed, workers, patch_size, chunk = config.seed, config.workers, config.patch_size, config.chunk
    progress, split_file, split_name = config.progress, config.split, config.split_name
    scheduler = config.scheduler_address()

    spec = DatasetSpec(data, str(root), index, patch_size,
                       tuple(bands) if bands is not None else None,
                       None if split_file is None else str(split_file), split_name)
    with Runner(scheduler, workers, progress=progress) as runner:
        if not runner.distributed:
            return compute_stats(open_dataset(data, str(root), index, bands, spec.split_file,
                                              split_name),
                                 max_samples, bands, keys, nodata, percentiles, reservoir, seed,
                                 0, patch_size, progress)
        _, items = _opened(spec)
        n = len(items)
        if n == 0:
            raise DataError("the dataset has no samples", root)
        positions = _positions(n, max_samples, seed).tolist()
        if keys is None:
            keys = _image_keys(items[positions[0]])
        tasks = runner.tasks("stats", "chunk")
        starts = list(range(0, len(positions), max(1, chunk)))
        for i, s0 in enumerate(starts):
            tasks.submit(stats_chunk, spec, positions[s0:s0 + chunk], list(keys), bands,
                         nodata, reservoir, [seed, i], tag=i)
        # merge in chunk order whatever order the tasks finish in: same result on any cluster
        total = _Partial()
        waiting: dict[int, _Partial] = {}
        nxt = 0
        for i, part in tasks:
            waiting[i] = part
            while nxt in waiting:
                total.merge(waiting.pop(nxt))
                nxt += 1
    return _results(total, percentiles, root)


def write_stats(config: StatsConfig, stats: dict[str, dict[str, Any]]) -> Path:
    """Write the statistics JSON of ``geossl stats --out`` (atomically).

    The document holds the options that chose the samples (``data``, ``root``,
    ``max_samples``, ``seed``, ``nodata``, the split side) next to ``stats``;
    ``geossl.data.normalize.get_normalizer(..., stats=FILE)`` reads it.

    Returns:
        the file written (``config.out``).
    """
    import json

    from geossl.core.io import atomic_write_text

    assert config.out is not None
    split = {"file": str(config.split), "name": config.split_name} if config.split else None
    doc = {"data": config.data, "root": str(config.root), "max_samples": config.max_samples,
           "seed": config.seed, "nodata": config.nodata, "split": split, "stats": stats}
    path = Path(config.out)
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return path


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
        from geossl.core.io import open_raster

        with open_raster(self.files[0]) as src:
            desc = list(src.descriptions)
        self.bands = [d if d else f"b{i + 1}" for i, d in enumerate(desc)]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from geossl.core.io import open_raster

        path = self.files[i]
        with open_raster(path) as src:
            try:
                data = src.read(masked=True).astype(np.float32)
            except Exception as err:  # rasterio raises RasterioIOError / CPLE_* on corrupt data
                raise DataError(f"unreadable raster ({err})", path) from err
        return {"image": torch.from_numpy(np.ma.filled(data, np.nan)), "id": str(path)}

