import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas_mnist.cli import main
from nas_mnist.searcher.space import SPACE_DIR
from nas_mnist.spec.seedrun import SeedRun
from nas_mnist.engine.data import load_dataset
from nas_mnist.searcher.objective import Objective
from nas_mnist.searcher.study import SearchSettings, create_or_resume, preflight
from nas_mnist.searcher.replay import params_of
from nas_mnist.searcher.space import SpaceError, load_space
from nas_mnist.searcher.sampling import smallest_arch, suggest_arch
from nas_mnist.results.summary import summary_markdown
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.recipe import Recipe
from nas_mnist.searcher.record import count_kinds
from nas_mnist.searcher.study import n_trained as finished

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--space", "quick", "--epochs", "1", "--last-n", "1", "--threads", "2", "--jobs", "1"]


def _study(url, name="s"):
    return optuna.load_study(study_name=name, storage=url)


def _search(tmp_path, data_dir, *extra, study="s"):
    url = f"sqlite:///{tmp_path}/studies.db"
    code = main(["search", "--study", study, "--storage", url, "--data-dir", str(data_dir),
                 *QUICK, *extra])
    return code, url


@pytest.mark.slow  # trains networks end to end
def test_tiny_search_end_to_end(tmp_path, small_data_dir, capsys):
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "3",
                        "--epochs", "2", "--artifacts", str(tmp_path / "art"))
    assert code == 0
    out = capsys.readouterr().out
    assert "rank trial" in out and url in out and "min of the last 1 of 2 epochs" in out
    study = _study(url)
    assert finished(study) == 3
    assert [d.name for d in study.directions] == ["MAXIMIZE"]  # single objective by default
    assert study.metric_names == ["score"]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done, "at least one trial must complete"
    t = done[0]
    for key in ("arch", "recipe", "params", "macs", "acc", "train_loss", "seconds", "device",
                "version", "eval_split", "weights_artifact", "data_mean", "worker"):
        assert key in t.user_attrs, key
    assert t.user_attrs["params"] <= 5000 and t.value == t.user_attrs["acc"][-1]
    for trained in (t for t in study.trials if t.user_attrs.get("acc")):
        # one intermediate value per trained epoch: the dashboard's learning curves
        assert trained.intermediate_values == dict(enumerate(trained.user_attrs["acc"], 1))


@pytest.mark.slow  # trains networks end to end
def test_objective_mean_scores_the_mean_of_the_last_n_and_is_kept_on_resume(
        tmp_path, small_data_dir, capsys):
    from nas_mnist.searcher.record import StudyMeta
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "2",
                        "--epochs", "3", "--last-n", "2", "--objective", "mean",
                        "--prune", "none")
    assert code == 0
    assert "mean of the last 2 of 3 epochs" in capsys.readouterr().out
    study = _study(url)
    assert StudyMeta.from_study(study).objective == "mean"
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done
    for t in done:
        last2 = t.user_attrs["acc"][-2:]
        assert t.value == pytest.approx(sum(last2) / 2)
        if last2[0] != last2[1]:
            assert t.value != min(last2)  # the mean, not the default min
    # the objective is part of what the study is: a resume asking for min is refused
    code, _ = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "3",
                      "--epochs", "3", "--last-n", "2", "--objective", "min", "--prune", "none")
    assert code == 2 and "objective" in capsys.readouterr().err


def test_over_budget_trial_is_never_trained(small_data_dir, tmp_path, monkeypatch):
    import nas_mnist.engine.evaluate as evaluate_mod
    from nas_mnist.searcher.record import StudyMeta
    calls = []
    monkeypatch.setattr(evaluate_mod, "train", lambda *a, **k: calls.append(1))
    settings = SearchSettings.of(study="o", storage=f"sqlite:///{tmp_path}/o.db", space="quick",
                              budget=300, epochs=1, last_n=1)
    space = preflight(settings)
    data = load_dataset(small_data_dir)
    study, _ = create_or_resume(settings, space, data)
    objective = Objective(StudyMeta.from_study(study), space, data, settings.rule())
    study.enqueue_trial({"stage0_convs": 2, "stage0_conv0_width": 8, "stage0_conv1_width": 8})
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.PRUNED and t.user_attrs["reason"] == "over_budget"
    assert t.user_attrs["params"] > 300 and calls == []
    assert t.user_attrs.get("acc") is None
    assert t.system_attrs["constraints:param_budget"] == t.user_attrs["params"] - 300


