"""`train`, `count`, `bench` and `space`: commands about one network or one space."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from nas_mnist.cli.common import (UsageError, add_data_flags, describe_data, finite_float,
                                  load_context, non_negative, positive, seed)
from nas_mnist.cli.output import write_text_atomic

REFERENCE_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "ref8k.json")


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train one architecture, print per-epoch accuracy")
    p.add_argument("config", help="architecture JSON (a bare arch or an exported winner)")
    p.add_argument("--epochs", type=positive(), help="training epochs (default: the file's "
                                                     "recipe, else 15)")
    p.add_argument("--seed", type=seed, default=None, help="training seed (default: the "
                                                           "file's, or 0)")
    p.add_argument("--last-n", type=positive(), help="epochs in the last-N score (default: the "
                                                     "file's, at most --epochs)")
    p.add_argument("--batch-size", type=positive(), help="override the recipe's batch size")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], help="override the recipe's "
                                                                 "precision")
    p.add_argument("--weights", help="evaluate these saved weights instead of training")
    p.add_argument("--json-out", help="write metrics as JSON to this file")
    p.add_argument("--require", type=finite_float, metavar="PCT",
                   help="exit 1 unless the min of the last N epochs reaches PCT percent "
                        "(with --seeds: on every seed)")
    p.add_argument("--seeds", type=positive(), metavar="K",
                   help="train on seeds 0..K-1 and print mean, std and worst seed")
    p.add_argument("--jobs", type=positive(), default=1,
                   help="with --seeds: runs side by side, each with cores / K threads "
                        "unless --threads says (1)")
    add_data_flags(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("count", help="print the per-layer parameter and MAC table")
    p.add_argument("config", help="architecture JSON (a bare arch or an exported winner)")
    p.add_argument("--json", action="store_true", help="print JSON with params, macs, layers")
    p.set_defaults(handler=cmd_count)

    p = sub.add_parser("bench", help="time training of a reference ~8K network")
    p.add_argument("--config", help="network to time (default: the packaged ref8k.json)")
    p.add_argument("--steps", type=positive(), default=100, help="timed training steps (100)")
    p.add_argument("--notebook-steps", type=positive(), default=50,
                   help="timed steps of the notebook pipeline (50)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], help="override the recipe's")
    p.add_argument("--dropout-kind", choices=["element", "channel"],
                   help="override the network's dropout kind")
    p.add_argument("--parallel", type=non_negative, default=2, metavar="K",
                   help="also time K one-thread processes training at once (CPU; 0: skip)")
    p.add_argument("--json-out", help="write the figures as JSON to this file")
    add_data_flags(p)
    p.set_defaults(handler=cmd_bench)

    p = sub.add_parser("space", help="check a search space: smallest network, budget shares")
    p.add_argument("space", nargs="?", default="default", help="space name or YAML path")
    p.add_argument("--budget", type=positive(), default=10_000, help="parameters (10000)")
    p.add_argument("--samples", type=positive(), default=2000, help="random samples (2000)")
    p.set_defaults(handler=cmd_space)


def cmd_count(args) -> int:
    from nas_mnist.api import count
    from nas_mnist.engine.counting import LayerRow, format_table
    c = count(args.config)
    if args.json:
        print(json.dumps(c, indent=2))
    else:
        print(format_table([LayerRow(**row) for row in c["layers"]]))
        print(f"params {c['params']:,}   MACs {c['macs']:,}   activations {c['activations']:,} "
              f"per image   peak RAM {c['peak_ram_int8']:,} B at int8 "
              f"({c['peak_ram_fp32']:,} B at fp32)   ({c['arch']})")
    return 0


def cmd_train(args) -> int:
    from nas_mnist.spec.arch import load_arch
    from nas_mnist.spec.recipe import Recipe
    from nas_mnist.errors import SpecError
    from nas_mnist.spec.score import default_last_n
    arch, doc = load_arch(args.config)
    try:
        stored = Recipe.from_dict(doc.get("recipe", {}))
    except SpecError as err:
        raise SpecError(f"{args.config}: {err}") from None
    epochs = args.epochs or stored.epochs
    # the file's last-N for the file's epochs; other epochs get the default for their length
    last_n = args.last_n or (stored.last_n if epochs == stored.epochs
                             else default_last_n(epochs))
    if last_n > epochs:
        raise UsageError(f"--last-n {last_n} exceeds the {epochs} training epochs")
    recipe = stored.replace(epochs=epochs, last_n=last_n, batch_size=args.batch_size,
                            precision=args.precision)
    if args.json_out:
        write_text_atomic(args.json_out, None)  # a bad path fails now, not after training
    if args.seeds:
        return _train_seeds(args, arch, recipe, last_n)
    if args.jobs != 1:
        raise UsageError("--jobs needs --seeds")
    if args.threads is None and doc.get("threads"):
        args.threads = doc["threads"]  # reproduce the stored run's CPU numerics
    device, data = load_context(args)
    data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
    if args.weights:
        from nas_mnist.engine.evaluate import evaluate_weights
        norm = doc.get("normalisation") or {}
        if norm.get("mean") is not None and norm.get("std") is not None:
            # the statistics these weights were trained with, not this loader's
            data = dataclasses.replace(data, mean=float(norm["mean"]), std=float(norm["std"]))
        s = evaluate_weights(arch, data, args.weights)
        print(f"test accuracy {s['acc']:.2f} %  loss {s['loss']:.4f}  "
              f"({s['images']:,} test images, weights {args.weights}, no training; "
              f"{describe_data(data)})")
        return 0
    seed = args.seed if args.seed is not None else int(doc.get("seed", 0))
    summary = _train_with_table(arch, recipe, data, seed, device)
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(summary, indent=2))
    if args.require is not None and summary["last_n_min"] < args.require:
        print(f"nas-mnist: below requirement: min of the last {last_n} epochs "
              f"{summary['last_n_min']:.2f} % < {args.require:.2f} %", file=sys.stderr)
        return 1
    return 0


def _train_seeds(args, arch, recipe, last_n: int) -> int:
    """`train --seeds K`: the same network and recipe on seeds 0..K-1, then the spread."""
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.results.confirm import confirm_seeds
    from nas_mnist.results.summary import seed_stats
    if args.seed is not None or args.weights:
        raise UsageError("--seeds trains new networks on seeds 0..K-1: leave out --seed and "
                         "--weights")
    data = load_dataset(args.data_dir, val_split=args.val_split, seed=args.split_seed)
    data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
    split = data.eval_split
    print(f"{arch.describe()}\ntraining {recipe.epochs} epochs on seeds 0-{args.seeds - 1}, "
          f"{args.jobs} run(s) at a time, {describe_data(data)}, min of the last {last_n} "
          f"epoch(s) on the {split} split ({len(data.eval_x):,} images)")

    def on_done(r):
        test = (f", test after the last epoch {r['test_acc_final']:.2f} %"
                if r["test_acc_final"] is not None else "")
        print(f"seed {r['seed']}: min {r['last_n_min']:.2f} %  mean {r['last_n_mean']:.2f} %"
              f"{test}  ({r['seconds']:.0f} s on {r['device']})", flush=True)

    run, = confirm_seeds([(None, arch.to_dict(), recipe.to_dict())], args.seeds,
                         data_dir=args.data_dir, val_split=args.val_split,
                         split_seed=args.split_seed, device=args.device,
                         jobs=args.jobs, threads=args.threads, on_done=on_done)
    stats = seed_stats(run["mins"])
    worst = run["seeds"][run["mins"].index(stats["min"])]
    print(f"{stats['seeds']} seeds: min-last-{last_n} on {split} mean {stats['mean']:.2f} "
          f"+- {stats['std']:.2f} %, worst {stats['min']:.2f} % (seed {worst}), "
          f"{run['seconds']:.0f} s per run, {run['threads']} thread(s) each")
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps({**run, "data_checksum": data.checksum},
                                                    indent=2))
    if args.require is not None and stats["min"] < args.require:
        print(f"nas-mnist: below requirement: seed {worst} reached "
              f"{stats['min']:.2f} % < {args.require:.2f} %", file=sys.stderr)
        return 1
    return 0


def _train_with_table(arch, recipe, data, seed: int, device) -> dict:
    from tqdm import tqdm
    from nas_mnist.engine.evaluate import describe_device, evaluate_candidate
    split = data.eval_split
    steps = max(1, len(data.train_x) // recipe.batch_size)
    print(f"{arch.describe()}\ntraining {recipe.epochs} epochs, seed {seed}, "
          f"{describe_device(device)}, {describe_data(data)}, "
          f"accuracy on the {split} split ({len(data.eval_x):,} images)")
    print(f"{'epoch':>5} {split + ' acc %':>11} {split + ' loss':>10} {'train loss':>10} "
          f"{'lr':>8} {'seconds':>8}")
    bar = tqdm(total=steps * recipe.epochs, unit="step", leave=False, file=sys.stderr)

    def on_epoch(e):
        bar.write(f"{e.epoch:>5} {e.eval_acc:>11.2f} {e.eval_loss:>10.4f} {e.train_loss:>10.4f} "
                  f"{e.lr:>8.4f} {e.seconds:>8.1f}")

    try:
        run = evaluate_candidate(arch, recipe, data, seed=seed, on_epoch=on_epoch,
                                 on_step=bar.update)
    finally:
        bar.close()
    summary = run.summary(data)
    print(f"params {summary['params']:,}   MACs {summary['macs']:,}   "
          f"{summary['seconds']:.0f} s on {summary['device']}")
    epochs = f"{recipe.last_n} epochs" if recipe.last_n > 1 else "epoch"
    print(f"last {epochs} on {split}: min {summary['last_n_min']:.2f} %  "
          f"mean {summary['last_n_mean']:.2f} %")
    if "test_acc_final" in summary:
        print(f"test accuracy after the last epoch: {summary['test_acc_final']:.2f} %")
    return summary


def cmd_bench(args) -> int:
    from nas_mnist.engine.bench import run_bench
    from nas_mnist.engine.evaluate import describe_device
    from nas_mnist.spec.arch import load_arch
    from nas_mnist.spec.recipe import Recipe
    notebook_arch, doc = load_arch(args.config or REFERENCE_CONFIG)
    arch = notebook_arch
    if args.dropout_kind:
        arch = dataclasses.replace(arch, dropout_kind=args.dropout_kind)
    recipe = Recipe.from_dict(doc.get("recipe", {})).replace(precision=args.precision)
    device, data = load_context(args)
    print(f"benchmarking {arch.describe()} on {describe_device(device)}, {describe_data(data)}"
          " ...", file=sys.stderr)
    figures = run_bench(arch, data, recipe, steps=args.steps, notebook_steps=args.notebook_steps,
                        parallel_workers=args.parallel, data_dir=args.data_dir,
                        notebook_arch=notebook_arch)
    figures = {"device": describe_device(device), "date": time.strftime("%Y-%m-%d"),
               "precision": recipe.precision,
               "dropout_kind": arch.dropout_kind, "batch_size": recipe.batch_size, **figures}
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:,.2f}" if isinstance(value, float) else
              f"{key:<{width}}  {value}")
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(figures, indent=2))
    return 0


def cmd_space(args) -> int:
    from nas_mnist.searcher.space import load_space, sample_shares, smallest_arch
    space = load_space(args.space)
    smallest = smallest_arch(space)
    print(f"space {space.name}: smallest network {smallest.n_params():,} parameters "
          f"({smallest.describe()})")
    shares = sample_shares(space, budget=args.budget, samples=args.samples)
    print(f"{args.samples:,} random samples: {shares['under_budget']:.1%} valid and within "
          f"{args.budget:,} parameters, {shares['over_budget']:.1%} over budget, "
          f"{shares['invalid']:.1%} invalid")
    return 0
