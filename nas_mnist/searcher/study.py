"""Run or resume a study: pre-flight checks, creation and resume checks, queued trials.

By default a study maximises the last-N score with the parameter budget as a hard constraint
(`objectives="score"`); `objectives="score,params"` also minimises parameters, so the front is
sampled on purpose. The trial is in `objective`, stopping rules in `stopping`, the processes
in `workers`, interrupted trials in `recovery`.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from dataclasses import replace
from typing import Callable

import optuna

from nas_mnist._version import __version__
from nas_mnist.engine.data import Dataset
from nas_mnist.engine.device import set_threads
from nas_mnist.errors import NasMnistError
from nas_mnist.searcher import record
from nas_mnist.searcher.record import METRIC_NAMES, OBJECTIVES, StudyMeta
from nas_mnist.searcher.recovery import requeue_interrupted
from nas_mnist.searcher.settings import SearchError, SearchSettings, SettingsError  # noqa: F401
from nas_mnist.searcher.replay import params_of
from nas_mnist.searcher.space import SearchSpace
from nas_mnist.searcher.sampling import smallest_arch
from nas_mnist.searcher.storage import StorageError, open_storage
from nas_mnist.searcher.workers import (load_search_data, n_trained, run_parallel,  # noqa: F401
                                      run_worker, waiting)
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.limits import Limits
from nas_mnist.spec.recipe import Recipe


def stored_meta(name: str, url: str) -> StudyMeta | None:
    """The meta of an existing nas-mnist study, or None (no such storage or study). Creates
    nothing: a SQLite file that does not exist is not opened."""
    from nas_mnist.searcher.storage import sqlite_path
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return None
    if url.startswith("journal:") and not Path(url.removeprefix("journal:")).is_file():
        return None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        storage = open_storage(url, create=False, read_only=True)
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
    return StudyMeta.from_study(study)


def preflight(settings: SearchSettings) -> SearchSpace:
    """Checks that need no storage: the space, its smallest network, the stopping rule."""
    if settings.value.objectives not in OBJECTIVES:
        raise SettingsError(f"objectives must be one of {', '.join(OBJECTIVES)}, "
                          f"got {settings.value.objectives!r}")
    settings.rule()
    space = settings.value.search_space()
    smallest, what = least_network(settings, space)
    if smallest.n_params() > settings.value.budget:
        raise SettingsError(f"budget {settings.value.budget:,} is below {what} "
                            f"({smallest.n_params():,} parameters)")
    floor = settings.value.resolved_min_params
    if not (isinstance(floor, int) and 0 <= floor <= settings.value.budget):
        raise SettingsError(f"min_params must be an integer in [0, budget {settings.value.budget:,}],"
                            f" got {floor!r}")
    if settings.value.arch is not None and smallest.n_params() < floor:
        raise SettingsError(f"min_params {floor:,} is above {what} ({smallest.n_params():,} "
                            f"parameters)")
    if floor and settings.value.objectives != "score":
        raise SettingsError("min_params (a size floor) needs objectives='score': a "
                            "two-objective study samples the small end of the front on purpose")
    cap = settings.value.resolved_max_activations
    if not (isinstance(cap, int) and cap >= 0):
        raise SettingsError(f"max_activations must be an integer >= 0 (0: no limit), got {cap!r}")
    if cap:
        from nas_mnist.spec.footprint import footprint
        least = footprint(smallest).activations
        if least > cap:
            raise SettingsError(f"max_activations {cap:,} is below the activations of "
                                f"{what} ({least:,})")
    if settings.value.max_ram is not None:
        from nas_mnist.spec.footprint import footprint
        ram = settings.value.max_ram
        if not isinstance(ram, int) or isinstance(ram, bool) or ram < 1:
            raise SettingsError(f"max_ram must be an integer number of bytes >= 1, got {ram!r}")
        least = footprint(smallest).peak_int8_bytes
        if least > ram:
            raise SettingsError(f"max_ram {ram:,} B is below the peak activation memory of "
                                f"{what} ({least:,} B "
                                f"at int8)")
    if settings.value.max_macs is not None:
        from nas_mnist.engine.builder import build_model
        from nas_mnist.engine.counting import count_macs
        from nas_mnist.engine.evaluate import in_shape
        macs = count_macs(build_model(smallest), in_shape(smallest))
        if macs > settings.value.max_macs:
            raise SettingsError(f"max_macs {settings.value.max_macs:,} is below the MACs of "
                                f"{what} ({macs:,})")
    if settings.value.arch is None:
        _check_reachable(settings, space)
    return space


REACH_DRAWS = 300  # uniform draws that must hold one trainable network


def _check_reachable(settings: SearchSettings, space: SearchSpace) -> None:
    """Refuse, before a study exists, a budget the space cannot fill: no uniform draw is
    trainable under the limits (a budget far above the widths' reach leaves every network
    under the size floor). The message names the range of sizes the space draws."""
    from nas_mnist.searcher.sampling import sample_sizes
    value = settings.value
    limits = Limits(value.budget, value.resolved_min_params, None,
                    value.resolved_max_activations, value.max_ram)
    sizes, trainable = sample_sizes(space, judge=limits.kind_of, samples=REACH_DRAWS)
    if trainable or not sizes:
        return
    raise SettingsError(
        f"budget {value.budget:,}: none of {REACH_DRAWS} uniform draws of space {space.name!r} "
        f"(widths x{space.width_scale:g}) is trainable under the limits (size floor "
        f"{limits.min_params:,}); its networks range from {min(sizes):,} to {max(sizes):,} "
        f"parameters here")


def least_network(settings: SearchSettings, space: SearchSpace) -> tuple[ArchConfig, str]:
    """The network every limit must admit, and its name: a recipe study's fixed architecture,
    else the space's smallest network."""
    if settings.value.arch is None:
        if not space.samples_arch:
            raise SettingsError(f"space {space.name!r} searches only the recipe: give the "
                                f"architecture to train (arch, --arch FILE)")
        return smallest_arch(space), f"the smallest network of space {space.name!r}"
    if not isinstance(settings.value.arch, dict):
        raise SettingsError(f"arch must be an architecture (a dict), got "
                            f"{type(settings.value.arch).__name__}")
    try:
        return ArchConfig.from_dict(settings.value.arch), "the fixed architecture"
    except (NasMnistError, TypeError, ValueError) as err:
        raise SettingsError(f"arch: {err}") from None


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
            study.set_metric_names(METRIC_NAMES[settings.value.objectives])  # the dashboard's labels
        meta.save(study)
        return study, []
    differ = stored.differences(meta)
    if differ:
        raise StorageError(f"study {settings.study!r} was created with other settings: "
                           + "; ".join(differ) + _space_hint(stored, meta)
                           + "; pick another name with --study")
    notes = []
    if stored.rule and stored.rule != meta.rule:
        notes.append(f"stopping rule changed from {stored.rule} to {meta.rule} "
                     f"(allowed: it changes no stored result)")
    replace(stored.filled_from(meta), rule=meta.rule, version=__version__).save(study)
    notes += [f"trial {n} was interrupted: its configuration runs again first"
              for n in requeue_interrupted(study)]
    return study, notes


