"""``geossl bench train``: pretraining throughput against TorchGeo and the hardware ceiling.

In one run, on the same input tensor (``bands`` x ``size`` x ``size``, batch ``batch_size``,
already on the device, same precision), it measures images per second (one image = one sample,
i.e. one pair of views) of:

1. geossl pretraining: SimCLR and MoCo v2, the full Lightning ``training_step`` including view
   making and GPU augmentation, through a Lightning ``Trainer`` as ``geossl pretrain`` runs it;
2. TorchGeo's SimCLR and MoCo tasks (``SimCLRTask``/``MoCoTask`` on 0.8, ``SimCLR``/``MoCo``
   on 0.10, via :func:`geossl.core.compat.task_class`) with the same backbone, bands and input, as
   shipped (their own augmentations, optimisers and defaults), also through a ``Trainer``;
3. the ceiling: raw timm forward + backward of the two views, no augmentation, no loading, no
   optimiser (channels_last and ``torch.compile`` on a GPU);
4. end to end: GeoTIFF chips on disk read by DataLoader workers through
   :class:`~geossl.data.datamodule.SSLDataModule`, pinned, moved to the device, normalised, then
   the geossl SimCLR step; plus the loader alone (chips/s delivered to the device), which says
   whether the data path starves the model;
5. MAE: geossl's MAE against TorchGeo 0.10's ``torchgeo.tasks.MAE`` (lightly's MAE modules)
   with the same ViT (``--mae-backbone``), bands, batch, precision and compile flag, on one
   input tensor at the ViT's native size (TorchGeo builds the ViT by name, so it takes only that
   size), geossl's decoder set to TorchGeo's defaults (512 wide, 1 block, 8 heads). On TorchGeo
   0.8.1, which has no MAE task, the row says so.

and prints a table with the ratios against the named baselines (geossl / TorchGeo SimCLRTask,
geossl / ceiling).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geossl.bench.config import BenchConfig
from geossl.core.errors import ConfigError
from geossl.runtime.devices import lightning_accelerator, resolve_device, resolve_precision

#: every measurement ``--only`` can select
ALL = ("geossl-simclr", "geossl-moco", "torchgeo-simclr", "torchgeo-moco", "ceiling",
       "loader", "e2e-simclr", "loader-packed", "e2e-simclr-packed", "geossl-mae", "torchgeo-mae")
#: the MAE rows: compared with each other only (their own ViT, at its native size)
MAE_ROWS = ("geossl-mae", "torchgeo-mae")
#: TorchGeo 0.10 ``MAE`` task's decoder defaults, given to geossl's MAE in the bench so that the
#: two rows run the same model (mask ratio 0.75 and norm-pix loss are the defaults of both)
TORCHGEO_MAE_DECODER: dict[str, Any] = {"decoder_dim": 512, "decoder_depth": 1,
                                        "decoder_heads": 8}


@dataclasses.dataclass
class Result:
    """One row of the benchmark table."""

    name: str
    images_per_s: float
    step_ms: float
    note: str = ""
    #: images per second of CPU time (user + system of this process, all its threads, and of
    #: its child processes: the loader workers): steadier than wall time on a shared machine
    images_per_cpu_s: float = math.nan


# --------------------------------------------------------------------------------------------
# timing helpers
# --------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of all its child processes so far.

    DataLoader workers are child processes: :func:`time.process_time` alone would leave out
    the CPU that loading and normalisation cost. Live children are read with psutil; children
    that already ended and were waited for are in ``RUSAGE_CHILDREN``.
    """
    import resource

    import psutil

    total = time.process_time()
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += ended.ru_utime + ended.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # ended meanwhile: counted in RUSAGE_CHILDREN once waited for
            continue
        total += t.user + t.system
    return total


def _autocast(device: torch.device, precision: str) -> Any:
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


class _Repeat:
    """An iterable yielding the same (device-resident) batch ``n`` times: no loading cost."""

    def __init__(self, batch: dict[str, torch.Tensor], n: int) -> None:
        self.batch = batch
        self.n = n

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for _ in range(self.n):
            yield dict(self.batch)

    def __len__(self) -> int:
        return self.n


