"""Embedding maps: slide a pretrained encoder over a whole scene and write a georeferenced cube.

``geossl embed CKPT SCENE --out OUT.zarr`` reads SCENE (a GeoTIFF, a folder with one file per
band on different grids such as a Major-TOM cell or a Sentinel-2 granule, or a chip index written
by ``geossl tile``), cuts it into ``size`` x ``size`` windows every ``stride`` pixels, runs the
encoder on every window and writes an xarray/zarr cube ``embedding(band, y, x)`` where ``band``
is the feature index and ``y``/``x`` are the centre coordinates of each window in the scene's
CRS; CRS and transform are written with rioxarray (``spatial_ref``), so
``xarray.open_zarr(OUT, decode_coords="all").rio.crs`` gives them back.

Bounded memory: the scene is processed by blocks of window rows, and each block in column
chunks; nothing larger than one chunk of the scene is ever in memory. Resumable: the cube is
created once with its full shape, each block is written with ``to_zarr(region=...)`` and
recorded in ``OUT/geossl_progress.json``; a rerun with the same parameters skips finished blocks.

Optionally (``clusters > 0``) a land-cover map without labels: ``MiniBatchKMeans`` is fitted on
a random sample of embeddings, every block is assigned to the nearest centroid, and the map is
written atomically as a GeoTIFF whose pixels are the windows (transform = stride x pixel size).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import (
    OUTPUT_MARKER,
    atomic_path,
    atomic_write_text,
    check_output,
    check_writable,
    disk_full_as_error,
    is_url,
    mark_output,
    open_raster,
    out_join,
    output_lock,
    read_text_or_none,
    remote_fs,
    remote_write_errors,
)
from geossl.core.progress import progress
from geossl.eval.features import encode
from geossl.inference.config import EmbedConfig
from geossl.pretrained.checkpoint import (
    EncoderSource,
    SensorSelection,
    bands_for,
    expected_channels,
    load_source,
    select_sensors,
)
from geossl.pretrained.normalize import make_normalizer
from geossl.runtime.devices import resolve_device

PROGRESS = "geossl_progress.json"


# --------------------------------------------------------------------------------------------
# scenes
# --------------------------------------------------------------------------------------------
class Scene:
    """A scene on one pixel grid, read by windows, whatever its on-disk form.

    A thin view over :mod:`geossl.tiling.scenes` (the module ``geossl tile`` uses): a raster file,
    a folder of one file per band at different resolutions (Major-TOM cell) or a Sentinel-2
    SAFE product, every band read onto the grid of the finest band, only the pixels a window
    needs. Invalid pixels (nodata, NaN, outside a band's extent) are read as 0.

    Attributes:
        crs: the scene's CRS.
        transform: affine transform of the common grid.
        height: rows of the common grid.
        width: columns of the common grid.
        bands: band names, in the order :meth:`read` returns them.
    """

    def __init__(self, path: Any, bands: Sequence[str] | None = None) -> None:
        """Open a scene (headers only).

        Args:
            path: raster file, folder of per-band files, SAFE product, or a remote scene
                (:class:`~geossl.tiling.remote.RemoteRaster`, a STAC item).
            bands: band names to read, in this order (default: every band).

        Raises:
            DataError: missing/unreadable files, a missing band or bands in different CRSs.
        """
        from geossl.tiling.remote import is_remote_ref
        from geossl.tiling.scenes import SceneReader, open_scene

        self.path = path if is_remote_ref(path) else Path(path)
        self._scene = open_scene(self.path, bands=list(bands) if bands is not None else None)
        grid = self._scene.grid
        self.bands: list[str] = list(self._scene.band_names)
        self.crs = grid.crs
        self.transform: Affine = grid.transform
        self.height: int = int(grid.height)
        self.width: int = int(grid.width)
        self._reader = SceneReader(self._scene)

    def close(self) -> None:
        """Close the open files."""
        self._reader.close()

    def read(self, window: Window) -> np.ndarray:
        """Read a window of the common grid as float32 ``(C, h, w)``, invalid pixels as 0."""
        return self.read_valid(window)[0]

    def read_valid(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Read a window as float32 ``(C, h, w)`` (invalid pixels as 0) and its valid mask.

        The ``(h, w)`` mask is the test ``geossl tile`` applies: inside every band, not nodata,
        not NaN or infinite, not cloud.
        """
        data, valid = self._reader.read(int(window.row_off), int(window.col_off),
                                        int(window.height), int(window.width))
        out = data.astype(np.float32, copy=False)
        out[:, ~valid] = 0
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), valid


# --------------------------------------------------------------------------------------------
# embedding
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class EmbedResult:
    """What :func:`embed` wrote."""

    cube: Any  # a Path, or the URL of a store on an object store
    cluster_map: Any
    shape: tuple[int, int, int]
    crs: str
    transform: tuple[float, ...]
    blocks_done: int
    blocks_skipped: int
    #: windows with no valid pixel (left without an embedding: NaN), out of ``windows``
    empty_windows: int = 0
    #: windows with some invalid pixels, embedded with those pixels read as 0
    holed_windows: int = 0
    windows: int = 0
    products: dict[str, Path] = dataclasses.field(default_factory=dict)
    #: rows of the GeoParquet product (``None``: not asked)
    product_rows: int | None = None
    #: windows without a vector (no valid pixel), left out of the GeoParquet (not NaN rows)
    rows_left_out: int = 0


