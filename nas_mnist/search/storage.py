"""Open Optuna storages: SQLite (default), other RDB URLs, or a journal file."""

from __future__ import annotations

import os
import re
import sqlite3
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from nas_mnist.errors import NasMnistError

STUDIES_DIR = Path("studies")
# A worker beats every HEARTBEAT_S; a RUNNING trial silent for GRACE_S is marked FAIL and its
# configuration re-queued. NAS_MNIST_HEARTBEAT_S shortens both (tests kill workers on purpose).
HEARTBEAT_S = int(os.environ.get("NAS_MNIST_HEARTBEAT_S", 10))
GRACE_S = 3 * HEARTBEAT_S
SQLITE_TIMEOUT_S = 60


class StorageError(NasMnistError, ValueError):
    """A storage URL cannot be opened or a study does not fit the request."""


def default_storage(study: str) -> str:
    return f"sqlite:///{STUDIES_DIR / study}.db"


def default_artifacts(url: str, study: str) -> str:
    """Per-trial weights live beside a SQLite file (`x.db` -> `x.artifacts/`), else in studies/."""
    path = sqlite_path(url)
    if path is not None:
        return str(path.with_suffix(".artifacts"))
    return str(STUDIES_DIR / f"{study}.artifacts")


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def open_storage(url: str, *, create: bool):
    """Return an Optuna storage. `create=False` refuses to make a new SQLite file.

    RDB URLs (sqlite, postgresql, mysql) get a heartbeat so that a killed worker's trial is
    marked FAIL and its configuration retried; `journal:PATH` opens a journal file.
    """
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage
            path = Path(url.removeprefix("journal:"))
            if not create and not path.exists():
                raise StorageError(f"no study storage at {path}")
            return JournalStorage(JournalFileBackend(str(path)))
        path = sqlite_path(url)
        if path is not None:
            if not create and not path.exists():
                raise StorageError(f"no study storage at {path}")
            if create:
                _prepare_folder(path.parent)
        return _rdb_storage(url)
    except StorageError:
        raise
    except Exception as err:  # sqlalchemy and drivers raise many kinds
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"cannot open storage {mask_url(url)}: {first}") from None


def _rdb_storage(url: str, attempts: int = 3) -> RDBStorage:
    """Workers starting together on a new database race to create Optuna's tables (a
    unique-key violation in PostgreSQL): the loser retries once the tables exist."""
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = RetryHeartbeatStaleTrialCallback(max_retry=1)
                storage = RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                     heartbeat_stale_trial_callback=retry,
                                     engine_kwargs=_engine_kwargs(url))
            _use_wal(url)
            return storage
        except Exception as err:
            if "UniqueViolation" not in repr(err) and "IntegrityError" not in repr(err):
                raise
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def _engine_kwargs(url: str) -> dict:
    # Several workers write one SQLite file: wait for the lock (default 5 s) rather than fail.
    return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}


def _use_wal(url: str) -> None:
    """Write-ahead logging: readers (progress polling, reports) never block a worker's commit."""
    path = sqlite_path(url)
    if path is not None and path.exists():
        with sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S) as connection:
            connection.execute("PRAGMA journal_mode=WAL")


def _prepare_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create the studies folder {folder}: {err.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise StorageError(f"the studies folder {folder} is not writable")


def load_study(name: str, url: str) -> optuna.Study:
    storage = open_storage(url, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise StorageError(f"no study named {name!r} in {mask_url(url)}"
                           + (f" (it has: {', '.join(names)})" if names else "")) from None


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for everything printed."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
