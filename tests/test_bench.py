"""`geossl bench`: the chip writer, the table, and a tiny CPU run of every measurement."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio

from geossl.bench.train import BenchConfig, Result, format_table, make_chips, run_bench
from geossl.cli import main


def test_make_chips_writes_a_chip_index(tmp_path: Path) -> None:
    index = make_chips(tmp_path, n=5, bands=4, size=16)
    frame = gpd.read_parquet(index)
    assert len(frame) == 5 and frame["chip_id"].is_unique
    assert frame.crs.to_epsg() == 4326
    for col in ("path", "scene", "sensor", "datetime", "crs", "res", "row", "col", "height",
                "width", "bands", "valid_fraction", "minx", "miny", "maxx", "maxy"):
        assert col in frame.columns, col
    row = frame.iloc[3]
    with rasterio.open(tmp_path / row["path"]) as src:
        assert src.count == 4 and src.width == 16 and src.height == 16
        assert src.crs.to_string() == row["crs"]
        assert src.bounds.left == pytest.approx(row["minx"])
        assert src.bounds.top == pytest.approx(row["maxy"])
        data = src.read()
    assert data.dtype.name == "uint16" and data.max() > 0
    assert row["bands"] == "B01,B02,B03,B04"


def test_table_has_ratios_against_the_baselines() -> None:
    rows = [Result("geossl-simclr", 300.0, 10.0), Result("torchgeo-simclr", 100.0, 30.0),
            Result("ceiling", 400.0, 7.5), Result("torchgeo-moco", math.nan, math.nan, "failed")]
    table = format_table(rows, BenchConfig())
    line = next(t for t in table.splitlines() if t.startswith("| geossl-simclr"))
    cells = [c.strip() for c in line.split("|")]
    assert cells[4] == "3.00" and cells[5] == "0.75"
    assert "| torchgeo-moco | nan |" in table


def test_ceiling_and_torchgeo_run_on_cpu() -> None:
    cfg = BenchConfig(backbone="resnet18", bands=3, size=32, batch_size=4, steps=1, warmup=1,
                      device="cpu", only=["ceiling", "torchgeo-simclr"])
    results = {r.name: r for r in run_bench(cfg, progress=lambda s: None)}
    assert set(results) == {"ceiling", "torchgeo-simclr"}
    for r in results.values():
        assert math.isfinite(r.images_per_s) and r.images_per_s > 0, r


def test_geossl_rows_run_on_cpu(tmp_path: Path) -> None:
    cfg = BenchConfig(backbone="resnet18", bands=4, size=32, batch_size=4, steps=1, warmup=1,
                      device="cpu", workers=0, num_chips=12,
                      only=["geossl-simclr", "geossl-moco", "loader", "e2e-simclr",
                            "loader-packed", "e2e-simclr-packed"])
    results = {r.name: r for r in run_bench(cfg, progress=lambda s: None)}
    for name in cfg.only or []:
        assert math.isfinite(results[name].images_per_s), results[name]


def test_cli_bench_train_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "train", "--device", "cpu", "--backbone", "resnet18", "--bands", "2",
               "--size", "32", "--batch-size", "2", "--steps", "1", "--warmup", "1",
               "--only", "[ceiling]", "--out", str(tmp_path)])
    assert rc == 0
    assert "| ceiling |" in capsys.readouterr().out
    assert (tmp_path / "bench_train.json").exists() and (tmp_path / "bench_train.md").exists()


def test_cli_bench_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "train", "--only", "[warp-drive]"]) == 2
    assert "unknown measurement" in capsys.readouterr().err


# ---- like-for-like timing (issue 11) -----------------------------------------------------------
# A fake clock advanced by the fetch of a batch and by a training step: the measured seconds
# are then a count of what happened inside the timed interval, not a wall-clock reading.


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def perf_counter(self) -> float:
        return self.t

    @staticmethod
    def process_time() -> float:
        import time

        return time.process_time()


def _fake_time(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    import geossl.bench.train as bt

    clock = _Clock()
    monkeypatch.setattr(bt, "time", clock)
    return clock


def test_loader_row_times_exactly_the_batches_it_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import geossl.bench.train as bt

    clock = _fake_time(monkeypatch)

    class Loader:
        def __iter__(self):  # type: ignore[no-untyped-def]
            while True:
                clock.t += 1.0  # fetching a batch costs one second
                yield {"image_s2": torch.zeros(4, 2, 8, 8)}

    class DM:
        @staticmethod
        def train_dataloader() -> Loader:
            return Loader()

    monkeypatch.setattr(bt, "_chip_datamodule", lambda *a, **k: DM())
    cfg = BenchConfig(batch_size=4, steps=3, warmup=2, device="cpu", workers=0)
    r = bt.bench_loader(cfg, Path("."), torch.device("cpu"))
    # 3 batches counted, 3 fetched inside the interval: 4 images per second, 1000 ms per batch
    assert (r.images_per_s, r.step_ms) == (4.0, 1000.0)


def test_trainer_rows_time_exactly_the_steps_they_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning.pytorch as pl
    import torch

    import geossl.bench.train as bt

    clock = _fake_time(monkeypatch)

    class Batches:
        def __iter__(self):  # type: ignore[no-untyped-def]
            for _ in range(10**6):
                clock.t += 1.0  # a fetch: 1 s
                yield {"x": torch.ones(2, 3)}

        def __len__(self) -> int:
            return 10**6

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 1)

        def training_step(self, batch: dict[str, torch.Tensor], idx: int) -> torch.Tensor:
            clock.t += 10.0  # a step: 10 s
            return self.layer(batch["x"]).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    cfg = BenchConfig(batch_size=2, steps=4, warmup=2, device="cpu", precision="32-true")
    seconds, steps, _ = bt._fit(Tiny(), Batches(), cfg, torch.device("cpu"))
    assert steps == 4
    assert seconds == 4 * 11.0  # every counted step with exactly one fetch, no more, no less


def test_cpu_time_counts_worker_processes() -> None:
    import multiprocessing as mp

    from geossl.bench.train import cpu_seconds

    ctx = mp.get_context("fork")
    spun, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_spin, args=(0.3, spun, release))
    before = cpu_seconds()
    child.start()
    try:
        assert spun.wait(60)
        alive = cpu_seconds()  # the child (like a persistent loader worker) is still running
    finally:
        release.set()
        child.join(60)
    assert alive - before >= 0.25
    assert cpu_seconds() - before >= 0.25  # and once it has ended


def _spin(cpu: float, spun: object, release: object) -> None:
    import time

    while time.process_time() < cpu:
        pass
    spun.set()  # type: ignore[attr-defined]
    release.wait(60)  # type: ignore[attr-defined]


def test_ceiling_encodes_both_views_as_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    import torch

    import geossl.bench.train as bt

    seen: list[int] = []
    real = timm.create_model

    def recording(*args: object, **kwargs: object) -> torch.nn.Module:
        model = real(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen.append(int(inp[0].shape[0])))
        return model

    monkeypatch.setattr(timm, "create_model", recording)
    cfg = BenchConfig(backbone="resnet18", bands=3, size=32, batch_size=4, steps=2, warmup=1,
                      device="cpu", precision="32-true", channels_last=False)
    r = bt.bench_ceiling(cfg, torch.zeros(4, 3, 32, 32), torch.device("cpu"))
    assert seen == [8, 8, 8]  # like geossl's methods: one pass of 2B, not two of B
    assert "one batch of 2B" in r.note


def test_torchgeo_rows_get_compile_and_channels_last(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import geossl.bench.train as bt

    got: dict[str, object] = {}

    def capture(module: object, data: object, *args: object, **kwargs: object
                ) -> tuple[float, int, float]:
        got["module"], got["data"] = module, data
        return 1.0, 1, 1.0

    monkeypatch.setattr(bt, "_fit", capture)
    cfg = BenchConfig(backbone="resnet18", bands=3, size=32, batch_size=2, device="cpu",
                      precision="32-true", channels_last=True, compile=True)
    r = bt.bench_torchgeo("moco", cfg, torch.zeros(2, 3, 32, 32), torch.device("cpu"))
    module: torch.nn.Module = got["module"]  # type: ignore[assignment]
    conv = module.backbone.conv1.weight  # type: ignore[union-attr]
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert module.backbone._compiled_call_impl is not None  # type: ignore[union-attr]
    image = next(iter(got["data"]))["image"]  # type: ignore[call-overload]
    assert image.is_contiguous(memory_format=torch.channels_last)
    assert "channels_last" in r.note and "compiled" in r.note


def test_table_says_what_differs() -> None:
    table = format_table([Result("ceiling", 1.0, 1.0)], BenchConfig(device="cpu"))
    assert "one pass per view" in table and "loader worker processes" in table


# ---- bench data: same process count, warm-up, repeats, min/median ---------------------------


def test_timed_warms_up_and_rotates_the_order() -> None:
    from geossl.bench.data import _timed

    calls: list[str] = []
    times = _timed({n: (lambda n=n: calls.append(n)) for n in "abc"}, repeats=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert all(len(t) == 3 for t in times.values())


def test_index_benchmark_compares_like_for_like(tmp_path: Path) -> None:
    from geossl.bench.data import bench_index, format_report

    out = bench_index(tmp_path, n_files=12, workers=2, repeats=2)
    assert out["processes"] == {"torchgeo_scan": 1, "geossl_build": 1, "geossl_load": 1,
                                "geossl_build_parallel": 2}
    for key in ("torchgeo_scan", "geossl_build", "geossl_build_parallel", "geossl_load"):
        assert len(out[key]["runs_s"]) == 2
        assert out[key]["min_s"] <= out[key]["median_s"]
    assert out["ratio_geossl_build_vs_torchgeo"] == pytest.approx(
        out["torchgeo_scan"]["median_s"] / out["geossl_build"]["median_s"])
    fake_chips = {k: {"best_chips_s": 1.0, "median_chips_s": 1.0} for k in
                  ("torchgeo", "geossl_tif", "geossl_npy", "geossl_zarr")}
    fake_chips.update({"bands": 12, "size": 128, "chips": 4, "cells": 2, "repeats": 2,
                       **{f"ratio_{k}_vs_torchgeo": 1.0 for k in
                          ("geossl_tif", "geossl_npy", "geossl_zarr")}})
    report = format_report({"cpu_count": 2, "index": out, "chips": fake_chips})
    assert "| min s | median s |" in report
    parallel = next(line for line in report.splitlines() if "| 2 |" in line)
    assert "not like for like" in parallel


def test_mae_table_has_its_ratio_against_torchgeo_mae() -> None:
    rows = [Result("ceiling", 400.0, 7.5), Result("geossl-mae", 30.0, 10.0, "", 6.0),
            Result("torchgeo-mae", 20.0, 15.0, "", 4.0)]
    table = format_table(rows, BenchConfig(device="cpu"))
    line = next(t for t in table.splitlines() if t.startswith("| geossl-mae"))
    cells = [c.strip() for c in line.split("|")]
    assert cells[4] == "1.50" and cells[6] == "1.50"  # wall and CPU time
    assert "MAE: vit_tiny_patch16_224 at its native 224 px" in table
    # the MAE rows are not compared with the SimCLR baseline of the main table
    main_table = table.split("MAE:")[0]
    assert "| geossl-mae" not in main_table and "| ceiling" in main_table


def test_mae_rows_run_on_cpu() -> None:
    from geossl.core import compat

    # a short ViT name at 32 px: geossl's row runs; TorchGeo builds ViTs by timm name only
    cfg = BenchConfig(bands=3, batch_size=2, steps=1, warmup=1, device="cpu",
                      mae_backbone="vit_tiny_patch8_32", only=["geossl-mae", "torchgeo-mae"])
    results = {r.name: r for r in run_bench(cfg, progress=lambda s: None)}
    assert math.isfinite(results["geossl-mae"].images_per_s), results["geossl-mae"]
    if compat.TORCHGEO_VERSION < (0, 10):
        assert "new in TorchGeo 0.10" in results["torchgeo-mae"].note
