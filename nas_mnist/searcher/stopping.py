"""Stopping rules: decide after an epoch whether a trial should stop training.

A rule sees plain data only: the trial's own curve and size (`Curve`) and those of the other
trials in the study, as the storage holds them now (so several workers decide from the same
facts). Adding a rule is one class and `@register`: its dataclass fields are its options
(`--prune NAME --prune-opt field=value`); `fit(epochs)` validates them for a run length
(and fills in defaults that depend on it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar, Sequence

from nas_mnist.errors import NasMnistError


class RuleError(NasMnistError):
    """An unknown rule, option or option value."""


@dataclass(frozen=True)
class Curve:
    number: int
    accs: Sequence[float]  # percent after each trained epoch
    n_params: int
    complete: bool = False  # trained to the last epoch


@dataclass(frozen=True)
class Decision:
    """A rung decision, recorded on the trial so that it can be replayed."""

    epoch: int
    acc: float
    stop: bool
    peers: int  # curves ranked against (the trial itself not counted)
    source: str  # "study" (its own trials), "study+prior" (earlier studies' curves too), "none"
    threshold: float | None  # the accuracy of the last peer kept at this rung
    reason: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RULES: dict[str, type["StopRule"]] = {}


def register(cls):
    RULES[cls.name] = cls
    return cls


class StopRule:
    name: ClassVar[str]

    def fit(self, epochs: int) -> "StopRule":
        """The rule for runs of `epochs` epochs; RuleError if its options do not fit."""
        return self

    def decides_at(self, epoch: int) -> bool:
        """Whether `should_stop` can say yes after this epoch (saves reading the storage)."""
        return False

    def should_stop(self, me: Curve, peers: Sequence[Curve], *, multi_objective: bool,
                    prior: Sequence[Curve] = ()) -> str | None:
        """A reason ("asha rung 3") to stop `me` after its latest epoch, or None to go on.
        `prior`: curves of earlier studies, for rules that use them before the study has
        peers of its own."""
        decision = self.decide(me, peers, multi_objective=multi_objective, prior=prior)
        return decision.reason if decision is not None and decision.stop else None

    def decide(self, me: Curve, peers: Sequence[Curve], *, multi_objective: bool,
               prior: Sequence[Curve] = ()) -> "Decision | None":
        """The decision after `me`'s latest epoch with what decided it, or None when this rule
        does not decide there."""
        return None

    def describe(self) -> str:
        opts = ", ".join(f"{f.name}={_format(getattr(self, f.name))}"
                         for f in dataclasses.fields(self))
        return f"{self.name} ({opts})" if opts else self.name


@register
@dataclass(frozen=True)
class NoStop(StopRule):
    """Train every network for all epochs."""

    name: ClassVar[str] = "none"

    def should_stop(self, me, peers, *, multi_objective, prior=()):
        return None


# The spread the training seed alone gives a network's accuracy at a rung, as a fraction of its
# error: over the 47 networks with 5-seed curves in the shipped reports and confirmations, the
# median standard deviation across seeds was 0.093 of the mean error at epoch 2 and 0.101 at
# epoch 6 (quartiles 0.07-0.13), at 1,000 as at 20,000 parameters. Without it a rung stopped
# draws that trailed its bar by 0.01 points, a tenth of that spread (studies/README.md).
SEED_NOISE = 0.1


@register
@dataclass(frozen=True)
class Asha(StopRule):
    """Asynchronous successive halving (Li et al. 2020), size-aware in two-objective studies.

    At each rung epoch a trial goes on only if it is in the top 1/eta of all trials that have
    reached that rung so far (itself included). With two objectives the ranking is by
    non-dominated sorting on (accuracy at the rung, parameters), whole fronts at a time, so a
    trial no other trial beats on both is never stopped (MO-ASHA). A rung decides only once
    `min_peers` other trials have reached it. In a single-objective study the curves of
    earlier studies (`prior`: same data, space, trainer, run length, nearby budget and recipe
    family) of a size within SIZE_BAND of the trial's are peers too, weighed down as the
    study's own peers at the rung grow (prior_weight): the first networks of a study get no
    free pass, and the study's own networks take over the judging. Where too few peers exist,
    only a trial with twice the error of the study's best at the rung stops (`_early`). A
    single-objective trial outside the top 1/eta goes on while its error is within `noise` of
    the bar's: ranking inside the seed noise stops networks by chance.
    benchmarks/replay_pruners.py --prior replays the shipped studies through it.
    """

    name: ClassVar[str] = "asha"
    # Defaults chosen by benchmarks/replay_pruners.py on the shipped studies (studies/README.md).
    rungs: tuple[int, ...] = ()  # empty: 2/15 and 6/15 of the epochs (2 and 6 of 15)
    eta: int = 4
    min_peers: int = 5
    prior: int = 1  # 1: earlier studies' curves are peers too (single objective); 0: never
    # A trial outside the top 1/eta goes on while its error is within this fraction of the
    # bar's: the training seed alone moves a network's accuracy at a rung by about a tenth of
    # its error (single objective; see SEED_NOISE).
    noise: float = SEED_NOISE

    def fit(self, epochs: int) -> "Asha":
        if not self.rungs:
            auto = {max(1, round(epochs * 2 / 15)), round(epochs * 6 / 15)}
            auto = tuple(sorted(r for r in auto if 1 <= r < epochs))
            return dataclasses.replace(self, rungs=auto).fit(epochs) if auto else self
        if any(r < 1 or r >= epochs for r in self.rungs):
            raise RuleError(f"asha rungs {_format(self.rungs)} must lie in [1, {epochs - 1}] "
                            f"(before the last of the {epochs} epochs)")
        if self.eta < 2:
            raise RuleError(f"asha eta must be >= 2, got {self.eta}")
        if self.min_peers < 1:
            raise RuleError(f"asha min_peers must be >= 1, got {self.min_peers}")
        if self.prior not in (0, 1):
            raise RuleError(f"asha prior must be 0 or 1, got {self.prior}")
        if not 0 <= self.noise <= 1:
            raise RuleError(f"asha noise must be in [0, 1], got {self.noise}")
        return dataclasses.replace(self, rungs=tuple(sorted(set(self.rungs))))

    def decides_at(self, epoch: int) -> bool:
        return epoch in self.rungs

    def decide(self, me: Curve, peers: Sequence[Curve], *, multi_objective: bool,
               prior: Sequence[Curve] = ()) -> Decision | None:
        rung = len(me.accs)
        if rung not in self.rungs:
            return None
        acc = me.accs[rung - 1]
        own = everyone = [p for p in peers if p.number != me.number and len(p.accs) >= rung]
        if not multi_objective:  # a bigger network's curve is no bar for a smaller one...
            own = [p for p in own if _no_larger(p, me)]
            decision = self._single(rung, acc, me, own, prior)
            # ... unless the trial is hopelessly behind it (FAR_BEHIND_RATIO times the error)
            return decision if decision.stop else (self._far_behind(rung, acc, everyone)
                                                   or decision)
        if len(own) < self.min_peers:
            return Decision(rung, acc, False, len(own), "none", None)
        points = [(p.accs[rung - 1], p.n_params) for p in own]
        keep = max(1, (len(points) + 1) // self.eta)
        stop = _ahead_by_fronts((acc, me.n_params), points) >= keep
        return Decision(rung, acc, stop, len(own), "study", None,
                        f"asha rung {rung}" if stop else None)

    def _single(self, rung: int, acc: float, me: Curve, own: Sequence[Curve],
                prior: Sequence[Curve]) -> Decision:
        weight = prior_weight(len(own)) if self.prior else 0.0
        near = [p for p in prior if len(p.accs) >= rung and _near_in_size(p, me)
                and _no_larger(p, me)] if weight else []
        source = "study+prior" if near else "study"
        # Each peer counts 1, an earlier study's curve `weight`: they judge the first networks
        # of a study and give way as its own accumulate at this rung.
        weighted = [(p.accs[rung - 1], 1.0) for p in own] + \
                   [(p.accs[rung - 1], weight) for p in near]
        total = sum(w for _, w in weighted)
        if total < self.min_peers:
            return self._early(rung, acc, own)
        keep = max(1, math.floor((total + 1) / self.eta))
        ahead = sum(w for a, w in weighted if a > acc)
        threshold, seen = None, 0.0
        for a, w in sorted(weighted, key=lambda aw: -aw[0]):
            seen += w
            if seen >= keep:
                threshold = a
                break
        stop = ahead >= keep and 100.0 - acc > (1.0 + self.noise) * (100.0 - threshold)
        return Decision(rung, acc, stop, len(own) + len(near), source, threshold,
                        f"asha rung {rung}" if stop else None)

    def _far_behind(self, rung: int, acc: float, everyone: Sequence[Curve]) -> Decision | None:
        """A trial with FAR_BEHIND_RATIO times the error of the study's best at this rung, of
        any size, stops (a 600-parameter network at 80 % beside 99 % ones)."""
        if len(everyone) < EARLY_PEERS:
            return None
        best = max(p.accs[rung - 1] for p in everyone)
        threshold = 100.0 - FAR_BEHIND_RATIO * (100.0 - best)
        if acc >= threshold:
            return None
        return Decision(rung, acc, True, len(everyone), "study-far-behind", threshold,
                        f"asha rung {rung} (far behind the study's best)")

    def _early(self, rung: int, acc: float, own: Sequence[Curve]) -> Decision:
        """Too few peers to rank among: no free pass, but only a trial far behind the study's
        own best at this rung stops (twice its error: scale-free, so it holds on harder data
        as on MNIST), once the study has EARLY_PEERS of its own there."""
        if len(own) < EARLY_PEERS:
            return Decision(rung, acc, False, len(own), "none", None)
        best = max(p.accs[rung - 1] for p in own)
        threshold = 100.0 - EARLY_ERROR_RATIO * (100.0 - best)
        stop = acc < threshold
        return Decision(rung, acc, stop, len(own), "study-early", threshold,
                        f"asha rung {rung} (behind the study's best)" if stop else None)


@register
@dataclass(frozen=True)
class Percentile(StopRule):
    """The first rule: from epoch `warmup`, stop a trial below the `quantile` of the completed
    trials no larger than itself at the same epoch (once `min_trials` such have completed)."""

    name: ClassVar[str] = "percentile"
    warmup: int = 0  # 0: epoch 3, or the one before the last in shorter runs
    quantile: float = 0.25
    min_trials: int = 4

    def fit(self, epochs: int) -> "Percentile":
        if self.warmup == 0:  # left to us: fit the run, never refuse it
            if epochs < 2:  # nothing to stop before the only epoch
                return dataclasses.replace(self, warmup=epochs + 1)
            return dataclasses.replace(self, warmup=min(3, epochs - 1)).fit(epochs)
        if not 1 <= self.warmup < epochs:
            raise RuleError(f"percentile warmup must be in [1, {epochs - 1}], got {self.warmup}")
        if not 0.0 <= self.quantile < 1.0:
            raise RuleError(f"percentile quantile must be in [0, 1), got {self.quantile}")
        return self

    def decides_at(self, epoch: int) -> bool:
        return epoch >= self.warmup

    def should_stop(self, me: Curve, peers: Sequence[Curve], *, multi_objective: bool,
                    prior: Sequence[Curve] = ()) -> str | None:
        epoch = len(me.accs)
        if epoch < self.warmup:
            return None
        done = sorted(p.accs[epoch - 1] for p in peers if p.complete and p.number != me.number
                      and len(p.accs) >= epoch and p.n_params <= me.n_params)
        if len(done) < self.min_trials:
            return None
        threshold = done[int(self.quantile * (len(done) - 1))]
        return f"percentile epoch {epoch}" if me.accs[-1] < threshold else None


# Earlier studies' curves weigh 1 each while the study has none of its own at a rung and
# nothing once it has PRIOR_GIVES_WAY_AT: a study's own networks are the better judges of its
# networks. A curve judges a trial only within a factor SIZE_BAND of its size.
PRIOR_GIVES_WAY_AT = 20
SIZE_BAND = 2.0
LARGER_SLACK = 1.1  # a peer up to 10 % larger still judges (sizes near the budget bunch up)
EARLY_PEERS = 2  # own peers at a rung before the far-behind check can stop a trial
EARLY_ERROR_RATIO = 2.0
FAR_BEHIND_RATIO = 3.0  # a bigger network's error times this: behind it by any measure


def prior_weight(own_peers: int) -> float:
    return max(0.0, 1.0 - own_peers / PRIOR_GIVES_WAY_AT)


def _no_larger(curve: Curve, me: Curve) -> bool:
    if curve.n_params <= 0 or me.n_params <= 0:
        return True  # size unknown: the budget band already applies
    return curve.n_params <= me.n_params * LARGER_SLACK


def _near_in_size(curve: Curve, me: Curve) -> bool:
    if curve.n_params <= 0 or me.n_params <= 0:
        return True  # size unknown: the budget band already applies
    return 1 / SIZE_BAND <= curve.n_params / me.n_params <= SIZE_BAND


def _dominates(a: tuple[float, int], b: tuple[float, int]) -> bool:
    """Higher accuracy and fewer parameters, at least as good on both and better on one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def _ahead_by_fronts(mine: tuple[float, int], points: list[tuple[float, int]]) -> int:
    """How many points lie in non-dominated fronts strictly before the front of `mine`."""
    remaining, ahead = list(points) + [mine], 0
    while remaining:
        front = [p for p in remaining if not any(_dominates(q, p) for q in remaining)]
        if mine in front:
            return ahead
        ahead += len(front)
        remaining = [p for p in remaining if p not in front]
    return ahead


def make_rule(name: str, options: dict[str, str] | None = None) -> StopRule:
    """Build a registered rule from its name and string options (`rungs=3,9`)."""
    if name not in RULES:
        raise RuleError(f"unknown stopping rule {name!r}; choose from {', '.join(RULES)}")
    cls = RULES[name]
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    values = {}
    for key, text in (options or {}).items():
        if key not in types:
            raise RuleError(f"{name} has no option {key!r}"
                            + (f" (it has: {', '.join(types)})" if types else ""))
        values[key] = _parse(types[key], text, f"{name} option {key}")
    return cls(**values)


def _parse(kind, text: str, what: str):
    """Read an option by its field's type (`int`, `float`, a tuple of ints), given as a type
    or as the string a postponed annotation leaves."""
    kind = kind.__name__ if isinstance(kind, type) else str(kind)
    try:
        if "tuple" in kind:
            return tuple(int(v) for v in text.replace("+", ",").split(",") if v.strip())
        if kind == "int":
            return int(text)
        if kind == "float":
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
    except ValueError:
        raise RuleError(f"{what}: cannot read {text!r} as {kind}") from None
    raise AssertionError(f"option type {kind} has no parser")


def _format(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
