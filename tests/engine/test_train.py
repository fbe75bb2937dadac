import dataclasses
import math

import pytest

from nas_mnist.engine.data import load_dataset
from nas_mnist.spec.recipe import Recipe
from nas_mnist.engine.evaluate import evaluate_candidate
from nas_mnist.engine.train import NonFiniteLoss
from tests.spec.test_arch import ref8k

QUICK = Recipe(epochs=1, last_n=1, batch_size=64, lr=0.05)


def train_arch(arch, data, recipe, *, seed=0, **hooks):
    """The shared evaluate path, as (summary dict, trained model)."""
    run = evaluate_candidate(arch, recipe, data, seed=seed, **hooks)
    return run.summary(data), run.model


@pytest.fixture(scope="module")
def small(small_data_dir):
    return load_dataset(small_data_dir)


@pytest.mark.slow  # trains networks end to end
def test_short_training_on_real_subset_reaches_sane_accuracy(small):
    summary, _ = train_arch(ref8k(), small, QUICK.replace(epochs=3, last_n=1), seed=0)
    # 3,000 real training images, three short epochs: far above chance (10 %)
    assert summary["test_acc"][-1] > 90.0
    assert summary["params"] == 8172 and summary["eval_split"] == "test"
    assert math.isfinite(summary["train_loss"][0])


@pytest.mark.slow  # trains networks end to end
def test_same_seed_gives_identical_accuracies(small):
    recipe = QUICK.replace(epochs=2, last_n=2)
    arch = dataclasses.replace(ref8k(), stages=(ref8k().stages[0], ref8k().stages[1][:2]))
    a, _ = train_arch(arch, small, recipe, seed=4)
    b, _ = train_arch(arch, small, recipe, seed=4)
    c, _ = train_arch(arch, small, recipe, seed=5)
    assert a["test_acc"] == b["test_acc"] and a["train_loss"] == b["train_loss"]
    assert a["train_loss"] != c["train_loss"]


@pytest.mark.slow  # trains networks end to end
@pytest.mark.parametrize("changes", [
    dict(optimizer="adamw", lr=3e-3, schedule="cosine", precision="bf16"),
    dict(optimizer="adam", lr=2e-3, schedule="step", step_size=1, label_smoothing=0.1),
    dict(schedule="constant", lr=0.01, nesterov=False, scale=0.1),
])
def test_recipe_options_train(small, changes):
    summary, _ = train_arch(ref8k(), small, QUICK.replace(**changes), seed=0)
    assert summary["test_acc"][0] > 25.0  # one short epoch: well above chance (10 %)


@pytest.mark.slow  # trains networks end to end
def test_val_split_measures_on_validation_and_reports_test(small_data_dir):
    from nas_mnist.engine.train import evaluate
    data = load_dataset(small_data_dir, val_split=500)
    summary, model = train_arch(ref8k(), data, QUICK, seed=0)
    assert summary["eval_split"] == "val" and "val_acc" in summary and "test_acc" not in summary
    # the test figure is the trained model's on the test images, not the validation score
    test_acc, _ = evaluate(model, data.test_x, data.test_y, data,
                           precision=summary["eval_precision"])
    assert summary["test_acc_final"] == test_acc > 25.0


@pytest.mark.slow  # trains networks end to end
def test_non_finite_loss_raises(small):
    with pytest.raises(NonFiniteLoss):
        train_arch(ref8k(), small, QUICK.replace(lr=1e12, optimizer="sgd"), seed=0)


@pytest.mark.slow  # trains networks end to end
def test_early_stop_callback(small):
    summary, _ = train_arch(ref8k(), small, QUICK.replace(epochs=3), seed=0,
                            on_epoch=lambda e: e.epoch == 1)
    assert summary["stopped_early"] and len(summary["test_acc"]) == 1


@pytest.mark.slow  # trains networks end to end
def test_ema_evaluates_the_average_and_leaves_training_unchanged(small):
    from nas_mnist.engine.train import evaluate
    recipe = QUICK.replace(epochs=2, last_n=2)
    plain, plain_model = train_arch(ref8k(), small, recipe, seed=1)
    averaged, ema_model = train_arch(ref8k(), small, recipe.replace(ema=0.99), seed=1)
    # The average is only read, never trained: the training trajectory is the same ...
    assert averaged["train_loss"] == plain["train_loss"]
    # ... but the evaluated (and returned) weights are the average, not the last step's.
    assert averaged["test_acc"] != plain["test_acc"]
    assert evaluate(ema_model, small.test_x, small.test_y, small)[0] == averaged["test_acc"][-1]
    assert evaluate(plain_model, small.test_x, small.test_y, small)[0] == plain["test_acc"][-1]


def test_ema_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="ema must be in"):
        Recipe(ema=1.0)


def _lrs(recipe: Recipe, steps_per_epoch: int = 10) -> list[float]:
    import torch
    from nas_mnist.engine.train import _scheduler
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr, momentum=0.9)
    sched, _ = _scheduler(opt, recipe, steps_per_epoch)
    lrs = []
    for _ in range(recipe.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_linear_one_cycle_runs_the_published_ramp():
    """0.05 -> 0.1 -> 0.0017 in straight lines (the 3,762-parameter design's schedule)."""
    recipe = Recipe(lr=0.1, anneal="linear", div_factor=2.0, final_div_factor=0.05 / 0.0017,
                    pct_start=0.3, epochs=15, last_n=3)
    lrs = _lrs(recipe)
    peak = lrs.index(max(lrs))
    assert lrs[0] == pytest.approx(0.05) and max(lrs) == pytest.approx(0.1)
    assert lrs[-1] == pytest.approx(0.0017, rel=0.05) and peak == pytest.approx(0.3 * 150, abs=1)
    rises = [b - a for a, b in zip(lrs[:peak], lrs[1:peak + 1])]
    assert max(rises) == pytest.approx(min(rises), rel=1e-6)  # a straight line, not a cosine


def test_one_cycle_defaults_are_the_earlier_schedule():
    """A recipe without the new keys trains with torch's one-cycle defaults, as before."""
    import torch
    recipe = Recipe(lr=0.1, epochs=3, last_n=1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    old = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=30)
    expected = []
    for _ in range(30):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        old.step()
    assert _lrs(recipe) == expected


@pytest.mark.parametrize("changes, named", [(dict(anneal="cosine"), "anneal"),
                                            (dict(pct_start=1.0), "pct_start"),
                                            (dict(div_factor=0.5), "div_factor")])
def test_one_cycle_shape_is_checked(changes, named):
    from nas_mnist.errors import SpecError
    with pytest.raises(SpecError, match=named):
        Recipe(**changes)
