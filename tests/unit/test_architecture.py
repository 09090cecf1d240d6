"""The import graph has no cycle between packages (grimp builds it, as import-linter does):
`contracts`, `projections`, and each package (or top module) of `services.coupons` and
`services`. A cycle here is how a write side comes to depend on its read models and back."""

from collections import defaultdict

import grimp

ROOTS = ("contracts", "projections", "services")


def package_of(module: str) -> str:
    parts = module.split(".")
    if parts[:2] == ["services", "coupons"] and len(parts) >= 3:
        return ".".join(parts[:3])
    return ".".join(parts[:2]) if parts[0] == "services" else parts[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_no_two_packages_import_each_other() -> None:
    graph = grimp.build_graph(*ROOTS)
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = package_of(module), package_of(imported)
            if a != b:
                edges[a].add(b)
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges: dict[str, set[str]] = defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycles(edges) == [["a", "b", "c"]]