def grid(height: int, width: int, size: int, stride: int) -> tuple[int, int]:
    """Number of window rows and columns that fit entirely in the scene."""
    if size > height or size > width:
        raise ConfigError(f"window size {size} is larger than the scene ({height} x {width})")
    return (height - size) // stride + 1, (width - size) // stride + 1


def cube_transform(transform: Affine, size: int, stride: int) -> Affine:
    """Transform of the embedding grid: one pixel per window, centred on the window centre."""
    offset = (size - stride) / 2
    return transform @ Affine.translation(offset, offset) @ Affine.scale(stride)


def _windows(x: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """``(C, h, w)`` -> ``(rows * cols, C, size, size)`` windows, row-major."""
    c = x.shape[0]
    u = x.unfold(1, size, stride).unfold(2, size, stride)  # C, rows, cols, size, size
    return u.permute(1, 2, 0, 3, 4).reshape(-1, c, size, size)


def _create_store(out: Path, n_feat: int, ys: np.ndarray, xs: np.ndarray, crs: Any,
                  transform: Affine, block_rows: int, col_chunk: int,
                  attrs: dict[str, Any]) -> None:
    import rioxarray  # noqa: F401 - registers the .rio accessor
    import xarray as xr
    import zarr

    ds = xr.Dataset(coords={"band": np.arange(n_feat), "y": ys, "x": xs})
    ds = ds.rio.write_crs(crs).rio.write_transform(transform)
    ds.attrs.update(attrs)
    _clear_store(out)
    ds.to_zarr(out, mode="a", consolidated=True)  # an empty group: only our bookkeeping
    group = zarr.open_group(str(out), mode="r+")
    group.create_array(
        "embedding", shape=(n_feat, len(ys), len(xs)),
        chunks=(n_feat, min(block_rows, len(ys)), min(col_chunk, len(xs))), dtype="float32",
        fill_value=float("nan"), dimension_names=("band", "y", "x"),
        attributes={"grid_mapping": "spatial_ref", "long_name": "encoder embedding"},
    )
    import warnings

    with warnings.catch_warnings():  # our marker and lock files beside the cube
        warnings.filterwarnings("ignore", message="Object at .geossl")
        zarr.consolidate_metadata(str(out))


#: what a store holds besides the cube: kept when the cube is made again
_KEEP = (OUTPUT_MARKER, ".geossl.lock", PROGRESS)


def _clear_store(out: Any) -> None:
    """Remove an earlier cube from ``out`` (this command's own output), keeping its bookkeeping.

    Not ``to_zarr(mode="w")``: zarr would empty the whole folder, marker and lock included.
    """
    text = os.fspath(out)
    if is_url(text):
        fs, root = remote_fs(text)
        if fs.isdir(root):
            for entry in fs.ls(root, detail=False, refresh=True):
                if entry.rstrip("/").rsplit("/", 1)[-1] not in _KEEP:
                    fs.rm(entry, recursive=True)
        return
    import shutil

    folder = Path(text)
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name in _KEEP:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _remove_store(out: Any) -> None:
    """Remove a store this call created and left empty (nothing in it is anybody else's)."""
    text = os.fspath(out)
    if is_url(text):
        fs, root = remote_fs(text)
        if fs.exists(root):
            fs.rm(root, recursive=True)
        return
    import shutil

    shutil.rmtree(text, ignore_errors=True)


def _blocks(ny: int, block_rows: int) -> Iterator[tuple[int, int, int]]:
    for b, r0 in enumerate(range(0, ny, block_rows)):
        yield b, r0, min(ny, r0 + block_rows)


def embed(config: EmbedConfig) -> EmbedResult:
    """Write the embedding cube of a scene (and optionally its k-means cluster map).

    The blocks of window rows are Dask tasks (see :mod:`geossl.runtime.dask`): each one reads its
    part of the scene, runs the encoder and writes its region of the zarr cube (whole chunks,
    each written atomically); this process creates the cube, records finished blocks and
    fits the cluster map. On a cluster every worker loads the checkpoint once.

    Args:
        config: every option (:class:`~geossl.inference.config.EmbedConfig`, the flags of
            ``geossl embed``): the encoder (``ckpt``), the ``scene`` (GeoTIFF, folder of per-band
            files, chip index, raster URL read by range requests, or STAC Item /
            ItemCollection JSON, ``scene_id`` picking the item), the zarr store ``out``, the
            window grid (``size``, ``stride``; ``block_rows`` window rows per block: the unit
            of progress, resume, memory and tasks), the bands read (default: the checkpoint's
            band names for ``sensor``, else every band; a scene whose bands carry no names is
            read whole when its band count is the encoder's), the sensor (a ``geo`` encoder's
            per-sensor stem, default its first; a fusion encoder: default all its sensors,
            stacked), the cluster map (``clusters``: k, 0 none), where the tasks run
            (``workers`` local processes, or an existing Dask scheduler) and the products
            (``format``: ``zarr``, ``geoparquet``, ``cog``, several at once; the cube is
            always the resumable working store, removed when ``zarr`` is not asked for).
            The windows come from ``sampler``: ``grid`` (geossl's reads of the scene grid) or
            ``torchgeo-grid`` (TorchGeo's grid sampler over the scene as a TorchGeo
            ``RasterDataset``, :class:`_TorchGeoGridLayout`); the same cube either way.

    Returns:
        the paths, cube shape ``(D, rows, cols)``, CRS and transform.

    Raises:
        DataError: unreadable scene, missing band, channel count not matching the encoder.
        ConfigError: bad window parameters, unknown sensor.
    """
    scheduler = config.scheduler_address()  # a damaged scheduler file: before any write
    local_inputs = tuple(os.fspath(x) for x in (config.ckpt, config.scene)
                         if isinstance(x, str | os.PathLike) and not is_url(os.fspath(x)))
    # the zarr store is a folder: absent, empty or an earlier embed store (never a user's)
    out_path = check_output(config.out, "embed", own=(PROGRESS,), inputs=local_inputs)
    fmts = _check_products(config, out_path, local_inputs)
    ref, where = _scene_ref(config.scene, config.scene_id)
    job = _job(config, ref, out_path)
    state = _state(job)  # here: the cube's geometry (and the tasks' state when run inline)
    layout, n_feat = state.layout, state.n_feat
    params = {"checkpoint": state.source.key, "scene": where, "size": layout.size,
              "stride": layout.stride, "block_rows": config.block_rows, "bands": layout.bands,
              "sensor": state.chosen, "shape": [n_feat, layout.ny, layout.nx]}
    if config.sampler != "grid":  # (absent for grid: stores made before --sampler still resume)
        params["sampler"] = config.sampler
    progress_file = out_join(out_path, PROGRESS)
    try:
        with output_lock(out_path, "embed"), disk_full_as_error(out_path), \
                remote_write_errors(out_path):
            done, holed, empty = _resume_or_create(config, out_path, progress_file, params,
                                                   n_feat, layout)
            return _embed_blocks(config, job, out_path, progress_file, params, done, holed,
                                 empty, n_feat, layout, scheduler, where, fmts)
    finally:
        _drop_state(job)


def _check_products(config: EmbedConfig, out: Any, local_inputs: tuple[str, ...]) -> list[str]:
    """The products asked for (``config.format``), each checked writable, and the cluster map.

    Raises:
        ConfigError: a GeoParquet or COG beside a cube on an object store.
        DataError: a product or cluster map path this command may not write.
    """
    from geossl.embeddings.records import parse_formats, product_paths

    fmts = parse_formats(config.format)
    if is_url(os.fspath(out)) and any(f != "zarr" for f in fmts):
        raise ConfigError("--format geoparquet/cog are written beside a local cube; give a "
                          "local --out (an object-store --out writes the zarr cube only)")
    for f, p in product_paths(out, fmts).items():
        if f != "zarr":
            check_writable(p, folder=False, flag=f"--format {f}")
    if config.cluster_map is not None:
        check_output(config.cluster_map, "embed", folder=False, flag="--cluster-map",
                     inputs=local_inputs)
    return fmts


def _job(config: EmbedConfig, scene: Any, out: Any) -> EmbedJob:
    """The tasks' job: named weights are resolved once here, the jobs get the encoder itself."""
    import uuid

    from geossl.pretrained.foundation import is_weights_spec

    bands = config.bands
    ckpt = config.ckpt
    if is_weights_spec(ckpt):
        ckpt = load_source(str(ckpt), data_bands=list(bands) if bands is not None else None,
                           preprocess=config.preprocess)
    return EmbedJob(
        token=uuid.uuid4().hex, ckpt=ckpt if isinstance(ckpt, EncoderSource) else str(ckpt),
        scene=scene, scene_id=config.scene_id,
        bands=tuple(bands) if bands is not None else None, sensor=config.sensor,
        size=config.size, stride=config.window_step(),  # checked by EmbedConfig
        col_chunk=config.col_chunk, batch_size=config.batch_size,
        device=str(config.accelerator) if config.accelerator is not None else None,
        bf16=config.bf16, out=str(out), sampler=config.sampler,
    )


def _resume_or_create(config: EmbedConfig, out_path: Any, progress_file: Any,
                      params: dict[str, Any], n_feat: int, layout: _Layout
                      ) -> tuple[set[int], dict[str, int], dict[str, int]]:
    """Blocks an earlier run of the same store finished; creates the store when there are none.

    Returns:
        the finished blocks, and per block the windows with some / with only invalid pixels.

    Raises:
        ConfigError: the store was made with other parameters (checkpoint, scene, size,
            stride, bands, ...): resuming would mix two cubes in one store.
        DataError: a damaged progress record (never a silent restart).
    """
    done: set[int] = set()
    # block -> windows with some / with only invalid pixels (kept for a resumed run)
    holed: dict[str, int] = {}
    empty: dict[str, int] = {}
    text = read_text_or_none(progress_file) if config.resume else None
    prev: Any = None
    if text is not None:
        try:
            prev = json.loads(text)
        except ValueError as err:  # cut short, edited, another file: never a silent restart
            raise DataError(f"damaged progress record ({type(err).__name__}): remove "
                            f"{PROGRESS} and the store's blocks, or give another --out, to "
                            "embed again", os.fspath(progress_file)) from None
        if not isinstance(prev, dict):
            raise DataError("damaged progress record (not a JSON object)",
                            os.fspath(progress_file))
    if isinstance(prev, dict) and isinstance(prev.get("params"), dict) and prev.get("done"):
        old = prev["params"]
        if old != params:
            diff = [f"{k} {_short(old.get(k))} (now {_short(params.get(k))})"
                    for k in params if old.get(k) != params.get(k)]
            raise ConfigError(f"{out_path} holds an embedding made with other parameters: "
                              f"{'; '.join(diff)}; give another --out, or the same "
                              "parameters to resume it")
        done = {int(b) for b in prev.get("done", [])}
        holed = {str(k): int(v) for k, v in (prev.get("holed") or {}).items()}
        empty = {str(k): int(v) for k, v in (prev.get("empty") or {}).items()}
    if not done:
        mark_output(out_path, "embed")
        attrs = {"geossl_" + k: json.dumps(v) if not isinstance(v, (str, int)) else v
                 for k, v in params.items()}
        t = layout.transform  # the coordinates are the windows' centres
        xs = np.array([t.c + t.a * (j + 0.5) for j in range(layout.nx)])
        ys = np.array([t.f + t.e * (i + 0.5) for i in range(layout.ny)])
        _create_store(out_path, n_feat, ys, xs, layout.crs, t, config.block_rows,
                      config.col_chunk, attrs)
        atomic_write_text(progress_file, json.dumps({"params": params, "done": []}))
    return done, holed, empty


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:28] + "..." + text[-28:]


