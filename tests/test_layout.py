"""Import directions: the builder never sees a trial, the trainer never imports optuna,
nothing imports the CLI, and plotly stays in the report module."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nas_mnist"


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module,forbidden", [
    ("arch", {"torch", "optuna"}),
    ("recipe", {"torch", "optuna"}),
    ("builder", {"optuna"}),
    ("train", {"optuna"}),
    ("augment", {"optuna"}),
    ("data", {"optuna"}),
])
def test_module_does_not_import(module, forbidden):
    assert not {name.split(".")[0] for name in imports_of(module)} & forbidden


def test_nothing_but_the_cli_imports_the_cli():
    for path in PACKAGE.glob("*.py"):
        if path.stem.startswith("cli"):
            continue
        assert not any(n.startswith("nas_mnist.cli") for n in imports_of(path.stem)), path.name


def test_plotly_only_in_report():
    users = {p.stem for p in PACKAGE.glob("*.py")
             if any(n.split(".")[0] == "plotly" for n in imports_of(p.stem))}
    assert users == {"report"}
