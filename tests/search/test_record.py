"""The trial record and the study meta round-trip through real storage."""

import optuna
import pytest

from nas_mnist.searcher import record
from nas_mnist.searcher.record import StudyMeta, TrialRecord
from nas_mnist.spec.score import default_last_n, last_n_score


def test_record_round_trips_through_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    study = optuna.create_study(study_name="r", storage=url)
    written = dict(arch={"stages": [[{"out": 4}]]}, recipe={"lr": 0.05}, seed=3,
                   accs=[90.0, 95.5], train_losses=[0.5, 0.2], eval_losses=[0.4, 0.3],
                   epoch_seconds=[1.5, 1.25], n_params=1234, macs=56789, seconds=3.0, threads=1,
                   device="cpu", eval_split="test", data_checksum="ab" * 32, data_mean=0.13,
                   data_std=0.31, weights="art-1", stopped_by=None, worker="h:1:2")
    trial = study.ask()
    record.write(trial, **written)
    study.tell(trial, 95.5)
    back = TrialRecord.from_trial(optuna.load_study(study_name="r", storage=url).trials[0])
    for key, value in written.items():
        assert getattr(back, key) == value, key
    assert back.state == "COMPLETE" and back.kind == "complete" and back.trained
    assert back.value == 95.5 and back.number == 0


def test_a_queued_trial_is_queued_not_running(tmp_path):
    # a search that stops at its timeout leaves warm-start trials it never reached waiting;
    # its summary read "trials: 1 complete, 2 running" after every worker had left
    study = optuna.create_study(study_name="q", storage=f"sqlite:///{tmp_path}/q.db")
    study.enqueue_trial({})
    running = study.ask()
    study.enqueue_trial({})
    kinds = [TrialRecord.from_trial(t).kind for t in study.trials]
    assert kinds == ["running", "queued"] and running.number == 0
    assert record.count_kinds(study) == {"running": 1, "queued": 1}
    assert "queued" in record.KIND_ORDER


def test_study_meta_round_trips_and_names_what_differs(tmp_path):
    study = optuna.create_study(study_name="m", storage=f"sqlite:///{tmp_path}/m.db")
    meta = StudyMeta(budget=10_000, space="default", space_digest="d", data_checksum="c" * 64)
    meta.save(study)
    assert StudyMeta.from_study(study) == meta
    other = StudyMeta(budget=9_000, space="default", space_digest="d", data_checksum="e" * 64)
    differ = meta.differences(other)
    assert any("budget 10000 (stored) vs 9000 (now)" in d for d in differ)
    assert any("data_checksum" in d for d in differ) and len(differ) == 2


def test_an_older_study_reads_with_its_objectives_and_fills_missing_keys():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(record.META_KEY, {"budget": 10_000, "space": "default",
                                          "space_digest": "d", "objective": "min",
                                          "last_n": 3, "epochs": 15, "eval_split": "test",
                                          "val_split": 0, "version": "0.1.0"})
    meta = StudyMeta.from_study(study)
    assert meta.objectives == "score,params" and meta.data_checksum is None
    now = StudyMeta(budget=10_000, space="default", space_digest="d", objectives="score,params",
                    data_checksum="c" * 64)
    assert meta.differences(now) == []  # a key the old study lacks is filled in, not refused
    assert meta.filled_from(now).data_checksum == "c" * 64


def test_the_score_is_defined_once():
    assert last_n_score([90.0, 99.0, 98.0, 99.5], 3, "min") == 98.0
    assert last_n_score([90.0, 99.0, 98.0, 99.5], 2, "mean") == pytest.approx(98.75)
    assert [default_last_n(e) for e in (1, 2, 5, 10, 15, 30)] == [1, 1, 1, 2, 3, 3]


@pytest.mark.parametrize("limit", ["max_ram", "max_macs"])
def test_a_resume_can_neither_add_nor_drop_a_limit(limit):
    without = StudyMeta(budget=3_000, space_digest="d", data_checksum="c" * 64)
    with_limit = StudyMeta(budget=3_000, space_digest="d", data_checksum="c" * 64,
                           **{limit: 20_000})
    assert without.differences(with_limit) == [f"{limit} none (stored) vs 20000 (now)"]
    assert with_limit.differences(without) == [f"{limit} 20000 (stored) vs none (now)"]
    assert without.filled_from(with_limit) == without  # never taken from the resume


def test_an_older_study_without_a_limit_key_has_no_limit():
    study = optuna.create_study()
    study.set_user_attr(record.META_KEY, {"budget": 3_000, "space_digest": "d",
                                          "data_checksum": "c" * 64})
    meta = StudyMeta.from_study(study)
    now = StudyMeta(budget=3_000, space_digest="d", data_checksum="c" * 64, max_ram=16_000)
    assert meta.differences(now) == ["max_ram none (stored) vs 16000 (now)"]


def test_an_older_study_without_a_split_seed_was_split_with_seed_0():
    """Studies made before the split seed was stored drew their split with seed 0: read as
    such, a resume with another split seed is refused like any other change."""
    study = optuna.create_study()
    study.set_user_attr(record.META_KEY, {"budget": 3_000, "space_digest": "d",
                                          "val_split": 5_000, "data_checksum": "c" * 64})
    meta = StudyMeta.from_study(study)
    assert meta.split_seed == 0
    now = StudyMeta(budget=3_000, space_digest="d", val_split=5_000, split_seed=7,
                    data_checksum="c" * 64)
    assert meta.differences(now) == ["split_seed 0 (stored) vs 7 (now)"]
