"""A known configuration as a search space's own trial parameters, for `--enqueue`: enqueued
with them, a network teaches the sampler like any sample of the space."""

from __future__ import annotations

from nas_mnist.errors import SpecError
from nas_mnist.searcher.space import SearchSpace
from nas_mnist.searcher.sampling import suggest_arch
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.recipe import TRAINER_KEYS, Recipe


def params_of(arch: ArchConfig, recipe: Recipe, space: SearchSpace) -> dict | None:
    """The trial parameters under which `suggest_arch` and `recipe_for` rebuild exactly this
    configuration, or None when the space cannot express it (a width it does not offer, a
    fixed value that differs, ...). Enqueued with these, a known network teaches the sampler."""
    values = _values_of(arch, recipe)
    replay = _ReplayTrial(values)
    try:
        rebuilt = suggest_arch(replay, space) if space.samples_arch else arch
        rebuilt_recipe = space.recipe_for(replay)
    except (_Inexpressible, SpecError, KeyError, TypeError, ValueError):
        return None
    # The run length and the trainer's settings are the study's, not the space's: a winner
    # of this very space, stored with the trainer a new study records, is still its own.
    study_owned = {k: getattr(recipe, k) for k in ("epochs", "last_n", *TRAINER_KEYS)}
    same_recipe = rebuilt_recipe.replace(**study_owned) == recipe
    return replay.params if rebuilt.key() == arch.key() and same_recipe else None


def _values_of(arch: ArchConfig, recipe: Recipe) -> dict:
    """Every dimension's value in this configuration, under its trial-parameter name."""
    values = {"pools": len(arch.stages) - 1, "head": arch.head.kind,
              "pre_gap": arch.head.pre_gap or 0, "batch_norm": arch.batch_norm,
              "dropout": arch.dropout, "dropout_kind": arch.dropout_kind,
              "dropout_position": arch.dropout_position,
              **{f"recipe.{k}": v for k, v in recipe.to_dict().items()}}
    for i, stage in enumerate(arch.stages):
        values[f"stage{i}_convs"] = len(stage)
        values[f"stage{i}_pad"] = stage[0].pad
        for j, conv in enumerate(stage):
            values.update({f"stage{i}_conv{j}_width": conv.out, f"stage{i}_conv{j}_kind": conv.kind,
                           f"stage{i}_conv{j}_groups": conv.groups,
                           f"stage{i}_conv{j}_mid_act": conv.mid_act})
    for i, t in enumerate(arch.transitions):
        values.update({f"trans{i}_conv1x1": t.conv1x1 is not None, f"trans{i}_width": t.conv1x1,
                       f"trans{i}_where": t.where})
    return values


class _Inexpressible(Exception):
    """A value the space does not offer."""


class _ReplayTrial:
    """A stand-in trial that answers each suggestion with a given value, if the space offers it,
    and records the answers as trial parameters."""

    def __init__(self, values: dict):
        self.values, self.params = values, {}

    def _answer(self, name, value):
        self.params[name] = value
        return value

    def suggest_categorical(self, name, choices):
        value = self.values[name]
        offered = [c for c in choices if isinstance(c, bool) == isinstance(value, bool)
                   and c == value]  # True == 1 in Python; not here
        if not offered:
            raise _Inexpressible(name)
        return self._answer(name, offered[0])

    def suggest_int(self, name, low, high, log=False):
        value = self.values[name]
        if isinstance(value, bool) or value != int(value) or not low <= value <= high:
            raise _Inexpressible(name)
        return self._answer(name, int(value))

    def suggest_float(self, name, low, high, log=False):
        value = self.values[name]
        if isinstance(value, bool) or not low <= value <= high:
            raise _Inexpressible(name)
        return self._answer(name, float(value))
