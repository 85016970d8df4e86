"""One owner per small contract (issue 22, "Structure"): architecture tests over the sources.

Each test reads ``geossl/`` and checks that a contract has no second implementation outside
its owner: the first line of an exception (``geossl.core.errors.first_line``), every PNG
(``geossl.viz.plots``), chip-index rows (``geossl.tiling.chip_index.index_row``), normalisation
(``geossl.pretrained.normalize``, below ``geossl.pretrained.checkpoint``) and dataset construction
(the registry).
"""

from __future__ import annotations

import re
from pathlib import Path

import geossl
from geossl.core.errors import first_line, one_line

PACKAGE = Path(geossl.__file__).parent


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "testing" not in p.parts)


def _hits(pattern: re.Pattern[str], allowed: set[str]) -> list[str]:
    out = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in allowed:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                out.append(f"{rel}:{n}: {line.strip()}")
    return out


def test_first_line_of_an_exception() -> None:
    assert first_line(ValueError("  bad header\nTraceback ...\n")) == "bad header"
    assert first_line(OSError()) == "OSError"
    assert one_line("a\n  b\tc ") == "a b c"


def test_one_first_line_helper() -> None:
    pattern = re.compile(r"str\((err|exc|e)\)[.\w()]*\.splitlines\(\)|def _first_line")
    assert _hits(pattern, {"core/errors.py"}) == []


def test_every_png_is_drawn_in_plots() -> None:
    """No module outside ``geossl.viz.plots`` draws a figure, saves one or encodes a PNG.

    A dataset's ``plot()`` (TorchGeo's convention) returns a figure and saves nothing.
    """
    saving = re.compile(r"\.savefig\(|save_figure\(|format=[\"']png[\"']|[\"']PNG[\"']")
    assert _hits(saving, {"viz/plots.py"}) == []
    drawing = re.compile(r"plt\.(subplots|figure|imshow|plot)\(")
    assert [h for h in _hits(drawing, {"viz/plots.py"}) if not h.startswith("datasets/")] == []


def test_one_chip_index_row_builder(tmp_path: Path) -> None:
    from geossl.tiling.chip_index import COLUMNS, index_row, make_index, read_index, write_index

    row = index_row("a", "s/a.tif", "s", "s2", None, "EPSG:32633", 10.0, 0, 16, 16, 16,
                    "B02,B03", 0.5, (500160.0, 5000000.0, 500000.0, 5000160.0))
    assert tuple(row) == COLUMNS[:-1]
    assert (row["minx"], row["miny"], row["maxx"], row["maxy"]) == (
        500000.0, 5000000.0, 500160.0, 5000160.0)
    gdf = read_index(write_index(make_index([row]), tmp_path / "index.parquet"))
    assert list(gdf.columns) == list(COLUMNS) and gdf.crs.to_epsg() == 4326
    # nobody else writes a row literal: the column that only an index row has
    literal = re.compile(r"[\"']valid_fraction[\"']\s*:")
    assert _hits(literal, {"tiling/chip_index.py"}) == []


def test_normalisation_sits_below_checkpoint() -> None:
    """``geossl.pretrained.normalize`` sits under ``checkpoint`` and imports only the contracts."""
    import ast
    import tomllib

    conf = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    layers = next(c["layers"] for c in conf["tool"]["importlinter"]["contracts"]
                  if c.get("containers") == ["geossl.pretrained"])
    where = {name.strip(): i for i, layer in enumerate(layers)
             for name in re.split(r"[|:]", layer)}
    assert where["normalize"] > where["checkpoint"]
    tree = ast.parse((PACKAGE / "pretrained/normalize.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in imported if m.startswith("geossl")} <= {"geossl.core.errors",
                                                               "geossl.core.pairing"}
    assert not (PACKAGE / "data" / "normalize.py").exists()


def test_datasets_are_built_by_the_registry_only() -> None:
    """No module outside ``geossl/datasets`` calls a registered dataset class, and nothing in
    the dataset contract reads a constructor's signature."""
    from geossl.datasets.registry import DATASETS

    names = sorted({cls for _, cls in DATASETS.values()})
    call = re.compile(r"(?<![\w.])(" + "|".join(names) + r")\(")
    hits = [h for h in _hits(call, set()) if not h.startswith("datasets/")
            and not h.split(": ", 1)[1].startswith(("class ", "#", "``"))]
    assert hits == []
    signature = re.compile(r"inspect\.signature\(")
    contract = [h for h in _hits(signature, set())
                if h.startswith(("datasets/", "data/", "eval/data", "embed", "demo/"))]
    assert contract == []


def test_dataset_declarations_are_read_by_the_protocol_readers_only() -> None:
    """Nobody probes an object by name for a dataset declaration; the readers of
    ``geossl.datasets.protocol`` read them (their one fallback takes the name as a variable).
    The online probe reads the Lightning data module's ``classes`` / ``bands`` (a data module,
    possibly a user's, not a dataset)."""
    names = "ids|bands|classes|targets|sensors|footprints|labelled_mask|normalized"
    probe = re.compile(rf"(getattr|hasattr)\([^,()]+, *[\"']({names})[\"']")
    assert [h for h in _hits(probe, set()) if not h.startswith("training/monitor.py")] == []
    assert _hits(probe, set()) != []  # the pattern finds the data module's, so it works


def test_the_declaration_readers_probe_no_attribute_of_geossl_classes() -> None:
    """``getattr``/``hasattr`` in ``datasets/protocol.py``, ``base.py`` and ``bands.py``: only
    ``protocol.plain_declaration`` (the documented fallback for a plain dataset object) and
    ``SelectBands.__getattr__`` (attribute delegation for callers, not a reader); the readers
    unwrap geossl's wrappers through ``DatasetWrapper.wrapped`` / ``stated()`` and read a
    ``DeclaredDataset``'s declarations as attributes it declares."""
    import ast

    found = []
    for rel in ("datasets/protocol.py", "datasets/base.py", "datasets/bands.py"):
        tree = ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))
        for scope in ast.walk(tree):
            if not isinstance(scope, ast.FunctionDef):
                continue
            for node in ast.walk(scope):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                        and node.func.id in ("getattr", "hasattr"):
                    found.append(f"{rel}:{scope.name}:{node.func.id}")
    assert sorted(found) == ["datasets/bands.py:__getattr__:getattr",
                             "datasets/protocol.py:plain_declaration:getattr"]


def test_the_protocol_module_imports_nothing_of_the_datasets_package() -> None:
    """``datasets.protocol`` is the lowest module of the package: ``bands`` and ``base`` import
    it, it imports neither (no cycle between them, lazy or not; pyproject's layers)."""
    import ast

    imported = set()
    for rel in ("datasets/protocol.py", "datasets/bands.py"):
        for node in ast.walk(ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add((rel, node.module))
    assert {m for r, m in imported if r == "datasets/protocol.py"
            and m.startswith("geossl")} == set()
    assert {m for r, m in imported if r == "datasets/bands.py"
            and m.startswith("geossl.datasets")} == {"geossl.datasets.protocol"}
