"""`search`: run or resume a study, with live progress and a leaderboard at the end."""

from __future__ import annotations

import argparse

from nas_mnist.cli.common import (UsageError, add_data_flags, add_storage_flags, finite_float,
                                  non_negative, positive, seed, storage_url)
from nas_mnist.api.defaults import DEFAULT_MAX_ACTIVATIONS, RULES, RUN_DEFAULTS as RUN



def add_parsers(sub) -> None:
    p = sub.add_parser("search", help="run or resume a study")
    _study_flags(p.add_argument_group(
        "what the study is", "stored with the study: a resume or a worker joining it takes the "
        "study's own; a value that differs is refused"))
    add_storage_flags(p, required_study=False)
    _run_flags(p.add_argument_group("how this run goes", "chosen anew by every run"))
    add_data_flags(p)
    # what a study *is* comes from the storage when it exists: None means "the study's own"
    p.set_defaults(handler=cmd_search, val_split=None, split_seed=None)


def _study_flags(group) -> None:
    group.add_argument("--budget", type=positive(), default=None,
                   help="hard limit on parameters; larger samples are never trained (10000 "
                        "for a new study; a study's own settings when resumed or joined)")
    group.add_argument("--max-macs", type=positive(), metavar="M",
                   help="hard limit on multiply-accumulates per image (fvcore's count); "
                        "larger samples are never trained (default: none)")
    group.add_argument("--max-ram", type=positive(), metavar="BYTES",
                   help="hard limit on peak activation memory at int8 (the largest input + "
                        "output of a layer, docs/how-it-works.md); larger samples are never trained")
    group.add_argument("--min-params", type=non_negative, metavar="N",
                   help="size floor: smaller samples are refused before training like those "
                        "over the budget (default: 0.4 of the budget; 0: none; not with "
                        "--objectives score,params)")
    group.add_argument("--max-activations", type=non_negative, metavar="A",
                   help="cost limit: activation elements per image (training time follows "
                        f"them); larger samples are never trained (default {DEFAULT_MAX_ACTIVATIONS:,}"
                        "; 0: none)")
    group.add_argument("--space", default=None,
                   help="search-space name in search_spaces/ or a YAML path (default: the "
                        "focused space; wide: the whole family)")
    group.add_argument("--arch", metavar="FILE",
                   help="a recipe study: train this file's architecture (a winner or config "
                        "JSON, or a packaged config: trial52, trial81, woolly3762) with "
                        "recipes from the space (default: the recipe space); the file's own "
                        "recipe runs first; the budget defaults to its parameters")
    group.add_argument("--epochs", type=positive(), default=None,
                   help="training epochs of a trial that is not stopped early (15)")
    group.add_argument("--last-n", type=positive(),
                   help="score over the last N epochs (default: 3 of 15; 1 for runs of "
                        "under 10 epochs)")
    group.add_argument("--objective", choices=["min", "mean"], default=None,
                   help="score = min (consistently, default) or mean of the last N epochs")
    group.add_argument("--objectives", choices=["score", "score,params", "score,ram"], default=None,
                   help="score: maximise it under the budget (default); score,params: also "
                        "minimise parameters; score,ram: also minimise peak RAM at int8 "
                        "(two-objective studies)")


