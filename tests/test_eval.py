"""Evaluation protocols on a small fake dataset (tiny encoder, 32 px): budgets, probes, kNN,
fine-tuning vs scratch, clustering, caching, reports and pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from geossl.errors import ConfigError, DataError
from geossl.eval.budgets import Budget, draw_budget
from geossl.eval.features import EncoderSource, cached_features, extract_features
from geossl.eval.knn import knn_scores
from geossl.eval.linear import linear_probe
from geossl.eval.run import evaluate, parse_protocols

K = 3


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """One torch thread (after conftest's default): these tests' budget is one core, and small
    operations on several threads only wait for each other on a busy machine."""
    torch.set_num_threads(1)


class TinyEncoder(nn.Module):
    """Conv + global pool: enough to separate classes that differ by colour and texture."""

    def __init__(self, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class FakeScenes(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """``n`` 32 px chips per class; class k has a mean colour shift on band k."""

    classes = ("water", "forest", "urban")
    bands = ("B04", "B03", "B02")

    def __init__(self, n: int = 20, size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n * K, 3, size, size, generator=g) * 0.5
        self.targets = torch.arange(K).repeat_interleave(n)
        for i, t in enumerate(self.targets):
            self.images[i, t] += 2.0
        self.ids = [f"chip{i:03d}" for i in range(n * K)]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "label": self.targets[i], "id": self.ids[i]}


def _splits(ds: FakeScenes) -> dict[str, list[str]]:
    # alternate samples between sides (a stand-in for the overlap-aware splitter's output)
    train = [i for j, i in enumerate(ds.ids) if j % 2 == 0]
    test = [i for j, i in enumerate(ds.ids) if j % 2 == 1]
    return {"train": train, "test": test}


def _source() -> EncoderSource:
    torch.manual_seed(0)
    meta = {"backbone": "tiny", "in_chans": 3, "method": "simclr", "sensors": None,
            "bands": ["B04", "B03", "B02"], "normalization": None}
    return EncoderSource(TinyEncoder(), meta, "tiny-test")


# --------------------------------------------------------------------------------------------
def test_budget_per_class_stratified_and_seeded() -> None:
    y = np.array([0] * 30 + [1] * 20 + [2] * 5)
    rows = draw_budget(y, Budget(per_class=10), seed=1)
    assert np.bincount(y[rows]).tolist() == [10, 10, 5]  # a small class gives all it has
    assert np.array_equal(rows, draw_budget(y, Budget(per_class=10), seed=1))
    assert not np.array_equal(rows, draw_budget(y, Budget(per_class=10), seed=2))
    total = draw_budget(y, Budget(total=11), seed=0)
    assert len(total) == 11 and len(set(total)) == 11
    assert np.bincount(y[total]).tolist() == [6, 4, 1]  # proportional, every class present
    assert len(draw_budget(y, Budget(), seed=0)) == len(y)
    with pytest.raises(ConfigError):
        draw_budget(y, Budget(total=100), seed=0)
    with pytest.raises(ConfigError):
        Budget(per_class=1, total=3)


def test_budget_multilabel() -> None:
    y = np.zeros((40, 3))
    y[:20, 0] = 1
    y[10:30, 1] = 1
    y[30:, 2] = 1
    rows = draw_budget(y, Budget(per_class=4), seed=0)
    assert (y[rows].sum(0) >= 4).all()


def test_linear_probe_separable() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(K, 8, generator=g) * 3
    y = torch.arange(K).repeat(30)
    x = centres[y] + torch.randn(len(y), 8, generator=g) * 0.3
    scores, info = linear_probe(x[:60], y[:60], x[60:], K)
    assert (scores.argmax(1) == y[60:]).float().mean() == 1.0
    assert info["weight_decay"] > 0


def test_knn_temperature_weighted_votes() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    q = torch.tensor([[0.2, 1.0]])
    s = knn_scores(bank, labels, q, num_classes=2, k=3, temperature=0.07)
    qn = q / q.norm()
    sims = (bank / bank.norm(dim=1, keepdim=True)) @ qn.T
    w = (sims.squeeze(1) / 0.07).exp()
    assert torch.allclose(s[0], torch.stack([w[:2].sum(), w[2]]), rtol=1e-5)
    assert int(s.argmax()) == 1
    # k larger than the bank is capped
    assert knn_scores(bank, labels, q, 2, k=200).shape == (1, 2)


def test_few_threads_limits_small_work_and_restores() -> None:
    from geossl.eval.threads import few_threads

    torch.set_num_threads(2)
    try:
        with few_threads(1e3):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with few_threads(1e12):  # large work keeps every thread
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_feature_cache(tmp_path: Path) -> None:
    ds = FakeScenes(n=4)
    src = _source()
    pos = list(range(6))
    a = cached_features(src, ds, pos, dataset_key="fake", split="train", cache_dir=tmp_path,
                        ids=ds.ids[:6], device="cpu")
    files = list(tmp_path.glob("features-train-*.pt"))
    assert len(files) == 1
    # a second call reads the cache: the encoder is not run again
    src.encoder.forward = None  # type: ignore[assignment,method-assign]
    b = cached_features(src, ds, pos, dataset_key="fake", split="train", cache_dir=tmp_path,
                        ids=ds.ids[:6], device="cpu")
    assert torch.equal(a.features, b.features) and b.ids == ds.ids[:6]
    direct = extract_features(_source().encoder, ds, pos, device="cpu")
    assert torch.allclose(direct.features, a.features)


def test_evaluate_all_protocols(tmp_path: Path) -> None:
    ds = FakeScenes(n=20)
    res = evaluate(_source(), ds, protocols="linear,knn,finetune,cluster", splits=_splits(ds),
                   labels_per_class=5, seeds=[0, 1], out=tmp_path, device="cpu",
                   finetune_steps=3, finetune_batch_size=8, knn_k=(5, 200))
    protos = {r["protocol"] for r in res["runs"]}
    assert protos == {"linear", "knn5", "knn200", "finetune", "scratch", "cluster"}
    for r in res["runs"]:
        if r["protocol"] != "cluster":
            assert r["n_labels"] == 5 * K
            assert r["budget"] == "5/class"
    linear = [r["metrics"]["oa"] for r in res["runs"] if r["protocol"] == "linear"]
    assert min(linear) > 0.9  # classes differ by a colour shift: frozen features suffice
    data = json.loads((tmp_path / "results.json").read_text())
    assert {row["protocol"] for row in data["summary"]} == protos
    md = (tmp_path / "results.md").read_text()
    assert "| linear | 5/class | 2 |" in md and "±" in md
    for name in ("tsne.png", "knn_grid.png", "confusion_linear.png", "finetune_curves.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "logs" / "scratch-5pc-seed0.csv").exists()


def test_evaluate_same_labels_for_finetune_and_scratch(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import geossl.eval.run as run

    seen: list[tuple[list[int], int]] = []
    real = run.finetune

    def spy(encoder: nn.Module, dataset: Any, train_pos: list[int], *a: Any, **kw: Any) -> Any:
        seen.append((list(train_pos), kw["steps"]))
        return real(encoder, dataset, train_pos, *a, **kw)

    monkeypatch.setattr(run, "finetune", spy)
    ds = FakeScenes(n=10)
    evaluate(_source(), ds, protocols="finetune", splits=_splits(ds), labels_total=6, seeds=[3],
             device="cpu", finetune_steps=2, plots=False)
    assert len(seen) == 2 and seen[0] == seen[1]
    train_ids = set(_splits(ds)["train"])
    assert all(ds.ids[p] in train_ids for p in seen[0][0])  # budgets come from TRAIN only


def test_evaluate_bad_input() -> None:
    ds = FakeScenes(n=4)
    with pytest.raises(ConfigError):
        parse_protocols("linear,svm")
    with pytest.raises(ConfigError):
        evaluate(_source(), ds, splits=None, device="cpu")
    with pytest.raises(DataError):
        evaluate(_source(), ds, splits={"train": ["nope"], "test": ds.ids[:2]}, device="cpu")
    with pytest.raises(ConfigError):  # leakage: the same chip on both sides
        evaluate(_source(), ds, splits={"train": ds.ids[:4], "test": ds.ids[3:]}, device="cpu")


# --------------------------------------------------------------------------------------------
# registry datasets and the CLI
# --------------------------------------------------------------------------------------------
def _ucmerced(tmp_path: Path) -> Path:
    from tests.data.aid.data import generate_ucmerced

    return generate_ucmerced(tmp_path / "data", n_per_class=6, size=32)


def test_evaluate_registry_dataset_with_split_file(tmp_path: Path) -> None:
    from geossl.data.registry import get_dataset

    root = _ucmerced(tmp_path)
    ds = get_dataset("ucmerced", str(root), split="all", size=32)
    split = {"strategy": "random", "params": {},
             "splits": {"train": ds.ids[0::2], "test": ds.ids[1::2]}}
    (tmp_path / "split.json").write_text(json.dumps(split))
    src = EncoderSource(TinyEncoder(), {"backbone": "tiny", "in_chans": 3,
                                        "normalization": {"mean": [128] * 3,
                                                          "std": [40] * 3}}, "k")
    res = evaluate(src, "ucmerced", root, "linear,knn", splits=tmp_path / "split.json",
                   labels_per_class=2, out=tmp_path / "ev", device="cpu", plots=False)
    assert res["meta"]["n_train"] == 9 and res["meta"]["n_test"] == 9
    assert len(list((tmp_path / "ev" / "cache").glob("features-*.pt"))) == 2


def test_cli_evaluate_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main

    assert main(["evaluate", "random", "--backbone", "resnet18", "--data", "ucmerced",
                 "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope.ckpt"), "--protocol", "svm", "--data",
                 "ucmerced", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geossl evaluate: error:") and "svm" in err and len(
        err.strip().splitlines()) == 1


def test_cli_evaluate_random_baseline(tmp_path: Path) -> None:
    models = pytest.importorskip("geossl.models")
    if not hasattr(models, "build_encoder"):
        pytest.skip("geossl.models.build_encoder not available yet")
    from geossl.cli import main
    from tests.data.aid.data import generate_eurosat

    # EuroSAT's own deterministic split (64 px, 13 bands, 5 chips per class)
    root = generate_eurosat(tmp_path / "data", n_per_class=5, size=64)
    out = tmp_path / "ev"
    assert main(["evaluate", "random", "--backbone", "resnet18", "--protocol", "linear,cluster",
                 "--data", "eurosat", "--root", str(root), "--labels-per-class", "2",
                 "--seeds", "0,1", "--out", str(out), "--accelerator", "cpu",
                 "--batch-size", "8"]) == 0
    data = json.loads((out / "results.json").read_text())
    meta = data["meta"]
    assert meta["method"] == "random" and meta["n_test"] > 0
    assert meta["n_train"] + meta["n_test"] == 5 * meta["num_classes"]
    assert {r["protocol"] for r in data["runs"]} == {"linear", "cluster"}
    k = meta["num_classes"]
    assert all(r["n_labels"] == 2 * k for r in data["runs"] if r["protocol"] == "linear")
    assert sorted(r["seed"] for r in data["runs"] if r["protocol"] == "linear") == [0, 1]
    assert (out / "results.md").exists() and (out / "tsne.png").exists()
