"""What every sub-command shares: the parser class, flag types, data and storage flags.

Imports stay light here (no torch, optuna or fvcore at import time), so `--help` and
`--version` answer at once.
"""

from __future__ import annotations

import argparse
import math
import re

from nas_mnist.errors import NasMnistError, StorageError


class UsageError(NasMnistError):
    """A bad flag value or an unusable input; reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        raise UsageError(f"{self.prog.removeprefix('nas-mnist ')}: {message}"
                         if self.prog != "nas-mnist" else message)


def _finite(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        wanted = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def positive(kind=int):
    """A flag type: a finite number >= 1 (`kind` int or float)."""
    def parse(text):
        value = _finite(text, kind)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def port(text):
    """A flag type: a TCP port in [1, 65535]."""
    value = _finite(text, int)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port in [1, 65535], got {text}")
    return value


def seed(text):
    """A flag type: a seed in [0, 2**32)."""
    if not text.isdigit() or int(text) >= 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**32), got {text!r}")
    return int(text)


def study_name(text):
    """A flag type: a study name that is also a safe file name (the library's rule)."""
    from nas_mnist.api.storage import check_study_name
    try:
        return check_study_name(text)
    except StorageError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("study must be ")) from None


def non_negative(text):
    value = int(text) if text.isdigit() else None
    if value is None:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def finite_float(text):
    return _finite(text, float)


def add_data_flags(p: argparse.ArgumentParser, *, split: bool = True,
                   threads_default: int | None = None) -> None:
    """--data-dir, --device, --threads and (unless the study decides it) the split flags."""
    p.add_argument("--data-dir", help="folder with the four IDX files, or a torchvision "
                                      "download root (default: the packaged MNIST)")
    if split:
        p.add_argument("--val-split", type=non_negative, default=0, metavar="K",
                       help="hold out K training images as the validation set (default 0: "
                            "score on the test set)")
        p.add_argument("--split-seed", type=seed, default=0, metavar="S",
                       help="seed that draws the --val-split images (0); a study keeps its own")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to train (default auto: a GPU if there is one)")
    p.add_argument("--threads", type=positive(), default=threads_default,
                   help=f"CPU threads (default: {threads_default or 'all cores'})")


def add_storage_flags(p: argparse.ArgumentParser, *, required_study: bool) -> None:
    p.add_argument("--study", required=required_study, type=study_name,
                   default=None if required_study else "default",
                   help="study name" + ("" if required_study else " (default: default)"))
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db;"
                                     " also postgresql://..., journal:PATH)")


def storage_url(args) -> str:
    from nas_mnist.api.storage import default_storage
    return args.storage or default_storage(args.study)


def describe_data(data) -> str:
    from nas_mnist.api.network import describe_data as describe
    return describe(data)
