"""The score of a training run, defined once: the min or mean of the last N epochs' accuracy."""

from __future__ import annotations

AGGREGATES = ("min", "mean")


def last_n_score(accs: list[float], last_n: int, how: str = "min") -> float:
    """Min ("consistently") or mean of the last `last_n` accuracies (percent)."""
    if not accs:
        raise ValueError("no epoch was evaluated")
    tail = accs[-last_n:]
    if how == "min":
        return min(tail)
    if how == "mean":
        return sum(tail) / len(tail)
    raise ValueError(f"score aggregate must be one of {AGGREGATES}, got {how!r}")


def default_last_n(epochs: int) -> int:
    """3 of 15 as in the classic task; a short run is scored on its final epoch(s) only."""
    return min(3, max(1, epochs // 5))
