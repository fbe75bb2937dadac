"""Run or resume a study: settings, pre-flight checks, creation and resume checks, workers.

By default a study maximises the last-N score with the parameter budget as a hard constraint
(`objectives="score"`); `objectives="score,params"` also minimises parameters, so the front is
sampled on purpose. The trial itself is in `objective`; stopping rules in `stopping`.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import socket
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Callable

import optuna
from optuna.trial import TrialState

from nas_mnist import __version__
from nas_mnist.engine.data import Dataset, load_dataset
from nas_mnist.engine.device import cpu_cores, resolve_device, set_threads
from nas_mnist.engine.train import NonFiniteLoss
from nas_mnist.errors import NasMnistError
from nas_mnist.search import record
from nas_mnist.search.objective import EpochEvent, Objective, process_start
from nas_mnist.search.record import METRIC_NAMES, OBJECTIVES, StudyMeta, TrialRecord
from nas_mnist.search.space import SearchSpace, load_space, smallest_arch
from nas_mnist.search.stopping import StopRule, make_rule
from nas_mnist.search.storage import StorageError, mask_url, open_storage
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.recipe import Recipe

MAX_FAILS_IN_A_ROW = 5
MAX_REFUSED_IN_A_ROW = 200  # samples over budget or invalid in a row: the space is hopeless
POLL_S = 2.0  # progress polling of parallel workers
TPE_STARTUP_TRIALS = 10  # random trials before TPE models the space
# A resumed study must not replay its first configurations: the sampler seed is offset by the
# trials already in the study and by the worker; large primes keep the offsets apart.
SEED_STRIDE_TRIALS, SEED_STRIDE_WORKER = 7919, 104729


class SearchError(NasMnistError):
    """The search could not go on (workers died, every trial failing, nothing trainable)."""


class SettingsError(NasMnistError):
    """Search settings that cannot work (caught before the storage is touched)."""


@dataclass(frozen=True)
class SearchSettings:
    study: str
    storage: str
    space: str = "default"
    budget: int = 10_000
    max_macs: int | None = None
    epochs: int = 15
    last_n: int = 3
    objective: str = "min"  # min or mean of the last-N accuracies
    objectives: str = "score"  # "score" (budget as a constraint) or "score,params"
    trials: int = 20  # trained networks wanted in the study (refused samples do not count)
    timeout: float | None = None  # seconds
    seed: int = 0  # sampler seed
    sampler: str = "tpe"  # tpe (constraint-aware, multivariate) or random
    train_seed: int = 0
    jobs: int = 1
    threads: int | None = None  # per worker; default: the cores shared out
    device: str = "auto"
    data_dir: str | None = None
    val_split: int = 0
    prune: str = "asha"
    prune_options: tuple[tuple[str, str], ...] = ()
    artifacts: str | None = None  # folder for per-trial weights (None: keep none)

    def rule(self) -> StopRule:
        return make_rule(self.prune, dict(self.prune_options)).fit(self.epochs)

    def meta(self, space: SearchSpace, data: Dataset) -> StudyMeta:
        return StudyMeta(budget=self.budget, space=space.name, space_digest=space.digest,
                         objective=self.objective, objectives=self.objectives,
                         last_n=self.last_n, epochs=self.epochs, eval_split=data.eval_split,
                         val_split=self.val_split, max_macs=self.max_macs,
                         data_checksum=data.checksum, data_mean=data.mean, data_std=data.std,
                         rule=self.rule().describe())


def preflight(settings: SearchSettings) -> SearchSpace:
    """Checks that need no storage: the space, its smallest network, the stopping rule."""
    if settings.objectives not in OBJECTIVES:
        raise SettingsError(f"objectives must be one of {', '.join(OBJECTIVES)}, "
                          f"got {settings.objectives!r}")
    settings.rule()
    space = load_space(settings.space)
    smallest = smallest_arch(space)
    if smallest.n_params() > settings.budget:
        raise SettingsError(f"budget {settings.budget:,} is below the smallest network of space "
                            f"{space.name!r} ({smallest.n_params():,} parameters)")
    if settings.max_macs is not None:
        from nas_mnist.engine.builder import build_model
        from nas_mnist.engine.counting import count_macs
        from nas_mnist.engine.evaluate import in_shape
        macs = count_macs(build_model(smallest), in_shape(smallest))
        if macs > settings.max_macs:
            raise SettingsError(f"--max-macs {settings.max_macs:,} is below the MACs of the "
                                f"smallest network of space {space.name!r} ({macs:,})")
    return space


def create_or_resume(settings: SearchSettings, space: SearchSpace,
                     data: Dataset) -> tuple[optuna.Study, list[str]]:
    """Open the study (creating it if new) and check it was made for these settings.

    Returns the study and notes for the user (a changed stopping rule, retried trials)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(settings.storage, create=True)
    meta = settings.meta(space, data)
    try:
        study = optuna.load_study(study_name=settings.study, storage=storage)
    except KeyError:
        study = optuna.create_study(study_name=settings.study, storage=storage,
                                    directions=list(meta.directions))
    stored = StudyMeta.from_study(study)
    if stored is None:
        if study.trials:
            raise StorageError(f"study {settings.study!r} was not made by nas-mnist")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(METRIC_NAMES[settings.objectives])  # the dashboard's labels
        meta.save(study)
        return study, []
    differ = stored.differences(meta)
    if differ:
        raise StorageError(f"study {settings.study!r} was created with other settings: "
                           + "; ".join(differ) + "; pick another name with --study")
    notes = []
    if stored.rule and stored.rule != meta.rule:
        notes.append(f"stopping rule changed from {stored.rule} to {meta.rule} "
                     f"(allowed: it changes no stored result)")
    replace(stored.filled_from(meta), rule=meta.rule, version=__version__).save(study)
    notes += [f"trial {n} was interrupted: its configuration runs again first"
              for n in requeue_interrupted(study)]
    return study, notes


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
        fixed = {k: v for k, v in asdict(r).items() if k.startswith("fixed_") and v}
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


