"""The layout's rules, read from the code's imports (ast, nothing is imported):

- no module of the inference core (emotion/) imports the services (studio/) or the pages (pages/),
  except emotion/__main__.py, the launcher shim of `python -m emotion`;
- training/ imports neither studio/ nor pages/;
- there is no import cycle between the packages emotion, studio, training and pages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from emotion.config import REPO_ROOT

PACKAGES = ("emotion", "studio", "training", "pages")
SHIM = Path("emotion/__main__.py")


def _modules() -> dict[Path, str]:
    """{path relative to the repository: package} for every .py file of the four packages."""
    return {p.relative_to(REPO_ROOT): pkg for pkg in PACKAGES for p in sorted((REPO_ROOT / pkg).rglob("*.py"))}


def imported_packages(path: Path) -> set[str]:
    """The top-level names of the modules a file imports anywhere (functions included, TYPE_CHECKING
    blocks included: a cycle is a cycle even when only a type checker follows it)."""
    tree = ast.parse((REPO_ROOT / path).read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, inside its own package
                names.add(path.parts[0])
            elif node.module:
                names.add(node.module.split(".")[0])
    return names


def package_graph() -> dict[str, set[str]]:
    """{package: the other packages its modules import}, the shim left out."""
    graph: dict[str, set[str]] = {pkg: set() for pkg in PACKAGES}
    for path, pkg in _modules().items():
        if path != SHIM:
            graph[pkg] |= (imported_packages(path) & set(PACKAGES)) - {pkg}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as a path [a, b, ..., a], or None."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*trail, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_every_package_is_found():
    counts = {pkg: sum(1 for p in _modules().values() if p == pkg) for pkg in PACKAGES}
    assert all(counts.values()), counts
    assert SHIM in _modules()


@pytest.mark.parametrize("path", [p for p, pkg in _modules().items() if pkg == "emotion"], ids=str)
def test_the_core_never_imports_services_or_pages(path):
    forbidden = imported_packages(path) & {"studio", "pages"}
    if path == SHIM:
        assert forbidden <= {"studio"}, "the launcher shim may reach studio.cli, nothing else"
    else:
        assert not forbidden, f"{path} imports {sorted(forbidden)}: the inference core must not"


@pytest.mark.parametrize("path", [p for p, pkg in _modules().items() if pkg == "training"], ids=str)
def test_training_never_imports_services_or_pages(path):
    forbidden = imported_packages(path) & {"studio", "pages"}
    assert not forbidden, f"{path} imports {sorted(forbidden)}"


def test_no_import_cycle_between_packages():
    graph = package_graph()
    assert find_cycle(graph) is None, f"import cycle between packages: {' -> '.join(find_cycle(graph))}"
    assert graph["emotion"] == set(), graph  # the core depends on no other package of the project


def test_the_cycle_finder_finds_cycles():
    """The checker itself: a test that cannot fail proves nothing."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None
    assert find_cycle({"emotion": {"studio"}, "studio": {"emotion"}}) is not None
