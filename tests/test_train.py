"""geossl.training.trainer.pretrain as a library: DeepCluster, BYOL, rerunning OUT/config.yaml."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

from geossl.cli import main
from geossl.core.errors import ConfigError


def _methods() -> Any:
    import geossl.methods as methods

    assert methods.METHODS  # a missing method registry is a failure, never a skip
    return methods


def _ckpt(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]


def test_deepcluster_on_aid_like_data(tmp_path: Path) -> None:
    """Clusters every epoch through cluster_dataloader and resamples via set_sample_weights."""
    _methods()
    from geossl.training.trainer import PretrainConfig, pretrain
    from tests.data.aid import data as gen

    root = gen.generate(tmp_path / "data", "ucmerced", n_per_class=10, size=32)
    cfg = PretrainConfig(
        data="ucmerced", root=str(root), out=str(tmp_path / "run"), method="deepcluster",
        backbone="test_resnet", sensors=["rgb"], pairing="aug", batch_size=8, workers=0,
        accelerator="cpu", devices="1", max_epochs=2, img_size=16, log_every=1,
        method_args={"num_clusters": 3, "pca_dim": 4, "kmeans_iters": 5},
    )
    last = pretrain(cfg)
    ckpt = _ckpt(last)
    # two epochs of the training side of the dataset's own split
    assert ckpt["epoch"] >= 1 and ckpt["global_step"] >= 4
    assert ckpt["deepcluster"]["clusterings"] == 2  # before epoch 0 and between the epochs
    weights = ckpt["SSLDataModule"]["sample_weights"]
    assert weights is not None and len(weights) == len(ckpt["deepcluster"]["labels"])
    # uniform over pseudo-labels: every cluster gets the same total weight
    labels = ckpt["deepcluster"]["labels"]
    totals = {int(c): float(weights[labels == c].sum()) for c in labels.unique()}
    assert max(totals.values()) == pytest.approx(min(totals.values()), rel=1e-6)
    assert ckpt["geossl"]["method"] == "deepcluster"


def test_deepcluster_refuses_geo_pairing(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    _methods()
    rc = main(["pretrain", "--root", str(tmp_path), "--out", str(tmp_path / "run"),
               "--method", "deepcluster", "--pairing", "geo", "--sensors", "s1,s2",
               "--max-steps", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "DeepCluster" in err and "\n" not in err


def test_option_the_method_lacks_is_refused(sen12ms: Path) -> None:
    _methods()
    from geossl.training.trainer import PretrainConfig, pretrain

    cfg = PretrainConfig(data="sen12ms", root=str(sen12ms), method="byol", sensors=["s2"],
                         pairing="aug", temperature=0.2, max_steps=1, batch_size=4,
                         backbone="test_resnet", accelerator="cpu", workers=0)
    with pytest.raises(ConfigError, match="temperature"):
        pretrain(cfg)


def test_byol_and_rerun_from_effective_config(tmp_path: Path, sen12ms: Path) -> None:
    _methods()
    out = tmp_path / "run"
    assert main(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
                 "--method", "byol", "--pairing", "aug", "--sensors", "s2", "--backbone",
                 "test_resnet", "--batch-size", "4", "--workers", "0", "--accelerator", "cpu",
                 "--devices", "1", "--img-size", "16", "--max-steps", "1", "--log-every",
                 "1"]) == 0
    effective = yaml.safe_load((out / "config.yaml").read_text())
    assert effective["method"] == "byol" and effective["sensors"] == "s2"
    assert effective["precision"] == "auto" and "resume" not in effective
    # OUT/config.yaml reruns the same experiment (here resumed and extended by one step)
    assert main(["pretrain", "--config", str(out / "config.yaml"), "--max-steps", "2",
                 "--resume", "last"]) == 0
    ckpt = _ckpt(out / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert ckpt["geossl"]["bands"] == {"s2": ["B01", "B02", "B03", "B04", "B05", "B06", "B07",
                                              "B08", "B8A", "B09", "B10", "B11", "B12"]}
    assert ckpt["geossl"]["normalization"] == {"s2": "s2"}
    # the CSV history of the first run survives the resume
    text = (out / "logs" / "csv" / "metrics.csv").read_text()
    steps = {line.split(",")[0] for line in text.splitlines()[1:]}
    assert len(text.splitlines()) > 2 and steps


def test_library_config_errors(tmp_path: Path) -> None:
    from geossl.training.trainer import PretrainConfig, pretrain

    with pytest.raises(ConfigError, match="root"):
        pretrain(PretrainConfig(root=None, max_steps=1))
    with pytest.raises(ConfigError, match="max-steps"):
        pretrain(PretrainConfig(root=str(tmp_path)))
    with pytest.raises(ConfigError, match="optimizer"):
        pretrain(PretrainConfig(root=str(tmp_path), max_steps=1, optimizer="rmsprop"))


class _Killed(RuntimeError):
    """Stands for the process dying between two checkpoints."""


def _crash_at(step: int) -> Any:
    from lightning.pytorch.callbacks import Callback

    class Crash(Callback):  # type: ignore[misc]
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step >= step:
                raise _Killed(f"killed after step {trainer.global_step}")

    return Crash()


def _first_step() -> Any:
    from lightning.pytorch.callbacks import Callback

    class First(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
            self.steps.append(int(trainer.global_step))

    return First()


def test_stop_then_resume_loses_at_most_one_interval(
    tmp_path: Path, sen12ms: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run dies after step 8 with checkpoints every 3 steps: --resume last restarts at 6.

    Also: the run writes a TensorBoard events file holding the loss, and shows progress.
    """
    _methods()
    from geossl.training.trainer import PretrainConfig, pretrain

    out = tmp_path / "run"
    cfg = PretrainConfig(data="sen12ms", root=str(sen12ms), out=str(out), method="simclr",
                         backbone="test_resnet", sensors=["s2"], pairing="aug", batch_size=4,
                         workers=0, accelerator="cpu", devices="1", img_size=16, max_steps=10,
                         ckpt_every=3, log_every=1)
    with pytest.raises(_Killed):
        pretrain(cfg, callbacks=[_crash_at(8)])
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step=*.ckpt")) == ["step=3.ckpt", "step=6.ckpt"]
    assert _ckpt(ckpts / "last.ckpt")["global_step"] == 6  # 2 steps lost, fewer than 3
    shown = capsys.readouterr().out  # Lightning's tqdm bar writes to stdout
    assert "Epoch 0" in shown and "train/loss" in shown and "v_num" not in shown

    first = _first_step()
    cfg.resume = "last"
    last = pretrain(cfg, callbacks=[first])
    assert first.steps[0] == 6 and first.steps[-1] == 9  # continued where the checkpoint was
    assert _ckpt(last)["global_step"] == 10
    # the logs cover the whole run: CSV history merged, TensorBoard scalars from both runs
    frame = __import__("pandas").read_csv(out / "logs" / "csv" / "metrics.csv")
    logged = set(frame.dropna(subset=["train/loss"])["step"].astype(int))
    assert set(range(6)) <= logged and {7, 8, 9} <= logged
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted((out / "logs" / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 2  # one per run
    steps: set[int] = set()
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        assert "train/loss" in acc.Tags()["scalars"]
        steps |= {e.step for e in acc.Scalars("train/loss")}
    assert set(range(10)) <= steps


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path: Path, sen12ms: Path) -> None:
    """A real ``geossl pretrain`` process SIGKILLed mid-run: the checkpoints on disk are whole
    and ``--resume last`` continues from the newest one."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import zipfile

    _methods()
    out = tmp_path / "run"
    args = [sys.executable, "-m", "geossl.cli", "pretrain", "--data", "sen12ms", "--root",
            str(sen12ms), "--out", str(out), "--method", "simclr", "--pairing", "aug",
            "--sensors", "s2", "--backbone", "test_resnet", "--batch-size", "4", "--workers",
            "0", "--accelerator", "cpu", "--devices", "1", "--img-size", "16", "--log-every",
            "1", "--ckpt-every", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*args, "--max-steps", "100000"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = out / "checkpoints"
    try:
        deadline = time.monotonic() + 300
        while not (ckpts / "step=6.ckpt").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, "pretrain exited early"
            time.sleep(0.05)
        assert (ckpts / "step=6.ckpt").exists(), "no checkpoint within 300 s"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    for path in ckpts.glob("*.ckpt"):
        assert zipfile.is_zipfile(path), path
    # the newest state on disk (Lightning writes step=N.ckpt and last.ckpt one after the other;
    # the kill may fall between the two)
    from geossl.training.trainer import newest_checkpoint

    newest = max(_ckpt(p)["global_step"] for p in ckpts.glob("*.ckpt"))
    assert newest % 2 == 0 and newest >= 6
    chosen = newest_checkpoint(ckpts)
    assert chosen is not None and _ckpt(chosen)["global_step"] == newest
    done = subprocess.run([*args, "--max-steps", str(newest + 2), "--resume", "last"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # resumed from the newest checkpoint (last.ckpt, or step=N.ckpt when the kill fell between
    # writing the two): at most one interval lost
    assert f"resuming from {chosen}" in done.stdout
    assert _ckpt(ckpts / "last.ckpt")["global_step"] == newest + 2


def test_resume_last_takes_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    import os
    import zipfile

    from geossl.training.trainer import newest_checkpoint, resolve_resume

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    assert newest_checkpoint(ckpts) is None and resolve_resume("last", tmp_path) is None
    for i, name in enumerate(["step=2.ckpt", "last.ckpt", "step=4.ckpt", "broken.ckpt"]):
        path = ckpts / name
        if name == "broken.ckpt":
            path.write_bytes(b"half a file")
        else:
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("data.pkl", name)
        os.utime(path, ns=(10**9 * (i + 1), 10**9 * (i + 1)))
    # killed between step=4.ckpt and last.ckpt: last.ckpt is older than step=4.ckpt
    assert resolve_resume("last", tmp_path) == str(ckpts / "step=4.ckpt")
    os.utime(ckpts / "last.ckpt", ns=(4 * 10**9, 4 * 10**9))  # written last: preferred
    assert newest_checkpoint(ckpts) == ckpts / "last.ckpt"


def test_parse_normalization_and_adapter() -> None:
    from geossl.training.trainer import PretrainConfig, parse_normalization, resolve_adapter

    assert parse_normalization(None) == {}
    assert parse_normalization("s2=s2_offset, s1=s1_std") == {"s2": "s2_offset", "s1": "s1_std"}
    assert parse_normalization({"x": "none"}) == {"x": "none"}
    with pytest.raises(ConfigError, match="SENSOR=NAME"):
        parse_normalization("s2_offset")
    with pytest.raises(ConfigError, match="no normalisation for sensor 'nope'"):
        parse_normalization("s2=nope")
    cfg = PretrainConfig.from_namespace(SimpleNamespace(normalization="s2=s2_offset",
                                                        sensors="s2"))
    assert cfg.normalization == {"s2": "s2_offset"} and cfg.sensors == ["s2"]
    assert resolve_adapter(None, "aug") is None
    assert resolve_adapter("none", "aug") is None
    assert resolve_adapter("Linear_Frozen", "geo") == "linear-frozen"
    with pytest.raises(ConfigError, match="not possible with geo pairing"):
        resolve_adapter("none", "geo")
    with pytest.raises(ConfigError, match="unknown adapter 'stems'"):
        resolve_adapter("stems", "aug")


def test_check_combination_refuses_bad_normalisation_options(tmp_path: Path) -> None:
    from geossl.core.errors import DataError
    from geossl.training.trainer import PretrainConfig, check_combination

    cfg = PretrainConfig(sensors=["s2"], pairing="aug", normalization={"s1": "s1"})
    with pytest.raises(ConfigError, match=r"sensor\(s\) s1 not in --sensors s2"):
        check_combination(cfg)
    cfg = PretrainConfig(sensors=["s2"], pairing="aug", stats=str(tmp_path / "none.json"))
    with pytest.raises(DataError, match="statistics file not found"):
        check_combination(cfg)
