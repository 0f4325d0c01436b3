"""The package's import graph: no cycles, and dependency runs one way (docs/design.md, Layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import casstore

ROOT = Path(casstore.__file__).parent

# a module of each layer imports nothing from the layers listed after it
LAYERS_BELOW_TO_ABOVE = [
    ["casstore.backend"],
    ["casstore.objects"],
    ["casstore.runs"],
    ["casstore.registry", "casstore.models"],
    ["casstore.tracking"],
    ["casstore.cli"],
]
# the one way up, named: log_model and register_model log into the active run of the
# tracking API, which models/_context.py imports when first called
BRIDGES = {("casstore.models._context", "casstore.tracking.fluent")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the casstore modules it imports, at the top or inside a function, without the
    packages it lies in (importing ``casstore.runs.layout`` from ``casstore.runs.handle``
    runs the package's ``__init__`` first, which is no cycle of the code's making)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in files else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in files and d != name and not name.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_layer_imports_a_layer_above_it() -> None:
    graph = _graph()
    wrong = []
    for i, layer in enumerate(LAYERS_BELOW_TO_ABOVE):
        above = [p for later in LAYERS_BELOW_TO_ABOVE[i + 1 :] for p in later]
        for mod, deps in graph.items():
            if any(mod == p or mod.startswith(p + ".") for p in layer):
                wrong += [(mod, d) for d in deps if any(d == p or d.startswith(p + ".") for p in above)]
    assert set(wrong) == BRIDGES


def test_system_tag_names_are_named_in_one_module() -> None:
    """MLflow's system tag names (``mlflow.runName``, ``mlflow.user`` ...) are written once, in
    ``casstore/utils/mlflow_tags.py``; every other module uses its constants."""
    from casstore.utils import mlflow_tags

    names = {getattr(mlflow_tags, n) for n in mlflow_tags.__all__}
    home = ROOT / "utils" / "mlflow_tags.py"
    literals = sorted(
        f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}"
        for path in ROOT.rglob("*.py") if path != home
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant) and node.value in names
    )
    assert literals == []
