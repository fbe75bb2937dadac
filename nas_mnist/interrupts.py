"""The handler that turns Ctrl-C, SIGTERM and SIGHUP into a KeyboardInterrupt, once.

A search ends its running trial on a signal by unwinding: Optuna marks the trial FAIL and the
worker labels it interrupted, a few storage writes. A second signal raised inside those writes
left the trial RUNNING: a worker whose search was killed got two SIGTERMs a second apart (the
parent-death signal and its watchdog), and a user presses Ctrl-C twice. So the first signal
raises and the ones within GRACE_S of it are only noted; a later one raises again, in case a
library swallowed the first.
"""

from __future__ import annotations

import time

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
        self._raised_at = now
        raise KeyboardInterrupt
