from pathlib import Path

import pytest
import torch

from nas_mnist.engine.data import write_subset

torch.set_num_threads(2)
make_subset = write_subset  # the tests' name for it


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """Commands default to ./studies: keep every test's files out of the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """3,000 training and 1,000 test images of real MNIST, uncompressed IDX."""
    return make_subset(tmp_path_factory.mktemp("mnist_small"), 3000, 1000)
