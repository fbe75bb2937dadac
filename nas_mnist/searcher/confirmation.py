"""Selection on several seeds, inside the search.

One training seed overrates the luckiest network: the seed-to-seed spread of the top networks
(0.05-0.07 points) is as large as the gaps between them. With `confirm_top=K, confirm_seeds=S`
the workers keep the study's top K trained on S training seeds each: before taking a new
trial, a worker re-trains a top-K trial that lacks seeds (the trial's own seed + 1, + 2, ...)
and records the run in the study. The study ranks by the mean over the seeds run, so a network
that a lucky seed lifted into the top K falls back once confirmed, and the next one is
confirmed in its place - until the top K, by the mean, all have their S seeds. A trial more
than `confirm_margin` points below the leader's mean is not confirmed: two more seeds would
hardly lift it past the leader (mnist-4k-v4 spent 10 minutes confirming a trial 0.13 below).

A run is claimed under the study lock, so workers share the work; a worker that is stopped
gives its claim back, and a claim of a process that is gone (`kill -9`) is taken over: an
interrupted confirmation is re-run by the next search.
"""

from __future__ import annotations

import os
import socket
import time

from nas_mnist.searcher import record
from nas_mnist.searcher.record import SEEDS_PREFIX, StudyMeta
from nas_mnist.searcher.storage import study_lock
from nas_mnist.spec.score import last_n_score

STALE_CLAIM_S = 12 * 3600  # a claim older than this is abandoned (another host, a reused pid)


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _claim_alive(claim: dict) -> bool:
    """A claim holds while its process lives (on this host) and for STALE_CLAIM_S at most (a
    process on another host, or a pid reused by another program)."""
    try:
        if time.time() - float(claim.get("since", 0)) >= STALE_CLAIM_S:
            return False
        if claim.get("host") == socket.gethostname():
            os.kill(int(claim["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def next_run(study, top: int, seeds: int,
             margin: float | None = None) -> tuple[int, int] | None:
    """(trial number, training seed) of the next confirmation run, or None when the top
    `top` trials by their mean score all have `seeds` seeds run or claimed - or, with a
    `margin`, lie more than `margin` points below the leader's mean (the leader is always
    confirmed: its mean is what the others are measured against)."""
    held = record.seed_runs(study)
    ranked = record.feasible(study, StudyMeta.from_study(study))[:top]
    for r in ranked:
        if margin is not None and r.mean_score < ranked[0].mean_score - margin:
            break  # the rest rank lower still
        entry = held.get(r.number, {})
        runs, claims = entry.get("runs", {}), entry.get("claims", {})
        # the trial's own recorded seed, not this run's --train-seed: a study resumed with
        # another one must not "confirm" a trial on the seed it was scored on
        for seed in range(r.seed + 1, r.seed + seeds):
            claim = claims.get(str(seed))
            if str(seed) not in runs and (claim is None or not _claim_alive(claim)):
                return r.number, seed
    return None


def _update(study, number: int, change) -> None:
    key = f"{SEEDS_PREFIX}{number}"
    entry = dict(study.user_attrs.get(key) or {})
    entry.setdefault("runs", {})
    entry.setdefault("claims", {})
    change(entry)
    study.set_user_attr(key, entry)


def store_runs(study, url: str, number: int, runs: dict[int, dict]) -> list[int]:
    """Keep runs of trial `number` made outside the search (`report --seeds`) as its
    confirmation runs, where the study holds none on that seed; returns the seeds added."""
    with study_lock(url):
        held = record.seed_runs(study).get(number, {}).get("runs", {})
        new = {str(seed): run for seed, run in sorted(runs.items()) if str(seed) not in held}
        if new:
            _update(study, number, lambda e: e["runs"].update(new))
    return sorted(map(int, new))


def confirm_one(study, url: str, data, *, top: int, seeds: int, margin: float | None = None,
                on_run=None) -> bool:
    """Claim, train and record one confirmation run; False if none is due."""
    from nas_mnist.engine.evaluate import evaluate_candidate
    with study_lock(url):
        job = next_run(study, top, seeds, margin)
        if job is None:
            return False
        number, seed = job
        _update(study, number, lambda e: e["claims"].__setitem__(str(seed), _me()))
    meta = StudyMeta.from_study(study)
    trial = record.TrialRecord.from_trial(study.trials[number])
    try:
        run = evaluate_candidate(trial.arch_config,
                                 trial.recipe_config, data, seed=seed)
    except BaseException:
        with study_lock(url):  # give the claim back: the next worker or search re-runs it
            _update(study, number, lambda e: e["claims"].pop(str(seed), None))
        raise
    accs = run.result.accs
    result = {"score": last_n_score(accs, meta.last_n, meta.objective), "accs": accs,
              "seconds": round(run.result.seconds, 1), "device": run.device,
              "eval_split": run.result.eval_split}

    def store(entry):
        entry["runs"][str(seed)] = result
        entry["claims"].pop(str(seed), None)

    with study_lock(url):
        _update(study, number, store)
    if on_run is not None:
        on_run(number, seed, result)
    return True
