"""`search`: run or resume a study, as `nas-mnist search`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import nas_mnist.api.checks as checks
from nas_mnist.api.errors import ApiError
from nas_mnist.errors import NasMnistError
from nas_mnist.api.study import Study

from nas_mnist.searcher.defaults import RUN_DEFAULTS as RUN

if TYPE_CHECKING:
    from nas_mnist.spec.arch import ArchConfig


def search(*, budget: int | None = None, max_macs: int | None = None,
           max_ram: int | None = None,
           min_params: int | None = None, max_activations: int | None = None,
           space: str | None = None, study: str = "default", storage: str | None = None,
           trials: int = RUN["trials"], timeout: float | None = None, seed: int = RUN["seed"],
           sampler: str = RUN["sampler"], train_seed: int = RUN["train_seed"],
           jobs: int | str = RUN["jobs"], epochs: int | None = None,
           last_n: int | None = None, objective: str | None = None,
           objectives: str | None = None, prune: str = RUN["prune"],
           prune_opt: Sequence[str] | dict = (), enqueue: Sequence[str] = (),
           warm_start: str | Sequence[str] = RUN["warm_start"], artifacts: str | None = None,
           data_dir: str | None = None, val_split: int | None = None,
           split_seed: int | None = None, device: str = "auto", threads: int | None = None,
           confirm_top: int = RUN["confirm_top"], confirm_seeds: int = RUN["confirm_seeds"],
           confirm_margin: float | None = RUN["confirm_margin"], retrain_known: bool = False,
           arch: str | Path | dict | ArchConfig | None = None, progress: bool | str = "auto",
           log: Callable[[str], None] | None = print) -> "Study":
    """Run or resume a study (`nas-mnist search`) and return it.

    What a study is (budget, limits, space, epochs, last-N, objective(s), split and its seed)
    is stored with it: left unset (None), a resumed study, or a worker joining it from another
    machine with only `study` and `storage`, takes the stored values; a new study takes
    STUDY_DEFAULTS (and the size floor and cost limit defaults). A value given that differs
    from the stored one is refused.

    `confirm_top`, `confirm_seeds`: keep the study's top K (by the mean over seeds) trained
    on S training seeds each, inside the search; the study then ranks by that mean.
    `confirm_margin`: a top-K trial more than this many points below the leader's mean is not
    confirmed (None: every one is).

    `arch`: a recipe study. The architecture of this file (a winner or config JSON, or a
    packaged config's name such as 'trial81') is trained with recipes drawn from the space
    (default: the `recipe` space); the file's own recipe, if it has one, runs first. A new
    recipe study's budget defaults to the network's parameters and it has no size floor.

    `warm_start`: "auto" (the packaged prior and the studies in ./studies on the same data),
    "none" (a cold search) or prior files. A warm-started network whose stored seed runs were
    measured as this study measures (data, split, epochs, last-N, trainer) enters the study
    with them, not trained again; `retrain_known=True` trains it again. `progress`: "auto" (a live block on a terminal, one
    updating bar in a notebook, log lines otherwise), False for none. `log` receives the header
    lines (None: silent)."""
    settings, enqueue = _settings(
        study, storage, arch, enqueue, warm_start, jobs,
        given=dict(budget=budget, space=space, epochs=epochs, objective=objective,
                   objectives=objectives, val_split=val_split, split_seed=split_seed,
                   last_n=last_n, max_macs=max_macs, max_ram=max_ram, min_params=min_params,
                   max_activations=max_activations),
        run=dict(trials=trials, timeout=timeout, seed=seed, sampler=sampler,
                 train_seed=train_seed, threads=threads, device=device,
                 data_dir=checks.path_or_none("data_dir", data_dir), prune=prune,
                 prune_options=_prune_options(prune_opt), confirm_top=confirm_top,
                 confirm_seeds=confirm_seeds, confirm_margin=confirm_margin,
                 retrain_known=retrain_known,
                 artifacts=checks.path_or_none("artifacts", artifacts)))
    space_, data, enqueued = _prepare(settings, enqueue)
    return _run(settings, space_, data, enqueued, log or (lambda line: None), progress)


def _settings(study, storage, arch, enqueue, warm_start, jobs, *, given: dict, run: dict):
    """The search's settings (what the study is resolved against the stored one, how this
    run goes) and what to enqueue, the fixed architecture's own recipe first."""
    from nas_mnist.engine.device import auto_jobs, resolve_device
    from nas_mnist.searcher.settings import RunSettings, SearchSettings, StudyValue
    from nas_mnist.searcher.storage import check_study_name, default_artifacts, default_storage
    from nas_mnist.searcher.study import stored_meta
    check_study_name(study)  # it becomes a file name: checked whatever the storage
    if storage is not None and not isinstance(storage, str):
        raise ApiError(f"storage must be a storage URL, got {storage!r}")
    url = storage or default_storage(study)
    if jobs == "auto":
        jobs = auto_jobs(resolve_device(run["device"]))
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ApiError(f"jobs must be 'auto' or an integer >= 1, got {jobs!r}")
    warm = checks.paths("warm_start", warm_start)
    enqueue = checks.paths("enqueue", enqueue, keep=(tuple,))
    if not warm or (len(warm) > 1 and ("none" in warm or "auto" in warm)):
        raise ApiError("warm_start takes 'auto', 'none', or prior files (not mixed)")
    fixed = _fixed_arch(arch)
    value = StudyValue.resolve({**given, "arch": None if fixed is None else fixed[0].to_dict()},
                               stored_meta(study, url))
    if fixed is not None and fixed[1] is not None:
        enqueue = [fixed, *enqueue]  # the file's own recipe runs first
    run = {**run, "artifacts": run["artifacts"] or default_artifacts(url, study)}
    return SearchSettings(study, url, value, RunSettings(**run, jobs=jobs, warm_start=warm)), \
        enqueue