def _timer_callback(warmup: int, device: torch.device) -> Any:
    from lightning.pytorch.callbacks import Callback

    class Timer(Callback):  # type: ignore[misc]
        """Wall and CPU time of the batches after the first ``warmup`` ones.

        Timing starts when the ``warmup``-th batch has ended (device synchronised) and stops at
        the end of the last batch, so the interval holds exactly ``steps`` whole iterations,
        each with its batch fetch (the first timed fetch included, as in the ``loader`` row);
        ``steps`` counts the batch ends inside it.
        """

        def __init__(self) -> None:
            self.start = math.nan
            self.end = math.nan
            self.cpu = math.nan
            self.steps = 0
            self._seen = 0
            self._cpu0 = math.nan

        def on_train_batch_end(self, trainer: Any, module: Any, out: Any, batch: Any,
                               idx: int) -> None:
            self._seen += 1
            if self._seen < warmup:
                return
            _sync(device)
            now, cpu = time.perf_counter(), cpu_seconds()
            if self._seen == warmup:
                self.start, self._cpu0 = now, cpu
                return
            self.steps += 1
            self.end, self.cpu = now, cpu - self._cpu0

    return Timer()


def _fit(module: Any, data: Any, cfg: BenchConfig, device: torch.device
         ) -> tuple[float, int, float]:
    """Train ``module`` for warmup + steps in ``geossl pretrain``'s fit loop; time the last steps.

    The geossl rows and TorchGeo's tasks alike go through :func:`geossl.training.trainer.fit` (the
    same
    ``Trainer`` settings, no logger, checkpoints or progress bar), so they differ only in the
    LightningModule.
    """
    from geossl.training.trainer import fit

    timer = _timer_callback(cfg.warmup, device)
    # one "epoch" of the endless in-memory loader; several over a small chip folder (TorchGeo's
    # MoCoTask schedules on max_epochs, which must be positive)
    in_memory = isinstance(data, _Repeat)
    fit(module, data, max_steps=cfg.warmup + cfg.steps, max_epochs=1 if in_memory else 1000,
        accelerator=device, devices=1, precision=cfg.precision, progress=False,
        log_every=10**6, callbacks=[timer])
    return timer.end - timer.start, timer.steps, timer.cpu


# --------------------------------------------------------------------------------------------
# the measurements
# --------------------------------------------------------------------------------------------
def _input(cfg: BenchConfig, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, cfg.bands, cfg.size, cfg.size, generator=gen)
    return x.to(device)


def _pretrain_config(method: str, cfg: BenchConfig) -> Any:
    """The ``geossl pretrain`` configuration of a geossl row.

    ``compile`` and ``channels_last`` are included: the methods apply them at fit start.
    """
    from geossl.training.trainer import PretrainConfig

    return PretrainConfig(method=method, backbone=cfg.backbone, sensors=["s2"], pairing="aug",
                          batch_size=cfg.batch_size, img_size=cfg.size, compile=cfg.compile,
                          channels_last=bool(cfg.channels_last))


def bench_geossl(method: str, cfg: BenchConfig, x: torch.Tensor, device: torch.device) -> Result:
    """Measure geossl SimCLR / MoCo: full training step (views, augmentation, loss, optimiser)."""
    from geossl.training.trainer import build_method

    pcfg = _pretrain_config(method, cfg)
    module = build_method(pcfg, {"s2": cfg.bands}, cfg.warmup + cfg.steps)
    seconds, steps, cpu = _fit(module, _Repeat({"image_s2": x, "index": _arange(x)}, 10**9),
                               cfg, device)
    return _result(f"geossl-{method}", cfg, seconds, steps, cpu=cpu)


def bench_torchgeo(task: str, cfg: BenchConfig, x: torch.Tensor, device: torch.device) -> Result:
    """TorchGeo ``SimCLRTask`` / ``MoCoTask``, same backbone, bands, input and precision.

    The task is as shipped (its augmentations, optimiser, defaults, and its forward passes:
    one per view), except that ``--channels-last`` and ``--compile`` are applied to it as to
    the geossl rows (weights and input in channels_last, its backbones compiled in place), so
    that the rows differ in the method, not in those switches.
    """
    from geossl.core.compat import task_class

    cls = task_class("simclr" if task == "simclr" else "moco")
    module = cls(model=cfg.backbone, in_channels=cfg.bands, size=cfg.size)
    notes = [f"torchgeo {cls.__name__}", "one forward pass per view"]
    if cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        notes.append("channels_last")
    if cfg.compile:
        for name in ("backbone", "backbone_momentum"):
            part = getattr(module, name, None)
            if isinstance(part, nn.Module):
                part.compile()
        notes.append("compiled")
    seconds, steps, cpu = _fit(module, _Repeat({"image": x}, 10**9), cfg, device)
    return _result(f"torchgeo-{task}", cfg, seconds, steps, note=", ".join(notes), cpu=cpu)


