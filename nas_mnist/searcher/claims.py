"""Taking trials from a study that several processes share: one claim at a time, at most
`trials` networks in all, and a sampler seed no other worker of the study got."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from nas_mnist.interrupts import deferred
from nas_mnist.searcher import record
from nas_mnist.searcher.storage import study_lock


def n_trained(study: optuna.Study) -> int:
    """Networks trained (complete or stopped early): what --trials counts."""
    return sum(r.trained for r in record.records(study))


class StudyFull(Exception):
    """Every trial the study needs is trained or being trained by some worker."""


def claim_trials(study: optuna.Study, url: str, trials: int, before_ask=None) -> None:
    """Make taking a trial atomic for every process on this machine, and stop at `trials`.

    Optuna's `ask` takes a WAITING trial (reads it, then sets it RUNNING) or creates a new one;
    SQLite has no row lock, so two workers could take the same queued configuration ("Cannot
    tell a COMPLETE trial") and two searches on one study could both start the last of its
    `trials`. Under `study_lock`, `ask` first counts the networks trained and the trials
    running (each will train or be refused, and its worker goes on until its share is done),
    and raises StudyFull when they reach `trials`. `before_ask()` runs under the lock just
    before a trial is taken, so that what it queues is taken by this ask, never left over."""
    ask = study.ask  # Optuna 5 (pinned < 6): `_run_trial` takes every trial through it

    def claimed_ask(*args, **kwargs):
        with study_lock(url):
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if n_trained(study) + running >= trials:
                raise StudyFull
            if before_ask is not None:  # queue what this ask should take (a start-up draw)
                before_ask()
            with deferred():  # a signal inside `ask` waits until this worker knows the trial
                trial = ask(*args, **kwargs)
                study._nas_mnist_asked = trial._trial_id
        return trial

    study.ask = claimed_ask


def fail_unstarted(study: optuna.Study) -> None:
    """After an interrupt: the trial this worker took last, if it is still RUNNING, was taken
    but never started (Optuna fails a trial whose objective was interrupted itself). Mark it
    an interrupted FAIL, so it is not left RUNNING and the next run queues it again."""
    trial_id = getattr(study, "_nas_mnist_asked", None)
    if trial_id is None:
        return
    try:
        trial = study._storage.get_trial(trial_id)
        if trial.state == TrialState.RUNNING:
            for key, value in record.attrs_of(interrupted=True).items():
                study._storage.set_trial_user_attr(trial_id, key, value)
            study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except Exception:  # noqa: BLE001 - dying anyway; the next run's recovery finds it
        pass


SAMPLER_STARTS = "nas_mnist_sampler_starts"


def sampler_start(study: optuna.Study, url: str) -> int:
    """A number no other worker of this study got (0, 1, 2, ...), for the sampler's seed: two
    searches that join one study in the same second see the same trials, and without it they
    drew the same configurations."""
    with study_lock(url):
        start = int(study.user_attrs.get(SAMPLER_STARTS, 0))
        study.set_user_attr(SAMPLER_STARTS, start + 1)
    return start
