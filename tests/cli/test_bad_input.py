"""Bad input, one test per class (see ../shared/findings/bad-inputs.md): strict types at the
boundary, bounds on what a file can ask for, the data set as part of a study's identity,
storages that read-only commands leave alone, atomic user files, and one place that turns
expected errors into one line while bugs keep their traceback."""

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas_mnist.cli import main
from nas_mnist.cli.network import REFERENCE_CONFIG
from nas_mnist.engine.data import write_subset

W = {"stages": [[{"out": 8, "pad": 1}], [{"out": 8, "pad": 0}]], "transitions": [{}]}


def _one_line(capsys, code, expected=2):
    err = capsys.readouterr().err.strip()
    assert code == expected, err
    assert len(err.splitlines()) == 1 and err.startswith("nas-mnist: error:"), err
    return err


@pytest.mark.parametrize("doc,message", [
    ({"stages": [[{"out": 4, "pad": True}]]}, "pad must be one of (0, 1), got True"),
    ({"stages": [[{"out": 4}]], "transitions": 5}, "transitions must be a list"),
    ({"stages": [[{"out": 4}]], "stage_dropout": 0.1}, "stage_dropout must be a list"),
    ({"stages": [[{"out": 4}]], "batch_norm": "no"}, "batch_norm must be true or false"),
    ({"arch": W, "recipe": {"lr": "fast"}}, "lr must be a finite number, got 'fast'"),
    ({"arch": W, "recipe": {"batch_size": 64.5}}, "batch_size must be an integer, got 64.5"),
    ({"arch": W, "recipe": {"epochs": True}}, "epochs must be an integer, got True"),
    ({"arch": W, "seed": "abc"}, "seed must be an integer"),
    ({"arch": W, "threads": -3}, "threads must be a positive integer"),
    ({"arch": W, "params": 13}, "the file says params 13"),
])
def test_types_are_checked_strictly_at_the_boundary(tmp_path, small_data_dir, capsys, doc,
                                                    message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    code = main(["train", str(path), "--epochs", "1", "--data-dir", str(small_data_dir)])
    assert message in _one_line(capsys, code)


@pytest.mark.parametrize("argv,message", [
    (["train", REFERENCE_CONFIG, "--require", "nan"], "finite number"),
    (["search", "--timeout", "nan"], "finite number"),
    (["search", "--budget", "1e12"], "expected an integer"),
    (["search", "--seed", "-1"], "[0, 2**32)"),
    (["search", "--train-seed", "99999999999999999999"], "[0, 2**32)"),
    (["search", "--study", "../../escape"], "--study"),
    (["search", "--jobs", "many"], "--jobs must be 'auto'"),
    (["search", "--confirm-margin", "-0.1"], ">= 0 points or 'none'"),
    (["search", "--confirm-margin", "inf"], "finite number"),
])
def test_flags_refuse_nan_and_out_of_range_values(tmp_path, capsys, argv, message):
    code = main([*argv, "--storage", f"sqlite:///{tmp_path}/s.db"] if argv[0] == "search"
                else argv)
    assert message in _one_line(capsys, code)
    assert not (tmp_path / "s.db").exists()


def test_a_bad_environment_variable_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAS_MNIST_HEARTBEAT_S", "abc")
    code = main(["export", "--study", "s", "--storage", f"sqlite:///{tmp_path}/s.db"])
    assert "no study storage" in _one_line(capsys, code)  # not touched before it is needed
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    code = main(["export", "--study", "s", "--storage", f"sqlite:///{tmp_path}/s.db"])
    assert "NAS_MNIST_HEARTBEAT_S" in _one_line(capsys, code)


@pytest.mark.parametrize("write,message", [
    (lambda p: p.write_text(json.dumps({"stages": [[{"out": 100_000}]]})), "at most 1,024"),
    (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    (lambda p: p.write_text(json.dumps({"stages": [[{"out": 4}] * 250_000]})),
     "larger than 1,000,000 bytes"),
    (lambda p: p.write_text(json.dumps({"stages": [[{"out": 4}] * 100]})), "at most 64 convs"),
])
def test_a_small_file_cannot_ask_for_hours_or_gigabytes(tmp_path, capsys, write, message):
    path = tmp_path / "c.json"
    write(path)
    assert message in _one_line(capsys, main(["count", str(path)]))


def test_a_space_cannot_ask_for_unbounded_pools_or_choices(tmp_path, capsys):
    from tests.conftest import space_with
    for key, value, message in [("pools", "{low: 1, high: 100000}", "'pools'"),
                                ("width", f"{{choices: {list(range(1, 1000))}}}", "at most 256")]:
        space = space_with(tmp_path / "s.yaml", **{key: value})
        code = main(["search", "--space", str(space), "--storage", f"sqlite:///{tmp_path}/x.db"])
        assert message in _one_line(capsys, code)
    assert not (tmp_path / "x.db").exists()


def test_data_files_are_checked_before_they_are_inflated(tmp_path, capsys):
    bomb = write_subset(tmp_path / "bomb", 50, 20)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (10**8, 28, 28))
    with gzip.open(bomb / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + b"\0" * (1 << 20))  # claims 78 GB
    os.remove(bomb / "train-images-idx3-ubyte")
    corrupt = write_subset(tmp_path / "corrupt", 50, 20, gz=True)
    raw = bytearray((corrupt / "train-images-idx3-ubyte.gz").read_bytes())
    raw[60:200] = bytes(140)
    (corrupt / "train-images-idx3-ubyte.gz").write_bytes(bytes(raw))
    for folder, message in [(bomb, "a data file may hold at most"), (corrupt, "cannot read"),
                            (tmp_path / "bomb" / "t10k-images-idx3-ubyte", "is a file")]:
        code = main(["train", REFERENCE_CONFIG, "--epochs", "1", "--data-dir", str(folder)])
        assert message in _one_line(capsys, code)


def test_networks_that_do_not_fit_the_data_are_refused_before_training(tmp_path, small_data_dir,
                                                                         capsys):
    for change, message in [({"in_channels": 3}, "takes 3x28x28 images"),
                            ({"num_classes": 5}, "predicts 5 classes")]:
        path = tmp_path / "c.json"
        path.write_text(json.dumps({**W, **change}))
        code = main(["train", str(path), "--epochs", "1", "--data-dir", str(small_data_dir)])
        assert message in _one_line(capsys, code)
        url = f"sqlite:///{tmp_path}/e.db"
        code = main(["search", "--storage", url, "--space", "quick", "--enqueue", str(path),
                     "--data-dir", str(small_data_dir)])
        assert message in _one_line(capsys, code)
        assert not (tmp_path / "e.db").exists()


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, small_data_dir):
    root = tmp_path_factory.mktemp("tiny")
    url = f"sqlite:///{root}/t.db"
    assert main(["search", "--study", "t", "--storage", url, "--space", "quick", "--budget",
                 "5000", "--trials", "2", "--epochs", "1", "--jobs", "1", "--data-dir",
                 str(small_data_dir), "--artifacts", str(root / "art")]) == 0
    return root, url


