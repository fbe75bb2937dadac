"""The space fits the budget: the default space's widths follow the budget (a new study
stores the factor), at least 30 % of uniform draws are trainable from 1,000 to 50,000
parameters, and the sampler's start-up trials are all trainable."""

import optuna
import pytest

from nas_mnist.api import space_shares
from nas_mnist.spec.limits import Limits
from nas_mnist.searcher.record import StudyMeta, TrialRecord
from nas_mnist.searcher.sampling import suggest_arch
from nas_mnist.searcher.settings import StudyValue
from nas_mnist.searcher.space import load_space
from nas_mnist.searcher.workers import TPE_STARTUP_TRIALS, enqueue_startup_draw

BUDGETS = (1_000, 2_000, 4_000, 10_000, 20_000, 50_000)


def test_the_widths_follow_the_budget_and_are_unchanged_at_10000():
    space = load_space("default")
    assert StudyValue(budget=10_000).width_scale == 1.0
    assert StudyValue(budget=10_000).search_space().arch["width"] == space.arch["width"]
    big = StudyValue(budget=50_000)
    assert big.width_scale == pytest.approx((50_000 / 10_000) ** 0.6, abs=1e-3)
    assert max(big.search_space().arch["width"].choices) == round(24 * big.width_scale)
    assert big.resolved_max_activations > StudyValue(budget=10_000).resolved_max_activations
    small = StudyValue(budget=1_000).search_space().arch["width"].choices
    assert min(small) == 2 and len(set(small)) == len(small)
    assert StudyValue(space="quick", budget=50_000).width_scale == 1.0  # no scale_widths key


def test_a_study_keeps_its_width_scale_and_an_older_study_reads_as_unscaled():
    study = optuna.create_study()
    study.set_user_attr("nas_mnist", {"budget": 10_000, "space_digest": "d"})
    assert StudyMeta.from_study(study).width_scale == 1.0
    value = StudyValue(budget=20_000)
    stored = value.meta(value.search_space(), _data(), _rule())
    assert stored.width_scale == value.width_scale
    differ = stored.differences(StudyValue(budget=20_000, width_scale=1.0).meta(
        value.search_space(), _data(), _rule()))
    assert f"width_scale {value.width_scale!r} (stored) vs 1.0 (now)" in differ


@pytest.mark.parametrize("budget", [2_000, 10_000, 50_000])
def test_the_startup_draws_are_all_trainable(budget):
    value = StudyValue(budget=budget)
    space = value.search_space()
    meta = StudyMeta(budget=budget, min_params=value.resolved_min_params,
                     max_activations=value.resolved_max_activations)
    limits = Limits(budget, meta.min_params, None, meta.max_activations)
    study = optuna.create_study()
    drawn = 0
    while enqueue_startup_draw(study, space, meta, seed=3):
        trial = study.ask()  # takes the queued draw
        assert TrialRecord.from_trial(trial).startup
        assert limits.kind_of(suggest_arch(trial, space)) is None
        space.recipe_for(trial)
        study.tell(trial, 0.0)
        drawn += 1
    assert drawn == TPE_STARTUP_TRIALS


def test_space_prints_the_trainable_share_as_its_last_line(capsys):
    from nas_mnist.cli import main
    assert main(["space", "--budget", "50000", "--samples", "200"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("space default at budget 50,000: widths x2.627")
    assert "size floor 20,000" in out[1]
    assert out[-1].startswith("trainable: ") and out[-1].endswith(" %")


@pytest.mark.slow
@pytest.mark.parametrize("budget", BUDGETS)
def test_at_least_30_percent_of_uniform_draws_are_trainable(budget):
    shares = space_shares("default", budget=budget, samples=2000)
    assert shares["trainable"] >= 0.30, shares


def _data():
    from types import SimpleNamespace
    return SimpleNamespace(eval_split="test", checksum="c" * 64, mean=0.13, std=0.31)


def _rule():
    from nas_mnist.searcher.stopping import make_rule
    return make_rule("asha", {}).fit(15)


def test_a_budget_the_space_cannot_fill_is_refused_naming_its_range(tmp_path, capsys):
    from nas_mnist.cli import main
    assert main(["search", "--study", "x", "--budget", "2000000000", "--trials", "1",
                 "--warm-start", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of 300 uniform draws" in err[0]
    assert "its networks range from" in err[0]
    assert not (tmp_path / "studies").exists()


def test_neighbouring_search_seeds_share_no_startup_draw():
    """Worker w of search seed s drew as worker w-1 of seed s+1 (seed + worker): the cold
    time-to-target lines for seeds 5, 6 and 7 trained the same first networks."""
    value = StudyValue(budget=10_000)
    space = value.search_space()
    meta = StudyMeta(budget=10_000, min_params=value.resolved_min_params,
                     max_activations=value.resolved_max_activations)
    firsts = {}
    for seed in range(4):
        for worker in (1, 2, 3):
            study = optuna.create_study()
            assert enqueue_startup_draw(study, space, meta, seed=seed, worker=worker)
            trial = study.ask()  # takes the queued draw
            suggest_arch(trial, space)
            key = tuple(sorted(trial.params.items()))
            assert key not in firsts, f"seed {seed} worker {worker} drew as {firsts.get(key)}"
            firsts[key] = (seed, worker)
