"""The quickstart notebook runs top to bottom (smoke mode: a small data subset, one epoch)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


@pytest.mark.slow  # trains networks end to end
def test_quickstart_notebook_runs_and_shows_its_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_MNIST_SMOKE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    data = [o.get("data", {}) for o in outputs]
    assert any("application/vnd.plotly.v1+json" in d or "text/html" in d and "plotly" in
               d["text/html"] for d in data), "the Pareto figure is shown inline"
    assert any("text/html" in d and "<table>" in d["text/html"] for d in data)  # leaderboard
    winners = list((tmp_path / "quickstart-winners").glob("trial*"))
    assert {p.suffix for p in winners} >= {".json", ".pt", ".onnx"}
