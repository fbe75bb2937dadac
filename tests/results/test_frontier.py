import pytest

from nas_mnist.results.frontier import (FrontierError, Point, beats, best_per_budget,
                                        check_budgets, check_max_ram, front)
from nas_mnist.results.report import frontier_figure


def test_a_point_within_one_standard_error_of_a_smaller_one_is_dropped():
    small = Point("a", 3_000, (99.10, 99.20, 99.15, 99.12, 99.18))
    close = Point("b", 6_000, (99.05, 99.30, 99.10, 99.28, 99.17))  # +0.03: within the noise
    clear = Point("c", 9_000, (99.40, 99.45, 99.42, 99.44, 99.41))  # +0.27
    assert not beats(close, small) and beats(clear, small)
    assert [p.name for p in front([clear, close, small])] == ["a", "c"]


def test_a_bigger_network_that_scores_lower_is_never_on_the_front():
    assert [p.name for p in front([Point("big", 9_000, (99.0, 99.1)),
                                   Point("small", 3_000, (99.3, 99.3))])] == ["small"]


def test_each_budget_gets_the_largest_front_point_that_fits():
    small = Point("a", 2_500, (99.0, 99.1, 99.05))
    big = Point("b", 7_000, (99.4, 99.5, 99.45))
    assert best_per_budget([big, small], (2_000, 3_000, 8_000)) == {
        2_000: None, 3_000: small, 8_000: big}


@pytest.mark.parametrize("budgets,message", [
    ((2_000, 1_000), "increasing order"),
    ((1_000, 1_000), "must not repeat"),
    ((500, 1_000), "below the smallest network"),
    ((), "positive integers"),
])
def test_bad_budgets_are_named(budgets, message):
    with pytest.raises(FrontierError, match=message):
        check_budgets(budgets, smallest=800)


@pytest.mark.parametrize("max_ram,message", [(0, "positive number of bytes"),
                                             (True, "positive number of bytes"),
                                             (900, "the leanest needs 980 B")])
def test_a_ram_point_no_network_can_meet_is_named(max_ram, message):
    with pytest.raises(FrontierError, match=message):
        check_max_ram(max_ram, least=980)
    assert check_max_ram(2048, least=980) == 2048


def test_the_figure_has_the_front_and_the_public_designs_as_their_own_markers():
    doc = {"points": [{"name": "a", "params": 3_000, "mean": 99.2, "worst": 99.1},
                      {"name": "b", "params": 9_000, "mean": 99.5, "worst": 99.4}],
           "public": [{"name": "p", "params": 3_762, "mean": 99.23, "recipe": "own"},
                      {"name": "p", "params": 3_762, "mean": 99.07, "recipe": "tool"}]}
    fig = frontier_figure(doc)
    front_trace, own, tool = fig.data
    assert list(front_trace.x) == [3_000, 9_000]
    assert [round(v, 2) for v in front_trace.error_y.arrayminus] == [0.1, 0.1]
    assert own.marker.symbol == "diamond" and tool.marker.symbol == "x"
    assert own.marker.color == tool.marker.color and "own recipe" in own.name  # one design
    ram = {"name": "r", "params": 8_000, "mean": 99.1, "worst": 99.0, "max_ram": 2048}
    fig = frontier_figure({**doc, "points": doc["points"] + [ram]})
    assert list(fig.data[0].x) == [3_000, 9_000]  # a RAM-class point is not on the line
    assert fig.data[1].marker.symbol == "star" and "2,048 B" in fig.data[1].name


def test_every_shipped_frontier_point_is_a_packaged_config_that_loads_by_name():
    import json
    from pathlib import Path
    import nas_mnist as nm
    doc = json.loads((Path(__file__).resolve().parents[2] / "studies" / "frontier.json")
                     .read_text())
    assert doc["points"]
    for point in doc["points"]:
        counted = nm.count(point["name"])
        assert counted["params"] == point["params"] and counted["macs"] == point["macs"]
        assert len(point["seed_scores"]) >= 5 and min(point["seed_scores"]) == point["worst"]


