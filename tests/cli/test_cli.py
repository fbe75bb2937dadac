import json
import subprocess
import sys

import pytest

from nas_mnist.cli import main
from nas_mnist.cli.network import REFERENCE_CONFIG


def test_count_prints_table_and_json(capsys):
    assert main(["count", REFERENCE_CONFIG]) == 0
    out = capsys.readouterr().out
    assert "s2c5" in out and "8,172" in out and "1,613,688" in out
    assert main(["count", REFERENCE_CONFIG, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["params"] == 8172 and doc["macs"] == 1613688
    assert sum(row["n_params"] for row in doc["layers"]) == 8172


@pytest.mark.slow  # trains networks end to end
def test_train_end_to_end_writes_metrics(small_data_dir, tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(["train", REFERENCE_CONFIG, "--epochs", "2", "--seed", "1", "--device", "cpu",
                 "--data-dir", str(small_data_dir), "--json-out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    # a 2-epoch run is scored on its final epoch (3 of 15 by default; 1 under 10 epochs)
    assert "test acc %" in printed and "last epoch on test" in printed
    metrics = json.loads(out.read_text())
    assert len(metrics["test_acc"]) == 2 and metrics["params"] == 8172
    assert metrics["last_n_min"] == metrics["test_acc"][-1] and metrics["last_n"] == 1
    assert metrics["recipe"]["epochs"] == 2 and metrics["seed"] == 1
    # --require turns the last-N minimum into an exit code (what CI uses)
    args = ["train", REFERENCE_CONFIG, "--epochs", "1", "--data-dir", str(small_data_dir)]
    assert main([*args, "--require", "100.0"]) == 1
    assert "below requirement" in capsys.readouterr().err
    assert main([*args, "--require", "1.0"]) == 0


@pytest.mark.slow  # trains networks end to end
def test_train_seeds_reports_spread_on_a_validation_split(small_data_dir, tmp_path, capsys):
    out = tmp_path / "seeds.json"
    code = main(["train", REFERENCE_CONFIG, "--epochs", "1", "--seeds", "2", "--val-split",
                 "200", "--device", "cpu", "--threads", "1", "--data-dir", str(small_data_dir),
                 "--json-out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "seed 0: min" in printed and "seed 1: min" in printed
    assert "2 seeds: min-last-1 on val mean" in printed and "worst" in printed
    runs = json.loads(out.read_text())
    assert runs["seeds"] == [0, 1] and runs["eval_split"] == "val"
    # each seed is its own run: its score is its last validation epoch, and test comes too
    assert runs["mins"] == [accs[-1] for accs in runs["val_acc"]]
    assert runs["val_acc"][0] != runs["val_acc"][1]
    # the test figure after the last epoch: above chance, measured apart from the val score
    assert all(t > 25.0 for t in runs["test_acc_final"])
    assert runs["test_acc_final"] != runs["mins"]
    # two runs side by side give the same numbers; --require holds for every seed
    again = tmp_path / "again.json"
    assert main(["train", REFERENCE_CONFIG, "--epochs", "1", "--seeds", "2", "--val-split",
                 "200", "--device", "cpu", "--jobs", "2", "--threads", "1", "--data-dir",
                 str(small_data_dir), "--json-out", str(again), "--require", "100"]) == 1
    assert "below requirement: seed" in capsys.readouterr().err
    assert json.loads(again.read_text())["val_acc"] == runs["val_acc"]


@pytest.mark.parametrize("argv,message", [
    (["count", "missing.json"], "does not exist"),
    (["train", REFERENCE_CONFIG, "--epochs", "0"], "must be >= 1"),
    (["train", REFERENCE_CONFIG, "--epochs", "2", "--last-n", "3"], "exceeds"),
    (["train", REFERENCE_CONFIG, "--data-dir", "/nonexistent"], "does not exist"),
    (["train", REFERENCE_CONFIG, "--device", "tpu"], "invalid choice"),
    (["train", REFERENCE_CONFIG, "--seeds", "2", "--seed", "3"], "leave out --seed"),
    (["train", REFERENCE_CONFIG, "--jobs", "2"], "--jobs needs --seeds"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_invalid_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stages": [[{"out": 8, "pad": 0}] * 14]}))
    assert main(["count", str(bad)]) == 2
    assert "shrinks to nothing" in capsys.readouterr().err


@pytest.mark.slow  # trains networks end to end
def test_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "nas_mnist", "count", REFERENCE_CONFIG,
                           "--json"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["params"] == 8172


def test_a_bare_call_prints_usage_and_every_flag_has_help(capsys):
    from nas_mnist.cli import build_parser
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: nas-mnist" in out and "search" in out and "demo" in out
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest}"


def test_errors_have_one_prefix():
    done = subprocess.run([sys.executable, "-m", "nas_mnist", "search", "--bogus"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "nas-mnist: error: unrecognized arguments: --bogus"


def test_version_does_not_import_torch_or_optuna():
    code = ("import sys; from nas_mnist.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'optuna', 'fvcore', 'plotly') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip().endswith("[]"), done.stdout


def test_data_dir_takes_a_torchvision_download_folder(tmp_path, capsys):
    from nas_mnist.engine.data import load_dataset, write_subset
    write_subset(tmp_path / "root" / "FashionMNIST" / "raw", 200, 50, gz=True)
    data = load_dataset(tmp_path / "root")
    assert len(data.train_x) == 200 and data.source.endswith("FashionMNIST/raw")
    assert main(["train", REFERENCE_CONFIG, "--epochs", "1", "--data-dir",
                 str(tmp_path / "root")]) == 0
    assert f"data {tmp_path / 'root' / 'FashionMNIST' / 'raw'} (sha256" in capsys.readouterr().out


def test_library_keywords_are_shown_as_the_commands_flags(capsys):
    """The library names its keywords; the CLI says them as flags at one place (the checks
    are not repeated in the CLI)."""
    from nas_mnist.cli import main
    assert main(["train", "trial52", "--jobs", "2"]) == 2
    assert capsys.readouterr().err.strip() == "nas-mnist: error: --jobs needs --seeds"
    assert main(["report", "--study", "x", "--no-winner"]) == 2
    assert "--no-winner needs at least one trial in --confirm" in capsys.readouterr().err
    assert main(["search", "--study", "x", "--prune-opt", "eta"]) == 2
    assert "--prune-opt takes KEY=VALUE" in capsys.readouterr().err


def test_a_file_key_in_a_message_stays_a_key():
    from nas_mnist.cli import as_flags
    flags = {"batch_size": "--batch-size", "last_n": "--last-n", "seeds": "--seeds"}
    assert as_flags("c.json: recipe: batch_size must be", {}) == "c.json: recipe: batch_size must be"
    assert as_flags("last_n must be in [1, epochs 2]", flags) == "--last-n must be in [1, epochs 2]"
    assert as_flags("on seeds 0..4", flags) == "on seeds 0..4"  # prose, not a named parameter
