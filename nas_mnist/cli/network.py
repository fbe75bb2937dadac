"""`train`, `count`, `bench` and `space`: commands about one network or one space."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nas_mnist.cli.common import (UsageError, add_data_flags, describe_data, finite_float,
                                  non_negative, positive, seed)
from nas_mnist.api.files import check_writable, write_text

REFERENCE_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "ref8k.json")



def add_parsers(sub) -> None:
    _train_parser(sub)
    _count_parser(sub)
    _bench_parser(sub)
    _space_parser(sub)


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one architecture, print per-epoch accuracy")
    p.add_argument("config", help="architecture JSON (a bare arch or an exported winner), or a "
                                  "packaged config: trial52, trial81, ref8k, woolly3762")
    p.add_argument("--epochs", type=positive(), help="training epochs (default: the file's "
                                                     "recipe, else 15)")
    p.add_argument("--seed", type=seed, default=None, help="training seed (default: the "
                                                           "file's, or 0)")
    p.add_argument("--last-n", type=positive(), help="epochs in the last-N score (default: the "
                                                     "file's, at most --epochs)")
    p.add_argument("--batch-size", type=positive(), help="override the recipe's batch size")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], help="override the recipe's "
                                                                 "precision")
    p.add_argument("--dropout-rng", choices=["bernoulli", "hash"],
                   help="override the recipe's dropout mask: torch's bernoulli (a file without "
                        "the key) or the 3.8x cheaper hash (what new studies use)")
    p.add_argument("--eval-precision", choices=["fp32", "train"],
                   help="override the recipe's: evaluate in fp32 (a file without the key) or "
                        "in the training precision (what new studies use)")
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


def _count_parser(sub) -> None:
    p = sub.add_parser("count", help="print the per-layer parameter and MAC table")
    p.add_argument("config", help="architecture JSON (a bare arch or an exported winner), or a "
                                  "packaged config: trial52, trial81, ref8k, woolly3762")
    p.add_argument("--json", action="store_true", help="print JSON with params, macs, layers")
    p.set_defaults(handler=cmd_count)


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="time the trainer on the networks the search picks")
    p.add_argument("configs", nargs="*", metavar="CONFIG",
                   help="networks to time: files or packaged names (default: trial52 trial81 "
                        "ref8k)")
    p.add_argument("--steps", type=positive(), default=20, help="training steps per timing (20)")
    p.add_argument("--rounds", type=positive(), default=5,
                   help="alternating rounds of before / now / skeleton (5)")
    p.add_argument("--notebook-steps", type=positive(), default=30,
                   help="timed steps of the notebook pipeline (30)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto",
                   help="override each recipe's (default auto: bf16 where native)")
    p.add_argument("--dropout-kind", choices=["element", "channel"],
                   help="override the networks' dropout kind")
    p.add_argument("--parallel", type=non_negative, default=0, metavar="K",
                   help="also time K one-thread processes training at once (CPU; 0: skip)")
    p.add_argument("--json-out", help="write the figures as JSON to this file")
    add_data_flags(p, split=False, threads_default=1)
    p.set_defaults(handler=cmd_bench)


def _space_parser(sub) -> None:
    p = sub.add_parser("space", help="check a search space: smallest network, budget shares")
    p.add_argument("space", nargs="?", default="default", help="space name or YAML path")
    p.add_argument("--budget", type=positive(), default=10_000, help="parameters (10000)")
    p.add_argument("--samples", type=positive(), default=2000, help="random samples (2000)")
    p.add_argument("--min-params", type=non_negative, metavar="N",
                   help="size floor (default: a new study's, 0.4 of the budget)")
    p.add_argument("--max-activations", type=non_negative, metavar="A",
                   help="activation limit (default: a new study's)")
    p.add_argument("--max-ram", type=positive(), metavar="BYTES", help="peak RAM at int8")
    p.set_defaults(handler=cmd_space)


def cmd_count(args) -> int:
    from nas_mnist.api import count
    from nas_mnist.api.network import count_table
    c = count(args.config)
    if args.json:
        print(json.dumps(c, indent=2))
    else:
        print(count_table(c))
        print(f"params {c['params']:,}   MACs {c['macs']:,}   activations {c['activations']:,} "
              f"per image   peak RAM {c['peak_ram_int8']:,} B at int8 "
              f"({c['peak_ram_fp32']:,} B at fp32)   ({c['arch']})")
        if "tflm_arena_bytes" in c:
            print(f"TFLite Micro arena {c['tflm_arena_bytes']:,} B on this 64-bit host "
                  f"({c['tflm_arena_head']:,} B of activations as its planner lays them out + "
                  f"{c['tflm_arena_tail']:,} B of interpreter structs; a 32-bit part's are "
                  f"smaller)")
    return 0


def cmd_train(args) -> int:
    """Parse, one library call, print."""
    from nas_mnist.api import train
    if args.json_out:
        check_writable(args.json_out)  # a bad path fails now, not after training
    show = _SeedsDisplay(args.seeds, args.jobs) if args.seeds else _EpochTable()
    try:
        result = train(args.config, epochs=args.epochs, last_n=args.last_n, seed=args.seed,
                       batch_size=args.batch_size, precision=args.precision,
                       dropout_rng=args.dropout_rng, eval_precision=args.eval_precision,
                       weights=args.weights, seeds=args.seeds, jobs=args.jobs,
                       data_dir=args.data_dir, val_split=args.val_split,
                       split_seed=args.split_seed, device=args.device, threads=args.threads,
                       on_start=show.start, on_epoch=getattr(show, "epoch", None),
                       on_step=getattr(show, "step", None), on_seed=getattr(show, "seed", None))
    except BaseException:
        show.abandon()  # the step bar is cleared: an error line starts a line of its own
        raise
    if args.weights:
        print(f"test accuracy {result['acc']:.2f} %  loss {result['loss']:.4f}  "
              f"({result['images']:,} test images in {result['precision']}, weights "
              f"{args.weights}, no training; "
              f"{describe_data(result['data'])})")
        return 0
    worst = show.finish(result)
    if args.json_out:
        doc = result.to_json() if args.seeds else result
        write_text(args.json_out, json.dumps(doc, indent=2))
    if args.require is not None and worst[0] < args.require:
        print(f"nas-mnist: below requirement: {worst[1]} "
              f"{worst[0]:.2f} % < {args.require:.2f} %", file=sys.stderr)
        return 1
    return 0


class _EpochTable:
    """One row per epoch under a header, a step bar on stderr, then the last-N figures."""

    def start(self, plan) -> None:
        from tqdm import tqdm
        data, recipe = plan.data, plan.recipe
        self.split, self.recipe = data.eval_split, recipe
        print(f"{plan.arch.describe()}\ntraining {recipe.epochs} epochs, seed {plan.seed}, "
              f"{plan.device_text}, {describe_data(data)}, "
              f"accuracy on the {self.split} split ({len(data.eval_x):,} images), "
              f"{plan.trainer_text}")
        print(f"{'epoch':>5} {self.split + ' acc %':>11} {self.split + ' loss':>10} "
              f"{'train loss':>10} {'lr':>8} {'seconds':>8}")
        steps = max(1, len(data.train_x) // recipe.batch_size)
        self.bar = tqdm(total=steps * recipe.epochs, unit="step", leave=False, file=sys.stderr,
                        disable=None)  # None: no bar where stderr is not a terminal (logs)

    def step(self) -> None:
        self.bar.update()

    def abandon(self) -> None:
        if getattr(self, "bar", None) is not None:
            self.bar.close()

    def epoch(self, e) -> None:
        self.bar.write(f"{e.epoch:>5} {e.eval_acc:>11.2f} {e.eval_loss:>10.4f} "
                       f"{e.train_loss:>10.4f} {e.lr:>8.4f} {e.seconds:>8.1f}")

    def finish(self, summary: dict) -> tuple[float, str]:
        self.bar.close()
        print(f"params {summary['params']:,}   MACs {summary['macs']:,}   "
              f"{summary['seconds']:.0f} s on {summary['device']}")
        last_n = self.recipe.last_n
        epochs = f"{last_n} epochs" if last_n > 1 else "epoch"
        print(f"last {epochs} on {self.split}: min {summary['last_n_min']:.2f} %  "
              f"mean {summary['last_n_mean']:.2f} %")
        if "test_acc_final" in summary:
            print(f"test accuracy after the last epoch: {summary['test_acc_final']:.2f} %")
        return summary["last_n_min"], f"min of the last {last_n} epochs"


class _SeedsDisplay:
    """`train --seeds K`: a header, one line per seed as it ends, then the spread."""

    def __init__(self, seeds: int, jobs: int):
        self.seeds, self.jobs = seeds, jobs

    def abandon(self) -> None:
        pass  # one printed line per seed: nothing to clear

    def start(self, plan) -> None:
        self.plan = plan
        data, recipe = plan.data, plan.recipe
        print(f"{plan.arch.describe()}\ntraining {recipe.epochs} epochs on seeds "
              f"0-{self.seeds - 1}, {self.jobs} run(s) at a time, {describe_data(data)}, "
              f"min of the last {recipe.last_n} epoch(s) on the {data.eval_split} split "
              f"({len(data.eval_x):,} images), {plan.trainer_text}")

    def seed(self, r) -> None:
        test = (f", test after the last epoch {r['test_acc_final']:.2f} %"
                if r["test_acc_final"] is not None else "")
        print(f"seed {r['seed']}: min {r['last_n_min']:.2f} %  mean {r['last_n_mean']:.2f} %"
              f"{test}  ({r['seconds']:.0f} s on {r['device']})", flush=True)

    def finish(self, run) -> tuple[float, str]:
        from nas_mnist.api.network import seed_stats
        stats = seed_stats(run.mins)
        worst = run.seeds[run.mins.index(stats["min"])]
        last_n, split = self.plan.recipe.last_n, self.plan.data.eval_split
        print(f"{stats['seeds']} seeds: min-last-{last_n} on {split} mean {stats['mean']:.2f} "
              f"+- {stats['std']:.2f} %, worst {stats['min']:.2f} % (seed {worst}), "
              f"{run.seconds:.0f} s per run, {run.threads} thread(s) each")
        return stats["min"], f"seed {worst} reached"


def cmd_bench(args) -> int:
    from nas_mnist.api import bench
    if args.json_out:
        check_writable(args.json_out)  # a bad path fails now, not after timing

    def announce(config, arch):
        print(f"timing {config}: {arch.describe()} ...", file=sys.stderr, flush=True)

    rows = bench(args.configs, steps=args.steps, rounds=args.rounds,
                 notebook_steps=args.notebook_steps, precision=args.precision,
                 dropout_kind=args.dropout_kind, parallel=args.parallel,
                 data_dir=args.data_dir, device=args.device, threads=args.threads,
                 on_network=announce)
    print(f"{rows[0]['device']}, {rows[0]['date']}; step = one training step (median of "
          f"{args.rounds} alternating rounds), run = 15 epochs projected; kernels: "
          f"{rows[0]['kernels']}")
    head = ("network", "params", "batch", "prec", "step before", "step now", "x", "skeleton", "x",
            "eval before/now", "run before", "run now", "x", "vs notebook")
    print("  ".join(f"{h:>{w}}" for h, w in zip(head, WIDTHS)))
    for r in rows:
        cells = (r["config"], f"{r['params']:,}", r["batch_size"], r["precision"],
                 f"{r['before_step_ms']:.1f} ms", f"{r['now_step_ms']:.1f} ms",
                 f"{r['now_speedup']:.2f}", f"{r['skeleton_step_ms']:.1f} ms",
                 f"{r['skeleton_speedup']:.2f}",
                 f"{r['eval_seconds_before']:.2f}/{r['eval_seconds']:.2f} s",
                 f"{r['seconds_per_trial_before']:.0f} s", f"{r['seconds_per_trial']:.0f} s",
                 f"{r['trial_speedup']:.2f}", f"{r['ratio_vs_notebook']:.2f}")
        print("  ".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS)))
        if "parallel_trials_per_hour" in r:
            print(f"  {r['parallel_workers']} one-thread workers at once: "
                  f"{r['parallel_seconds_per_trial']:.0f} s per run, "
                  f"{r['parallel_trials_per_hour']:.1f} trials/hour")
    if args.json_out:
        write_text(args.json_out, json.dumps(rows, indent=2))
    return 0


WIDTHS = (8, 6, 5, 4, 11, 9, 4, 9, 4, 15, 10, 7, 4, 11)


_OUTCOMES = {"over_budget": "over budget", "under_floor": "under the size floor",
             "over_activations": "over the activation limit", "over_ram": "over the RAM limit",
             "invalid": "invalid"}


def cmd_space(args) -> int:
    from nas_mnist.api import space_shares
    r = space_shares(args.space, budget=args.budget, min_params=args.min_params,
                     max_activations=args.max_activations, max_ram=args.max_ram,
                     samples=args.samples)
    scale = (f"widths x{r['width_scale']:g} for this budget: " if r["width_scale"] != 1 else
             "widths ") + ", ".join(map(str, r["widths"]))
    print(f"space {r['space']} at budget {r['budget']:,}: {scale}; smallest network "
          f"{r['smallest_params']:,} parameters ({r['smallest']})")
    print("limits a new study applies: " + ", ".join(
        [f"size floor {r['min_params']:,}" if r["min_params"] else "no size floor",
         f"at most {r['max_activations']:,} activations" if r["max_activations"]
         else "no activation limit"]
        + ([f"peak RAM at most {r['max_ram']:,} B"] if r["max_ram"] else [])))
    refused = ", ".join(f"{share:.1%} {_OUTCOMES.get(kind, kind)}"
                        for kind, share in r["shares"].items() if kind != "trainable")
    print(f"{r['samples']:,} uniform samples: {refused or 'none refused'}")
    print(f"trainable: {100 * r['trainable']:.1f} %")
    return 0
