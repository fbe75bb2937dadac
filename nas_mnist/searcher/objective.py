"""The trial objective: sample, then the shared evaluate path, then record what happened.

A sample over the budget is PRUNED with a positive `param_budget` constraint (the sampler
learns where the budget lies) and never trained; so is one that is not a valid network.
Every trained epoch is recorded and, in a single-objective study, reported to Optuna (the
dashboard draws the curves); the stopping rule may end a trial after any epoch.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Callable

import optuna
import torch

from nas_mnist._version import __version__
from nas_mnist.engine.data import Dataset
from nas_mnist.engine.device import resolve_precision
from nas_mnist.engine.evaluate import prepare_candidate, train_candidate
from nas_mnist.errors import NasMnistError, SpecError
from nas_mnist.searcher import record
from nas_mnist.searcher.prior import Prior
from nas_mnist.searcher.record import StudyMeta, TrialRecord, trainer_key
from nas_mnist.searcher.recovery import worker_id
from nas_mnist.searcher.space import SearchSpace
from nas_mnist.searcher.sampling import suggest_arch
from nas_mnist.searcher.stopping import Curve, StopRule
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.limits import Counts, Limits
from nas_mnist.spec.recipe import Recipe
from nas_mnist.spec.score import last_n_score

INVALID_CONSTRAINT = 1e9  # constraint value of a sample that is not a valid network


def constraint_names(meta: StudyMeta) -> list[str]:
    """The hard limits of this study, as Optuna constraint names (the same set on every trial
    of a study, so the sampler compares like with like)."""
    return Limits.of(meta).constraint_names()


def constraint_values(meta: StudyMeta, run) -> dict[str, float]:
    """How far a counted network is over each limit (<= 0: within it). The sampler learns
    where every limit lies from these, also from the refused samples."""
    return Limits.of(meta).constraint_values(
        Counts(run.n_params, run.activations or 0, run.peak or 0, run.macs or 0))


def _same_config(r: TrialRecord, key: str, recipe: Recipe) -> bool:
    """Whether `r` trained this network (by key) with this recipe; a record this version
    cannot read (an older study's) is no twin."""
    try:
        return r.arch_config.key() == key and r.recipe_config.same_training(recipe)
    except NasMnistError:
        return False


class Objective:
    def __init__(self, meta: StudyMeta, space: SearchSpace, data: Dataset, rule: StopRule, *,
                 train_seed: int = 0, artifacts: str | None = None,
                 on_epoch: Callable[[], None] | None = None,
                 prior: Prior | None = None):
        self.meta, self.space, self.data, self.rule = meta, space, data, rule
        self.train_seed, self.artifacts, self.on_epoch = train_seed, artifacts, on_epoch
        self.prior = prior  # earlier studies' curves for the first rungs (None: none)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, int]:
        record.write(trial, worker=worker_id(), version=__version__)
        try:
            arch, recipe = self._sample(trial)
        except SpecError as err:
            record.write(trial, reason="invalid", error=str(err))
            for name in constraint_names(self.meta):
                trial.set_constraint(name, INVALID_CONSTRAINT)
            raise optuna.TrialPruned(f"invalid configuration: {err}")
        try:
            return self._evaluate(trial, arch, recipe)
        except KeyboardInterrupt:
            record.write(trial, interrupted=True)  # the next run trains this one again first
            raise

    def _sample(self, trial: optuna.Trial) -> tuple[ArchConfig, Recipe]:
        fixed = TrialRecord.from_trial(trial)
        if fixed.fixed_arch:
            arch = ArchConfig.from_dict(fixed.fixed_arch)
            recipe = Recipe.from_dict(fixed.fixed_recipe or {})
        else:
            arch = (ArchConfig.from_dict(self.meta.arch) if self.meta.arch is not None
                    else suggest_arch(trial, self.space))
            recipe = self.space.recipe_for(trial)
        self.data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
        return arch, recipe.replace(epochs=self.meta.epochs, last_n=self.meta.last_n,
                                    dropout_rng=self.meta.dropout_rng,
                                    eval_precision=self.meta.eval_precision)

    def _evaluate(self, trial: optuna.Trial, arch: ArchConfig, recipe: Recipe):
        """Prepare (build, count, refuse), then train with a report and a stopping decision
        after every epoch."""
        meta, data = self.meta, self.data
        self.decisions: list[dict] = []
        record.write(trial, arch=arch.to_dict(), recipe=recipe.to_dict())
        record.write(trial, precision=resolve_precision(recipe.precision, data.train_x.device),
                     seed=self.train_seed, eval_split=data.eval_split,
                     threads=torch.get_num_threads(), data_checksum=data.checksum,
                     data_mean=data.mean, data_std=data.std)
        run = prepare_candidate(arch, recipe, data, seed=self.train_seed, limits=Limits.of(meta))
        record.write(trial, n_params=run.n_params, macs=run.macs, activations=run.activations,
                     peak=run.peak, device=run.device)
        for name, value in constraint_values(meta, run).items():
            trial.set_constraint(name, value)
        if run.refused:
            record.write(trial, reason=run.refused)
            raise optuna.TrialPruned(f"{run.refused}: {run.n_params:,} parameters, "
                                     f"{run.macs:,} MACs, {run.activations:,} activations")
        twin = self._twin(trial, arch, recipe)
        if twin is not None:
            record.write(trial, reason="duplicate", duplicate_of=twin)
            raise optuna.TrialPruned(f"the configuration of trial {twin}: not trained again")
        # what MO-ASHA ranks on beside accuracy: parameters, or peak RAM in a score,ram study
        cost = run.peak if record.COST.get(meta.objectives) == "peak" else run.n_params
        curve: list[float] = []
        losses: list[float] = []
        eval_losses: list[float] = []
        epoch_seconds: list[float] = []
        start = time.perf_counter()

        def on_epoch(e) -> bool:
            curve.append(e.eval_acc)
            losses.append(e.train_loss)
            eval_losses.append(e.eval_loss)
            epoch_seconds.append(e.seconds)
            record.write(trial, accs=curve, train_losses=losses, eval_losses=eval_losses,
                         epoch_seconds=epoch_seconds, seconds=time.perf_counter() - start)
            if len(meta.directions) == 1:
                trial.report(e.eval_acc, e.epoch)
            if self.on_epoch is not None:
                self.on_epoch()
            return self._should_stop(trial, curve, cost, e.epoch, recipe)

        train_candidate(run, data, on_epoch=on_epoch)
        if self.artifacts:
            self._save_weights(trial, run.model)
        if run.result.stopped_early:
            record.write(trial, reason="early_stopped")
            raise optuna.TrialPruned(f"stopped after epoch {len(curve)}")
        score = last_n_score(curve, meta.last_n, meta.objective)
        if len(meta.directions) == 1:
            return score
        return score, cost

    def _twin(self, trial: optuna.Trial, arch: ArchConfig, recipe: Recipe) -> int | None:
        """The finished trial with this draw's configuration (network, recipe, training seed),
        if the study has one: training it again would only repeat a score the study holds (a
        baseline search on search seed 1 drew the 12,072-parameter network its warm start had
        entered with stored runs, and trained it for 15 of its first 17 minutes). A queued
        trial (an --enqueue, a retry of an interrupted one) is trained as asked."""
        mine = TrialRecord.from_trial(trial)
        if mine.was_enqueued or mine.retry_of is not None:
            return None
        key = arch.key()
        return next((r.number for r in record.records(trial.study)
                     if r.kind in ("complete", "early_stopped") and r.number != trial.number
                     and r.seed == self.train_seed and r.arch is not None
                     and _same_config(r, key, recipe)), None)

    def _should_stop(self, trial: optuna.Trial, curve: list[float], cost: int,
                     epoch: int, recipe: Recipe) -> bool:
        """`cost`: this trial's parameters, or its peak RAM in a score,ram study."""
        if epoch >= self.meta.epochs or not self.rule.decides_at(epoch):
            return False
        if not TrialRecord.from_trial(trial).judged:
            # a known network confirmed on several seeds, warm-started for what it scored:
            # measured to the end (the rung-2 bar of the best curves stopped the 99.50 %
            # network at 98.92 %); one known from one seed is judged (three weak ones trained
            # for 36 minutes of a 60-minute search at a 2,000 budget)
            return False
        # MO-ASHA ranks on (accuracy, cost): parameters, or peak RAM in a score,ram study
        key = record.COST.get(self.meta.objectives, "n_params")
        peers = [Curve(r.number, r.accs, getattr(r, key) or 0, r.kind == "complete")
                 for r in record.records(trial.study) if r.accs and r.number != trial.number]
        me = Curve(trial.number, list(curve), cost)
        multi = len(self.meta.directions) > 1
        prior = self._prior_curves(bool(recipe.ema))
        decision = self.rule.decide(me, peers, multi_objective=multi, prior=prior)
        if decision is None:  # a rule without recorded decisions
            reason = self.rule.should_stop(me, peers, multi_objective=multi)
        else:
            self.decisions.append(decision.to_dict())
            record.write(trial, rungs=self.decisions)
            reason = decision.reason if decision.stop else None
        if reason:
            record.write(trial, stopped_by=reason)
        return reason is not None

    def _prior_curves(self, ema: bool) -> list[Curve]:
        """Earlier studies' curves of this data, space, trainer, run length, nearby budget and
        recipe family (EMA or not), numbered below zero so that they never collide with a
        trial (the rule keeps those of a size near the trial's, prior_weight)."""
        if self.prior is None:
            return []
        curves = self.prior.curves_for(data_checksum=self.meta.data_checksum,
                                       epochs=self.meta.epochs, budget=self.meta.budget, ema=ema,
                                       space_digest=self.meta.space_digest,
                                       trainer=trainer_key(self.meta))
        return [Curve(-1 - i, c.accs, c.params, len(c.accs) == c.epochs)
                for i, c in enumerate(curves)]

    def _save_weights(self, trial: optuna.Trial, model: torch.nn.Module) -> None:
        from optuna.artifacts import FileSystemArtifactStore, upload_artifact
        os.makedirs(self.artifacts, exist_ok=True)
        store = FileSystemArtifactStore(self.artifacts)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"trial{trial.number}.pt")
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
            artifact_id = upload_artifact(artifact_store=store, file_path=path,
                                          study_or_trial=trial)
        record.write(trial, weights=artifact_id)
