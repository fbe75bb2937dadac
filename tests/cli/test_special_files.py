"""Every file the tool reads is bounded by what is read, not by stat(): /dev/zero, a FIFO
with no writer, a folder, a symlink loop give one line and exit 2 at once (a FIFO used to
block forever, /dev/zero to read until memory ran out)."""

import gzip
import os
import struct

import pytest

from nas_mnist.cli import main

SPECIAL = ["zero", "fifo", "folder", "loop"]


def _special(tmp_path, kind):
    path = tmp_path / f"{kind}.json"
    if kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(path)
    return path


def _one_line_exit_2(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


@pytest.mark.parametrize("kind", SPECIAL)
def test_count_of_a_special_file_is_one_line(kind, tmp_path, capsys):
    _one_line_exit_2(["count", str(_special(tmp_path, kind))], capsys, "config file")


@pytest.mark.parametrize("kind", SPECIAL)
def test_warm_start_enqueue_and_arch_of_a_special_file_are_one_line(kind, tmp_path, capsys):
    path = str(_special(tmp_path, kind))
    base = ["search", "--study", "s", "--space", "quick", "--budget", "3000", "--trials", "1",
            "--epochs", "1", "--threads", "1", "--jobs", "1"]
    _one_line_exit_2(base + ["--warm-start", path], capsys, "prior")
    _one_line_exit_2(base + ["--warm-start", "none", "--enqueue", path], capsys, "config file")
    _one_line_exit_2(base + ["--warm-start", "none", "--arch", path], capsys, "config file")
    assert not (tmp_path / "studies").exists()


def test_a_fifo_or_a_folder_as_a_data_file_is_named_as_such(tmp_path, small_data_dir, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for f in small_data_dir.iterdir():
        (data / f.name).symlink_to(f)
    labels = data / "train-labels-idx1-ubyte"
    labels.unlink()
    os.mkfifo(labels)
    _one_line_exit_2(["train", "trial81", "--epochs", "1", "--data-dir", str(data)], capsys,
                     "is a FIFO (named pipe), not a regular file")
    labels.unlink()
    labels.mkdir()
    _one_line_exit_2(["train", "trial81", "--epochs", "1", "--data-dir", str(data)], capsys,
                     "is a folder")


@pytest.mark.parametrize("dims,message", [
    ((), "0 dimensions"),
    ((65536, 65536, 65536, 65536), "at most"),  # the product wrapped to 0 in int64
])
def test_idx_headers_with_no_dimension_or_an_overflowing_size_are_refused(
        dims, message, tmp_path, capsys):
    path = tmp_path / "images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims))
    _one_line_exit_2(["predict", "missing.onnx", str(path)], capsys)  # the model first
    from nas_mnist.engine.data import DataError, read_idx
    with pytest.raises(DataError, match=message):
        read_idx(path)


@pytest.mark.parametrize("name", ["digit.png", "images-idx3-ubyte"])
def test_predict_images_that_are_fifos_are_refused_at_once(name, tmp_path):
    from nas_mnist.errors import NasMnistError
    from nas_mnist.results.models import read_images
    os.mkfifo(tmp_path / name)
    with pytest.raises(NasMnistError, match="FIFO"):
        read_images([str(tmp_path / name)])


def test_reuse_of_dev_zero_is_bounded(tmp_path):
    from nas_mnist.results.seeds import SeedRunsError, read_seed_runs
    with pytest.raises(SeedRunsError, match="not a regular file"):
        read_seed_runs(_special(tmp_path, "zero"))


def test_a_truncated_weights_file_says_so(tmp_path):
    import torch
    from nas_mnist.engine.train import WeightsError, load_state
    model = torch.nn.Linear(20, 20)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "w.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(WeightsError, match="is cut short"):
        load_state(model, tmp_path / "w.pt")