@pytest.mark.slow  # trains networks end to end
def test_the_data_set_is_part_of_the_study(tiny_study, small_data_dir, tmp_path, capsys):
    root, url = tiny_study
    other = write_subset(tmp_path / "other", 2000, 500)  # another data set (fewer images)
    code = main(["search", "--study", "t", "--storage", url, "--space", "quick", "--budget",
                 "5000", "--trials", "3", "--epochs", "1", "--jobs", "1", "--data-dir",
                 str(other)])
    assert "data_checksum" in _one_line(capsys, code)
    code = main(["export", "--study", "t", "--storage", url, "--artifacts", str(tmp_path / "no"),
                 "--out", str(tmp_path / "w"), "--data-dir", str(other)])
    assert "pass the study's (data_dir, --data-dir)" in _one_line(capsys, code)
    code = main(["report", "--study", "t", "--storage", url, "--seeds", "1", "--no-png",
                 "--out", str(tmp_path / "r"), "--data-dir", str(other)])
    assert "pass the study's (data_dir, --data-dir)" in _one_line(capsys, code)


@pytest.mark.slow  # trains networks end to end
def test_a_winner_carries_its_normalisation(tiny_study, small_data_dir, tmp_path):
    root, url = tiny_study
    assert main(["export", "--study", "t", "--storage", url, "--artifacts", str(root / "art"),
                 "--out", str(tmp_path / "w"), "--data-dir", str(small_data_dir)]) == 0
    doc = json.loads(next((tmp_path / "w").glob("*.json")).read_text())
    from nas_mnist.engine.data import load_dataset
    data = load_dataset(small_data_dir)
    assert doc["normalisation"] == {"mean": data.mean, "std": data.std}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # trains networks end to end
