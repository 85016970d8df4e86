"""``geossl/bench`` is a client of the library: no evaluation, reporting or plotting of its own
(issue 22, "Structure"). Architecture test over the sources: the benchmarks import no plotting
or scikit-learn / torchmetrics evaluation code and save no figure themselves; their pictures
come from :mod:`geossl.viz.plots`, their probes and metrics from :mod:`geossl.eval`, their JSON and
markdown through :mod:`geossl.core.io`'s atomic writes."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np

import geossl.bench

BENCH = Path(geossl.bench.__file__).parent
#: top-level packages whose evaluation or drawing belongs to geossl.eval / geossl.viz.plots
FORBIDDEN_IMPORTS = ("matplotlib", "seaborn", "sklearn", "torchmetrics", "PIL")
#: calls that write a picture or a text file outside geossl.viz.plots / geossl.core.io
FORBIDDEN_CALLS = ("savefig", "imsave", "write_text", "write_bytes")


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        line = getattr(node, "lineno", 0)
        found += [f"{path.name}:{line}: imports {n}" for n in names
                  if n.split(".")[0] in FORBIDDEN_IMPORTS]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in FORBIDDEN_CALLS:
            found.append(f"{path.name}:{node.lineno}: calls .{node.func.attr}()")
    return found


def test_bench_evaluates_reports_and_draws_through_the_library(tmp_path: Path) -> None:
    sources = sorted(BENCH.glob("*.py"))
    assert len(sources) >= 8
    # the rule catches what it forbids
    sample = tmp_path / "probe.py"
    sample.write_text("import matplotlib.pyplot as plt\nfrom sklearn.metrics import f1_score\n"
                      "plt.gcf().savefig('x.png')\nPath('r.json').write_text('{}')\n")
    assert len(_violations(sample)) == 4
    found = [v for path in sources for v in _violations(path)]
    assert found == []


def test_polsar_split_picture_is_drawn_by_plots(tmp_path: Path) -> None:
    from geossl.viz.plots import plot_polsar_split

    labels = np.zeros((32, 32), dtype=np.int64)
    labels[:, 16:] = 2
    rows, cols = np.array([0, 0, 16]), np.array([0, 16, 8])
    split = np.array(["train", "test", "drop"])
    path = tmp_path / "split.png"
    plot_polsar_split(np.random.default_rng(0).random((32, 32, 3)), labels, rows, cols, split,
                      16, 8, np.array([0, 2]), ["none", "water"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_polsar_table_is_evaluation_s_own_summary() -> None:
    """The bench's table lines are geossl.eval.report's aggregation, cell for cell."""
    from geossl.bench.polsar import summarise, to_markdown
    from geossl.eval.report import format_cell
    from geossl.eval.report import summarise as eval_summarise

    rng = np.random.default_rng(0)
    runs: list[dict[str, Any]] = [{"row": row, "eval": ev, "budget": b, "seed": s,
             "metrics": {m: float(rng.random()) for m in ("oa", "aa", "f1_macro")}}
            for row in ("hand-crafted", "geossl SimCLR") for ev in ("linear probe", "kNN")
            for b in (50, 10) for s in range(3 if b == 10 else 1)]
    summary = summarise(runs, [10, 50])
    assert [(r["row"], r["eval"]) for r in summary] == [
        ("hand-crafted", "linear probe"), ("hand-crafted", "kNN"),
        ("geossl SimCLR", "linear probe"), ("geossl SimCLR", "kNN")]
    assert [list(r["budgets"]) for r in summary] == [["10", "50"]] * 4
    ref = {(g["task"], g["protocol"], g["budget"]): g["metrics"] for g in eval_summarise(
        [{"task": r["row"], "protocol": r["eval"], "budget": r["budget"], "seed": r["seed"],
          "metrics": r["metrics"]} for r in runs])}
    sel = [float(r["metrics"]["oa"]) for r in runs
           if (r["row"], r["eval"], r["budget"]) == ("geossl SimCLR", "kNN", 10)]
    stat = summary[3]["budgets"]["10"]["oa"]
    assert stat == ref[("geossl SimCLR", "kNN", "10")]["oa"]
    assert stat["n"] == 3 and np.isclose(stat["mean"], np.mean(sel))
    assert np.isclose(stat["std"], np.std(sel))
    table = to_markdown(summary, [10, 50])
    assert table.splitlines()[0] == ("| method | evaluation | OA @10/class | AA @10/class | "
                                     "OA @50/class | AA @50/class |")
    one_seed = summary[0]["budgets"]["50"]["oa"]
    assert format_cell(one_seed, always_std=True) in table.splitlines()[2]
    assert " ± 0.000" in table.splitlines()[2]  # one seed: the std is still shown, as before
