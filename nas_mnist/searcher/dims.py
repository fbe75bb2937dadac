"""What a search space is once read: its dimensions (`Dim`) and the space (`SearchSpace`).
The file format and its checks: searcher/space.py; sampling: searcher/sampling.py."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class SearchSpace:
    name: str
    arch: dict[str, Dim]
    recipe: dict[str, Dim]
    digest: str  # hash of the parsed content, stored with the study

    @property
    def samples_arch(self) -> bool:
        """False for a recipe space: it searches the recipe of a fixed architecture."""
        return bool(self.arch)

    def recipe_for(self, trial) -> Recipe:
        return Recipe.from_dict({k: d.suggest(trial) for k, d in self.recipe.items()})
