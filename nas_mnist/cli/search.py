"""`search`: run or resume a study, with live progress and a leaderboard at the end."""

from __future__ import annotations

import sys
import time

from nas_mnist.cli.common import (UsageError, add_data_flags, add_storage_flags, describe_data,
                                  non_negative, positive, seed, storage_url)

DEFAULT_MAX_ACTIVATIONS = 210_000  # nas_mnist.search.settings (not imported: --help stays light)

PRUNE_RULES = ("asha", "percentile", "none")  # registered in nas_mnist.search.stopping


def add_parsers(sub) -> None:
    p = sub.add_parser("search", help="run or resume a study")
    p.add_argument("--budget", type=positive(), default=10_000,
                   help="hard limit on parameters; larger samples are never trained (10000)")
    p.add_argument("--max-macs", type=positive(), metavar="M",
                   help="hard limit on multiply-accumulates per image (fvcore's count); "
                        "larger samples are never trained (default: none)")
    p.add_argument("--min-params", type=non_negative, metavar="N",
                   help="size floor: smaller samples are refused before training like those "
                        "over the budget (default: half the budget; 0: none; not with "
                        "--objectives score,params)")
    p.add_argument("--max-activations", type=non_negative, metavar="A",
                   help="cost limit: activation elements per image (training time follows "
                        f"them); larger samples are never trained (default {DEFAULT_MAX_ACTIVATIONS:,}"
                        "; 0: none)")
    p.add_argument("--space", default="default",
                   help="search-space name in search_spaces/ or a YAML path (default: the "
                        "focused space; wide: the whole family)")
    p.add_argument("--warm-start", nargs="+", default=["auto"], metavar="auto|none|FILE",
                   help="enqueue the best few known configurations that fit first: auto (the "
                        "packaged prior and the studies in studies/ on the same data; default),"
                        " none (a cold search), or prior files from benchmarks/build_prior.py")
    add_storage_flags(p, required_study=False)
    p.add_argument("--trials", type=positive(), default=20,
                   help="trained networks wanted in the study in total; refused samples "
                        "do not count (20)")
    p.add_argument("--timeout", type=positive(float), metavar="SECONDS",
                   help="stop starting trials after this many seconds")
    p.add_argument("--seed", type=seed, default=0, help="sampler seed (0)")
    p.add_argument("--sampler", choices=["tpe", "random"], default="tpe",
                   help="tpe: multivariate TPE that learns the budget constraint (default)")
    p.add_argument("--train-seed", type=seed, default=0,
                   help="training seed of every trial (0)")
    p.add_argument("--jobs", default="auto", metavar="K|auto",
                   help="worker processes (auto: one one-thread worker per CPU core, one "
                        "worker on a GPU)")
    p.add_argument("--epochs", type=positive(), default=15,
                   help="training epochs of a trial that is not stopped early (15)")
    p.add_argument("--last-n", type=positive(),
                   help="score over the last N epochs (default: 3 of 15; 1 for runs of "
                        "under 10 epochs)")
    p.add_argument("--objective", choices=["min", "mean"], default="min",
                   help="score = min (consistently, default) or mean of the last N epochs")
    p.add_argument("--objectives", choices=["score", "score,params"], default="score",
                   help="score: maximise it under the budget (default); score,params: also "
                        "minimise parameters (a two-objective study)")
    p.add_argument("--prune", choices=PRUNE_RULES, default="asha",
                   help="stopping rule for trailing trials (asha, default)")
    p.add_argument("--prune-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a stopping-rule option, e.g. rungs=2,6 eta=4 min_peers=5 for asha; "
                        "may repeat")
    p.add_argument("--enqueue", action="append", default=[], metavar="CONFIG.json",
                   help="seed a known configuration (runs once); may repeat")
    p.add_argument("--artifacts", help="folder for per-trial weights "
                                       "(default: studies/<study>.artifacts)")
    add_data_flags(p)
    p.set_defaults(handler=cmd_search)


def _jobs(text: str, device) -> int:
    from nas_mnist.engine.device import auto_jobs
    if text == "auto":
        return auto_jobs(device)
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--jobs must be 'auto' or an integer >= 1, got {text!r}")
    return int(text)


