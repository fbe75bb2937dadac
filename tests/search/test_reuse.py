"""Known results are reused, not re-measured: a warm-start configuration whose stored seed
runs were measured as the study measures enters it as a complete trial without a training
call, its other seeds as confirmation runs that --confirm-top skips."""

import json

import pytest

import nas_mnist as nm
from nas_mnist.engine.data import load_dataset
from nas_mnist.errors import NasMnistError
from nas_mnist.searcher import objective as objective_module
from nas_mnist.searcher.confirmation import next_run
from nas_mnist.searcher.record import records

ARCH = {"stages": [[{"out": 8, "pad": 1}, {"out": 12, "pad": 1}], [{"out": 8, "pad": 0},
                                                                    {"out": 12, "pad": 0}]],
        "transitions": [{}], "head": {"kind": "gap_conv"}}


def _prior(tmp_path, data_dir, **recipe) -> str:
    from nas_mnist.spec.arch import ArchConfig
    checksum = load_dataset(data_dir).checksum
    recipe = {"epochs": 1, "last_n": 1, "dropout_rng": "hash", "eval_precision": "train",
              **recipe}
    doc = {"format": "nas-mnist prior 1", "configs": [{
        "study": "known", "trial": 7, "arch": ARCH, "recipe": recipe,
        "params": ArchConfig.from_dict(ARCH).n_params(), "seeds": [0, 1, 2],
        "scores": [41.0, 43.0, 42.0], "data_checksum": checksum,
        "measured": "cpu (a test machine), 2026-12-04"}], "curves": []}
    path = tmp_path / "prior.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture
def trainings(monkeypatch):
    calls = []
    real = objective_module.train_candidate

    def counting(run, *args, **kwargs):
        calls.append(run.arch.key())
        return real(run, *args, **kwargs)

    monkeypatch.setattr(objective_module, "train_candidate", counting)
    return calls


def _search(data_dir, prior, **kw):
    return nm.search(study="s", space="quick", budget=3000, epochs=1, threads=1, jobs=1,
                     trials=1, data_dir=str(data_dir), warm_start=[prior], progress=False,
                     log=None, **kw)


@pytest.mark.slow  # runs searches
def test_a_stored_configuration_enters_without_a_training_call(tmp_path, small_data_dir,
                                                               trainings):
    from nas_mnist.spec.arch import ArchConfig
    study = _search(small_data_dir, _prior(tmp_path, small_data_dir))
    known = ArchConfig.from_dict(ARCH).key()
    assert known not in trainings and len(trainings) == 1  # the one sampled network
    reused = [r for r in records(study.optuna) if r.reused]
    assert len(reused) == 1 and reused[0].value == 41.0
    assert reused[0].mean_score == pytest.approx(42.0) and "test machine" in reused[0].warm
    assert not reused[0].trained  # --trials counts networks trained here
    # its seeds 1 and 2 are stored: confirming the top trial on 3 seeds has nothing to run
    assert next_run(study.optuna, top=1, seeds=3) is None
    assert next_run(study.optuna, top=1, seeds=4) == (reused[0].number, 3)


@pytest.mark.slow  # runs searches
def test_runs_of_another_trainer_or_retrain_known_are_trained_again(tmp_path, small_data_dir,
                                                                    trainings):
    from nas_mnist.spec.arch import ArchConfig
    known = ArchConfig.from_dict(ARCH).key()
    _search(small_data_dir, _prior(tmp_path, small_data_dir, dropout_rng="bernoulli"))
    assert trainings == [known]  # measured with torch's dropout mask: the numbers differ
    trainings.clear()
    (tmp_path / "studies" / "s.db").unlink()
    _search(small_data_dir, _prior(tmp_path, small_data_dir), retrain_known=True)
    assert trainings == [known]


