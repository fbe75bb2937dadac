"""Files the user keeps: all or nothing, the failing path named, no temporary file left."""

import errno
import os

import pytest

from nas_mnist.files import FileWriteError, atomic_write, publish, staged, write_text


def _disk_full(tmp):
    with open(tmp, "wb") as f:
        f.write(b"half")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_names_the_target_and_leaves_nothing(tmp_path):
    dest = tmp_path / "summary.md"
    dest.write_text("earlier")
    with pytest.raises(FileWriteError, match=f"cannot write {dest}: No space left on device"):
        atomic_write(dest, _disk_full)
    assert dest.read_text() == "earlier"  # never half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.md"]


def test_a_folder_in_the_way_is_named(tmp_path):
    (tmp_path / "trial2.json").mkdir()
    with pytest.raises(FileWriteError, match="trial2.json: a folder of that name is in the way"):
        write_text(tmp_path / "trial2.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trial2.json"]


def test_a_staged_set_lands_whole_or_not_at_all(tmp_path):
    with staged(tmp_path, "set") as stage:
        write_text(stage / "a.pt", "a")
        write_text(stage / "a.json", "{}")
        publish(stage, ["a.pt", "a.json"], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.pt"]
    with pytest.raises(FileWriteError) as err:
        with staged(tmp_path, "set") as stage:
            write_text(stage / "b.pt", "b")
            atomic_write(stage / "b.json", _disk_full)
    assert str(err.value) == f"cannot write {tmp_path / 'b.json'}: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.pt"]  # no b.pt alone


def test_a_staging_folder_of_a_killed_process_is_removed_by_the_next_one(tmp_path):
    import socket
    import subprocess
    import sys
    from nas_mnist.files import staged
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    left = tmp_path / f".export-trial3~stage~{host}~{dead.pid}~abc123"
    left.mkdir()
    (left / "trial3.onnx.tmp").write_bytes(b"half")
    alive = tmp_path / f".export-trial4~stage~{host}~{os.getpid()}~def456"  # still working
    alive.mkdir()
    with staged(tmp_path, "export-trial5") as stage:
        assert stage.name.startswith(".export-trial5~stage~")
        assert not left.exists() and alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name]


def test_a_folder_made_for_a_command_that_fails_is_removed_again(tmp_path):
    from nas_mnist.files import made_folder
    with pytest.raises(RuntimeError):
        with made_folder(tmp_path / "a" / "b"):
            raise RuntimeError("refused after the folder was made")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep").mkdir()
    with pytest.raises(RuntimeError):
        with made_folder(tmp_path / "keep"):
            raise RuntimeError
    assert (tmp_path / "keep").is_dir()  # not made by the command: left alone
