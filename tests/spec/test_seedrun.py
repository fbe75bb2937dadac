"""SeedRun: the typed record of a configuration trained on several seeds."""

import json
from pathlib import Path

import pytest

from nas_mnist.errors import SpecError
from nas_mnist.results.confirm import reusable_run, runs_to_keep
from nas_mnist.spec.seedrun import SeedRun

CONFIRMATIONS = Path(__file__).resolve().parents[2] / "studies" / "confirmations"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIRMATIONS.glob("*.json")))
def test_every_shipped_file_reads_and_writes_back_unchanged(name):
    docs = json.loads((CONFIRMATIONS / name).read_text())
    for doc in docs if isinstance(docs, list) else [docs]:
        run = SeedRun.from_json(doc)
        assert run.to_json() == {k: v for k, v in doc.items() if v is not None or k == "trial"}
        assert len(run.mins) == len(run.seeds)


def _run(**changes) -> dict:
    doc = json.loads((CONFIRMATIONS / "trial52-test-epyc-now.json").read_text())
    return {**doc, **changes}


def test_the_curves_are_read_under_their_split():
    run = SeedRun.from_json(_run())
    assert run.eval_split == "test" and run.curves == _run()["test_acc"]
    assert run.mins[0] == min(run.curves[0][-3:])


@pytest.mark.parametrize("changes, named", [
    (dict(trial="3"), "trial must be a trial number"),
    (dict(in_table="no"), "in_table must be true or false"),
    (dict(arch=[1]), "arch must be an architecture object"),
    (dict(val_split=-1), "val_split must be an integer >= 0"),
    (dict(mins=[99.99] * 5), "mins[0] 99.99 is not the min"),
])
def test_a_bad_field_is_named(changes, named):
    with pytest.raises(SpecError, match=named.replace("[", r"\[")):
        SeedRun.from_json(_run(**changes))


def test_reuse_is_a_lookup_by_configuration_cut_to_the_seeds_asked():
    run = SeedRun.from_json(_run())
    found = reusable_run([run], run.arch, run.recipe, 3, val_split=0,
                         data_checksum=run.data_checksum)
    assert found.seeds == [0, 1, 2] and found.mins == run.mins[:3]
    assert len(found.curves) == 3 and len(found.means) == 3
    other = {**run.recipe, "lr": run.recipe["lr"] * 2}
    assert reusable_run([run], run.arch, other, 3, val_split=0,
                        data_checksum=run.data_checksum) is None
    assert reusable_run([run], run.arch, run.recipe, 3, val_split=0,
                        data_checksum="another") is None


def test_runs_a_new_table_does_not_hold_are_kept_out_of_it():
    run = SeedRun.from_json(_run())
    assert runs_to_keep([run], [run.first(3)]) == [SeedRun.from_json(_run(in_table=False))]
    assert runs_to_keep([run.first(3)], [run]) == []
    assert runs_to_keep([run], [run]) == []
    assert "in_table" not in run.to_json() and runs_to_keep([run], [])[0].to_json()[
        "in_table"] is False
