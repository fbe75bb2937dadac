"""What a study holds, ranked: feasible trials, Pareto fronts, leaderboard rows.

Works on both kinds of study (single objective or score + parameters): everything is read
from the trial records, and the front is computed, not taken from Optuna's best trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from nas_mnist.results.view import StudyView, read_meta, view_of
from nas_mnist.searcher.record import StudyMeta, TrialRecord
from nas_mnist.spec.footprint import footprint


@dataclass(frozen=True)
class Row:
    rank: int
    trial: int
    n_params: int
    macs: int
    score: float  # percent, min or mean of the last N epochs on the study's eval split; the
    # mean over the training seeds run when the search confirmed the trial on more seeds
    describe: str
    origin: str | None = None  # "warm" or "enqueued": not found by the sampler
    activations: int = 0  # per image (spec.footprint)
    peak: int = 0  # peak activation RAM at int8, bytes (spec.footprint)
    seeds: int = 1  # training seeds behind `score`
    worst: float | None = None  # the lowest of them

    @property
    def enqueued(self) -> bool:
        return self.origin is not None

    @property
    def trial_label(self) -> str:
        return f"{self.trial} ({self.origin})" if self.origin else str(self.trial)


def study_meta(study: StudyView | optuna.Study) -> StudyMeta:
    """The study's meta; of a live study only the meta is read, not its trials."""
    return study.meta if isinstance(study, StudyView) else read_meta(study)


def feasible(study: StudyView | optuna.Study) -> list[TrialRecord]:
    """COMPLETE trials within the budget (and MACs limit) with a finite score, best first
    (ties: fewer parameters, then the earlier trial)."""
    return view_of(study).feasible


def cost_of(r: TrialRecord, key: str) -> int | None:
    """A trial's n_params, macs, activations or peak; the footprint ones computed from the
    architecture for trials recorded before they were."""
    value = getattr(r, key)
    if value is None and key in ("activations", "peak") and r.arch:
        f = footprint(r.arch_config)
        value = f.activations if key == "activations" else f.peak
    return value


def pareto_front(trials: list[TrialRecord], cost: str = "n_params") -> list[TrialRecord]:
    """Trials that no other beats on both score and `cost` (n_params, macs or peak: int8
    bytes of peak RAM), cheapest first."""
    front, best = [], float("-inf")
    for r in sorted(trials, key=lambda r: (cost_of(r, cost) or 0, -r.value, r.number)):
        if r.value > best:
            front.append(r)
            best = r.value
    return front


def leaderboard(study: StudyView | optuna.Study, k: int = 10) -> list[Row]:
    """The top k by score; a row describes its architecture, or its recipe in a recipe study
    (one architecture)."""
    view = view_of(study)
    recipes = view.meta.arch is not None
    rows = []
    for i, r in enumerate(view.feasible[:k]):
        what = (r.recipe_config.describe() if recipes
                else r.arch_config.describe())
        rows.append(Row(i + 1, r.number, r.n_params, r.macs or 0, r.mean_score, what, r.origin,
                        cost_of(r, "activations"), cost_of(r, "peak"), len(r.scores),
                        r.worst_score))
    return rows
