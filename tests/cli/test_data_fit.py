"""Data that the networks cannot fit (a label of 10, 32x32 images) is refused before a study
exists or a timing runs, in one line that names the data (it used to create a study, refuse
200 samples one by one and blame the space)."""

import numpy as np
import pytest

from nas_mnist.cli import main
from nas_mnist.engine.data import SPLIT_FILES, read_idx, write_idx, write_subset


def _variant(tmp_path, kind):
    folder = write_subset(tmp_path / kind, 300, 100)
    if kind == "label10":
        stem = SPLIT_FILES["train_labels"]
        labels, _ = read_idx(folder / stem)
        labels = labels.copy()
        labels[7] = 10
        write_idx(folder / stem, labels)
    else:
        for key in ("train_images", "test_images"):
            images, _ = read_idx(folder / SPLIT_FILES[key])
            write_idx(folder / SPLIT_FILES[key],
                      np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.uint8))
    return folder


@pytest.mark.parametrize("kind,needle", [("label10", "label 10"), ("img32", "1x32x32")])
def test_search_refuses_data_the_space_cannot_fit_before_a_study_exists(
        kind, needle, tmp_path, capsys):
    data = _variant(tmp_path, kind)
    code = main(["search", "--study", "s", "--space", "quick", "--budget", "3000",
                 "--trials", "1", "--epochs", "1", "--threads", "1", "--jobs", "1",
                 "--warm-start", "none", "--data-dir", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0] and "--data-dir" in err[0], err
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize("kind,needle", [("label10", "label 10"), ("img32", "1x32x32")])
def test_bench_refuses_data_the_network_cannot_fit_before_timing(kind, needle, tmp_path,
                                                                 capsys):
    data = _variant(tmp_path, kind)
    code = main(["bench", "trial81", "--steps", "1", "--rounds", "1", "--notebook-steps", "1",
                 "--data-dir", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
