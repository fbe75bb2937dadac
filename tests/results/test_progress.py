"""The live progress of a search: a redrawn block on a terminal, log lines otherwise."""

import io

import optuna

from nas_mnist.results.progress import LiveProgress
from nas_mnist.searcher.record import StudyMeta, attrs_of


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _study():
    study = optuna.create_study()
    done = attrs_of(accs=[97.0, 98.5], n_params=4000, epoch_seconds=[10.0, 10.0])
    study.add_trial(optuna.trial.create_trial(value=98.5, user_attrs=done))
    running = study.ask()
    for key, value in attrs_of(accs=[95.0], n_params=6000, epoch_seconds=[20.0]).items():
        running.set_user_attr(key, value)
    return study, running


def test_a_terminal_gets_one_line_per_running_trial_redrawn_in_place():
    study, _ = _study()
    screen = Terminal()
    progress = LiveProgress(screen, StudyMeta(budget=5000, epochs=4), trials=3, jobs=1)
    progress.update(study)
    first = screen.getvalue()
    assert "trained 1/3" in first and "best 98.50 % (trial 0, 4,000 p)" in first
    assert "trial 1: epoch 1/4, test acc 95.00 %, 6,000 p, <= 60 s to go" in first
    progress.update(study)
    assert screen.getvalue()[len(first):].startswith("\x1b[1F\x1b[2K" * 2)  # the block, redrawn


def test_a_log_gets_each_epoch_and_each_finished_trial_once():
    study, running = _study()
    log = io.StringIO()
    progress = LiveProgress(log, StudyMeta(budget=5000, epochs=4), trials=3, jobs=1)
    progress.update(study)
    progress.update(study)
    assert log.getvalue().count("trial 1: epoch 1/4") == 1
    study.tell(running, state=optuna.trial.TrialState.PRUNED)  # no reason: stopped early
    progress.update(study)
    assert "trial 1: stopped early after epoch 1" in log.getvalue()


def test_a_trial_cut_short_by_ctrl_c_or_a_signal_is_not_called_failed():
    """A baseline search stopped by SIGTERM at its hour logged 'trial 12: failed' for its last."""
    study, running = _study()
    log = io.StringIO()
    progress = LiveProgress(log, StudyMeta(budget=5000, epochs=4), trials=3, jobs=1)
    progress.update(study)
    running.set_user_attr("interrupted", True)
    study.tell(running, state=optuna.trial.TrialState.FAIL)
    progress.update(study)
    assert "trial 1: interrupted after epoch 1/4 (trained again first on a resume)" in \
        log.getvalue()
    retry = study.ask()  # a retry is never retried (searcher/recovery.py): the line says so
    for key, value in attrs_of(accs=[95.0, 96.0], retry_of=1, interrupted=True).items():
        retry.set_user_attr(key, value)
    study.tell(retry, state=optuna.trial.TrialState.FAIL)
    progress.update(study)
    assert "trial 2: interrupted after epoch 2/4 (a retry of trial 1: not queued again)" in \
        log.getvalue()
    assert "failed" not in log.getvalue()


def test_summary_separates_what_the_stopping_rule_saved_from_refusals():
    from optuna.trial import TrialState, create_trial
    from nas_mnist.results.summary import epochs_saved, summary_markdown
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("nas_mnist", {"budget": 5000, "epochs": 4})
    arch = {"stages": [[{"out": 4}], [{"out": 4}]], "transitions": [{}]}
    study.add_trial(create_trial(value=98.5, user_attrs=attrs_of(accs=[97, 98, 98.5, 98.5],
                                                                 n_params=4000, arch=arch)))
    study.add_trial(create_trial(state=TrialState.PRUNED,  # stopped after 1 of 4 epochs
                                 user_attrs=attrs_of(accs=[90.0], n_params=3000)))
    study.add_trial(create_trial(state=TrialState.PRUNED,  # refused: never trained
                                 user_attrs=attrs_of(n_params=9000, reason="over_budget")))
    assert epochs_saved(study) == (3, 4, 5)
    text = summary_markdown(study)
    assert "saved by the stopping rule: 3 of the 8" in text and "1 stopped early" in text
    assert "would have cost 4 more" in text


def test_a_narrow_terminal_gets_the_headline_alone_cut_to_its_width(monkeypatch):
    """A wrapped line is more rows than the block moves up over: at 20 columns the block
    left fragments all over the screen. Every redrawn row now fits."""
    monkeypatch.setenv("COLUMNS", "20")
    study, _ = _study()
    screen = Terminal()
    progress = LiveProgress(screen, StudyMeta(budget=5000, epochs=4), trials=3, jobs=1)
    progress.update(study)
    progress.update(study)
    rows = screen.getvalue().split("\x1b[1F\x1b[2K")
    assert len(rows) == 2  # one line drawn, moved over once
    assert all(len(line) < 20 for row in rows for line in row.splitlines())
    monkeypatch.setenv("COLUMNS", "100")
    wide = Terminal()
    LiveProgress(wide, StudyMeta(budget=5000, epochs=4), trials=3, jobs=1).update(study)
    assert len(wide.getvalue().splitlines()) == 2 and "trial 1: epoch 1/4" in wide.getvalue()


def test_a_resume_that_trains_nothing_new_says_so():
    # `search --trials 1 --confirm-top 3` on a study of 57 networks only confirms: the
    # headline read "trained 57/1"
    study, _ = _study()
    screen = Terminal()
    progress = LiveProgress(screen, StudyMeta(budget=5000, epochs=4), trials=1, jobs=1)
    progress.update(study)
    assert "trained 1 (0 stopped early; none new asked for), 0 refused" in screen.getvalue()
    assert "trained 1/1" not in screen.getvalue()
    # a search that reaches its count as it runs still counts up to it
    screen = Terminal()
    progress = LiveProgress(screen, StudyMeta(budget=5000, epochs=4), trials=2, jobs=1)
    progress.update(study)
    study.add_trial(optuna.trial.create_trial(value=98.0, user_attrs=attrs_of(
        accs=[97.0, 98.0], n_params=4000, epoch_seconds=[10.0, 10.0])))
    progress.update(study)
    assert "trained 2/2" in screen.getvalue()