def _prepare(settings, enqueue):
    """Everything that can be checked without the storage, checked before touching it: the
    space and limits, the enqueued files, the prior files, the data. Returns the space, the
    data and the enqueued (ArchConfig, Recipe) pairs."""
    from nas_mnist.searcher.prior import load_prior
    from nas_mnist.searcher.study import load_search_data, preflight
    space = preflight(settings)
    enqueued = [e if isinstance(e, tuple) else _load_enqueued(e) for e in enqueue]
    _check_recipe_enqueued(settings, enqueue, enqueued)
    for source in settings.run.warm_start:
        if source not in ("auto", "none"):
            load_prior(source)  # a missing or malformed file stops here
    data = load_search_data(settings)
    _check_data_fits(settings, space, data, enqueued)
    if Path(settings.run.artifacts).exists() and not Path(settings.run.artifacts).is_dir():
        raise ApiError(f"artifacts {settings.run.artifacts} is a file, not a folder")
    return space, data, enqueued


def _fixed_arch(arch):
    """(ArchConfig, its file's Recipe or None) for `arch` (a path, a packaged config's name,
    an ArchConfig or its dict), or None."""
    if arch is None:
        return None
    from nas_mnist.spec.arch import ArchConfig
    if isinstance(arch, ArchConfig):
        return arch, None
    if isinstance(arch, dict):
        try:
            return ArchConfig.from_dict(arch), None
        except (NasMnistError, TypeError, ValueError) as err:
            raise ApiError(f"arch: {err}") from None
    if not isinstance(arch, (str, Path)):
        raise ApiError(f"arch must be a config file, an ArchConfig or a dict, got "
                       f"{type(arch).__name__}")
    from nas_mnist.api.network import config_path
    return _load_enqueued(config_path(str(arch)))


def _prune_options(opts) -> tuple[tuple[str, str], ...]:
    if isinstance(opts, dict):
        pairs = list(opts.items())
    else:
        for text in map(str, opts):
            if "=" not in text:
                raise ApiError(f"prune_opt takes KEY=VALUE, got {text!r}")
        pairs = [str(o).partition("=")[::2] for o in opts]
    out = []
    for key, value in pairs:
        if not key:
            raise ApiError(f"prune_opt takes KEY=VALUE pairs, got {opts!r}")
        out.append((str(key).strip(), str(value).strip()))
    return tuple(out)


