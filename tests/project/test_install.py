"""Packaging: a non-editable install carries the search spaces, the data, the configs and the
C++ source of the CPU kernels."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # trains networks end to end
def test_a_non_editable_install_finds_the_packaged_spaces(tmp_path):
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    code = ("from nas_mnist.searcher.space import load_space, SPACE_DIR; "
            "from nas_mnist.engine.data import load_dataset; "
            "print(SPACE_DIR); [load_space(n) for n in ('default', 'tiny', 'quick')]; "
            "print(len(load_dataset().test_x)); "
            "import nas_mnist.engine.kernels as k; print(len(k._KERNEL))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    ran = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    space_dir, images, kernel_chars = ran.stdout.split()
    assert space_dir.startswith(str(target)) and images == "10000"
    assert int(kernel_chars) == len((REPO / "nas_mnist/engine/kernels.cpp").read_text())


def test_the_repository_spaces_are_the_packaged_ones():
    link = REPO / "search_spaces"
    assert link.is_symlink() and link.resolve() == (REPO / "nas_mnist" / "spaces").resolve()
