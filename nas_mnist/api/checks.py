"""Keyword checks every library call makes before it reads or writes anything: strict types
(a bool is not a number, a string is not a list of paths), ranges, and a typed error naming
the keyword. The CLI's flags reach the same calls, so a flag and its keyword are checked once
(tests/api/test_keywords.py walks the parity list)."""

from __future__ import annotations

import math
from pathlib import Path

from nas_mnist.api.errors import ApiError


def integer(name: str, value, low: int, high: int | None = None, *, none_ok: bool = False):
    """`value` if it is an int in [low, high] (or None where allowed), else ApiError."""
    if none_ok and value is None:
        return value
    if (not isinstance(value, int) or isinstance(value, bool) or value < low
            or (high is not None and value > high)):
        wanted = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ApiError(f"{name} must be an integer {wanted}" + (" or None" if none_ok else "")
                       + f", got {value!r}")
    return value


def number(name: str, value, *, above: float, none_ok: bool = False):
    """A finite int or float > `above` (or None where allowed)."""
    if none_ok and value is None:
        return value
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not value > above):
        raise ApiError(f"{name} must be a finite number > {above:g}"
                       + (" or None" if none_ok else "") + f", got {value!r}")
    return value


def choice(name: str, value, choices, *, none_ok: bool = False):
    if none_ok and value is None:
        return value
    if not isinstance(value, str) or value not in choices:
        raise ApiError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def path_or_none(name: str, value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    raise ApiError(f"{name} must be a path, got {value!r}")


def paths(name: str, value, *, keep=()) -> tuple:
    """One path or several, as a tuple of strings: a single string is one path (never its
    characters). Items of the types in `keep` pass through as they are."""
    if isinstance(value, (str, Path)):
        return (str(value),)
    if value is None or not isinstance(value, (list, tuple)):
        raise ApiError(f"{name} must be a path or a list of paths, got {value!r}")
    out = []
    for item in value:
        if keep and isinstance(item, keep):
            out.append(item)
        elif isinstance(item, (str, Path)):
            out.append(str(item))
        else:
            raise ApiError(f"{name} must be a path or a list of paths, got {item!r}")
    return tuple(out)


def strings(name: str, value, choices) -> tuple[str, ...]:
    """One choice or several (a single string is one choice)."""
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ApiError(f"{name} must be one of {', '.join(choices)} or a list of them, "
                       f"got {value!r}")
    for item in items:
        choice(name, item, choices)
    return tuple(items)


def integers(name: str, value, low: int) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ApiError(f"{name} must be a list of integers, got {value!r}")
    return [integer(name, item, low) for item in value]


def check_parallel(n: int, what: str) -> None:
    """Refuse `n` threads or processes that would swamp the cores; `what` names the flag or
    keyword in the message."""
    from nas_mnist.engine.device import check_parallel as check
    check(n, what)
