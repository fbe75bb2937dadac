"""End-to-end checks: the README's demo as written, the quickstart notebook, workers on a real
PostgreSQL server. Every test here trains networks in other processes or for minutes, so each
is marked `slow` (the fast loop, `pytest -m "not slow"`, leaves them to CI)."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.slow)
