"""Binary tasks (farmland and user-defined) next to BigEarthNet's 19-class multi-label metrics,
end to end through `geossl evaluate`, checked against values computed here by hand from the
written predictions and the fake data's known labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from geossl.cli import main
from geossl.core.errors import ConfigError
from geossl.eval.tasks import PRESETS, BinaryTask, parse_task, parse_tasks, task_targets
from tests.data.bigearthnet.data import LABEL_SETS, generate_v1, generate_v2

#: CLC codes of the farmland classes (211 non-irrigated arable, 242 complex cultivation,
#: 243 agriculture with natural vegetation)
FARMLAND_CODES = {211, 242, 243}


def _hand_farmland(n: int) -> list[int]:
    """Patch k of the fake data carries LABEL_SETS[k % 4]."""
    return [int(bool(set(LABEL_SETS[k % len(LABEL_SETS)]) & FARMLAND_CODES)) for k in range(n)]


def _average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """AP by hand: sum over the distinct score thresholds t (high to low) of the recall gained
    at t times the precision of the samples scored >= t (tied scores enter together)."""
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        chosen = s >= t
        recall = y[chosen].sum() / y.sum()
        ap += (recall - prev_recall) * (y[chosen].sum() / chosen.sum())
        prev_recall = recall
    return float(ap)


def test_parse_tasks() -> None:
    assert parse_task("farmland") is PRESETS["farmland"]
    t = parse_task("forest=Broad-leaved forest; Coniferous forest;Mixed forest")
    assert t == BinaryTask("forest", ("Broad-leaved forest", "Coniferous forest", "Mixed forest"))
    assert parse_task({"name": "w", "classes": ["Sea and ocean"]}).classes == ("Sea and ocean",)
    assert [x.name for x in parse_tasks(["farmland", "w=Sea and ocean"])] == ["farmland", "w"]
    assert parse_tasks(None) == []
    for bad in ("nope", "=A", "x="):
        with pytest.raises(ConfigError):
            parse_task(bad)
    with pytest.raises(ConfigError, match="two tasks named"):
        parse_tasks(["farmland", "farmland=Pastures"])


def test_task_targets_nomenclatures(tmp_path: Path) -> None:
    """A CORINE level-3 class behind the 19-class labels is read from the 43-class labels of
    the same patches (v1 json, v2 reference maps); without them, from its 19-class parent with
    a note; an unknown class is refused with the closest names."""
    from geossl.datasets.registry import get_dataset

    n = 8
    made = {"v1": generate_v1(tmp_path / "v1", n=n, s1=False),
            "v2": generate_v2(tmp_path / "v2", n=n, s1=False),
            "v2m": generate_v2(tmp_path / "v2m", n=n, s1=False, reference_maps=False)}
    hand = {root: dict(zip(ids, _hand_farmland(n))) for root, ids in made.items()}
    for root in ("v1", "v2"):
        ds = get_dataset("bigearthnet", tmp_path / root, split="all")
        labels = torch.stack([ds[i]["label"] for i in range(n)])
        y, note = task_targets(PRESETS["farmland"], ds, range(n), labels)
        assert y.tolist() == [hand[root][i] for i in ds.ids] and note is None, root
        assert sum(y.tolist()) == 2
    # v2 with metadata only: 'Non-irrigated arable land' is read as 'Arable land', and said so
    ds = get_dataset("bigearthnet", tmp_path / "v2m", split="all")
    labels = torch.stack([ds[i]["label"] for i in range(n)])
    y, note = task_targets(PRESETS["farmland"], ds, range(n), labels)
    # (the fake data has no permanently irrigated land or rice fields: the same targets)
    assert y.tolist() == [hand["v2m"][i] for i in ds.ids]
    assert note is not None
    assert "'Non-irrigated arable land' is read as its 19-class parent 'Arable land'" in note
    # classes of the 19-class nomenclature itself: from the labels, no other file read
    y, note = task_targets(parse_task("forest=Mixed forest;Broad-leaved forest"), ds, range(n),
                           labels)
    k_of = {i: k for k, i in enumerate(made["v2m"])}
    assert y.tolist() == [int(k_of[i] % 4 in (1, 2)) for i in ds.ids] and note is None
    with pytest.raises(ConfigError, match=r"'Mixed forests' is not a class.*closest: Mixed forest"):
        task_targets(parse_task("f=Mixed forests"), ds, range(n), labels)


def test_evaluate_bigearthnet_map_and_farmland(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    n = 24
    ids = generate_v1(tmp_path / "ben", n=n, s1=False)
    out = tmp_path / "eval"
    rc = main(["evaluate", "random", "--backbone", "test_resnet", "--data", "bigearthnet",
               "--root", str(tmp_path / "ben"), "--protocol", "linear,knn", "--task", "farmland",
               "--accelerator", "cpu", "--batch-size", "8", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| task | protocol |" in printed and "| farmland | linear |" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["tasks"] == [PRESETS["farmland"].as_dict()]
    runs = {(r["task"], r["protocol"]): r for r in results["runs"]}
    hand = dict(zip(ids, _hand_farmland(n)))

    # 19-class multi-label: mAP recomputed by hand from the predictions
    main_run = runs[("classes", "linear")]
    pred = pd.read_csv(main_run["predictions"])
    y = pred[[f"label_{k}" for k in range(19)]].to_numpy()
    s = pred[[f"score_{k}" for k in range(19)]].to_numpy()
    with_pos = [k for k in range(19) if y[:, k].sum() > 0]
    assert len(with_pos) >= 2
    macro = np.mean([_average_precision(y[:, k], s[:, k]) for k in with_pos])
    micro = _average_precision(y.ravel(), s.ravel())
    assert main_run["metrics"]["map_macro"] == pytest.approx(macro, abs=1e-5)
    assert main_run["metrics"]["map_micro"] == pytest.approx(micro, abs=1e-5)
    # per-class AP (None where a class has no positive test sample) and F1 at 0.5, by hand;
    # drawn as the per-class bar chart
    per_ap = main_run["metrics"]["ap_per_class"]
    assert [k for k in range(19) if per_ap[k] is not None] == with_pos
    assert [per_ap[k] for k in with_pos] == pytest.approx(
        [_average_precision(y[:, k], s[:, k]) for k in with_pos], abs=1e-5)
    hits = (s > 0.5).astype(int)
    f1 = [2 * (y[:, k] * hits[:, k]).sum() / max(1, y[:, k].sum() + hits[:, k].sum())
          for k in range(19)]
    assert main_run["metrics"]["f1_per_class"] == pytest.approx(f1)
    assert (out / "per_class_linear.png").read_bytes()[:4] == b"\x89PNG"

    # farmland: labels from the fake data's codes, metrics from the confusion counts by hand
    for proto in ("linear", "knn20"):
        run = runs[("farmland", proto)]
        pred = pd.read_csv(run["predictions"])
        assert pred["label"].tolist() == [hand[i] for i in pred["id"]]
        t, p = pred["label"].to_numpy(), pred["pred"].to_numpy()
        tp, fn = int(((t == 1) & (p == 1)).sum()), int(((t == 1) & (p == 0)).sum())
        tn, fp = int(((t == 0) & (p == 0)).sum()), int(((t == 0) & (p == 1)).sum())
        assert tp + fn > 0 and tn + fp > 0
        m = run["metrics"]
        assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
        assert m["specificity"] == pytest.approx(tn / (tn + fp))
        assert m["accuracy"] == pytest.approx((tp + tn) / len(t)) == pytest.approx(m["oa"])
        assert m["confusion"] == [[tn, fp], [fn, tp]]
        assert np.ravel(m["confusion_normalized"]).tolist() == pytest.approx(
            [tn / (tn + fp), fp / (tn + fp), fn / (tp + fn), tp / (tp + fn)])
    assert (out / "confusion_farmland_linear.png").stat().st_size > 0
    farm = runs[("farmland", "linear")]["metrics"]  # F1 of "not farmland" and "farmland"
    cm = np.asarray(farm["confusion"])
    assert farm["f1_per_class"] == pytest.approx(
        [2 * cm[c, c] / max(1, cm[c].sum() + cm[:, c].sum()) for c in (0, 1)])
    assert (out / "per_class_farmland_linear.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "results.md").read_text()
    assert "| farmland | linear | all |" in md and "sensitivity" in md and "mAP macro" in md
