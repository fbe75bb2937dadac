"""What a trial and a study record, and the only module that knows their Optuna names.

A `TrialRecord` is a plain value read from (or written to) a trial's user attributes; a
`StudyMeta` is what a study was created for and must match on resume. Everything else in
nas-mnist reads and writes these values, never attribute names. The names below are a storage
schema shared with every study on disk: renaming one breaks reading older studies.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from typing import TYPE_CHECKING

from nas_mnist._version import __version__
from nas_mnist.spec.limits import Limits, counts_of_record
from nas_mnist.spec.score import last_n_score

if TYPE_CHECKING:
    from nas_mnist.spec.arch import ArchConfig
    from nas_mnist.spec.recipe import Recipe

META_KEY = "nas_mnist"  # study user attribute holding the StudyMeta
OBJECTIVES = {"score": ("maximize",), "score,params": ("maximize", "minimize"),
              "score,ram": ("maximize", "minimize")}
METRIC_NAMES = {"score": ["score"], "score,params": ["score", "params"],
                "score,ram": ["score", "peak_ram_int8"]}
# The cost a two-objective study minimises: a TrialRecord field (peak = int8 bytes).
COST = {"score,params": "n_params", "score,ram": "peak"}

# TrialRecord field -> user-attribute name (kept from the first studies: "acc", "params", ...)
_ATTR = {
    "arch": "arch", "recipe": "recipe", "seed": "train_seed", "accs": "acc",
    "train_losses": "train_loss", "eval_losses": "eval_loss", "n_params": "params",
    "macs": "macs", "seconds": "seconds", "epoch_seconds": "epoch_seconds",
    "threads": "threads", "device": "device", "eval_split": "eval_split",
    "data_checksum": "data_checksum", "data_mean": "data_mean", "data_std": "data_std",
    "weights": "weights_artifact", "reason": "reason", "error": "error",
    "stopped_by": "stopped_by", "version": "version", "worker": "worker",
    "interrupted": "interrupted", "retry_of": "retry_of", "fixed_arch": "fixed_arch",
    "fixed_recipe": "fixed_recipe", "fixed_key": "fixed_key", "enqueued": "enqueued",
    "activations": "activations", "peak": "peak_ram_int8", "warm": "warm_start",
    "rungs": "rung_decisions", "precision": "precision", "startup": "startup_draw",
    "reused": "reused", "warm_seeds": "warm_seeds", "duplicate_of": "duplicate_of",
}
CONFIRMED_SEEDS = 3  # a configuration with this many training seeds ranks by its mean
REFUSALS = ("over_budget", "under_floor", "over_macs", "over_activations", "over_ram",
            "invalid")


@dataclass(frozen=True)
class TrialRecord:
    number: int = -1
    state: str = "RUNNING"  # Optuna's state name
    value: float | None = None  # the score (first objective), if the trial completed
    arch: dict | None = None
    recipe: dict | None = None
    seed: int = 0
    accs: list[float] = field(default_factory=list)  # percent, per trained epoch
    train_losses: list[float] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    n_params: int | None = None
    macs: int | None = None
    seconds: float | None = None
    threads: int | None = None
    device: str | None = None
    eval_split: str = "test"
    data_checksum: str | None = None
    data_mean: float | None = None
    data_std: float | None = None
    weights: str | None = None  # artifact id of the stored state_dict
    reason: str | None = None  # over_budget, invalid, duplicate, early_stopped (PRUNED trials)
    error: str | None = None
    stopped_by: str | None = None  # e.g. "asha rung 3" for an early stop
    version: str | None = None
    worker: str | None = None  # "host:pid:start" of the process that ran it
    interrupted: bool = False
    retry_of: int | None = None
    fixed_arch: dict | None = None  # an enqueued configuration
    fixed_recipe: dict | None = None
    fixed_key: str | None = None
    startup: bool = False  # a start-up draw, uniform among the trainable (workers.py)
    reused: bool = False  # entered with stored runs, not trained here (searcher/reuse.py)
    duplicate_of: int | None = None  # a draw of a configuration the study had: not trained
    enqueued: bool = False  # seeded with --enqueue or a warm start, not drawn by the sampler
    activations: int | None = None  # per image (spec.footprint)
    peak: int | None = None  # peak live activation elements = int8 bytes (spec.footprint)
    warm: str | None = None  # a warm start's provenance, e.g. "prior mnist-10k-v3#33"
    warm_seeds: int | None = None  # the seeds that provenance measured (None: not recorded)
    rungs: list[dict] = field(default_factory=list)  # the stopping rule's decisions
    precision: str | None = None  # what training ran in (a recipe's "auto" resolved)
    # the score on more training seeds, from the search's own confirmation (seed -> score);
    # kept in the study's attributes, since a finished trial cannot be changed
    more_seeds: dict[int, float] = field(default_factory=dict)

    @property
    def judged(self) -> bool:
        """Whether the stopping rule may stop this trial: not for stored runs entered as they
        are, nor for a warm start confirmed on several seeds (measured to the end for what it
        scored); a warm start known from one seed is judged like any network. (Warm starts
        recorded before their seeds were: never judged, as then.)"""
        if self.reused:
            return False
        return self.warm is None or (self.warm_seeds is not None
                                     and self.warm_seeds < CONFIRMED_SEEDS)

    @cached_property
    def arch_config(self) -> "ArchConfig | None":
        """The architecture as the typed value every reader uses, read once (None: a trial
        that never got one)."""
        from nas_mnist.spec.arch import ArchConfig
        return None if self.arch is None else ArchConfig.from_dict(self.arch)

    @cached_property
    def recipe_config(self) -> "Recipe":
        """The training recipe, read once (an older trial without one: the default recipe)."""
        from nas_mnist.spec.recipe import Recipe
        return Recipe.from_dict(self.recipe or {})

    @property
    def scores(self) -> list[float]:
        """The score on every training seed run: the trial's own, then its confirmations."""
        return ([] if self.value is None else [self.value]) + list(self.more_seeds.values())

    @property
    def mean_score(self) -> float | None:
        """What a study ranks on: the mean over the seeds run (the trial's value alone when it
        was not confirmed)."""
        scores = self.scores
        return sum(scores) / len(scores) if scores else None

    @property
    def worst_score(self) -> float | None:
        return min(self.scores, default=None)

    @property
    def was_enqueued(self) -> bool:
        return self.enqueued or self.fixed_arch is not None  # older studies: fixed ones only

    @property
    def origin(self) -> str | None:
        """'warm' (a warm start), 'enqueued' (--enqueue) or None (drawn by the sampler)."""
        return "warm" if self.warm else ("enqueued" if self.was_enqueued else None)

    @property
    def kind(self) -> str:
        """complete, early_stopped, a refusal (over_budget, invalid, ...), duplicate, failed,
        running or queued (an enqueued trial no worker has taken yet)."""
        if self.state == "COMPLETE":
            return "complete"
        if self.state == "PRUNED":
            return self.reason or "early_stopped"
        if self.state == "RUNNING":
            return "running"
        if self.state == "WAITING":
            return "queued"
        return "failed"

    @property
    def trained(self) -> bool:
        """A network that was trained here (completed or stopped early): counts toward
        --trials. A known network entered with its stored runs was not."""
        return self.kind in ("complete", "early_stopped") and not self.reused

    def score(self, meta: "StudyMeta") -> float:
        return last_n_score(self.accs, meta.last_n, meta.objective)

    @classmethod
    def from_trial(cls, trial) -> "TrialRecord":
        """Read a FrozenTrial (or anything with user_attrs, number, state and values)."""
        attrs = trial.user_attrs
        known = {name: attrs[key] for name, key in _ATTR.items() if key in attrs}
        values = getattr(trial, "values", None)  # a live optuna.Trial has neither
        state = getattr(getattr(trial, "state", None), "name", "RUNNING")
        return cls(number=trial.number, state=state,
                   value=values[0] if values else None, **known)