def _load_enqueued(path):
    """A config file or a packaged config's name (as --arch, train and count take)."""
    from nas_mnist.api.network import config_path
    from nas_mnist.spec.arch import load_arch
    from nas_mnist.spec.recipe import Recipe
    arch, doc = load_arch(config_path(str(path)))
    return arch, Recipe.from_dict(doc["recipe"]) if "recipe" in doc else None


def _study_exists(url: str, name: str) -> bool:
    """Whether `name` is already in the storage (read-only; a missing file is no study)."""
    import optuna
    from nas_mnist.searcher.storage import open_storage, sqlite_path
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return False
    try:
        storage = open_storage(url, create=False, read_only=path is not None)
        return name in optuna.get_all_study_names(storage)
    except NasMnistError:
        return False  # create_or_resume says in one line what is wrong with the storage


def _check_recipe_enqueued(settings, paths, enqueued) -> None:
    """A recipe study trains one architecture: every enqueued file must hold it."""
    if settings.value.arch is None:
        return
    from nas_mnist.spec.arch import ArchConfig
    key = ArchConfig.from_dict(settings.value.arch).key()
    for path, (other, _) in zip(paths, enqueued):
        if other.key() != key:
            raise ApiError(f"enqueue: {path} has another architecture than the recipe "
                           f"study's ({other.describe()})")


def _check_data_fits(settings, space, data, enqueued) -> None:
    """The data against the networks, before any study exists: a label of 10 or 32x32
    images used to create a study, refuse 200 samples one by one and blame the space."""
    from nas_mnist.searcher.study import least_network
    least, what = least_network(settings, space)
    for arch, name in [(least, what)] + [(a, "an enqueued network") for a, _ in enqueued]:
        try:
            data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
        except NasMnistError as err:
            raise ApiError(f"data_dir: {err} ({name} of this search)") from None


def _run(settings, space, data, enqueued, say, progress) -> "Study":
    from nas_mnist.searcher.study import run_search
    study, meta, notes, new = _open(settings, space, data, enqueued)
    cost = _calibrate(settings, data, space)
    for line in _header(settings, space, data, study, meta, new, cost):
        say(line)
    for note in notes:
        say(note)
    display = _progress(progress, meta, settings, cost)
    if display is not None:
        display.update(study)  # what is done already; every trial of this run gets its line
    try:
        run_search(settings, study, data=data,
                   on_progress=display.update if display is not None else None)
    finally:
        if display is not None:
            display.update(study)
            display.close()
    return Study(study, settings.storage)


def _open(settings, space, data, enqueued):
    """Create or join the study, warm-start it and queue the enqueued configurations, as one
    step: a second search started in the same second joins the study the first one made.
    Returns the study, its meta, the notes for the user and whether it is new."""
    from nas_mnist.spec.limits import Limits
    from nas_mnist.searcher.record import StudyMeta
    from nas_mnist.searcher.storage import study_lock
    from nas_mnist.searcher.study import create_or_resume, enqueue_config, warm_start
    with study_lock(settings.storage):
        new = not _study_exists(settings.storage, settings.study)
        study, notes = create_or_resume(settings, space, data)
        meta = StudyMeta.from_study(study)
        notes += warm_start(study, settings, space, meta)
        limits = Limits.of(meta)
        for arch, recipe in enqueued:
            how = enqueue_config(study, arch, recipe, space)
            notes.append({None: f"already in the study, not enqueued again: {arch.describe()}",
                          "sampled": f"enqueued {arch.describe()} as a sample of space "
                                     f"{space.name} (the sampler learns from its result)",
                          "fixed": f"enqueued {arch.describe()} as a fixed configuration: "
                                   f"space {space.name} cannot express it, so the sampler "
                                   f"learns nothing from it"}[how])
            refusal = limits.refusal_of(arch)
            if refusal and how:
                notes.append(f"{arch.describe()} is {refusal}: it will be refused, not trained")
    return study, meta, notes, new


