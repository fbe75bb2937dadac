import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import optuna
import pytest

from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.recipe import Recipe
from nas_mnist.cli import main
from nas_mnist.results.ranking import feasible, pareto_front


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, small_data_dir):
    """A small finished study: 4 trials of the quick space, 1 epoch each, plus one over budget."""
    root = tmp_path_factory.mktemp("study")
    url = f"sqlite:///{root}/r.db"
    args = ["search", "--study", "r", "--storage", url, "--space", "quick", "--epochs", "2",
            "--last-n", "1", "--data-dir", str(small_data_dir), "--artifacts", str(root / "art"),
            "--jobs", "1"]
    assert main([*args, "--budget", "5000", "--trials", "4"]) == 0
    big = root / "big.json"
    big.write_text(json.dumps({"stages": [[{"out": 32}, {"out": 32}]], "transitions": []}))
    assert main([*args, "--budget", "5000", "--trials", "5", "--enqueue", str(big)]) == 0
    return root, url


@pytest.fixture
def own_study(study_dir, tmp_path):
    """The shared study copied for one test: `report --seeds` stores its runs in the study,
    which would change what the next test's report takes or ranks."""
    import sqlite3
    root, url = study_dir
    with sqlite3.connect(root / "r.db") as src, sqlite3.connect(tmp_path / "r.db") as dst:
        src.backup(dst)  # the write-ahead log too, which a file copy leaves behind
    return root, f"sqlite:///{tmp_path}/r.db"


def _export(root, url, small_data_dir, *extra):
    return main(["export", "--study", "r", "--storage", url, "--artifacts", str(root / "art"),
                 "--data-dir", str(small_data_dir), *extra])


def _export_winner(root, url, data_dir, name):
    """Export the best trial into root/name; return (winner JSON path, its document)."""
    out = root / name
    assert _export(root, url, data_dir, "--out", str(out)) == 0
    winner = next(out.glob("*.json"))
    return winner, json.loads(winner.read_text())


@pytest.mark.slow  # trains networks end to end
def test_exported_weights_reproduce_the_trial(study_dir, small_data_dir):
    root, url = study_dir
    winner, doc = _export_winner(root, url, small_data_dir, "winners")
    study = optuna.load_study(study_name="r", storage=url)
    best = feasible(study)[0]
    assert winner.name == f"trial{best.number}.json" and doc["params"] == best.n_params
    assert doc["metrics"]["score"] == best.value and doc["test_set_used_for_selection"]
    assert doc["weights"]["source"] == "stored by the search" and doc["data_checksum"]
    # the exported weights, rebuilt from the exported config, give the trial's last accuracy
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.evaluate import evaluate_weights
    measured = evaluate_weights(ArchConfig.from_dict(doc["arch"]), load_dataset(small_data_dir),
                                str(winner.with_suffix(".pt")), Recipe.from_dict(doc["recipe"]))
    assert measured["acc"] == best.accs[-1]


@pytest.mark.slow  # trains networks end to end
def test_export_pareto_and_retrain_when_no_weights(study_dir, small_data_dir, capsys):
    root, url = study_dir
    study = optuna.load_study(study_name="r", storage=url)
    out = root / "front"
    assert _export(root, url, small_data_dir, "--pareto", "--out", str(out)) == 0
    assert sorted(p.name for p in out.glob("*.json")) == sorted(
        f"trial{t.number}.json" for t in pareto_front(feasible(study)))
    shutil.rmtree(root / "art_missing", ignore_errors=True)
    assert main(["export", "--study", "r", "--storage", url, "--artifacts",
                 str(root / "art_missing"), "--data-dir", str(small_data_dir),
                 "--out", str(root / "re")]) == 0
    doc = json.loads(next((root / "re").glob("*.json")).read_text())
    assert doc["weights"]["source"] == "re-trained at export"


@pytest.mark.slow  # trains networks end to end
def test_a_second_export_into_the_folder_keeps_its_weights(study_dir, small_data_dir,
                                                           monkeypatch):
    """Adding a format to an exported winner whose search weights are gone reads the weights
    the first export left, never re-trains over them (another CPU would give other weights)."""
    import nas_mnist.results.export as export
    root, url = study_dir
    winner, doc = _export_winner(root, url, small_data_dir, "again")
    weights = winner.with_suffix(".pt").read_bytes()
    monkeypatch.setattr(export, "retrain_weights", lambda *a, **k: pytest.fail("re-trained"))
    assert main(["export", "--study", "r", "--storage", url, "--artifacts",
                 str(root / "art_gone"), "--data-dir", str(small_data_dir),
                 "--out", str(winner.parent), "--format", "torchscript"]) == 0
    again = json.loads(winner.read_text())
    assert winner.with_suffix(".pt").read_bytes() == weights
    assert again["weights"] == doc["weights"] and again["files"]["torchscript"]
    # another study's winner of the same number in that folder is not taken for this one's
    other = dict(doc, study="another")
    winner.write_text(json.dumps(other))
    monkeypatch.undo()
    assert main(["export", "--study", "r", "--storage", url, "--artifacts",
                 str(root / "art_gone"), "--data-dir", str(small_data_dir),
                 "--out", str(winner.parent)]) == 0
    assert json.loads(winner.read_text())["weights"]["source"] == "re-trained at export"


@pytest.mark.slow  # trains networks end to end
def test_train_weights_evaluates_without_training(study_dir, small_data_dir, capsys):
    root, url = study_dir
    winner, doc = _export_winner(root, url, small_data_dir, "winners2")
    capsys.readouterr()
    assert main(["train", str(winner), "--weights", str(winner.with_suffix(".pt")),
                 "--data-dir", str(small_data_dir)]) == 0
    printed = capsys.readouterr().out
    assert "no training" in printed and "test accuracy" in printed


def _figures(html: str) -> list[dict]:
    """The figure JSON embedded by plotly: Plotly.newPlot(id, data, layout, config)."""
    figs = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"responsive"',
                         html, re.S):
        figs.append({"data": json.loads(m.group(1)), "layout": json.loads(m.group(2))})
    return figs


