"""The one evaluate path: build -> count -> refuse or train -> score. No Optuna, no printing.

The search, `train`, `export` and the multi-seed confirmation all call `evaluate_candidate`,
so a network is seeded, counted and scored the same way everywhere.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Callable

import torch

from nas_mnist._version import __version__
from nas_mnist.engine.builder import build_model
from nas_mnist.engine.counting import count_macs, count_params
from nas_mnist.engine.data import Dataset
from nas_mnist.engine.train import (EpochStats, TrainResult, eval_precision, evaluate,
                                     load_state, train)
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.footprint import footprint
from nas_mnist.spec.limits import Counts, Limits
from nas_mnist.spec.recipe import Recipe


def in_shape(arch: ArchConfig) -> tuple[int, int, int]:
    return (arch.in_channels, arch.image_size, arch.image_size)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from nas_mnist.engine.device import cpu_model
    model, machine = cpu_model(), platform.machine()
    kind = machine if model == machine else f"{model}, {machine}"  # CPU kinds differ in bf16
    return f"cpu ({kind}, {torch.get_num_threads()} threads)"


@dataclass
class Evaluation:
    arch: ArchConfig
    recipe: Recipe
    seed: int
    n_params: int
    macs: int | None = None
    activations: int | None = None  # per image (spec.footprint)
    peak: int | None = None  # elements alive at once at the worst layer (spec.footprint)
    refused: str | None = None  # over_budget, under_floor, over_macs, over_activations,
    # over_ram or None (trained)
    result: TrainResult | None = None
    model: torch.nn.Module | None = None
    device: str = ""

    def summary(self, data: Dataset) -> dict:
        """Everything a `train --json-out` file or a winner holds about this run."""
        out = {"arch": self.arch.to_dict(), "recipe": self.recipe.to_dict(), "seed": self.seed,
               "params": self.n_params, "macs": self.macs, "activations": self.activations,
               "peak_ram_int8": self.peak, "device": self.device,
               "threads": torch.get_num_threads(), "data_checksum": data.checksum,
               "data_mean": data.mean, "data_std": data.std, "version": __version__}
        if self.result is not None:
            out.update(self.result.to_dict())
        return out


def prepare_candidate(arch: ArchConfig, recipe: Recipe, data: Dataset, *, seed: int = 0,
                      limits: Limits | None = None) -> Evaluation:
    """Build `arch` (its initial weights drawn from `seed`), count it, and judge it against
    the study's `limits` (spec.limits; None: none): `refused` names the limit it breaches.
    Nothing is trained; `train_candidate` does that next."""
    torch.manual_seed(seed)  # the initial weights: the same seed re-trains to the same numbers
    model = build_model(arch)
    n_params = count_params(model)
    cost = footprint(arch)
    run = Evaluation(arch, recipe, seed, n_params, count_macs(model, in_shape(arch)),
                     cost.activations, cost.peak, model=model,
                     device=describe_device(data.train_x.device))
    if limits is not None:
        run.refused = limits.refusal_kind(
            Counts(n_params, cost.activations, cost.peak_int8_bytes, run.macs))
    return run


def train_candidate(run: Evaluation, data: Dataset, *,
                    on_epoch: Callable[[EpochStats], bool | None] | None = None,
                    on_step: Callable[[], None] | None = None) -> Evaluation:
    """Train a prepared candidate; `on_epoch` sees each epoch and may return True to stop."""
    run.model = run.model.to(data.train_x.device)
    run.result = train(run.model, data, run.recipe, seed=run.seed, on_epoch=on_epoch,
                       on_step=on_step)
    if data.eval_split == "val":
        run.result.test_acc_final, _ = evaluate(run.model, data.test_x, data.test_y, data,
                                                precision=run.result.eval_precision)
    return run


def evaluate_candidate(arch: ArchConfig, recipe: Recipe, data: Dataset, *, seed: int = 0,
                       limits: Limits | None = None,
                       on_epoch: Callable[[EpochStats], bool | None] | None = None,
                       on_step: Callable[[], None] | None = None) -> Evaluation:
    """Prepare `arch` and train it unless the limits refuse it."""
    run = prepare_candidate(arch, recipe, data, seed=seed, limits=limits)
    if run.refused:
        return run
    return train_candidate(run, data, on_epoch=on_epoch, on_step=on_step)


def evaluate_weights(arch: ArchConfig, data: Dataset, weights_path: str,
                     recipe: Recipe | None = None) -> dict:
    """Load a state_dict into `arch` and measure it on the test set (no training), in the
    precision `recipe` evaluated in (fp32 without one)."""
    device = data.test_x.device
    model = load_state(build_model(arch), weights_path).to(device)
    precision = eval_precision(recipe, device) if recipe is not None else "fp32"
    acc, loss = evaluate(model, data.test_x, data.test_y, data, precision=precision)
    return {"split": "test", "acc": acc, "loss": loss, "images": len(data.test_x),
            "precision": precision}