@pytest.mark.slow  # trains networks end to end
def test_refused_samples_do_not_count_toward_trials(tmp_path, small_data_dir):
    # At budget 700 most samples of the quick space are over budget; 3 must still be trained.
    code, url = _search(tmp_path, small_data_dir, "--budget", "700", "--trials", "3",
                        "--epochs", "1", "--sampler", "random")  # TPE's start-up: trainable
    assert code == 0
    kinds = count_kinds(_study(url))
    assert kinds["complete"] + kinds.get("early_stopped", 0) == 3 and kinds["over_budget"] > 0


@pytest.mark.slow  # trains networks end to end
def test_a_space_with_nothing_trainable_stops_with_one_line(tmp_path, small_data_dir, capsys,
                                                            monkeypatch):
    import nas_mnist.searcher.workers as workers_mod
    monkeypatch.setattr(workers_mod, "MAX_REFUSED_IN_A_ROW", 3)
    code, _ = _search(tmp_path, small_data_dir, "--budget", "240", "--trials", "50",
                      "--sampler", "random", "--epochs", "1")
    err = capsys.readouterr().err.strip().splitlines()
    # found before the study exists now (none of 300 uniform draws is trainable)
    assert code == 2 and len(err) == 1 and "is trainable under the limits" in err[0]


@pytest.mark.slow  # trains networks end to end
def test_resume_with_another_objective_setting_is_refused(tmp_path, small_data_dir, capsys):
    assert _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "1")[0] == 0
    capsys.readouterr()
    code, _ = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "2",
                      "--objectives", "score,params")
    err = capsys.readouterr().err
    assert code == 2 and "objectives 'score' (stored) vs 'score,params' (now)" in err
    assert "--study" in err


@pytest.mark.slow  # trains networks end to end
def test_two_objective_study_keeps_working(tmp_path, small_data_dir):
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "2",
                        "--objectives", "score,params", study="mo")
    assert code == 0
    study = _study(url, "mo")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["score", "params"]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done and all(t.values[1] == t.user_attrs["params"] for t in done)
    assert all(not t.intermediate_values for t in done)  # Optuna cannot take them here


def test_preflight_refuses_budget_below_smallest_network(tmp_path, capsys):
    smallest = smallest_arch(load_space("quick")).n_params()
    url = f"sqlite:///{tmp_path}/never.db"
    code = main(["search", "--space", "quick", "--budget", str(smallest - 1), "--storage", url])
    err = capsys.readouterr().err
    assert code == 2 and f"{smallest:,}" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never.db").exists()


@pytest.mark.slow  # trains networks end to end
def test_resume_adds_trials_and_mismatch_is_refused(tmp_path, small_data_dir, capsys):
    assert _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "2")[0] == 0
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "4")
    assert code == 0 and finished(_study(url)) == 4
    params = [json.dumps(t.params, sort_keys=True) for t in _study(url).trials]
    # the resumed sampler does not replay the first run's configurations
    assert not set(params[2:]) & set(params[:2])
    capsys.readouterr()
    code, _ = _search(tmp_path, small_data_dir, "--budget", "6000", "--trials", "5")
    err = capsys.readouterr().err
    assert code == 2 and "budget 5000 (stored) vs 6000 (now)" in err
    assert finished(_study(url)) == 4 and len(_study(url).trials) == len(params)


@pytest.mark.slow  # over 20 s: end-to-end
def test_two_parallel_workers_finish_exactly_n_trials(tmp_path, small_data_dir):
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "4",
                        "--jobs", "2")
    assert code == 0
    study = _study(url)
    assert finished(study) == 4
    assert count_kinds(study).get("running", 0) == 0


@pytest.mark.slow  # over 20 s: end-to-end
def test_enqueued_config_runs_exactly_once(tmp_path, small_data_dir):
    config = tmp_path / "seed.json"
    config.write_text(json.dumps({"arch": {"stages": [[{"out": 4}], [{"out": 4}]],
                                           "transitions": [{}]},
                                  "recipe": {"lr": 0.05, "precision": "bf16"}}))
    for trials in ("2", "3"):
        code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", trials,
                            "--jobs", "2", "--min-params", "0", "--enqueue", str(config))
        assert code == 0
    study = _study(url)
    seeded = [t for t in study.trials if t.user_attrs.get("enqueued")]
    assert len(seeded) == 1 and seeded[0].state == TrialState.COMPLETE
    # the quick space can express it: it ran as the space's own parameters, so TPE learns from it
    assert seeded[0].params["recipe.lr"] == 0.05 and "fixed_arch" not in seeded[0].user_attrs
    assert seeded[0].user_attrs["arch"] == ArchConfig.from_dict(
        json.loads(config.read_text())["arch"]).to_dict()
    assert f"| {seeded[0].number} (enqueued) |" in summary_markdown(study)
    run = SeedRun(trial=seeded[0].number, params=1, seeds=[0, 1], mins=[99.0, 98.0],
                  seconds=1.0, device="cpu", jobs=1)
    seed_table = summary_markdown(study, seed_runs=[run]).split("## Multi-seed")[1]
    assert f"| {seeded[0].number} (enqueued) | 1 | 2 |" in seed_table


