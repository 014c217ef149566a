"""The package's import graph: no circle, and the layers under the facade never import it.

Read from the source (``ast``), so an import inside a function counts as much as one at the top. The circle
check runs twice: on the imports that run, and with those under ``if TYPE_CHECKING:`` too. A type-only
import is still a dependency (the importing module is shaped by what it names), so a circle through one is
a design circle, merely hidden from the interpreter; a module that needs a bigger one's type declares a
``Protocol`` of what it uses instead (``handles.JobClient``, ``batch.executor.BatchClient``,
``routes.hosted_hooks.HostedHooks``, ...). The package ``__init__`` gets no exception: it type-imports the
whole public API, and nothing that API imports imports the package back (the version, which records and
``doctor`` stamp, lives in ``_version``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import latentsync_routes

PACKAGE = Path(latentsync_routes.__file__).parent
ROOT = "latentsync_routes"
#: The facade and what is built on it; everything else is a lower layer. Handles, webhooks, route choice,
#: batches and ``doctor`` serve the facade but sit below it: each names only a protocol of what it uses.
ABOVE_THE_FACADE = (
    "latentsync_routes.client",
    "latentsync_routes.async_client",
    "latentsync_routes.ui",
    "latentsync_routes.cli",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_only(tree: ast.Module) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                hidden.update(id(inner) for inner in ast.walk(statement))
    return hidden


def imports(*, with_type_only: bool) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text("utf-8"))
        hidden = set() if with_type_only else _type_only(tree)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])]) if node.level else node.module
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    graph[name].add(sub if sub in modules else str(target))
            elif isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names)
        graph[name] = {target for target in graph[name] if target in modules and target != name}
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


@pytest.mark.parametrize("with_type_only", [False, True], ids=["run-time imports", "with type-only imports"])
def test_the_import_graph_has_no_circle(with_type_only: bool) -> None:
    graph = imports(with_type_only=with_type_only)
    assert len(graph) > 50 and graph["latentsync_routes.client"]  # the graph was read, not empty
    assert _circle(graph) is None, " -> ".join(_circle(graph) or [])


def test_type_only_imports_are_read() -> None:
    """The second circle check sees what the first leaves out (else it could not fail)."""
    with_types, without = imports(with_type_only=True), imports(with_type_only=False)
    assert "latentsync_routes.client" in with_types[ROOT] - without[ROOT]


def test_the_circle_check_finds_a_circle() -> None:
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_lower_layers_never_import_the_facade() -> None:
    graph = imports(with_type_only=True)
    facade = "latentsync_routes.client"
    for name, targets in graph.items():
        if name == ROOT or name.startswith(ABOVE_THE_FACADE):
            continue
        assert facade not in targets, f"{name} imports the facade"
