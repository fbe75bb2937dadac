"""Known results enter a study as they are: a warm-start configuration whose seed runs are
stored (the packaged prior, local studies, their confirmation runs) and were measured the way
this study measures (same data, split, run length, last-N, trainer) is added as a complete
trial with those scores, labelled with where they were measured, instead of being trained
again. `mnist-10k-v4` spent 75 of its 89 minutes re-measuring three warm networks whose
5-seed means were in the prior; the sampler got the other 14.

The trial is asked and told under the study lock, with the space's own parameters where the
space can express the configuration, so the sampler learns from it as from any sample. Its
other seeds are stored as the search's confirmation runs: `--confirm-top` skips them.
"""

from __future__ import annotations

import warnings

import optuna

from nas_mnist.searcher import record
from nas_mnist.searcher.objective import constraint_values
from nas_mnist.searcher.prior import PriorConfig
from nas_mnist.searcher.record import SEEDS_PREFIX, StudyMeta
from nas_mnist.searcher.replay import params_of
from nas_mnist.searcher.sampling import suggest_arch
from nas_mnist.searcher.space import SearchSpace
from nas_mnist.spec.footprint import footprint


def why_not_reusable(c: PriorConfig, meta: StudyMeta) -> str | None:
    """None if `c`'s stored runs measure what this study measures, else what differs."""
    r = c.recipe
    checks = [
        (len(meta.directions) == 1, "a two-objective study"),
        (meta.eval_split == "test" and meta.val_split == 0, "scored on a validation split"),
        (meta.objective == "min", f"score = {meta.objective} of the last epochs"),
        (c.data_checksum == meta.data_checksum, "other data"),
        ((r.epochs, r.last_n) == (meta.epochs, meta.last_n),
         f"measured over {r.epochs} epochs, last {r.last_n}"),
        ((r.dropout_rng, r.eval_precision) == (meta.dropout_rng, meta.eval_precision),
         f"measured with trainer {r.dropout_rng}/{r.eval_precision}, which changes the "
         f"numbers (this study: {meta.dropout_rng}/{meta.eval_precision})"),
    ]
    return next((why for ok, why in checks if not ok), None)


def enter_known(study: optuna.Study, c: PriorConfig, space: SearchSpace, meta: StudyMeta, *,
                accs: tuple[float, ...] = ()) -> int | None:
    """Add `c` with its stored scores as a complete trial (no training). Returns its number,
    or None if the study has a queued trial (it would be taken instead) - the caller then
    enqueues `c` to be trained. Call under the study lock."""
    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        return None
    key = c.arch.key()
    params = params_of(c.arch, c.recipe, space)
    label = f"{c.provenance()}, reused: measured on {c.measured or 'an unrecorded device'}"
    attrs = record.attrs_of(enqueued=True, fixed_key=key, warm=label, reused=True)
    if params is None:  # the space cannot express it: it ranks, and teaches the sampler nothing
        attrs.update(record.attrs_of(fixed_arch=c.arch.to_dict(),
                                     fixed_recipe=c.recipe.to_dict()))
    study.enqueue_trial(params or {}, user_attrs=attrs)
    with warnings.catch_warnings():  # "heartbeat ... used with Study.optimize": it is told now
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()
    if params is not None:  # the space's own parameters, with their distributions
        suggest_arch(trial, space)
        space.recipe_for(trial)
    own = c.seeds.index(min(c.seeds))
    cost = footprint(c.arch)
    counted = _Counted(c.params, _macs(c), cost.activations, cost.peak_int8_bytes)
    record.write(trial, arch=c.arch.to_dict(), recipe=c.recipe.to_dict(), seed=c.seeds[own],
                 n_params=c.params, macs=counted.macs, activations=counted.activations,
                 peak=counted.peak, accs=list(accs), eval_split=meta.eval_split,
                 data_checksum=meta.data_checksum, device=c.measured)
    for name, value in constraint_values(meta, counted).items():
        trial.set_constraint(name, value)
    study.tell(trial, c.scores[own])
    others = {str(seed): {"score": score, "seconds": 0.0, "reused": True,
                          "device": c.measured}
              for i, (seed, score) in enumerate(zip(c.seeds, c.scores)) if i != own}
    if others:
        study.set_user_attr(f"{SEEDS_PREFIX}{trial.number}", {"runs": others, "claims": {}})
    return trial.number


class _Counted:
    def __init__(self, n_params: int, macs: int, activations: int, peak: int):
        self.n_params, self.macs, self.activations, self.peak = n_params, macs, activations, peak


def _macs(c: PriorConfig) -> int:
    from nas_mnist.engine.builder import build_model
    from nas_mnist.engine.counting import count_macs
    from nas_mnist.engine.evaluate import in_shape
    return count_macs(build_model(c.arch), in_shape(c.arch))
