"""Open Optuna storages: SQLite (default), other RDB URLs, or a journal file."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from nas_mnist.errors import NasMnistError, StorageError  # noqa: F401 (StorageError: its home before)

log = logging.getLogger(__name__)
STUDIES_DIR = Path("studies")
# A worker beats every HEARTBEAT_S; a RUNNING trial silent for 3 beats is marked FAIL and its
# configuration re-queued. NAS_MNIST_HEARTBEAT_S shortens both (tests kill workers on purpose).
HEARTBEAT_S = 10
SQLITE_TIMEOUT_S = 60
OPTUNA_TABLES = {"studies", "trials", "version_info"}


def heartbeat_seconds() -> int:
    text = os.environ.get("NAS_MNIST_HEARTBEAT_S", str(HEARTBEAT_S))
    if not text.isdigit() or not 1 <= int(text) <= 3600:
        raise StorageError(f"NAS_MNIST_HEARTBEAT_S must be an integer in [1, 3600] seconds, "
                           f"got {text!r}")
    return int(text)


# A study name becomes a file name (studies/<name>.db, <name>.artifacts): no folders, no '..'.
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_study_name(study) -> str:
    """`study` if it is a name that is also a safe file name, else StorageError naming it."""
    if not isinstance(study, str) or not STUDY_NAME.fullmatch(study) or ".." in study:
        raise StorageError(f"study must be a name of ASCII letters, digits, '.', '_' and '-' "
                           f"(starting with a letter or digit, no '..'), got {study!r}")
    return study


def default_storage(study: str) -> str:
    return f"sqlite:///{STUDIES_DIR / check_study_name(study)}.db"


def default_artifacts(url: str, study: str) -> str:
    """Per-trial weights live beside a SQLite file (`x.db` -> `x.artifacts/`), else in studies/."""
    path = sqlite_path(url)
    if path is not None:
        return str(path.with_suffix(".artifacts"))
    return str(STUDIES_DIR / f"{check_study_name(study)}.artifacts")


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for other storages). An in-memory database
    (`sqlite://`, `sqlite:///:memory:`) is refused: a study there is lost when the command
    ends, and spawned workers could not share it."""
    if not url.startswith("sqlite:"):
        return None
    rest = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
    if rest in ("", ".") or rest.startswith((":memory:", "?")):
        raise StorageError(f"storage {url} is an in-memory database: a study there is lost "
                           f"when the command ends and workers cannot share it; give a file, "
                           f"e.g. sqlite:///studies/NAME.db")
    if "?" in rest:  # the lock, the artifacts and the checks all need the file's own name
        raise StorageError(f"storage {url}: SQLite URL options ('?...') are not supported; "
                           f"give the file alone, e.g. sqlite:///{rest.partition('?')[0]}")
    if rest.endswith("/") or Path(rest).is_dir():
        raise StorageError(f"storage {url} names a folder; give a file, e.g. "
                           f"sqlite:///{rest.rstrip('/')}/NAME.db")
    return Path(rest)


def journal_path(url: str) -> Path:
    """The file of a `journal:PATH` storage."""
    rest = url.removeprefix("journal:")
    if not rest.strip() or rest.endswith("/") or Path(rest).is_dir():
        raise StorageError(f"storage {url!r} needs a file, e.g. journal:studies/NAME.log")
    return Path(rest)