def mae_size(backbone: str) -> int:
    """The native input size of a timm ViT (what TorchGeo's MAE task builds by name)."""
    import timm

    from geossl.models.backbones import resolve_name

    name, kwargs = resolve_name(backbone)
    if "img_size" in kwargs:
        return int(kwargs["img_size"])
    cfg = timm.models.get_pretrained_cfg(name)
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return int(size[-1]) if size else 224


def _mae_input(cfg: BenchConfig, device: torch.device) -> torch.Tensor:
    size = mae_size(cfg.mae_backbone)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(cfg.batch_size, cfg.bands, size, size, generator=gen).to(device)


def bench_geossl_mae(cfg: BenchConfig, x: torch.Tensor, device: torch.device) -> Result:
    """MAE of geossl: full training step (one view, masking, encoder, decoder, loss, optimiser)."""
    import dataclasses as dc

    from geossl.training.trainer import build_method

    size = int(x.shape[-1])
    pcfg = dc.replace(_pretrain_config("mae", cfg), backbone=cfg.mae_backbone, img_size=size,
                      method_args=dict(TORCHGEO_MAE_DECODER))
    module = build_method(pcfg, {"s2": cfg.bands}, cfg.warmup + cfg.steps)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    seconds, steps, cpu = _fit(module, _Repeat({"image_s2": x, "index": _arange(x)}, 10**9),
                               cfg, device)
    notes = [f"{cfg.mae_backbone} {size} px", "decoder 512x1, 8 heads", "mask 0.75",
             "crop + flips + rot90"]
    if cfg.compile:
        notes.append("encoder and decoder blocks compiled")
    return _result("geossl-mae", cfg, seconds, steps, note=", ".join(notes), cpu=cpu)


def bench_torchgeo_mae(cfg: BenchConfig, x: torch.Tensor, device: torch.device) -> Result:
    """TorchGeo 0.10's ``MAE`` task, as shipped, on the same input, bands, batch, precision.

    ``--compile`` compiles its encoder and decoder blocks in place (what its training step
    calls; the wrappers' ``forward`` is not used), as geossl's MAE compiles its own.
    """
    import torchgeo

    try:
        from torchgeo.tasks import MAE as TorchGeoMAE
    except ImportError:
        return Result("torchgeo-mae", math.nan, math.nan,
                      f"torchgeo.tasks.MAE is new in TorchGeo 0.10; installed "
                      f"{torchgeo.__version__} has none")
    size = int(x.shape[-1])
    module = TorchGeoMAE(model=cfg.mae_backbone, in_channels=cfg.bands, size=size)
    notes = [f"torchgeo {torchgeo.__version__} MAE", f"{cfg.mae_backbone} {size} px",
             "kornia crop + flips"]
    if cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    if cfg.compile:
        module.backbone.vit.blocks.compile()
        module.decoder.decoder_blocks.compile()
        notes.append("encoder and decoder blocks compiled")
    seconds, steps, cpu = _fit(module, _Repeat({"image": x}, 10**9), cfg, device)
    return _result("torchgeo-mae", cfg, seconds, steps, note=", ".join(notes), cpu=cpu)


def bench_ceiling(cfg: BenchConfig, x: torch.Tensor, device: torch.device) -> Result:
    """Raw timm forward + backward of two views: no augmentation, loading or optimiser.

    The two views go through the backbone as one batch of ``2 * batch_size``, as geossl's
    methods encode them (one pass over both views); a step is still one sample pair per image.
    A plain loop, not the fit loop: the ceiling is what the hardware does with the backbone
    alone, so it must carry none of the costs (Lightning's hooks, optimiser, views) that the
    other rows are measured against it for.
    """
    import timm

    model: nn.Module = timm.create_model(cfg.backbone, in_chans=cfg.bands, num_classes=0,
                                         pretrained=False).to(device)
    model.train()
    both = torch.cat([x, x.flip(-1)])
    notes = ["timm fwd+bwd of both views as one batch of 2B"]
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
        both = both.contiguous(memory_format=torch.channels_last)
        notes.append("channels_last")
    step_model: Callable[[torch.Tensor], torch.Tensor] = model
    if cfg.compile:
        step_model = torch.compile(model)  # type: ignore[assignment]
        notes.append("compiled")

    def step() -> None:
        with _autocast(device, cfg.precision):
            loss = step_model(both).float().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    for _ in range(cfg.warmup):
        step()
    _sync(device)
    start, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(cfg.steps):
        step()
    _sync(device)
    return _result("ceiling", cfg, time.perf_counter() - start, cfg.steps,
                   cpu=cpu_seconds() - cpu, note=", ".join(notes))