def _embed_blocks(config: EmbedConfig, job: EmbedJob, out_path: Any, progress_file: Any,
                  params: dict[str, Any], done: set[int], holed: dict[str, int],
                  empty: dict[str, int], n_feat: int, layout: _Layout, scheduler: str | None,
                  where: str, fmts: Sequence[str]) -> EmbedResult:
    """Run the blocks not ``done`` as tasks, then the cluster map and the products.

    The body of :func:`embed`.
    """
    from geossl.runtime.dask import Runner

    created = not done  # this call made the store (removed again if it holds nothing)
    ny, nx = layout.ny, layout.nx
    ctrans = layout.transform
    blocks = list(_blocks(ny, config.block_rows))
    skipped = sum(1 for b, _, _ in blocks if b in done)
    try:
        with Runner(scheduler, config.workers, progress=config.progress is not False) as runner:
            if runner.distributed:
                _drop_state(job)  # the workers build their own; free the encoder here
            tasks = runner.tasks("embed", "block")
            for b, r0, r1 in blocks:
                if b not in done:
                    tasks.submit(embed_block, job, r0, r1, tag=b)
            for b, result in tasks:
                done.add(b)
                holed[str(b)], empty[str(b)] = int(result[2]), int(result[3])
                atomic_write_text(progress_file, json.dumps({
                    "params": params, "done": sorted(done), "holed": holed, "empty": empty}))
    finally:
        _drop_state(job)
    n_holed, n_empty = sum(holed.values()), sum(empty.values())
    if n_empty == ny * nx:
        if created:  # the store this call created holds nothing: leave nothing behind
            _remove_store(out_path)
        raise DataError(f"no valid pixel in any of the {ny * nx} windows of this scene "
                        "(nodata, NaN, cloud): nothing to embed", where)
    _warn_invalid(where, n_empty, n_holed, ny * nx)
    cmap_path: Any = None
    if config.clusters > 0:
        base = os.fspath(out_path).rstrip("/")
        cmap_path = Path(config.cluster_map) if config.cluster_map else (
            base.removesuffix(".zarr") + "_clusters.tif" if is_url(base)
            else out_path.with_name(out_path.name.removesuffix(".zarr") + "_clusters.tif"))
        write_cluster_map(out_path, cmap_path, config.clusters, layout.crs, ctrans,
                          config.block_rows, config.cluster_sample, config.seed)
    written = _write_products(out_path, fmts)
    return EmbedResult(out_path, cmap_path, (n_feat, ny, nx), str(layout.crs),
                       tuple(ctrans)[:6], len(blocks) - skipped, skipped, n_empty, n_holed,
                       ny * nx, written.paths, written.rows, written.left_out)


