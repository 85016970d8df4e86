"""``geossl bench ddp``: pretraining steps/s with 1 and 2 DDP processes (gloo, CPU).

Writes a small chip index (:func:`geossl.bench.train.make_chips`), then runs
``geossl pretrain`` (through :func:`geossl.training.trainer.pretrain`, the Lightning ``Trainer``
with
``--accelerator cpu --devices N --strategy ddp``) once per process count, each process on
``--batch-size`` chips per step (so 2 processes train on twice the global batch: weak scaling)
and ``--threads`` intra-op threads. Each process times its steps after ``--warmup`` untimed
ones (process start, imports and the Trainer's set-up are not counted); rank 0's figures are
printed as a Markdown table: steps/s, chips/s (global batch x steps/s) and the parallel
efficiency ``chips/s(2) / (2 x chips/s(1))``.

Lightning's DDP launcher starts the other processes by running this module again with the same
arguments (``python -m geossl.bench.ddp --worker ...``), which is why the worker entry point
lives here.

Example::

    geossl bench ddp --steps 10 --batch-size 8 --backbone resnet18
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from geossl.core.options import add_argparse_flags, config_from, option

#: per-process step times are written here by the worker, one JSON file per rank
_TIMES = "steps_rank{rank}.json"


def _step_timer(folder: Path, warmup: int) -> Any:
    """A Lightning callback timing the optimiser steps after ``warmup`` of them."""
    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.start: float | None = None
            self.steps = 0

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                                 batch_idx: int) -> None:
            if trainer.global_step == warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            if self.start is not None:
                self.steps += 1

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            seconds = time.perf_counter() - self.start if self.start is not None else 0.0
            folder.mkdir(parents=True, exist_ok=True)
            doc = {"world": trainer.world_size, "steps": self.steps, "seconds": seconds}
            from geossl.core.io import atomic_write_text

            atomic_write_text(folder / _TIMES.format(rank=trainer.global_rank), json.dumps(doc))

    return StepTimer()


def _worker(argv: list[str]) -> int:
    """``--worker FOLDER WARMUP THREADS CONFIG_JSON``: one pretraining run, timed.

    The run's options come as the JSON of :class:`~geossl.training.config.PretrainConfig` fields,
    not
    as flags: the benchmark sits below the command line in the import layers.
    """
    import torch

    from geossl.training.trainer import PretrainConfig, pretrain

    folder, warmup, threads = Path(argv[0]), int(argv[1]), int(argv[2])
    torch.set_num_threads(threads)
    options = argparse.Namespace(**json.loads(argv[3]))
    pretrain(PretrainConfig.from_namespace(options), callbacks=[_step_timer(folder, warmup)])
    return 0


@dataclasses.dataclass
class DdpBenchConfig:
    """Options of ``geossl bench ddp`` (each a flag: ``batch_size`` -> ``--batch-size``)."""

    method: str = option("simclr", "simclr, moco, byol or deepcluster")
    backbone: str = option("resnet18", "timm model name")
    size: int = option(32, "chip size in pixels")
    bands: int = option(4, "bands per chip")
    batch_size: int = option(8, "chips per process and step")
    steps: int = option(10, "timed steps")
    warmup: int = option(2, "untimed steps first")
    threads: int = option(1, "intra-op threads per process")
    out: str | None = option(None, "folder for bench_ddp.json")


def measure(chips: Path, out: Path, processes: int, args: DdpBenchConfig) -> dict[str, Any]:
    """Run ``geossl pretrain`` on ``processes`` gloo processes; rank 0's timing."""
    timing = out / "timing"
    options = {"data": "chips", "root": str(chips), "out": str(out), "sensors": "s2",
               "pairing": "aug", "method": args.method, "backbone": args.backbone,
               "img_size": args.size, "workers": 0, "accelerator": "cpu",
               "devices": str(processes), "strategy": "ddp" if processes > 1 else "auto",
               "batch_size": args.batch_size, "max_steps": args.warmup + args.steps,
               "log_every": 1000, "ckpt_every": 100000}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, "-m", "geossl.bench.ddp", "--worker", str(timing), str(args.warmup),
           str(args.threads), json.dumps(options)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"pretraining on {processes} process(es) failed: {tail[0]}")
    doc: dict[str, Any] = json.loads((timing / _TIMES.format(rank=0)).read_text())
    steps_s = doc["steps"] / doc["seconds"] if doc["seconds"] > 0 else float("nan")
    return {"processes": processes, "world": doc["world"], "steps": doc["steps"],
            "steps_per_s": steps_s, "chips_per_s": steps_s * args.batch_size * processes}


def bench_ddp(args: DdpBenchConfig) -> dict[str, Any]:
    """Pretrain on 1 and 2 processes over the same chips; the rows and the parallel efficiency.

    Returns:
        ``{"rows": [{"processes", "steps_per_s", "chips_per_s", ...}, ...], "efficiency"}``.
    """
    from geossl.bench.train import make_chips

    with tempfile.TemporaryDirectory(prefix="geossl-bench-ddp-") as tmp:
        chips = Path(tmp) / "chips"
        n = args.batch_size * 2 * (args.warmup + args.steps)  # no epoch boundary in the timing
        make_chips(chips, n=n, bands=args.bands, size=args.size)
        rows = [measure(chips, Path(tmp) / f"run{p}", p, args) for p in (1, 2)]
    return {"rows": rows, "efficiency": rows[1]["chips_per_s"] / (2 * rows[0]["chips_per_s"])}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The flags of this benchmark (``prog``: the command's name in ``--help``).

    One per field of :class:`DdpBenchConfig`.
    """
    parser = argparse.ArgumentParser(prog=prog or "geossl bench ddp",
                                     description=(__doc__ or "").split("\n")[0])
    add_argparse_flags(parser, DdpBenchConfig)
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``geossl bench ddp``: print the table (and write ``--out/bench_ddp.json``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    args = config_from(DdpBenchConfig, build_parser(prog).parse_args(argv))
    if args.out:  # before measuring: absent, empty or an earlier bench output
        from geossl.core.errors import GeosslError
        from geossl.core.io import check_output

        try:
            check_output(args.out, "bench", own=("bench_ddp.json",))
        except GeosslError as err:
            print(f"{prog or 'geossl bench ddp'}: error: {err}", file=sys.stderr)
            return 2
    result = bench_ddp(args)
    rows, efficiency = result["rows"], result["efficiency"]
    print(f"pretrain {args.method} {args.backbone}, {args.bands} x {args.size} px, "
          f"{args.batch_size} chips per process and step, {args.threads} thread(s) per "
          f"process, gloo on CPU, {args.steps} timed steps")
    print("| processes | steps/s | chips/s | parallel efficiency |")
    print("|---|---|---|---|")
    for row in rows:
        eff = 1.0 if row["processes"] == 1 else efficiency
        print(f"| {row['processes']} | {row['steps_per_s']:.2f} | {row['chips_per_s']:.1f} | "
              f"{eff:.2f} |")
    if args.out:
        from geossl.core.io import atomic_write_text, mark_output

        mark_output(args.out, "bench")
        atomic_write_text(Path(args.out) / "bench_ddp.json",
                          json.dumps({"config": dataclasses.asdict(args), "rows": rows,
                                      "efficiency": efficiency}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