def bench_loader(cfg: BenchConfig, chips: Path, device: torch.device, name: str = "loader"
                 ) -> Result:
    """Chips/s delivered to the device by the data module's loader alone.

    A plain loop over the loader (no model, so no fit loop): it says whether the data path
    alone could starve the training step measured by ``e2e-simclr``.
    """
    dm = _chip_datamodule(cfg, chips, device)
    loader = dm.train_dataloader()
    total = cfg.warmup + cfg.steps
    done = timed = 0
    start = cpu = math.nan
    while done < total:
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            done += 1
            if done > cfg.warmup:
                timed += 1
            elif done == cfg.warmup:
                # the clock starts once the warm-up batches are on the device: the timed
                # interval then holds the fetch and transfer of exactly the counted batches
                _sync(device)
                start, cpu = time.perf_counter(), cpu_seconds()
            if done >= total:
                break
    _sync(device)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return _result(name, cfg, seconds, timed, cpu=cpu,
                   note=f"{cfg.workers} workers, {_store(chips)} -> {device.type}; CPU time "
                        "includes the workers")


def bench_e2e(cfg: BenchConfig, chips: Path, device: torch.device, name: str = "e2e-simclr"
              ) -> Result:
    """Measure geossl SimCLR from chips on disk: workers, pinned memory, device, training step."""
    from geossl.training.trainer import build_method

    dm = _chip_datamodule(cfg, chips, device)
    pcfg = _pretrain_config("simclr", cfg)
    module = build_method(pcfg, {"s2": cfg.bands}, cfg.warmup + cfg.steps)
    seconds, steps, cpu = _fit(module, dm, cfg, device)
    return _result(name, cfg, seconds, steps, cpu=cpu,
                   note=f"{_store(chips)} on disk, {cfg.workers} workers")


def _store(chips: Path) -> str:
    """What the chip dataset reads: the packed npy/zarr store when present, else GeoTIFFs."""
    return "packed store" if (chips / "packed" / "meta.json").exists() else "GeoTIFF chips"