def _warn_invalid(where: str, empty: int, holed: int, total: int) -> None:
    """One warning line when windows had invalid pixels (as ``tile``, ``stats``, ``pretrain``)."""
    import warnings

    from geossl.core.errors import GeosslWarning

    if not empty and not holed:
        return
    parts = []
    if empty:
        parts.append(f"{empty} of {total} windows have no valid pixel (left empty: NaN in the "
                     "cube, nodata in the cluster map and the COG, no row in the GeoParquet)")
    if holed:
        parts.append(f"{holed} of {total} windows have some invalid pixels, embedded with "
                     "them read as 0")
    warnings.warn(GeosslWarning(f"{where}: nodata, NaN or cloud: {'; '.join(parts)}"),
                  stacklevel=3)


def _write_products(cube: Path, formats: Sequence[str]) -> Any:
    """GeoParquet / COG of the finished cube; the cube itself goes when ``zarr`` is not asked.

    Returns:
        :class:`geossl.embeddings.records.ProductsWritten` (paths, GeoParquet rows, windows
        left out of it).
    """
    import shutil

    from geossl.embeddings.records import write_products

    written = write_products(cube, formats)
    if "zarr" not in formats and (cube / PROGRESS).is_file():
        shutil.rmtree(cube)  # our own working store (it holds our progress record)
    return written


@dataclasses.dataclass(frozen=True)
class EmbedJob:
    """Everything a task needs to embed blocks of a scene (picklable, sent to the workers).

    ``token`` is unique per :func:`embed` call: each process builds the job's state (encoder,
    open scene) once and keeps it for the job's other blocks.
    """

    token: str
    ckpt: Any  # checkpoint path, or an EncoderSource
    scene: Any  # local path (str), chip index path, RemoteRaster or StacScene
    scene_id: str | None
    bands: tuple[str, ...] | None
    sensor: SensorSelection
    size: int
    stride: int
    col_chunk: int
    batch_size: int
    device: str | None
    bf16: bool
    out: str
    sampler: str = "grid"


