"""The library face: every command as a function, one keyword per flag, the same defaults.

    import nas_mnist as nm
    study = nm.search(budget=10_000, trials=20)       # nas-mnist search --budget 10000 --trials 20
    study.leaderboard()                               # a table in a notebook
    model = study.best.model()                        # an nn.Module with its weights
    study.export(formats=["onnx"])                    # nas-mnist export --format onnx

Library calls raise `NasMnistError` subclasses whose messages name the parameter; only the
CLI turns them into one line on stderr and an exit code.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from nas_mnist.errors import NasMnistError

if TYPE_CHECKING:  # names for the annotations only: importing nas_mnist stays light
    import numpy as np
    import torch

    from nas_mnist.spec.arch import ArchConfig
    from nas_mnist.spec.recipe import Recipe


class ApiError(NasMnistError, ValueError):
    """A bad argument to a library call; the message names the parameter."""


# -- search ------------------------------------------------------------------------------------

# What a study *is*, for a new one; a resumed or joined study keeps its own (None: unset).
STUDY_DEFAULTS = {"budget": 10_000, "space": "default", "epochs": 15, "objective": "min",
                  "objectives": "score", "val_split": 0, "split_seed": 0}


def search(*, budget: int | None = None, max_macs: int | None = None,
           max_ram: int | None = None,
           min_params: int | None = None, max_activations: int | None = None,
           space: str | None = None, study: str = "default", storage: str | None = None,
           trials: int = 20, timeout: float | None = None, seed: int = 0, sampler: str = "tpe",
           train_seed: int = 0, jobs: int | str = "auto", epochs: int | None = None,
           last_n: int | None = None, objective: str | None = None,
           objectives: str | None = None, prune: str = "asha",
           prune_opt: Sequence[str] | dict = (), enqueue: Sequence[str] = (),
           warm_start: str | Sequence[str] = "auto", artifacts: str | None = None,
           data_dir: str | None = None, val_split: int | None = None,
           split_seed: int | None = None, device: str = "auto", threads: int | None = None,
           confirm_top: int = 0, confirm_seeds: int = 3,
           progress: bool | str = "auto", log: Callable[[str], None] | None = print) -> "Study":
    """Run or resume a study (`nas-mnist search`) and return it.

    What a study is (budget, limits, space, epochs, last-N, objective(s), split and its seed)
    is stored with it: left unset (None), a resumed study, or a worker joining it from another
    machine with only `study` and `storage`, takes the stored values; a new study takes
    STUDY_DEFAULTS (and the size floor and cost limit defaults). A value given that differs
    from the stored one is refused.

    `confirm_top`, `confirm_seeds`: keep the study's top K (by the mean over seeds) trained
    on S training seeds each, inside the search; the study then ranks by that mean.

    `warm_start`: "auto" (the packaged prior and the studies in ./studies on the same data),
    "none" (a cold search) or prior files. `progress`: "auto" (a live block on a terminal, one
    updating bar in a notebook, log lines otherwise), False for none. `log` receives the header
    lines (None: silent)."""
    from nas_mnist.engine.device import auto_jobs, resolve_device
    from nas_mnist.searcher.prior import load_prior
    from nas_mnist.searcher.settings import SearchSettings
    from nas_mnist.searcher.storage import default_artifacts, default_storage
    from nas_mnist.searcher.study import load_search_data, preflight
    say = log or (lambda line: None)
    url = storage or default_storage(study)
    dev = resolve_device(device)
    if jobs == "auto":
        jobs = auto_jobs(dev)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ApiError(f"jobs must be 'auto' or an integer >= 1, got {jobs!r}")
    from nas_mnist.engine.device import check_parallel
    check_parallel(jobs, "jobs")
    if threads is not None:
        check_parallel(threads, "threads")
    warm = (warm_start,) if isinstance(warm_start, (str, Path)) else tuple(warm_start)
    warm = tuple(str(w) for w in warm)
    if not warm or (len(warm) > 1 and ("none" in warm or "auto" in warm)):
        raise ApiError("warm_start takes 'auto', 'none', or prior files (not mixed)")
    given = dict(budget=budget, space=space, epochs=epochs, objective=objective,
                 objectives=objectives, val_split=val_split, split_seed=split_seed,
                 last_n=last_n, max_macs=max_macs, max_ram=max_ram, min_params=min_params,
                 max_activations=max_activations)
    own = _study_own(study, url, given)
    settings = SearchSettings(
        study=study, storage=url, space=own["space"], budget=own["budget"],
        max_macs=own["max_macs"], max_ram=own["max_ram"], min_params=own["min_params"],
        max_activations=own["max_activations"], warm_start=warm,
        epochs=own["epochs"], last_n=own["last_n"], objective=own["objective"],
        objectives=own["objectives"],
        trials=trials, timeout=timeout, seed=seed, sampler=sampler, train_seed=train_seed,
        jobs=jobs, threads=threads, device=device, data_dir=data_dir,
        val_split=own["val_split"], split_seed=own["split_seed"], prune=prune,
        prune_options=_prune_options(prune_opt),
        artifacts=artifacts or default_artifacts(url, study), confirm_top=confirm_top,
        confirm_seeds=confirm_seeds)
    # Everything that can be checked without the storage is checked before touching it.
    space_ = preflight(settings)
    enqueued = [_load_enqueued(path) for path in enqueue]
    for source in warm:
        if source not in ("auto", "none"):
            load_prior(source)  # a missing or malformed file stops here
    data = load_search_data(settings)
    for arch, _ in enqueued:
        data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
    if Path(settings.artifacts).exists() and not Path(settings.artifacts).is_dir():
        raise ApiError(f"artifacts {settings.artifacts} is a file, not a folder")
    return _run(settings, space_, data, enqueued, say, progress)


def _study_own(study: str, url: str, given: dict) -> dict:
    """The study-defining values: those given, else the stored study's, else the defaults."""
    from nas_mnist.searcher.study import stored_meta
    stored = stored_meta(study, url)
    out = dict(given)
    if stored is None:
        for key, value in STUDY_DEFAULTS.items():
            if out[key] is None:
                out[key] = value
        return out
    for key in ("budget", "epochs", "objective", "objectives", "val_split", "last_n",
                "max_macs", "max_ram"):
        if out[key] is None:
            out[key] = getattr(stored, key)
    if out["split_seed"] is None:
        out["split_seed"] = stored.split_seed or 0
    if out["space"] is None:
        out["space"] = _space_of(stored)
    # min_params and max_activations left None are resolved against the stored study later
    return out


