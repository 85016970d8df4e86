"""`geossl pretrain` runs survive what users do to them: resuming from another folder, resuming
with wrong options or a wrong file, kills during a resumed run, and Ctrl-C.

The kill and Ctrl-C tests run the real CLI in a subprocess and signal it.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from geossl.cli import main
from tests._cli_helpers import (
    S2_AUG,
    TINY,
    ckpt_step,
    last_geossl_line,
    launch,
    one_line_error,
    stop_when,
    wait_for,
)


def _loss_steps(metrics_csv: Path) -> list[int]:
    """Steps of the rows holding a training loss, in file order."""
    with metrics_csv.open(newline="") as fh:
        return [int(float(r["step"])) for r in csv.DictReader(fh) if r.get("train/loss")]


# --------------------------------------------------------------------------------------------
# resume from another folder
# --------------------------------------------------------------------------------------------
def test_resume_from_another_folder(tmp_path: Path, sen12ms: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The documented `--config RUN/config.yaml --resume last`, from elsewhere, resumes RUN."""
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    monkeypatch.chdir(work)
    assert main(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", "runs/a",
                 *S2_AUG, *TINY, "--max-steps", "2"]) == 0
    run = work / "runs" / "a"
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["out"] == str(run) and stored["root"] == str(sen12ms)  # absolute

    monkeypatch.chdir(other)
    capsys.readouterr()
    assert main(["pretrain", "--config", str(run / "config.yaml"), "--resume", "last",
                 "--max-steps", "3"]) == 0
    assert f"resuming from {run / 'checkpoints'}" in capsys.readouterr().out
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 3
    assert not any(other.iterdir())  # no new run started here

    # a run moved elsewhere still resumes in its own folder
    moved = tmp_path / "moved" / "a"
    shutil.move(str(run), moved)
    assert main(["pretrain", "--config", str(moved / "config.yaml"), "--resume", "last",
                 "--max-steps", "4"]) == 0
    assert ckpt_step(moved / "checkpoints" / "last.ckpt") == 4
    assert not any(other.iterdir()) and not run.exists()


