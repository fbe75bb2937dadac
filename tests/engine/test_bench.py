from pathlib import Path

import pytest

from nas_mnist.engine.bench import run_bench, skeleton
from nas_mnist.engine.builder import build_model
from nas_mnist.engine.data import load_dataset
from nas_mnist.spec.recipe import Recipe
from tests.spec.test_arch import ref8k


def test_the_skeleton_keeps_only_the_convolutions():
    from torch import nn
    model = skeleton(build_model(ref8k()))
    kinds = {type(m) for m in model.modules()}
    assert not kinds & {nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.MaxPool2d}
    assert nn.Conv2d in kinds


@pytest.mark.slow  # trains networks end to end
def test_bench_times_before_now_skeleton_and_the_notebook(small_data_dir):
    data = load_dataset(small_data_dir)
    figures = run_bench(ref8k(), data, Recipe(precision="fp32"), steps=2, rounds=2,
                        notebook_steps=2)
    for key in ("before_step_ms", "now_step_ms", "skeleton_step_ms", "now_speedup",
                "skeleton_speedup", "images_per_s", "seconds_per_epoch", "seconds_per_trial",
                "seconds_per_trial_before", "notebook_images_per_s", "ratio_vs_notebook"):
        assert figures[key] > 0, key
    assert figures["now_speedup_min"] <= figures["now_speedup"] <= figures["now_speedup_max"]
    steps_per_epoch = len(data.train_x) // 128
    assert figures["seconds_per_epoch"] == pytest.approx(
        128 / figures["images_per_s"] * steps_per_epoch + figures["eval_seconds"])
    assert figures["seconds_per_trial"] == pytest.approx(15 * figures["seconds_per_epoch"])


@pytest.mark.slow
def test_bench_command_prints_one_row_per_network(small_data_dir, capsys, tmp_path):
    import json
    from nas_mnist.cli import main
    out = tmp_path / "bench.json"
    assert main(["bench", "trial52", "ref8k", "--steps", "1", "--rounds", "1",
                 "--notebook-steps", "1", "--data-dir", str(small_data_dir),
                 "--json-out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:4]] == ["trial52", "ref8k"]
    rows = json.loads(out.read_text())
    assert [r["config"] for r in rows] == ["trial52", "ref8k"] and rows[0]["params"] == 9412


def test_the_bench_finds_its_packaged_configs_by_name():
    from nas_mnist.api.network import BENCH_CONFIGS, config_path
    for name in BENCH_CONFIGS:  # `nas-mnist bench` with no argument (was: "config file
        assert Path(config_path(name)).is_file(), name  # trial52 does not exist" after a move)
    assert config_path("my/own.json") == "my/own.json"
