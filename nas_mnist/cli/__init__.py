"""Command line: `nas-mnist train|count|bench|space|search|export|report|dashboard`.

Only this package parses arguments or prints; nothing outside it imports it. Every expected
failure (bad flag, bad file, bad data, unreachable storage, full disk) ends as one line on
stderr and a non-zero exit; a programming error keeps its traceback. Ctrl-C, SIGTERM and SIGHUP
end with exit code 130 after the storage has been left consistent.
"""

from __future__ import annotations

import gzip
import logging
import os
import signal
import sys
import warnings
import zlib

from nas_mnist._version import __version__
from nas_mnist.cli import network, results, search
from nas_mnist.cli.common import Parser, UsageError
from nas_mnist.errors import NasMnistError

EXPECTED = (NasMnistError, OSError, zlib.error, gzip.BadGzipFile, EOFError, RecursionError)


def build_parser() -> Parser:
    parser = Parser(prog="nas-mnist",
                    description="Find the best small CNN for MNIST under a parameter budget.",
                    epilog="Start with the demo in README.md; `nas-mnist COMMAND --help` "
                           "lists a command's flags.")
    parser.add_argument("--version", action="version", version=f"nas-mnist {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    network.add_parsers(sub)
    search.add_parsers(sub)
    results.add_parsers(sub)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        return _fail(err, 2)
    if args.command is None:
        parser.print_help()
        return 2
    _show_library_notes()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*experimental feature.*")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # `nas-mnist count x --json | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(getattr(args, "interrupt_note", "nas-mnist: interrupted"), file=sys.stderr)
        return 130
    except EXPECTED as err:
        from nas_mnist.searcher.study import SearchError
        return _fail(err, 1 if isinstance(err, SearchError) else 2)


def _show_library_notes() -> None:
    """The library logs notes (a repaired journal, ...): print them as one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nas-mnist: note: %(message)s"))
    logger = logging.getLogger("nas_mnist")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.WARNING)


def _fail(err: BaseException, code: int) -> int:
    if isinstance(err, OSError) and err.strerror:
        message = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    elif isinstance(err, RecursionError):
        message = "input nested too deeply"
    else:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"nas-mnist: error: {message}", file=sys.stderr)
    return code
