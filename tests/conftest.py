import subprocess
from pathlib import Path

import pytest
import torch

from nas_mnist.engine.data import write_subset

torch.set_num_threads(2)

make_subset = write_subset  # the tests' name for it
NO_NETWORKS = {"spec", "project"}  # test folders whose tests never run a network


@pytest.fixture(scope="session")
def cpu_kernels():
    """The CPU kernels (engine.kernels), built once per session where a test may train: on a
    fresh machine the build takes about 30 s and says so in a line, which lands in the set-up
    output of the first such test, not in what a test reads (capsys starts after this)."""
    from nas_mnist.engine import kernels
    kernels.backend()


@pytest.fixture(autouse=True)
def _run_in_tmp(request, tmp_path, monkeypatch):
    """Commands default to ./studies: keep every test's files out of the repository; and
    build the kernels before a test that may train (not for `pytest tests/spec`)."""
    if Path(str(request.node.fspath)).parent.name not in NO_NETWORKS:
        request.getfixturevalue("cpu_kernels")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """3,000 training and 1,000 test images of real MNIST, uncompressed IDX."""
    return make_subset(tmp_path_factory.mktemp("mnist_small"), 3000, 1000)


def space_with(path: Path, name: str = "quick", **values) -> Path:
    """Write the packaged space `name` to `path` with top-level keys set to YAML `values`
    (a key that is not there is added): a bad space without depending on the file's text."""
    from nas_mnist.searcher.space import SPACE_DIR
    lines = (SPACE_DIR / f"{name}.yaml").read_text().splitlines()
    for key, value in values.items():
        lines = [line for line in lines if not line.startswith(f"{key}:")] + [f"{key}: {value}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def random_archs(space_name: str, draws: int, seed: int = 1):
    """The valid architectures among `draws` random samples of a packaged space."""
    import optuna
    from nas_mnist.errors import SpecError
    from nas_mnist.searcher.space import load_space
    from nas_mnist.searcher.sampling import suggest_arch
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(draws):
        trial = study.ask()
        try:
            arch = suggest_arch(trial, space)
        except SpecError:
            arch = None
        study.tell(trial, 0.0)
        if arch is not None:
            yield arch


def mount_small_disk(mount_point: Path, size: str) -> Path:
    """A tmpfs of `size` at `mount_point` (needs root and mount rights; skips elsewhere)."""
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    return mount_point


@pytest.fixture
def small_disks(tmp_path):
    """small_disks(size) -> a fresh tmpfs of that size; all unmounted after the test."""
    made = []

    def make(size: str) -> Path:
        made.append(mount_small_disk(tmp_path / f"disk{len(made)}", size))
        return made[-1]

    yield make
    for mount_point in made:
        subprocess.run(["umount", "--lazy", str(mount_point)], capture_output=True)  # sqlite may hold it


@pytest.fixture
def tiny_disk(small_disks):
    """A 1 MiB tmpfs (needs root and mount rights; skips elsewhere)."""
    return small_disks("1m")
