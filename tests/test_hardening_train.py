"""Issue 18 (items 3, 4, 5, 19): `geossl pretrain` under SIGTERM, damaged checkpoints, a
changed checkpoint interval and mid-epoch resumes."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from geossl.cli import main
from tests._cli_helpers import S2_AUG, TINY, ckpt_step, last_geossl_line, launch, stop_when


# --------------------------------------------------------------------------------------------
# item 3: SIGTERM saves like Ctrl-C and exits 143
# --------------------------------------------------------------------------------------------
def test_sigterm_saves_and_exits_143(tmp_path: Path, sen12ms: Path) -> None:
    """SIGTERM to the process only, as SLURM and Kubernetes stop a job."""
    out = tmp_path / "run"
    proc = launch(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
                    *S2_AUG, *TINY, "--ckpt-every", "3", "--max-steps", "100000"])
    err = stop_when(out / "checkpoints" / "step=3.ckpt", proc,
                    lambda: proc.send_signal(signal.SIGTERM))
    assert proc.returncode == 143, err[-3000:]
    ours = last_geossl_line(err)
    assert "terminated (SIGTERM): stopped at step" in ours and "--resume last" in ours
    assert "Traceback" not in err
    step = int(ours.split("stopped at step ")[1].split(";")[0])
    ckpts = out / "checkpoints"
    assert step >= 3
    assert ckpt_step(ckpts / "last.ckpt") == step and ckpt_step(ckpts / f"step={step}.ckpt") == step


# --------------------------------------------------------------------------------------------
# item 4: every checkpoint damaged -> refuse, touch nothing
# --------------------------------------------------------------------------------------------
def test_resume_last_with_only_damaged_checkpoints_refuses(
        tmp_path: Path, sen12ms: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
            *S2_AUG, *TINY, "--ckpt-every", "2"]
    assert main([*args, "--max-steps", "2"]) == 0
    ckpts = out / "checkpoints"
    damaged = sorted(ckpts.glob("*.ckpt"))
    assert [p.name for p in damaged] == ["last.ckpt", "step=2.ckpt"]
    for path in damaged:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*args, "--max-steps", "4", "--resume", "last"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("geossl pretrain: error:"), err
    for path in damaged:
        assert path.name in err
    assert "damaged" in err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # metrics.csv history, config and checkpoints untouched


# --------------------------------------------------------------------------------------------
# item 5: another --ckpt-every on resume keeps last.ckpt the newest
# --------------------------------------------------------------------------------------------
def test_resume_with_another_ckpt_every_keeps_last_ckpt_newest(
        tmp_path: Path, sen12ms: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
            *S2_AUG, *TINY]
    assert main([*args, "--ckpt-every", "2", "--max-steps", "2"]) == 0
    capsys.readouterr()
    assert main([*args, "--ckpt-every", "3", "--max-steps", "5", "--resume", "last"]) == 0
    said = capsys.readouterr().out
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "last.ckpt", "step=2.ckpt", "step=3.ckpt", "step=5.ckpt"]
    assert ckpt_step(ckpts / "last.ckpt") == 5
    assert f"last checkpoint {ckpts / 'last.ckpt'}" in said


# --------------------------------------------------------------------------------------------
# item 15: t-SNE snapshots with unlabelled chips (-100)
# --------------------------------------------------------------------------------------------
def test_tsne_with_unlabelled_samples(tmp_path: Path) -> None:
    """sen12ms-geo chips without a scene label carry -100: shown as "no label", no IndexError."""
    import matplotlib.pyplot as plt
    import numpy as np

    from geossl.viz import plots

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8)).astype(np.float32)
    y = np.array([0, 1, -100] * 10)
    seen: list[list[str]] = []
    real_save = plots.save_figure

    def keep_legend(fig: Any, path: Any) -> Path:
        seen.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        return real_save(fig, path)

    plots.save_figure = keep_legend  # type: ignore[assignment]
    try:
        out = plots.plot_tsne(x, y, tmp_path / "t.png", class_names=["forest", "water"])
    finally:
        plots.save_figure = real_save  # type: ignore[assignment]
        plt.close("all")
    assert out.stat().st_size > 0
    assert sorted(seen[0]) == ["forest", "no label", "water"]


# --------------------------------------------------------------------------------------------
# item 19: the farmland fallback note: what it means, and in results.md
# --------------------------------------------------------------------------------------------
def test_farmland_fallback_note_is_exact_and_in_results_md(tmp_path: Path) -> None:
    from geossl.datasets.registry import get_dataset
    from geossl.eval.report import write_report
    from geossl.eval.tasks import PRESETS, task_targets
    from tests.data.bigearthnet.data import generate_v2

    n = 8
    generate_v2(tmp_path / "v2m", n=n, s1=False, reference_maps=False)
    ds = get_dataset("bigearthnet", tmp_path / "v2m", split="all")
    labels = torch.stack([ds[i]["label"] for i in range(n)])
    _, note = task_targets(PRESETS["farmland"], ds, range(n), labels)
    assert note is not None
    # the 19-class parent also holds other land: the note says what is counted as farmland
    assert "'Non-irrigated arable land' is read as its 19-class parent 'Arable land'" in note
    assert "Permanently irrigated land" in note and "Rice fields" in note
    assert "\n" not in note
    paths = write_report({"meta": {"checkpoint": "c", "data": "bigearthnet",
                                   "task_notes": [note]}, "runs": []}, tmp_path / "out")
    assert note in paths["markdown"].read_text()


# --------------------------------------------------------------------------------------------
# item 19: a mid-epoch resume draws new augmentations, not the epoch's first ones again
# --------------------------------------------------------------------------------------------
def test_mid_epoch_resume_does_not_replay_the_first_augmentations(tmp_path: Path,
                                                                  sen12ms: Path) -> None:
    import hashlib

    from lightning.pytorch.callbacks import Callback

    from geossl.cli import build_parser
    from geossl.training.trainer import PretrainConfig, pretrain

    class RngAtStep(Callback):  # type: ignore[misc]
        """The state of torch's RNG (which draws the views) at the start of every step."""

        def __init__(self) -> None:
            self.seen: dict[int, str] = {}

        def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
            state = torch.random.get_rng_state().numpy().tobytes()
            self.seen[trainer.global_step] = hashlib.sha1(state).hexdigest()

    def run(steps: int, *extra: str) -> dict[int, str]:
        cfg = build_parser()[0].parse_args(
            ["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out",
             str(tmp_path / "run"), *S2_AUG, *TINY, "--ckpt-every", "2", "--max-steps",
             str(steps), *extra])
        rec = RngAtStep()
        pretrain(PretrainConfig.from_namespace(cfg.pretrain), callbacks=[rec])
        return rec.seen

    first = run(2)
    resumed = run(3, "--resume", "last")
    assert set(resumed) == {2}
    assert resumed[2] != first[0]  # not the epoch's first draw again
