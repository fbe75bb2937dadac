"""Command line: `nas-mnist train|count|bench|space|search|export|report|dashboard`.

Only this package parses arguments or prints; nothing outside it imports it. Every expected
failure (bad flag, bad file, bad data, unreachable storage, full disk) ends as one line on
stderr and a non-zero exit; a programming error keeps its traceback. Ctrl-C, SIGTERM and SIGHUP
end with exit code 130 after the storage has been left consistent.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import re
import signal
import sys
import warnings
import zlib

from nas_mnist._version import __version__
from nas_mnist.cli import network, results, search
from nas_mnist.cli.common import Parser, UsageError
from nas_mnist.errors import NasMnistError, SearchError
from nas_mnist.interrupts import Interrupter

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


_interrupt = Interrupter()  # its signals received, so that an error they caused is theirs


def _safe_streams() -> None:
    """Under an ASCII locale without UTF-8 mode a '±' or '…' would end a command with a
    UnicodeEncodeError: print what the terminal cannot show as escapes instead."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


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
    _safe_streams()
    _interrupt.reset()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
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
        if _interrupt.received:  # an error raised while unwinding from the signal
            print(getattr(args, "interrupt_note", "nas-mnist: interrupted"), file=sys.stderr)
            return 130
        code = 1 if isinstance(err, SearchError) else 2
        if isinstance(err, NasMnistError) and (err.names_keywords or err.params):
            err = NasMnistError(as_flags(str(err), _flags(parser, args.command), err.params))
        return _fail(err, code)
    except Exception:
        # A library that catches the KeyboardInterrupt of a Ctrl-C and raises its own error
        # (torch's exporter, interrupted while it imports dynamo, raised TorchExportError
        # with a 118-line traceback): the user pressed Ctrl-C, so it is an interruption.
        if _interrupt.received:
            print(getattr(args, "interrupt_note", "nas-mnist: interrupted"), file=sys.stderr)
            return 130
        raise


def _flags(parser, command: str) -> dict[str, str]:
    """keyword -> flag of one command (`last_n` -> `--last-n`); a flag that sets a keyword to
    False is keyed `keyword=False` (`winner=False` -> `--no-winner`)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {}
    for action in sub.choices[command]._actions:
        if action.option_strings and action.dest != "help":
            negative = [s for s in action.option_strings if s.startswith("--no-")]
            if negative or isinstance(action, argparse._StoreFalseAction):
                flags[f"{action.dest}=False"] = (negative or action.option_strings)[0]
            flags.setdefault(action.dest, max((s for s in action.option_strings
                                               if not s.startswith("--no-")), key=len,
                                              default=action.option_strings[0]))
    return flags


def as_flags(message: str, flags: dict[str, str], params: tuple[str, ...] = ()) -> str:
    """A library message in the command's terms (the one place the CLI translates): the
    keyword it starts with, every snake_case keyword and every keyword the error names as a
    parameter, as the flag that sets it."""
    def swap(match):
        return flags.get(match.group(0), match.group(0))
    message = re.sub(r"\b[a-z][a-z0-9_]*=False\b", swap, message)
    head = re.match(r"[a-z][a-z0-9_]*", message)
    if head and head.group(0) in flags:
        message = flags[head.group(0)] + message[head.end():]
    words = [re.escape(p) for p in params if p in flags] + [r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+"]
    return re.sub(rf"(?<![\w./-])(?:{'|'.join(words)})(?![\w/.=-])", swap, message)


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
