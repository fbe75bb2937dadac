"""Live progress of a search, read from the study's storage (so it sees every worker).

On a terminal: a block of lines redrawn in place, one for the study and one per running trial.
Otherwise: one log line per new trained epoch and per finished trial.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from typing import TextIO

from nas_mnist.searcher import record
from nas_mnist.searcher.record import OPEN, StudyMeta, TrialRecord


NARROW_COLUMNS = 60  # below this, the live block is the headline alone


def _fit(line: str, width: int) -> str:
    """`line` cut to `width` characters (an ellipsis marks the cut)."""
    width = max(1, width)
    return line if len(line) <= width else line[:width - 1] + "~"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class LiveProgress:
    def __init__(self, stream: TextIO, meta: StudyMeta, *, trials: int, jobs: int,
                 deadline: float | None = None, cost=None):
        self.stream, self.meta, self.trials, self.jobs = stream, meta, trials, jobs
        self.cost = cost  # a calibrated engine.costmodel.CostModel, or None
        self.deadline = deadline
        self.tty = stream.isatty()
        self.drawn = 0  # lines of the block on screen (terminal mode)
        self.seen: set[tuple[int, int]] = set()  # (trial, epochs) already logged
        self.finished: set[int] | None = None  # trials already done when we started
        self.confirmed: set[tuple[int, int]] | None = None  # (trial, seed) runs seen
        self.nothing_new: bool | None = None  # a resume that only confirms (trials <= trained)

    def update(self, study) -> None:
        recs = record.records(study)
        news = self._outcomes(recs)
        lines = [self.headline(recs)] + [self.trial_line(r) for r in recs
                                         if r.kind == "running" and (r.accs or r.activations)]
        if self.tty:
            self._redraw(news, lines)
        else:
            self._log(recs, news, lines[0])

    def close(self) -> None:
        self.drawn = 0

    def headline(self, recs: list[TrialRecord]) -> str:
        trained = sum(r.trained for r in recs)
        refused = sum(r.kind in record.REFUSALS for r in recs)
        stopped = sum(r.kind == "early_stopped" for r in recs)
        ranked = record.rank_feasible(recs, self.meta)  # the study's own "best", every limit
        best = ranked[0] if ranked else None
        if self.nothing_new is None:
            self.nothing_new = trained >= self.trials
        count = (f"{trained} ({stopped} stopped early; none new asked for)" if self.nothing_new
                 else f"{trained}/{self.trials} ({stopped} stopped early)")
        text = f"trained {count}, {refused} refused"
        if best is not None:
            seeds = f", mean of {len(best.scores)} seeds" if best.more_seeds else ""
            text += (f" | best {best.mean_score:.2f} % (trial {best.number}, "
                     f"{best.n_params:,} p{seeds})")
        eta = self.eta(recs)
        if eta is not None:
            text += f" | about {_minutes(eta)} left"
        return text

    def estimate(self, r: TrialRecord) -> float | None:
        """Seconds per epoch the cost model expects for this trial (None: no model)."""
        if self.cost is None or r.activations is None:
            return None
        return self.cost.epoch_seconds(r.activations)

    def trial_line(self, r: TrialRecord) -> str:
        left, to_go = "", self.meta.epochs - len(r.accs)
        est = self.estimate(r)
        per_epoch = statistics.fmean(r.epoch_seconds) if r.epoch_seconds else est
        if per_epoch and to_go:
            left = f", <= {_minutes(per_epoch * to_go)} to go"
        if est is not None:
            left += f" (est. {est:.0f} s/epoch)"
        acc = (f"{self.meta.eval_split} acc {r.accs[-1]:.2f} %" if r.accs else "training")
        act = f", {r.activations / 1000:.0f} K act" if r.activations else ""
        return (f"  trial {r.number}: epoch {len(r.accs)}/{self.meta.epochs}, {acc}, "
                f"{r.n_params or 0:,} p{act}{left}")

    def eta(self, recs: list[TrialRecord]) -> float | None:
        """Seconds left: epochs still to train (trained trials so far set how many a trial
        takes on average) times the measured seconds per epoch, shared by the workers."""
        epoch_s = [s for r in recs for s in r.epoch_seconds]
        if not epoch_s:
            return None
        done = [len(r.accs) for r in recs if r.trained]
        per_trial = statistics.fmean(done) if done else self.meta.epochs
        running = [r for r in recs if r.kind in OPEN]
        todo = max(0, self.trials - sum(r.trained for r in recs) - len(running))
        epochs_left = todo * per_trial + sum(max(0.0, per_trial - len(r.accs)) for r in running)
        seconds = epochs_left * statistics.fmean(epoch_s) / max(1, self.jobs)
        if self.deadline is not None:
            seconds = min(seconds, max(0.0, self.deadline - time.time()))
        return seconds

    def _outcomes(self, recs: list[TrialRecord]) -> list[str]:
        """One line per trial that finished since the last update."""
        if self.finished is None:
            self.finished = {r.number for r in recs if r.kind not in OPEN}
        news = [r for r in recs if r.kind not in OPEN and r.number not in self.finished]
        self.finished.update(r.number for r in news)
        lines = [f"trial {r.number}: {self.outcome(r)}" for r in news]
        if self.confirmed is None:
            self.confirmed = {(r.number, s) for r in recs for s in r.more_seeds}
        for r in recs:
            for seed, score in r.more_seeds.items():
                if (r.number, seed) not in self.confirmed:
                    self.confirmed.add((r.number, seed))
                    lines.append(f"trial {r.number} seed {seed}: {score:.2f} % (confirming: "
                                 f"mean of {len(r.scores)} seeds {r.mean_score:.2f} %)")
        return lines

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return shutil.get_terminal_size().columns

    def _redraw(self, news: list[str], lines: list[str]) -> None:
        # Moving up one row per line is right only for lines that do not wrap: the block is
        # cut to the terminal's width (a 150-character line wrapped over 8 rows of a
        # 20-column terminal and left fragments behind), and a narrow one gets the headline
        # alone. Finished-trial lines scroll away above the block and may wrap.
        columns = self._columns()
        if columns < NARROW_COLUMNS:
            lines = lines[:1]
        lines = [_fit(line, columns - 1) for line in lines]
        out = "".join("\x1b[1F\x1b[2K" for _ in range(self.drawn))  # up one line, clear it
        self.stream.write(out + "".join(line + "\n" for line in news + lines))
        self.stream.flush()
        self.drawn = len(lines)

    def _log(self, recs: list[TrialRecord], news: list[str], headline: str) -> None:
        for r in recs:
            if r.kind == "running" and r.accs and (r.number, len(r.accs)) not in self.seen:
                # (a non-terminal log starts a trial's lines at its first epoch)
                self.seen.add((r.number, len(r.accs)))
                self.stream.write(self.trial_line(r).strip() + " | " + headline + "\n")
        self.stream.write("".join(line + "\n" for line in news))
        self.stream.flush()

    def outcome(self, r: TrialRecord) -> str:
        if r.kind == "complete":
            return f"complete, score {r.value:.2f} % ({r.n_params:,} p)"
        if r.kind == "early_stopped":
            return f"stopped early after epoch {len(r.accs)} ({r.stopped_by or 'rule'})"
        if r.kind in record.REFUSALS:
            size = f", {r.n_params:,} p" if r.n_params else ""
            return f"refused: {r.kind.replace('_', ' ')}{size}"
        if r.kind == "duplicate":
            return f"not trained: the configuration of trial {r.duplicate_of}"
        if r.kind == "failed" and r.interrupted:  # by Ctrl-C or a signal
            again = ("trained again first on a resume" if r.retry_of is None
                     else f"a retry of trial {r.retry_of}: not queued again")
            return f"interrupted after epoch {len(r.accs)}/{self.meta.epochs} ({again})"
        return r.kind


class NotebookProgress:
    """One updating bar in a notebook (tqdm.auto): trained networks out of the wanted number,
    with the best score and the running trial's epoch in its postfix."""

    def __init__(self, meta: StudyMeta, *, trials: int, **_):
        from tqdm.auto import tqdm
        self.meta = meta
        self.bar = tqdm(total=trials, desc="networks trained", unit="net")

    def update(self, study) -> None:
        recs = record.records(study)
        self.bar.n = sum(r.trained for r in recs)
        ranked = record.rank_feasible(recs, self.meta)
        best = ranked[0].mean_score if ranked else None
        running = [r for r in recs if r.kind == "running" and r.accs]
        post = {"refused": sum(r.kind in record.REFUSALS for r in recs)}
        if best is not None:
            post["best %"] = f"{best:.2f}"
        if running:
            r = running[-1]
            post["trial"] = f"{r.number} epoch {len(r.accs)}/{self.meta.epochs}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def in_notebook() -> bool:
    """Whether this runs in a Jupyter (or Colab) kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ in ("ZMQInteractiveShell", "Shell")
