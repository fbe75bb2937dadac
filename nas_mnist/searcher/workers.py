"""Worker processes: each runs trials through the objective until its share is trained.

`--jobs K` starts K spawned processes with their share of the CPU threads; progress and errors
come back through the storage and a queue, Ctrl-C becomes SIGTERM in every worker, which ends
its running trial as an interrupt (FAIL, retried first by the next run).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import time
import warnings
from collections import Counter
from typing import Callable

import optuna
from optuna.trial import TrialState

from nas_mnist.engine.data import Dataset, load_dataset
from nas_mnist.engine.device import cpu_cores, resolve_device, set_threads
from nas_mnist.engine.train import NonFiniteLoss
from nas_mnist.errors import NasMnistError
from nas_mnist.interrupts import Interrupter
from nas_mnist.searcher import record
from nas_mnist.searcher.confirmation import confirm_one
from nas_mnist.searcher.objective import Objective
from nas_mnist.searcher.prior import PACKAGED_PRIOR, load_prior
from nas_mnist.searcher.claims import (StudyFull, claim_trials, fail_unstarted, n_trained,
                                       sampler_start)
from nas_mnist.searcher.record import StudyMeta, TrialRecord
from nas_mnist.spec.limits import Limits
from nas_mnist.searcher.settings import SearchError, SearchSettings
from nas_mnist.searcher.storage import mask_url, open_storage

MAX_FAILS_IN_A_ROW = 5
MAX_REFUSED_IN_A_ROW = 200  # samples over budget or invalid in a row: the space is hopeless
UNTRAINED = (*record.REFUSALS, "duplicate")  # draws that end before training, in milliseconds
POLL_S = 2.0  # progress polling of parallel workers
TPE_STARTUP_TRIALS = 10  # random trials before TPE models the space
# A resumed study must not replay its first configurations: the sampler seed is offset by the
# trials already in the study and by the worker; large primes keep the offsets apart.
SEED_STRIDE_TRIALS, SEED_STRIDE_WORKER, SEED_STRIDE_START = 7919, 104729, 1299709


def make_sampler(settings: SearchSettings, study: optuna.Study, worker: int, start: int = 0):
    seed = (settings.run.seed + SEED_STRIDE_TRIALS * len(study.trials)
            + SEED_STRIDE_WORKER * worker + SEED_STRIDE_START * start) % 2**32
    if settings.run.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          constant_liar=True,
                                          n_startup_trials=TPE_STARTUP_TRIALS)


def load_search_data(settings: SearchSettings) -> Dataset:
    device = resolve_device(settings.run.device)
    data = load_dataset(settings.run.data_dir, val_split=settings.value.val_split,
                        seed=settings.value.split_seed)
    return data.to(device)


def _one_trial(study: optuna.Study, objective, settings: SearchSettings) -> TrialRecord | None:
    """Ask, train and tell one trial; its record (None if Optuna reported none)."""
    last: list[TrialRecord] = []
    try:
        study.optimize(objective, n_trials=1, catch=(NonFiniteLoss,),
                       callbacks=[lambda st, ft: last.append(TrialRecord.from_trial(ft))])
    except KeyboardInterrupt:
        fail_unstarted(study)
        raise
    except (AssertionError, optuna.exceptions.StorageInternalError, OSError) as err:
        raise SearchError(f"cannot write the study to {mask_url(settings.storage)} or its "
                          f"weights to {settings.run.artifacts}: {_root_cause(err)}") from None
    return last[-1] if last else None


def _check_streaks(fails: int, refused: Counter, meta: StudyMeta, space) -> None:
    """Stop a search that only fails, or whose space yields nothing trainable."""
    if fails >= MAX_FAILS_IN_A_ROW:
        raise SearchError(f"{MAX_FAILS_IN_A_ROW} trials failed in a row; see the study")
    if refused.total() >= MAX_REFUSED_IN_A_ROW:
        raise SearchError(f"{MAX_REFUSED_IN_A_ROW} samples in a row were refused "
                          f"({_refusals(refused, meta)}): space {space.name} yields almost "
                          f"nothing {'new and ' if 'duplicate' in refused else ''}trainable "
                          f"under these limits")


def run_worker(settings: SearchSettings, share: int, worker: int = 0, *,
               data: Dataset | None = None, deadline: float | None = None,
               on_epoch: Callable[[], None] | None = None,
               on_trial: Callable[[TrialRecord], None] | None = None,
               queued_only: bool = False) -> int:
    """Train networks until `share` of them were trained here, or the study has
    `settings.run.trials` (with `queued_only`, until no queued trial is left); return how many
    this worker trained."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = settings.value.search_space()
    data = data if data is not None else load_search_data(settings)
    study = optuna.load_study(study_name=settings.study,
                              storage=open_storage(settings.storage, create=False))
    meta = StudyMeta.from_study(study)
    startup = ((lambda: enqueue_startup_draw(study, space, meta, seed=settings.run.seed,
                                             worker=worker))
               if settings.run.sampler == "tpe" and meta.arch is None and not queued_only
               else None)
    claim_trials(study, settings.storage, settings.run.trials, before_ask=startup)
    study.sampler = make_sampler(settings, study, worker,
                                 start=sampler_start(study, settings.storage))
    objective = Objective(meta, space, data, settings.rule(), train_seed=settings.run.train_seed,
                          artifacts=settings.run.artifacts, on_epoch=on_epoch,
                          prior=load_prior(PACKAGED_PRIOR).without(settings.study))
    trained, fails, refused = 0, 0, Counter()
    on_run = (lambda *_: on_trial(None)) if on_trial is not None else None

    def confirm() -> bool:
        return _confirm_due(study, settings, data, on_run)

    # `share` makes K local workers add exactly N networks; the global count stops workers
    # on other machines sharing the storage once the study has its N.
    while (trained < share and n_trained(study) < settings.run.trials
           and (deadline is None or time.time() < deadline)
           and (not queued_only or waiting(study))):
        if confirm():
            continue  # a confirmation run of a top trial, before a new network
        try:
            last = _one_trial(study, objective, settings)
        except StudyFull:
            break  # the other workers' running trials complete the count
        kind = last.kind if last else "failed"
        if on_trial is not None and last:
            on_trial(last)
        trained += kind in ("complete", "early_stopped")
        fails = fails + 1 if kind == "failed" else 0
        refused = refused + Counter([kind]) if kind in UNTRAINED else Counter()
        _check_streaks(fails, refused, meta, space)
    # the study has its networks: confirm the final top K before leaving
    while (not queued_only and (deadline is None or time.time() < deadline)
           and confirm()):
        pass
    return trained