def _space_of(stored) -> str:
    """The packaged space file with the stored study's content (digest)."""
    from nas_mnist.searcher.space import packaged_space_with
    name = packaged_space_with(stored.space_digest)
    if name is not None:
        return name
    raise ApiError(f"the study was made with space {stored.space!r} (digest "
                   f"{stored.space_digest}), which is not a packaged space: pass its file as "
                   f"space (--space PATH)")


def _prune_options(opts) -> tuple[tuple[str, str], ...]:
    pairs = opts.items() if isinstance(opts, dict) else [str(o).partition("=")[::2] for o in opts]
    out = []
    for key, value in pairs:
        if not key:
            raise ApiError(f"prune_opt takes KEY=VALUE pairs, got {opts!r}")
        out.append((str(key).strip(), str(value).strip()))
    return tuple(out)


def _load_enqueued(path):
    from nas_mnist.spec.arch import load_arch
    from nas_mnist.spec.recipe import Recipe
    arch, doc = load_arch(path)
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


def _run(settings, space, data, enqueued, say, progress) -> "Study":
    from nas_mnist.engine.data import describe_data
    from nas_mnist.searcher.prior import (PACKAGED_PRIOR, Limits, describe_rung_prior,
                                        load_prior)
    from nas_mnist.searcher.record import StudyMeta
    from nas_mnist.searcher.storage import mask_url, study_lock
    from nas_mnist.searcher.study import (create_or_resume, enqueue_config, n_trained, run_search,
                                        warm_start)
    # Creating or joining, with the warm start and the enqueued configurations, is one step:
    # a second search started in the same second joins the study the first one made.
    with study_lock(settings.storage):
        new = not _study_exists(settings.storage, settings.study)
        study, notes = create_or_resume(settings, space, data)
        meta = StudyMeta.from_study(study)
        notes += warm_start(study, settings, space, meta)
        limits = Limits(meta.budget, meta.min_params, meta.max_macs, meta.max_activations,
                        meta.max_ram)
        for arch, recipe in enqueued:
            how = enqueue_config(study, arch, recipe, space)
            notes.append({None: f"already in the study, not enqueued again: {arch.describe()}",
                          "sampled": f"enqueued {arch.describe()} as a sample of space "
                                     f"{space.name} (the sampler learns from its result)",
                          "fixed": f"enqueued {arch.describe()} as a fixed configuration: "
                                   f"space {space.name} cannot express it, so the sampler "
                                   f"learns nothing from it"}[how])
            refusal = limits.refusal(arch)
            if refusal and how:
                notes.append(f"{arch.describe()} is {refusal}: it will be refused, not trained")
    kind = "score" if meta.objectives == "score" else "score and parameters"
    say(f"study {settings.study!r} at {mask_url(settings.storage)} "
        f"({'new' if new else 'resumed'}, {kind}): budget {settings.budget:,}"
        + (f" parameters and {meta.max_macs:,} MACs" if meta.max_macs else "") + ", "
        f"space {space.name}, score = {meta.objective} of the last {meta.last_n} of "
        f"{meta.epochs} epochs on {meta.eval_split}, {describe_data(data)}")
    say("limits: " + ", ".join(
        [f"size floor {meta.min_params:,} parameters" if meta.min_params else "no size floor",
         f"at most {meta.max_activations:,} activations per image" if meta.max_activations
         else "no activation limit"]
        + ([f"peak RAM at most {meta.max_ram:,} B at int8"] if meta.max_ram else []))
        + " (refused before training)")
    cost = _calibrate(settings, data, space)
    say(f"cost model: {cost.describe()}")
    say(f"stopping rule {meta.rule}; {settings.jobs} worker(s); "
        f"{n_trained(study)} of {settings.trials} networks trained so far")
    if meta.rule and meta.rule.startswith("asha") and meta.objectives == "score" \
            and "prior=0" not in meta.rule:
        say("rungs: " + describe_rung_prior(load_prior(PACKAGED_PRIOR),
                                            data_checksum=meta.data_checksum,
                                            epochs=meta.epochs, budget=meta.budget))
    for note in notes:
        say(note)
    display = _progress(progress, meta, settings, cost)
    try:
        run_search(settings, study, data=data,
                   on_progress=display.update if display is not None else None)
    finally:
        if display is not None:
            display.update(study)
            display.close()
    return Study(study, settings.storage)


