"""Run or resume a two-objective Optuna study: maximise last-N accuracy, minimise parameters.

Settings, pre-flight checks, study creation and resume checks, and the worker processes; the
trial itself is in `objective`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState

from nas_mnist import __version__
from nas_mnist.arch import ArchConfig
from nas_mnist.data import Dataset, load_dataset
from nas_mnist.device import resolve_device, set_threads
from nas_mnist.objective import Objective
from nas_mnist.recipe import Recipe
from nas_mnist.space import SearchSpace, load_space, smallest_arch
from nas_mnist.storage import check_meta, finished, open_storage
from nas_mnist.train import NonFiniteLoss

MAX_FAILS_IN_A_ROW = 5
POLL_S = 5.0  # progress polling of parallel workers


class SearchError(RuntimeError):
    """The search could not go on (workers died, every trial failing)."""


@dataclass(frozen=True)
class SearchSettings:
    study: str
    storage: str
    space: str = "default"
    budget: int = 10_000
    epochs: int = 15
    last_n: int = 3
    objective: str = "min"  # min or mean of the last-N accuracies
    trials: int = 20  # complete-or-pruned trials wanted in the study
    timeout: float | None = None  # seconds
    seed: int = 0  # sampler seed
    sampler: str = "tpe"  # tpe (constraint-aware, multivariate) or random
    train_seed: int = 0
    jobs: int = 1
    threads: int | None = None  # per worker; default: the cores shared out
    device: str = "auto"
    data_dir: str | None = None
    val_split: int = 0
    prune_warmup: int = 3  # epochs before a trial may be stopped early
    prune_quantile: float = 0.25  # stop below this quantile of completed curves
    prune_min_trials: int = 4  # completed trials needed before stopping any
    artifacts: str | None = None  # folder for per-trial weights (None: keep none)

    def meta(self, space: SearchSpace) -> dict:
        """What must match when a study is resumed."""
        return {"budget": self.budget, "space": space.name, "space_digest": space.digest,
                "objective": self.objective, "last_n": self.last_n, "epochs": self.epochs,
                "eval_split": "val" if self.val_split else "test", "val_split": self.val_split,
                "version": __version__}


def preflight(settings: SearchSettings) -> SearchSpace:
    """Checks that need no storage: the space loads and its smallest network fits the budget."""
    space = load_space(settings.space)
    smallest = smallest_arch(space).n_params()
    if smallest > settings.budget:
        raise ValueError(f"budget {settings.budget:,} is below the smallest network of space "
                         f"{space.name!r} ({smallest:,} parameters)")
    return space


def create_or_resume(settings: SearchSettings, space: SearchSpace) -> optuna.Study:
    storage = open_storage(settings.storage, create=True)
    study = optuna.create_study(study_name=settings.study, storage=storage, load_if_exists=True,
                                directions=["maximize", "minimize"])
    if [d.name for d in study.directions] != ["MAXIMIZE", "MINIMIZE"]:
        raise ValueError(f"study {settings.study!r} has other objectives than nas-mnist's")
    check_meta(study, settings.meta(space))
    return study


def make_sampler(settings: SearchSettings, study: optuna.Study, worker: int):
    # A resumed study must not replay its first random configurations: offset the seed.
    seed = settings.seed + 7919 * len(study.trials) + 104729 * worker
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate/group are marked experimental
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          constant_liar=True, n_startup_trials=10)


def _load_data(settings: SearchSettings) -> Dataset:
    device = resolve_device(settings.device)
    data = load_dataset(settings.data_dir, val_split=settings.val_split, seed=settings.seed)
    return data.to(device)


def run_worker(settings: SearchSettings, share: int, worker: int = 0,
               on_trial: Callable | None = None, data: Dataset | None = None,
               deadline: float | None = None) -> int:
    """Run trials until `share` of them are complete or pruned; return how many were."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    space = load_space(settings.space)
    data = data if data is not None else _load_data(settings)
    storage = open_storage(settings.storage, create=False)
    study = optuna.load_study(study_name=settings.study, storage=storage)
    study.sampler = make_sampler(settings, study, worker)
    objective = Objective(settings, space, data)
    done, fails_in_a_row = 0, 0
    # `share` makes K local workers add exactly N trials; the global count stops workers on
    # other machines sharing the storage once the study has its N trials.
    while (done < share and finished(study) < settings.trials
           and (deadline is None or time.time() < deadline)):
        states = []
        callbacks = [lambda st, ft: states.append(ft.state)]
        if on_trial is not None:
            callbacks.append(on_trial)
        try:
            study.optimize(objective, n_trials=1, catch=(NonFiniteLoss,), callbacks=callbacks)
        except (AssertionError, optuna.exceptions.StorageInternalError, OSError) as err:
            raise SearchError(f"cannot write the study to {settings.storage} or its weights to "
                              f"{settings.artifacts}: {_root_cause(err)}") from None
        if states and states[-1] in (TrialState.COMPLETE, TrialState.PRUNED):
            done, fails_in_a_row = done + 1, 0
        else:
            fails_in_a_row += 1
            if fails_in_a_row >= MAX_FAILS_IN_A_ROW:
                raise SearchError(f"{MAX_FAILS_IN_A_ROW} trials failed in a row; see the study")
    return done