def _confirm_due(study, settings: SearchSettings, data: Dataset, on_run) -> bool:
    """One confirmation run of a top trial, if one is due (selection on several seeds)."""
    if not settings.run.confirm_top:
        return False
    try:
        return confirm_one(study, settings.storage, data, top=settings.run.confirm_top,
                           seeds=settings.run.confirm_seeds,
                           margin=settings.run.confirm_margin, on_run=on_run)
    except (AssertionError, optuna.exceptions.StorageInternalError, OSError) as err:
        raise SearchError(f"cannot write the study to {mask_url(settings.storage)}: "
                          f"{_root_cause(err)}") from None


def _refusals(counts: Counter, meta: StudyMeta) -> str:
    """'183 over the RAM limit max_ram=4,096 B, 17 invalid': what refused the samples, most
    first, each limit named by its parameter."""
    limits = Limits.of(meta)
    return ", ".join(f"{n} {limits.describe(kind)}" if kind != "duplicate"
                     else f"{n} already in the study" for kind, n in counts.most_common())


def _root_cause(err: BaseException) -> str:
    """Optuna wraps a failed commit (disk full) in two exceptions; name the first one."""
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()


def die_with_parent(parent: int) -> None:
    """End this worker when the search that started it ends, however it ends (`kill -9`, the
    out-of-memory killer): Linux sends SIGTERM on the parent's death (prctl PDEATHSIG), which
    ends the running trial as an interrupt; elsewhere a watchdog thread notices the new parent
    within a second. Without this, orphaned workers went on writing into the study."""
    import os
    import threading
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog below is enough
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def _worker_main(settings: SearchSettings, share: int, worker: int, deadline, errors,
                 parent: int | None = None) -> None:
    interrupt = Interrupter()  # ends the running trial as an interrupt (FAIL, retried)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    if parent is not None:
        die_with_parent(parent)
    set_threads(settings.run.threads)
    try:
        run_worker(settings, share, worker, deadline=deadline)
    except KeyboardInterrupt:
        pass  # optuna has marked the running trial FAIL; it is retried on the next run
    except Exception as err:  # a process boundary: the parent reports it in one line
        errors.put(str(err) if isinstance(err, NasMnistError) else f"{type(err).__name__}: {err}")
        sys.exit(1)


def enqueue_startup_draw(study: optuna.Study, space, meta: StudyMeta, *, seed: int,
                         worker: int = 0) -> bool:
    """While the study has fewer than TPE_STARTUP_TRIALS trials begun and none is queued,
    queue a uniform draw of the space among those the limits admit. TPE counts a refused
    sample as one of its random start-up trials: at 10,000 parameters 3 of 4 uniform draws
    were refused, so most of its start-up taught it the limits and trained nothing. Each
    worker draws its own stream, offset as the sampler's seed is (a plain seed + worker made
    worker 2 of seed 5 draw as worker 1 of seed 6), and skips the draws the study has (a
    study on the search seed of one the prior came from drew that study's networks again)."""
    from nas_mnist.searcher.sampling import trainable_draw
    begun = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                     TrialState.RUNNING, TrialState.WAITING))
    if len(begun) >= TPE_STARTUP_TRIALS or waiting(study):
        return False
    had = [t.params for t in study.get_trials(deepcopy=False)]
    params = trainable_draw(space, judge=Limits.of(meta).kind_of, skip=had,
                            seed=(seed + SEED_STRIDE_WORKER * worker
                                  + SEED_STRIDE_TRIALS * len(study.trials)) % 2**32)
    if params is None:
        return False  # the sampler's own draws find out, and the refusals say why
    study.enqueue_trial(params, user_attrs=record.attrs_of(startup=True))
    return True


def waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def run_parallel(settings, study, remaining, deadline, on_progress) -> None:
    per_worker = settings.run.threads or max(1, cpu_cores() // settings.run.jobs)
    worker_settings = settings.with_run(threads=per_worker)
    jobs = min(settings.run.jobs, remaining) if remaining else settings.run.jobs  # 0: confirming
    shares = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_worker_main,
                         args=(worker_settings, share, i + 1, deadline, errors, os.getpid()))
             for i, share in enumerate(shares)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(POLL_S)
            if on_progress:
                on_progress(study)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()  # SIGTERM: the worker ends its trial as an interrupt
        for p in procs:
            p.join()
        raise
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        try:
            first = errors.get(timeout=2)
        except queue.Empty:  # killed without a word (out of memory, SIGKILL)
            first = f"exit codes {bad}"
        raise SearchError(f"{len(bad)} of {len(procs)} worker(s) stopped: {first}")
