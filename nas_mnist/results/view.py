"""A study read once: what the results functions rank, plot, summarise and export from.

Every results function takes a `StudyView` (a live `optuna.Study` is read into one by
`view_of`), so a report is made from one snapshot of the storage, not from as many reads as it
has figures, and a search that goes on meanwhile cannot make its pages disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import optuna

from nas_mnist.searcher import record
from nas_mnist.searcher.record import StudyMeta, TrialRecord


@dataclass(frozen=True)
class StudyView:
    name: str
    meta: StudyMeta
    records: tuple[TrialRecord, ...]
    # finished trials' (start, complete) times in seconds since the epoch, by trial number
    times: dict[int, tuple[float, float]]
    study: optuna.Study  # the live study: Optuna's own figures and importances only
    # the search's confirmation runs (more training seeds of its top trials): seconds of each
    confirm_seconds: tuple[float, ...] = ()

    @classmethod
    def read(cls, study: optuna.Study) -> "StudyView":
        meta = read_meta(study)
        trials = study.get_trials(deepcopy=False)
        confirmed = record.seed_runs(study)
        return cls(study.study_name, meta, tuple(record.records_of(trials, confirmed)),
                   {t.number: (t.datetime_start.timestamp(), t.datetime_complete.timestamp())
                    for t in trials if t.datetime_start and t.datetime_complete},
                   study,
                   tuple(float(run.get("seconds") or 0.0) for held in confirmed.values()
                         for run in held.get("runs", {}).values() if isinstance(run, dict)))

    @cached_property
    def feasible(self) -> list[TrialRecord]:
        """COMPLETE trials within every limit with a finite score, best first."""
        return record.rank_feasible(self.records, self.meta)


def read_meta(study: optuna.Study) -> StudyMeta:
    """A live study's meta alone (its trials are not read)."""
    meta = StudyMeta.from_study(study)
    if meta is None:
        from nas_mnist.searcher.storage import StorageError
        raise StorageError(f"study {study.study_name!r} was not made by nas-mnist")
    return meta


def view_of(study: "StudyView | optuna.Study") -> StudyView:
    """The view of `study`: itself, or a live Optuna study read once."""
    return study if isinstance(study, StudyView) else StudyView.read(study)
