"""Interrupted and killed trials: who ran a trial, and queueing its configuration once more.

A trial records the worker that runs it as host:pid:start-time. At start-up a search fails the
RUNNING trials whose worker process on this host is gone (kill -9, a crash) and queues every
interrupted configuration again, once; workers on other hosts are left to the heartbeat.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, replace

import optuna
from optuna.trial import TrialState

from nas_mnist.searcher import record
from nas_mnist.searcher.record import TrialRecord


def worker_id() -> str:
    """host:pid:start-time of this process (the start time tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_start(os.getpid())}"


def process_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22, starttime
    except (OSError, IndexError):
        return "?"


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose worker process on this host is gone (killed), then queue
    every interrupted or killed configuration once more (a retry is never retried)."""
    here = socket.gethostname()
    retried = {r.retry_of for r in record.records(study) if r.retry_of is not None}
    queued = []
    for t in study.get_trials(deepcopy=False):
        r = TrialRecord.from_trial(t)
        if t.state == TrialState.RUNNING and _gone(r.worker, here):
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            r = replace(r, state="FAIL", interrupted=True)
        if r.state != "FAIL" or not r.interrupted or r.retry_of is not None:
            continue
        if t.number in retried:
            continue
        fixed = {k: v for k, v in asdict(r).items()
                 if (k.startswith("fixed_") or k == "enqueued") and v}
        study.enqueue_trial(t.params, user_attrs=record.attrs_of(retry_of=t.number, **fixed))
        queued.append(t.number)
    return queued


def _gone(worker: str | None, here: str) -> bool:
    """A worker on this host whose process no longer exists (or is another process now)."""
    if not worker or worker.count(":") < 2:
        return False
    host, pid, start = worker.rsplit(":", 2)
    if host != here or not pid.isdigit():
        return False  # other hosts: the heartbeat decides
    return process_start(int(pid)) != start
