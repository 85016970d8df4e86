"""The import graph of ``geossl/``: no cycle anywhere, no import of the repository's tests or tools.

Read from the source with :mod:`ast` (every ``import`` statement, at module level, inside
functions and ``try`` blocks, plus ``importlib.import_module("geossl...")`` with a literal name),
so lazy imports count too. The layering between packages is checked by ``lint-imports``
(``[tool.importlinter]`` in pyproject.toml), run by .ci/run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "geossl"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Every module name ``module`` imports (``from pkg import sub`` imports ``pkg.sub``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in modules else base
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.args[0].value


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(edges between geossl modules, top-level packages imported from outside geossl)``."""
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    external: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name in _imported(module, path, modules):
            if name.partition(".")[0] != "geossl":
                external[module].add(name.partition(".")[0])
                continue
            target = name
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges[module].add(target)
    return edges, external


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_graph_is_read() -> None:
    edges, external = import_graph()
    assert "geossl.core.pairing" in edges and "geossl.data.datamodule" in edges
    assert "geossl.core.pairing" in edges["geossl.data.datamodule"]
    assert "torch" in external["geossl.core.pairing"]


def test_no_import_cycle() -> None:
    edges, _ = import_graph()
    assert cycles(edges) == []


def test_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_geossl_never_imports_tests_or_tools() -> None:
    _, external = import_graph()
    bad = {m: sorted(names & {"tests", "tools"}) for m, names in external.items()
           if names & {"tests", "tools"}}
    assert bad == {}


def test_pairing_contract_is_at_the_bottom() -> None:
    edges, _ = import_graph()
    assert edges["geossl.core.pairing"] <= {"geossl.core.errors"}
    for package in ("geossl.data", "geossl.methods"):
        other = "geossl.methods" if package == "geossl.data" else "geossl.data"
        crossing = {m: sorted(t for t in ts if t == other or t.startswith(f"{other}."))
                    for m, ts in edges.items() if m == package or m.startswith(f"{package}.")}
        assert {m: ts for m, ts in crossing.items() if ts} == {}


def test_package_root_holds_only_the_entry_point() -> None:
    """Every module lives in the package of its stage; the root keeps only the console entry."""
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "cli.py"]
