"""Search settings: what a `search` command asks for, and the errors a search can end in."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from nas_mnist.engine.data import Dataset
from nas_mnist.errors import NasMnistError, SearchError  # noqa: F401 (SearchError: its home before)
from nas_mnist.searcher.defaults import (DEFAULT_MAX_ACTIVATIONS, MIN_PARAMS_FRACTION,
                                         RUN_DEFAULTS as RUN, STUDY_DEFAULTS as STUDY)
from nas_mnist.searcher.record import StudyMeta, arch_key
from nas_mnist.searcher.space import SearchSpace, load_space
from nas_mnist.searcher.stopping import StopRule, make_rule


class SettingsError(NasMnistError):
    """Search settings that cannot work (caught before the storage is touched)."""

    names_keywords = True


def default_min_params(budget: int, objectives: str) -> int:
    """The size floor: 0.4 of the budget in a single-objective study; none in a two-objective
    one (its front should reach the small end)."""
    return int(budget * MIN_PARAMS_FRACTION) if objectives == "score" else 0


def _check_int(name: str, value, low: int, high: int | None = None, *,
               none_ok: bool = False) -> None:
    if none_ok and value is None:
        return
    if (not isinstance(value, int) or isinstance(value, bool) or value < low
            or (high is not None and value > high)):
        wanted = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise SettingsError(f"{name} must be an integer {wanted}"
                            + (" or None" if none_ok else "") + f", got {value!r}")


def _check_choice(name: str, value, choices) -> None:
    if not isinstance(value, str) or value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                            f"got {value!r}")


SAMPLERS = ("tpe", "random")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class StudyValue:
    """What a study *is*: stored with it (as `StudyMeta`), compared whole on resume, and taken
    from the storage by a worker that joins with the study's name alone."""

    space: str = STUDY["space"]
    budget: int = STUDY["budget"]
    max_macs: int | None = None
    max_ram: int | None = None  # peak activation memory at int8 in bytes (None: no limit)
    min_params: int | None = None  # None: default_min_params; 0: no floor
    max_activations: int | None = None  # None: DEFAULT_MAX_ACTIVATIONS; 0: no limit
    epochs: int = STUDY["epochs"]
    last_n: int | None = None  # None: spec.score.default_last_n(epochs) (3 of 15, 1 under 10)
    objective: str = STUDY["objective"]  # min or mean of the last-N accuracies
    objectives: str = STUDY["objectives"]  # "score" (budget as a constraint), "score,params"
    val_split: int = STUDY["val_split"]
    split_seed: int = STUDY["split_seed"]  # draws the validation split: the study's own seed
    arch: dict | None = None  # a recipe study: this architecture, only the recipe searched
    # the space's widths times this (None: what the space gives the budget, dims.WidthScaling)
    width_scale: float | None = None

    def __post_init__(self):
        from nas_mnist.spec.score import default_last_n
        from nas_mnist.searcher.record import OBJECTIVES
        from nas_mnist.spec.score import AGGREGATES
        for name in ("budget", "epochs"):
            _check_int(name, getattr(self, name), 1)
        if not isinstance(self.space, str) or not self.space:
            raise SettingsError(f"space must be a space name or file, got {self.space!r}")
        _check_choice("objective", self.objective, AGGREGATES)
        _check_choice("objectives", self.objectives, tuple(OBJECTIVES))
        for name in ("max_macs", "max_ram"):
            _check_int(name, getattr(self, name), 1, none_ok=True)
        for name in ("min_params", "max_activations", "val_split"):
            _check_int(name, getattr(self, name), 0, none_ok=name != "val_split")
        if self.last_n is None:
            object.__setattr__(self, "last_n", default_last_n(self.epochs))
        if (not isinstance(self.last_n, int) or isinstance(self.last_n, bool)
                or not 1 <= self.last_n <= self.epochs):
            raise SettingsError(f"last_n must be an integer in [1, epochs {self.epochs}], got "
                                f"{self.last_n!r}")
        if self.width_scale is None:
            object.__setattr__(self, "width_scale", 1.0 if self.arch is not None else
                               load_space(self.space).scale_for(self.budget))
        if (isinstance(self.width_scale, bool) or not isinstance(self.width_scale, (int, float))
                or not 0 < self.width_scale < math.inf):
            raise SettingsError(f"width_scale must be a finite number > 0, got "
                                f"{self.width_scale!r}")
        if not isinstance(self.split_seed, int) or not 0 <= self.split_seed < 2**32:
            raise SettingsError(f"split_seed must be an integer in [0, 2**32), got "
                                f"{self.split_seed!r}")

    @classmethod
    def resolve(cls, given: dict, stored: StudyMeta | None) -> "StudyValue":
        """What the study is, resolved once: each value given (None: not given), else the
        stored study's, else the default. A given value that differs from the stored one
        stays given, so `StudyMeta.differences` names it; what an older study did not store
        reads as what it did (`StudyMeta.from_study`)."""
        out = {k: v for k, v in given.items() if k != "width_scale"}
        if stored is None:
            if out.get("arch") is not None:  # a recipe study: of this one network
                from nas_mnist.spec.arch import ArchConfig
                out["space"] = out.get("space") or "recipe"
                if out.get("budget") is None:
                    out["budget"] = ArchConfig.from_dict(out["arch"]).n_params()
            out.update({k: v for k, v in STUDY.items() if out.get(k) is None})
            return cls(**out)
        if out.get("arch") is None:
            out["arch"] = stored.arch
        elif arch_key(out["arch"]) != arch_key(stored.arch):  # before any budget is compared
            raise SettingsError(
                "arch: the stored study is a "
                + (f"recipe study of {_arch_text(stored.arch)}" if stored.arch
                   else "search of sampled architectures")
                + f", not of {_arch_text(out['arch'])}; pick another name with --study")
        for key in ("budget", "epochs", "objective", "objectives", "val_split", "last_n",
                    "max_macs", "max_ram", "split_seed", "min_params", "max_activations"):
            # the floor belongs to the stored objectives: with others asked for, it is left to
            # their default, so the resume check names the objectives, not the floor
            if out.get(key) is None and not (key == "min_params"
                                             and out["objectives"] != stored.objectives):
                out[key] = getattr(stored, key)
        if out.get("space") is None:
            out["space"] = _packaged_space(stored)
        return cls(**out, width_scale=stored.width_scale)  # the study's, whatever the budget

    @property
    def resolved_min_params(self) -> int:
        if self.min_params is None and self.arch is not None:
            return 0  # one network: no floor to steer a sampler by
        return (default_min_params(self.budget, self.objectives) if self.min_params is None
                else self.min_params)

    @property
    def resolved_max_activations(self) -> int:
        """The cost limit: activations grow with the widths, so the default grows with their
        scale (never below the 10,000-parameter default)."""
        if self.max_activations is not None:
            return self.max_activations
        return round(DEFAULT_MAX_ACTIVATIONS * max(1.0, self.width_scale))

    def search_space(self) -> SearchSpace:
        """The study's space: the file's, its widths scaled as the study stores."""
        return load_space(self.space).scaled(self.width_scale)

    def meta(self, space: SearchSpace, data: Dataset, rule: StopRule) -> StudyMeta:
        """The stored form, with what only the run knows: the space's content, the data."""
        return StudyMeta(budget=self.budget, space=space.name, space_digest=space.digest,
                         objective=self.objective, objectives=self.objectives,
                         last_n=self.last_n, epochs=self.epochs, eval_split=data.eval_split,
                         val_split=self.val_split, split_seed=self.split_seed,
                         max_macs=self.max_macs, max_ram=self.max_ram,
                         min_params=self.resolved_min_params,
                         max_activations=self.resolved_max_activations,
                         data_checksum=data.checksum, data_mean=data.mean, data_std=data.std,
                         rule=rule.describe(), dropout_rng="hash", eval_precision="train",
                         arch=self.arch, width_scale=self.width_scale)