def test_resume_with_an_older_relative_config(tmp_path: Path, sen12ms: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """config.yaml files written before paths were absolute: relative to where the run began."""
    work, other = tmp_path / "work", tmp_path / "other"
    (work / "data").parent.mkdir(parents=True)
    shutil.copytree(sen12ms, work / "data")
    other.mkdir()
    monkeypatch.chdir(work)
    assert main(["pretrain", "--data", "sen12ms", "--root", "data", "--out", "runs/a",
                 *S2_AUG, *TINY, "--max-steps", "2"]) == 0
    config = work / "runs" / "a" / "config.yaml"
    old = yaml.safe_load(config.read_text())
    old.update(out="runs/a", root="data")  # as geossl wrote it before
    config.write_text(yaml.safe_dump(old, sort_keys=False))

    monkeypatch.chdir(other)
    assert main(["pretrain", "--config", str(config), "--resume", "last",
                 "--max-steps", "3"]) == 0
    assert ckpt_step(work / "runs" / "a" / "checkpoints" / "last.ckpt") == 3
    assert not any(other.iterdir())


def test_only_a_runs_own_config_names_its_folder(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A hand-written config beside some checkpoints/ folder keeps its own --out."""
    from geossl.cli import build_parser
    from geossl.training.trainer import RUN_CONFIG_HEADER, PretrainConfig

    def parsed(config: Path, *extra: str) -> PretrainConfig:
        cfg = build_parser()[0].parse_args(["pretrain", "--config", str(config), *extra])
        return PretrainConfig.from_namespace(cfg.pretrain)

    (tmp_path / "checkpoints").mkdir()
    mine = tmp_path / "experiment.yaml"
    mine.write_text("out: runs/exp\nmethod: byol\n")
    monkeypatch.chdir(tmp_path)
    assert parsed(mine).out == "runs/exp"
    run = tmp_path / "moved_run"
    run.mkdir()
    (run / "config.yaml").write_text(f"{RUN_CONFIG_HEADER}\nout: /gone/run\n")
    assert parsed(run / "config.yaml").out == str(run)
    assert parsed(run / "config.yaml", "--out", "branch").out == "branch"


# --------------------------------------------------------------------------------------------
# failed resumes: one line, exit 2, the run's config kept
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simclr_run(sen12ms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("simclr") / "run"
    assert main(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
                 *S2_AUG, *TINY, "--max-steps", "2"]) == 0
    return out


def test_failed_resume_keeps_the_config(simclr_run: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(simclr_run, run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace(str(simclr_run), str(run)))
    before = config.read_bytes()
    capsys.readouterr()
    assert main(["pretrain", "--config", str(config), "--resume", "last",
                 "--method", "byol", "--max-steps", "3"]) == 2
    one_line_error(capsys, "pretrain", "simclr", "--method byol", str(run / "checkpoints"))
    assert config.read_bytes() == before
    # the documented recovery works: the config still describes the run
    assert main(["pretrain", "--config", str(config), "--resume", "last",
                 "--max-steps", "3"]) == 0
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 3


def _bad_resume_files(simclr_run: Path, sen12ms: Path, folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    byol = folder / "byol"
    assert main(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(byol),
                 "--method", "byol", "--pairing", "aug", "--sensors", "s2", *TINY,
                 "--max-steps", "1"]) == 0
    files["another method"] = byol / "checkpoints" / "last.ckpt"
    wide = folder / "wide"
    assert main(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(wide),
                 *S2_AUG, *TINY, "--adapter", "linear", "--max-steps", "1"]) == 0
    files["another model"] = wide / "checkpoints" / "last.ckpt"
    plain = folder / "plain.ckpt"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("hello.txt", "not a checkpoint")
    files["plain zip"] = plain
    truncated = folder / "truncated.ckpt"
    data = (simclr_run / "checkpoints" / "last.ckpt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    files["truncated"] = truncated
    exported = folder / "exported.ckpt"
    assert main(["export", str(simclr_run / "checkpoints" / "last.ckpt"), "--out",
                 str(exported)]) == 0
    files["exported encoder"] = exported
    return files


def test_every_bad_resume_file_is_one_line(simclr_run: Path, sen12ms: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    files = _bad_resume_files(simclr_run, sen12ms, tmp_path)
    expect = {"another method": "byol run", "another model": "do not fit",
              "plain zip": "not a readable checkpoint", "truncated": "truncated",
              "exported encoder": "not a checkpoint to resume from"}
    for what, path in files.items():
        out = tmp_path / f"resume_{what.replace(' ', '_')}"
        capsys.readouterr()
        rc = main(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
                   *S2_AUG, *TINY, "--max-steps", "3", "--resume", str(path)])
        assert rc == 2, what
        one_line_error(capsys, "pretrain", str(path), expect[what])
        assert not (out / "config.yaml").exists(), what


# --------------------------------------------------------------------------------------------
# metrics.csv history across kills
# --------------------------------------------------------------------------------------------
def test_resumed_run_keeps_history_on_disk_while_it_runs(tmp_path: Path, sen12ms: Path) -> None:
    """The history is in metrics.csv from the start of the resumed run, not merged at its end
    (so a kill at any time keeps it)."""
    from lightning.pytorch.callbacks import Callback

    from geossl.training.trainer import PretrainConfig, pretrain

    out = tmp_path / "run"
    cfg = PretrainConfig(data="sen12ms", root=str(sen12ms), out=str(out), method="simclr",
                         backbone="test_resnet", sensors=["s2"], pairing="aug", batch_size=4,
                         workers=0, accelerator="cpu", devices="1", img_size=16, max_steps=4,
                         ckpt_every=2, log_every=1)
    pretrain(cfg)
    metrics = out / "logs" / "csv" / "metrics.csv"
    assert _loss_steps(metrics) == [0, 1, 2, 3]

    seen: list[list[int]] = []

    class Look(Callback):  # type: ignore[misc]
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            for logger in trainer.loggers:
                logger.save()
            seen.append(_loss_steps(metrics))

    # resume from step 2 (as if the first run had been killed after its step-2 checkpoint)
    cfg.resume = str(out / "checkpoints" / "step=2.ckpt")
    cfg.max_steps = 6
    pretrain(cfg, callbacks=[Look()])
    assert seen[0][:2] == [0, 1]  # the history before step 2 is on disk from the start
    assert _loss_steps(metrics) == [0, 1, 2, 3, 4, 5]


_KILL_AFTER_CHECKPOINT = """
import os, signal, sys
from lightning.pytorch.callbacks import Callback
from geossl.training.trainer import PretrainConfig, pretrain


class KillAfterCheckpoint(Callback):
    # Lightning calls the module's on_train_batch_end after every callback's (the checkpoint
    # callbacks last): the checkpoint of step 4 is saved and that step's row not logged yet
    def on_train_start(self, trainer, pl_module):
        def kill(*args):
            if trainer.global_step == 4:
                os.kill(os.getpid(), signal.SIGKILL)

        pl_module.on_train_batch_end = kill


cfg = PretrainConfig(data="sen12ms", root=sys.argv[1], out=sys.argv[2], method="simclr",
                     backbone="test_resnet", sensors=["s2"], pairing="aug", batch_size=4,
                     workers=0, accelerator="cpu", devices="1", img_size=16, max_steps=100,
                     ckpt_every=2, log_every=1)
pretrain(cfg, callbacks=[KillAfterCheckpoint()])
"""


def test_kill_between_checkpoint_and_its_row_loses_no_row(tmp_path: Path, sen12ms: Path) -> None:
    """Lightning saves a step's checkpoint before it logs the step's row: a SIGKILL in between
    must not leave a checkpoint whose resume skips that row."""
    out = tmp_path / "run"
    script = tmp_path / "kill.py"
    script.write_text(_KILL_AFTER_CHECKPOINT)
    killed = subprocess.run([sys.executable, str(script), str(sen12ms), str(out)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpts = out / "checkpoints"
    assert (ckpts / "step=2.ckpt").is_file()
    assert not (ckpts / "step=4.ckpt").exists()  # written, not published: its row is missing
    assert _loss_steps(out / "logs" / "csv" / "metrics.csv") == [0, 1, 2]
    rc = main(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
               *S2_AUG, *TINY, "--ckpt-every", "2", "--max-steps", "6", "--resume", "last"])
    assert rc == 0
    assert _loss_steps(out / "logs" / "csv" / "metrics.csv") == [0, 1, 2, 3, 4, 5]
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "last.ckpt", "step=2.ckpt", "step=4.ckpt", "step=6.ckpt"]  # no stale .pending left


@pytest.mark.slow
def test_kill_resume_kill_resume_keeps_the_whole_history(tmp_path: Path, sen12ms: Path) -> None:
    """SIGKILL mid-run, resume, SIGKILL the resumed run, resume again: metrics.csv holds every
    step once, in order."""
    out = tmp_path / "run"
    args = ["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
            *S2_AUG, *TINY, "--ckpt-every", "2"]
    ckpts = out / "checkpoints"
    target = 4
    for _ in range(2):
        proc = launch([*args, "--max-steps", "100000", "--resume", "last"])
        try:
            wait_for(ckpts / f"step={target}.ckpt", proc)
            time.sleep(0.5)  # a few more steps, logged but not checkpointed
        finally:
            proc.kill()
            proc.communicate()
        newest = max(ckpt_step(p) for p in ckpts.glob("*.ckpt"))
        target = newest + 4
    final = newest + 2
    done = subprocess.run([sys.executable, "-m", "geossl.cli", *args, "--max-steps",
                           str(final), "--resume", "last"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = _loss_steps(out / "logs" / "csv" / "metrics.csv")
    assert steps == list(range(final)), steps


# --------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_ctrl_c_saves_plots_and_exits_130(workers: int, tmp_path: Path, sen12ms: Path) -> None:
    """SIGINT to the process group, as a terminal's Ctrl-C sends it (loader workers too)."""
    out = tmp_path / "run"
    args = ["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
            *S2_AUG, *TINY, "--workers", str(workers), "--ckpt-every", "3",
            "--max-steps", "100000"]
    proc = launch(args, start_new_session=True)
    err = stop_when(out / "checkpoints" / "step=3.ckpt", proc,
                    lambda: os.killpg(proc.pid, signal.SIGINT))
    assert proc.returncode == 130, err[-3000:]
    ours = last_geossl_line(err)
    assert "interrupted: stopped at step" in ours and "--resume last" in ours
    assert "Traceback" not in err
    step = int(ours.split("stopped at step ")[1].split(";")[0])
    assert step >= 3
    ckpts = out / "checkpoints"
    assert ckpt_step(ckpts / "last.ckpt") == step and ckpt_step(ckpts / f"step={step}.ckpt") == step
    assert f"checkpoint {ckpts / f'step={step}.ckpt'}" in ours
    assert (out / "loss_curve.png").stat().st_size > 0
    assert _loss_steps(out / "logs" / "csv" / "metrics.csv")[-1] == step - 1
    assert (out / "config.yaml").is_file()
