"""Benchmark: training speed of a reference network, tensor pipeline vs notebook pipeline.

The notebook pipeline is what hand-written solutions do: a per-sample Dataset that rotates a
PIL image, a DataLoader that collates batches, then the same model and optimizer step.
Each pipeline runs a fixed number of optimizer steps after a short warm-up; the 15-epoch
trial time is projected from the measured step rate plus one measured full evaluation.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from nas_mnist.spec.arch import ArchConfig
from nas_mnist.engine.builder import build_model
from nas_mnist.engine.data import Dataset
from nas_mnist.spec.recipe import Recipe
from nas_mnist.engine.train import evaluate, train

WARMUP_STEPS = 5


def _time_tensor_pipeline(arch: ArchConfig, data: Dataset, recipe: Recipe, steps: int) -> float:
    """Seconds per training step of the tensor pipeline (our trainer)."""
    n = recipe.batch_size * steps
    sub = dataclasses.replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n])
    model = build_model(arch).to(data.train_x.device)
    warm = dataclasses.replace(sub, train_x=sub.train_x[:recipe.batch_size * WARMUP_STEPS],
                               train_y=sub.train_y[:recipe.batch_size * WARMUP_STEPS])
    no_eval = dict(eval_x=sub.eval_x[:1], eval_y=sub.eval_y[:1])
    one_epoch = recipe.replace(epochs=1, last_n=1)
    train(model, dataclasses.replace(warm, **no_eval), one_epoch)
    _sync(data)
    result = train(model, dataclasses.replace(sub, **no_eval), one_epoch)
    _sync(data)
    return result.epochs[0].seconds / steps


def _time_notebook_pipeline(arch: ArchConfig, data: Dataset, recipe: Recipe, steps: int) -> float:
    """Seconds per training step of a per-sample PIL + DataLoader pipeline."""
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
    return _time_tensor_pipeline(ArchConfig.from_dict(arch_dict), load_dataset(data_dir),
                                 Recipe.from_dict(recipe_dict), steps)


def parallel_step_seconds(arch: ArchConfig, recipe: Recipe, data_dir: str | None, steps: int,
                          workers: int) -> float:
    """Seconds per step when `workers` processes with one thread each train at once."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        per_worker = pool.map(_time_in_worker, [(arch.to_dict(), recipe.to_dict(), data_dir,
                                                 steps)] * workers)
    return max(per_worker)


def run_bench(arch: ArchConfig, data: Dataset, recipe: Recipe, *, steps: int = 100,
              notebook_steps: int = 50, epochs: int = 15, parallel_workers: int = 0,
              data_dir: str | None = None, notebook_arch: ArchConfig | None = None) -> dict:
    """Measure and project. Returns a flat dict of figures (images/s, seconds).

    The notebook pipeline trains `notebook_arch` (default: `arch`) in fp32, as notebooks do.
    """
    step_s = _time_tensor_pipeline(arch, data, recipe, steps)
    model = build_model(arch).to(data.train_x.device)
    t0 = time.perf_counter()
    evaluate(model, data.eval_x, data.eval_y, data)
    _sync(data)
    eval_s = time.perf_counter() - t0
    steps_per_epoch = len(data.train_x) // recipe.batch_size
    epoch_s = step_s * steps_per_epoch + eval_s
    notebook_step_s = _time_notebook_pipeline(notebook_arch or arch, data, recipe, notebook_steps)
    notebook_trial_s = epochs * (notebook_step_s * steps_per_epoch + eval_s)
    trial_s = epochs * epoch_s
    parallel = {}
    if parallel_workers > 1 and not data.train_x.is_cuda:
        par_step_s = parallel_step_seconds(arch, recipe, data_dir, steps, parallel_workers)
        # evaluation also runs on one thread per worker: scale the measured eval time
        par_trial_s = epochs * (par_step_s * steps_per_epoch + eval_s * torch.get_num_threads())
        parallel = {"parallel_workers": parallel_workers,
                    "parallel_seconds_per_trial": par_trial_s,
                    "parallel_trials_per_hour": 3600 * parallel_workers / par_trial_s}
    return {
        "images_per_s": recipe.batch_size / step_s,
        "eval_seconds": eval_s,
        "seconds_per_epoch": epoch_s,
        "seconds_per_trial": trial_s,
        "notebook_images_per_s": recipe.batch_size / notebook_step_s,
        "notebook_seconds_per_trial": notebook_trial_s,
        "ratio_vs_notebook": notebook_trial_s / trial_s,
        "trials_per_hour": 3600 / trial_s,
        **parallel,
    }