def test_read_only_commands_leave_the_storage_byte_for_byte(tiny_study, small_data_dir,
                                                            tmp_path):
    import sqlite3
    root, _ = tiny_study
    db = tmp_path / "copy.db"
    with sqlite3.connect(root / "t.db") as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    with sqlite3.connect(db) as conn:  # a rollback-journal file, as older studies are
        conn.execute("PRAGMA journal_mode=DELETE")
    assert db.read_bytes()[18:20] == b"\x01\x01"
    before = _digest(db)
    url = f"sqlite:///{db}"
    assert main(["export", "--study", "t", "--storage", url, "--artifacts", str(root / "art"),
                 "--out", str(tmp_path / "w")]) == 0
    assert main(["report", "--study", "t", "--storage", url, "--no-png",
                 "--out", str(tmp_path / "r")]) == 0
    assert _digest(db) == before


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path, capsys):
    import sqlite3
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    before = _digest(db)
    for argv in (["export", "--study", "x"], ["search", "--study", "x", "--space", "quick"]):
        code = main([*argv, "--storage", f"sqlite:///{db}"])
        assert "another program" in _one_line(capsys, code)
    assert _digest(db) == before


@pytest.mark.slow  # trains networks end to end
def test_a_torn_journal_line_is_cut_before_appending(tmp_path, small_data_dir, capsys):
    log = tmp_path / "j.log"
    args = ["search", "--study", "j", "--storage", f"journal:{log}", "--space", "quick",
            "--budget", "5000", "--epochs", "1", "--jobs", "1", "--data-dir", str(small_data_dir)]
    assert main([*args, "--trials", "1"]) == 0
    intact = log.read_bytes()
    log.write_bytes(intact + b'{"op_code": 5, "worker_id": "x", "trial_id": 0, "us')  # torn
    capsys.readouterr()
    assert main([*args, "--trials", "2"]) == 0
    assert "torn line" in capsys.readouterr().err
    assert (tmp_path / "j.log.torn-backup").exists()
    from nas_mnist.searcher.storage import open_storage
    study = optuna.load_study(study_name="j", storage=open_storage(f"journal:{log}",
                                                                     create=False))
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) >= 2


@pytest.mark.slow  # trains networks end to end
def test_user_files_are_checked_before_long_work(tiny_study, small_data_dir, tmp_path, capsys):
    root, url = tiny_study
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv, message in [
        (["train", REFERENCE_CONFIG, "--json-out", str(tmp_path)], "is a folder"),
        (["train", REFERENCE_CONFIG, "--json-out", str(tmp_path / "no" / "m.json")],
         "does not exist"),
        (["export", "--study", "t", "--storage", url, "--out", str(afile)], "is a file"),
        (["report", "--study", "t", "--storage", url, "--out", str(afile)], "is a file"),
        (["search", "--study", "t", "--storage", url, "--space", "quick", "--budget", "5000",
          "--epochs", "1", "--jobs", "1", "--trials", "3", "--artifacts", str(afile)],
         "is a file"),
        (["report", "--study", "t", "--storage", url, "--seeds", "1", "--confirm", "999"],
         "999"),
        (["report", "--study", "t", "--storage", url, "--seeds", "1", "--no-winner",
          "--confirm", "0", "--confirm-top", "2"], "exclude each other"),
        (["report", "--study", "t", "--storage", url, "--seeds", "1", "--confirm-top", "0"],
         "must be >= 1"),
        (["report", "--study", "t", "--storage", url, "--confirm-top", "2"],
         "--confirm-top needs --seeds"),
        (["report", "--study", "t", "--storage", url, "--confirm", "0"],
         "--confirm needs --seeds"),
    ]:
        code = main([*argv, "--data-dir", str(small_data_dir)])
        assert message in _one_line(capsys, code)


