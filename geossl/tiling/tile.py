"""Cut scenes into chips on one common grid, and write the GeoParquet chip index.

:func:`tile` is what ``geossl tile`` runs. For every scene (see :mod:`geossl.tiling.scenes`):

* the bands are read onto the scene's common grid, one strip of chips at a time (bounded memory);
* every full ``size x size`` window at ``stride`` whose valid-pixel fraction (inside every band,
  not nodata, not NaN, not cloud) reaches ``min_valid`` becomes a tiled, compressed GeoTIFF chip
  ``OUT/<scene>/<scene>_r<row>_c<col>.tif`` with the scene's CRS, the chip's transform, band
  descriptions set to the band names, and ``GEOSSL_*`` tags (scene, sensor, datetime, offset,
  valid fraction) from which the index can be rebuilt;
* each chip is written atomically (temporary file + rename). A rerun skips chips already on disk
  (their header is checked), and windows a finished earlier run rejected (recorded in
  ``OUT/<scene>/.tiling.json``), so it writes only what is missing;
* scenes run in parallel in a process pool; the index ``OUT/index.parquet`` is written at the end,
  atomically, from the chips of this grid (new and existing).
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio import windows
from rasterio.transform import Affine

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import (
    OUTPUT_MARKER,
    atomic_write_bytes,
    check_output,
    disk_full_as_error,
    is_url,
    mark_output,
    out_join,
    output_lock,
    read_text_or_none,
    remote_fs,
    remote_write_errors,
)
from geossl.core.progress import progress as progress_bar
from geossl.tiling import chip_index
from geossl.tiling.remote import resolve_scenes
from geossl.tiling.scenes import (
    Scene,
    SceneReader,
    iter_windows,
    open_scene,
    scene_name,
)

PathLike = str | os.PathLike[str]

#: per-scene record of a finished run (options + rejected windows), used by reruns
DONE_FILE = ".tiling.json"


@dataclass(frozen=True)
class TileOptions:
    """How scenes are cut into chips.

    Attributes:
        size: chip size in pixels.
        stride: step between chips in pixels (default: ``size``, no overlap).
        min_valid: minimum fraction of valid pixels for a chip to be kept.
        bands: band names to keep, in order (default: all).
        cloud_mask: a mask file (non-zero = cloud), ``auto`` or None.
        sensor: sensor name recorded in the index (default: guessed, ``s2`` for Sentinel-2).
        resolution: pixel size of the common grid (default: the finest band's).
        resampling: resampling of bands not on the grid (rasterio name).
        compress: GeoTIFF compression of the chips.
    """

    size: int = 128
    stride: int | None = None
    min_valid: float = 0.9
    bands: tuple[str, ...] | None = None
    cloud_mask: str | None = None
    sensor: str | None = None
    resolution: float | None = None
    resampling: str = "bilinear"
    compress: str = "zstd"

    @property
    def step(self) -> int:
        """The stride actually used."""
        return self.stride or self.size

    def check(self) -> None:
        """Raise :class:`ConfigError` on an invalid option."""
        if self.size <= 0 or self.step <= 0:
            raise ConfigError(f"size and stride must be positive, got {self.size}, {self.step}")
        if not 0.0 <= self.min_valid <= 1.0:
            raise ConfigError(f"min_valid must be in [0, 1], got {self.min_valid}")

    def signature(self) -> dict[str, Any]:
        """The options that decide which windows are kept (compared on reruns)."""
        sig = asdict(self)
        sig.pop("compress")
        sig["bands"] = list(self.bands) if self.bands else None
        return sig


@dataclass
class TileReport:
    """What :func:`tile` did."""

    index: Any  # a Path, or a URL on an object store
    scenes: int = 0
    written: int = 0
    existing: int = 0
    rejected: int = 0
    seconds: float = 0.0
    packed: Path | None = None
    per_scene: dict[str, int] = field(default_factory=dict)

    @property
    def chips(self) -> int:
        """Chips in the index."""
        return self.written + self.existing


def chip_name(scene: str, row: int, col: int) -> str:
    """Chip id: ``<scene>_r<row>_c<col>`` (row/col: pixel offset in the scene grid)."""
    return f"{scene}_r{row:05d}_c{col:05d}"


def _existing_row(path: Any, out: Any, chip_id: str, scene: Scene,
                  opts: TileOptions) -> dict[str, Any] | None:
    """Index row of a chip already on disk if it is complete and matches, else None."""
    if is_url(path):
        return _existing_remote_row(path, chip_id, scene, opts)
    if not path.is_file():
        return None
    try:
        row = chip_index.chip_row(path, out)
    except DataError:
        return None
    if (row["chip_id"] != chip_id or row["height"] != opts.size or row["width"] != opts.size
            or row["bands"] != ",".join(scene.band_names)):
        return None
    return row


def _existing_remote_row(url: str, chip_id: str, scene: Scene,
                         opts: TileOptions) -> dict[str, Any] | None:
    """:func:`_existing_row` of a chip on an object store: its header read from a local copy."""
    import tempfile

    fs, p = remote_fs(url)
    try:
        data = fs.cat_file(p)
    except FileNotFoundError:
        return None
    with tempfile.TemporaryDirectory(prefix="geossl-chip-") as tmp:
        local = Path(tmp) / scene.name / f"{chip_id}.tif"
        local.parent.mkdir()
        local.write_bytes(data)
        return _existing_row(local, Path(tmp), chip_id, scene, opts)


def _write_chip(path: Any, data: np.ndarray, transform: Affine, scene: Scene,
                tags: dict[str, str], compress: str) -> None:
    """Write one chip atomically as a tiled, compressed, pixel-interleaved GeoTIFF."""
    count, height, width = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff", "dtype": data.dtype.name, "count": count, "height": height,
        "width": width, "crs": scene.grid.crs, "transform": transform,
        # one block holds every band of the chip: a chip read is one decompression
        "interleave": "pixel",
    }
    if compress and compress.lower() != "none":
        profile["compress"] = compress
        profile["predictor"] = 3 if np.issubdtype(data.dtype, np.floating) else 2
    if height % 16 == 0 and width % 16 == 0:
        profile.update(tiled=True, blockxsize=min(width, 512), blockysize=min(height, 512))
    nodatas = {nd for nd in scene.band_nodata}
    if len(nodatas) == 1 and None not in nodatas:
        profile["nodata"] = nodatas.pop()
    # encoded in memory, then written with Python's I/O (atomically; an object store gets one
    # PUT): GDAL may not report a full disk and leave a truncated file behind
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
            for i, name in enumerate(scene.band_names, start=1):
                dst.set_band_description(i, name)
            dst.update_tags(**tags)
        encoded = mem.read()
    atomic_write_bytes(path, encoded)


#: chips per tiling task (a block of whole chip rows of one scene): big enough that opening
#: the scene and scheduling cost little, small enough to spread one big scene over workers
BLOCK_CHIPS = 32


@dataclass
class ScenePlan:
    """What tiling one scene takes: its header, and its chip rows cut into blocks (tasks).

    Attributes:
        scene: the opened scene (headers only; picklable, sent to the workers).
        blocks: chip rows of each block: ``[[(row, [col, ...]), ...], ...]``.
        rejected: windows a finished earlier run with the same options rejected.
    """

    scene: Scene
    blocks: list[list[tuple[int, list[int]]]]
    rejected: set[tuple[int, int]]


@dataclass
class BlockResult:
    """What one tiling task did: index rows of its chips, counts, windows rejected."""

    rows: list[dict[str, Any]]
    counts: dict[str, int]
    rejected: list[tuple[int, int]]


def plan_scene(scene_path: Any, out: PathLike, opts: TileOptions,
               block_chips: int = BLOCK_CHIPS) -> ScenePlan:
    """Open a scene (headers only) and cut its chip rows into blocks of about ``block_chips``.

    Args:
        scene_path: the scene (file, band folder, SAFE product, URL or STAC item).
        out: output folder.
        opts: tiling options.
        block_chips: chips per block.

    Returns:
        the plan (a task of :func:`tile`).

    Raises:
        DataError: unreadable scene, missing band, CRS mismatch.
    """
    scene = open_scene(scene_path, bands=opts.bands, resolution=opts.resolution,
                       sensor=opts.sensor, cloud_mask=opts.cloud_mask,
                       resampling=opts.resampling)
    # scene names are made safe file names (scenes.safe_name); never write outside OUT anyway
    if "/" in scene.name or "\\" in scene.name or scene.name in ("", ".", ".."):
        raise DataError(f"scene name {scene.name!r} is not a plain folder name", str(scene_path))
    done_file = out_join(out, scene.name, DONE_FILE)
    rejected: set[tuple[int, int]] = set()
    try:
        text = read_text_or_none(done_file)
        done = json.loads(text) if text is not None else {}
        if done.get("options") == opts.signature():
            rejected = {(int(r), int(c)) for r, c in done.get("rejected", [])}
    except (OSError, ValueError, AttributeError):
        rejected = set()
    g = scene.grid
    by_row: dict[int, list[int]] = {}
    for r, c in iter_windows(g.height, g.width, opts.size, opts.step):
        by_row.setdefault(r, []).append(c)
    blocks: list[list[tuple[int, list[int]]]] = []
    current: list[tuple[int, list[int]]] = []
    n = 0
    for r in sorted(by_row):
        current.append((r, by_row[r]))
        n += len(by_row[r])
        if n >= block_chips:
            blocks.append(current)
            current, n = [], 0
    if current:
        blocks.append(current)
    return ScenePlan(scene, blocks, rejected)


#: open scene readers of this process, reused by the blocks of one scene (a worker usually
#: runs several blocks of the same scene in a row); the oldest is closed beyond _READERS_MAX
_READERS: OrderedDict[bytes, SceneReader] = OrderedDict()
_READERS_MAX = 4


def _reader(scene: Scene) -> SceneReader:
    key = pickle.dumps(scene)
    reader = _READERS.get(key)
    if reader is None:
        reader = SceneReader(scene)
        _READERS[key] = reader
        while len(_READERS) > _READERS_MAX:
            _READERS.popitem(last=False)[1].close()
    _READERS.move_to_end(key)
    return reader


def close_readers() -> None:
    """Close the scene readers this process keeps open between tiling tasks."""
    while _READERS:
        _READERS.popitem()[1].close()


def tile_block(scene: Scene, out: PathLike, opts: TileOptions,
               block: list[tuple[int, list[int]]],
               rejected: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
               ) -> BlockResult:
    """Cut chip rows ``block`` of a scene into chips (one tiling task; idempotent).

    Chips already on disk with the right header are kept, windows in ``rejected`` are not
    read again; every chip is written atomically, so running a block twice, or again after
    it was killed, gives the same files.

    Args:
        scene: the scene (from :func:`plan_scene`).
        out: output folder (the index folder; chip paths are relative to it).
        opts: tiling options.
        block: ``(row, [col, ...])`` of the chip rows to cut.
        rejected: windows a finished earlier run rejected.

    Returns:
        index rows of the block's chips, counts ``written``/``existing``/``rejected`` and the
        rejected windows.
    """
    out = out if is_url(out) else Path(out)
    folder = out_join(out, scene.name)
    g = scene.grid
    dt = scene.datetime.isoformat() if scene.datetime else ""
    bands = ",".join(scene.band_names)
    crs = chip_index._crs_string(g.crs)
    rows: list[dict[str, Any]] = []
    counts = {"written": 0, "existing": 0, "rejected": 0}
    new_rejected: list[tuple[int, int]] = []
    size = opts.size
    reader: SceneReader | None = None
    for r, cols in block:
        todo: list[int] = []
        for c in cols:
            if (r, c) in rejected:
                new_rejected.append((r, c))
                counts["rejected"] += 1
                continue
            cid = chip_name(scene.name, r, c)
            existing = _existing_row(out_join(folder, f"{cid}.tif"), out, cid, scene, opts)
            if existing is not None:
                rows.append(existing)
                counts["existing"] += 1
            else:
                todo.append(c)
        if not todo:
            continue
        reader = reader or _reader(scene)
        c0, c1 = min(todo), max(todo) + size
        strip, valid = reader.read(r, c0, size, c1 - c0)
        for c in todo:
            v = float(valid[:, c - c0:c - c0 + size].mean())
            if v < opts.min_valid:
                new_rejected.append((r, c))
                counts["rejected"] += 1
                continue
            cid = chip_name(scene.name, r, c)
            transform = windows.transform(windows.Window(c, r, size, size), g.transform)
            tags = {
                "GEOSSL_CHIP_ID": cid, "GEOSSL_SCENE": scene.name,
                "GEOSSL_SENSOR": scene.sensor, "GEOSSL_DATETIME": dt,
                "GEOSSL_ROW": str(r), "GEOSSL_COL": str(c),
                "GEOSSL_VALID_FRACTION": repr(v), "GEOSSL_BANDS": bands,
            }
            chip = np.ascontiguousarray(strip[:, :, c - c0:c - c0 + size])
            _write_chip(out_join(folder, f"{cid}.tif"), chip, transform, scene, tags, opts.compress)
            counts["written"] += 1
            left, top = transform.c, transform.f
            right, bottom = left + size * transform.a, top + size * transform.e
            rows.append(chip_index.index_row(
                cid, f"{scene.name}/{cid}.tif", scene.name, scene.sensor, dt or None, crs,
                g.res, r, c, size, size, bands, v, (left, bottom, right, top)))
    return BlockResult(rows, counts, new_rejected)


def _finish_scene(out: Any, scene: Scene, opts: TileOptions,
                  results: list[BlockResult]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Merge a scene's block results and record the finished run (``.tiling.json``)."""
    rows = [row for res in results for row in res.rows]
    counts = {k: sum(res.counts[k] for res in results) for k in ("written", "existing",
                                                                  "rejected")}
    rejected = sorted(rc for res in results for rc in res.rejected)
    record = {"options": opts.signature(), "rejected": rejected, "chips": len(rows)}
    chip_index.write_text(out_join(out, scene.name, DONE_FILE), json.dumps(record))
    return rows, counts


def tile_scene(scene_path: PathLike, out: PathLike, opts: TileOptions,
               progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Cut one scene into chips under ``out/<scene>/`` in this process (resumable).

    Args:
        scene_path: the scene (file, band folder, SAFE product, URL or STAC item).
        out: output folder (the index folder; chip paths are relative to it).
        opts: tiling options.
        progress: show a progress bar over blocks of chip rows.

    Returns:
        the index rows of the scene's chips, and counts ``written``, ``existing``, ``rejected``.

    Raises:
        DataError: unreadable scene, missing band, CRS mismatch.
    """
    out = out if is_url(out) else Path(out)
    plan = plan_scene(scene_path, out, opts)
    results = []
    for block in progress_bar(plan.blocks, desc=plan.scene.name, unit="block",
                              disable=not progress):
        results.append(tile_block(plan.scene, out, opts, block, _block_rejected(plan, block)))
    return _finish_scene(out, plan.scene, opts, results)


def _block_rejected(plan: ScenePlan, block: list[tuple[int, list[int]]]
                    ) -> set[tuple[int, int]]:
    if not plan.rejected:
        return set()
    rows = {r for r, _ in block}
    return {rc for rc in plan.rejected if rc[0] in rows}


def remove_partial_files(out: PathLike) -> int:
    """Delete temporary ``.*.part`` files a killed run left under ``out``; returns how many."""
    n = 0
    for dirpath, _, filenames in os.walk(out):
        for f in filenames:
            if f.startswith(".") and f.endswith(".part"):
                try:
                    os.unlink(os.path.join(dirpath, f))
                    n += 1
                except FileNotFoundError:
                    pass
    return n


def tile(
    scenes: Sequence[Any],
    out: PathLike,
    options: TileOptions | None = None,
    workers: int = 0,
    fmt: str = "tif",
    progress: bool = True,
    scheduler: str | None = None,
) -> TileReport:
    """Tile scenes into GeoTIFF chips and write ``out/index.parquet`` (``geossl tile``).

    The work is a Dask task graph (see :mod:`geossl.runtime.dask`): one task per scene reads its
    header and plans its blocks of chip rows, one task per block cuts and writes its chips;
    the index is written here at the end, atomically, from the blocks' rows.

    Args:
        scenes: scene files / folders, folders searched for scenes, URLs of rasters
            (``https://``, ``s3://``) or STAC JSON files (Item / ItemCollection).
        out: output folder (on a cluster: a path every worker sees, e.g. a shared file system).
        options: tiling options.
        workers: processes of a local Dask cluster (0 or 1: in this process).
        fmt: ``tif`` (GeoTIFF chips only), or ``npy`` / ``zarr`` to also pack every chip into
            one store beside the index (see :func:`geossl.tiling.packed.pack`).
        progress: show progress bars.
        scheduler: address of an existing Dask scheduler (default ``$DASK_SCHEDULER_ADDRESS``).

    Returns:
        a report with the index path and counts.

    Raises:
        DataError: bad scene (unreadable, missing band, CRS mismatch) or no chip kept.
        ConfigError: invalid option.
    """
    opts = options or TileOptions()
    opts.check()
    if fmt not in ("tif", "npy", "zarr"):
        raise ConfigError(f"unknown format {fmt!r} (tif, npy or zarr)")
    start = time.perf_counter()
    inputs = tuple(os.fspath(s) for s in scenes
                   if isinstance(s, str | os.PathLike) and not is_url(os.fspath(s)))
    # before reading any scene: absent, empty or an earlier tile output (never a user's folder)
    out_ok: Any = check_output(out, "tile", own=(chip_index.INDEX_NAME, f"*/{DONE_FILE}"),
                       inputs=inputs)
    if is_url(out_ok) and fmt != "tif":
        raise ConfigError(f"--format {fmt} packs chips into a local store; with an object-store "
                          "--out use --format tif")
    paths = resolve_scenes(scenes)
    names = [scene_name(p) for p in paths]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ConfigError(f"several scenes are named {dups[0]!r}: chip ids would collide; "
                          "tile them into different --out folders")
    if is_url(out_ok):
        with remote_write_errors(out_ok):
            mark_output(out_ok, "tile")
            report = _tile_into(paths, out_ok, opts, workers, fmt, progress, scheduler)
        report.seconds = time.perf_counter() - start
        return report
    out = Path(out_ok)
    # the folders this run creates (out and any missing parent): removed again on failure
    created = [p for p in [out, *out.parents] if not p.exists()]
    try:
        # one run at a time in OUT (a second would remove the first's temporary files)
        with output_lock(out, "tile"), disk_full_as_error(out):
            mark_output(out, "tile")
            report = _tile_into(paths, out, opts, workers, fmt, progress, scheduler)
    except BaseException:
        if created:
            _remove_if_no_chips(out)
            for folder in created[1:]:
                try:
                    folder.rmdir()
                except OSError:
                    break  # not empty
        raise
    report.seconds = time.perf_counter() - start
    return report


def _remove_if_no_chips(out: Path) -> None:
    """Remove ``out`` (created by a failed run) when it holds no chip: nothing to resume.

    Only the bookkeeping files a run writes (``.tiling.json``, ``.*.part``) and empty folders
    are deleted; any other file keeps the folder.
    """
    for dirpath, _, filenames in os.walk(out, topdown=False):
        for f in filenames:
            if f == DONE_FILE or (f.startswith(".") and f.endswith(".part")):
                Path(dirpath, f).unlink(missing_ok=True)
        if Path(dirpath) == out and os.listdir(out) == [OUTPUT_MARKER]:
            (out / OUTPUT_MARKER).unlink()  # nothing else left: not an output any more
        try:
            os.rmdir(dirpath)
        except OSError:
            pass  # not empty: chips (or foreign files) are kept


def _work_estimate(paths: list[Any]) -> float | None:
    """CPU seconds to tile local scenes, from their size on disk (None: remote scenes).

    About 1 s per 12 MB of band files (a Major-TOM cell: 11 MB, 64 chips of 128 px, 0.93 CPU-s).
    """
    total = 0
    for p in paths:
        if not isinstance(p, str | os.PathLike):
            return None
        path = Path(p)
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total / 12e6


def _tile_into(paths: list[Any], out: Any, opts: TileOptions, workers: int, fmt: str,
               progress: bool, scheduler: str | None) -> TileReport:
    """Body of :func:`tile` once ``out`` exists: the task graph, then the index."""
    from geossl.runtime.dask import Runner

    local = not is_url(out)
    if local:
        remove_partial_files(out)  # of a run killed earlier (this one holds OUT's lock)
    report = TileReport(index=out_join(out, chip_index.INDEX_NAME), scenes=len(paths))
    rows: list[dict[str, Any]] = []
    plans: dict[str, ScenePlan] = {}
    results: dict[str, list[BlockResult]] = {}
    left: dict[str, int] = {}

    def finish(name: str) -> None:
        part, counts = _finish_scene(out, plans[name].scene, opts, results.pop(name))
        rows.extend(part)
        report.written += counts["written"]
        report.existing += counts["existing"]
        report.rejected += counts["rejected"]
        report.per_scene[name] = len(part)

    try:
        with Runner(scheduler, workers, progress=progress, work_s=_work_estimate(paths)) as runner:
            tasks = runner.tasks("tile", "task")
            for p in paths:
                tasks.submit(plan_scene, p, str(out), opts, tag=("plan", scene_name(p)))
            for (kind, name), result in tasks:
                if kind == "plan":
                    plan = plans[name] = result
                    results[name], left[name] = [], len(plan.blocks)
                    for block in plan.blocks:
                        tasks.submit(tile_block, plan.scene, str(out), opts, block,
                                     _block_rejected(plan, block), tag=("block", name))
                else:
                    results[name].append(result)
                    left[name] -= 1
                if left[name] == 0:
                    finish(name)
    finally:
        close_readers()
    # temporary files of tasks cut short on a worker that died (their task ran again)
    if local:
        remove_partial_files(out)
    if not rows:
        why = f"(size {opts.size}, min-valid {opts.min_valid}): smaller than a chip or " \
              "mostly invalid (nodata, NaN, cloud)"
        if len(paths) == 1:
            raise DataError(f"no chip kept from this scene {why}", str(paths[0]))
        names = ", ".join(scene_name(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        raise DataError(f"no chip kept from any of the {len(paths)} scenes ({names}) {why}")
    chip_index.warn_band_differences(rows)
    gdf = chip_index.make_index(rows)
    chip_index.write_index(gdf, report.index)
    if fmt != "tif":
        from geossl.tiling.packed import pack

        report.packed = pack(report.index, fmt=fmt, progress=progress)
    return report


def read_source_window(scene: Scene, row: int, col: int, size: int) -> np.ndarray:
    """Read one window of a scene on its grid (convenience for checks and tests)."""
    with SceneReader(scene) as reader:
        data, _ = reader.read(row, col, size, size)
    return data


__all__ = [
    "BLOCK_CHIPS", "DONE_FILE", "BlockResult", "ScenePlan", "TileOptions", "TileReport",
    "chip_name", "close_readers", "plan_scene", "read_source_window", "remove_partial_files",
    "tile", "tile_block", "tile_scene",
]
