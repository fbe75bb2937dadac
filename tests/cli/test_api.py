"""The library face: one function per command, one keyword per flag, typed errors."""

import inspect
import subprocess
import sys

import pytest

import nas_mnist as nm
from nas_mnist import api
from nas_mnist.cli import build_parser
from nas_mnist.searcher.settings import SearchSettings, SettingsError

# Flags that only shape what the CLI prints or its exit code, and library keywords that only
# shape what a call shows: not one-to-one on purpose.
DISPLAY_ONLY = {"count": {"json"}, "search": {"log", "progress"}, "export": {"log"},
                "train": {"json_out", "require", "on_start", "on_epoch", "on_step", "on_seed"},
                "bench": {"json_out", "on_network"}, "report": {"log"}}
NOT_YET: dict = {}


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


@pytest.mark.parametrize("command", ["search", "export", "count", "predict", "train", "report",
                                     "bench"])
def test_every_flag_has_a_keyword_with_the_same_default(command):
    parser = _subcommands()[command]
    flags = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    params = inspect.signature(getattr(api, command)).parameters
    skip = DISPLAY_ONLY.get(command, set()) | NOT_YET.get(command, set())
    assert set(flags) - skip == set(params) - skip, command
    for name in set(flags) - skip:
        default = params[name].default
        if default is inspect.Parameter.empty or flags[name] is None and default is None:
            continue
        flag = flags[name]
        if isinstance(flag, list):  # append/nargs flags: a sequence keyword
            assert list(default if not isinstance(default, str) else [default]) == flag, name
        else:
            assert default == flag, name


def test_every_command_is_exported_from_the_package():
    for name in ("search", "load_study", "train", "bench", "count", "export", "report", "predict",
                 "load_winner", "Study", "Winner", "NasMnistError"):
        assert hasattr(nm, name), name


def test_library_errors_name_the_parameter_not_the_flag():
    with pytest.raises(SettingsError, match=r"last_n must be an integer in \[1, epochs 2\]"):
        SearchSettings.of(study="s", storage="sqlite:///x.db", epochs=2, last_n=3)
    with pytest.raises(api.ApiError, match="jobs must be 'auto' or an integer"):
        nm.search(jobs=0, storage="sqlite:///never.db")


def test_search_with_two_epochs_scores_the_last_epoch():
    """The library default of last_n follows epochs (it kept 3 and failed every sample)."""
    assert SearchSettings.of(study="s", storage="sqlite:///x.db", epochs=2).value.last_n == 1
    assert SearchSettings.of(study="s", storage="sqlite:///x.db", epochs=15).value.last_n == 3


def test_importing_the_package_stays_light():
    code = "import sys, nas_mnist; print('torch' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.slow  # trains networks end to end
def test_search_returns_a_study_that_the_cli_opens(tmp_path, small_data_dir, capsys):
    url = f"sqlite:///{tmp_path}/x.db"
    study = nm.search(budget=3000, space="quick", trials=2, epochs=1, study="x", storage=url,
                      data_dir=str(small_data_dir), jobs=1, progress=False, log=None)
    best = study.best
    assert best.score == max(r.score for r in study.leaderboard())
    assert "<table>" in study._repr_html_() and str(study.leaderboard()).startswith("rank")
    model = best.model()
    import torch
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert nm.count(best.arch)["params"] == best.n_params
    assert study.pareto()[0].n_params <= best.n_params
    assert len(study.pareto_plot().data) >= 1 and study.history_plot() is not None
    frame = study.trials_dataframe()
    assert set(frame.columns) >= {"kind", "score", "params", "activations"}
    capsys.readouterr()
    from nas_mnist.cli import main
    assert main(["report", "--study", "x", "--storage", url, "--no-png",
                 "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "summary.md").is_file()
    assert nm.load_study("x", url).best.trial == best.trial


@pytest.mark.slow  # over 20 s: end-to-end
def test_val_split_is_drawn_with_the_study_split_seed_not_the_sampler_seed(tmp_path,
                                                                          small_data_dir):
    """Two workers with different sampler seeds score on one split; a resume with another
    split seed is refused."""
    from nas_mnist.searcher.record import StudyMeta
    from nas_mnist.searcher.storage import StorageError
    url = f"sqlite:///{tmp_path}/v.db"
    common = dict(budget=3000, space="quick", epochs=1, study="v", storage=url,
                  data_dir=str(small_data_dir), jobs=1, progress=False, log=None, val_split=500,
                  min_params=0)
    nm.search(trials=1, seed=1, **common)
    nm.search(trials=2, seed=2, **common)
    study = nm.load_study("v", url)
    assert StudyMeta.from_study(study.optuna).split_seed == 0
    checksums = {t.user_attrs.get("data_checksum") for t in study.optuna.trials
                 if t.user_attrs.get("acc")}
    assert len(checksums) == 1
    with pytest.raises(StorageError, match="split_seed 0 .stored. vs 7 .now."):
        nm.search(trials=3, split_seed=7, **common)


@pytest.mark.parametrize("argv,message", [
    (["search", "--jobs", "1000"], "jobs 1000 is more than 4 per CPU core"),
    (["search", "--threads", "100000"], "threads 100000 is more than 4 per CPU core"),
    (["train", "studies/mnist-10k-winners/trial52.json", "--threads", "100000"],
     "threads 100000 is more than 4 per CPU core"),
])
def test_workers_and_threads_are_bounded_by_the_cores(tmp_path, capsys, argv, message):
    from pathlib import Path
    from nas_mnist.cli import main
    repo = Path(__file__).resolve().parents[2]
    argv = [str(repo / a) if a.endswith(".json") else a for a in argv]
    code = main([*argv, "--storage", f"sqlite:///{tmp_path}/n.db"] if argv[0] == "search"
                else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "n.db").exists()


@pytest.mark.slow  # trains networks end to end
def test_a_worker_joins_a_study_with_its_name_and_storage_alone(tmp_path, small_data_dir,
                                                                capsys):
    """What a study is comes from the storage: no budget, space, epochs or split to repeat."""
    from nas_mnist.cli import main
    from nas_mnist.searcher.record import StudyMeta
    url = f"sqlite:///{tmp_path}/j.db"
    nm.search(budget=3000, space="quick", epochs=1, val_split=500, split_seed=3, trials=1,
              study="j", storage=url, data_dir=str(small_data_dir), jobs=1, progress=False,
              log=None)
    capsys.readouterr()
    code = main(["search", "--study", "j", "--storage", url, "--trials", "2", "--data-dir",
                 str(small_data_dir), "--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "(resumed, score): budget 3,000" in out and "space quick" in out
    meta = StudyMeta.from_study(nm.load_study("j", url).optuna)
    assert (meta.budget, meta.epochs, meta.val_split, meta.split_seed) == (3000, 1, 500, 3)
    assert sum(1 for t in nm.load_study("j", url).optuna.trials if t.user_attrs.get("acc")) == 2
    code = main(["search", "--study", "j", "--storage", url, "--budget", "4000", "--data-dir",
                 str(small_data_dir)])
    assert code == 2 and "budget 3000 (stored) vs 4000 (now)" in capsys.readouterr().err


def test_a_packaged_config_is_found_by_its_name(tmp_path, monkeypatch):
    import nas_mnist as nm
    assert nm.count("woolly3762")["params"] == 3762 and nm.count("trial81")["params"] == 3322
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trial81").write_text("{}")  # a file of that name is the file, not the config
    with pytest.raises(nm.NasMnistError, match="trial81"):
        nm.count("trial81")