@pytest.mark.slow  # trains networks end to end
def test_a_truncated_weights_artifact_is_retrained_not_exported(tiny_study, small_data_dir,
                                                               tmp_path):
    root, url = tiny_study
    art = tmp_path / "art"
    import shutil
    shutil.copytree(root / "art", art)
    for f in art.iterdir():
        f.write_bytes(f.read_bytes()[:2000])
    assert main(["export", "--study", "t", "--storage", url, "--artifacts", str(art),
                 "--out", str(tmp_path / "w"), "--data-dir", str(small_data_dir)]) == 0
    doc = json.loads(next((tmp_path / "w").glob("*.json")).read_text())
    assert doc["weights"]["source"] == "re-trained at export"
    assert not list((tmp_path / "w").glob(".*"))  # no temporary files left behind


def test_a_programming_error_keeps_its_traceback(monkeypatch):
    import nas_mnist.cli.network as network
    def broken(args):
        raise ValueError("a bug, not bad input")
    monkeypatch.setattr(network, "cmd_count", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["count", REFERENCE_CONFIG])


@pytest.mark.slow  # trains networks end to end
def test_a_closed_pipe_is_not_an_error():
    done = subprocess.run(f"{sys.executable} -m nas_mnist count {REFERENCE_CONFIG} --json | head -1",
                          shell=True, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "{" and "Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///"])
@pytest.mark.parametrize("command", [["search", "--budget", "5000", "--trials", "1"], ["report"],
                                     ["export"], ["dashboard"]])
def test_an_in_memory_storage_is_refused_in_one_line(url, command, capsys):
    code = main([*command, "--study", "m", "--storage", url])
    assert "is an in-memory database" in _one_line(capsys, code)


def test_a_port_out_of_range_is_one_line(capsys):
    code = main(["dashboard", "--study", "m", "--port", "99999"])
    assert "must be a port in [1, 65535], got 99999" in _one_line(capsys, code)


def test_predict_refuses_an_oversized_png_from_its_header(tmp_path, capsys):
    from PIL import Image
    png = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(png)
    winner = Path(__file__).resolve().parents[2] / "studies/mnist-10k-winners/trial52.json"
    code = main(["predict", str(winner), str(png)])
    assert "is 300x300 pixels; a model here takes images of at most 256x256" in \
        _one_line(capsys, code)


def test_predict_names_a_folder_and_labels_that_are_images(tmp_path, small_data_dir, capsys):
    winner = Path(__file__).resolve().parents[2] / "studies/mnist-10k-winners/trial52.json"
    images = str(small_data_dir / "t10k-images-idx3-ubyte")
    code = main(["predict", str(winner), str(tmp_path)])
    assert f"images {tmp_path} is a folder" in _one_line(capsys, code)
    code = main(["predict", str(winner), images, "--labels", images])  # was a broadcast
    assert "labels must be one class per image, shape (N,)" in _one_line(capsys, code)
    code = main(["predict", str(tmp_path), images])  # was "does not exist"
    assert f"model {tmp_path} is a folder" in _one_line(capsys, code)
    code = main(["predict", str(winner), images, images])  # blamed a valid IDX file
    assert "give one IDX file, or PNG files" in _one_line(capsys, code)


