"""Command line: `nas-mnist train|count|bench|search|export|report|dashboard`.

Only this module parses arguments or prints. Every expected failure (bad flag, bad config,
bad data, unreachable storage) ends as one line on stderr and exit code 2; Ctrl-C and
SIGTERM end with exit code 130 after the storage has been left consistent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
import warnings
from pathlib import Path

from nas_mnist import __version__

REFERENCE_CONFIG = str(Path(__file__).parent / "configs" / "ref8k.json")


class UsageError(Exception):
    """A bad flag value or an unusable input; reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        raise UsageError(f"{self.prog}: {message}")


def _positive(kind=int):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
        return value
    return parse


def _non_negative(text):
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder with the four IDX files (default: packaged MNIST)")
    p.add_argument("--val-split", type=_non_negative, default=0, metavar="K",
                   help="hold out K training images as the validation set (default 0: test set)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=_positive(), help="CPU threads (default: all cores)")


def _add_storage_flags(p: argparse.ArgumentParser, *, required_study: bool) -> None:
    p.add_argument("--study", required=required_study, default=None if required_study else "default",
                   help="study name")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas-mnist", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nas-mnist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one architecture, print per-epoch accuracy")
    p.add_argument("config", help="architecture JSON (a bare arch or an exported winner)")
    p.add_argument("--epochs", type=_positive())
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the file's, or 0)")
    p.add_argument("--last-n", type=_positive(), help="epochs in the last-N score (default 3)")
    p.add_argument("--batch-size", type=_positive())
    p.add_argument("--precision", choices=["fp32", "bf16"])
    p.add_argument("--weights", help="evaluate these saved weights instead of training")
    p.add_argument("--json-out", help="write metrics as JSON to this file")
    p.add_argument("--require", type=float, metavar="PCT",
                   help="exit 1 unless the min of the last N epochs reaches PCT percent")
    _add_data_flags(p)

    p = sub.add_parser("count", help="print the per-layer parameter and MAC table")
    p.add_argument("config")
    p.add_argument("--json", action="store_true", help="print JSON with params, macs, layers")

    p = sub.add_parser("bench", help="time training of a reference ~8K network")
    p.add_argument("--config", help="network to time (default: the packaged ref8k.json)")
    p.add_argument("--steps", type=_positive(), default=100, help="timed training steps")
    p.add_argument("--notebook-steps", type=_positive(), default=50)
    p.add_argument("--precision", choices=["fp32", "bf16"])
    p.add_argument("--dropout-kind", choices=["element", "channel"],
                   help="override the network's dropout kind")
    p.add_argument("--parallel", type=_non_negative, default=2, metavar="K",
                   help="also time K one-thread processes training at once (CPU; 0: skip)")
    p.add_argument("--json-out")
    _add_data_flags(p)

    p = sub.add_parser("space", help="check a search space: smallest network, budget shares")
    p.add_argument("space", nargs="?", default="default")
    p.add_argument("--budget", type=_positive(), default=10_000)
    p.add_argument("--samples", type=_positive(), default=2000)

    from nas_mnist.cli_search import add_search_parsers
    add_search_parsers(sub, _add_data_flags, _add_storage_flags, _positive, _non_negative)
    return parser


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*experimental feature.*")
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    from nas_mnist.data import DataError
    from nas_mnist.search import SearchError
    try:
        args = build_parser().parse_args(argv)
        return int(COMMANDS[args.command](args) or 0)
    except (UsageError, DataError, ValueError, FileNotFoundError) as err:
        print(f"nas-mnist: error: {err}", file=sys.stderr)
        return 2
    except SearchError as err:
        print(f"nas-mnist: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nas-mnist: interrupted; the study storage is consistent, re-run to resume",
              file=sys.stderr)
        return 130


def _load_context(args):
    """Device, threads and dataset for a command that trains or evaluates."""
    from nas_mnist.data import load_dataset
    from nas_mnist.device import resolve_device, set_threads
    device = resolve_device(args.device)
    set_threads(args.threads)
    data = load_dataset(args.data_dir, val_split=args.val_split)
    return device, data.to(device)


def cmd_count(args) -> int:
    from nas_mnist.arch import load_arch
    from nas_mnist.builder import build_model
    from nas_mnist.counting import count_macs, count_params, format_table, layer_table
    arch, _ = load_arch(args.config)
    model = build_model(arch)
    in_shape = (arch.in_channels, arch.image_size, arch.image_size)
    rows = layer_table(model, in_shape)
    n_params, macs = count_params(model), count_macs(model, in_shape)
    if args.json:
        print(json.dumps({"params": n_params, "macs": macs, "arch": arch.describe(),
                          "layers": [r.__dict__ for r in rows]}, indent=2))
    else:
        print(format_table(rows))
        print(f"params {n_params:,}   MACs {macs:,}   ({arch.describe()})")
    return 0