def test_params_of_rebuilds_the_configuration_or_says_it_cannot():
    doc = json.loads((REPO / "studies/mnist-10k-winners/trial31.json").read_text())
    arch, recipe = ArchConfig.from_dict(doc["arch"]), Recipe.from_dict(doc["recipe"])
    params = params_of(arch, recipe, load_space("wide"))
    trial = optuna.trial.FixedTrial(params)
    assert suggest_arch(trial, load_space("wide")).key() == arch.key()
    assert load_space("wide").recipe_for(trial) == recipe.replace(epochs=15, last_n=3)
    assert params_of(arch, recipe, load_space("tiny")) is None  # width 6: tiny offers 4, 8, ...
    assert params_of(arch, recipe.replace(precision="fp32"), load_space("wide")) is None
    assert params_of(arch, recipe.replace(lr=0.5), load_space("wide")) is None  # > high


def test_a_configuration_of_the_space_stored_with_the_study_trainer_is_expressible():
    """A winner of a study made today records the trainer a new study runs (hash dropout,
    evaluation in the training precision): the space still expresses it."""
    from tests.conftest import random_archs
    arch = next(random_archs("quick", 50))
    space = load_space("quick")
    recipe = space.recipe_for(optuna.trial.FixedTrial(
        {k: v for k, v in _sample_params(space).items() if k.startswith("recipe.")}))
    stored = recipe.replace(dropout_rng="hash", eval_precision="train")
    assert params_of(arch, stored, space) is not None
    assert params_of(arch, stored.replace(dropout_rng="bernoulli"), space) is not None
    assert params_of(arch, stored.replace(weight_decay=0.123), space) is None


def _sample_params(space) -> dict:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space.recipe_for(trial)
    return trial.params


@pytest.mark.parametrize("text,key", [
    ("pools: [1, 2]\n", "pools"),
    ("widht: 3\n", "widht"),
    ("pools: {low: 1}\n", "pools"),
    ("pools: {low: 1, high: 2\n", "line"),
    # every value of every dimension is checked when the space is read, not sample by sample
    ("conv_kind: {choices: [full, wavelet]}\n", "key 'conv_kind': 'wavelet' is not one of"),
    ("groups: 0\n", "key 'groups': 0 is not an integer in"),
    ("groups: 1000000000\n", "key 'groups': 1000000000"),
    ("width: {choices: [8, 1000000000]}\n", "key 'width': 1000000000 is not an integer"),
    ("mid_act: 'no'\n", "key 'mid_act': 'no' is not true or false"),
    ("dropout: {low: 0.0, high: 1.5}\n", "key 'dropout': 1.5 is not a rate in"),
    ("head: foo\n", "key 'head': 'foo' is not one of"),
    ("transition_where: {choices: [before, inside]}\n", "key 'transition_where': 'inside'"),
    ("width: 8\nwidth: 12\n", "key 'width' is given twice"),
    ("x: &x [4, 8]\nwidth: {choices: *x}\n", "YAML aliases"),
])
def test_bad_space_file_names_the_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    base = open(SPACE_DIR / "quick.yaml").read().split("\n")
    body = "\n".join(l for l in base if not l.startswith(text.split(":")[0] + ":"))
    path.write_text(text + body)
    with pytest.raises(SpaceError) as err:
        load_space(str(path))
    assert key in str(err.value) and len(str(err.value).splitlines()) == 1


def test_an_alias_bomb_or_a_huge_space_file_is_refused_before_it_is_expanded(tmp_path):
    rows = "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
                   for p, c in zip("abcdefgh", "bcdefghi"))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + rows + "width: {choices: *i}\n")
    with pytest.raises(SpaceError, match="YAML aliases"):  # refused before 9^9 values exist
        load_space(str(bomb))
    big = tmp_path / "big.yaml"
    big.write_text("#" * 70_000 + "\n" + (SPACE_DIR / "quick.yaml").read_text())
    with pytest.raises(SpaceError, match="is larger than 65,536 bytes"):
        load_space(str(big))


def test_every_shipped_space_passes_the_whole_check_with_its_digest_unchanged():
    digests = {p.stem: load_space(p.stem).digest for p in SPACE_DIR.glob("*.yaml")}
    assert digests["default"] == "efc9883aae008683"  # studies of the default space resume