@pytest.mark.slow  # trains networks end to end
def test_report_files_hold_expected_figure_data(study_dir, small_data_dir, capsys):
    root, url = study_dir
    out = root / "report"
    assert main(["report", "--study", "r", "--storage", url, "--out", str(out), "--no-png",
                 "--data-dir", str(small_data_dir)]) == 0
    study = optuna.load_study(study_name="r", storage=url)
    pareto = (out / "pareto.html").read_text()
    assert len(pareto) > 3_000_000 and 'src="https://cdn' not in pareto  # plotly.js embedded
    by_params, by_macs, by_ram, by_size = _figures(pareto)
    assert by_params["layout"]["xaxis"]["title"]["text"] == "parameters"
    assert by_macs["layout"]["xaxis"]["title"]["text"].startswith("MACs")
    assert by_ram["layout"]["xaxis"]["title"]["text"] == "peak activation RAM at int8, bytes"
    ram_front = {t["name"]: t for t in by_ram["data"]}["Pareto front"]
    assert ram_front["x"] == [r.peak for r in pareto_front(feasible(study), "peak")]
    names = {t["name"]: t for t in by_params["data"]}
    assert len(names["feasible (complete)"]["x"]) == len(feasible(study))
    assert len(names["Pareto front"]["x"]) == len(pareto_front(feasible(study)))
    # the study by size: its networks, and no packaged front (it was measured on other data)
    assert by_size["layout"]["title"]["text"].startswith("Study r by size")
    sizes = {t["name"]: t for t in by_size["data"]}
    assert sorted(sizes["this study, fewer than 3 seeds"]["x"]) == sorted(
        r.n_params for r in feasible(study))
    assert "the packaged front (5+ seeds; bar: worst seed)" not in sizes
    over = [t for t in study.trials if t.user_attrs.get("reason") == "over_budget"]
    assert len(names["over budget (never trained)"]["x"]) == len(over) >= 1  # the enqueued one
    summary = (out / "summary.md").read_text()
    assert "test set was used for selection" in summary and "## Top" in summary
    details = _figures((out / "details.html").read_text())
    assert len(details) >= 3  # best over time, curves, history (importances when computable)
    best = details[0]["data"][0]  # the best score so far steps up to the study's best
    assert best["y"] == sorted(best["y"]) and best["y"][-1] == feasible(study)[0].value
    assert best["text"][-1] == f"trial {feasible(study)[0].number}"


@pytest.mark.slow  # starts a renderer subprocess
def test_png_copies_are_written_in_one_session_or_given_up_after_a_time_limit(tmp_path):
    import plotly.graph_objects as go
    from nas_mnist.results.png import write_pngs
    figs = [go.Figure(go.Scatter(x=[1, 2], y=[3, 4])),
            go.Figure(go.Bar(x=[1], y=[2]), layout=dict(height=640))]  # a tall legend's size
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    # a renderer that does not answer in time is killed with its browser, and says so
    note = write_pngs(figs, paths, timeout_s=0.05)
    assert "did not answer in 0 s" in note and not list(tmp_path.iterdir())
    pytest.importorskip("kaleido")
    if not shutil.which("chromium"):
        pytest.skip("no Chromium for kaleido")
    assert write_pngs(figs, paths) is None
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    sizes = [struct.unpack(">II", p.read_bytes()[16:24]) for p in paths]  # IHDR: width, height
    assert sizes == [(700, 500), (700, 640)]  # plotly's default, and the figure's own height
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temp files


KALEIDO_NO_CHROME = """Traceback (most recent call last):
  File "png.py", line 58, in _render_pngs
    raise RuntimeError(PLOTLY_GET_CHROME_ERROR_MSG)
RuntimeError: 

Kaleido requires Google Chrome to be installed.

Either download and install Chrome yourself following Google's instructions for your operating system,
or install it from your terminal by running:

    $ plotly_get_chrome

"""


@pytest.mark.parametrize("stderr, reason", [
    # the report said "no PNG copies (    $ plotly_get_chrome)": the message's last line
    (KALEIDO_NO_CHROME, "Kaleido requires Google Chrome to be installed; plotly_get_chrome "
                        "installs one"),
    ("Traceback (most recent call last):\n  File \"x\", line 1\nValueError: bad size: 3 x\n",
     "ValueError: bad size: 3 x"),
    ("Killed\n", "Killed"),
    ("", "no message"),
])
def test_a_failed_png_renderer_is_told_in_one_readable_line(stderr, reason):
    from nas_mnist.results.png import failure_reason
    assert failure_reason(stderr) == reason


def test_active_minutes_join_sittings_and_overlapping_workers():
    from nas_mnist.results.report import active_minutes
    # two workers overlap (0-120 s, 60-180 s); a second sitting starts an hour later
    spans = [(0, 120), (60, 180), (3780, 3840)]
    assert active_minutes(spans) == [2.0, 3.0, 4.0]


