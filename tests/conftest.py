import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_mnist.data import PACKAGED_DIR, SPLIT_FILES, read_idx

torch.set_num_threads(2)


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def make_subset(folder: Path, n_train: int, n_test: int, *, gz: bool = False) -> Path:
    """Write the first images of real MNIST as a small IDX dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in SPLIT_FILES.items():
        array, _ = read_idx(PACKAGED_DIR / (stem + ".gz"))
        write_idx(folder / stem, array[: n_train if key.startswith("train") else n_test], gz=gz)
    return folder


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """3,000 training and 1,000 test images of real MNIST, uncompressed IDX."""
    return make_subset(tmp_path_factory.mktemp("mnist_small"), 3000, 1000)
