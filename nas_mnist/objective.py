"""The trial objective: sample, count, refuse over-budget before training, train, score.

A trial over the budget is PRUNED with a positive `param_budget` constraint (so the sampler
learns where the budget lies) and is never trained. Trials that trail the completed trials'
curves at the same epoch stop early; only networks no larger than the trial's own count as
peers, so a small network is never stopped for trailing bigger ones (it may still be on the
accuracy-vs-size front).
"""

from __future__ import annotations

import os
import tempfile
import time

import optuna
import torch
from optuna.trial import TrialState

from nas_mnist import __version__
from nas_mnist.arch import ArchConfig
from nas_mnist.builder import build_model
from nas_mnist.counting import count_macs, count_params
from nas_mnist.data import Dataset
from nas_mnist.recipe import Recipe
from nas_mnist.run import describe_device, in_shape
from nas_mnist.space import SearchSpace, suggest_arch
from nas_mnist.train import train

INVALID_CONSTRAINT = 1e9  # constraint value of a sample that is not a valid network


def score(accs: list[float], settings) -> float:
    tail = accs[-settings.last_n:]
    return min(tail) if settings.objective == "min" else sum(tail) / len(tail)


class Objective:
    def __init__(self, settings, space: SearchSpace, data: Dataset):
        self.settings, self.space, self.data = settings, space, data

    def __call__(self, trial: optuna.Trial) -> tuple[float, int]:
        s = self.settings
        fixed = trial.user_attrs.get("fixed_arch")
        try:
            if fixed:
                arch = ArchConfig.from_dict(fixed)
                recipe = Recipe.from_dict(trial.user_attrs.get("fixed_recipe", {}))
            else:
                arch = suggest_arch(trial, self.space)
                recipe = self.space.recipe_for(trial)
            recipe = recipe.replace(epochs=s.epochs, last_n=s.last_n)
        except ValueError as err:
            trial.set_user_attr("reason", "invalid")
            trial.set_user_attr("error", str(err))
            trial.set_constraint("param_budget", INVALID_CONSTRAINT)
            raise optuna.TrialPruned(f"invalid configuration: {err}")
        torch.manual_seed(s.train_seed)  # as train_arch does: `train` re-trains it exactly
        model = build_model(arch)
        n_params = count_params(model)
        trial.set_user_attr("arch", arch.to_dict())
        trial.set_user_attr("recipe", recipe.to_dict())
        trial.set_user_attr("params", n_params)
        trial.set_constraint("param_budget", n_params - s.budget)
        if n_params > s.budget:
            trial.set_user_attr("reason", "over_budget")
            raise optuna.TrialPruned(f"{n_params} parameters > budget {s.budget}")
        trial.set_user_attr("macs", count_macs(model, in_shape(arch)))
        return self._train(trial, model, recipe, n_params)

    def _train(self, trial, model, recipe: Recipe, n_params: int) -> tuple[float, int]:
        s, data = self.settings, self.data
        trial.set_user_attr("eval_split", data.eval_split)
        trial.set_user_attr("device", describe_device(data.train_x.device))
        trial.set_user_attr("version", __version__)
        trial.set_user_attr("train_seed", s.train_seed)
        trial.set_user_attr("threads", torch.get_num_threads())  # CPU numerics depend on it
        trial.set_user_attr("data_checksum", data.checksum)
        accs, losses, eval_losses, start = [], [], [], time.perf_counter()

        def on_epoch(e) -> bool:
            accs.append(e.eval_acc)
            losses.append(e.train_loss)
            eval_losses.append(e.eval_loss)
            trial.set_user_attr("acc", accs)
            trial.set_user_attr("train_loss", losses)
            trial.set_user_attr("eval_loss", eval_losses)
            trial.set_user_attr("seconds", time.perf_counter() - start)
            return self._hopeless(trial, e.epoch, e.eval_acc, n_params)

        result = train(model.to(data.train_x.device), data, recipe, seed=s.train_seed,
                       on_epoch=on_epoch)
        if result.stopped_early:
            trial.set_user_attr("reason", "early_stopped")
            raise optuna.TrialPruned(f"stopped after epoch {len(accs)}")
        value = score(accs, s)
        if s.artifacts:
            self._save_weights(trial, model)
        return value, n_params

    def _hopeless(self, trial, epoch: int, acc: float, n_params: int) -> bool:
        """Below the chosen quantile of completed, no larger trials at this epoch: stop early."""
        s = self.settings
        if epoch < s.prune_warmup or epoch >= s.epochs:
            return False
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        peers = sorted(t.user_attrs["acc"][epoch - 1] for t in done
                       if len(t.user_attrs.get("acc", [])) >= epoch
                       and t.user_attrs.get("params", 0) <= n_params)
        if len(peers) < s.prune_min_trials:
            return False
        threshold = peers[int(s.prune_quantile * (len(peers) - 1))]
        return acc < threshold

    def _save_weights(self, trial, model) -> None:
        from optuna.artifacts import FileSystemArtifactStore, upload_artifact
        os.makedirs(self.settings.artifacts, exist_ok=True)
        store = FileSystemArtifactStore(self.settings.artifacts)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"trial{trial.number}.pt")
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
            artifact_id = upload_artifact(artifact_store=store, file_path=path,
                                          study_or_trial=trial)
        trial.set_user_attr("weights_artifact", artifact_id)
