"""Re-train chosen architectures on several seeds, optionally in parallel processes."""

from __future__ import annotations

import multiprocessing

from nas_mnist.engine.device import cpu_cores
from nas_mnist.errors import SpecError
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.recipe import Recipe

# The per-seed lists of a run (everything else is one value for the whole run).
_PER_SEED = ("seeds", "mins", "means", "test_acc", "val_acc", "test_acc_final")


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
                  jobs: int = 1, threads: int | None = None, on_done=None) -> list[dict]:
    """Train each (trial number, arch dict, recipe dict) on seeds 0..seeds-1.

    Scores are on the test split, or on `val_split` held-out training images (then the test
    accuracy after the last epoch comes too). `jobs` processes share the CPU cores: each
    gets `threads` threads, by default cores / jobs.
    """
    from nas_mnist.engine.device import check_parallel
    check_parallel(jobs, "jobs")
    jobs = min(jobs, len(candidates) * seeds)  # never more processes than runs
    threads = threads or max(1, cpu_cores() // jobs)
    work = [(arch, recipe, seed, data_dir, val_split, split_seed, device, threads)
            for _, arch, recipe in candidates for seed in range(seeds)]
    results = []
    if jobs == 1:
        for job in work:
            results.append(_one_run(job))
            if on_done:
                on_done({**results[-1], "trial": candidates[(len(results) - 1) // seeds][0]})
    else:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for result in pool.imap(_one_run, work):
                results.append(result)
                if on_done:  # imap keeps the order of `work`: the trial follows from the index
                    on_done({**result, "trial": candidates[(len(results) - 1) // seeds][0]})
    runs = []
    for i, (number, arch, recipe) in enumerate(candidates):
        mine = results[i * seeds:(i + 1) * seeds]
        runs.append({"trial": number, "arch": arch, "recipe": recipe,
                     "params": ArchConfig.from_dict(arch).n_params(),
                     "seeds": [r["seed"] for r in mine], "mins": [r["last_n_min"] for r in mine],
                     "means": [r["last_n_mean"] for r in mine],
                     "eval_split": mine[0]["eval_split"], "val_split": val_split,
                     f"{mine[0]['eval_split']}_acc": [r["accs"] for r in mine],
                     **({"test_acc_final": [r["test_acc_final"] for r in mine]}
                        if val_split else {}),
                     "seconds": sum(r["seconds"] for r in mine) / len(mine),
                     "device": mine[0]["device"], "threads": threads, "jobs": jobs})
    return runs


def _canonical(arch: dict, recipe: dict) -> tuple[dict, dict] | None:
    try:
        return ArchConfig.from_dict(arch).to_dict(), Recipe.from_dict(recipe).to_dict()
    except SpecError:  # a run written by another version, or by hand: never a match
        return None


def reusable_run(runs: list[dict], arch: dict, recipe: dict, seeds: int, *, val_split: int,
                 data_checksum: str) -> dict | None:
    """An earlier run of exactly this configuration on this data and split, on seeds
    0..seeds-1 (cut to those), or None. Runs without their configuration never match."""
    wanted = _canonical(arch, recipe)
    for run in runs:
        if not (isinstance(run.get("arch"), dict) and isinstance(run.get("recipe"), dict)):
            continue
        if (run.get("seeds", [])[:seeds] == list(range(seeds))
                and run.get("data_checksum") == data_checksum
                and run.get("val_split", 0 if run.get("eval_split") == "test" else None)
                == val_split
                and _canonical(run["arch"], run["recipe"]) == wanted):
            return {k: v[:seeds] if k in _PER_SEED and isinstance(v, list) else v
                    for k, v in run.items() if k != "in_table"}
    return None


def runs_to_keep(earlier: list[dict], table: list[dict]) -> list[dict]:
    """Earlier runs that a new seed table does not hold (another configuration, or more
    seeds), marked as out of the table: paid-for runs are never dropped."""
    def holds(t, e):
        return (len(t.get("seeds", [])) >= len(e.get("seeds", []))
                and t.get("val_split") == e.get("val_split")
                and t.get("data_checksum") == e.get("data_checksum")
                and _canonical(t["arch"], t["recipe"]) == _canonical(e["arch"], e["recipe"]))
    return [{**e, "in_table": False} for e in earlier
            if isinstance(e.get("arch"), dict) and isinstance(e.get("recipe"), dict)
            and not any(isinstance(t.get("arch"), dict) and holds(t, e) for t in table)]
