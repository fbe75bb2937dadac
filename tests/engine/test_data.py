import gzip

import pytest
import torch

from nas_mnist.engine.data import DataError, load_dataset
from tests.conftest import make_subset


def test_packaged_mnist_loads_with_known_statistics():
    data = load_dataset()
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and float(data.train_x.max()) == 1.0
    assert torch.bincount(data.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                     974, 1009]
    assert round(data.mean, 4) == 0.1307 and round(data.std, 4) == 0.3081
    assert data.eval_split == "test"


@pytest.mark.slow  # trains networks end to end
def test_val_split_holds_out_training_images_and_is_seeded():
    a = load_dataset(val_split=5000, seed=1)
    b = load_dataset(val_split=5000, seed=1)
    assert a.eval_split == "val" and len(a.eval_x) == 5000 and len(a.train_x) == 55000
    assert torch.equal(a.eval_y, b.eval_y)
    assert not torch.equal(a.eval_y, load_dataset(val_split=5000, seed=2).eval_y)


def test_data_dir_accepts_gzipped_and_plain_files_and_fits_its_own_statistics(tmp_path):
    plain = load_dataset(make_subset(tmp_path / "plain", 500, 100))
    zipped = load_dataset(make_subset(tmp_path / "gz", 500, 100, gz=True))
    assert len(plain.train_x) == 500 and torch.equal(plain.train_x, zipped.train_x)
    assert plain.mean == pytest.approx(float(plain.train_x.mean()))
    assert plain.mean != pytest.approx(0.1307, abs=1e-4)  # statistics of this subset, not MNIST's


def test_missing_file_is_a_clear_error(tmp_path):
    folder = make_subset(tmp_path / "d", 100, 100)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing data file .*t10k-labels"):
        load_dataset(folder)


def test_truncated_file_is_a_clear_error(tmp_path):
    folder = make_subset(tmp_path / "d", 100, 100)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(folder)


def test_corrupt_gzip_and_bad_magic_are_clear_errors(tmp_path):
    folder = make_subset(tmp_path / "d", 100, 100, gz=True)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(folder)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(DataError, match="magic"):
        load_dataset(folder)


def test_mismatched_image_and_label_counts_are_refused(tmp_path):
    folder = make_subset(tmp_path / "d", 100, 100)
    make_subset(tmp_path / "other", 50, 100)
    (folder / "train-labels-idx1-ubyte").write_bytes(
        (tmp_path / "other" / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DataError, match="do not match"):
        load_dataset(folder)


def test_corrupt_packaged_copy_fails_checksum(tmp_path, monkeypatch):
    import shutil
    import nas_mnist.engine.data as data_mod
    copy = tmp_path / "mnist"
    shutil.copytree(data_mod.PACKAGED_DIR, copy)
    raw = bytearray(gzip.decompress((copy / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one wrong label: still a well-formed IDX file
    (copy / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    monkeypatch.setattr(data_mod, "PACKAGED_DIR", copy)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data_mod._load_arrays.cache_clear()
    with pytest.raises(DataError, match="SHA-256"):
        load_dataset(copy)
    data_mod._load_arrays.cache_clear()


def test_replaced_labels_with_their_mtime_kept_change_the_checksum(tmp_path):
    """No digest cache vouches for a file: labels replaced by others of the same size, with
    the modification time copied back (cp -p, rsync -t), give another checksum."""
    import os
    folder = make_subset(tmp_path / "d", 300, 100)
    before = load_dataset(folder).checksum
    labels = folder / "train-labels-idx1-ubyte"
    stat = labels.stat()
    raw = bytearray(labels.read_bytes())
    raw[8:] = bytes((b + 1) % 10 for b in raw[8:])
    labels.write_bytes(bytes(raw))
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert labels.stat().st_size == stat.st_size
    assert load_dataset(folder).checksum != before


def test_a_small_gzip_announcing_a_gigabyte_is_refused_before_it_is_inflated(tmp_path):
    """4.6 MB of gzip can announce 1.07 GB of images (1,360,000 of 28x28): refused from the
    header, whatever the file holds after it."""
    import struct
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 1_360_000, 28, 28) + bytes(784))
    from nas_mnist.engine.data import read_idx
    with pytest.raises(DataError, match=r"1,066,240,000 bytes once decompressed; a data file "
                                        r"may hold at most 671,088,640"):
        read_idx(path)


def test_a_file_that_would_not_fit_in_memory_is_refused_before_it_is_inflated(tmp_path,
                                                                              monkeypatch):
    import nas_mnist.engine.data as data_mod
    path = make_subset(tmp_path / "d", 300, 100) / "train-images-idx3-ubyte"
    monkeypatch.setattr(data_mod, "_available_memory", lambda: 1_000_000)  # 1 MB free
    with pytest.raises(DataError, match=r"would take 1 MB of memory once decoded; "
                                        r"1 MB are available"):
        data_mod.read_idx(path)


def test_the_data_statistics_do_not_depend_on_the_thread_count(tmp_path):
    """A search loaded its data with 2 threads and trained with 1; `train` loaded with 1:
    the float32 mean differed in its last bits and a winner re-trained to another score."""
    import torch
    from nas_mnist.engine.data import load_dataset, write_subset
    folder = write_subset(tmp_path / "small", 2000, 500)
    before = torch.get_num_threads()
    seen = set()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            data = load_dataset(folder)
            seen.add((data.mean, data.std))
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 1