def _run_flags(group) -> None:
    group.add_argument("--warm-start", nargs="+", default=[RUN["warm_start"]], metavar="auto|none|FILE",
                   help="enqueue the best few known configurations that fit first: auto (the "
                        "packaged prior and the studies in studies/ on the same data; default),"
                        " none (a cold search), or prior files from benchmarks/build_prior.py")
    group.add_argument("--retrain-known", action="store_true",
                   help="train warm-started networks again; by default one whose stored seed "
                        "runs were measured as this study measures (data, epochs, last-N, "
                        "trainer) enters the study with them")
    group.add_argument("--trials", type=positive(), default=RUN["trials"],
                   help="trained networks wanted in the study in total; refused samples "
                        "do not count (20)")
    group.add_argument("--timeout", type=positive(float), metavar="SECONDS",
                   help="stop starting trials after this many seconds")
    group.add_argument("--seed", type=seed, default=RUN["seed"], help="sampler seed (0)")
    group.add_argument("--sampler", choices=["tpe", "random"], default=RUN["sampler"],
                   help="tpe: multivariate TPE that learns the budget constraint (default)")
    group.add_argument("--train-seed", type=seed, default=RUN["train_seed"],
                   help="training seed of every trial (0)")
    group.add_argument("--jobs", default=RUN["jobs"], metavar="K|auto",
                   help="worker processes (auto: one one-thread worker per CPU core; four "
                        "sharing a GPU)")
    group.add_argument("--prune", choices=list(RULES), default=RUN["prune"],
                   help="stopping rule for trailing trials (asha, default)")
    group.add_argument("--prune-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a stopping-rule option, e.g. rungs=2,6 eta=4 min_peers=5 for asha; "
                        "may repeat")
    group.add_argument("--enqueue", action="append", default=[], metavar="CONFIG.json",
                   help="seed a known configuration (runs once); may repeat")
    group.add_argument("--confirm-top", type=non_negative, default=RUN["confirm_top"], metavar="K",
                   help="select on several seeds: keep the study's top K trained on "
                        "--confirm-seeds training seeds each, and rank by their mean (0: off)")
    group.add_argument("--confirm-seeds", type=positive(), default=RUN["confirm_seeds"], metavar="S",
                   help="training seeds of a confirmed trial, its own included (3)")
    group.add_argument("--confirm-margin", type=_margin, default=RUN["confirm_margin"],
                   metavar="POINTS", help="confirm no trial more than POINTS below the "
                   "leader's mean ('none': every top-K trial; default %(default)s)")
    group.add_argument("--artifacts", help="folder for per-trial weights "
                                       "(default: studies/<study>.artifacts)")


def _jobs(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--jobs must be 'auto' or an integer >= 1, got {text!r}")
    return int(text)


def cmd_search(args) -> int:
    """Parse, one library call, print."""
    from nas_mnist.api import search
    warm = tuple(args.warm_start)

    def log(line: str) -> None:
        # The header comes once the study is open: only from then on is there a study whose
        # consistency an interruption can speak of (before, a storage that never answered
        # was "interrupted; the study is consistent" though none existed).
        args.interrupt_note = ("nas-mnist: interrupted; the study is consistent and the "
                               "interrupted trial runs first when you re-run the same command")
        print(line)

    study = search(
        budget=args.budget, max_macs=args.max_macs, max_ram=args.max_ram,
        min_params=args.min_params,
        max_activations=args.max_activations, space=args.space, study=args.study,
        storage=storage_url(args), trials=args.trials, timeout=args.timeout, seed=args.seed,
        sampler=args.sampler, train_seed=args.train_seed, jobs=_jobs(args.jobs),
        epochs=args.epochs, last_n=args.last_n, objective=args.objective,
        objectives=args.objectives, prune=args.prune, prune_opt=args.prune_opt,
        enqueue=args.enqueue, warm_start=warm, artifacts=args.artifacts,
        data_dir=args.data_dir, val_split=args.val_split, split_seed=args.split_seed,
        device=args.device, threads=args.threads, confirm_top=args.confirm_top,
        confirm_seeds=args.confirm_seeds, confirm_margin=args.confirm_margin, arch=args.arch,
        retrain_known=args.retrain_known,
        progress="auto", log=log)
    print_summary(study, study.storage)
    return 0


def print_summary(study, url: str, k: int = 10) -> None:
    from nas_mnist.api.storage import mask_url
    print("trials: " + ", ".join(f"{n} {kind.replace('_', ' ')}"
                                 for kind, n in study.counts().items()))
    rows = study.leaderboard(k)
    print(rows if rows else "no feasible trial has completed yet")
    print(f"storage: {mask_url(url)}")


def _margin(text: str) -> float | None:
    """--confirm-margin: points >= 0, or 'none'."""
    if text.lower() == "none":
        return None
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 points or 'none', got {text}")
    return value