@pytest.mark.parametrize("budgets,message", [
    (["--budgets", "2000", "1000"], "increasing order"),
    (["--budgets", "1000", "1000"], "must not repeat"),
    (["--budgets", "50", "1000"], "below the smallest network of the space"),
    (["--max-ram", "100"], "no network of the packaged spaces fits"),
])
def test_the_frontier_script_refuses_bad_budgets_in_one_line_writing_nothing(budgets, message):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    shipped = (root / "studies" / "frontier.json").read_bytes()
    done = subprocess.run([sys.executable, "benchmarks/frontier.py", *budgets],
                          cwd=root, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr
    assert (root / "studies" / "frontier.json").read_bytes() == shipped


def _view(name: str, checksum: str, networks: list[tuple[int, int, list[float]]], **meta):
    """A study view of complete networks (number, params, scores on seeds 0, 1, ...)."""
    from nas_mnist.results.view import StudyView
    from nas_mnist.searcher.record import StudyMeta, TrialRecord
    recs = tuple(TrialRecord(number=n, state="COMPLETE", value=scores[0], n_params=params,
                             data_checksum=checksum,
                             more_seeds={seed: s for seed, s in enumerate(scores[1:], 1)})
                 for n, params, scores in networks)
    return StudyView(name, StudyMeta(budget=10_000, **meta), recs, {}, None)


def _prior(checksum: str):
    from nas_mnist.searcher.prior import Prior, PriorConfig, PublicDesign
    from nas_mnist.spec.arch import ArchConfig
    from nas_mnist.spec.recipe import Recipe

    def config(study, params, scores):
        return PriorConfig(study, 0, ArchConfig.from_dict({"stages": [[{"out": 4}]]}),
                           Recipe(), params, tuple(scores), tuple(range(len(scores))),
                           checksum)
    return Prior("test", configs=(
        config("a", 2_000, [99.0, 99.1, 99.0, 99.1, 99.0]),
        config("b", 6_000, [99.4, 99.5, 99.4, 99.5, 99.4]),
        config("mine", 4_000, [99.3] * 5),  # the study itself: not drawn twice
        config("c", 5_000, [99.6])),  # one seed: not on the packaged front
        public=(PublicDesign("p", "somewhere", 3_762, "own", (99.2,) * 5, checksum, "f"),))


def test_a_report_draws_the_study_by_size_against_the_packaged_front_and_public_designs():
    from nas_mnist.results.report import study_frontier_figure
    view = _view("mine", "abc", [(1, 3_000, [99.35, 99.30, 99.32]),  # confirmed, on its front
                                 (2, 8_000, [99.33, 99.31, 99.30]),  # confirmed, not better
                                 (3, 9_000, [99.6])])  # one seed
    fig = study_frontier_figure(view, prior=_prior("abc"))
    traces = {t.name: t for t in fig.data}
    packaged = traces["the packaged front (5+ seeds; bar: worst seed)"]
    assert list(packaged.x) == [2_000, 6_000]
    assert list(traces["p (3,762 p), its own recipe"].x) == [3_762]
    assert list(traces["this study, fewer than 3 seeds"].x) == [9_000]
    assert sorted(traces["this study, 3+ seeds (bar: worst seed)"].x) == [3_000, 8_000]
    assert list(traces["this study's front"].x) == [3_000]
    assert "measured on other data" not in fig.layout.title.text


def test_on_other_data_the_packaged_front_and_public_designs_are_not_drawn():
    from nas_mnist.results.report import study_frontier_figure
    view = _view("fashion", "other", [(0, 9_000, [91.0])])
    fig = study_frontier_figure(view, prior=_prior("abc"))
    assert [t.name for t in fig.data] == ["this study, fewer than 3 seeds",
                                          "this study, 3+ seeds (bar: worst seed)"]
    assert "measured on other data: not drawn" in fig.layout.title.text


def test_a_study_without_a_data_checksum_says_its_data_is_unknown_not_other():
    from nas_mnist.results.report import study_frontier_figure
    view = _view("old", None, [(0, 9_000, [99.1])])  # made before studies stored a checksum
    fig = study_frontier_figure(view, prior=_prior("abc"))
    assert "packaged front" not in " ".join(t.name for t in fig.data)
    assert "records no data checksum" in fig.layout.title.text
    assert "other data" not in fig.layout.title.text


def test_the_by_size_figure_grows_to_show_every_legend_row():
    from dataclasses import replace
    from nas_mnist.results.report import FIGURE_HEIGHT, LEGEND_ROW_PX, study_frontier_figure
    from nas_mnist.searcher.prior import PublicDesign
    view = _view("mine", "abc", [(1, 3_000, [99.35, 99.30, 99.32])])
    few = study_frontier_figure(view, prior=_prior("abc"))
    assert few.layout.height == FIGURE_HEIGHT  # a short legend: plotly's default size
    many = replace(_prior("abc"), public=tuple(
        PublicDesign(f"d{i}", "somewhere", 1_000 + 500 * i, recipe, (99.0,) * 5, "abc", "f")
        for i in range(8) for recipe in ("own", "tool")))  # 16 legend rows, as in the prior
    fig = study_frontier_figure(view, prior=many)
    rows = len(fig.data)
    assert rows >= 19
    assert fig.layout.height >= FIGURE_HEIGHT + LEGEND_ROW_PX * (rows - 15)


def _public_designs():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "public_designs.py"
    spec = importlib.util.spec_from_file_location("public_designs", path)
    designs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(designs)
    return designs


def test_the_public_designs_the_builder_cannot_express_have_their_published_sizes():
    designs = _public_designs()
    for name, (make, published, _) in designs.DESIGNS.items():
        model = make()
        assert sum(p.numel() for p in model.parameters()) == published, name
    shared = designs.DESIGNS["rusl1936"][0]().shared  # one conv's weights, used three times
    assert sum(p.numel() for p in shared.parameters()) == 26 * 9 + 26 * 26 + 26


@pytest.mark.slow  # trains 15 epochs, twice
def test_a_public_design_is_trained_by_the_tools_trainer_and_its_runs_written(tmp_path):
    import json
    designs = _public_designs()
    out = tmp_path / "runs.json"  # a short run on 200 images writes its runs seed by seed
    small = ["--limit-train", "200", "--limit-eval", "500"]
    assert designs.main(["--design", "rusl1936", "--recipe", "own", "--seeds", "0", *small,
                         "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["params"] == 1_936 and doc["seeds"] == [0] and len(doc["test_acc"][0]) == 15
    assert doc["recipe"]["optimizer"] == "adam" and doc["recipe"]["rotate_deg"] == 0.0
    assert (doc["limit_train"], doc["limit_eval"]) == (200, 500)
    # a cut run continued: the new seed is added to the runs the file holds, a held one refused
    more = ["--design", "rusl1936", "--recipe", "own", *small, "--out", str(out), "--resume"]
    assert designs.main([*more, "--seeds", "1"]) == 0
    doc = json.loads(out.read_text())
    assert doc["seeds"] == [0, 1] and len(doc["mins"]) == len(doc["test_acc"]) == 2
    assert len(doc["commands"]) == 2 and doc["commands"][1].endswith("--resume --seeds 1")
    with pytest.raises(SystemExit) as refused:
        designs.main([*more, "--seeds", "1"])
    assert refused.value.code == 2 and json.loads(out.read_text()) == doc


@pytest.mark.parametrize("meta", [{"eval_split": "val", "val_split": 10_000}, {"epochs": 2},
                                  {"objective": "mean"}, {"last_n": 1}])
def test_a_study_scored_another_way_is_not_drawn_against_the_packaged_front(meta):
    from nas_mnist.results.report import study_frontier_figure
    view = _view("v", "abc", [(0, 3_000, [99.0])], **meta)  # the prior's data, other scoring
    fig = study_frontier_figure(view, prior=_prior("abc"))
    assert [t.name for t in fig.data] == ["this study, fewer than 3 seeds",
                                          "this study, 3+ seeds (bar: worst seed)"]
    assert "scored on the test split, min of the last 3 of 15 epochs" in fig.layout.title.text


def test_each_public_design_is_set_beside_the_fronts_best_network_of_at_most_its_size():
    import json
    from pathlib import Path
    doc = json.loads((Path(__file__).resolve().parents[2] / "studies" / "frontier.json")
                     .read_text())
    points = {p["name"]: p for p in doc["points"]}
    public = {(d["name"], d["recipe"]): d for d in doc["public"]}
    assert len(doc["like_for_like"]) == len(doc["public"])
    for row in doc["like_for_like"]:
        ours = points[row["ours"]]
        theirs = public[(row["design"], row["recipe"])]
        assert ours["params"] <= row["params"]
        assert not any(ours["params"] < p["params"] <= row["params"] for p in points.values()
                       if "budget" in p)  # the largest point that fits
        assert row["ahead"] == beats(Point("o", ours["params"], tuple(ours["seed_scores"])),
                                     Point("t", theirs["params"], tuple(theirs["seed_scores"])))