def _arch_text(arch: dict) -> str:
    from nas_mnist.spec.arch import ArchConfig
    config = ArchConfig.from_dict(arch)
    return f"'{config.describe()}' ({config.n_params():,} parameters)"


def _packaged_space(stored: StudyMeta) -> str:
    """The packaged space file with the stored study's content (digest)."""
    from nas_mnist.searcher.space import packaged_space_with
    name = packaged_space_with(stored.space_digest)
    if name is None:
        raise SettingsError(f"space: the study was made with space {stored.space!r} (digest "
                            f"{stored.space_digest}), which is not a packaged space: give its "
                            f"file")
    return name


@dataclass(frozen=True)
class RunSettings:
    """How one run of a search goes: chosen anew by every run, never stored as the study's."""

    trials: int = RUN["trials"]  # trained networks wanted in the study (refusals do not count)
    timeout: float | None = None  # seconds
    seed: int = RUN["seed"]  # sampler seed
    sampler: str = RUN["sampler"]  # tpe (constraint-aware, multivariate) or random
    train_seed: int = RUN["train_seed"]
    jobs: int = 1
    threads: int | None = None  # per worker; default: the cores shared out
    device: str = "auto"
    data_dir: str | None = None
    prune: str = RUN["prune"]
    prune_options: tuple[tuple[str, str], ...] = ()
    warm_start: tuple[str, ...] = ("auto",)  # "auto", "none" or prior files
    artifacts: str | None = None  # folder for per-trial weights (None: keep none)
    confirm_top: int = RUN["confirm_top"]  # keep the top K on confirm_seeds seeds (0: off)
    confirm_seeds: int = RUN["confirm_seeds"]  # seeds per confirmed trial, its own included
    # points below the leader's mean past which a top-K trial is not confirmed (None: any)
    confirm_margin: float | None = RUN["confirm_margin"]
    # train warm-started networks again even where their stored runs measure what this study
    # measures (searcher/reuse.py)
    retrain_known: bool = False

    def __post_init__(self):
        from nas_mnist.engine.device import check_parallel
        _check_int("trials", self.trials, 1)
        if not isinstance(self.retrain_known, bool):
            raise SettingsError(f"retrain_known must be true or false, got "
                                f"{self.retrain_known!r}")
        if self.retrain_known and tuple(self.warm_start) == ("none",):
            raise SettingsError("retrain_known re-measures warm-started networks, but "
                                "warm_start is 'none': there are no stored runs to retrain")
        if self.timeout is not None and (
                isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float))
                or not 0 < self.timeout < math.inf):
            raise SettingsError(f"timeout must be a number of seconds > 0 or None, got "
                                f"{self.timeout!r}")
        for name in ("seed", "train_seed"):
            _check_int(name, getattr(self, name), 0, 2**32 - 1)
        _check_choice("sampler", self.sampler, SAMPLERS)
        _check_choice("device", self.device, DEVICES)
        _check_int("jobs", self.jobs, 1)
        _check_int("threads", self.threads, 1, none_ok=True)
        check_parallel(self.jobs, "jobs")
        if self.threads is not None:
            check_parallel(self.threads, "threads")
        for name in ("data_dir", "artifacts"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise SettingsError(f"{name} must be a folder path, got {value!r}")
        _check_int("confirm_top", self.confirm_top, 0, 50)
        _check_int("confirm_seeds", self.confirm_seeds, 0, 10)
        if self.confirm_top and self.confirm_seeds < 2:
            raise SettingsError(f"confirm_top {self.confirm_top} needs confirm_seeds >= 2 (the "
                                f"trial's own seed and at least one more), got "
                                f"{self.confirm_seeds}")
        if self.confirm_margin is not None and (
                isinstance(self.confirm_margin, bool)
                or not isinstance(self.confirm_margin, (int, float))
                or not self.confirm_margin >= 0 or math.isinf(self.confirm_margin)):
            raise SettingsError(f"confirm_margin must be a number of points >= 0 (or None: "
                                f"no margin), got {self.confirm_margin!r}")


@dataclass(frozen=True)
class SearchSettings:
    """A search: which study (name and storage), what it is, and how this run goes."""

    study: str
    storage: str
    value: StudyValue = StudyValue()
    run: RunSettings = RunSettings()

    def __post_init__(self):
        if self.run.confirm_top and self.value.objectives not in (None, "score"):
            raise SettingsError(f"confirm_top needs a single-objective study (objectives "
                                f"'score'), got objectives {self.value.objectives!r}")

    @classmethod
    def of(cls, study: str, storage: str, **settings) -> "SearchSettings":
        """Settings from flat keywords (each a field of StudyValue or RunSettings)."""
        value_keys = {f.name for f in fields(StudyValue)}
        run_keys = {f.name for f in fields(RunSettings)}
        unknown = set(settings) - value_keys - run_keys
        if unknown:
            raise TypeError(f"unknown search setting(s) {sorted(unknown)}")
        return cls(study, storage,
                   StudyValue(**{k: v for k, v in settings.items() if k in value_keys}),
                   RunSettings(**{k: v for k, v in settings.items() if k in run_keys}))

    def with_run(self, **changes) -> "SearchSettings":
        return replace(self, run=replace(self.run, **changes))

    def rule(self) -> StopRule:
        return make_rule(self.run.prune, dict(self.run.prune_options)).fit(self.value.epochs)

    def meta(self, space: SearchSpace, data: Dataset) -> StudyMeta:
        return self.value.meta(space, data, self.rule())