class _EmbedState:
    """A job's encoder and scene layout in one process."""

    def __init__(self, job: EmbedJob) -> None:
        from geossl.runtime.dask import on_worker, worker_threads

        if on_worker():
            torch.set_num_threads(worker_threads())
        self.job = job
        self.source = load_source(job.ckpt)
        self.chosen = select_sensors(self.source.meta, job.sensor)
        wanted = list(job.bands) if job.bands is not None else bands_for(self.source.meta,
                                                                         self.chosen)
        self.dev = resolve_device(job.device)
        self.encoder = self.source.encoder.eval().to(self.dev)
        self.normalizer = make_normalizer(self.source.meta, self.chosen)
        self.n_feat = int(getattr(self.source.encoder, "num_features"))  # noqa: B009
        self.n_in = expected_channels(self.source.meta, self.chosen)
        scene = job.scene
        self.layout: _Layout
        chips = isinstance(scene, str) and scene.lower().endswith((".parquet", ".geoparquet"))
        if job.sampler != "grid" and (chips or not isinstance(scene, str)):
            raise ConfigError(f"--sampler {job.sampler} reads a local GeoTIFF or band folder "
                              "as a TorchGeo raster dataset; a chip index or a remote scene "
                              "takes --sampler grid")
        if chips:
            self.layout = _ChipLayout(Path(scene), wanted, job.scene_id, self.run, self.n_feat)
        else:
            opened = _open_scene(scene, wanted, self.n_in, explicit=job.bands is not None)
            cls = _TorchGeoGridLayout if job.sampler == "torchgeo-grid" else _SceneLayout
            self.layout = cls(opened, job.size, job.stride, job.col_chunk, self.run, self.n_feat)

    @torch.no_grad()
    def run(self, wins: torch.Tensor) -> np.ndarray:
        """Embeddings ``(N, D)`` of windows ``(N, C, size, size)``."""
        if self.n_in is not None and wins.shape[1] != self.n_in:
            raise DataError(f"scene has {wins.shape[1]} bands but the encoder takes "
                            f"{self.n_in}", _where(self.job.scene))
        feats = []
        bs = self.job.batch_size
        for s in range(0, len(wins), bs):
            x = wins[s:s + bs].to(self.dev)
            if self.normalizer is not None:
                x = self.normalizer(x)
            with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.job.bf16):
                feats.append(encode(self.encoder, x, self.chosen).float().cpu())
        return torch.cat(feats).numpy()


#: job states of this process (encoder + open scene), newest last
_STATES: OrderedDict[str, _EmbedState] = OrderedDict()


def _state(job: EmbedJob) -> _EmbedState:
    st = _STATES.get(job.token)
    if st is None:
        st = _STATES[job.token] = _EmbedState(job)
        while len(_STATES) > 2:
            _STATES.popitem(last=False)[1].layout.close()
    return st


def _drop_state(job: EmbedJob) -> None:
    st = _STATES.pop(job.token, None)
    if st is not None:
        st.layout.close()


def embed_block(job: EmbedJob, r0: int, r1: int) -> tuple[int, int, int, int]:
    """Embed window rows ``r0:r1`` and write them to the cube (one task; idempotent).

    The region covers whole zarr chunks (``block_rows`` rows, every column chunk), each
    written atomically, so a task run again after its worker died rewrites the same chunks.
    Windows without a valid pixel stay NaN.

    Returns:
        ``(r0, r1, windows with some invalid pixels, windows without a valid pixel)``.
    """
    import zarr

    layout = _state(job).layout
    block = layout.block(r0, r1)
    arr: Any = zarr.open_group(job.out, mode="r+")["embedding"]
    arr[:, r0:r1, :] = block
    return r0, r1, *layout.invalid(r0)


def _where(ref: Any) -> str:
    """A scene reference for messages and the resume record."""
    from geossl.tiling.remote import RemoteRaster, StacScene

    if isinstance(ref, RemoteRaster):
        return ref.url
    if isinstance(ref, StacScene):
        return f"{ref.source}#{ref.id}"
    return str(Path(ref).resolve())


def _scene_ref(scene: Any, scene_id: str | None) -> tuple[Any, str]:
    """The scene as tasks see it (a path string or a remote scene) and its name for the record.

    Raises:
        ConfigError: a STAC JSON with several items and no (or an unknown) ``scene_id``.
    """
    from geossl.core.io import is_url
    from geossl.tiling.remote import RemoteRaster, is_remote_ref, is_stac_json, stac_scenes

    if is_remote_ref(scene):
        return scene, _where(scene)
    text = os.fspath(scene)
    if is_stac_json(text):
        items = stac_scenes(text)
        if scene_id is not None:
            items = [s for s in items if scene_id in (s.id, s.name)]
            if not items:
                raise ConfigError(f"no item {scene_id!r} in STAC file {text}")
        elif len(items) > 1:
            raise ConfigError(f"STAC file {text} holds {len(items)} items; pick one with "
                              f"--scene-id ({', '.join(s.id for s in items[:5])}...)")
        return items[0], _where(items[0])
    if is_url(text):
        ref = RemoteRaster(text)
        return ref, _where(ref)
    return text, _where(text)


def _open_scene(path: Any, bands: Sequence[str] | None, n_in: int | None,
                explicit: bool) -> Scene:
    """Open the scene with the checkpoint's bands; a scene without band names is read whole.

    A GeoTIFF written without band descriptions names its bands ``B1..Bn``, which cannot match
    the checkpoint's names (``B01``, ``VV``, ...): when the bands were not given explicitly and
    the file has exactly the encoder's band count, its bands are taken in file order.
    """
    try:
        return Scene(path, bands)
    except DataError:
        if explicit or bands is None or n_in is None:
            raise
        whole = Scene(path)
        generic = [f"B{i + 1}" for i in range(len(whole.bands))]
        if whole.bands == generic and len(whole.bands) == n_in:
            print(f"geossl embed: {path} has no band names; reading its {n_in} bands in file "
                  f"order as {', '.join(bands)}")
            return whole
        whole.close()
        raise


