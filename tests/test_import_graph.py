"""No import cycle in tlsweep/: read statically (ast), module-level imports and imports inside functions alike."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tlsweep"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The tlsweep modules an import statement runs: the named modules and their packages' ``__init__``."""
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
        named = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    own = {module, *_ancestors(module)}
    found = set()
    for name in named:
        found |= {m for m in [*_ancestors(name), name] if m in modules and m not in own}
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(imports run when a module is imported, imports run when one of its functions is called) per module;
    ``if TYPE_CHECKING:`` blocks never run and are left out."""
    modules = _modules()
    at_import: dict[str, set[str]] = {name: set() for name in modules}
    in_functions: dict[str, set[str]] = {name: set() for name in modules}

    def visit(module: str, path: Path, node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (in_functions if inside else at_import)[module] |= _targets(module, path, child, modules)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(module, path, ast.Module(body=[orelse], type_ignores=[]), inside)
            else:
                visit(module, path, child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    for module, path in modules.items():
        visit(module, path, ast.parse(path.read_text(encoding="utf-8")), False)
    return at_import, in_functions


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_module_imports_another_that_imports_it_back_at_import_time() -> None:
    at_import, _ = import_graph()
    assert len(at_import) > 50 and at_import["tlsweep.design"] >= {"tlsweep.spec"}
    assert cycles(at_import) == []


def test_no_cycle_either_through_imports_inside_functions() -> None:
    at_import, in_functions = import_graph()
    both = {name: at_import[name] | in_functions[name] for name in at_import}
    assert any(in_functions.values())
    assert cycles(both) == []


def test_the_spec_is_data_that_knows_nothing_of_its_plan_or_loading() -> None:
    at_import, in_functions = import_graph()
    both = {name: at_import[name] | in_functions[name] for name in at_import}
    reached, todo = set(), ["tlsweep.spec"]
    while todo:
        for name in both[todo.pop()] - reached:
            reached.add(name)
            todo.append(name)
    assert not reached & {"tlsweep.design", "tlsweep.spec_load", "tlsweep.spec_yaml", "tlsweep.results.store"}
    assert {"tlsweep.design", "tlsweep.spec_yaml"} <= at_import["tlsweep.spec_load"]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
        ({"a": {"a"}}, [["a"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_package_imports_run_the_package_init(tmp_path: Path) -> None:
    modules = {"p": tmp_path / "p/__init__.py", "p.q": tmp_path / "p/q.py", "r": tmp_path / "r.py"}
    node = ast.parse("from p.q import x").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _targets("r", modules["r"], node, modules) == {"p", "p.q"}
    assert _targets("p.q", modules["p.q"], ast.parse("from . import q").body[0], modules) == set()  # type: ignore[arg-type]
