"""The folders are the layers: spec (pure data) <- engine (torch) <- search (Optuna) <-
results <- api (the library face, nas_mnist/api/) <- cli. Imports point down the layers only, nothing imports the CLI, plotly stays in
the report module, and no module imports itself back through others."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nas_mnist"
LAYERS = ["spec", "engine", "searcher", "results", "api", "cli"]  # each may import those before


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(module: str) -> set[str]:
    """Every module `module` imports (at the top or inside functions), as dotted names."""
    names = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            # `from nas_mnist.searcher import record` imports the submodule
            names.update(f"{node.module}.{a.name}" for a in node.names
                         if f"{node.module}.{a.name}" in MODULES)
    return names


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_imports_point_down_the_layers():
    for module in MODULES:
        mine = layer(module)
        if mine is None:
            continue
        allowed = set(LAYERS[:LAYERS.index(mine) + 1])
        for name in imports_of(module):
            theirs = layer(name)
            assert theirs is None or theirs in allowed, f"{module} imports {name}"


@pytest.mark.parametrize("folder,forbidden", [
    ("spec", {"torch", "optuna", "numpy"}),
    ("engine", {"optuna", "plotly"}),
])
def test_lower_layers_do_not_import(folder, forbidden):
    for module in MODULES:
        if layer(module) == folder:
            used = {name.split(".")[0] for name in imports_of(module)}
            assert not used & forbidden, module


def test_nothing_but_the_cli_imports_the_cli():
    for module in MODULES:
        if layer(module) != "cli" and module not in ("nas_mnist.__main__",):
            assert not any(n.startswith("nas_mnist.cli") for n in imports_of(module)), module


def test_plotly_only_in_the_report():
    users = {m for m in MODULES if any(n.split(".")[0] == "plotly" for n in imports_of(m))}
    assert users == {"nas_mnist.results.report", "nas_mnist.results.png"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle():
    graph = {m: {n for n in imports_of(m) if n in MODULES and n != m} for m in MODULES}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_circle():
    # the circle the CLI once had: cli -> cli_search -> cli_results -> cli
    graph = {"cli": {"cli_search"}, "cli_search": {"cli_results"}, "cli_results": {"cli"}}
    assert find_cycle(graph) == ["cli", "cli_search", "cli_results", "cli"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_cli_imports_only_the_library_face_and_the_errors():
    """The CLI parses, calls nas_mnist.api and prints: what it needs from below is offered by
    the api, so a change below it never reaches the command line unnoticed. The errors and the
    signal handler (`interrupts`, shared with the search's workers) are leaves that import
    nothing of the package."""
    allowed = ("nas_mnist.api", "nas_mnist.cli", "nas_mnist.errors", "nas_mnist.interrupts",
               "nas_mnist._version")
    reaching = sorted(f"{module} -> {name}" for module in MODULES if layer(module) == "cli"
                      for name in imports_of(module)
                      if name.startswith("nas_mnist") and not name.startswith(allowed)
                      and name != "nas_mnist")
    assert not reaching, reaching