@pytest.mark.slow  # trains networks end to end
def test_report_and_export_refuse_unknown_study(study_dir, capsys):
    root, url = study_dir
    assert main(["report", "--study", "nope", "--storage", url]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


@pytest.mark.slow  # trains networks end to end
@pytest.mark.chromium
def test_pareto_html_renders_points_in_headless_chromium(study_dir, small_data_dir, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium')")
    root, url = study_dir
    out = root / "report_png"
    assert main(["report", "--study", "r", "--storage", url, "--out", str(out), "--no-png"]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                    "--window-size=1200,1000", f"--screenshot={shot}",
                    (out / "pareto.html").as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image
    pixels = Image.open(shot).convert("RGB")
    blue = sum(1 for p in pixels.getdata() if p == (31, 119, 180))  # marker colour #1f77b4
    assert blue > 50, "no feasible-trial markers drawn"


@pytest.mark.slow  # trains networks end to end
@pytest.mark.chromium
def test_dashboard_serves_the_study_without_over_budget_best_trials(study_dir, tmp_path):
    """The over-budget trial (PRUNED) must not be among the dashboard's best trials."""
    import socket
    import time
    import urllib.request
    if shutil.which("optuna-dashboard") is None and not (
            __import__("pathlib").Path(__import__("sys").executable).parent
            / "optuna-dashboard").exists():
        pytest.skip("optuna-dashboard is not installed")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium')")
    root, url = study_dir
    study = optuna.load_study(study_name="r", storage=url)
    over = [t.number for t in study.trials if t.user_attrs.get("reason") == "over_budget"]
    assert over
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "nas_mnist", "dashboard", "--study", "r",
                             "--storage", url, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert f"http://127.0.0.1:{port}/" in proc.stdout.readline()
        api = f"http://127.0.0.1:{port}/api/studies/1?after=0"
        for _ in range(60):
            try:
                doc = json.loads(urllib.request.urlopen(api, timeout=2).read())
                break
            except OSError:
                time.sleep(0.5)
        best = {t["number"] for t in doc["best_trials"]}
        assert best and not best & set(over)
        assert best == {t.number for t in study.best_trials}
        # the learning curves reach the dashboard: one intermediate value per trained epoch
        curves = {t["number"]: len(t["intermediate_values"]) for t in doc["trials"]}
        for t in study.trials:
            assert curves[t.number] == len(t.user_attrs.get("acc") or []), t.number
        assert doc.get("objective_names") == ["score"]  # set_metric_names, as the UI shows it
        shot = tmp_path / "dash.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--no-first-run",
                        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000",
                        "--window-size=1200,900", f"--screenshot={shot}",
                        f"http://127.0.0.1:{port}/dashboard/studies/1"],
                       check=True, capture_output=True, timeout=120)
        from PIL import Image
        colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours and len(colours) > 50  # a rendered page, not a blank one
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow  # trains networks end to end
def test_report_seeds_confirms_the_winner(own_study, small_data_dir, capsys):
    root, url = own_study
    winner = feasible(optuna.load_study(study_name="r", storage=url))[0].number  # before: the
    # report's runs are kept in the study, which then ranks by their mean
    out = root / "report_seeds"
    assert main(["report", "--study", "r", "--storage", url, "--out", str(out), "--no-png",
                 "--seeds", "2", "--data-dir", str(small_data_dir)]) == 0
    runs = json.loads((out / "seeds.json").read_text())
    assert [r["trial"] for r in runs] == [winner]
    assert runs[0]["seeds"] == [0, 1] and len(runs[0]["mins"]) == 2
    assert all(m == min(accs[-1:]) for m, accs in zip(runs[0]["mins"], runs[0]["test_acc"]))
    assert "## Multi-seed confirmation" in (out / "summary.md").read_text()


@pytest.mark.slow  # the study is trained once for the module
def test_a_resume_asking_for_fewer_networks_than_the_study_holds_says_so(study_dir,
                                                                         small_data_dir, capsys):
    """`search --study S --timeout 3600` on a study of 37 trained networks said "37 of 20
    networks trained so far" and stopped: --trials counts the study's networks in all."""
    root, url = study_dir
    before = len(optuna.load_study(study_name="r", storage=url).trials)
    capsys.readouterr()
    assert main(["search", "--study", "r", "--storage", url, "--space", "quick", "--epochs", "2",
                 "--last-n", "1", "--data-dir", str(small_data_dir), "--artifacts",
                 str(root / "art"), "--jobs", "1", "--budget", "5000", "--trials", "2"]) == 0
    said = capsys.readouterr()
    assert ("5 networks trained so far and 2 asked for in all (trials), so nothing is trained "
            "now: ask for more than 5 trials to go on") in said.out + said.err
    assert len(optuna.load_study(study_name="r", storage=url).trials) == before


@pytest.mark.slow  # trains networks end to end
def test_report_seeds_takes_the_runs_the_study_holds(own_study, small_data_dir, tmp_path,
                                                      capsys, monkeypatch):
    """A trial's own run (seed 0) is in the study: `report --seeds 2` trains seed 1 alone
    (it re-trained seed 0 too: 229 s wasted per trial on mnist-1k)."""
    import nas_mnist.engine.seeds as confirm
    root, url = own_study
    best = feasible(optuna.load_study(study_name="r", storage=url))[0]
    calls = []
    real = confirm._one_run
    monkeypatch.setattr(confirm, "_one_run", lambda job: calls.append(job) or real(job))
    out = tmp_path / "report"
    assert main(["report", "--study", "r", "--storage", url, "--out", str(out), "--no-png",
                 "--seeds", "2", "--data-dir", str(small_data_dir)]) == 0
    assert [job[2] for job in calls] == [1]  # the training seeds run: 1 alone
    run, = json.loads((out / "seeds.json").read_text())
    assert run["seeds"] == [0, 1] and run["mins"][0] == best.value
    assert run["test_acc"][0] == best.accs
    assert f"trial {best.number}: seed 0 taken from the study" in capsys.readouterr().err
    # one record per fact: the run is the study's too (its leaderboard ranked trials by one
    # seed while the report folder held five), so the next report anywhere trains nothing
    from nas_mnist.searcher.record import seed_runs
    held = seed_runs(optuna.load_study(study_name="r", storage=url))[best.number]["runs"]
    assert list(held) == ["1"] and held["1"]["score"] == run["mins"][1]
    assert held["1"]["accs"] == run["test_acc"][1] and held["1"]["by"] == "report"
    assert len(next(r for r in feasible(optuna.load_study(study_name="r", storage=url))
                    if r.number == best.number).scores) == 2
    calls.clear()
    assert main(["report", "--study", "r", "--storage", url, "--out", str(tmp_path / "again"),
                 "--no-png", "--seeds", "2", "--no-winner", "--confirm", str(best.number),
                 "--data-dir", str(small_data_dir)]) == 0
    assert calls == []


@pytest.mark.slow  # trains networks end to end
def test_exported_winner_retrains_to_the_same_result(study_dir, small_data_dir, tmp_path):
    root, url = study_dir
    winner, doc = _export_winner(root, url, small_data_dir, "winners_retrain")
    assert doc["threads"] == 2 and doc["seed"] == 0
    metrics = tmp_path / "m.json"
    assert main(["train", str(winner), "--data-dir", str(small_data_dir),
                 "--json-out", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["test_acc"] == doc["metrics"]["test_acc"]


@pytest.mark.slow  # trains networks end to end
def test_report_no_winner_confirms_only_the_named_trial(own_study, small_data_dir, capsys):
    root, url = own_study
    study = optuna.load_study(study_name="r", storage=url)
    second = feasible(study)[1].number
    out = root / "report_confirm_only"
    assert main(["report", "--study", "r", "--storage", url, "--out", str(out), "--no-png",
                 "--seeds", "1", "--no-winner", "--confirm", str(second),
                 "--data-dir", str(small_data_dir)]) == 0
    runs = json.loads((out / "seeds.json").read_text())
    assert [r["trial"] for r in runs] == [second]
    assert main(["report", "--study", "r", "--storage", url, "--seeds", "1",
                 "--no-winner"]) == 2
    assert "--no-winner needs" in capsys.readouterr().err


def test_pareto_plot_zooms_on_the_top_and_says_what_it_hides():
    from nas_mnist.results.report import ZOOM_POINTS, pareto_figure
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("nas_mnist", {"budget": 10_000})
    scores = [99.4, 99.3, 99.2, 99.0, 98.9, 98.8, 98.5, 98.0, 60.0, 40.0]  # 2 tiny networks
    for i, acc in enumerate(scores):
        params = 8000 - 500 * i
        study.add_trial(optuna.trial.create_trial(values=[acc, params],
                                                  user_attrs={"params": params, "macs": 10 * params}))
    fig = pareto_figure(study, "n_params")
    low, high = fig.layout.yaxis.range
    assert low == pytest.approx(99.4 - ZOOM_POINTS - 0.1) and high == pytest.approx(99.6)
    assert "2 trial(s) below 97.40 % are off the chart" in fig.layout.title.text


def test_pareto_plot_says_when_the_early_stopped_points_are_off_the_chart():
    """The README demo's plot showed an 'early-stopped' legend entry and none of its 9 points:
    stopped after epoch 1, they all lay under the zoomed axis, and the title said nothing."""
    from nas_mnist.results.report import pareto_figure
    study = optuna.create_study()
    study.set_user_attr("nas_mnist", {"budget": 3_000, "epochs": 2})
    for acc in (98.8, 98.7, 98.3):
        study.add_trial(optuna.trial.create_trial(value=acc, user_attrs={
            "params": 2000, "macs": 10_000, "acc": [98.0, acc]}))
    for acc in (97.5, 96.0, 98.5):  # two under the axis, one in view
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED,
                                                  user_attrs={"params": 2500, "macs": 10_000,
                                                              "acc": [acc]}))
    fig = pareto_figure(study, "n_params")
    assert fig.layout.yaxis.range[0] > 97.5
    assert "2 early-stopped trial(s) below 98.30 % are off the chart" in fig.layout.title.text


def test_no_importance_chart_when_no_parameter_can_be_ranked():
    """The README demo's report wrote 'Top 0 of 0 parameter importances', an empty chart: its
    only complete trials were warm-started, with no sampled parameter to rank."""
    from nas_mnist.results.report import optuna_figures
    study = optuna.create_study()
    for acc in (98.8, 98.7, 98.3):
        study.add_trial(optuna.trial.create_trial(value=acc))
    assert set(optuna_figures(study)) == {"history"}


def test_a_report_leaves_no_png_of_a_figure_it_no_longer_draws(tmp_path, monkeypatch):
    """A second report of the demo kept the first one's importances.png, no longer drawn."""
    import plotly.graph_objects as go
    from nas_mnist.results import report
    monkeypatch.setattr(report, "view_of", lambda study: type("V", (), {"name": "s"})())
    monkeypatch.setattr(report, "build_figures", lambda view: {"history": go.Figure()})
    for name in ("importances.png", "history.png", "mine.png"):
        (tmp_path / name).write_bytes(b"old")
    report.write_figures(None, tmp_path, png=False)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["history.png", "mine.png"]


def test_pareto_plot_of_a_low_accuracy_study_keeps_most_trials_in_view():
    from nas_mnist.results.report import pareto_figure
    study = optuna.create_study()
    study.set_user_attr("nas_mnist", {"budget": 10_000})
    scores = [36.0, 41.0, 48.0, 52.0, 55.0, 61.0, 64.0, 69.0]  # a 2-epoch demo on a subset
    for i, acc in enumerate(scores):
        study.add_trial(optuna.trial.create_trial(value=acc, user_attrs={
            "params": 1000 + 100 * i, "macs": 10_000, "acc": [acc]}))
    fig = pareto_figure(study, "n_params")
    assert fig.layout.yaxis.range[0] <= 41.0  # at least 80 % of the trials in view
    assert "off the chart" in fig.layout.title.text and "1 trial(s)" in fig.layout.title.text


REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.mark.slow  # trains networks end to end
def test_onnx_and_torchscript_exports_predict_as_pytorch(study_dir, small_data_dir, capsys):
    pytest.importorskip("onnxruntime")
    root, url = study_dir
    out = root / "deploy"
    assert _export(root, url, small_data_dir, "--out", str(out), "--format", "onnx",
                   "--format", "torchscript") == 0
    doc = json.loads(next(out.glob("*.json")).read_text())
    n = doc["trial"]
    assert doc["files"] == {"weights": f"trial{n}.pt", "onnx": f"trial{n}.onnx",
                            "torchscript": f"trial{n}.torchscript.pt"}
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.results.deploy import predict_torch
    from nas_mnist.results.models import deployable, load_model
    data = load_dataset(small_data_dir)
    model = deployable(ArchConfig.from_dict(doc["arch"]), out / f"trial{n}.pt",
                       doc["normalisation"]["mean"], doc["normalisation"]["std"])
    expected = predict_torch(model, data.test_x)
    onnx_bytes = (out / doc["files"]["onnx"]).read_bytes()
    repo = str(REPO).encode()
    assert b"site-packages" not in onnx_bytes and repo not in onnx_bytes  # the exporter's traces
    for fmt in ("onnx", "torchscript"):
        assert doc["deployed"][fmt][f"{fmt}_acc"] == doc["deployed"][fmt]["torch_acc"]
        loaded = load_model(out / doc["files"][fmt])
        assert (loaded.predict(data.test_x.numpy()) == expected).all()


@pytest.mark.slow  # trains networks end to end
def test_int8_export_keeps_accuracy_and_predict_reads_it(study_dir, small_data_dir, capsys,
                                                         monkeypatch):
    """Static int8 from training images: within the bound, its figures recorded, and what
    `predict` prints is what the export measured; a quantization that loses too much keeps
    nothing."""
    pytest.importorskip("onnxruntime")
    import nas_mnist.results.deploy as deploy
    root, url = study_dir
    out = root / "int8"
    # The fixture's networks are 2-epoch ones near 50 %, where one test image is 0.1 points:
    # the product's 0.3-point bound is for trained networks (its refusal is checked below)
    monkeypatch.setattr(deploy, "MAX_INT8_DROP", 2.0)
    assert _export(root, url, small_data_dir, "--out", str(out), "--format", "onnx-int8",
                   "--calibration-images", "256") == 0
    line = capsys.readouterr().out
    assert "onnx-int8:" in line and "of predictions unchanged" in line and "ms an image" in line
    doc = json.loads(next(out.glob("*.json")).read_text())
    n, check = doc["trial"], doc["deployed"]["onnx-int8"]
    assert doc["files"]["onnx-int8"] == f"trial{n}.int8.onnx"
    assert check["drop"] <= deploy.MAX_INT8_DROP and 90 <= check["agreement"] <= 100
    assert check["calibration"]["images"] == 256 and check["calibration"]["from"] == "training set"
    assert 0 < check["weight_bytes"] < check["file_bytes"] and check["latency_ms"] > 0
    assert doc["params"] <= check["weight_bytes"] < 4 * doc["params"]  # int8, not fp32
    assert main(["predict", str(out / f"trial{n}.int8.onnx"),
                 str(small_data_dir / "t10k-images-idx3-ubyte"),
                 "--labels", str(small_data_dir / "t10k-labels-idx1-ubyte")]) == 0
    printed = capsys.readouterr()
    assert f"accuracy {check['onnx-int8_acc']:.2f} %" in printed.out + printed.err
    # a bound no quantization meets: one line, exit 2, no file of this format left behind
    monkeypatch.setattr(deploy, "MAX_INT8_DROP", -100.0)
    assert _export(root, url, small_data_dir, "--out", str(root / "int8-bad"), "--format",
                   "onnx-int8", "--calibration-images", "256") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "more than the -100.0 allowed" in err
    # nor weights without their JSON; the folder the export made goes with them
    assert not (root / "int8-bad").exists() or not list((root / "int8-bad").iterdir())


@pytest.mark.slow  # trains networks end to end
@pytest.mark.parametrize("value,message", [("1", "calibration_images must be an integer >= 64"),
                                           ("0", "--calibration-images: must be >= 1")])
def test_too_few_calibration_images_is_one_line(study_dir, small_data_dir, tmp_path, capsys,
                                                value, message):
    root, url = study_dir
    assert _export(root, url, small_data_dir, "--out", str(tmp_path / "w"), "--format",
                   "onnx-int8", "--calibration-images", value) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not (tmp_path / "w").exists()


def test_predict_gives_the_labels_of_real_test_images(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from PIL import Image
    from nas_mnist.engine.data import PACKAGED_DIR, read_idx
    images, _ = read_idx(PACKAGED_DIR / "t10k-images-idx3-ubyte.gz")
    labels, _ = read_idx(PACKAGED_DIR / "t10k-labels-idx1-ubyte.gz")
    paths = []
    for i in range(12):
        paths.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(images[i]).save(paths[-1])
    winners = REPO / "studies" / "mnist-10k-winners"
    for model in (winners / "trial52.onnx", winners / "trial52.json"):
        assert main(["predict", str(model), *paths]) == 0
        printed = capsys.readouterr().out.split()
        assert [int(x) for x in printed[1::2]] == labels[:12].tolist()


@pytest.mark.slow  # trains networks end to end
def test_bad_model_files_and_missing_extras_are_one_line(tmp_path, capsys, monkeypatch,
                                                         study_dir, small_data_dir):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    png = tmp_path / "x.png"
    __import__("PIL.Image").Image.new("L", (28, 28)).save(png)
    for model in (bad, tmp_path / "missing.onnx", tmp_path / "x.png"):
        assert main(["predict", str(model), str(png)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("nas-mnist: error:")
    import builtins
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (
        (_ for _ in ()).throw(ImportError(name)) if name.startswith("onnx")
        else real_import(name, *a, **k)))
    root, url = study_dir
    assert _export(root, url, small_data_dir, "--out", str(tmp_path / "w"),
                   "--format", "onnx") == 2
    err = capsys.readouterr().err.strip()
    assert "pip install -e '.[onnx]'" in err and not (tmp_path / "w").exists()


@pytest.mark.slow  # trains networks end to end
def test_report_seeds_on_a_validation_study_scores_its_validation_split(tmp_path,
                                                                        small_data_dir):
    url = f"sqlite:///{tmp_path}/v.db"
    assert main(["search", "--study", "v", "--storage", url, "--space", "quick", "--epochs", "1",
                 "--last-n", "1", "--data-dir", str(small_data_dir), "--jobs", "1",
                 "--budget", "5000", "--trials", "1", "--val-split", "500",
                 "--artifacts", str(tmp_path / "art")]) == 0
    out = tmp_path / "report"
    assert main(["report", "--study", "v", "--storage", url, "--out", str(out), "--no-png",
                 "--seeds", "1", "--data-dir", str(small_data_dir)]) == 0
    runs = json.loads((out / "seeds.json").read_text())
    winner = feasible(optuna.load_study(study_name="v", storage=url))[0]
    assert runs[0]["eval_split"] == "val"
    assert runs[0]["mins"] == [winner.value]  # seed 0 on the same split: the search's own score


def test_best_over_time_labels_an_enqueued_trial():
    from datetime import datetime, timedelta
    from nas_mnist.results.report import best_over_time_figure
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("nas_mnist", {"budget": 10_000})
    start = datetime(2026, 1, 1)
    for i, (acc, enqueued) in enumerate([(98.0, False), (99.5, True), (99.6, False)]):
        study.add_trial(optuna.trial.FrozenTrial(
            number=i, trial_id=i, state=optuna.trial.TrialState.COMPLETE, value=acc, params={},
            distributions={}, system_attrs={}, intermediate_values={},
            user_attrs={"params": 5000, "macs": 10_000, "acc": [acc],
                        **({"enqueued": True} if enqueued else {})},
            datetime_start=start + timedelta(minutes=10 * i),
            datetime_complete=start + timedelta(minutes=10 * i + 5)))
    fig = best_over_time_figure(study)
    assert list(fig.data[0].text) == ["trial 0", "trial 1 (enqueued)", "trial 2"]
    assert list(fig.data[0].x) == [5.0, 10.0, 15.0]  # the gaps between trials are cut


@pytest.mark.slow  # trains networks end to end
def test_report_seeds_reuses_runs_of_the_same_configuration(own_study, small_data_dir, tmp_path,
                                                           capsys, monkeypatch):
    """Seed runs already paid for (an earlier report, `train --seeds --json-out`) are not
    trained again; a run of another recipe or with too few seeds is."""
    import nas_mnist.engine.seeds as confirm
    root, url = own_study
    study = optuna.load_study(study_name="r", storage=url)
    best, second = feasible(study)[0].number, feasible(study)[1].number
    out = tmp_path / "report"
    report = ["report", "--study", "r", "--storage", url, "--out", str(out), "--no-png",
              "--data-dir", str(small_data_dir)]
    assert main([*report, "--seeds", "2"]) == 0
    first = json.loads((out / "seeds.json").read_text())
    assert _export(root, url, small_data_dir, "--trial", str(second), "--out",
                   str(tmp_path / "w")) == 0
    trained = tmp_path / "trained.json"
    assert main(["train", str(tmp_path / "w" / f"trial{second}.json"), "--seeds", "2",
                 "--data-dir", str(small_data_dir), "--json-out", str(trained)]) == 0
    calls = []
    real = confirm._one_run
    monkeypatch.setattr(confirm, "_one_run", lambda job: calls.append(job) or real(job))
    capsys.readouterr()

    assert main([*report, "--seeds", "2", "--no-winner", "--confirm", str(best), "--confirm",
                 str(second), "--reuse", str(trained)]) == 0  # both named: the ranking moves
    # by trial: the report keeps its runs in the study, which then ranks by their mean
    table = lambda: {r["trial"]: r for r in json.loads((out / "seeds.json").read_text())
                     if r.get("in_table", True)}
    runs = table()
    assert calls == [] and set(runs) == {best, second}
    assert runs[best]["mins"] == first[0]["mins"]
    assert runs[second]["mins"] == json.loads(trained.read_text())["mins"]
    err = capsys.readouterr().err
    assert f"trial {best}: 2 seed run(s) reused from {out / 'seeds.json'}" in err
    assert f"trial {second}: 2 seed run(s) reused from {trained}" in err
    assert f"| {second} | " in (out / "summary.md").read_text()
    assert f"reused from `{trained}`" in (out / "summary.md").read_text()  # which file

    assert main([*report, "--seeds", "1"]) == 0  # fewer seeds: the first one is kept
    assert calls == [] and table() and all(r["mins"] == runs[t]["mins"][:1]
                                           for t, r in table().items())
    assert main([*report, "--seeds", "2", "--confirm", str(second)]) == 0  # nothing was lost
    assert calls == [] and second in table() and all(r["mins"] == runs[t]["mins"]
                                                     for t, r in table().items())
    assert main([*report, "--seeds", "3"]) == 0  # a seed no file holds: seed 2 is trained;
    assert [job[2] for job in calls] == [2]  # 0 is the trial's own run, 1 the study holds now
    report[report.index("--out") + 1] = str(tmp_path / "other_report")
    other = tmp_path / "other.json"  # another recipe (one epoch): not the same configuration
    assert main(["train", str(tmp_path / "w" / f"trial{second}.json"), "--seeds", "1",
                 "--epochs", "1", "--last-n", "1", "--data-dir", str(small_data_dir),
                 "--json-out", str(other)]) == 0
    calls.clear()
    assert main([*report, "--seeds", "1", "--no-winner", "--confirm", str(second),
                 "--reuse", str(other)]) == 0  # not that run: the study's own seed 0
    row, = json.loads((tmp_path / "other_report" / "seeds.json").read_text())
    assert calls == [] and "reused_from" not in row
    assert row["mins"] == [study.trials[second].value]


SHIPPED_RUN = REPO / "studies" / "confirmations" / "trial52-test.json"


@pytest.mark.parametrize("change,message", [
    ({"mins": [99.99] * 5}, "mins[0] 99.99 is not the min of the last 3 of its test_acc (99.49)"),
    ({"mins": [1e9] * 5}, "mins holds 1000000000.0, not a percentage"),
    ({"mins": []}, "mins must hold one score per seed (5)"),
    ({"mins": "99.5"}, "mins must hold one score per seed (5)"),
    ({"means": [90.0] * 5}, "means[0] 90.0 is not the mean of the last 3"),
    ({"seconds": None}, "seconds must be a number >= 0, got None"),
    ({"seeds": [0, 0, 1, 2, 3]}, "distinct seeds"),
    ({"test_acc": [[101.0]] * 5}, "test_acc must hold one list of percentages per seed"),
    ({"params": "9412"}, "params must be a positive integer"),
])
def test_a_seed_run_with_made_up_or_malformed_figures_is_named(change, message):
    from nas_mnist.spec.seedrun import seed_run_problem
    run = json.loads(SHIPPED_RUN.read_text())
    run = run[0] if isinstance(run, list) else run
    assert seed_run_problem(run) is None  # the shipped confirmation is sound
    assert message in seed_run_problem({**run, **change})


def test_every_shipped_seed_file_is_sound():
    from nas_mnist.spec.seedrun import seed_run_problem
    files = [*REPO.glob("studies/*-report/seeds.json"), *REPO.glob("studies/confirmations/*.json")]
    assert files
    for path in files:
        runs = json.loads(path.read_text())
        for run in [runs] if isinstance(runs, dict) else runs:
            assert seed_run_problem(run) is None, path


@pytest.mark.slow  # trains networks end to end
@pytest.mark.parametrize("content,message", [
    ("{", "is not JSON"), ('{"mins": 3}', "is not a file of seed runs"),
    ("[1, 2]", "is not a file of seed runs"),
    ('[{"mins": [99.1], "seeds": 0}]', "is not a file of seed runs"),
    ('[{"mins": [99.99], "seeds": [0], "params": 900, "device": "cpu"}]',
     "run 1 (trial None): seconds must be a number >= 0, got None")])
def test_report_reuse_of_a_bad_file_is_one_line(study_dir, tmp_path, content, message, capsys):
    root, url = study_dir
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["report", "--study", "r", "--storage", url, "--out", str(tmp_path / "o"),
                 "--seeds", "1", "--reuse", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert main(["report", "--study", "r", "--storage", url, "--reuse", str(bad)]) == 2
    assert "--reuse needs --seeds" in capsys.readouterr().err


@pytest.mark.slow  # trains networks end to end
def test_report_confirm_top_retrains_the_best_few_and_names_the_best_mean(own_study,
                                                                          small_data_dir,
                                                                          tmp_path):
    root, url = own_study
    ranked = [r.number for r in feasible(optuna.load_study(study_name="r", storage=url))]
    out = tmp_path / "top"
    assert main(["report", "--study", "r", "--storage", url, "--out", str(out), "--no-png",
                 "--seeds", "2", "--confirm-top", "2", "--data-dir", str(small_data_dir)]) == 0
    runs = json.loads((out / "seeds.json").read_text())
    assert [r["trial"] for r in runs] == ranked[:2]
    best = max(runs, key=lambda r: sum(r["mins"]))
    mean = sum(best["mins"]) / 2
    assert (f"Best on the mean of 2 seeds: trial {best['trial']} ({mean:.2f} %)"
            in (out / "summary.md").read_text())


@pytest.mark.slow  # trains networks end to end
def test_report_seeds_replaces_a_broken_seeds_file_and_plain_report_refuses_it(
        own_study, small_data_dir, tmp_path, capsys):
    root, url = own_study
    out = tmp_path / "broken"
    out.mkdir()
    (out / "seeds.json").write_text("{")
    report = ["report", "--study", "r", "--storage", url, "--out", str(out), "--no-png"]
    assert main(report) == 2
    assert "is not JSON" in capsys.readouterr().err
    assert main([*report, "--seeds", "1", "--data-dir", str(small_data_dir)]) == 0
    assert "not reusing runs" in capsys.readouterr().err
    assert json.loads((out / "seeds.json").read_text())[0]["seeds"] == [0]


@pytest.mark.slow  # trains networks end to end
@pytest.mark.parametrize("size", ["16k", "40k", "72k"])  # fails at the ONNX, TorchScript, .pt
def test_export_onto_a_full_disk_names_the_file_and_leaves_whole_sets(study_dir, small_data_dir,
                                                                      small_disks, size, capsys):
    pytest.importorskip("onnxruntime")
    root, url = study_dir
    out = small_disks(size) / "w"
    capsys.readouterr()
    assert _export(root, url, small_data_dir, "--out", str(out), "--pareto", "--format", "onnx",
                   "--format", "torchscript") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(
        rf"nas-mnist: error: cannot write {out}/trial\d+\.[a-z.]+: No space left on device", err[0])
    names = sorted(p.name for p in out.iterdir()) if out.exists() else []  # empty: removed
    assert not [n for n in names if n.startswith(".")]  # no temporary file or folder
    trials = {n.split(".")[0] for n in names}
    assert names == sorted(f"{t}{s}" for t in trials  # every trial exported has its whole set
                           for s in (".json", ".pt", ".onnx", ".torchscript.pt"))


@pytest.mark.slow  # trains networks end to end
def test_report_onto_a_full_disk_names_the_file_and_leaves_no_temporary_file(
        study_dir, small_disks, capsys):
    root, url = study_dir
    out = small_disks("1m") / "r"
    capsys.readouterr()
    assert main(["report", "--study", "r", "--storage", url, "--no-png", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"nas-mnist: error: cannot write {out}/pareto.html: No space left on device"
    assert not out.exists()  # the folder the report made, empty, went with the failure


@pytest.mark.slow  # trains networks end to end
@pytest.mark.parametrize("taken", ["trial{n}.json", "trial{n}.onnx"])
def test_export_over_a_folder_is_refused_before_any_work(study_dir, small_data_dir, tmp_path,
                                                         taken, capsys):
    pytest.importorskip("onnxruntime")
    root, url = study_dir
    n = feasible(optuna.load_study(study_name="r", storage=url))[0].number
    out = tmp_path / "w"
    (out / taken.format(n=n)).mkdir(parents=True)
    capsys.readouterr()
    assert _export(root, url, small_data_dir, "--out", str(out), "--trial", str(n),
                   "--format", "onnx") == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"nas-mnist: error: cannot write {out / taken.format(n=n)}: "
                                    f"a folder of that name is in the way")
    assert "data sha256" not in captured.out  # refused before the export began
    assert [p.name for p in out.iterdir()] == [taken.format(n=n)]


def test_results_are_made_from_one_read_of_the_study(monkeypatch):
    """A StudyView is read once: the summary, the leaderboard and every figure of our own come
    from it, not from the storage again (a search going on cannot make them disagree)."""
    from nas_mnist.results.ranking import leaderboard
    from nas_mnist.results.report import best_over_time_figure, curves_figure, pareto_figure
    from nas_mnist.results.summary import summary_markdown
    from nas_mnist.results.view import StudyView
    from tests.spec.test_arch import ref8k
    study = optuna.create_study(study_name="once")
    study.set_user_attr("nas_mnist", {"budget": 10_000})
    for i, acc in enumerate([99.1, 99.3, 98.7]):
        study.add_trial(optuna.trial.create_trial(value=acc, user_attrs={
            "params": 5000 + 100 * i, "macs": 10_000, "acc": [98.0, acc],
            "arch": ref8k().to_dict()}))
    study.set_user_attr("nas_mnist_seeds:1", {"runs": {"1": {"score": 99.1, "seconds": 30.0}}})
    view = StudyView.read(study)

    def no_more_reads(*args, **kwargs):
        raise AssertionError("the storage was read again")
    monkeypatch.setattr(type(study), "get_trials", no_more_reads)
    monkeypatch.setattr(type(study), "trials", property(no_more_reads))
    assert [r.trial for r in leaderboard(view)] == [1, 0, 2]  # trial 1: mean 99.20 of 2 seeds
    text = summary_markdown(view)
    assert "# Study `once`" in text and "(3 in all)" in text
    assert ("Confirmation runs (the top trials on more training seeds, by the search or a "
            "report): 1, 0:00:30") in text
    for fig in (pareto_figure(view, "n_params"), curves_figure(view), best_over_time_figure(view)):
        assert fig.data


def test_report_runs_measured_another_way_are_not_kept_in_the_study(tmp_path):
    # mnist-10k-mcu's report re-ran seed 0 of trial 65 at 99.37 against the trial's own 99.45
    # (another trainer): its seeds 1-2 beside the trial's own run would mix two series
    from nas_mnist.results.seeds import _store_in_study
    from nas_mnist.results.view import StudyView
    from nas_mnist.searcher.record import StudyMeta, attrs_of, seed_runs
    from nas_mnist.spec.seedrun import SeedRun
    url = f"sqlite:///{tmp_path}/m.db"
    study = optuna.create_study(study_name="m", storage=url, direction="maximize")
    StudyMeta(budget=5000, epochs=2, last_n=1).save(study)
    for value in (99.45, 99.0):
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs_of(
            accs=[98.0, value], n_params=4000, seed=0, arch={"stages": [[{"out": 4}]]})))
    view = StudyView.read(study)
    first, second = sorted(view.records, key=lambda r: r.number)

    def run(own):
        return SeedRun(seeds=[0, 1], mins=[own, 99.2], params=4000, seconds=1.0, device="cpu",
                       curves=[[98.0, own], [98.0, 99.2]])
    said = []
    _store_in_study(view, url, [first, second], [run(99.37), run(99.0)], said.append)
    held = seed_runs(optuna.load_study(study_name="m", storage=url))
    assert 0 not in held and list(held[1]["runs"]) == ["1"]
    assert any("trial 0" in line and "99.37" in line and "99.45" in line for line in said)


def test_a_report_without_seeds_keeps_every_run_of_the_folder(tmp_path):
    # runs out of the table (another trial, more seeds) stay for later reuse; a plain report
    # rewrote seeds.json with the table's runs alone (mnist-2k lost trial 5's five seeds)
    root = Path(__file__).resolve().parents[2] / "studies"
    shutil.copy(root / "mnist-2k.db", tmp_path / "s.db")
    out = tmp_path / "report"
    out.mkdir()
    shutil.copy(root / "mnist-2k-report" / "seeds.json", out / "seeds.json")
    before = (out / "seeds.json").read_bytes()
    assert b'"in_table": false' in before
    assert main(["report", "--study", "mnist-2k", "--storage", f"sqlite:///{tmp_path}/s.db",
                 "--out", str(out), "--no-png"]) == 0
    assert (out / "seeds.json").read_bytes() == before


@pytest.mark.slow  # trains networks end to end
def test_a_study_confirmed_on_seeds_is_drawn_by_size_with_its_own_front(own_study,
                                                                        small_data_dir,
                                                                        tmp_path):
    root, url = own_study
    out = tmp_path / "sized"
    assert main(["report", "--study", "r", "--storage", url, "--out", str(out), "--no-png",
                 "--seeds", "3", "--confirm-top", "2", "--data-dir", str(small_data_dir)]) == 0
    by_size = _figures((out / "pareto.html").read_text())[3]
    traces = {t["name"]: t for t in by_size["data"]}
    confirmed = traces["this study, 3+ seeds (bar: worst seed)"]
    runs = json.loads((out / "seeds.json").read_text())
    assert sorted(confirmed["x"]) == sorted(r["params"] for r in runs)  # the two confirmed
    means = {r["params"]: sum(r["mins"]) / len(r["mins"]) for r in runs}
    assert all(abs(y - means[x]) < 0.01 for x, y in zip(confirmed["x"], confirmed["y"]))
    assert 1 <= len(traces["this study's front"]["x"]) <= 2


@pytest.mark.slow  # trains a network
def test_a_frontier_point_trains_by_its_name(small_data_dir, capsys):
    assert main(["train", "front883", "--epochs", "1", "--data-dir", str(small_data_dir),
                 "--threads", "1"]) == 0
    assert "883" in capsys.readouterr().out


def _linear_onnx(path: Path, weight_type: int) -> None:
    """A 784 -> 10 linear model whose weights are stored quantized (int8 or uint8) and
    dequantized in the graph, as a QDQ export stores them."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save
    dtype = np.int8 if weight_type == TensorProto.INT8 else np.uint8
    weights = np.random.default_rng(0).integers(0, 100, (784, 10)).astype(dtype)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w", "scale", "zero"], ["wf"]),
         helper.make_node("Flatten", ["x"], ["flat"]),
         helper.make_node("MatMul", ["flat", "wf"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(weights, "w"),
         numpy_helper.from_array(np.array(0.01, np.float32), "scale"),
         numpy_helper.from_array(np.array(0, dtype), "zero")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_predict_warns_of_signed_int8_weights_on_a_cpu_where_they_saturate(tmp_path, capsys,
                                                                         monkeypatch):
    """int8 weights (S8S8, what export wrote before U8U8) lose accuracy in ONNX Runtime on x86
    without VNNI: `predict` says so in one line on stderr, and only there and only then."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from nas_mnist.results import models
    png = tmp_path / "x.png"
    __import__("PIL.Image").Image.new("L", (28, 28)).save(png)
    signed, unsigned = tmp_path / "s8.onnx", tmp_path / "u8.onnx"
    _linear_onnx(signed, onnx.TensorProto.INT8)
    _linear_onnx(unsigned, onnx.TensorProto.UINT8)
    shipped = sorted(REPO.glob("studies/*-winners/*.int8.onnx"))
    assert len(shipped) == 4
    for saturates in (True, False):
        monkeypatch.setattr(models, "saturating_cpu", lambda: saturates)
        for model in (signed, unsigned, *shipped):
            assert main(["predict", str(model), str(png)]) == 0
            err = capsys.readouterr().err.strip()
            if saturates and model == signed:
                assert len(err.splitlines()) == 1 and err.startswith("warning: ")
                assert str(signed) in err and "without VNNI" in err and "export it again" in err
            else:
                assert err == "", model