def test_retrain_known_without_a_warm_start_is_refused_before_anything_exists(tmp_path):
    with pytest.raises(NasMnistError, match="retrain_known"):
        nm.search(study="s", space="quick", budget=3000, trials=1, warm_start="none",
                  retrain_known=True, progress=False, log=None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("budget,floor", [(10_000, 4_000), (4_000, 1_600)])
def test_a_warm_start_from_the_packaged_prior_trains_none_of_its_networks_again(budget, floor):
    """Each network the warm start picks at 10,000 and 4,000 has runs with today's trainer in
    the packaged prior (the v4 studies re-ran the v3 winners), so none is trained again."""
    from nas_mnist.searcher.prior import load_prior, pick_warm
    from nas_mnist.spec.limits import Limits
    from nas_mnist.searcher.record import StudyMeta
    from nas_mnist.searcher.reuse import why_not_reusable
    from nas_mnist.searcher.study import _reusable_twin
    prior = load_prior()
    checksum = prior.configs[0].data_checksum
    meta = StudyMeta(budget=budget, data_checksum=checksum, dropout_rng="hash",
                     eval_precision="train")
    picked, _ = pick_warm(list(prior.configs), Limits(budget, floor, None, 210_000),
                          data_checksum=checksum)
    twins = [_reusable_twin(c, list(prior.configs), meta) for c in picked]
    assert len(twins) == 3 and all(why_not_reusable(t, meta) is None for t in twins)
    assert [t.arch.key() for t in twins] == [c.arch.key() for c in picked]


def test_a_draw_of_a_configuration_the_study_has_is_not_trained_again(tmp_path,
                                                                      small_data_dir,
                                                                      monkeypatch):
    """A baseline search on search seed 1 drew the 12,072-parameter network its warm start
    had entered with stored runs, and trained it again for 15 of its first 17 minutes."""
    import optuna
    import nas_mnist.engine.evaluate as evaluate_mod
    from nas_mnist.searcher.objective import Objective
    from nas_mnist.searcher.record import StudyMeta
    from nas_mnist.searcher.settings import SearchSettings
    from nas_mnist.searcher.study import create_or_resume, preflight
    settings = SearchSettings.of(study="d", storage=f"sqlite:///{tmp_path}/d.db", space="quick",
                                 budget=5000, epochs=1, last_n=1, min_params=0)
    space = preflight(settings)
    data = load_dataset(small_data_dir)
    study, _ = create_or_resume(settings, space, data)
    objective = Objective(StudyMeta.from_study(study), space, data, settings.rule())
    # every parameter fixed: a partly fixed draw was over the 5,000 budget in 1 of 18 (CI)
    drawn = {"pools": 1, "stage0_convs": 2, "stage0_conv0_width": 8, "stage0_conv1_width": 8,
             "stage1_convs": 1, "stage1_pad": 0, "stage1_conv0_width": 12,
             "trans0_conv1x1": True, "trans0_width": 8, "pre_gap": 16, "dropout": 0.05,
             "recipe.lr": 0.2}  # 2,016 parameters
    study.enqueue_trial(drawn)
    study.optimize(objective, n_trials=1)  # trained: the study's first network
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    assert study.trials[0].params == drawn and records(study)[0].n_params == 2016
    calls = []
    monkeypatch.setattr(evaluate_mod, "train", lambda *a, **k: calls.append(1))
    study.enqueue_trial(study.trials[0].params)  # drawn again: no "enqueued" label
    study.optimize(objective, n_trials=1)
    twin = records(study)[1]
    assert calls == [] and twin.kind == "duplicate" and twin.duplicate_of == 0
    assert not twin.trained  # --trials counts networks trained
    assert twin.n_params == records(study)[0].n_params  # counted, so the limits still teach


def test_the_startup_draws_skip_the_draws_the_study_has():
    """A study on the search seed of one the prior came from drew that study's start-up
    networks again, after the same number of warm trials."""
    import optuna
    from nas_mnist.searcher.record import StudyMeta
    from nas_mnist.searcher.sampling import suggest_arch
    from nas_mnist.searcher.settings import StudyValue
    from nas_mnist.searcher.workers import enqueue_startup_draw
    value = StudyValue(budget=10_000)
    space = value.search_space()
    meta = StudyMeta(budget=10_000, min_params=value.resolved_min_params,
                     max_activations=value.resolved_max_activations)

    def first_draw(study) -> dict:
        assert enqueue_startup_draw(study, space, meta, seed=1)
        trial = study.ask()
        suggest_arch(trial, space)
        space.recipe_for(trial)
        study.tell(trial, 0.0)
        return trial.params

    other = optuna.create_study()
    other.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.0))
    seen = first_draw(other)  # drawn after one trial
    study = optuna.create_study()
    study.enqueue_trial(seen)  # the study holds that network: a warm start, say
    trial = study.ask()
    suggest_arch(trial, space)
    space.recipe_for(trial)
    study.tell(trial, 0.0)
    assert trial.params == seen
    assert first_draw(study) != seen  # the same seed and trial count, the next draw
