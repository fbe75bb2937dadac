"""Faults: kill -9, Ctrl-C, SIGTERM, parallel workers, NaN losses, bad inputs, bad storage."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from nas_mnist.cli import main
from nas_mnist.searcher.record import count_kinds
from nas_mnist.searcher.study import n_trained as finished


def _cmd(url, data_dir, *extra, study="f"):
    return [sys.executable, "-m", "nas_mnist", "search", "--study", study, "--storage", url,
            "--space", "quick", "--budget", "5000", "--last-n", "1", "--threads", "1", "--jobs", "1",
            "--data-dir", str(data_dir), *extra]


def _env():
    return {**os.environ, "NAS_MNIST_HEARTBEAT_S": "1"}


def _default_sigint():
    # A shell that starts a job in the background sets SIGINT to "ignore" for it, and the
    # child would inherit that; a user's Ctrl-C reaches a foreground process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_training(url, study="f", timeout=120):
    """Wait until some trial is RUNNING and has finished at least one epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            s = optuna.load_study(study_name=study, storage=url)
            running = [t for t in s.trials if t.state == TrialState.RUNNING
                       and t.user_attrs.get("acc")]
            if running:
                return running[0]
        except KeyError:
            pass
        time.sleep(0.5)
    raise AssertionError("no trial started training")