@contextlib.contextmanager
def study_lock(url: str):
    """Hold an exclusive lock, for every process on this machine, on a study kept in a local
    file (SQLite or a journal), for the steps that must be atomic: creating or joining a study
    with its warm start and enqueued configurations, and taking a trial (a queued one, or a
    new one while the study has fewer than --trials claimed). SQLite has no row locks: without
    this, two searches started together on one new name both created it, both ran every
    enqueued configuration and together overshot --trials. A database server keeps its own
    writes consistent; this lock is a file beside the storage (`NAME.db.lock`; for a journal
    `PATH.nas-mnist.lock`, since `PATH.lock` is Optuna's own journal lock: a file of ours there
    made each of Optuna's writes wait out its 30 s grace period). On PostgreSQL it is an advisory
    lock held by one connection of this process: workers on several hosts started together on a
    new study both created it and both enqueued its configurations (a unique study name alone
    does not order the steps after the creation)."""
    if url.startswith("postgresql"):
        with _server_lock(url):
            yield
        return
    if url.startswith("journal:"):
        path: Path | None = journal_path(url)
        suffix = ".nas-mnist.lock"
    else:
        path, suffix = sqlite_path(url), ".lock"
    handle = None
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # the storage makes it next anyway
            handle = open(path.with_name(path.name + suffix), "a")
        except OSError:
            handle = None  # an unwritable folder: opening the storage says so in one line
    if handle is None:
        yield
        return
    import fcntl
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# The advisory lock's key: one per database, for every nas-mnist process using it.
SERVER_LOCK_KEY = 0x6E61_736D_6E69  # "nasmni"
_lock_engines: dict = {}


@contextlib.contextmanager
def _server_lock(url: str):
    """Hold PostgreSQL's session advisory lock SERVER_LOCK_KEY on a connection of our own; the
    server frees it if this process dies, so a killed worker never leaves it held."""
    import sqlalchemy
    engine = _lock_engines.get(url)
    if engine is None:
        engine = _lock_engines[url] = sqlalchemy.create_engine(url, **_engine_kwargs(url))
    try:
        connection = engine.connect()
    except sqlalchemy.exc.SQLAlchemyError as err:  # as open_storage says it
        first = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise StorageError(f"cannot open storage {mask_url(url)}: {first}") from None
    with connection:
        try:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"),
                               {"key": SERVER_LOCK_KEY})
        except sqlalchemy.exc.SQLAlchemyError as err:  # the statement timeout, a lost server
            first = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
            raise StorageError(f"no study lock on {mask_url(url)} within "
                               f"{SERVER_STATEMENT_TIMEOUT_S} s: {first}") from None
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"),
                               {"key": SERVER_LOCK_KEY})


def open_storage(url: str, *, create: bool, read_only: bool = False):
    """Return an Optuna storage. `create=False` refuses to make a new SQLite file;
    `read_only` never writes to it (no tables created, no journal-mode switch), so a study on
    read-only media or a tracked file in a checkout is left byte for byte as it was.

    RDB URLs (sqlite, postgresql, mysql) get a heartbeat so that a killed worker's trial is
    marked FAIL and its configuration retried; `journal:PATH` opens a journal file (a torn
    last line, left by a full disk or a kill, is cut off before anything is appended).
    """
    try:
        if url.startswith("journal:"):
            return _journal_storage(journal_path(url), create=create, read_only=read_only)
        path = sqlite_path(url)
        if path is not None:
            if not create and not path.exists():
                raise StorageError(f"no study storage at {path}")
            if path.exists():
                _check_optuna_sqlite(path)
            if create:
                _prepare_folder(path.parent)
            if read_only:
                return _rdb_storage(_read_only_url(path), wal=False)
        return _rdb_storage(url, wal=create)
    except StorageError:
        raise
    except Exception as err:  # sqlalchemy and drivers raise many kinds
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"cannot open storage {mask_url(url)}: {first}") from None


def _journal_storage(path: Path, *, create: bool, read_only: bool):
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    if path.is_dir():
        raise StorageError(f"journal storage {path} is a folder")
    if not create and not path.exists():
        raise StorageError(f"no study storage at {path}")
    if path.exists() and not read_only:
        _cut_torn_line(path)
    return JournalStorage(JournalFileBackend(str(path)))


