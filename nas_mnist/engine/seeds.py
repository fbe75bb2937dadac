"""Re-train chosen architectures on several training seeds, optionally in parallel processes
(`report --seeds`, `train --seeds`)."""

from __future__ import annotations

import multiprocessing

from nas_mnist.engine.device import cpu_cores
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.seedrun import SeedRun


def _one_run(job: tuple) -> dict:
    arch_dict, recipe_dict, seed, data_dir, val_split, split_seed, device, threads = job
    import torch
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.device import resolve_device
    from nas_mnist.engine.evaluate import evaluate_candidate
    from nas_mnist.spec.recipe import Recipe
    torch.set_num_threads(threads)
    data = load_dataset(data_dir, val_split=val_split, seed=split_seed).to(
        resolve_device(device))
    run = evaluate_candidate(ArchConfig.from_dict(arch_dict), Recipe.from_dict(recipe_dict),
                             data, seed=seed)
    return {"seed": seed, "last_n_min": run.result.last_n_min,
            "last_n_mean": run.result.last_n_mean, "eval_split": run.result.eval_split,
            "accs": run.result.accs, "test_acc_final": run.result.test_acc_final,
            "seconds": run.result.seconds, "device": run.device}


def confirm_seeds(candidates: list[tuple[int, dict, dict]], seeds: int, *,
                  data_dir: str | None = None, val_split: int = 0, split_seed: int = 0,
                  device: str = "auto",
                  jobs: int = 1, threads: int | None = None,
                  stored: dict | None = None, on_done=None) -> list[SeedRun]:
    """Train each (trial number, arch dict, recipe dict) on seeds 0..seeds-1.

    Scores are on the test split, or on `val_split` held-out training images (then the test
    accuracy after the last epoch comes too). `jobs` processes share the CPU cores: each
    gets `threads` threads, by default cores / jobs. `stored` maps a trial number to runs
    already made, {seed: a dict as `_one_run` returns}: those seeds are taken, not trained.
    """
    from nas_mnist.engine.device import check_parallel
    check_parallel(jobs, "jobs")
    stored = stored or {}
    todo = [(number, seed) for number, _, _ in candidates for seed in range(seeds)
            if seed not in stored.get(number, {})]
    configs = {number: (arch, recipe) for number, arch, recipe in candidates}
    jobs = max(1, min(jobs, len(todo)))  # never more processes than runs
    threads = threads or max(1, cpu_cores() // jobs)
    work = [(*configs[number], seed, data_dir, val_split, split_seed, device, threads)
            for number, seed in todo]
    done: dict[tuple, dict] = {}

    def finish(i: int, result: dict) -> None:
        done[todo[i]] = result
        if on_done:
            on_done({**result, "trial": todo[i][0]})

    if jobs == 1:
        for i, job in enumerate(work):
            finish(i, _one_run(job))
    else:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for i, result in enumerate(pool.imap(_one_run, work)):  # imap keeps the order
                finish(i, result)
    runs = []
    for number, arch, recipe in candidates:
        mine = [stored.get(number, {}).get(seed) or done[(number, seed)]
                for seed in range(seeds)]
        runs.append(SeedRun(
            trial=number, arch=arch, recipe=recipe,
            params=ArchConfig.from_dict(arch).n_params(), seeds=[r["seed"] for r in mine],
            mins=[r["last_n_min"] for r in mine], means=[r["last_n_mean"] for r in mine],
            eval_split=mine[0]["eval_split"], val_split=val_split,
            curves=[r["accs"] for r in mine],
            test_acc_final=[r["test_acc_final"] for r in mine] if val_split else None,
            seconds=sum(r["seconds"] for r in mine) / len(mine), device=mine[0]["device"],
            threads=threads, jobs=jobs))
    return runs