class _Layout:
    """Where windows come from: a scene grid or a chip index."""

    ny: int
    nx: int
    size: int
    stride: int
    bands: list[str]
    crs: Any
    transform: Affine

    def block(self, r0: int, r1: int) -> np.ndarray:  # pragma: no cover - interface
        """Embeddings ``(D, r1 - r0, nx)`` of window rows ``r0:r1``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release open files."""

    def invalid(self, r0: int) -> tuple[int, int]:
        """Windows of the block at row ``r0`` with some, and with only, invalid pixels."""
        return 0, 0


class _SceneLayout(_Layout):
    def __init__(self, scene: Scene, size: int, stride: int, col_chunk: int,
                 run: Any, n_feat: int) -> None:
        self.scene, self.size, self.stride, self.col_chunk = scene, size, stride, col_chunk
        self.run, self.n_feat = run, n_feat
        self.ny, self.nx = grid(scene.height, scene.width, size, stride)
        self.bands, self.crs = list(scene.bands), scene.crs
        self.transform = cube_transform(scene.transform, size, stride)
        self._invalid: dict[int, tuple[int, int]] = {}

    def block(self, r0: int, r1: int) -> np.ndarray:
        out = np.full((self.n_feat, r1 - r0, self.nx), np.nan, dtype=np.float32)
        size, stride = self.size, self.stride
        holed = empty = 0
        for c0 in range(0, self.nx, self.col_chunk):
            c1 = min(self.nx, c0 + self.col_chunk)
            win = Window(c0 * stride, r0 * stride, (c1 - c0 - 1) * stride + size,
                         (r1 - r0 - 1) * stride + size)
            data, valid = self.scene.read_valid(win)
            # valid pixels per window: the same windows as the data, one channel
            n_valid = _windows(torch.from_numpy(valid[None]), size, stride).sum((1, 2, 3))
            keep = (n_valid > 0).numpy()
            holed += int(((n_valid > 0) & (n_valid < size * size)).sum())
            empty += int((~keep).sum())
            if not keep.any():
                continue
            wins = _windows(torch.from_numpy(data), size, stride)[torch.from_numpy(keep)]
            f = np.full((len(keep), self.n_feat), np.nan, dtype=np.float32)
            f[keep] = self.run(wins)
            out[:, :, c0:c1] = f.reshape(r1 - r0, c1 - c0, self.n_feat).transpose(2, 0, 1)
        self._invalid[r0] = (holed, empty)
        return out

    def invalid(self, r0: int) -> tuple[int, int]:
        return self._invalid.pop(r0, (0, 0))

    def close(self) -> None:
        self.scene.close()


class _TorchGeoGridLayout(_SceneLayout):
    """The scene's windows drawn by TorchGeo's grid sampler, read by TorchGeo (``torchgeo-grid``).

    The scene is opened as a TorchGeo ``RasterDataset``
    (:class:`~geossl.datasets.rasters.SceneRasters`, the dataset of ``pretrain --data rasters``)
    at the scene grid's pixel size, and TorchGeo's grid sampler
    (:func:`geossl.core.compat.grid_sampler`: ``GridGeoSampler`` or 0.10's ``GriddedPatchSampler``)
    draws ``size`` px windows every ``stride`` px. The cube keeps the grid of :class:`_SceneLayout`
    (same shape, coordinates and transform): the sampler's region of interest is the cube's
    extent, the windows that fit entirely in the scene, so its windows are the cube's cells.
    (Without it, TorchGeo 0.8's grid starts at the bottom edge and its last row and column reach
    past the scene, read as no data; ``geossl bench samplers`` shows the cost.) The region is
    shrunk by a millionth of a pixel so that floating-point rounding in the samplers' row counts
    adds no window; each drawn window is placed by its upper-left corner and read at that cell's
    exact bounds. A pixel is invalid when it is NaN or 0 in every band (TorchGeo reads nodata and
    the outside of a footprint as 0).
    """

    def __init__(self, scene: Scene, size: int, stride: int, col_chunk: int,
                 run: Any, n_feat: int) -> None:
        import shapely

        from geossl.core import compat
        from geossl.datasets.registry import get_dataset

        super().__init__(scene, size, stride, col_chunk, run, n_feat)
        t = scene.transform
        if not isinstance(scene.path, Path):
            raise ConfigError("--sampler torchgeo-grid reads a local scene", str(scene.path))
        try:
            self.dataset = get_dataset("rasters", scene.path, bands=self.bands, res=abs(t.a))
        except (DataError, ConfigError) as err:
            raise DataError(f"--sampler torchgeo-grid: TorchGeo cannot read this scene as one "
                            f"raster dataset ({err})", scene.path) from None
        px, py = abs(t.a), abs(t.e)
        self._x0, self._y1 = t.c, t.f  # the scene's upper-left corner
        x1 = t.c + px * ((self.nx - 1) * stride + size)
        y0 = t.f - py * ((self.ny - 1) * stride + size)
        eps = 1e-6 * min(px, py)
        roi = shapely.box(t.c + eps, y0 + eps, x1 - eps, t.f - eps)
        #: window row -> [(column, query)], the query at the cell's exact bounds
        self.cells: dict[int, list[tuple[int, Any]]] = {}
        #: windows the sampler drew off the cube's cells (dropped; none expected)
        self.off_grid = 0
        self.drawn = 0
        for q in compat.grid_sampler(self.dataset, size, stride, roi=roi):
            self.drawn += 1
            col = (q[0].start - self._x0) / (px * stride)
            row = (self._y1 - q[1].stop) / (py * stride)
            r, c = round(row), round(col)
            if abs(row - r) > 1e-3 or abs(col - c) > 1e-3 or not (
                    0 <= r < self.ny and 0 <= c < self.nx):
                self.off_grid += 1
                continue
            cx = self._x0 + c * stride * px
            cy = self._y1 - r * stride * py
            exact = (slice(cx, cx + size * px), slice(cy - size * py, cy), *tuple(q)[2:])
            self.cells.setdefault(r, []).append((c, exact))

    def block(self, r0: int, r1: int) -> np.ndarray:
        out = np.full((self.n_feat, r1 - r0, self.nx), np.nan, dtype=np.float32)
        cells = [(r, c, q) for r in range(r0, r1) for c, q in self.cells.get(r, [])]
        holed = empty = 0
        full = self.size * self.size
        for s in range(0, len(cells), self.col_chunk):
            part, wins = [], []
            for r, c, q in cells[s:s + self.col_chunk]:
                x = self.dataset[q]["image"].float()
                if tuple(x.shape[1:]) != (self.size, self.size):
                    raise DataError(f"TorchGeo read a {tuple(x.shape[1:])} window for a "
                                    f"{self.size} px query", self.scene.path)
                valid = (torch.isfinite(x) & (x != 0)).any(0)
                n_valid = int(valid.sum())
                if n_valid == 0:
                    empty += 1
                    continue
                holed += n_valid < full
                part.append((r, c))
                wins.append(torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))
            if wins:
                f = self.run(torch.stack(wins))
                rr = np.array([r - r0 for r, _ in part])
                cc = np.array([c for _, c in part])
                out[:, rr, cc] = f.T
        self._invalid[r0] = (int(holed), empty)
        return out