def _cut_torn_line(path: Path) -> None:
    """A journal whose last line has no newline was cut mid-write (disk full, kill): that
    operation never completed. Appending after it would corrupt the file for good, so the
    torn tail is cut off, after a backup copy of the whole file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 1))
        if size == 0 or f.read(1) == b"\n":
            return
        keep = f.seek(0) or 0
        for line in f:  # each complete line is one logged operation
            if line.endswith(b"\n"):
                keep += len(line)
    backup = path.with_name(path.name + ".torn-backup")
    shutil.copyfile(path, backup)
    with open(path, "r+b") as f:
        f.truncate(keep)
    log.warning("journal %s ended in a torn line (an interrupted write); cut %d bytes, "
                "a copy of the file before the cut is %s", path, size - keep, backup)


def _check_optuna_sqlite(path: Path) -> None:
    """Refuse, before touching it, a file that is not an Optuna SQLite storage."""
    if path.is_dir():
        raise StorageError(f"storage {path} is a folder, not an SQLite file")
    try:
        with sqlite3.connect(_ro_uri(path), uri=True, timeout=SQLITE_TIMEOUT_S) as conn:
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            # damage inside the pages shows only when a page is read (mid-export); a quick
            # check reads them all now (14 ms for the largest shipped study)
            check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as err:
        if "malformed" in str(err):
            check = str(err)
        else:
            raise StorageError(f"{path} is not an SQLite study storage ({err})") from None
    if check != "ok":
        raise StorageError(f"{path} is damaged (SQLite finds: {check.splitlines()[-1]}); "
                           f"nas-mnist leaves it alone: restore a copy")
    if tables and not OPTUNA_TABLES <= tables:
        raise StorageError(f"{path} is an SQLite file of another program (tables: "
                           f"{', '.join(sorted(tables)[:5])}); nas-mnist leaves it alone")


def _ro_uri(path: Path) -> str:
    """A read-only SQLite URI; `immutable` where the folder cannot be written (read-only
    media), since SQLite could not take a lock there."""
    flags = "mode=ro" + ("" if os.access(path.parent, os.W_OK) else "&immutable=1")
    return f"file:{path.resolve()}?{flags}"


def _read_only_url(path: Path) -> str:
    return f"sqlite:///{_ro_uri(path)}&uri=true"


def _rdb_storage(url: str, *, wal: bool, attempts: int = 3) -> RDBStorage:
    """Workers starting together on a new database race to create Optuna's tables (a
    unique-key violation in PostgreSQL): the loser retries once the tables exist."""
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = RetryHeartbeatStaleTrialCallback(max_retry=1)
                beat = heartbeat_seconds()
                storage = RDBStorage(url, heartbeat_interval=beat, grace_period=3 * beat,
                                     heartbeat_stale_trial_callback=retry,
                                     engine_kwargs=_engine_kwargs(url))
            if wal:
                _use_wal(url)
            return storage
        except StorageError:
            raise
        except Exception as err:
            if "UniqueViolation" not in repr(err) and "IntegrityError" not in repr(err):
                raise
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


# A database server that accepts a connection and never answers hung a search for good
# (libpq's default connect timeout is infinite): every wait on a server is bounded.
SERVER_CONNECT_TIMEOUT_S = 15
SERVER_STATEMENT_TIMEOUT_S = 120  # Optuna's statements take milliseconds


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # Several workers write one SQLite file: wait for the lock (default 5 s), not fail.
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    if url.startswith("postgresql"):
        return {"connect_args": {
            "connect_timeout": SERVER_CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={SERVER_STATEMENT_TIMEOUT_S * 1000}",
            # a server gone silent mid-session: the kernel gives up on unacknowledged data
            "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
            "keepalives_count": 3, "tcp_user_timeout": SERVER_STATEMENT_TIMEOUT_S * 1000},
            "pool_timeout": SERVER_CONNECT_TIMEOUT_S}
    if url.startswith("mysql"):
        return {"connect_args": {"connect_timeout": SERVER_CONNECT_TIMEOUT_S,
                                 "read_timeout": SERVER_STATEMENT_TIMEOUT_S,
                                 "write_timeout": SERVER_STATEMENT_TIMEOUT_S},
                "pool_timeout": SERVER_CONNECT_TIMEOUT_S}
    return {}


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


def load_study(name: str, url: str, *, read_only: bool = True) -> optuna.Study:
    storage = open_storage(url, create=False, read_only=read_only)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise StorageError(f"no study named {name!r} in {mask_url(url)}"
                           + (f" (it has: {', '.join(names)})" if names else "")) from None


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for everything printed."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