def test_predict_refuses_an_images_file_with_no_image(tmp_path, capsys):
    import numpy as np
    from nas_mnist.engine.data import write_idx
    empty = write_idx(tmp_path / "none-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    winner = Path(__file__).resolve().parents[2] / "studies/mnist-10k-winners/trial52.json"
    code = main(["predict", str(winner), str(empty)])  # was a numpy traceback
    assert f"images {empty} holds no image" in _one_line(capsys, code)


def test_a_damaged_study_storage_is_refused_before_any_work_untouched(tmp_path, capsys):
    """Damage inside the pages shows only when SQLite reads them: it used to end in
    StorageInternalError tracebacks in the middle of an export."""
    import optuna
    import sqlite3
    db = tmp_path / "d.db"
    study = optuna.create_study(study_name="d", storage=f"sqlite:///{db}")
    for i in range(150):
        study.enqueue_trial({"x": float(i)}, user_attrs={"note": "x" * 200})
    with sqlite3.connect(db) as conn:
        pages, size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count",
                                                                            "page_size"))
    with open(db, "r+b") as f:  # scribble over the middle of every page after the schema's
        for page in range(pages // 2, pages):
            f.seek(page * size + size // 4)
            f.write(bytes(range(256)) * (size // 512))
    before = _digest(db)
    for argv in (["export", "--study", "d"], ["report", "--study", "d"],
                 ["search", "--study", "d", "--space", "quick"]):
        code = main([*argv, "--storage", f"sqlite:///{db}"])
        assert f"{db} is damaged (SQLite finds: " in _one_line(capsys, code)
    assert _digest(db) == before


def test_report_jobs_are_bounded_before_any_file_is_touched(tmp_path, capsys):
    code = main(["report", "--study", "x", "--storage", f"sqlite:///{tmp_path}/x.db",
                 "--seeds", "1", "--jobs", "1000", "--out", str(tmp_path / "r")])
    assert "jobs 1000 is more than 4 per CPU core" in _one_line(capsys, code)
    assert not (tmp_path / "r").exists() and not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("storage,needle", [
    ("journal:", "needs a file"),
    ("journal:{tmp}/", "needs a file"),
    ("sqlite:///{tmp}/x.db?mode=ro", "URL options"),
    ("sqlite:///{tmp}/sub/", "names a folder"),
])
def test_a_storage_url_that_names_no_file_is_one_line_and_creates_nothing(
        storage, needle, tmp_path, capsys):
    code = main(["search", "--study", "s", "--space", "quick", "--budget", "3000",
                 "--trials", "1", "--warm-start", "none", "--storage",
                 storage.format(tmp=tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # trains a network
def test_a_recipe_study_resumed_with_another_arch_names_both(tmp_path, small_data_dir, capsys):
    base = ["search", "--study", "r", "--epochs", "1", "--threads", "1", "--jobs", "1",
            "--data-dir", str(small_data_dir), "--trials", "1", "--arch", "trial81"]
    assert main(base) == 0
    capsys.readouterr()
    code = main(base[:-1] + ["woolly3762"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "recipe study of '6v-14xv" in err[0] and "3,762 parameters" in err[0]
    assert "budget" not in err[0]  # the stored budget is not what the user changed


def test_predict_refuses_labels_the_model_cannot_predict(tmp_path, small_data_dir, capsys):
    """A label of 10 on a 10-class model was counted as a miss: a silent wrong accuracy."""
    import numpy as np
    from nas_mnist.engine.data import read_idx, write_idx
    winner = Path(__file__).resolve().parents[2] / "studies/mnist-10k-winners/trial52.json"
    images = small_data_dir / "t10k-images-idx3-ubyte"
    labels = read_idx(small_data_dir / "t10k-labels-idx1-ubyte")[0].copy()
    labels[3] = 10
    bad = write_idx(tmp_path / "bad-labels-idx1-ubyte", labels.astype(np.uint8))
    code = main(["predict", str(winner), str(images), "--labels", str(bad)])
    assert "--labels must be classes 0-9 (the model's outputs); found 10" in \
        _one_line(capsys, code)
