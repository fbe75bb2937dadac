"""Where training runs: the search workers a device gets."""

import torch

from nas_mnist.engine import device as dev


def test_a_gpu_gets_four_search_workers_where_the_cores_allow(monkeypatch):
    """Four runs of trial52 on one H200 took 40 s each, as long as one alone (the GPU is
    launch-bound on networks this small)."""
    monkeypatch.setattr(dev, "cpu_cores", lambda: 16)
    assert dev.auto_jobs(torch.device("cuda")) == 4
    monkeypatch.setattr(dev, "cpu_cores", lambda: 2)
    assert dev.auto_jobs(torch.device("cuda")) == 2
    assert dev.auto_jobs(torch.device("cpu")) == 2
