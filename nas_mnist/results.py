"""What a study holds: feasible trials ranked, the Pareto front, the leaderboard rows."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState


@dataclass(frozen=True)
class Row:
    rank: int
    trial: int
    params: int
    macs: int
    score: float  # percent, min or mean of the last N epochs on the study's eval split
    describe: str


def feasible(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials within the budget with a finite score, best first (ties: fewer params)."""
    budget = study.user_attrs.get("nas_mnist", {}).get("budget")
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.values and t.values[0] == t.values[0] and abs(t.values[0]) != float("inf")
              and (budget is None or t.user_attrs.get("params", 0) <= budget)]
    return sorted(trials, key=lambda t: (-t.values[0], t.values[1], t.number))


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible trials no other feasible trial beats on both accuracy and parameters."""
    front, best_acc = [], -1.0
    for t in sorted(feasible(study), key=lambda t: (t.values[1], -t.values[0])):
        if t.values[0] > best_acc:
            front.append(t)
            best_acc = t.values[0]
    return front


def leaderboard(study: optuna.Study, k: int = 10) -> list[Row]:
    from nas_mnist.arch import ArchConfig
    return [Row(i + 1, t.number, int(t.values[1]), int(t.user_attrs.get("macs", 0)), t.values[0],
                ArchConfig.from_dict(t.user_attrs["arch"]).describe())
            for i, t in enumerate(feasible(study)[:k])]
