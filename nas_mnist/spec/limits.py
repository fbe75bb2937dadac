"""A study's hard limits as one record: what each limit is called, how it is counted, how a
network breaches it, the constraint the sampler learns it from, whether a stored record is
admitted, and how a refusal reads. Every site that checks a limit asks this module (the trainer
before training, the sampler's constraints, the ranking, the warm start, the progress line, the
reach check). Adding a limit is one `LIMITS` row and one `Limits` field here; the setting
itself is still written in the study record (`StudyMeta`, `StudyValue`), the `search()` keyword
and the flag, until a study's settings are one record.

Pure arithmetic on counts: the parameters, MACs (when counted), activations and peak int8
bytes of a network (`spec.footprint`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limit:
    kind: str  # the trial kind a breach records (over_budget, ...)
    key: str  # the Limits field, study setting and library keyword
    constraint: str  # the Optuna constraint name (stored with every trial of a study)
    measure: str  # which count: params, macs, activations or peak
    words: str  # how a refusal reads
    unit: str = ""
    floor: bool = False  # a lower bound (the size floor), not an upper one
    zero_is_unset: bool = False  # 0 means no such limit (the floor, activations; older studies)


# In the order the sampler's constraints are stored (a study's trials must keep one order).
LIMITS = (
    Limit("over_budget", "budget", "param_budget", "params", "over the budget", " parameters"),
    Limit("under_floor", "min_params", "param_floor", "params", "under the size floor",
          " parameters", floor=True, zero_is_unset=True),
    Limit("over_macs", "max_macs", "max_macs", "macs", "over the MACs limit"),
    Limit("over_ram", "max_ram", "max_ram", "peak", "over the RAM limit", " B"),
    Limit("over_activations", "max_activations", "max_activations", "activations",
          "over the activation limit", zero_is_unset=True),
)
BY_KIND = {limit.kind: limit for limit in LIMITS}
# The order a refusal is named in when a network breaches several (as recorded since the start).
CHECK_ORDER = ("over_budget", "under_floor", "over_macs", "over_activations", "over_ram")


@dataclass(frozen=True)
class Counts:
    params: int
    activations: int
    peak: int  # peak live activation elements = bytes at int8
    macs: int | None = None  # None: not counted (it needs the network built)


@dataclass(frozen=True)
class Limits:
    """The limits of one study. A limit that is 0 (floor, activations) or None (MACs, RAM) is
    not set; the budget is always set."""

    budget: int
    min_params: int = 0
    max_macs: int | None = None
    max_activations: int = 0
    max_ram: int | None = None

    @classmethod
    def of(cls, source) -> "Limits":
        """The limits of anything that has them as attributes (a StudyMeta, a StudyValue)."""
        return cls(**{f.name: getattr(source, f.name) for f in fields(cls)})

    def bound(self, limit: Limit) -> int | None:
        """The limit's value, None where this study does not set it."""
        value = getattr(self, limit.key)
        return (value or None) if limit.zero_is_unset else value

    def active(self) -> list[Limit]:
        """The limits this study sets, in the constraint order."""
        return [limit for limit in LIMITS if self.bound(limit) is not None]

    def breach(self, counts: Counts) -> tuple[Limit, int, int] | None:
        """The first limit `counts` breaches, with the value and the bound (None: within all).
        A limit on MACs is checked only where the MACs were counted."""
        for kind in CHECK_ORDER:
            limit = BY_KIND[kind]
            bound, value = self.bound(limit), getattr(counts, limit.measure)
            if bound is None or value is None:
                continue
            if (value < bound) if limit.floor else (value > bound):
                return limit, value, bound
        return None

    def refusal_kind(self, counts: Counts) -> str | None:
        found = self.breach(counts)
        return found[0].kind if found else None

    def refusal(self, counts: Counts) -> str | None:
        """Why a network is refused before training, in words (None: it trains)."""
        found = self.breach(counts)
        if found is None:
            return None
        limit, value, bound = found
        return f"{limit.words} ({value:,} {'<' if limit.floor else '>'} {bound:,}{limit.unit})"

    def admits(self, counts: Counts) -> bool:
        return self.breach(counts) is None

    def kind_of(self, arch, macs: int | None = None) -> str | None:
        """The refusal kind of an architecture config (a sampler's judge), None: trainable."""
        return self.refusal_kind(counts_of(arch, macs))

    def refusal_of(self, arch, macs: int | None = None) -> str | None:
        """Why an architecture config would be refused, in words (None: it trains)."""
        return self.refusal(counts_of(arch, macs))

    def constraint_names(self) -> list[str]:
        return [limit.constraint for limit in self.active()]

    def constraint_values(self, counts: Counts) -> dict[str, float]:
        """How far a counted network is over each limit (<= 0: within it)."""
        out = {}
        for limit in self.active():
            value = getattr(counts, limit.measure) or 0
            out[limit.constraint] = (self.bound(limit) - value) if limit.floor \
                else (value - self.bound(limit))
        return out

    def describe(self, kind: str) -> str:
        """'over the RAM limit max_ram=4,096 B': a refusal kind with the limit that made it."""
        limit = BY_KIND.get(kind)
        if limit is None:
            return kind.replace("_", " ")
        bound = self.bound(limit)
        return limit.words + (f" {limit.key}={bound:,}{limit.unit}" if bound is not None else "")


def counts_of(arch, macs: int | None = None) -> Counts:
    """The counts of an architecture config (MACs only if given: they need the network)."""
    from nas_mnist.spec.footprint import footprint
    f = footprint(arch)
    return Counts(arch.n_params(), f.activations, f.peak_int8_bytes, macs)


def counts_of_record(r) -> Counts:
    """The counts a trial record stored (a refused or older record may lack some: 0)."""
    return Counts(r.n_params or 0, r.activations or 0, r.peak or 0, r.macs or 0)