def _arange(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(x.shape[0], device=x.device)


def _result(name: str, cfg: BenchConfig, seconds: float, steps: int, note: str = "",
            cpu: float = math.nan) -> Result:
    if not math.isfinite(seconds) or steps <= 0:
        raise RuntimeError(f"{name}: no timed steps (increase --steps)")
    images = steps * cfg.batch_size
    per_cpu = images / cpu if math.isfinite(cpu) and cpu > 0 else math.nan
    return Result(name, images / seconds, 1000 * seconds / steps, note, per_cpu)


# --------------------------------------------------------------------------------------------
# chips on disk
# --------------------------------------------------------------------------------------------
def make_chips(folder: Path, n: int, bands: int, size: int, seed: int = 0) -> Path:
    """Write ``n`` GeoTIFF chips and their GeoParquet chip index (the ``geossl tile`` layout).

    Chips are uint16 reflectances (a smooth field plus noise, so DEFLATE has something to do),
    tiled and DEFLATE-compressed with a horizontal predictor, on one UTM grid.

    Args:
        folder: output folder (``index.parquet`` and ``chips/`` are written there).
        n: number of chips.
        bands: bands per chip.
        size: chip size in pixels.
        seed: random seed.

    Returns:
        the chip index path.
    """
    import rasterio
    from affine import Affine

    from geossl.tiling.chip_index import index_row, make_index, write_index

    rng = np.random.default_rng(seed)
    (folder / "chips").mkdir(parents=True, exist_ok=True)
    res, x0, y0, crs = 10.0, 500000.0, 5000000.0, "EPSG:32633"
    per_row = max(1, math.ceil(math.sqrt(n)))
    rows = []
    names = ",".join(f"B{i + 1:02d}" for i in range(bands))
    coarse = max(2, size // 16)
    for i in range(n):
        r, c = divmod(i, per_row)
        left, top = x0 + c * size * res, y0 - r * size * res
        field = rng.uniform(500, 4000, (bands, coarse, coarse)).astype(np.float32)
        field = np.kron(field, np.ones((size // coarse + 1, size // coarse + 1), np.float32))
        data = field[:, :size, :size] + rng.normal(0, 50, (bands, size, size))
        data = np.clip(data, 0, 10000).astype(np.uint16)
        rel = f"chips/chip_{i:06d}.tif"
        with rasterio.open(
            folder / rel, "w", driver="GTiff", width=size, height=size, count=bands,
            dtype="uint16", crs=crs, transform=Affine(res, 0.0, left, 0.0, -res, top), tiled=True,
            blockxsize=min(256, max(16, size)), blockysize=min(256, max(16, size)),
            compress="deflate", predictor=2,
        ) as dst:
            dst.write(data)
        rows.append(index_row(f"chip_{i:06d}", rel, "bench", "s2", None, crs, res, r * size,
                              c * size, size, size, names, 1.0,
                              (left, top - size * res, left + size * res, top)))
    return write_index(make_index(rows), folder / "index.parquet")


def _pack_copy(chips: Path, dest: Path) -> None:
    """Index of ``chips`` rewritten under ``dest`` (absolute paths) plus its packed npy store."""
    import geopandas as gpd

    from geossl.tiling.packed import pack

    dest.mkdir(parents=True, exist_ok=True)
    frame = gpd.read_parquet(chips / "index.parquet")
    frame["path"] = [str((chips / p).resolve()) for p in frame["path"]]
    frame.to_parquet(dest / "index.parquet")
    pack(dest / "index.parquet", progress=False)


def _chip_datamodule(cfg: BenchConfig, chips: Path, device: torch.device) -> Any:
    from geossl.data.datamodule import SSLDataModule

    dm = SSLDataModule(data="chips", root=chips, sensors=["s2"], pairing="aug",
                       batch_size=cfg.batch_size, workers=cfg.workers,
                       pin_memory=device.type == "cuda")
    dm.setup("fit")
    return dm


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def run_bench(cfg: BenchConfig, progress: Callable[[str], None] = print) -> list[Result]:
    """Run the selected measurements on one input and return their rows.

    Args:
        cfg: options.
        progress: where to report what is being measured.

    Returns:
        one :class:`Result` per measurement.
    """
    device = resolve_device(cfg.device)
    _quiet()
    cfg.precision = resolve_precision(cfg.precision, lightning_accelerator(device))
    if cfg.channels_last is None:
        cfg.channels_last = device.type == "cuda"
    only = list(cfg.only or ALL)
    unknown = sorted(set(only) - set(ALL))
    if unknown:
        raise ConfigError(f"unknown measurement {', '.join(unknown)}; choose from {', '.join(ALL)}")
    if cfg.steps < 1 or cfg.warmup < 1:
        raise ConfigError("--steps and --warmup must be at least 1")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.repeats < 1:
        raise ConfigError("--repeats must be at least 1")
    x = _input(cfg, device)
    best: dict[str, Result] = {}

    def measure(name: str, fn: Callable[[], Result]) -> None:
        if name not in only:
            return
        progress(f"geossl bench train: measuring {name} ...")
        try:
            result = fn()
        except Exception as err:  # a failing row must not hide the others
            progress(f"geossl bench train: {name} failed: {type(err).__name__}: {err}")
            result = Result(name, math.nan, math.nan, f"failed: {type(err).__name__}")
        old = best.get(name)
        if old is None or not result.images_per_s <= old.images_per_s:
            best[name] = result
        if device.type == "cuda":
            torch.cuda.empty_cache()

    # every row round-robin, best of --repeats: on a shared machine a burst of someone else's
    # load then hits every row alike instead of one
    with tempfile.TemporaryDirectory(prefix="geossl-bench-") as tmp:
        chips, store = None, None
        if set(only) & {"loader", "e2e-simclr", "loader-packed", "e2e-simclr-packed"}:
            chips = Path(cfg.chips) if cfg.chips else None
            if chips is None:
                n = cfg.num_chips or max(4 * cfg.batch_size, 256)
                progress(f"geossl bench train: writing {n} chips to {tmp} ...")
                make_chips(Path(tmp), n, cfg.bands, cfg.size)
                chips = Path(tmp)
            store = chips
            if {"loader-packed", "e2e-simclr-packed"} & set(only) and not (
                chips / "packed" / "meta.json"
            ).exists():
                # pack a private copy of the index, never into a user's --chips folder
                store = Path(tmp) / "packed-copy"
                progress("geossl bench train: packing the chips into one npy store ...")
                _pack_copy(chips, store)
        # the MAE rows' ViT takes only its native size: their own input, the same for both
        x_mae = _mae_input(cfg, device) if set(only) & set(MAE_ROWS) else x
        for _ in range(cfg.repeats):
            measure("geossl-simclr", lambda: bench_geossl("simclr", cfg, x, device))
            measure("geossl-moco", lambda: bench_geossl("moco", cfg, x, device))
            measure("torchgeo-simclr", lambda: bench_torchgeo("simclr", cfg, x, device))
            measure("torchgeo-moco", lambda: bench_torchgeo("moco", cfg, x, device))
            measure("ceiling", lambda: bench_ceiling(cfg, x, device))
            if set(only) & set(MAE_ROWS):
                measure("geossl-mae", lambda: bench_geossl_mae(cfg, x_mae, device))
                measure("torchgeo-mae", lambda: bench_torchgeo_mae(cfg, x_mae, device))
            if chips is not None and store is not None:
                tifs, packed = chips, store
                measure("loader", lambda p=tifs: bench_loader(cfg, p, device))  # type: ignore[misc]
                measure("e2e-simclr", lambda p=tifs: bench_e2e(cfg, p, device))  # type: ignore[misc]
                measure("loader-packed", lambda p=packed: bench_loader(  # type: ignore[misc]
                    cfg, p, device, "loader-packed"))
                measure("e2e-simclr-packed", lambda p=packed: bench_e2e(  # type: ignore[misc]
                    cfg, p, device, "e2e-simclr-packed"))
    results = [best[name] for name in ALL if name in best]
    if cfg.repeats > 1:
        for r in results:
            r.note = ", ".join(n for n in (r.note, f"best of {cfg.repeats}") if n)
    return results


def _quiet() -> None:
    """Silence Lightning's per-fit banners and tips so the table stays readable."""
    import logging
    import warnings

    import lightning.pytorch  # noqa: F401  (sets its loggers to INFO on import: override after)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def format_table(results: Sequence[Result], cfg: BenchConfig) -> str:
    """Markdown table with ratios against TorchGeo's SimCLRTask and the ceiling."""
    device = resolve_device(cfg.device)
    mae = [r for r in results if r.name in MAE_ROWS]
    if mae and len(mae) == len(results):  # only the MAE rows: only their table
        return "\n".join(mae_table(mae, cfg, device.type == "cpu"))
    by_name = {r.name: r.images_per_s for r in results}
    base = by_name.get("torchgeo-simclr", math.nan)
    ceil = by_name.get("ceiling", math.nan)
    cpu = {r.name: r.images_per_cpu_s for r in results}
    cpu_base, cpu_ceil = cpu.get("torchgeo-simclr", math.nan), cpu.get("ceiling", math.nan)
    on_cpu = device.type == "cpu"
    lines = [
        f"backbone {cfg.backbone}, {cfg.bands} bands, {cfg.size} px, batch {cfg.batch_size}, "
        f"precision {cfg.precision}, compile {cfg.compile}, channels_last {cfg.channels_last}, "
        f"{cfg.steps} timed steps after {cfg.warmup} warm-up, device {_device_name(device)}",
        "",
        "| measurement | images/s | ms/step | x TorchGeo SimCLRTask | x ceiling |"
        + (" images/CPU-s | x TorchGeo (CPU time) | x ceiling (CPU time) |" if on_cpu else "")
        + " note |",
        "| --- | ---: | ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if on_cpu else "")
        + " --- |",
    ]
    for r in results:
        if r.name in MAE_ROWS:
            continue
        row = (f"| {r.name} | {r.images_per_s:,.1f} | {r.step_ms:,.1f} | "
               f"{_ratio(r.images_per_s, base)} | {_ratio(r.images_per_s, ceil)} |")
        if on_cpu:
            row += (f" {r.images_per_cpu_s:,.1f} | {_ratio(r.images_per_cpu_s, cpu_base)} | "
                    f"{_ratio(r.images_per_cpu_s, cpu_ceil)} |")
        lines.append(row + f" {r.note} |")
    lines += ["", DIFFERENCES]
    if mae:
        lines += ["", *mae_table(mae, cfg, on_cpu)]
    return "\n".join(lines)


def mae_table(results: Sequence[Result], cfg: BenchConfig, on_cpu: bool) -> list[str]:
    """The MAE rows, with their ratio against TorchGeo's MAE task (same ViT, input, batch)."""
    by_name = {r.name: r for r in results}
    base = by_name.get("torchgeo-mae")
    wall = base.images_per_s if base is not None else math.nan
    cpu = base.images_per_cpu_s if base is not None else math.nan
    lines = [
        f"MAE: {cfg.mae_backbone} at its native {mae_size(cfg.mae_backbone)} px, {cfg.bands} "
        f"bands, batch {cfg.batch_size}, precision {cfg.precision}, compile {cfg.compile}",
        "",
        "| measurement | images/s | ms/step | x TorchGeo MAE |"
        + (" images/CPU-s | x TorchGeo MAE (CPU time) |" if on_cpu else "") + " note |",
        "| --- | ---: | ---: | ---: |" + (" ---: | ---: |" if on_cpu else "") + " --- |",
    ]
    for r in results:
        row = (f"| {r.name} | {r.images_per_s:,.1f} | {r.step_ms:,.1f} | "
               f"{_ratio(r.images_per_s, wall)} |")
        if on_cpu:
            row += f" {r.images_per_cpu_s:,.1f} | {_ratio(r.images_per_cpu_s, cpu)} |"
        lines.append(row + f" {r.note} |")
    lines += ["", MAE_DIFFERENCES]
    return lines


#: what the rows share and what still differs between them (printed under the table)
DIFFERENCES = (
    "Same for every row: input tensor, batch size, precision, --compile and --channels-last "
    "(TorchGeo's tasks included), warm-up steps, then exactly the timed steps (each with its "
    "batch fetch). Differences: geossl and the ceiling pass both views through the backbone "
    "as one batch of 2B, TorchGeo's tasks as shipped run one pass per view, with their own "
    "augmentations and defaults; the ceiling has no augmentation, optimiser or Lightning loop; "
    "loader rows time fetch + transfer only. CPU time counts this process and its loader "
    "worker processes."
)


#: what the MAE rows share and what differs (printed under their table)
MAE_DIFFERENCES = (
    "MAE rows: same input tensor, ViT, bands, batch, precision and compile flag; same decoder "
    "(512 wide, 1 block, 8 heads), mask ratio 0.75 and norm-pix loss; each with its own "
    "augmentation (geossl: crop, flips and 90-degree rotations on the device; TorchGeo: "
    "kornia's bicubic crop and flips), optimiser step and learning-rate schedule."
)


def _ratio(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
        return "-"
    return f"{a / b:.2f}"


def bench_train(cfg: BenchConfig) -> list[Result]:
    """Run ``geossl bench train``: measure, print the table, optionally save JSON + markdown.

    Raises:
        DataError: ``--out`` cannot be written, or is a folder that is not empty nor an
            earlier ``bench train`` output (checked before the benchmark runs).
    """
    if cfg.out:  # not after minutes of measuring
        from geossl.core.io import check_output, check_writable, mark_output

        check_output(cfg.out, "bench", own=("bench_train.json",))
        mark_output(cfg.out, "bench")
        check_writable(cfg.out, folder=True)
    results = run_bench(cfg)
    table = format_table(results, cfg)
    print(table)
    if cfg.out:
        from geossl.core.io import atomic_write_text

        out = Path(cfg.out)
        payload = {
            "config": dataclasses.asdict(cfg),
            "device": _device_name(resolve_device(cfg.device)),
            "torch": torch.__version__,
            "results": [dataclasses.asdict(r) for r in results],
        }
        atomic_write_text(out / "bench_train.json", json.dumps(payload, indent=2))
        atomic_write_text(out / "bench_train.md", table + "\n")
    return results


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
