"""Benchmark: how fast the trainer trains the networks the search picks.

For one network, in one process, with the variants alternating so that a busy machine slows
them alike:
- **before**: the trainer as it was before the fast layers (torch's `bernoulli_` dropout mask,
  aten's max-pool, fp32 evaluation): what a recipe without `dropout_rng` still runs;
- **now**: what a new study runs (hash dropout and the max-pool kernel, `engine.kernels`;
  evaluation in the training precision);
- **skeleton**: the same loop on the network stripped to its convolutions (batch norm, ReLU and
  dropout removed, max-pool a strided slice): a bound on what faster element-wise layers can
  give in eager PyTorch, not a network anyone trains;
- **notebook**: what hand-written solutions do, a per-sample PIL rotation + `DataLoader`
  feeding the same model in fp32.
Steps are timed on a slice of the training set; the 15-epoch run is projected from the step
time plus one measured evaluation of the whole evaluation split.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas_mnist.engine import kernels
from nas_mnist.engine.builder import build_model
from nas_mnist.engine.data import Dataset
from nas_mnist.engine.train import eval_precision, evaluate, train
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.recipe import Recipe

WARMUP_STEPS = 3
VARIANTS = ("before", "now", "skeleton")


class _StridedPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 0:x.shape[-2] // 2 * 2:2, 0:x.shape[-1] // 2 * 2:2]


def skeleton(model: nn.Module) -> nn.Module:
    """`model` with only its convolutions (and head) left: a speed bound, not a network."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Dropout2d)):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(parent, name, _StridedPool())
    return model


def _recipes(recipe: Recipe) -> dict[str, Recipe]:
    before = recipe.replace(dropout_rng="bernoulli", eval_precision="fp32")
    now = recipe.replace(dropout_rng="hash", eval_precision="train")
    return {"before": before, "now": now, "skeleton": now}


def _step_seconds(variant: str, arch: ArchConfig, data: Dataset, recipe: Recipe,
                  steps: int) -> float:
    """Seconds per training step of `variant` over `steps` steps (one 1-image evaluation)."""
    n = recipe.batch_size * steps
    sub = dataclasses.replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n],
                              eval_x=data.eval_x[:1], eval_y=data.eval_y[:1])
    model = build_model(arch).to(data.train_x.device)
    if variant == "skeleton":
        skeleton(model)
    one_epoch = recipe.replace(epochs=1, last_n=1)
    if variant == "before":
        with kernels.plain():
            result = train(model, sub, one_epoch)
    else:
        result = train(model, sub, one_epoch)
    _sync(data)
    return result.epochs[0].seconds / steps


def _eval_seconds(arch: ArchConfig, data: Dataset, precision: str, *, fast: bool) -> float:
    """One evaluation of the whole split; `fast`: with the max-pool kernel, as inside train()."""
    model = build_model(arch).to(data.train_x.device)
    with kernels.fast_layers(model, dropout=False) if fast else kernels.plain():
        evaluate(model, data.eval_x[:1000], data.eval_y[:1000], data, precision=precision)
        _sync(data)
        t0 = time.perf_counter()
        evaluate(model, data.eval_x, data.eval_y, data, precision=precision)
        _sync(data)
    return time.perf_counter() - t0


def _time_notebook_pipeline(arch: ArchConfig, data: Dataset, recipe: Recipe, steps: int) -> float:
    """Seconds per training step of a per-sample PIL + DataLoader pipeline, fp32."""
    from PIL import Image
    from torch.utils.data import DataLoader

    device = data.train_x.device
    images = (data.train_x.cpu().squeeze(1).numpy() * 255).astype(np.uint8)
    labels = data.train_y.cpu()
    rng = np.random.default_rng(0)

    class RotatedMnist(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            angle = float(rng.uniform(-recipe.rotate_deg, recipe.rotate_deg))
            img = Image.fromarray(images[i]).rotate(angle, resample=Image.BILINEAR, fillcolor=0)
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)
            return (x - data.mean) / data.std, labels[i]

    model = build_model(arch).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    loader = DataLoader(RotatedMnist(), batch_size=recipe.batch_size, shuffle=True)
    model.train()
    start = None
    for step, (x, y) in enumerate(loader):
        if step == WARMUP_STEPS:
            _sync(data)
            start = time.perf_counter()
        if step == WARMUP_STEPS + steps:
            break
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(data)
    return (time.perf_counter() - start) / steps


