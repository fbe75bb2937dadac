"""`space_shares`: what a search at a budget would do with uniform draws of a space, as
`nas-mnist space`."""

from __future__ import annotations

import nas_mnist.api.checks as checks


def space_shares(space: str = "default", *, budget: int = 10_000,
                 min_params: int | None = None, max_activations: int | None = None,
                 max_ram: int | None = None, samples: int = 2000, seed: int = 0) -> dict:
    """Draw `samples` uniform configurations of `space` as a new study at `budget` would see
    it (the widths scaled for the budget, the default size floor and activation limit unless
    given) and count each outcome the search counts: trainable, over the budget, under the
    floor, over the activation or RAM limit, invalid. Returns a dict; `trainable` is the
    share that would be trained."""
    from nas_mnist.spec.limits import Limits
    from nas_mnist.searcher.sampling import sample_shares, smallest_arch
    from nas_mnist.searcher.settings import StudyValue
    checks.integer("budget", budget, 1)
    checks.integer("samples", samples, 1, 1_000_000)
    checks.integer("seed", seed, 0, 2**32 - 1)
    value = StudyValue(space=space, budget=budget, min_params=min_params,
                       max_activations=max_activations, max_ram=max_ram)
    sampled = value.search_space()
    limits = Limits(budget, value.resolved_min_params, None, value.resolved_max_activations,
                    max_ram)
    smallest = smallest_arch(sampled)
    shares = sample_shares(sampled, judge=limits.kind_of, samples=samples, seed=seed)
    widths = sampled.arch["width"]
    return {"space": sampled.name, "budget": budget, "width_scale": sampled.width_scale,
            "widths": list(widths.choices) if widths.choices else [widths.fixed],
            "smallest_params": smallest.n_params(), "smallest": smallest.describe(),
            "min_params": limits.min_params, "max_activations": limits.max_activations,
            "max_ram": max_ram, "samples": samples,
            "shares": {k: v for k, v in shares.items() if k != "samples"},
            "trainable": shares.get("trainable", 0.0)}
