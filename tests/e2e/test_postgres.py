"""Distributed workers on a real PostgreSQL server (started here from Debian's packages)."""

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
import tempfile

import optuna
import pytest

from nas_mnist.searcher.record import TrialRecord, count_kinds
from nas_mnist.searcher.study import n_trained as finished

pytestmark = pytest.mark.postgres


def _as_postgres(args):
    if os.geteuid() == 0:  # initdb refuses to run as root
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@pytest.fixture(scope="module")
def postgres_url():
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bindirs:
        pytest.skip("PostgreSQL server is not installed (Debian package 'postgresql')")
    pytest.importorskip("psycopg")
    bindir = bindirs[-1]
    root = tempfile.mkdtemp(prefix="nas-mnist-pg-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = os.path.join(root, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_postgres([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U",
                                 "postgres"]), check=True, capture_output=True)
    subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-l", f"{root}/log", "-w",
                                 "-o", f"-p {port} -k {root} -h 127.0.0.1", "start"]),
                   check=True, capture_output=True)
    try:
        subprocess.run(_as_postgres([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port),
                                     "-U", "postgres", "nas"]), check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/nas"
    finally:
        subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow  # over 20 s: end-to-end
def test_two_workers_share_one_postgres_study(postgres_url, small_data_dir):
    cmd = [sys.executable, "-m", "nas_mnist", "search", "--study", "pg", "--storage",
           postgres_url, "--space", "quick", "--budget", "5000", "--epochs", "1", "--last-n",
           "1", "--trials", "6", "--threads", "1", "--jobs", "1", "--data-dir",
           str(small_data_dir)]
    first = subprocess.Popen([*cmd, "--seed", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # the second machine joins the study once it exists
        try:
            optuna.load_study(study_name="pg", storage=postgres_url)
            break
        except KeyError:
            time.sleep(0.5)
    # the joining worker names only the study, its storage and how it runs: the study's
    # budget, space, epochs and last-N come from the storage
    joiner = [sys.executable, "-m", "nas_mnist", "search", "--study", "pg", "--storage",
              postgres_url, "--trials", "6", "--threads", "1", "--jobs", "1", "--data-dir",
              str(small_data_dir), "--seed", "1"]
    workers = [first, subprocess.Popen(joiner, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    # each worker re-checks the shared count before every trial: at most one extra
    assert 6 <= finished(study) <= 7
    assert count_kinds(study).get("running", 0) == 0
    # both worker processes trained trials (the worker id is host:pid:start)
    workers = {t.user_attrs["worker"] for t in study.trials if "acc" in t.user_attrs}
    assert len(workers) == 2


def test_a_server_that_accepts_and_never_answers_is_one_line_within_the_timeout(
        tmp_path, monkeypatch, capsys):
    """A listener that takes the connection and says nothing (a hung server, a proxy with no
    backend) hung the search for good; now the connect timeout ends it in one line, and the
    line does not speak of a study that was never opened."""
    pytest.importorskip("psycopg")
    import threading
    from nas_mnist.cli import main
    from nas_mnist.searcher import storage
    monkeypatch.setattr(storage, "SERVER_CONNECT_TIMEOUT_S", 2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # accepted, never answered
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"postgresql://u:secretpw@127.0.0.1:{server.getsockname()[1]}/nas"
    start = time.monotonic()
    try:
        code = main(["search", "--study", "s", "--storage", url, "--space", "quick",
                     "--budget", "3000", "--trials", "1", "--epochs", "1", "--threads", "1",
                     "--jobs", "1", "--warm-start", "none"])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "cannot open storage" in err[0] and "secretpw" not in err[0]
    assert time.monotonic() - start < 30


@pytest.mark.slow  # over 20 s: end-to-end
def test_two_workers_started_together_on_a_new_postgres_study_enqueue_once(
        postgres_url, small_data_dir):
    """Workers started at the same moment (a compose file's replicas) on a new study: one
    creates it with its warm start, the other joins; without a lock on the server both enqueued
    the configurations given and each ran twice."""
    cmd = [sys.executable, "-m", "nas_mnist", "search", "--study", "pg-together", "--storage",
           postgres_url, "--space", "quick", "--budget", "5000", "--epochs", "1", "--last-n",
           "1", "--trials", "3", "--threads", "1", "--jobs", "1", "--data-dir",
           str(small_data_dir), "--enqueue", "trial81", "--enqueue", "woolly3762"]
    workers = [subprocess.Popen([*cmd, "--seed", str(seed)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err
    study = optuna.load_study(study_name="pg-together", storage=postgres_url)
    queued = [t.number for t in study.trials if TrialRecord.from_trial(t).was_enqueued]
    assert len(queued) == 2, queued


def test_a_worker_waits_for_the_server_lock_before_it_creates_a_study(postgres_url,
                                                                      small_data_dir):
    """The steps that must be atomic (create a study with its warm start and enqueued
    configurations, take a trial) hold an advisory lock on the server: a worker started while
    another holds it waits, and creates nothing until it is released. CI lost this race once
    (the second worker failed on the unique study name)."""
    import sqlalchemy
    from nas_mnist.searcher.storage import study_lock
    cmd = [sys.executable, "-m", "nas_mnist", "search", "--study", "pg-waits", "--storage",
           postgres_url, "--space", "quick", "--budget", "5000", "--epochs", "1", "--last-n",
           "1", "--trials", "1", "--threads", "1", "--jobs", "1", "--data-dir",
           str(small_data_dir), "--warm-start", "none"]
    engine = sqlalchemy.create_engine(postgres_url)
    waiting = sqlalchemy.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                              "AND NOT granted")
    with study_lock(postgres_url):
        worker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        deadline = time.monotonic() + 120
        with engine.connect() as connection:
            while connection.execute(waiting).scalar() == 0:
                assert worker.poll() is None, worker.communicate()[1]
                assert time.monotonic() < deadline, "the worker never waited for the lock"
                time.sleep(0.2)
        assert "pg-waits" not in optuna.get_all_study_names(postgres_url)
    _, err = worker.communicate(timeout=600)
    assert worker.returncode == 0, err
    assert "pg-waits" in optuna.get_all_study_names(postgres_url)
    engine.dispose()
