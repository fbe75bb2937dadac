"""Sampling from a search space: `suggest_arch(trial, space)`, the space's smallest network,
and the shares of random samples that are valid and under a budget.

Trial parameter names are a storage schema (`stage{i}_conv{j}_width`, ...): renaming one breaks
resuming older studies.
"""

from __future__ import annotations

from collections.abc import Iterable

from nas_mnist.errors import SpecError
from nas_mnist.searcher.dims import Dim, SearchSpace, SpaceError
from nas_mnist.spec.arch import ArchConfig, ConvSpec, Head, Transition


def _no_first(values: list):
    return False if False in values else values[0]


# How the smallest network picks a key's value, by space key; any other key takes its least
# number (widths, counts, rates) or its first choice.
SMALLEST = {
    "transition_conv": _no_first, "mid_act": _no_first, "batch_norm": _no_first,
    "conv_kind": lambda values: next((k for k in ("separable", "full") if k in values),
                                     values[0]),  # a separable conv has the fewest parameters
    "groups": max,  # more groups, fewer parameters
    "first_stage_pad": max, "later_stage_pad": max,  # no parameters, and keeps maps alive
    "head": lambda values: values[0],
}


def _least(values: list):
    numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return min(numeric) if numeric else values[0]


class _SmallestTrial:
    """A stand-in trial that gives each dimension the value of SMALLEST for its key."""

    def choose(self, dim: Dim):
        values = list(dim.choices) if dim.choices is not None else [dim.low, dim.high]
        return SMALLEST.get(dim.name, _least)(values)


def smallest_arch(space: SearchSpace) -> ArchConfig:
    """The configuration of the space with the fewest parameters (every count at its minimum)."""
    if not space.samples_arch:
        raise SpaceError(f"search space {space.name} has no architecture keys: it searches "
                         f"the recipe of a fixed architecture (give one: --arch FILE)")
    try:
        return suggest_arch(_SmallestTrial(), space)
    except (ValueError, TypeError) as err:
        raise SpaceError(f"search space {space.name}: its smallest network is invalid: {err}")


def suggest_arch(trial, space: SearchSpace) -> ArchConfig:
    """Sample an architecture. Raises SpecError if the sample is not a valid network."""
    if not space.samples_arch:
        raise SpaceError(f"search space {space.name} samples no architecture")
    a = space.arch
    pools = a["pools"].suggest(trial)
    stages = []
    for i in range(pools + 1):
        n_convs = _own(a, "first_stage_convs" if i == 0 else "", "convs_per_stage").suggest(
            trial, f"stage{i}_convs")
        pad = (a["first_stage_pad"] if i == 0 else a["later_stage_pad"]).suggest(
            trial, f"stage{i}_pad")
        stages.append(tuple(_suggest_conv(trial, a, i, j, pad) for j in range(n_convs)))
    transitions = []
    for i in range(pools):
        width = None
        if a["transition_conv"].suggest(trial, f"trans{i}_conv1x1"):
            width = a["transition_width"].suggest(trial, f"trans{i}_width")
        where = a["transition_where"].suggest(trial, f"trans{i}_where") if width else "before"
        transitions.append(Transition(conv1x1=width, where=where))
    head = Head(kind=a["head"].suggest(trial), pre_gap=a["pre_gap"].suggest(trial) or None)
    dropout = a["dropout"].suggest(trial)
    return ArchConfig(
        stages=tuple(stages), transitions=tuple(transitions), head=head,
        batch_norm=a["batch_norm"].suggest(trial), dropout=dropout,
        dropout_kind=a["dropout_kind"].suggest(trial) if dropout else "element",
        dropout_position=a["dropout_position"].suggest(trial) if dropout else "after_relu",
        input_pool=a["input_pool"].suggest(trial),
    )


def _own(a: dict[str, Dim], key: str, general: str) -> Dim:
    """The dimension `key` where the space sets one, else the general one."""
    dim = a.get(key)
    return a[general] if dim is None or (dim.is_fixed and dim.fixed is None) else dim


def _suggest_conv(trial, a: dict[str, Dim], i: int, j: int, pad: int) -> ConvSpec:
    """One conv: width, then (except for the network's first conv, which sees one input
    channel) its kind and what the kind needs."""
    first = i == 0 and j == 0
    out = _own(a, "first_width" if first else "", "width").suggest(
        trial, f"stage{i}_conv{j}_width")
    if first:
        return ConvSpec(out, pad)
    kind = a["conv_kind"].suggest(trial, f"stage{i}_conv{j}_kind")
    if kind == "grouped":
        return ConvSpec(out, pad, kind=kind,
                        groups=a["groups"].suggest(trial, f"stage{i}_conv{j}_groups"))
    if kind == "separable":
        return ConvSpec(out, pad, kind=kind,
                        mid_act=a["mid_act"].suggest(trial, f"stage{i}_conv{j}_mid_act"))
    return ConvSpec(out, pad, kind=kind)


def uniform_draws(space: SearchSpace, samples: int, seed: int = 0, *, recipe: bool = False):
    """`samples` uniform draws of the space: (trial parameters, the architecture or None when
    the draw is no valid network). With `recipe`, the recipe is drawn too."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(samples):
        trial = study.ask()
        try:
            arch = suggest_arch(trial, space)
            if recipe:
                space.recipe_for(trial)
        except SpecError:
            arch = None
        study.tell(trial, 0.0)
        yield dict(trial.params), arch


def sample_shares(space: SearchSpace, *, judge, samples: int = 2000, seed: int = 0) -> dict:
    """Draw `samples` uniform configurations and count what the search would do with each:
    "trainable", "invalid", or the refusal kind `judge(arch)` returns (None: trainable)."""
    from collections import Counter
    counts = Counter("invalid" if arch is None else judge(arch) or "trainable"
                     for _, arch in uniform_draws(space, samples, seed))
    return {"samples": samples, **{k: n / samples for k, n in counts.most_common()}}


def trainable_draw(space: SearchSpace, *, judge, seed: int, skip: Iterable[dict] = (),
                   max_draws: int = 1000) -> dict | None:
    """The trial parameters (architecture and recipe) of a uniform draw of the space that
    `judge` admits and that is none of `skip`: rejection sampling, so the sampler's random
    start-up trials are all trainable and new instead of spending themselves on refusals.
    None if `max_draws` found none."""
    skip = list(skip)
    return next((params for params, arch in uniform_draws(space, max_draws, seed, recipe=True)
                 if arch is not None and judge(arch) is None and params not in skip), None)


def sample_sizes(space: SearchSpace, *, judge, samples: int, seed: int = 0
                 ) -> tuple[list[int], int]:
    """The parameter counts of `samples` valid uniform draws and how many `judge` admits."""
    valid = [arch for _, arch in uniform_draws(space, samples, seed) if arch is not None]
    return [a.n_params() for a in valid], sum(judge(a) is None for a in valid)