def _sync(data: Dataset) -> None:
    if data.train_x.is_cuda:
        torch.cuda.synchronize()


def _time_in_worker(args) -> float:
    arch_dict, recipe_dict, data_dir, steps = args
    torch.set_num_threads(1)
    from nas_mnist.engine.data import load_dataset
    return _step_seconds("now", ArchConfig.from_dict(arch_dict), load_dataset(data_dir),
                         Recipe.from_dict(recipe_dict), steps)


def parallel_step_seconds(arch: ArchConfig, recipe: Recipe, data_dir: str | None, steps: int,
                          workers: int) -> float:
    """Seconds per step (the slowest worker's) when `workers` one-thread processes train at
    once with the current trainer."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        per_worker = pool.map(_time_in_worker, [(arch.to_dict(), recipe.to_dict(), data_dir,
                                                 steps)] * workers)
    return max(per_worker)


def run_bench(arch: ArchConfig, data: Dataset, recipe: Recipe, *, steps: int = 20,
              rounds: int = 5, notebook_steps: int = 30, epochs: int = 15,
              parallel_workers: int = 0, data_dir: str | None = None) -> dict:
    """Time the variants (module docstring) and project 15-epoch runs. Returns a flat dict:
    `{variant}_step_ms` (median over `rounds` alternating rounds of `steps` steps),
    `{variant}_speedup` (median of the per-round ratios to "before", with `_min`/`_max`),
    evaluation and whole-run seconds, the notebook comparison, and with `parallel_workers`
    the trials per hour of that many one-thread workers."""
    plans = _recipes(recipe)
    for variant in VARIANTS:  # warm-up: builds the kernels, fills the caches
        _step_seconds(variant, arch, data, plans[variant], WARMUP_STEPS)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for variant in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
            times[variant].append(_step_seconds(variant, arch, data, plans[variant], steps))
    out: dict = {"kernels": kernels.backend()}
    for variant in VARIANTS:
        ratios = [b / t for b, t in zip(times["before"], times[variant])]
        out[f"{variant}_step_ms"] = 1e3 * statistics.median(times[variant])
        if variant != "before":
            out[f"{variant}_speedup"] = statistics.median(ratios)
            out[f"{variant}_speedup_min"], out[f"{variant}_speedup_max"] = min(ratios), max(ratios)
    eval_before = _eval_seconds(arch, data, "fp32", fast=False)
    train_precision = eval_precision(plans["now"], data.train_x.device)
    eval_now = _eval_seconds(arch, data, train_precision, fast=True)
    steps_per_epoch = len(data.train_x) // recipe.batch_size
    run_before = epochs * (out["before_step_ms"] / 1e3 * steps_per_epoch + eval_before)
    run_now = epochs * (out["now_step_ms"] / 1e3 * steps_per_epoch + eval_now)
    notebook_step = _time_notebook_pipeline(arch, data, recipe, notebook_steps)
    run_notebook = epochs * (notebook_step * steps_per_epoch + eval_before)
    out.update({
        "precision": train_precision,
        "images_per_s": recipe.batch_size / (out["now_step_ms"] / 1e3),
        "eval_seconds_before": eval_before, "eval_seconds": eval_now,
        "seconds_per_epoch": run_now / epochs,
        "seconds_per_trial_before": run_before, "seconds_per_trial": run_now,
        "trial_speedup": run_before / run_now,
        "notebook_images_per_s": recipe.batch_size / notebook_step,
        "notebook_seconds_per_trial": run_notebook,
        "ratio_vs_notebook": run_notebook / run_now,
    })
    if parallel_workers > 1 and not data.train_x.is_cuda:
        par_step = parallel_step_seconds(arch, plans["now"], data_dir, steps, parallel_workers)
        # evaluation also runs on one thread per worker: scale the measured eval time
        par_trial = epochs * (par_step * steps_per_epoch + eval_now * torch.get_num_threads())
        out.update({"parallel_workers": parallel_workers, "parallel_seconds_per_trial": par_trial,
                    "parallel_trials_per_hour": 3600 * parallel_workers / par_trial})
    return out