@pytest.mark.slow  # over 20 s: end-to-end
def test_kill_9_then_rerun_retries_the_killed_trial_at_once(tmp_path, small_data_dir):
    url = f"sqlite:///{tmp_path}/k.db"
    proc = subprocess.Popen(_cmd(url, small_data_dir, "--epochs", "6", "--trials", "3"),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = _wait_for_training(url)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = optuna.load_study(study_name="f", storage=url)
    complete_before = {t.number for t in before.trials if t.state == TrialState.COMPLETE}
    # at once, without waiting for the heartbeat's grace period: the worker is gone on this host
    done = subprocess.run(_cmd(url, small_data_dir, "--epochs", "6", "--trials", "3"),
                          env={**os.environ, "NAS_MNIST_HEARTBEAT_S": "60"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="f", storage=url)
    dead = study.trials[victim.number]
    assert dead.state == TrialState.FAIL
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].params == dead.params
    assert retries[0].number == victim.number + 1  # the first trial of the re-run
    assert complete_before <= {t.number for t in study.trials if t.state == TrialState.COMPLETE}
    assert count_kinds(study).get("running", 0) == 0 and finished(study) == 3


@pytest.mark.slow  # over 20 s: end-to-end
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupt_exits_130_and_rerun_resumes(tmp_path, small_data_dir, sig):
    url = f"sqlite:///{tmp_path}/i.db"
    # 20 trials: the run cannot end before the signal (2 did on an idle CPU: tiny networks, 3,000
    # images, a whole trial in about a second, so the poll saw the last epoch and the signal came
    # after the exit)
    proc = subprocess.Popen(_cmd(url, small_data_dir, "--epochs", "6", "--trials", "20"),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    _wait_for_training(url)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    study = optuna.load_study(study_name="f", storage=url)
    assert count_kinds(study).get("running", 0) == 0  # the interrupted trial is FAIL
    victim = next(t for t in study.trials if t.state == TrialState.FAIL)
    if sig != signal.SIGINT:
        return  # each signal leaves the same stored state (checked above): one resume is enough
    assert main(["search", "--study", "f", "--storage", url, "--space", "quick", "--budget",
                 "5000", "--last-n", "1", "--epochs", "1", "--trials", "2", "--data-dir",
                 str(small_data_dir)]) == 2  # other epochs: refused, storage untouched
    before = finished(study)  # --trials counts the study's networks in all: one more to train
    done = subprocess.run(_cmd(url, small_data_dir, "--epochs", "6", "--trials", str(before + 1)),
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="f", storage=url)
    assert finished(study) == before + 1
    retry = study.trials[victim.number + 1]  # trains the interrupted configuration first, once
    assert retry.user_attrs.get("retry_of") == victim.number and retry.params == victim.params
    assert sum(t.user_attrs.get("retry_of") == victim.number for t in study.trials) == 1


@pytest.mark.slow  # over 20 s: end-to-end
def test_four_workers_exact_count_and_enqueued_once(tmp_path, small_data_dir):
    url = f"sqlite:///{tmp_path}/p.db"
    config = tmp_path / "seed.json"
    config.write_text(json.dumps({"stages": [[{"out": 4}], [{"out": 8}]], "transitions": [{}]}))
    done = subprocess.run(_cmd(url, small_data_dir, "--epochs", "1", "--trials", "9", "--jobs",
                               "4", "--min-params", "0", "--enqueue", str(config)),
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="f", storage=url)
    assert finished(study) == 9 and count_kinds(study).get("running", 0) == 0
    assert sum(bool(t.user_attrs.get("enqueued")) for t in study.trials) == 1


@pytest.mark.slow  # trains networks end to end
def test_nan_loss_fails_the_trial_and_the_study_goes_on(tmp_path, small_data_dir, capsys):
    url = f"sqlite:///{tmp_path}/n.db"
    bad = tmp_path / "explodes.json"
    bad.write_text(json.dumps({"arch": {"stages": [[{"out": 4}], [{"out": 4}]],
                                        "transitions": [{}]},
                               "recipe": {"lr": 1e12, "optimizer": "sgd"}}))
    code = main(["search", "--study", "f", "--storage", url, "--space", "quick", "--budget",
                 "5000", "--epochs", "1", "--last-n", "1", "--trials", "2", "--data-dir",
                 str(small_data_dir), "--min-params", "0", "--enqueue", str(bad)])
    assert code == 0
    study = optuna.load_study(study_name="f", storage=url)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "fixed_arch" in failed[0].user_attrs  # lr outside the space
    assert finished(study) == 2
    assert main(["export", "--study", "f", "--storage", url, "--trial",
                 str(failed[0].number), "--out", str(tmp_path / "x")]) == 2
    assert "FAIL" in capsys.readouterr().err


def _untouched(path):
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None


@pytest.mark.parametrize("flags,message", [
    (["--budget", "0"], "must be >= 1"),
    (["--budget", "ten"], "expected an integer"),
    (["--epochs", "0"], "must be >= 1"),
    (["--epochs", "2", "--last-n", "3"], "--last-n must be an integer in [1, epochs 2]"),
    (["--jobs", "0"], "integer >= 1"),
    (["--space", "nonexistent"], "not found"),
    (["--budget", "100"], "below the smallest network"),
    (["--data-dir", "/nonexistent"], "does not exist"),
    (["--enqueue", "/nonexistent.json"], "does not exist"),
    (["--objective", "max"], "invalid choice"),
])
def test_bad_flags_one_line_exit_2_storage_untouched(tmp_path, flags, message, capsys):
    db = tmp_path / "b.db"
    url = f"sqlite:///{db}"
    optuna.create_study(study_name="b", storage=url, directions=["maximize", "minimize"])
    before = _untouched(db)
    code = main(["search", "--study", "b", "--storage", url, "--space", "quick", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert _untouched(db) == before


def test_bad_space_file_is_one_line_naming_the_key(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    from tests.conftest import space_with
    space_with(space, stride="2")
    assert main(["search", "--space", str(space), "--storage", f"sqlite:///{tmp_path}/x.db"]) == 2
    assert "'stride'" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("url,message", [
    ("sqlite:///{tmp}/afile/sub/s.db", "cannot create the studies folder"),
    ("postgresql://nobody@127.0.0.1:1/none", "cannot open storage"),
    ("nosuchdb://x", "cannot open storage"),
])
def test_unusable_storage_is_one_line(tmp_path, small_data_dir, url, message, capsys):
    (tmp_path / "afile").write_text("a file where a folder should be")
    code = main(["search", "--study", "u", "--storage", url.format(tmp=tmp_path), "--space",
                 "quick", "--data-dir", str(small_data_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", ["export", "report", "dashboard"])
def test_missing_study_is_one_line(tmp_path, command, capsys):
    assert main([command, "--study", "ghost", "--storage", f"sqlite:///{tmp_path}/g.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no study storage" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "g.db").exists()


@pytest.mark.slow  # trains networks end to end
def test_full_disk_is_one_line_and_the_study_survives(tiny_disk, small_data_dir, capsys):
    url = f"sqlite:///{tiny_disk}/d.db"
    args = ["search", "--study", "d", "--storage", url, "--space", "quick", "--budget", "5000",
            "--epochs", "1", "--last-n", "1", "--data-dir", str(small_data_dir),
            "--min-params", "0", "--max-activations", "0", "--jobs", "1"]
    assert main([*args, "--trials", "1"]) == 0
    free_kib = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize // 1024
    (tiny_disk / "fill").write_bytes(b"\0" * (free_kib - 60) * 1024)
    capsys.readouterr()
    assert main([*args, "--trials", "30"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "disk is full" in err and str(tiny_disk) in err
    (tiny_disk / "fill").unlink()
    study = optuna.load_study(study_name="d", storage=url)
    first_trained = next(t for t in study.trials if t.user_attrs.get("acc"))
    assert first_trained.state == TrialState.COMPLETE  # what the first run trained survives


def test_an_interrupted_enqueued_trial_is_retried_still_labelled():
    from nas_mnist.searcher import record
    from nas_mnist.searcher.recovery import requeue_interrupted
    study = optuna.create_study()
    study.enqueue_trial({"x": 1.0}, user_attrs=record.attrs_of(enqueued=True, fixed_key="k"))
    trial = study.ask()
    trial.suggest_float("x", 0.0, 2.0)
    record.write(trial, interrupted=True)
    study.tell(trial, state=TrialState.FAIL)
    assert requeue_interrupted(study) == [trial.number]
    retry = study.ask()  # the queued retry comes first, with the same parameter
    assert retry.suggest_float("x", 0.0, 2.0) == 1.0
    attrs = study.trials[retry.number].user_attrs
    assert attrs["enqueued"] is True and attrs["retry_of"] == trial.number


def test_a_second_sigterm_in_the_clean_up_leaves_no_trial_running(tmp_path, monkeypatch):
    """A killed search's worker gets two SIGTERMs a second apart (the parent-death signal and
    its watchdog), a user presses Ctrl-C twice: the second one, landing in the writes that mark
    the interrupted trial FAIL, left it RUNNING (seen in CI)."""
    from types import SimpleNamespace
    from nas_mnist.interrupts import Interrupter
    from nas_mnist.searcher.claims import claim_trials
    from nas_mnist.searcher.workers import _one_trial
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="s", storage=url)
    claim_trials(study, url, trials=5)
    write = study._storage.set_trial_state_values

    def signalled_write(*args, **kwargs):  # the second signal lands in each clean-up write
        os.kill(os.getpid(), signal.SIGTERM)
        return write(*args, **kwargs)

    def objective(trial):
        trial.suggest_float("x", 0.0, 1.0)
        monkeypatch.setattr(study._storage, "set_trial_state_values", signalled_write)
        os.kill(os.getpid(), signal.SIGTERM)  # the first, mid-training
        time.sleep(5)

    settings = SimpleNamespace(storage=url, run=SimpleNamespace(artifacts=tmp_path))
    old = signal.signal(signal.SIGTERM, Interrupter())
    try:
        with pytest.raises(KeyboardInterrupt):
            _one_trial(study, objective, settings)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_signals_after_the_first_wait_out_its_grace_then_interrupt_again():
    from nas_mnist.interrupts import Interrupter
    interrupt = Interrupter(grace_s=0.2)
    with pytest.raises(KeyboardInterrupt):
        interrupt(signal.SIGTERM, None)
    interrupt(signal.SIGTERM, None)  # the clean-up of the first goes on
    time.sleep(0.3)
    with pytest.raises(KeyboardInterrupt):  # a library swallowed the first: this one stops it
        interrupt(signal.SIGINT, None)
    assert interrupt.received == [signal.SIGTERM, signal.SIGTERM, signal.SIGINT]


def test_a_signal_while_a_trial_is_taken_fails_that_trial(tmp_path):
    """`ask` creates the trial in the storage, then reads it back: a SIGTERM in between left
    the new trial RUNNING, its worker not yet knowing it had one."""
    from types import SimpleNamespace
    from nas_mnist.interrupts import Interrupter
    from nas_mnist.searcher.claims import claim_trials
    from nas_mnist.searcher.workers import _one_trial

    class SignalledSampler(optuna.samplers.RandomSampler):
        def before_trial(self, study, trial):  # runs inside `ask`, after the trial is created
            os.kill(os.getpid(), signal.SIGTERM)

    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="s", storage=url, sampler=SignalledSampler())
    claim_trials(study, url, trials=5)
    settings = SimpleNamespace(storage=url, run=SimpleNamespace(artifacts=tmp_path))
    old = signal.signal(signal.SIGTERM, Interrupter())
    try:
        with pytest.raises(KeyboardInterrupt):
            _one_trial(study, lambda trial: 0.0, settings)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_workers_die_with_their_search_on_kill_9(tmp_path, small_data_dir):
    """kill -9 of the search a user started (or the out-of-memory killer) ends its workers;
    nothing stays RUNNING in the study."""
    url = f"sqlite:///{tmp_path}/o.db"
    cmd = _cmd(url, small_data_dir, "--epochs", "6", "--trials", "50", "--min-params", "0")
    cmd[cmd.index("--jobs") + 1] = "2"
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for_training(url)
        workers = [p for p in _children(proc.pid) if _alive(p)]
        assert len(workers) >= 2, "two spawned workers (and the resource tracker)"
        proc.kill()
        proc.wait()
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.5)
        assert not any(_alive(p) for p in workers), "orphaned workers go on training"
    finally:
        for p in _children(proc.pid):
            os.kill(p, signal.SIGKILL)
    study = optuna.load_study(study_name="f", storage=url)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


@pytest.mark.slow  # trains networks end to end
def test_two_searches_started_together_make_one_study_and_share_its_trials(tmp_path,
                                                                           small_data_dir):
    """Two processes on one new study name, in the same second: one creates it, the other
    joins; --trials counts both; an enqueued configuration runs once; no sample is drawn
    twice."""
    known = tmp_path / "known.json"
    known.write_text(json.dumps({"stages": [[{"out": 8}], [{"out": 8, "pad": 0},
                                                          {"out": 12, "pad": 0}]],
                                 "transitions": [{}]}))
    cmd = [sys.executable, "-m", "nas_mnist", "search", "--study", "race", "--storage",
           f"sqlite:///{tmp_path}/race.db", "--space", "quick", "--epochs", "1", "--last-n",
           "1", "--budget", "5000", "--min-params", "0", "--trials", "3", "--jobs", "1",
           "--threads", "1", "--warm-start", "none", "--enqueue", str(known),
           "--data-dir", str(small_data_dir)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    heads = sorted(out.splitlines()[0].split("(")[1].split(",")[0] for out in outs)
    assert heads == ["new", "resumed"], outs
    study = optuna.load_study(study_name="race", storage=f"sqlite:///{tmp_path}/race.db")
    assert finished(study) == 3
    enqueued = [t for t in study.trials if t.user_attrs.get("enqueued")]
    assert len(enqueued) == 1
    trained = [t for t in study.trials if t.user_attrs.get("acc")]
    configs = [json.dumps(t.user_attrs["arch"], sort_keys=True) for t in trained]
    assert len(set(configs)) == len(configs) == 3


def test_the_study_lock_of_a_journal_is_not_optunas_own_lock_file(tmp_path):
    """Optuna's journal lock is a symlink at PATH.lock; a file of ours there made every write
    wait out Optuna's 30 s grace period (a 1-trial journal search took 159 s instead of 37)."""
    import optuna
    from nas_mnist.searcher.storage import open_storage, study_lock
    url = f"journal:{tmp_path / 's.log'}"
    storage = open_storage(url, create=True)
    study = optuna.create_study(study_name="s", storage=storage)
    with study_lock(url):
        assert not (tmp_path / "s.log.lock").exists()
        study.set_user_attr("written", True)  # Optuna takes its own lock: must not wait
    assert optuna.load_study(study_name="s", storage=storage).user_attrs["written"]
