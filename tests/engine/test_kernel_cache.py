"""The kernel cache (engine.kernel_cache): never waits without bound, never maps a damaged
file, one folder per build configuration. The fast tests use a stand-in build (a file of
bytes and an import that reads it); the slow ones build the real kernels and kill a build."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas_mnist.engine import kernel_cache

SOURCE = "int f() { return 1; }"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A cache in tmp_path whose build writes bytes and whose import returns them."""
    monkeypatch.setenv("NAS_MNIST_KERNEL_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(kernel_cache, "_import", lambda name, path: path.read_bytes())
    builds = []

    def build(folder: Path):
        builds.append(folder)
        (folder / "k.so").write_bytes(b"kernel " + str(len(builds)).encode())
        return (folder / "k.so").read_bytes()

    return builds, build


def test_a_second_load_takes_the_cached_build(fake):
    builds, build = fake
    assert kernel_cache.load_or_build("k", SOURCE, ["-O3"], build) == b"kernel 1"
    assert kernel_cache.load_or_build("k", SOURCE, ["-O3"], build) == b"kernel 1"
    assert len(builds) == 1
    assert not list(kernel_cache.cache_root().glob(".build-*"))  # staging moved in whole


def test_two_build_configurations_keep_two_entries_and_never_rebuild_each_other(fake):
    builds, build = fake
    for _ in range(3):
        kernel_cache.load_or_build("k", SOURCE, ["-O3"], build)
        kernel_cache.load_or_build("k", SOURCE, ["-O2"], build)
    assert len(builds) == 2
    assert len([p for p in kernel_cache.cache_root().iterdir() if p.is_dir()]) == 2


def test_a_damaged_cached_file_is_rebuilt_not_loaded(fake):
    builds, build = fake
    kernel_cache.load_or_build("k", SOURCE, [], build)
    so = next(kernel_cache.cache_root().glob("*/k.so"))
    so.write_bytes(so.read_bytes()[:3])  # cut short, as a killed copy leaves it
    lines = []
    assert kernel_cache.load_or_build("k", SOURCE, [], build, lines.append) == b"kernel 2"
    assert any("damaged; rebuilding" in line for line in lines)


def test_a_lock_of_a_dead_process_is_taken_over_at_once(fake):
    builds, build = fake
    root = kernel_cache.cache_root()
    root.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    key = kernel_cache.build_key(SOURCE, [])
    (root / f"{key}.lock").write_text(f"{dead.pid} {os.uname().nodename} 0\n")
    (root / f".build-{dead.pid}-{os.uname().nodename}-x").mkdir()  # its staging folder
    start = time.monotonic()
    assert kernel_cache.load_or_build("k", SOURCE, [], build) == b"kernel 1"
    assert time.monotonic() - start < 2
    assert not (root / f"{key}.lock").exists()
    assert not list(root.glob(".build-*"))


def test_a_live_owner_is_waited_for_a_bounded_time_then_built_aside(fake, monkeypatch):
    builds, build = fake
    monkeypatch.setattr(kernel_cache, "WAIT_SECONDS", 1.0)
    root = kernel_cache.cache_root()
    root.mkdir(parents=True)
    key = kernel_cache.build_key(SOURCE, [])
    (root / f"{key}.lock").write_text(f"{os.getpid()} {os.uname().nodename} 0\n")  # alive
    lines = []
    start = time.monotonic()
    assert kernel_cache.load_or_build("k", SOURCE, [], build, lines.append) == b"kernel 1"
    assert 1.0 <= time.monotonic() - start < 5
    assert "waiting for another process" in lines[0]
    assert "building a private copy" in lines[1]


def test_an_unwritable_cache_falls_back_to_a_temporary_folder(fake, monkeypatch, tmp_path):
    builds, build = fake
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("NAS_MNIST_KERNEL_DIR", str(blocker / "cache"))  # under a file
    monkeypatch.setattr(kernel_cache.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    lines = []
    assert kernel_cache.load_or_build("k", SOURCE, [], build, lines.append) == b"kernel 1"
    assert len(lines) == 2 and "is not writable" in lines[0]


def test_an_error_message_with_binary_bytes_prints_as_ascii():
    text = kernel_cache.printable(OSError("bad ELF \x00\x7f\xff\u2603 header\nsecond"))
    assert text == "bad ELF ???? header"


_TRAIN_ONE_STEP = """
import torch
from nas_mnist.engine import kernels
x = torch.randn(8, 4, 6, 6, requires_grad=True)
kernels.hash_dropout(x, 0.3).sum().backward()
print(kernels.backend())
"""


def _run(env, timeout=120):
    return subprocess.run([sys.executable, "-c", _TRAIN_ONE_STEP], env=env, timeout=timeout,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_a_killed_build_and_a_truncated_kernel_leave_nothing_that_stops_the_next(tmp_path):
    """Two real builds (about 30-40 s each alone on 2 cores), shared by both faults."""
    env = dict(os.environ, NAS_MNIST_KERNEL_DIR=str(tmp_path / "cache"))
    first = subprocess.Popen([sys.executable, "-c", _TRAIN_ONE_STEP], env=env,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert "building the CPU kernels" in first.stderr.readline()
    time.sleep(5)  # inside the compiler
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert list((tmp_path / "cache").glob("*.lock"))  # the lock the kill left behind
    # the next run builds and trains (the old cache waited on the dead process's lock
    # forever): bounded by the timeout, not timed
    done = _run(env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "cpp", done.stderr
    assert not list((tmp_path / "cache").glob(".build-*"))
    # a cached kernel cut in half (its mtime kept) is rebuilt, not mapped
    so = next((tmp_path / "cache").glob("*/nas_mnist_kernels.so"))
    stat = so.stat()
    with open(so, "r+b") as f:
        f.truncate(stat.st_size // 2)
    os.utime(so, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    done = _run(env)
    assert done.returncode == 0 and done.stdout.strip() == "cpp", done.stderr
    assert "damaged; rebuilding" in done.stderr