def _root_cause(err: BaseException) -> str:
    """Optuna wraps a failed commit (disk full) in two exceptions; name the first one."""
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _worker_main(settings: SearchSettings, share: int, worker: int, deadline) -> None:
    signal.signal(signal.SIGTERM, _raise_interrupt)  # end the running trial as FAIL, cleanly
    set_threads(settings.threads)
    try:
        run_worker(settings, share, worker, deadline=deadline)
    except KeyboardInterrupt:
        pass  # optuna has already marked the running trial FAIL
    except Exception as err:  # a process boundary: one line for the user, the parent exits 2
        sys.stderr.write(f"nas-mnist: worker {worker}: {type(err).__name__}: {err}\n")
        sys.exit(1)


def enqueue_config(study: optuna.Study, arch: ArchConfig, recipe: Recipe | None) -> bool:
    """Queue a known configuration once; False if the study already has it."""
    key = arch.key()
    if any(t.user_attrs.get("fixed_key") == key for t in study.get_trials(deepcopy=False)):
        return False
    study.enqueue_trial({}, user_attrs={"fixed_arch": arch.to_dict(), "fixed_key": key,
                                        "fixed_recipe": recipe.to_dict() if recipe else {}})
    return True


def run_search(settings: SearchSettings, study: optuna.Study,
               on_progress: Callable[[optuna.Study], None] | None = None) -> int:
    """Bring the study to `settings.trials` complete-or-pruned trials. Returns trials added."""
    deadline = time.time() + settings.timeout if settings.timeout else None
    before = finished(study)
    remaining = settings.trials - before
    if remaining <= 0:
        return 0
    callback = (lambda st, ft: on_progress(st)) if on_progress else None
    data = _load_data(settings)
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    if waiting or settings.jobs == 1:
        # Enqueued trials run here, before any parallel worker could race for them.
        set_threads(settings.threads)
        first = remaining if settings.jobs == 1 else min(waiting, remaining)
        run_worker(settings, first, 0, callback, data, deadline)
        remaining = settings.trials - finished(study)
    if settings.jobs > 1 and remaining > 0:
        _run_parallel(settings, study, remaining, deadline, on_progress)
    return finished(study) - before


def _run_parallel(settings, study, remaining, deadline, on_progress) -> None:
    cores = len(os.sched_getaffinity(0))
    per_worker = settings.threads or max(1, cores // settings.jobs)
    worker_settings = SearchSettings(**{**asdict(settings), "threads": per_worker})
    shares = [remaining // settings.jobs + (i < remaining % settings.jobs)
              for i in range(settings.jobs)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(worker_settings, share, i + 1, deadline))
             for i, share in enumerate(shares) if share]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(POLL_S)
            if on_progress:
                on_progress(study)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()  # SIGTERM: the worker ends its trial as FAIL
        for p in procs:
            p.join()
        raise
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        raise SearchError(f"{len(bad)} worker(s) exited with an error (codes {bad})")