def _progress(progress, meta, settings, cost):
    from nas_mnist.results.progress import LiveProgress, NotebookProgress, in_notebook
    if progress is False or progress is None:
        return None
    deadline = time.time() + settings.timeout if settings.timeout else None
    if progress == "auto" and in_notebook():
        return NotebookProgress(meta, trials=settings.trials)
    return LiveProgress(sys.stderr, meta, trials=settings.trials, jobs=settings.jobs,
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
    torch.set_num_threads(settings.threads or max(1, cpu_cores() // settings.jobs))
    try:
        return calibrate(device, n_train=len(data.train_x), n_eval=len(data.eval_x),
                         bf16=resolve_precision(precision, device) == "bf16")
    finally:
        torch.set_num_threads(before)


# -- a study, its winners ------------------------------------------------------------------------

def load_study(study: str, storage: str | None = None) -> "Study":
    """Open a stored study (read-only), e.g. to rank, plot or export it."""
    from nas_mnist.searcher.storage import default_storage, load_study as open_study
    url = storage or default_storage(study)
    return Study(open_study(study, url), url)


@dataclass
class Winner:
    """One trained network of a study: its config, recipe, score and sizes."""

    study: str
    trial: int
    arch: "ArchConfig"
    recipe: "Recipe"
    score: float
    n_params: int
    macs: int
    activations: int
    peak_ram_int8: int
    origin: str | None = None  # "warm", "enqueued" or None (found by the sampler)
    storage: str = ""
    weights: str | None = field(default=None, repr=False)  # artifact id
    normalisation: tuple[float, float] | None = field(default=None, repr=False)

    def model(self, artifacts: str | None = None):
        """The network as an `nn.Module` with the weights the search stored (input: raw [0, 1]
        images, N x 1 x 28 x 28; output: logits), in eval mode."""
        from nas_mnist.results.deploy import deployable
        from nas_mnist.searcher.storage import default_artifacts
        folder = Path(artifacts or default_artifacts(self.storage, self.study))
        if not self.weights or not (folder / self.weights).is_file():
            raise ApiError(f"trial {self.trial} of study {self.study!r} kept no weights in "
                           f"{folder}: study.export(trial={self.trial}) re-trains it")
        mean, std = self.normalisation
        return deployable(self.arch, folder / self.weights, mean, std)


def _winner(study, meta, r, url: str) -> Winner:
    from nas_mnist.spec.arch import ArchConfig
    from nas_mnist.spec.footprint import footprint
    from nas_mnist.spec.recipe import Recipe
    arch = ArchConfig.from_dict(r.arch)
    f = footprint(arch)
    return Winner(study.study_name, r.number, arch, Recipe.from_dict(r.recipe or {}),
                  r.mean_score,
                  r.n_params, r.macs or 0, f.activations, f.peak, r.origin, url, r.weights,
                  (r.data_mean or meta.data_mean, r.data_std or meta.data_std))


class Leaderboard(list):
    """Leaderboard rows (results.ranking.Row) that show as a table in a notebook."""

    label = "score %"

    @property
    def confirmed(self) -> bool:
        """Whether any row is a mean over several training seeds (then seeds and worst show)."""
        return any(r.seeds > 1 for r in self)

    def _repr_html_(self) -> str:
        seeds = ("seeds", "worst %") if self.confirmed else ()
        head = "".join(f"<th>{h}</th>" for h in ("rank", "trial", "params", "MACs",
                                                 "activations", "peak RAM B (int8)",
                                                 self.label, *seeds, "architecture"))
        body = "".join(
            f"<tr><td>{r.rank}</td><td>{r.trial_label}</td><td>{r.n_params:,}</td>"
            f"<td>{r.macs:,}</td><td>{r.activations:,}</td><td>{r.peak:,}</td>"
            f"<td>{r.score:.2f}</td>"
            + (f"<td>{r.seeds}</td><td>{r.worst:.2f}</td>" if self.confirmed else "")
            + f"<td><code>{r.describe}</code></td></tr>" for r in self)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        w = max(5, *(len(r.trial_label) for r in self)) if self else 5
        seeds = f" {'seeds':>5} {'worst':>6}" if self.confirmed else ""
        s = max(19, len(self.label))
        lines = [f"{'rank':>4} {'trial':>{w}} {'params':>7} {'MACs':>10} {'act.':>8} "
                 f"{'RAM B':>7} {self.label:>{s}}{seeds}  architecture"]
        lines += [f"{r.rank:>4} {r.trial_label:>{w}} {r.n_params:>7,} {r.macs:>10,} "
                  f"{r.activations:>8,} {r.peak:>7,} {r.score:>{s}.2f}"
                  + (f" {r.seeds:>5} {r.worst:>6.2f}" if self.confirmed else "")
                  + f"  {r.describe}" for r in self]
        return "\n".join(lines)


class Study:
    """A nas-mnist study: ranked, plotted and exported from what its storage holds."""

    def __init__(self, optuna_study, storage: str):
        from nas_mnist.results.ranking import study_meta
        self.optuna = optuna_study
        self.name = optuna_study.study_name
        self.storage = storage
        self.meta = study_meta(optuna_study)

    def __repr__(self) -> str:
        return f"<nas_mnist.Study {self.name!r}: {len(self.optuna.trials)} trials, budget " \
               f"{self.meta.budget:,}>"

    @property
    def best(self) -> Winner:
        """The best feasible complete trial (highest score; ties: fewer parameters)."""
        from nas_mnist.results.ranking import feasible
        ranked = feasible(self.optuna)
        if not ranked:
            raise ApiError(f"study {self.name!r} has no complete feasible trial yet")
        return _winner(self.optuna, self.meta, ranked[0], self.storage)

    def leaderboard(self, k: int = 10) -> Leaderboard:
        from nas_mnist.results.ranking import leaderboard
        rows = Leaderboard(leaderboard(self.optuna, k))
        rows.label = self.meta.label
        if rows.confirmed:  # a mean over seeds: 'mean min-last-3 test %'
            rows.label = "mean " + rows.label
        return rows

    def pareto(self, cost: str = "params") -> list[Winner]:
        """Trials no other beats on both score and `cost` ("params", "macs" or "ram": peak
        RAM at int8), cheapest first."""
        from nas_mnist.results.ranking import feasible, pareto_front
        key = _cost_key(cost)
        return [_winner(self.optuna, self.meta, r, self.storage)
                for r in pareto_front(feasible(self.optuna), key)]

    def trials_dataframe(self):
        """One row per trial (pandas, which nas-mnist does not require: `pip install pandas`)."""
        try:
            import pandas as pd
        except ImportError:
            raise ApiError("trials_dataframe needs pandas: pip install pandas") from None
        from nas_mnist.searcher.record import records
        from nas_mnist.spec.arch import ArchConfig
        rows = []
        for r in records(self.optuna):
            rows.append({"trial": r.number, "kind": r.kind, "score": r.value,
                         "params": r.n_params, "macs": r.macs, "activations": r.activations,
                         "peak_ram_int8": r.peak, "epochs": len(r.accs), "seconds": r.seconds,
                         "origin": r.origin,
                         "architecture": ArchConfig.from_dict(r.arch).describe() if r.arch
                         else None,
                         **{f"recipe.{k}": v for k, v in (r.recipe or {}).items()}})
        return pd.DataFrame(rows).set_index("trial")

    def pareto_plot(self, cost: str = "params"):
        """Accuracy against `cost` ("params", "macs" or "ram"), a plotly Figure."""
        from nas_mnist.results.report import pareto_figure
        return pareto_figure(self.optuna, _cost_key(cost))

    def curves_plot(self, top_k: int = 5):
        from nas_mnist.results.report import curves_figure
        return curves_figure(self.optuna, top_k)

    def history_plot(self):
        from nas_mnist.results.report import best_over_time_figure
        return best_over_time_figure(self.optuna)

    def export(self, out: str | None = None, *, formats: Sequence[str] = (),
               trial: int | None = None, pareto: bool = False, artifacts: str | None = None,
               data_dir: str | None = None, device: str = "auto", threads: int | None = None,
               calibration_images: int = 1024,
               log: Callable[[str], None] | None = print) -> list[Path]:
        """Winner files (JSON, weights, optional ONNX / int8 ONNX / TorchScript), as
        `nas-mnist export`."""
        return export(study=self.name, storage=self.storage, out=out, format=formats,
                      trial=trial, pareto=pareto, artifacts=artifacts, data_dir=data_dir,
                      device=device, threads=threads, calibration_images=calibration_images,
                      log=log)

    def report(self, out: str | None = None, *, top: int = 10, png: bool = True) -> list[Path]:
        """Plots and the Markdown summary, as `nas-mnist report` (without --seeds)."""
        return report(study=self.name, storage=self.storage, out=out, top=top, no_png=not png)

    def _repr_html_(self) -> str:
        from html import escape
        head = (f"<p><b>study {escape(self.name)}</b>: budget {self.meta.budget:,}, space "
                f"{escape(self.meta.space)}, {len(self.optuna.trials)} trials</p>")
        return head + self.leaderboard()._repr_html_()


def _cost_key(cost: str) -> str:
    key = {"params": "n_params", "macs": "macs", "ram": "peak"}.get(cost)
    if key is None:
        raise ApiError(f"cost must be 'params', 'macs' or 'ram', got {cost!r}")
    return key


# -- the other commands ------------------------------------------------------------------------

def count(config) -> dict:
    """Parameters, MACs, activations and peak activation memory of an architecture file, dict
    or ArchConfig (`nas-mnist count`), with the per-layer table."""
    from nas_mnist.engine.builder import build_model
    from nas_mnist.engine.counting import count_macs, count_params, layer_table
    from nas_mnist.engine.evaluate import in_shape
    from nas_mnist.spec.footprint import footprint
    arch = _arch_of(config)
    model = build_model(arch)
    f = footprint(arch)
    return {"params": count_params(model), "macs": count_macs(model, in_shape(arch)),
            "activations": f.activations, "peak_ram_int8": f.peak_int8_bytes,
            "peak_ram_fp32": f.peak_fp32_bytes, "arch": arch.describe(),
            "layers": [r.__dict__ for r in layer_table(model, in_shape(arch))]}


def _arch_of(config):
    from nas_mnist.spec.arch import ArchConfig, load_arch
    if isinstance(config, ArchConfig):
        return config
    if isinstance(config, dict):
        return ArchConfig.from_dict(config.get("arch", config))
    return load_arch(config)[0]


@dataclass
class TrainPlan:
    """What `train` is about to do, for a caller that shows it first (the CLI's header)."""

    arch: "ArchConfig"
    recipe: "Recipe"
    seed: int
    data: object  # engine.data.Dataset
    device: object  # torch.device


BENCH_CONFIGS = ("trial52", "trial81", "ref8k")  # packaged: nas_mnist/configs/NAME.json


def bench(configs: Sequence[str] | None = None, *, steps: int = 20, rounds: int = 5,
          notebook_steps: int = 30, precision: str | None = "auto",
          dropout_kind: str | None = None, parallel: int = 0, data_dir: str | None = None,
          device: str = "auto", threads: int | None = 1,
          on_network: Callable | None = None) -> list[dict]:
    """Time training of each network, as `nas-mnist bench`: the trainer before and now, the
    convolutions-only skeleton and a notebook pipeline (engine.bench). `configs`: files or
    packaged names (default: trial52, trial81, ref8k). `precision` overrides each file's
    recipe (default auto: bf16 where the CPU computes it natively; None: the file's).
    Returns one dict of figures per network; `on_network(arch)` runs before each."""
    import dataclasses as dc
    import time as _time
    from nas_mnist.engine.bench import run_bench
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.device import resolve_device, set_threads
    from nas_mnist.engine.evaluate import describe_device
    from nas_mnist.spec.arch import load_arch
    from nas_mnist.spec.recipe import Recipe
    for name, value in (("steps", steps), ("rounds", rounds), ("notebook_steps", notebook_steps)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ApiError(f"{name} must be an integer >= 1, got {value!r}")
    if dropout_kind not in (None, "element", "channel"):
        raise ApiError(f"dropout_kind must be element or channel, got {dropout_kind!r}")
    loaded = []
    for config in configs or BENCH_CONFIGS:
        packaged = Path(__file__).resolve().parent / "configs" / f"{config}.json"
        path = str(packaged) if "/" not in config and packaged.exists() else config
        arch, doc = load_arch(path)
        if dropout_kind:
            arch = dc.replace(arch, dropout_kind=dropout_kind)
        loaded.append((config, arch, Recipe.from_dict(doc.get("recipe", {}))
                       .replace(precision=precision)))
    dev = resolve_device(device)
    set_threads(threads)
    data = load_dataset(data_dir).to(dev)
    rows = []
    for config, arch, recipe in loaded:
        if on_network is not None:
            on_network(config, arch)
        figures = run_bench(arch, data, recipe, steps=steps, rounds=rounds,
                            notebook_steps=notebook_steps, parallel_workers=parallel,
                            data_dir=data_dir)
        rows.append({"config": config, "params": arch.n_params(), "batch_size": recipe.batch_size,
                     "dropout": arch.dropout, "dropout_kind": arch.dropout_kind,
                     "device": describe_device(dev), "date": _time.strftime("%Y-%m-%d"),
                     **figures})
    return rows


def train(config, *, epochs: int | None = None, last_n: int | None = None,
          seed: int | None = None, batch_size: int | None = None, precision: str | None = None,
          dropout_rng: str | None = None, eval_precision: str | None = None,
          weights: str | None = None, seeds: int | None = None, jobs: int = 1,
          data_dir: str | None = None, val_split: int = 0, split_seed: int = 0,
          device: str = "auto", threads: int | None = None, on_start: Callable | None = None,
          on_epoch: Callable | None = None, on_step: Callable | None = None,
          on_seed: Callable | None = None) -> dict:
    """Train one architecture file (a winner JSON carries its recipe, seed and threads), as
    `nas-mnist train`; returns the run's summary (what `--json-out` writes).

    `weights`: evaluate those weights on the test set instead (no training). `seeds`: train
    on seeds 0..K-1 (`jobs` at a time) and return the per-seed scores. The callbacks only
    show progress: `on_start(TrainPlan)`, `on_epoch(EpochStats)`, `on_step()`, `on_seed(run)`."""
    import dataclasses as dc
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.device import resolve_device, set_threads
    from nas_mnist.engine.evaluate import evaluate_candidate, evaluate_weights
    from nas_mnist.errors import SpecError
    from nas_mnist.spec.arch import load_arch
    from nas_mnist.spec.recipe import Recipe
    from nas_mnist.spec.score import default_last_n
    if isinstance(config, dict):
        arch, doc = _arch_of(config), config
    else:
        arch, doc = load_arch(config)
    try:
        stored = Recipe.from_dict(doc.get("recipe", {}))
    except SpecError as err:
        raise SpecError(f"{config}: {err}") from None
    epochs = epochs or stored.epochs
    # the file's last-N for the file's epochs; other epochs get the default for their length
    last_n = last_n or (stored.last_n if epochs == stored.epochs else default_last_n(epochs))
    if last_n > epochs:
        raise ApiError(f"last_n {last_n} exceeds the {epochs} training epochs")
    recipe = stored.replace(epochs=epochs, last_n=last_n, batch_size=batch_size,
                            precision=precision, dropout_rng=dropout_rng,
                            eval_precision=eval_precision)
    if seeds:
        if seed is not None or weights:
            raise ApiError("seeds trains new networks on seeds 0..K-1: leave out seed and "
                           "weights")
        return _train_seeds(arch, recipe, seeds, jobs=jobs, data_dir=data_dir,
                            val_split=val_split, split_seed=split_seed, device=device,
                            threads=threads, on_start=on_start, on_seed=on_seed)
    if jobs != 1:
        raise ApiError("jobs needs seeds")
    dev = resolve_device(device)
    set_threads(threads or doc.get("threads"))  # a winner's threads: its CPU numerics
    data = load_dataset(data_dir, val_split=val_split, seed=split_seed).to(dev)
    data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
    if weights:
        norm = doc.get("normalisation") or {}
        if norm.get("mean") is not None and norm.get("std") is not None:
            # the statistics these weights were trained with, not this loader's
            data = dc.replace(data, mean=float(norm["mean"]), std=float(norm["std"]))
        return {**evaluate_weights(arch, data, weights, recipe), "data": data}
    seed = seed if seed is not None else int(doc.get("seed", 0))
    if on_start is not None:
        on_start(TrainPlan(arch, recipe, seed, data, dev))
    run = evaluate_candidate(arch, recipe, data, seed=seed, on_epoch=on_epoch, on_step=on_step)
    return run.summary(data)


def _train_seeds(arch, recipe, seeds: int, *, jobs, data_dir, val_split, split_seed, device,
                 threads, on_start, on_seed) -> dict:
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.device import resolve_device
    from nas_mnist.results.confirm import confirm_seeds
    data = load_dataset(data_dir, val_split=val_split, seed=split_seed)
    data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
    if on_start is not None:
        on_start(TrainPlan(arch, recipe, 0, data, resolve_device(device)))
    run, = confirm_seeds([(None, arch.to_dict(), recipe.to_dict())], seeds,
                         data_dir=data_dir, val_split=val_split, split_seed=split_seed,
                         device=device, jobs=jobs, threads=threads, on_done=on_seed)
    return {**run, "data_checksum": data.checksum}


def export(*, study: str, storage: str | None = None, out: str | None = None,
           format: Sequence[str] = (), trial: int | None = None, pareto: bool = False,
           artifacts: str | None = None, data_dir: str | None = None, device: str = "auto",
           threads: int | None = None, calibration_images: int = 1024,
           log: Callable[[str], None] | None = print) -> list[Path]:
    """Write winner files for the best trial (or `trial`, or the Pareto front), as
    `nas-mnist export`; returns the winner JSON paths. `format`: "onnx", "onnx-int8" (static
    int8, ranges from `calibration_images` training images), "torchscript"."""
    from nas_mnist.results.export import export_trials
    from nas_mnist.searcher.storage import default_artifacts, default_storage, load_study as ls
    url = storage or default_storage(study)
    return export_trials(ls(study, url), url=url, out=out, formats=list(format), trial=trial,
                         pareto=pareto, artifacts=artifacts or default_artifacts(url, study),
                         data_dir=data_dir, device=device, threads=threads,
                         calibration_images=calibration_images,
                         log=log or (lambda line: None))


def report(*, study: str, storage: str | None = None, out: str | None = None,
           top: int = 10, no_png: bool = False, seeds: int | None = None,
           confirm: Sequence[int] = (), confirm_top: int = 1, winner: bool = True,
           reuse: Sequence[str] = (), jobs: int = 1, data_dir: str | None = None,
           device: str = "auto", threads: int | None = None,
           log: Callable[[str], None] | None = None) -> list[Path]:
    """Plots (HTML, PNG where kaleido and a Chromium are present) and the Markdown summary, as
    `nas-mnist report`; returns the files written.

    `seeds=K` re-trains the best `confirm_top` trials (and the `confirm` ones; `winner=False`:
    only those) on seeds 0..K-1 with the study's data and split, `jobs` processes at a time,
    taking runs of exactly the same configuration from the folder's seeds.json or `reuse`
    files instead, and puts the seed table in the summary (seeds.json keeps the runs).
    Without `seeds` an earlier seed table of the folder is kept. `log` gets progress lines."""
    import json
    from nas_mnist.files import write_text
    from nas_mnist.results.export import ExportError
    from nas_mnist.results.ranking import feasible
    from nas_mnist.results.report import write_report
    from nas_mnist.results.seeds import check_choice, earlier_seed_runs, report_seed_runs
    from nas_mnist.searcher.storage import default_storage, load_study as ls
    say = log or (lambda line: None)
    confirm, reuse = list(confirm), list(reuse)
    check_choice(seeds=seeds, confirm=confirm, confirm_top=confirm_top, winner=winner,
                 reuse=reuse, jobs=jobs)
    folder = Path(out) if out else Path("studies") / f"{study}-report"
    if folder.exists() and not folder.is_dir():
        raise ApiError(f"out {folder} is a file, not a folder")
    url = storage or default_storage(study)
    opened = ls(study, url)
    if not feasible(opened):
        raise ExportError(f"study {study!r} has no complete feasible trial yet: nothing to "
                          f"report")
    folder.mkdir(parents=True, exist_ok=True)
    if seeds:
        seed_runs, kept = report_seed_runs(
            opened, seeds=seeds, confirm=confirm, confirm_top=confirm_top, winner=winner,
            reuse=reuse, earlier=folder / "seeds.json", jobs=jobs, data_dir=data_dir,
            device=device, threads=threads, log=say)
    else:
        seed_runs, kept = earlier_seed_runs(folder, say), []
    written, png_note = write_report(opened, folder, top=top, png=not no_png,
                                     seed_runs=seed_runs)
    if seed_runs:
        text = json.dumps(seed_runs + kept, indent=2)
        write_text(folder / "seeds.json", text)
    if png_note:
        say(png_note)
    return written


@dataclass
class Prediction:
    names: list[str]  # one per image ("file.png", "images.idx[3]", "array[3]")
    predicted: "np.ndarray"  # class indices
    accuracy: float | None = None  # percent, when labels were given


def predict(model, images, labels=None) -> Prediction:
    """Class predictions of an exported model (.onnx, .torchscript.pt or a winner .json) for
    image files (one IDX file or PNGs) or an array of [0, 1] images, N x 1 x 28 x 28, as
    `nas-mnist predict`; `labels` (an IDX labels file or an array) adds the accuracy."""
    import numpy as np
    from nas_mnist.engine.data import read_idx
    from nas_mnist.results.deploy import load_model, read_images
    loaded = load_model(Path(model))
    if isinstance(images, np.ndarray):
        names = [f"array[{i}]" for i in range(len(images))]
        predicted = loaded.predict(images.astype(np.float32))
    else:
        names, array = read_images([str(p) for p in images])
        predicted = loaded.predict(array)
    accuracy = None
    if labels is not None:
        truth = labels if isinstance(labels, np.ndarray) else read_idx(Path(labels))[0]
        if np.ndim(truth) != 1:
            given = "the array" if isinstance(labels, np.ndarray) else str(labels)
            raise ApiError(f"labels must be one class per image, shape (N,); {given} has "
                           f"shape {np.shape(truth)} (an images file?)")
        if len(truth) != len(predicted):
            raise ApiError(f"labels holds {len(truth):,} labels for {len(predicted):,} images")
        accuracy = 100.0 * int((np.asarray(truth) == predicted).sum()) / len(predicted)
    return Prediction(names, predicted, accuracy)


def load_winner(path) -> "torch.nn.Module":
    """An exported winner JSON (weights beside it) as an `nn.Module` taking raw [0, 1] images."""
    from nas_mnist.results.deploy import DeployError, deployable
    from nas_mnist.spec.arch import load_arch
    path = Path(path)
    arch, doc = load_arch(path)
    weights = path.with_name((doc.get("weights") or {}).get("file", path.stem + ".pt"))
    norm = doc.get("normalisation") or {}
    if norm.get("mean") is None:
        raise DeployError(f"{path} records no normalisation statistics (export it again)")
    return deployable(arch, weights, norm["mean"], norm["std"])