class _ChipLayout(_Layout):
    """Chips of one scene of a ``geossl tile`` chip index, placed by their ``row``/``col``."""

    def __init__(self, index: Path, bands: Sequence[str] | None, scene_id: str | None,
                 run: Any, n_feat: int) -> None:
        import pandas as pd

        try:
            df = pd.read_parquet(index)
        except Exception as err:
            raise DataError(f"unreadable chip index ({type(err).__name__})", index) from err
        need = {"path", "row", "col", "height", "width"}
        if not need <= set(df.columns):
            raise DataError(f"chip index lacks columns {sorted(need - set(df.columns))}", index)
        if "scene" in df.columns:
            scenes = sorted(map(str, df["scene"].unique()))
            if scene_id is None and len(scenes) > 1:
                raise ConfigError(f"chip index holds {len(scenes)} scenes; pick one with "
                                  f"--scene-id ({', '.join(scenes[:5])}...)")
            if scene_id is not None:
                if scene_id not in scenes:
                    raise ConfigError(f"scene {scene_id!r} not in chip index {index}")
                df = df[df["scene"].astype(str) == scene_id]
        df = df.reset_index(drop=True)
        if df["height"].nunique() > 1 or df["width"].nunique() > 1 or \
                int(df["height"].iloc[0]) != int(df["width"].iloc[0]):
            raise DataError("chips of one scene must be squares of one size to be placed in "
                            "one cube", index)
        self.df, self.root, self.run, self.n_feat = df, index.parent, run, n_feat
        self.size = int(df["height"].iloc[0])
        first = self.root / str(df["path"].iloc[0])
        with open_raster(first) as src:
            self.crs = src.crs
            chip_t = src.transform
            names = [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]
        row_px, col_px = _chip_offsets(df, abs(chip_t.a), abs(chip_t.e), index)
        rows, cols = np.unique(row_px), np.unique(col_px)
        steps = np.concatenate([np.diff(rows), np.diff(cols)])
        self.stride = int(steps[steps > 0].min()) if (steps > 0).any() else self.size
        self.row0, self.col0 = int(rows.min()), int(cols.min())
        self.ny = int((rows.max() - self.row0) // self.stride + 1)
        self.nx = int((cols.max() - self.col0) // self.stride + 1)
        r, c = int(row_px[0]), int(col_px[0])
        scene_t = chip_t @ Affine.translation(-c, -r)
        origin = scene_t @ Affine.translation(self.col0, self.row0)
        self.transform = cube_transform(origin, self.size, self.stride)
        self.bands = list(bands) if bands is not None else names
        self._select = None
        if bands is not None:
            up = [n.upper() for n in names]
            missing = [b for b in bands if b.upper() not in up]
            if missing:
                raise DataError(f"band {missing[0]} not in chips (has {', '.join(names)})",
                                first)
            self._select = [up.index(b.upper()) + 1 for b in bands]
        off_i, off_j = row_px - self.row0, col_px - self.col0
        if ((off_i % self.stride) != 0).any() or ((off_j % self.stride) != 0).any():
            raise DataError(f"chips are not on one grid of step {self.stride} px (offsets in "
                            "the scene grid that are not multiples of the smallest step)",
                            index)
        self.i = (off_i // self.stride).astype(int)
        self.j = (off_j // self.stride).astype(int)
        cell = self.i * self.nx + self.j
        uniq, counts = np.unique(cell, return_counts=True)
        if (counts > 1).any():  # one vector per cell: never overwrite one chip with another
            dup = int(uniq[counts > 1][0])
            same = np.flatnonzero(cell == dup)[:2]
            a, b = (str(df["chip_id"].iloc[k]) if "chip_id" in df.columns
                    else str(df["path"].iloc[k]) for k in same)
            raise DataError(f"chips {a} and {b} fall on one cell of the cube (same place in "
                            "the scene grid); give one chip per place (--scene-id, or an "
                            "index without duplicates)", index)

    def block(self, r0: int, r1: int) -> np.ndarray:
        out = np.full((self.n_feat, r1 - r0, self.nx), np.nan, dtype=np.float32)
        rows = np.flatnonzero((self.i >= r0) & (self.i < r1))
        for s in range(0, len(rows), 256):
            part = rows[s:s + 256]
            chips = []
            for k in part:
                with open_raster(self.root / str(self.df["path"].iloc[k])) as src:
                    arr = src.read(self._select, out_dtype=np.float32)
                chips.append(np.nan_to_num(arr))
            f = self.run(torch.from_numpy(np.stack(chips)))
            out[:, self.i[part] - r0, self.j[part]] = f.T
        return out


def _chip_offsets(df: Any, px: float, py: float, index: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets ``(row, col)`` of the chips of one scene on one grid.

    From the footprints (``minx``, ``maxy``) when the index has them: ``geossl index`` records
    ``row = col = -1`` (unknown) for chips that ``geossl tile`` did not cut (no offset in their
    tags). Otherwise from ``row``/``col``, which must then be known.

    Raises:
        DataError: chips in several CRSs, or not on one pixel grid.
    """
    if not {"minx", "maxy"} <= set(df.columns):
        rows, cols = df["row"].to_numpy(np.int64), df["col"].to_numpy(np.int64)
        if (rows < 0).any() or (cols < 0).any():
            raise DataError("chip index has neither footprints (minx, maxy) nor grid offsets "
                            "(row/col -1: chips not cut by `geossl tile`); cannot place the "
                            "chips on one grid", index)
        return rows, cols
    if "crs" in df.columns and df["crs"].astype(str).nunique() > 1:
        raise DataError("chips of one scene in several CRSs; give one scene (--scene-id)",
                        index)
    fc = (df["minx"].to_numpy(np.float64) - float(df["minx"].min())) / px
    fr = (float(df["maxy"].max()) - df["maxy"].to_numpy(np.float64)) / py
    cols, rows = np.rint(fc), np.rint(fr)
    if np.abs(fc - cols).max() > 1e-3 or np.abs(fr - rows).max() > 1e-3:
        raise DataError(f"chips are not on one pixel grid of {px:g} x {py:g} (footprints "
                        "offset by a fraction of a pixel)", index)
    return rows.astype(np.int64), cols.astype(np.int64)


def write_cluster_map(
    cube: str | os.PathLike[str],
    path: str | os.PathLike[str],
    clusters: int,
    crs: Any,
    transform: Affine,
    block_rows: int = 8,
    sample: int = 20000,
    seed: int = 0,
) -> Path:
    """Fit MiniBatchKMeans on a sample of the cube and write the cluster map GeoTIFF.

    Args:
        cube: zarr cube written by :func:`embed`.
        path: GeoTIFF to write (atomically).
        clusters: k.
        crs: CRS of the map.
        transform: transform of the cube grid.
        block_rows: rows read at once.
        sample: embeddings used to fit k-means (spread over all blocks).
        seed: sampling and k-means seed.

    Returns:
        the path written. Windows without an embedding (NaN) get nodata 255 / 65535.
    """
    import xarray as xr
    from sklearn.cluster import MiniBatchKMeans

    ds = xr.open_zarr(cube, consolidated=True)
    emb = ds["embedding"]
    n_feat, ny, nx = emb.shape
    rng = np.random.default_rng(seed)
    per_block = max(1, sample * block_rows // max(1, ny))
    picks = []
    for _, r0, r1 in progress(list(_blocks(ny, block_rows)), desc="cluster map: sample",
                              unit="block"):
        v = emb.isel(y=slice(r0, r1)).values.reshape(n_feat, -1).T
        v = v[np.isfinite(v).all(1)]
        if len(v):
            picks.append(v[rng.choice(len(v), min(per_block, len(v)), replace=False)])
    if not picks:
        raise DataError("embedding cube is empty", cube)
    data = np.concatenate(picks)
    k = min(clusters, len(data))
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=1024, n_init=3)
    km.fit(data)
    dtype, nodata = ("uint8", 255) if k < 255 else ("uint16", 65535)
    profile = {"driver": "GTiff", "height": ny, "width": nx, "count": 1, "dtype": dtype,
               "crs": crs, "transform": transform, "nodata": nodata, "compress": "deflate"}
    dest: Any = path if is_url(path) else Path(path)
    with atomic_path(dest) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for _, r0, r1 in progress(list(_blocks(ny, block_rows)), desc="cluster map: assign",
                                  unit="block"):
            v = emb.isel(y=slice(r0, r1)).values.reshape(n_feat, -1).T
            ok = np.isfinite(v).all(1)
            lab = np.full(len(v), nodata, dtype=dtype)
            if ok.any():
                lab[ok] = km.predict(v[ok].astype(np.float32)).astype(dtype)
            dst.write(lab.reshape(r1 - r0, nx), 1, window=Window(0, r0, nx, r1 - r0))
    return dest