def attrs_of(**values) -> dict:
    """User attributes for these record fields (unknown field names are a bug: KeyError)."""
    return {_ATTR[name]: value for name, value in values.items()}


def write(trial, **values) -> None:
    """Set record fields on a live Optuna trial."""
    for key, value in attrs_of(**values).items():
        trial.set_user_attr(key, value)


SEEDS_PREFIX = "nas_mnist_seeds:"  # study attribute per confirmed trial: SEEDS_PREFIX + number


def seed_runs(study) -> dict[int, dict]:
    """The search's confirmation runs, by trial number: {"runs": {seed: run}, "claims": ...}."""
    attrs = getattr(study, "user_attrs", None) or {}
    return {int(key.removeprefix(SEEDS_PREFIX)): value for key, value in attrs.items()
            if key.startswith(SEEDS_PREFIX) and isinstance(value, dict)}


def records(study, states=None) -> list[TrialRecord]:
    return records_of(study.get_trials(deepcopy=False, states=states), seed_runs(study))


def records_of(trials, confirmed: dict[int, dict]) -> list[TrialRecord]:
    """The records of these Optuna trials, with the search's confirmation runs."""
    out = [TrialRecord.from_trial(t) for t in trials]
    if not confirmed:
        return out
    return [replace(r, more_seeds={int(seed): run["score"] for seed, run in
                                   sorted(confirmed[r.number].get("runs", {}).items(),
                                          key=lambda item: int(item[0]))})
            if r.number in confirmed else r for r in out]


