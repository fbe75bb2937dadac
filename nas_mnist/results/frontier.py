"""The frontier: the best network at each size, each on several training seeds, and the rule
that keeps a point on it only where it is better than every smaller point by more than the
seed noise (one standard error of the difference of the two means).

`studies/frontier.json` (written by `benchmarks/frontier.py`) holds the points and the public
designs re-trained beside them; `results.report.frontier_figure` draws it. `nas-mnist report`
draws a study's own networks against the packaged front (`study_frontier_figure`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nas_mnist.errors import NasMnistError

BUDGETS = (1_000, 2_000, 3_000, 4_000, 6_000, 8_000, 10_000, 20_000)


class FrontierError(NasMnistError, ValueError):
    """A frontier request that cannot be met (budgets out of order, repeated, unreachable)."""

    names_keywords = True


@dataclass(frozen=True)
class Point:
    """One network measured on several seeds."""

    name: str
    params: int
    seed_scores: tuple[float, ...]
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def mean(self) -> float:
        return sum(self.seed_scores) / len(self.seed_scores)

    @property
    def worst(self) -> float:
        return min(self.seed_scores)

    @property
    def std(self) -> float:
        n = len(self.seed_scores)
        if n < 2:
            return 0.0
        return math.sqrt(sum((s - self.mean) ** 2 for s in self.seed_scores) / (n - 1))

    @property
    def standard_error(self) -> float:
        return self.std / math.sqrt(len(self.seed_scores))


def check_budgets(budgets, smallest: int | None = None) -> tuple[int, ...]:
    """Budgets in increasing order, each once, each at least the smallest network's size."""
    budgets = tuple(budgets)
    if not budgets or any(not isinstance(b, int) or isinstance(b, bool) or b < 1
                          for b in budgets):
        raise FrontierError(f"budgets must be positive integers, got {budgets!r}")
    if len(set(budgets)) != len(budgets):
        raise FrontierError(f"budgets must not repeat, got {budgets!r}")
    if list(budgets) != sorted(budgets):
        raise FrontierError(f"budgets must be in increasing order, got {budgets!r}")
    if smallest is not None and budgets[0] < smallest:
        raise FrontierError(f"budgets start at {budgets[0]:,}, below the smallest network of "
                            f"the space ({smallest:,} parameters)")
    return budgets


def check_max_ram(max_ram, least: int | None = None) -> int:
    """A RAM-class point's limit in bytes, at least what the leanest network can meet."""
    if not isinstance(max_ram, int) or isinstance(max_ram, bool) or max_ram < 1:
        raise FrontierError(f"max_ram must be a positive number of bytes, got {max_ram!r}")
    if least is not None and max_ram < least:
        raise FrontierError(f"max_ram {max_ram:,} B: no network of the packaged spaces fits "
                            f"(the leanest needs {least:,} B of int8 activations)")
    return max_ram


def beats(point: Point, smaller: Point) -> bool:
    """`point`'s mean is above `smaller`'s by more than one standard error of the difference."""
    error = math.hypot(point.standard_error, smaller.standard_error)
    return point.mean - smaller.mean > error


def front(points: list[Point]) -> list[Point]:
    """The points, smallest first, each kept only where it beats every smaller kept point."""
    kept: list[Point] = []
    for point in sorted(points, key=lambda p: (p.params, -p.mean)):
        if all(beats(point, smaller) for smaller in kept):
            kept.append(point)
    return kept


def best_per_budget(points: list[Point], budgets) -> dict[int, Point | None]:
    """For each budget, the front's largest point that fits it (None: nothing measured fits)."""
    on_front = front(points)
    return {b: next((p for p in reversed(on_front) if p.params <= b), None) for b in budgets}


def packaged_front(prior, *, data_checksum: str | None, exclude: str | None = None,
                   min_seeds: int = 5) -> list[Point]:
    """The front of a prior's networks measured on at least `min_seeds` seeds of this data
    (less the study `exclude`, so a shipped study is not drawn twice)."""
    return front([Point(f"{c.study}#{c.trial}", c.params, c.scores)
                  for c in prior.configs
                  if len(c.scores) >= min_seeds and c.data_checksum == data_checksum
                  and c.study != exclude])


def study_points(view) -> list[Point]:
    """A study's feasible networks, each with the score of every training seed it was run on
    (its own and the search's or a report's confirmation runs)."""
    return [Point(f"trial {r.number}" + (f" (stored runs of {r.warm})" if r.reused else ""),
                  r.n_params, tuple(r.scores)) for r in view.feasible]
