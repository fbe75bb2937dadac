"""Every library keyword is checked by the library, before anything is read or written: a bad
value raises a NasMnistError naming the keyword, and the working folder stays empty. The CLI's
flags reach the same calls (one check per keyword; the CLI's parser only parses text)."""

import numpy as np
import pytest

import nas_mnist as nm
from nas_mnist.errors import NasMnistError

SEARCH = dict(space="quick", budget=3000, epochs=1, threads=1, jobs=1, trials=1,
              warm_start="none", progress=False, log=None)

CASES = [
    # (call, keywords, the name the message must carry)
    (nm.search, dict(study="../../escape"), "study"),
    (nm.search, dict(study="a/b"), "study"),
    (nm.search, dict(study=5), "study"),
    (nm.search, dict(objective="max"), "objective"),
    (nm.search, dict(objectives="score,flops"), "objectives"),
    (nm.search, dict(threads=-1), "threads"),
    (nm.search, dict(threads="1"), "threads"),
    (nm.search, dict(threads=10_000), "threads"),
    (nm.search, dict(jobs=0), "jobs"),
    (nm.search, dict(timeout="10"), "timeout"),
    (nm.search, dict(timeout=-5), "timeout"),
    (nm.search, dict(timeout=float("nan")), "timeout"),
    (nm.search, dict(seed=-1), "seed"),
    (nm.search, dict(seed=True), "seed"),
    (nm.search, dict(train_seed=2**32), "train_seed"),
    (nm.search, dict(sampler="grid"), "sampler"),
    (nm.search, dict(min_params=True), "min_params"),
    (nm.search, dict(min_params=-1), "min_params"),
    (nm.search, dict(max_ram=0), "max_ram"),
    (nm.search, dict(max_macs=1.5), "max_macs"),
    (nm.search, dict(max_activations="big"), "max_activations"),
    (nm.search, dict(val_split=-1), "val_split"),
    (nm.search, dict(warm_start=None), "warm_start"),
    (nm.search, dict(warm_start=5), "warm_start"),
    (nm.search, dict(data_dir=5), "data_dir"),
    (nm.search, dict(enqueue=[5]), "enqueue"),
    (nm.search, dict(device="tpu"), "device"),
    (nm.search, dict(trials=0), "trials"),
    (nm.search, dict(retrain_known="yes"), "retrain_known"),
    (nm.search, dict(retrain_known=True, warm_start="none"), "retrain_known"),
    (nm.train, dict(config="trial81", seeds=0), "seeds"),
    (nm.train, dict(config="trial81", epochs="1"), "epochs"),
    (nm.train, dict(config="trial81", seed=-2), "seed"),
    (nm.train, dict(config="trial81", threads=0), "threads"),
    (nm.train, dict(config="trial81", batch_size=1.5), "batch_size"),
    (nm.report, dict(study="base", top=-3), "top"),
    (nm.report, dict(study="base", seeds="1"), "seeds"),
    (nm.report, dict(study="base", confirm="3"), "confirm"),
    (nm.report, dict(study="base", reuse=[3]), "reuse"),
    (nm.report, dict(study="../x"), "study"),
    (nm.export, dict(study="base", format="onnx", trial="3"), "trial"),
    (nm.export, dict(study="base", format="zip"), "format"),
    (nm.export, dict(study="base", calibration_images=100), "calibration_images"),
    (nm.export, dict(study="../x"), "study"),
    (nm.bench, dict(configs=["trial81"], parallel="2"), "parallel"),
    (nm.bench, dict(configs=["trial81"], parallel=40), "parallel"),
    (nm.bench, dict(configs=["trial81"], steps=0), "steps"),
    (nm.predict, dict(model="m.onnx", images=None), "images"),
    (nm.predict, dict(model=None, images=np.zeros((1, 1, 28, 28))), "model"),
]


def _id(case):
    call, kwargs, name = case
    return f"{call.__name__}-{name}-{kwargs[name] if name in kwargs else ''!r}"


@pytest.mark.parametrize("call,kwargs,name", CASES, ids=[_id(c) for c in CASES])
def test_a_bad_keyword_is_refused_by_the_library_before_anything_is_written(
        call, kwargs, name, tmp_path):
    given = {**SEARCH, **kwargs} if call is nm.search else kwargs
    with pytest.raises(NasMnistError) as err:
        call(**given)
    assert name in str(err.value)
    assert len(str(err.value).splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no study, no folder, no lock


def test_a_single_string_is_one_path_not_its_characters(tmp_path):
    with pytest.raises(NasMnistError) as err:
        nm.search(**SEARCH, enqueue=str(tmp_path / "missing.json"))
    assert "missing.json" in str(err.value)
    with pytest.raises(NasMnistError) as err:
        nm.export(study="nothing-here", format="onnx")
    assert "unknown format" not in str(err.value)