def _space_hint(stored: StudyMeta, meta: StudyMeta) -> str:
    """Name the packaged space a study was made with when only the space differs (studies made
    before the focused default used the space now called `wide`)."""
    if stored.space_digest == meta.space_digest:
        return ""
    from nas_mnist.searcher.space import packaged_space_with
    name = packaged_space_with(stored.space_digest)
    return (f" (it was made with the space now packaged as {name!r}: --space {name})"
            if name else "")


def _known_configs(sources, study_name: str) -> list:
    """The configurations of every warm-start source: "auto" is the packaged prior plus the
    local studies/ folder (this study left out), anything else a prior file."""
    from nas_mnist.searcher.prior import PACKAGED_PRIOR, load_prior, local_configs
    from nas_mnist.searcher.storage import STUDIES_DIR
    configs = []
    for source in sources:
        if source != "auto":
            configs += load_prior(source).configs
            continue
        configs += load_prior(PACKAGED_PRIOR).configs
        if STUDIES_DIR.is_dir():
            configs += local_configs(STUDIES_DIR, exclude=study_name)
    return configs


def warm_start(study: optuna.Study, settings: SearchSettings, space: SearchSpace,
               meta: StudyMeta) -> list[str]:
    """Enqueue the best few known configurations that fit this study (`settings.run.warm_start`:
    "auto" = the packaged prior plus the local studies/ folder, "none", or prior files).
    Returns one line per configuration or skipped source, for the user."""
    from nas_mnist.searcher.prior import PACKAGED_PRIOR, load_prior, pick_warm
    from nas_mnist.searcher.reuse import enter_known, why_not_reusable
    sources = settings.run.warm_start
    if not sources or tuple(sources) == ("none",):
        return []
    if meta.arch is not None:
        return ["warm start: none (a recipe study: the architecture is fixed; its file's own "
                "recipe, if it has one, runs first)"]
    trained = sum(r.trained for r in record.records(study))
    if "auto" in sources and trained:
        return [f"warm start: none (auto warm-starts a new study; this one has {trained} "
                f"trained networks)"]
    configs, notes = _known_configs(sources, settings.study), []
    picked, skipped = pick_warm(configs, Limits.of(meta), data_checksum=meta.data_checksum,
                                macs_of=_macs_of)
    picked = [_reusable_twin(c, configs, meta) for c in picked]
    notes += [f"warm start: {line}" for line in skipped]
    if not picked:
        notes.append(f"warm start ({', '.join(sources)}): no known configuration fits this study "
                     f"(data sha256 {str(meta.data_checksum)[:12]}, budget {meta.budget:,}); "
                     f"a cold start")
    curves = {(k.study, k.trial): k.accs for k in load_prior(PACKAGED_PRIOR).curves}
    reused = set()
    for c in picked:  # first the known results that need no training (nothing queued yet)
        if (why_not_reusable(c, meta) is None and not settings.run.retrain_known
                and not _has(study, c.arch)):
            number = enter_known(study, c, space, meta,
                                 accs=curves.get((c.study, c.trial), ()))
            if number is not None:
                reused.add(id(c))
                notes.append(f"warm start: trial {number} is {c.provenance()}, "
                             f"{c.params:,} parameters, reused: its stored runs (measured on "
                             f"{c.measured or 'an unrecorded device'}) enter the study, not "
                             f"trained again (--retrain-known trains them)")
    for c in picked:
        if id(c) in reused:
            continue
        why = why_not_reusable(c, meta)
        how = enqueue_config(study, c.arch, c.recipe, space, warm=c.provenance(),
                             warm_seeds=len(c.seeds))
        if how is None:
            continue  # already in the study (a resume)
        notes.append(f"warm start: enqueued {c.provenance()}, {c.params:,} parameters"
                     + ("" if how == "sampled" else
                        f" (a fixed configuration: space {space.name} cannot express it)")
                     + (f"; trained again: {why}" if why and len(c.seeds) > 1 else ""))
    return notes


