"""What a search space is once read: its dimensions (`Dim`) and the space (`SearchSpace`).
The file format and its checks: searcher/space.py; sampling: searcher/sampling.py."""

from __future__ import annotations

from dataclasses import dataclass, replace

from nas_mnist.errors import NasMnistError
from nas_mnist.spec.recipe import Recipe


class SpaceError(NasMnistError, ValueError):
    """A search-space file is malformed; the message names the bad key."""


@dataclass(frozen=True)
class Dim:
    name: str
    fixed: object = None
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def is_fixed(self) -> bool:
        return self.choices is None and self.low is None

    def values_for_min(self) -> list:
        """Candidate values when looking for the smallest network."""
        if self.is_fixed:
            return [self.fixed]
        if self.choices is not None:
            return list(self.choices)
        return [self.low]

    def suggest(self, trial, name: str | None = None):
        name = name or self.name
        if self.is_fixed:
            return self.fixed
        choose = getattr(trial, "choose", None)  # a stand-in trial that picks by the key
        if choose is not None:
            return choose(self)
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(name, self.low, self.high, log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)


# The width-like keys a budget scales (channels of a conv, of a 1x1 transition, before GAP).
WIDTH_KEYS = ("width", "first_width", "transition_width", "pre_gap")
MIN_SCALED_WIDTH = 2


@dataclass(frozen=True)
class WidthScaling:
    """How a space's widths follow the budget: at `reference` parameters they are as written;
    at budget B each is multiplied by (B / reference) ** exponent (rounded, at least 2). A
    conv's parameters grow with the square of the widths, the head's and the first conv's
    linearly: 0.6 keeps the share of trainable draws at 30-40 % from 1,000 to 50,000."""

    reference: int
    exponent: float

    def scale_for(self, budget: int) -> float:
        return round((budget / self.reference) ** self.exponent, 3)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    arch: dict[str, Dim]
    recipe: dict[str, Dim]
    digest: str  # hash of the parsed content, stored with the study
    scaling: WidthScaling | None = None  # None: the widths are the same at every budget
    width_scale: float = 1.0  # the factor applied (SearchSpace.scaled)

    def scale_for(self, budget: int) -> float:
        """The width factor a new study at `budget` takes (1.0 for a space without scaling)."""
        return 1.0 if self.scaling is None else self.scaling.scale_for(budget)

    def scaled(self, factor: float) -> "SearchSpace":
        """This space with every width-like value multiplied by `factor` (a study stores its
        factor, so a resume samples what it sampled before)."""
        if factor == 1.0:
            return self
        arch = dict(self.arch)
        for key in WIDTH_KEYS:
            dim = arch.get(key)
            if dim is None or (dim.is_fixed and dim.fixed is None):
                continue
            arch[key] = _scaled_dim(dim, factor)
        return replace(self, arch=arch, width_scale=factor)

    @property
    def samples_arch(self) -> bool:
        """False for a recipe space: it searches the recipe of a fixed architecture."""
        return bool(self.arch)

    def recipe_for(self, trial) -> Recipe:
        return Recipe.from_dict({k: d.suggest(trial) for k, d in self.recipe.items()})


def _scaled_width(value, factor: float):
    if not value:  # 0 or None: "no such conv" stays so
        return value
    from nas_mnist.spec.blocks import MAX_WIDTH
    return min(MAX_WIDTH, max(MIN_SCALED_WIDTH, round(value * factor)))


def _scaled_dim(dim: Dim, factor: float) -> Dim:
    if dim.is_fixed:
        return replace(dim, fixed=_scaled_width(dim.fixed, factor))
    if dim.choices is not None:
        seen = []
        for value in dim.choices:
            if _scaled_width(value, factor) not in seen:
                seen.append(_scaled_width(value, factor))
        return replace(dim, choices=tuple(seen))
    return replace(dim, low=_scaled_width(dim.low, factor), high=_scaled_width(dim.high, factor))
