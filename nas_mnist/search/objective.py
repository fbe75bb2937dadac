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
from dataclasses import dataclass
from typing import Callable

import optuna
import torch

from nas_mnist import __version__
from nas_mnist.engine.data import Dataset
from nas_mnist.engine.evaluate import evaluate_candidate
from nas_mnist.errors import SpecError
from nas_mnist.search import record
from nas_mnist.search.record import StudyMeta, TrialRecord
from nas_mnist.search.recovery import worker_id
from nas_mnist.search.space import SearchSpace, suggest_arch
from nas_mnist.search.stopping import Curve, StopRule
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.recipe import Recipe
from nas_mnist.spec.score import last_n_score

INVALID_CONSTRAINT = 1e9  # constraint value of a sample that is not a valid network


@dataclass(frozen=True)
class EpochEvent:
    """What a live progress display needs after each trained epoch."""

    trial: int
    epoch: int
    epochs: int
    acc: float
    n_params: int
    epoch_seconds: float


class Objective:
    def __init__(self, meta: StudyMeta, space: SearchSpace, data: Dataset, rule: StopRule, *,
                 train_seed: int = 0, artifacts: str | None = None,
                 on_epoch: Callable[[EpochEvent], None] | None = None):
        self.meta, self.space, self.data, self.rule = meta, space, data, rule
        self.train_seed, self.artifacts, self.on_epoch = train_seed, artifacts, on_epoch

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, int]:
        record.write(trial, worker=worker_id(), version=__version__)
        try:
            arch, recipe = self._sample(trial)
        except SpecError as err:
            record.write(trial, reason="invalid", error=str(err))
            trial.set_constraint("param_budget", INVALID_CONSTRAINT)
            if self.meta.max_macs is not None:
                trial.set_constraint("max_macs", INVALID_CONSTRAINT)
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
            arch, recipe = suggest_arch(trial, self.space), self.space.recipe_for(trial)
        self.data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
        return arch, recipe.replace(epochs=self.meta.epochs, last_n=self.meta.last_n)

    def _evaluate(self, trial: optuna.Trial, arch: ArchConfig, recipe: Recipe):
        meta, data = self.meta, self.data
        record.write(trial, arch=arch.to_dict(), recipe=recipe.to_dict())
        curve: list[float] = []
        losses: list[float] = []
        eval_losses: list[float] = []
        epoch_seconds: list[float] = []
        n_params_box: list[int] = []
        start = time.perf_counter()

        def on_counted(n_params: int, macs: int | None) -> None:
            n_params_box.append(n_params)
            record.write(trial, n_params=n_params, macs=macs)
            trial.set_constraint("param_budget", n_params - meta.budget)
            if meta.max_macs is not None:
                trial.set_constraint("max_macs", macs - meta.max_macs)

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
                self.on_epoch(EpochEvent(trial.number, e.epoch, meta.epochs, e.eval_acc,
                                         n_params_box[0], e.seconds))
            return self._should_stop(trial, curve, n_params_box[0], e.epoch)

        record.write(trial, seed=self.train_seed, eval_split=data.eval_split,
                     threads=torch.get_num_threads(), data_checksum=data.checksum,
                     data_mean=data.mean, data_std=data.std)
        run = evaluate_candidate(arch, recipe, data, seed=self.train_seed, budget=meta.budget,
                                 max_macs=meta.max_macs, on_counted=on_counted,
                                 on_epoch=on_epoch)
        record.write(trial, device=run.device)
        if run.refused:
            record.write(trial, reason=run.refused)
            raise optuna.TrialPruned(f"{run.refused}: {run.n_params:,} parameters, "
                                     f"{run.macs:,} MACs")
        if self.artifacts:
            self._save_weights(trial, run.model)
        if run.result.stopped_early:
            record.write(trial, reason="early_stopped")
            raise optuna.TrialPruned(f"stopped after epoch {len(curve)}")
        score = last_n_score(curve, meta.last_n, meta.objective)
        return score if len(meta.directions) == 1 else (score, run.n_params)

    def _should_stop(self, trial: optuna.Trial, curve: list[float], n_params: int,
                     epoch: int) -> bool:
        if epoch >= self.meta.epochs or not self.rule.decides_at(epoch):
            return False
        peers = [Curve(r.number, r.accs, r.n_params or 0, r.kind == "complete")
                 for r in record.records(trial.study) if r.accs and r.number != trial.number]
        reason = self.rule.should_stop(Curve(trial.number, list(curve), n_params), peers,
                                       multi_objective=len(self.meta.directions) > 1)
        if reason:
            record.write(trial, stopped_by=reason)
        return reason is not None

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