def _header(settings, space, data, study, meta, new, cost) -> list[str]:
    """The lines a search starts with: the study, its limits, its cost model, the rule and
    the rung bars."""
    from nas_mnist.engine.data import describe_data
    from nas_mnist.searcher.prior import PACKAGED_PRIOR, describe_rung_prior, load_prior
    from nas_mnist.searcher.record import trainer_key
    from nas_mnist.searcher.storage import mask_url
    from nas_mnist.searcher.study import n_trained
    kind = "score" if meta.objectives == "score" else "score and parameters"
    if meta.arch is not None:
        from nas_mnist.spec.arch import ArchConfig
        fixed = ArchConfig.from_dict(meta.arch)
        kind += f"; a recipe study of {fixed.describe()}, {fixed.n_params():,} parameters"
    lines = [
        f"study {settings.study!r} at {mask_url(settings.storage)} "
        f"({'new' if new else 'resumed'}, {kind}): budget {settings.value.budget:,}"
        + (f" parameters and {meta.max_macs:,} MACs" if meta.max_macs else "") + ", "
        f"space {space.name}, score = {meta.objective} of the last {meta.last_n} of "
        f"{meta.epochs} epochs on {meta.eval_split}, {describe_data(data)}",
        "limits: " + ", ".join(
            [f"size floor {meta.min_params:,} parameters" if meta.min_params else "no size floor",
             f"at most {meta.max_activations:,} activations per image" if meta.max_activations
             else "no activation limit"]
            + ([f"peak RAM at most {meta.max_ram:,} B at int8"] if meta.max_ram else []))
        + " (refused before training)",
        f"cost model: {cost.describe()}",
        *filter(None, [emulated_bf16_note(space, data.train_x.device)]),
        f"stopping rule {meta.rule}; {settings.run.jobs} worker(s); " + _trained_line(
            n_trained(study), settings.run.trials)]
    if meta.rule and meta.rule.startswith("asha") and meta.objectives == "score" \
            and "prior=0" not in meta.rule:
        lines.append("rungs: " + describe_rung_prior(
            load_prior(PACKAGED_PRIOR).without(settings.study),
            data_checksum=meta.data_checksum, epochs=meta.epochs,
            budget=meta.budget, space_digest=meta.space_digest, trainer=trainer_key(meta)))
    return lines


def emulated_bf16_note(space, device) -> str | None:
    """One line when the space trains in bf16 on a device that only emulates it (an AVX2-only
    CPU: a trial-52 step took 4x as long as in fp32), else None."""
    from nas_mnist.engine.device import native_bf16
    dim = space.recipe.get("precision")
    values = () if dim is None else (dim.fixed,) if dim.is_fixed else dim.choices or ()
    if "bf16" not in values or native_bf16(device):
        return None
    how = "trains in bf16" if values == ("bf16",) else "may sample bf16"
    where = "this CPU emulates (no AVX512-BF16 or AMX)" if device.type == "cpu" else \
        f"{device} emulates"
    return (f"precision: space {space.name} {how}, which {where}: about 4x slower a step than "
            f"fp32; `precision: auto` in the space file trains in fp32 here")


def _trained_line(trained: int, trials: int) -> str:
    if trained < trials:
        return f"{trained} of {trials} networks trained so far"
    return (f"{trained} networks trained so far and {trials} asked for in all (trials), so "
            f"nothing is trained now: ask for more than {trained} trials to go on")


def _progress(progress, meta, settings, cost):
    from nas_mnist.results.progress import LiveProgress, NotebookProgress, in_notebook
    if progress is False or progress is None:
        return None
    deadline = time.time() + settings.run.timeout if settings.run.timeout else None
    if progress == "auto" and in_notebook():
        return NotebookProgress(meta, trials=settings.run.trials)
    return LiveProgress(sys.stderr, meta, trials=settings.run.trials, jobs=settings.run.jobs,
                        deadline=deadline, cost=cost)


def _calibrate(settings, data, space):
    """The cost model, timed with the threads each worker will have, in the precision the
    space's recipe trains in here."""
    import torch
    from nas_mnist.engine.costmodel import calibrate
    from nas_mnist.engine.device import cpu_cores, resolve_precision
    dim = space.recipe.get("precision")
    precision = dim.fixed if dim is not None and dim.is_fixed else "fp32"
    device = data.train_x.device
    before = torch.get_num_threads()
    torch.set_num_threads(settings.run.threads or max(1, cpu_cores() // settings.run.jobs))
    try:
        return calibrate(device, n_train=len(data.train_x), n_eval=len(data.eval_x),
                         bf16=resolve_precision(precision, device) == "bf16")
    finally:
        torch.set_num_threads(before)


