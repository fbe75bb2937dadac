"""CLI for `search`; `export`, `report` and `dashboard` live in cli_results."""

from __future__ import annotations

import sys

from nas_mnist.cli_results import COMMANDS as RESULT_COMMANDS
from nas_mnist.cli_results import add_result_parsers


def add_search_parsers(sub, add_data_flags, add_storage_flags, positive, non_negative):
    p = sub.add_parser("search", help="run or resume a study")
    p.add_argument("--budget", type=positive(), default=10_000, help="max parameters (10000)")
    p.add_argument("--space", default="default",
                   help="search-space name in search_spaces/ or a YAML path (default)")
    add_storage_flags(p, required_study=False)
    p.add_argument("--trials", type=positive(), default=20,
                   help="complete-or-pruned trials wanted in the study in total (20)")
    p.add_argument("--timeout", type=positive(float), help="stop starting trials after S seconds")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (0)")
    p.add_argument("--sampler", choices=["tpe", "random"], default="tpe",
                   help="tpe: multivariate TPE that learns the budget constraint (default)")
    p.add_argument("--train-seed", type=int, default=0, help="training seed of every trial (0)")
    p.add_argument("--jobs", type=positive(), default=1, help="worker processes (1)")
    p.add_argument("--epochs", type=positive(), default=15)
    p.add_argument("--last-n", type=positive(), default=3)
    p.add_argument("--objective", choices=["min", "mean"], default="min")
    p.add_argument("--enqueue", action="append", default=[], metavar="CONFIG.json",
                   help="seed a known configuration (runs once); may repeat")
    p.add_argument("--artifacts", help="folder for per-trial weights "
                                       "(default: studies/<study>.artifacts)")
    add_data_flags(p)
    add_result_parsers(sub, add_storage_flags, positive, add_data_flags)


def _storage_url(args) -> str:
    from nas_mnist.storage import default_storage
    return args.storage or default_storage(args.study)


def cmd_search(args) -> int:
    from nas_mnist.cli import UsageError
    if args.last_n > args.epochs:
        raise UsageError(f"--last-n {args.last_n} exceeds --epochs {args.epochs}")
    from tqdm import tqdm
    from nas_mnist.arch import load_arch
    from nas_mnist.data import load_dataset
    from nas_mnist.recipe import Recipe
    from nas_mnist.results import feasible
    from nas_mnist.search import SearchSettings, create_or_resume, enqueue_config, preflight
    from nas_mnist.search import run_search
    from nas_mnist.storage import default_artifacts, finished

    url = _storage_url(args)
    artifacts = args.artifacts or default_artifacts(url, args.study)
    settings = SearchSettings(
        study=args.study, storage=url, space=args.space, budget=args.budget, epochs=args.epochs,
        last_n=args.last_n, objective=args.objective, trials=args.trials, timeout=args.timeout,
        seed=args.seed, sampler=args.sampler, train_seed=args.train_seed, jobs=args.jobs,
        threads=args.threads, device=args.device, data_dir=args.data_dir,
        val_split=args.val_split, artifacts=artifacts)
    # Everything that can be checked without the storage is checked before touching it.
    space = preflight(settings)
    enqueued = [load_arch(path) for path in args.enqueue]
    load_dataset(args.data_dir, val_split=args.val_split, seed=args.seed)
    from nas_mnist.device import resolve_device
    resolve_device(args.device)
    study = create_or_resume(settings, space)
    for arch, doc in enqueued:
        recipe = Recipe.from_dict(doc["recipe"]) if "recipe" in doc else None
        if not enqueue_config(study, arch, recipe):
            print(f"already in the study, not enqueued again: {arch.describe()}", file=sys.stderr)
    split = "val" if args.val_split else "test"
    print(f"study {args.study!r} at {url}: budget {args.budget:,}, space {space.name}, "
          f"score = {args.objective} of the last {args.last_n} of {args.epochs} epochs on {split}")
    bar = tqdm(total=args.trials, initial=finished(study), unit="trial", file=sys.stderr)

    def on_progress(st):
        bar.n = finished(st)
        best = feasible(st)
        if best:
            bar.set_postfix_str(f"best {best[0].values[0]:.2f} % @ {int(best[0].values[1]):,} p")
        bar.refresh()

    try:
        run_search(settings, study, on_progress)
    finally:
        bar.close()
    print_summary(study, url, split)
    return 0


def print_summary(study, url: str, split: str, k: int = 10) -> None:
    from nas_mnist.results import leaderboard
    from nas_mnist.storage import count_kinds
    kinds = count_kinds(study)
    print("trials: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))
    rows = leaderboard(study, k)
    if not rows:
        print("no feasible trial has completed yet")
    else:
        meta = study.user_attrs.get("nas_mnist", {})
        label = f"{meta.get('objective', 'min')}-last-{meta.get('last_n', 3)} {split} %"
        print(f"{'rank':>4} {'trial':>5} {'params':>7} {'MACs':>10} {label:>17}  architecture")
        for r in rows:
            print(f"{r.rank:>4} {r.trial:>5} {r.params:>7,} {r.macs:>10,} {r.score:>17.2f}  "
                  f"{r.describe}")
    print(f"storage: {url}")


COMMANDS = {"search": cmd_search, **RESULT_COMMANDS}