def _reusable_twin(c, configs, meta: StudyMeta):
    """`c`, or - when its runs must be measured again (another trainer) - the best-ranked run
    of the same network (same recipe too) whose runs this study can reuse: mnist-10k-v3's
    trial 33 (torch's dropout mask, 5 seeds) was re-run by mnist-10k-v4 as its trial 0 with
    today's trainer (3 seeds), and taking those saves training it a third time."""
    from nas_mnist.searcher.prior import PriorConfig
    from nas_mnist.searcher.reuse import why_not_reusable
    if why_not_reusable(c, meta) is None:
        return c
    key = c.arch.key()
    twins = sorted((t for t in configs if t.arch.key() == key
                    and t.data_checksum == c.data_checksum
                    and t.recipe.same_training(c.recipe)
                    and why_not_reusable(t, meta) is None), key=PriorConfig.rank_key)
    return twins[0] if twins else c


def _has(study: optuna.Study, arch: ArchConfig) -> bool:
    key = arch.key()
    return any(r.fixed_key == key or (r.arch is not None and _key_of(r.arch) == key)
               for r in record.records(study))


def _macs_of(arch: ArchConfig) -> int:
    from nas_mnist.engine.builder import build_model
    from nas_mnist.engine.counting import count_macs
    from nas_mnist.engine.evaluate import in_shape
    return count_macs(build_model(arch), in_shape(arch))


def _key_of(arch: dict) -> str | None:
    try:
        return ArchConfig.from_dict(arch).key()
    except NasMnistError:
        return None


def enqueue_config(study: optuna.Study, arch: ArchConfig, recipe: Recipe | None,
                   space: SearchSpace, *, warm: str | None = None,
                   warm_seeds: int | None = None) -> str | None:
    """Queue a known configuration once, labelled `enqueued`. Returns None if the study already
    has it; "sampled" if it is queued as the space's own trial parameters (the sampler learns
    from its result, as from any sample); "fixed" if the space cannot express it (it runs,
    and ranks, but teaches the sampler nothing)."""
    key = arch.key()
    if any(r.fixed_key == key or (r.arch is not None and _key_of(r.arch) == key)
           for r in record.records(study)):
        return None
    recipe = recipe or Recipe()
    precision = space.recipe.get("precision")
    if precision is not None and precision.is_fixed and recipe.precision != precision.fixed:
        # how a recipe runs, not what it is: the space decides (auto: bf16 only where the
        # hardware computes it natively), so a known recipe stays expressible
        recipe = recipe.replace(precision=precision.fixed)
    params = params_of(arch, recipe, space)
    label = {"warm": warm, "warm_seeds": warm_seeds} if warm else {}
    if params is not None:
        study.enqueue_trial(params, user_attrs=record.attrs_of(enqueued=True, fixed_key=key,
                                                               **label))
        return "sampled"
    study.enqueue_trial({}, user_attrs=record.attrs_of(
        enqueued=True, fixed_arch=arch.to_dict(), fixed_key=key, fixed_recipe=recipe.to_dict(),
        **label))
    return "fixed"


def run_search(settings: SearchSettings, study: optuna.Study, *, data: Dataset | None = None,
               on_progress: Callable[[optuna.Study], None] | None = None) -> int:
    """Bring the study to `settings.run.trials` trained networks. Returns networks trained."""
    deadline = time.time() + settings.run.timeout if settings.run.timeout else None
    before = n_trained(study)
    remaining = max(0, settings.run.trials - before)
    if remaining == 0 and not settings.run.confirm_top:
        return 0  # (with confirm_top the workers still confirm the top K)
    on_epoch = (lambda: on_progress(study)) if on_progress else None
    on_trial = (lambda rec: on_progress(study)) if on_progress else None
    if settings.run.jobs == 1:
        data = data if data is not None else load_search_data(settings)
        set_threads(settings.run.threads)
        run_worker(settings, remaining, 0, data=data, deadline=deadline, on_epoch=on_epoch,
                   on_trial=on_trial)
    else:
        # Queued trials (warm start, enqueued, retried) are shared by the workers: taking one
        # is atomic (workers.serialize_queue_pops), so no configuration runs twice.
        run_parallel(settings, study, remaining, deadline, on_progress)
    return n_trained(study) - before