def feasible(study, meta: "StudyMeta") -> list[TrialRecord]:
    """COMPLETE trials within every limit of the study with a finite score, best first (see
    `rank_feasible`)."""
    from optuna.trial import TrialState
    return rank_feasible(records(study, states=(TrialState.COMPLETE,)), meta)


def rank_feasible(recs, meta: "StudyMeta") -> list[TrialRecord]:
    """The COMPLETE records within every limit of the study with a finite score, best first:
    by the mean over the training seeds run (the trial's own score unless the search confirmed
    it on more seeds); ties: fewer parameters, then the earlier trial."""
    limits = Limits.of(meta)
    ok = [r for r in recs
          if r.state == "COMPLETE" and is_finite(r.value) and r.n_params is not None
          and limits.admits(counts_of_record(r))]
    return sorted(ok, key=lambda r: (-r.mean_score, r.n_params, r.number))


KIND_ORDER = ("complete", "early_stopped", "over_budget", "under_floor", "over_macs",
              "over_activations", "over_ram", "invalid", "duplicate", "failed", "running",
              "queued")
OPEN = ("running", "queued")  # not finished: no outcome yet


def count_kinds(study) -> Counter:
    return Counter(r.kind for r in records(study))


@dataclass(frozen=True)
class StudyMeta:
    """What a study was made for. `check` refuses a resume with other settings."""

    budget: int
    space: str = ""
    space_digest: str = ""
    objective: str = "min"  # min or mean of the last N epochs
    objectives: str = "score"  # "score" or "score,params"
    last_n: int = 3
    epochs: int = 15
    eval_split: str = "test"
    val_split: int = 0
    split_seed: int = 0  # seed of the validation split (an older study: 0, as it drew)
    max_macs: int | None = None
    min_params: int = 0  # size floor of a single-objective study (0: none, as older studies)
    max_activations: int = 0  # cost limit, activations per image (0: none, as older studies)
    max_ram: int | None = None  # peak activation memory at int8, bytes (None: no limit)
    data_checksum: str | None = None
    data_mean: float | None = None
    data_std: float | None = None
    rule: str | None = None  # the stopping rule last used (may change on resume)
    # The trainer every trial of the study runs with (spec.recipe): an older study lacks the
    # keys and keeps torch's dropout and fp32 evaluation, so its trials stay comparable.
    dropout_rng: str = "bernoulli"
    eval_precision: str = "fp32"
    arch: dict | None = None  # a recipe study's fixed architecture (None: sampled)
    # the factor the space's widths were scaled by for this budget (an older study: 1.0)
    width_scale: float = 1.0
    version: str = __version__

    # the space is identified by its content (digest): a renamed file is the same space
    MUST_MATCH = ("budget", "space_digest", "objective", "objectives", "last_n",
                  "epochs", "eval_split", "val_split", "split_seed", "max_macs", "max_ram",
                  "width_scale",
                  "min_params",
                  "max_activations", "data_checksum")

    # A stored None here is "no limit", a value like any other: a resume that adds the limit
    # changes what the study is (its ranking, its winner) and is refused like one that
    # changes it. An older study without the key had no such limit either.
    NONE_IS_A_VALUE = ("max_macs", "max_ram")

    @classmethod
    def from_study(cls, study) -> "StudyMeta | None":
        """The stored meta, or None for a study nas-mnist did not make. Older studies lack
        some keys: their objectives come from the directions, their data from a trial."""
        stored = study.user_attrs.get(META_KEY)
        if stored is None:
            return None
        known = {k: v for k, v in stored.items() if k in {f.name for f in fields(cls)}}
        if "objectives" not in known:
            known["objectives"] = "score" if len(study.directions) == 1 else "score,params"
        if "data_checksum" not in known:  # older studies: each trial recorded its data
            known["data_checksum"] = next(
                (t.user_attrs[_ATTR["data_checksum"]] for t in study.get_trials(deepcopy=False)
                 if _ATTR["data_checksum"] in t.user_attrs), None)
        return cls(**known)

    def save(self, study) -> None:
        study.set_user_attr(META_KEY, asdict(self))

    def differences(self, other: "StudyMeta") -> list[str]:
        """'key stored vs now' for each setting that differs (a key missing in an older
        study is filled in, not a difference)."""
        differ = [f"{k} {_limit_text(getattr(self, k))} (stored) vs "
                  f"{_limit_text(getattr(other, k))} (now)"
                  for k in self.MUST_MATCH
                  if (getattr(self, k) is not None or k in self.NONE_IS_A_VALUE)
                  and getattr(self, k) != getattr(other, k)]
        if arch_key(self.arch) != arch_key(other.arch):  # an older study: sampled (None)
            differ.append(f"arch {_arch_text(self.arch)} (stored) vs {_arch_text(other.arch)} "
                          f"(now)")
        return differ

    def filled_from(self, other: "StudyMeta") -> "StudyMeta":
        """This meta with the keys an older study lacks taken from `other` (never a limit:
        a study stored without one has none, and a resume cannot add one)."""
        return replace(self, **{k: getattr(other, k) for k in ("data_checksum", "data_mean",
                                                                "data_std")
                                if getattr(self, k) is None})

    @property
    def directions(self) -> tuple[str, ...]:
        return OBJECTIVES[self.objectives]

    @property
    def label(self) -> str:
        """Column label of the score, e.g. 'min-last-3 test %'."""
        return f"{self.objective}-last-{self.last_n} {self.eval_split} %"


def trainer_key(meta: "StudyMeta") -> str:
    """The trainer settings that change a curve's numbers, as prior curves record them."""
    return f"{meta.dropout_rng}/{meta.eval_precision}"


def _limit_text(value) -> str:
    return "none" if value is None else repr(value)


def arch_key(arch: dict | None) -> str | None:
    from nas_mnist.spec.arch import ArchConfig
    return None if arch is None else ArchConfig.from_dict(arch).key()


def _arch_text(arch: dict | None) -> str:
    from nas_mnist.spec.arch import ArchConfig
    return "sampled" if arch is None else f"'{ArchConfig.from_dict(arch).describe()}'"


def is_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
