"""A winner file is a typed record checked whole when read; every reader takes it from there."""

import json
from pathlib import Path

import pytest

from nas_mnist.cli import main
from nas_mnist.errors import SpecError
from nas_mnist.spec.recipe import Recipe
from nas_mnist.spec.winner import WinnerFile

ROOT = Path(__file__).resolve().parents[2]
TRIAL52 = ROOT / "studies/mnist-10k-winners/trial52.json"


def test_every_shipped_winner_file_reads():
    files = sorted(ROOT.glob("studies/*-winners/*.json"))
    assert files
    for path in files:
        winner = WinnerFile.read(path)
        assert winner.arch.n_params() == winner.doc["params"], path
        if winner.normalisation is not None:
            assert winner.weights_path.exists(), path


def test_a_winner_gives_its_facts_once():
    winner = WinnerFile.read(TRIAL52)
    doc = json.loads(TRIAL52.read_text())
    assert winner.normalisation == (doc["normalisation"]["mean"], doc["normalisation"]["std"])
    assert winner.weights_path == TRIAL52.with_name(doc["weights"]["file"])
    assert winner.seed == doc["seed"] and winner.recipe == Recipe.from_dict(doc["recipe"])


@pytest.mark.parametrize("key,value,message", [
    ("normalisation", {"mean": "abc", "std": 0.3}, "normalisation mean must be a finite number"),
    ("normalisation", {"mean": 0.13, "std": 0}, "normalisation std must be in (0, 1], got 0"),
    ("normalisation", {"mean": float("nan"), "std": 0.3}, "mean must be a finite number, got nan"),
    ("normalisation", [0.13, 0.31], "normalisation must be {'mean': M, 'std': S}"),
    ("weights", {"file": "../../x.pt"}, "weights file must be a file name beside it"),
    ("recipe", {"lr": "fast"}, "lr"),
])
def test_a_malformed_winner_is_one_line_for_every_reader(tmp_path, small_data_dir, capsys, key,
                                                          value, message):
    doc = json.loads(TRIAL52.read_text())
    doc[key] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=f"{bad}: .*{message[:20]}".replace("(", r"\(")
                       .replace("[", r"\[").replace("{", r"\{")):
        WinnerFile.read(bad)
    images = str(small_data_dir / "t10k-images-idx3-ubyte")
    for argv in (["predict", str(bad), images],
                 ["train", str(bad), "--weights", str(TRIAL52.with_suffix(".pt")),
                  "--data-dir", str(small_data_dir)]):
        assert main(argv) == 2  # was a traceback (train) or NaN accuracies (std 0)
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"nas-mnist: error: {bad}: ") and len(err.splitlines()) == 1