def _options(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--prune-opt takes KEY=VALUE, got {pair!r}")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def cmd_search(args) -> int:
    from nas_mnist.spec.score import default_last_n
    last_n = args.last_n or default_last_n(args.epochs)
    if last_n > args.epochs:
        raise UsageError(f"--last-n {last_n} exceeds --epochs {args.epochs}")
    from nas_mnist.engine.device import resolve_device
    from nas_mnist.search.storage import default_artifacts
    from nas_mnist.search.study import SearchSettings, load_search_data, preflight
    url = storage_url(args)
    device = resolve_device(args.device)
    warm = tuple(args.warm_start)
    if len(warm) > 1 and ("none" in warm or "auto" in warm):
        raise UsageError("--warm-start takes auto, none, or prior files (not mixed)")
    settings = SearchSettings(
        study=args.study, storage=url, space=args.space, budget=args.budget,
        max_macs=args.max_macs, min_params=args.min_params,
        max_activations=args.max_activations, warm_start=warm, epochs=args.epochs,
        last_n=last_n, objective=args.objective, objectives=args.objectives,
        trials=args.trials, timeout=args.timeout, seed=args.seed, sampler=args.sampler,
        train_seed=args.train_seed, jobs=_jobs(args.jobs, device), threads=args.threads,
        device=args.device, data_dir=args.data_dir, val_split=args.val_split,
        prune=args.prune, prune_options=_options(args.prune_opt),
        artifacts=args.artifacts or default_artifacts(url, args.study))
    # Everything that can be checked without the storage is checked before touching it.
    space = preflight(settings)
    enqueued = [_load_enqueued(path) for path in args.enqueue]
    for source in warm:
        if source not in ("auto", "none"):
            from nas_mnist.search.prior import load_prior
            load_prior(source)  # a missing or malformed file stops here, before any storage
    data = load_search_data(settings)
    for arch, _ in enqueued:
        data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
    _check_artifacts(settings.artifacts)
    return _run(args, settings, space, data, enqueued)


def _load_enqueued(path: str):
    from nas_mnist.spec.arch import load_arch
    from nas_mnist.spec.recipe import Recipe
    arch, doc = load_arch(path)
    return arch, Recipe.from_dict(doc["recipe"]) if "recipe" in doc else None


def _check_artifacts(folder: str) -> None:
    from pathlib import Path
    if Path(folder).exists() and not Path(folder).is_dir():
        raise UsageError(f"--artifacts {folder} is a file, not a folder")


def _run(args, settings, space, data, enqueued) -> int:
    from nas_mnist.cli.progress import LiveProgress
    from nas_mnist.search.record import StudyMeta, records
    from nas_mnist.search.storage import mask_url
    from nas_mnist.search.study import create_or_resume, enqueue_config, n_trained, run_search
    from nas_mnist.search.study import warm_start
    study, notes = create_or_resume(settings, space, data)
    meta = StudyMeta.from_study(study)
    notes += warm_start(study, settings, space, meta)
    for arch, recipe in enqueued:
        how = enqueue_config(study, arch, recipe, space)
        notes.append({None: f"already in the study, not enqueued again: {arch.describe()}",
                      "sampled": f"enqueued {arch.describe()} as a sample of space {space.name} "
                                 f"(the sampler learns from its result)",
                      "fixed": f"enqueued {arch.describe()} as a fixed configuration: space "
                               f"{space.name} cannot express it, so the sampler learns nothing "
                               f"from it"}[how])
    kind = "score" if meta.objectives == "score" else "score and parameters"
    new = not any(r.kind != "running" or r.accs for r in records(study))
    print(f"study {settings.study!r} at {mask_url(settings.storage)} "
          f"({'new' if new else 'resumed'}, {kind}): budget {settings.budget:,}"
          + (f" parameters and {meta.max_macs:,} MACs" if meta.max_macs else "") + ", "
          f"space {space.name}, score = {meta.objective} of the last {meta.last_n} of "
          f"{meta.epochs} epochs on {meta.eval_split}, {describe_data(data)}")
    print("limits: " + ", ".join(
        [f"size floor {meta.min_params:,} parameters" if meta.min_params else "no size floor",
         f"at most {meta.max_activations:,} activations per image" if meta.max_activations
         else "no activation limit"]) + " (refused before training)")
    cost = _calibrate(settings, data, space)
    print(f"cost model: {cost.describe()}")
    print(f"stopping rule {meta.rule}; {settings.jobs} worker(s); "
          f"{n_trained(study)} of {settings.trials} networks trained so far")
    if meta.rule and meta.rule.startswith("asha") and meta.objectives == "score":
        from nas_mnist.search.prior import PACKAGED_PRIOR, describe_rung_prior, load_prior
        if "prior=0" not in meta.rule:
            print("rungs: " + describe_rung_prior(load_prior(PACKAGED_PRIOR),
                                                  data_checksum=meta.data_checksum,
                                                  epochs=meta.epochs, budget=meta.budget))
    for note in notes:
        print(note)
    args.interrupt_note = ("nas-mnist: interrupted; the study is consistent and the "
                           "interrupted trial runs first when you re-run the same command")
    deadline = time.time() + settings.timeout if settings.timeout else None
    progress = LiveProgress(sys.stderr, meta, trials=settings.trials, jobs=settings.jobs,
                            deadline=deadline, cost=cost)
    try:
        run_search(settings, study, data=data, on_progress=progress.update)
    finally:
        progress.update(study)
        progress.close()
    print_summary(study, settings.storage)
    return 0


def _calibrate(settings, data, space):
    """The cost model, timed with the threads each worker will have, in the precision the
    space's recipe trains in here."""
    import torch
    from nas_mnist.engine.costmodel import calibrate
    from nas_mnist.engine.device import cpu_cores, resolve_precision
    dim = space.recipe.get("precision")
    precision = dim.fixed if dim is not None and dim.is_fixed else "fp32"
    device = data.train_x.device
    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads or max(1, cpu_cores() // settings.jobs))
    try:
        return calibrate(device, n_train=len(data.train_x), n_eval=len(data.eval_x),
                         bf16=resolve_precision(precision, device) == "bf16")
    finally:
        torch.set_num_threads(before)


def print_summary(study, url: str, k: int = 10) -> None:
    from nas_mnist.results.ranking import leaderboard, study_meta
    from nas_mnist.search.record import KIND_ORDER, count_kinds
    from nas_mnist.search.storage import mask_url
    kinds = count_kinds(study)
    print("trials: " + ", ".join(f"{kinds[k]} {k.replace('_', ' ')}" for k in KIND_ORDER
                                 if kinds.get(k)))
    rows = leaderboard(study, k)
    if not rows:
        print("no feasible trial has completed yet")
    else:
        label = study_meta(study).label
        w = max(5, *(len(r.trial_label) for r in rows))
        print(f"{'rank':>4} {'trial':>{w}} {'params':>7} {'MACs':>10} {'act.':>8} "
              f"{label:>19}  architecture")
        for r in rows:
            print(f"{r.rank:>4} {r.trial_label:>{w}} {r.n_params:>7,} {r.macs:>10,} "
                  f"{r.activations:>8,} {r.score:>19.2f}  {r.describe}")
    print(f"storage: {mask_url(url)}")