@pytest.mark.slow  # trains networks end to end
def test_journal_storage(tmp_path, small_data_dir):
    url = f"journal:{tmp_path}/study.log"
    code = main(["search", "--study", "j", "--storage", url, "--data-dir", str(small_data_dir),
                 *QUICK, "--budget", "5000", "--trials", "2"])
    assert code == 0
    from nas_mnist.searcher.storage import open_storage
    study = optuna.load_study(study_name="j", storage=open_storage(url, create=False))
    assert finished(study) == 2


@pytest.mark.slow  # trains networks end to end
def test_val_split_search_scores_on_validation(tmp_path, small_data_dir, capsys):
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "2",
                        "--val-split", "500", study="v")
    assert code == 0
    assert "epochs on val" in capsys.readouterr().out
    study = _study(url, "v")
    assert study.user_attrs["nas_mnist"]["eval_split"] == "val"
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done and all(t.user_attrs["eval_split"] == "val" for t in done)
    from nas_mnist.results.summary import summary_markdown
    assert "test set was not used to pick the winners" in summary_markdown(study)


def test_percentile_rule_compares_only_with_networks_no_larger():
    from nas_mnist.searcher.stopping import Curve, make_rule
    peers = [Curve(i, [acc] * 15, params, complete=True) for i, (acc, params) in enumerate(
        [(97.0, 9000), (97.5, 9500), (98.0, 8000), (98.2, 9900),  # big, good
         (90.0, 3000), (91.0, 3500), (92.0, 3900), (93.0, 2000)])]  # small
    rule = make_rule("percentile").fit(15)

    def stops(acc, params, epoch=3):
        return rule.should_stop(Curve(99, [acc] * epoch, params), peers, multi_objective=False)

    # A 4K network at 90.5 % is not last among networks of its size: it runs on ...
    assert not stops(90.5, 4000)
    # ... while a 10K network at 90.5 % is in the bottom quarter of all no larger than it.
    assert stops(90.5, 10_000)
    # Too few peers of its size, or too early: never stopped.
    assert not stops(50.0, 3000)
    assert not stops(50.0, 10_000, epoch=2)


@pytest.mark.slow  # over 20 s: end-to-end
def test_max_macs_is_a_hard_constraint_like_the_budget(tmp_path, small_data_dir, capsys):
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--max-macs", "200000",
                        "--min-params", "0", "--trials", "3", study="m")
    assert code == 0
    assert "200,000 MACs" in capsys.readouterr().out
    study = _study(url, "m")
    over = [t for t in study.trials if t.user_attrs["macs"] > 200_000
            and t.user_attrs["params"] <= 5000]  # the budget is checked first
    assert over, "the quick space has networks over 200K MACs; some must have been sampled"
    for t in over:
        assert t.state == TrialState.PRUNED and t.user_attrs["reason"] == "over_macs"
        assert "acc" not in t.user_attrs and t.system_attrs["constraints:max_macs"] > 0
    assert sum(t.user_attrs.get("acc") is not None for t in study.trials) == 3
    assert study.user_attrs["nas_mnist"]["max_macs"] == 200_000


def test_max_macs_below_the_smallest_network_is_refused_before_the_storage(tmp_path, capsys):
    code = main(["search", "--space", "quick", "--max-macs", "1000",
                 "--storage", f"sqlite:///{tmp_path}/never.db"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "smallest network" in err and "1,000" in err
    assert not (tmp_path / "never.db").exists()


@pytest.mark.slow
def test_the_search_records_the_score_train_gives_for_the_same_seed_and_threads(
        tmp_path, small_data_dir):
    """The search loads its data before it pins its threads; `train` after. A winner must
    re-train to its recorded score (it differed by one test image on a subset)."""
    import nas_mnist as nm
    config = REPO / "nas_mnist/configs/trial81.json"
    study = nm.search(study="same", space="quick", budget=4000, epochs=1, trials=1,
                      threads=1, jobs=1, warm_start="none", enqueue=[str(config)],
                      data_dir=str(small_data_dir), progress=False, log=None)
    from nas_mnist.searcher.record import TrialRecord
    searched = TrialRecord.from_trial(study.optuna.trials[0])
    # the enqueued file trains under the space's recipe: precision "auto" (bf16 only where the
    # CPU has it natively), where the file says bf16, emulated and different on an AVX2-only CPU
    retrained = nm.train(str(config), epochs=1, threads=1, data_dir=str(small_data_dir),
                         dropout_rng="hash", eval_precision="train", precision="auto")
    assert retrained["test_acc"] == searched.accs
    assert retrained["train_loss"] == pytest.approx(searched.train_losses, rel=1e-6)