def cmd_train(args) -> int:
    from tqdm import tqdm
    from nas_mnist.arch import load_arch
    from nas_mnist.recipe import Recipe
    from nas_mnist.run import describe_device, evaluate_weights, train_arch
    arch, doc = load_arch(args.config)
    stored = Recipe.from_dict(doc.get("recipe", {}))
    epochs = args.epochs or stored.epochs
    last_n = args.last_n or min(stored.last_n, epochs)
    if last_n > epochs:
        raise UsageError(f"--last-n {last_n} exceeds the {epochs} training epochs")
    recipe = stored.replace(epochs=epochs, last_n=last_n, batch_size=args.batch_size,
                            precision=args.precision)
    if args.threads is None and doc.get("threads"):
        args.threads = doc["threads"]  # reproduce the stored run's CPU numerics
    device, data = _load_context(args)
    if args.weights:
        s = evaluate_weights(arch, data, args.weights)
        print(f"test accuracy {s['acc']:.2f} %  loss {s['loss']:.4f}  "
              f"({s['images']:,} test images, weights {args.weights}, no training)")
        return 0
    seed = args.seed if args.seed is not None else int(doc.get("seed", 0))
    split = data.eval_split
    steps = max(1, len(data.train_x) // recipe.batch_size)
    bar = tqdm(total=steps * recipe.epochs, unit="step", leave=False, file=sys.stderr)
    print(f"{arch.describe()}\ntraining {recipe.epochs} epochs, seed {seed}, "
          f"{describe_device(device)}, "
          f"accuracy on the {split} split ({len(data.eval_x):,} images)")
    print(f"{'epoch':>5} {split + ' acc %':>11} {split + ' loss':>10} {'train loss':>10} "
          f"{'lr':>8} {'seconds':>8}")

    def on_epoch(e):
        bar.write(f"{e.epoch:>5} {e.eval_acc:>11.2f} {e.eval_loss:>10.4f} {e.train_loss:>10.4f} "
                  f"{e.lr:>8.4f} {e.seconds:>8.1f}")

    try:
        summary, _ = train_arch(arch, data, recipe, seed=seed, on_epoch=on_epoch,
                                on_step=bar.update)
    finally:
        bar.close()
    print(f"params {summary['params']:,}   MACs {summary['macs']:,}   "
          f"{summary['seconds']:.0f} s on {summary['device']}")
    print(f"last {last_n} epochs on {split}: min {summary['last_n_min']:.2f} %  "
          f"mean {summary['last_n_mean']:.2f} %")
    if "test_acc_final" in summary:
        print(f"test accuracy after the last epoch: {summary['test_acc_final']:.2f} %")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2))
    if args.require is not None and summary["last_n_min"] < args.require:
        print(f"nas-mnist: below requirement: min of the last {last_n} epochs "
              f"{summary['last_n_min']:.2f} % < {args.require:.2f} %", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args) -> int:
    from nas_mnist.arch import load_arch
    from nas_mnist.bench import run_bench
    from nas_mnist.recipe import Recipe
    from nas_mnist.run import describe_device
    notebook_arch, doc = load_arch(args.config or REFERENCE_CONFIG)
    arch = notebook_arch
    if args.dropout_kind:
        arch = dataclasses.replace(arch, dropout_kind=args.dropout_kind)
    recipe = Recipe.from_dict(doc.get("recipe", {})).replace(precision=args.precision)
    device, data = _load_context(args)
    print(f"benchmarking {arch.describe()} on {describe_device(device)} ...", file=sys.stderr)
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
        Path(args.json_out).write_text(json.dumps(figures, indent=2))
    return 0


def cmd_space(args) -> int:
    from nas_mnist.space import load_space, sample_shares, smallest_arch
    space = load_space(args.space)
    smallest = smallest_arch(space)
    print(f"space {space.name}: smallest network {smallest.n_params():,} parameters "
          f"({smallest.describe()})")
    shares = sample_shares(space, budget=args.budget, samples=args.samples)
    print(f"{args.samples:,} random samples: {shares['under_budget']:.1%} valid and within "
          f"{args.budget:,} parameters, {shares['over_budget']:.1%} over budget, "
          f"{shares['invalid']:.1%} invalid")
    return 0


def _commands():
    from nas_mnist import cli_search
    return {"train": cmd_train, "count": cmd_count, "bench": cmd_bench, "space": cmd_space,
            **cli_search.COMMANDS}


class _LazyCommands(dict):
    def __missing__(self, key):
        self.update(_commands())
        return self[key]


COMMANDS = _LazyCommands()

if __name__ == "__main__":
    sys.exit(main())