def make_sampler(settings: SearchSettings, study: optuna.Study, worker: int):
    seed = (settings.seed + SEED_STRIDE_TRIALS * len(study.trials)
            + SEED_STRIDE_WORKER * worker) % 2**32
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          constant_liar=True,
                                          n_startup_trials=TPE_STARTUP_TRIALS)


def load_search_data(settings: SearchSettings) -> Dataset:
    device = resolve_device(settings.device)
    data = load_dataset(settings.data_dir, val_split=settings.val_split, seed=settings.seed)
    return data.to(device)


def n_trained(study: optuna.Study) -> int:
    """Networks trained (complete or stopped early): what --trials counts."""
    return sum(r.trained for r in record.records(study))


def run_worker(settings: SearchSettings, share: int, worker: int = 0, *,
               data: Dataset | None = None, deadline: float | None = None,
               on_epoch: Callable[[EpochEvent], None] | None = None,
               on_trial: Callable[[TrialRecord], None] | None = None,
               queued_only: bool = False) -> int:
    """Train networks until `share` of them were trained here, or the study has
    `settings.trials` (with `queued_only`, until no queued trial is left); return how many
    this worker trained."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(settings.space)
    data = data if data is not None else load_search_data(settings)
    study = optuna.load_study(study_name=settings.study,
                              storage=open_storage(settings.storage, create=False))
    study.sampler = make_sampler(settings, study, worker)
    meta = StudyMeta.from_study(study)
    objective = Objective(meta, space, data, settings.rule(), train_seed=settings.train_seed,
                          artifacts=settings.artifacts, on_epoch=on_epoch)
    trained, fails, refused = 0, 0, 0
    # `share` makes K local workers add exactly N networks; the global count stops workers
    # on other machines sharing the storage once the study has its N.
    while (trained < share and n_trained(study) < settings.trials
           and (deadline is None or time.time() < deadline)
           and (not queued_only or _waiting(study))):
        last: list[TrialRecord] = []
        try:
            study.optimize(objective, n_trials=1, catch=(NonFiniteLoss,),
                           callbacks=[lambda st, ft: last.append(TrialRecord.from_trial(ft))])
        except (AssertionError, optuna.exceptions.StorageInternalError, OSError) as err:
            raise SearchError(f"cannot write the study to {mask_url(settings.storage)} or its "
                              f"weights to {settings.artifacts}: {_root_cause(err)}") from None
        kind = last[-1].kind if last else "failed"
        if on_trial is not None and last:
            on_trial(last[-1])
        trained += kind in ("complete", "early_stopped")
        fails = fails + 1 if kind == "failed" else 0
        refused = refused + 1 if kind in record.REFUSALS else 0
        if fails >= MAX_FAILS_IN_A_ROW:
            raise SearchError(f"{MAX_FAILS_IN_A_ROW} trials failed in a row; see the study")
        if refused >= MAX_REFUSED_IN_A_ROW:
            raise SearchError(f"{MAX_REFUSED_IN_A_ROW} samples in a row were over budget or "
                              f"invalid: the space yields almost nothing trainable under "
                              f"budget {settings.budget:,}")
    return trained


def _root_cause(err: BaseException) -> str:
    """Optuna wraps a failed commit (disk full) in two exceptions; name the first one."""
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()


def raise_interrupt(signum, frame):
    """SIGTERM/SIGHUP handler: end the running trial as an interrupt (FAIL, retried)."""
    raise KeyboardInterrupt


def _worker_main(settings: SearchSettings, share: int, worker: int, deadline, errors) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupt)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    set_threads(settings.threads)
    try:
        run_worker(settings, share, worker, deadline=deadline)
    except KeyboardInterrupt:
        pass  # optuna has marked the running trial FAIL; it is retried on the next run
    except Exception as err:  # a process boundary: the parent reports it in one line
        errors.put(str(err) if isinstance(err, NasMnistError) else f"{type(err).__name__}: {err}")
        sys.exit(1)


def enqueue_config(study: optuna.Study, arch: ArchConfig, recipe: Recipe | None) -> bool:
    """Queue a known configuration once; False if the study already has it."""
    key = arch.key()
    if any(r.fixed_key == key for r in record.records(study)):
        return False
    study.enqueue_trial({}, user_attrs=record.attrs_of(
        fixed_arch=arch.to_dict(), fixed_key=key,
        fixed_recipe=recipe.to_dict() if recipe else {}))
    return True


def run_search(settings: SearchSettings, study: optuna.Study, *, data: Dataset | None = None,
               on_progress: Callable[[optuna.Study], None] | None = None) -> int:
    """Bring the study to `settings.trials` trained networks. Returns networks trained."""
    deadline = time.time() + settings.timeout if settings.timeout else None
    before = n_trained(study)
    remaining = settings.trials - before
    if remaining <= 0:
        return 0
    on_epoch = (lambda event: on_progress(study)) if on_progress else None
    on_trial = (lambda rec: on_progress(study)) if on_progress else None
    if settings.jobs == 1 or _waiting(study):
        # Queued trials (enqueued, retried) run here, before parallel workers could race.
        data = data if data is not None else load_search_data(settings)
        set_threads(settings.threads)
        run_worker(settings, remaining, 0, data=data, deadline=deadline, on_epoch=on_epoch,
                   on_trial=on_trial, queued_only=settings.jobs > 1)
        remaining = settings.trials - n_trained(study)
    if settings.jobs > 1 and remaining > 0 and (deadline is None or time.time() < deadline):
        _run_parallel(settings, study, remaining, deadline, on_progress)
    return n_trained(study) - before


def _waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _run_parallel(settings, study, remaining, deadline, on_progress) -> None:
    per_worker = settings.threads or max(1, cpu_cores() // settings.jobs)
    worker_settings = replace(settings, threads=per_worker)
    jobs = min(settings.jobs, remaining)
    shares = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_worker_main,
                         args=(worker_settings, share, i + 1, deadline, errors))
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
