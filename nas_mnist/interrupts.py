"""The handler that turns Ctrl-C, SIGTERM and SIGHUP into a KeyboardInterrupt, once, and the
steps it must not cut.

A search ends its running trial on a signal by unwinding: Optuna marks the trial FAIL and the
worker labels it interrupted, a few storage writes. A second signal raised inside those writes
left the trial RUNNING: a worker whose search was killed got two SIGTERMs a second apart (the
parent-death signal and its watchdog), and a user presses Ctrl-C twice. So the first signal
raises and the ones within GRACE_S of it are only noted; a later one raises again, in case a
library swallowed the first. A signal inside `deferred()` (taking a trial: created in the
storage, not yet known to the worker that would fail it) raises as that block ends.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

GRACE_S = 10.0


class Interrupter:
    """A signal handler (`signal.signal(sig, Interrupter())`); `received` lists the signals."""

    def __init__(self, grace_s: float = GRACE_S):
        self.grace_s = grace_s
        self.reset()

    def reset(self) -> None:
        self.received: list[int] = []
        self._raised_at: float | None = None

    def __call__(self, signum, frame) -> None:
        self.received.append(signum)
        now = time.monotonic()
        if self._raised_at is not None and now - self._raised_at < self.grace_s:
            return  # the first is still unwinding: leave its clean-up alone
        if _deferred.depth:
            _deferred.pending = self
            return
        self.interrupt()

    def interrupt(self) -> None:
        self._raised_at = time.monotonic()
        raise KeyboardInterrupt


class _Deferred:
    depth = 0
    pending: Interrupter | None = None


_deferred = _Deferred()


@contextmanager
def deferred():
    """Hold a signal that arrives inside the block until it ends, then raise it."""
    _deferred.depth += 1
    try:
        yield
    finally:
        _deferred.depth -= 1
        if not _deferred.depth and _deferred.pending is not None:
            pending, _deferred.pending = _deferred.pending, None
            pending.interrupt()
