import pytest

from nas_mnist.engine.bench import run_bench
from nas_mnist.engine.data import load_dataset
from nas_mnist.spec.recipe import Recipe
from tests.test_arch import ref8k


@pytest.mark.slow  # trains networks end to end
def test_bench_reports_both_pipelines(small_data_dir):
    data = load_dataset(small_data_dir)
    figures = run_bench(ref8k(), data, Recipe(), steps=3, notebook_steps=3)
    for key in ("images_per_s", "seconds_per_epoch", "seconds_per_trial",
                "notebook_images_per_s", "ratio_vs_notebook"):
        assert figures[key] > 0, key
    steps_per_epoch = len(data.train_x) // 128
    assert abs(figures["seconds_per_epoch"] - (128 / figures["images_per_s"] * steps_per_epoch
                                               + figures["eval_seconds"])) < 1e-6
    assert abs(figures["seconds_per_trial"] - 15 * figures["seconds_per_epoch"]) < 1e-6
