"""The cold-search economy: the focused space, the size floor, the activation footprint and
cost model, rungs that decide from the first trial, and the warm start."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from nas_mnist.cli import main
from nas_mnist.engine.builder import build_model
from nas_mnist.engine.costmodel import CostModel, calibrate
from nas_mnist.engine.counting import measure_footprint
from nas_mnist.spec.limits import Limits
from nas_mnist.searcher.prior import (PACKAGED_PRIOR, FORMAT, PriorError, load_prior,
                                    parse_prior, pick_warm)
from nas_mnist.searcher.record import records
from nas_mnist.searcher.space import SPACE_DIR
from nas_mnist.searcher.stopping import Curve, make_rule
from nas_mnist.spec.arch import ArchConfig, ConvSpec, Head, Transition
from nas_mnist.spec.footprint import footprint

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--space", "quick", "--epochs", "1", "--last-n", "1", "--threads", "2", "--jobs", "1"]


def _search(tmp_path, data_dir, *extra, study="s"):
    url = f"sqlite:///{tmp_path}/studies.db"
    code = main(["search", "--study", study, "--storage", url, "--data-dir", str(data_dir),
                 *QUICK, *extra])
    return code, url


def _study(url, name="s"):
    return optuna.load_study(study_name=name, storage=url)


# -- footprint -------------------------------------------------------------------------------

def test_footprint_of_a_hand_computed_network():
    # 1x28x28 -> conv 4 (pad 1): 4x28x28 = 3,136 per conv/BN/ReLU; pool: 4x14x14 = 784;
    # conv 8 unpadded: 8x12x12 = 1,152 (x3); gap_conv: GAP 8, classifier 10.
    arch = ArchConfig(stages=((ConvSpec(4),), (ConvSpec(8, pad=0),)), transitions=(Transition(),))
    f = footprint(arch)
    assert f.activations == 3 * 3136 + 784 + 3 * 1152 + 8 + 10
    # the worst layer: the first conv's input (784) and output (3,136)
    assert f.peak == 784 + 3136 and f.peak_int8_bytes == 3920 and f.peak_fp32_bytes == 15680


def test_footprint_of_a_separable_conv_counts_its_intermediate_map():
    plain = ArchConfig(stages=((ConvSpec(4), ConvSpec(8)),), head=Head(kind="conv_gap"))
    sep = ArchConfig(stages=((ConvSpec(4), ConvSpec(8, kind="separable", mid_act=False)),),
                     head=Head(kind="conv_gap"))
    # the depthwise output (4x28x28 = 3,136) is a map of its own, before the pointwise conv
    assert footprint(sep).activations == footprint(plain).activations + 3136
    assert footprint(sep).peak == max(784 + 3136, 3136 + 3136, 3136 + 8 * 784, 8 * 784 + 7840)


def test_peak_ram_of_a_transition_and_each_head_by_hand():
    # conv 2 unpadded: 784 in + 2x26x26 = 1,352 out = 2,136; pool: 1,352 + 338 = 1,690;
    # 1x1 transition to 16 after the pool: 338 + 2,704 = 3,042; conv 8: 2,704 + 968 = 3,672
    stages = ((ConvSpec(2, pad=0),), (ConvSpec(8, pad=0),))
    trans = (Transition(conv1x1=16, where="after"),)
    for head in (Head(kind="conv_gap"),  # classifier 968 + 1,210 = 2,178; GAP 1,210 + 10
                 Head(kind="gap_linear"),  # GAP 968 + 8; linear 8 + 10
                 Head(kind="gap_conv")):  # GAP 968 + 8; 1x1 classifier 8 + 10
        f = footprint(ArchConfig(stages=stages, transitions=trans, head=head))
        assert f.peak_int8_bytes == 3672 and f.peak_fp32_bytes == 4 * 3672, head
    # a 1x1 conv of 32 before GAP is the largest layer: 968 + 32x11x11 = 4,840
    wide = ArchConfig(stages=stages, transitions=trans, head=Head(kind="gap_conv", pre_gap=32))
    assert footprint(wide).peak_int8_bytes == 4840


@pytest.mark.slow  # trains networks end to end
@pytest.mark.parametrize("space", sorted(p.stem for p in SPACE_DIR.glob("*.yaml")
                                          if p.stem != "recipe"))  # samples no architecture
def test_footprint_equals_a_forward_hook_count_for_random_samples(space):
    from tests.conftest import random_archs
    checked = 0
    for arch in random_archs(space, 40):
        assert footprint(arch) == measure_footprint(build_model(arch)), arch.describe()
        checked += 1
    assert checked >= 10


def test_shipped_winners_footprints():
    """The figures the README quotes (trial 52: ~4.5 KB peak at int8, 35 K activations)."""
    doc = json.loads((REPO / "studies/mnist-10k-winners/trial52.json").read_text())
    f = footprint(ArchConfig.from_dict(doc["arch"]))
    assert (f.activations, f.peak) == (35_390, 4_524)


# -- cost model ------------------------------------------------------------------------------

def test_a_space_that_trains_in_bf16_on_a_cpu_that_emulates_it_says_so(monkeypatch, tmp_path):
    """The wide and tiny spaces fix bf16, which an AVX2-only CPU emulates 4x slower a step:
    the search's first lines say so, and what trains in fp32 there; auto never warns."""
    import nas_mnist.engine.device as device
    from nas_mnist.api.search import emulated_bf16_note
    from nas_mnist.searcher.space import load_space
    cpu = torch.device("cpu")
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text((SPACE_DIR / "wide.yaml").read_text().replace(
        "precision: bf16", "precision: {choices: [fp32, bf16]}"))
    monkeypatch.setattr(device, "native_bf16", lambda _: False)
    note = emulated_bf16_note(load_space("wide"), cpu)
    assert note.startswith("precision: space wide trains in bf16, which this CPU emulates")
    assert "`precision: auto`" in note
    assert "may sample bf16" in emulated_bf16_note(load_space(str(mixed)), cpu)
    assert emulated_bf16_note(load_space("default"), cpu) is None
    monkeypatch.setattr(device, "native_bf16", lambda _: True)
    assert emulated_bf16_note(load_space("wide"), cpu) is None

def test_cost_model_is_calibrated_on_this_machine_and_grows_with_activations():
    torch.set_num_threads(1)
    model = calibrate(torch.device("cpu"), n_train=6000, n_eval=1000, steps=1, bf16=False)
    assert model.intercept >= 0 and model.slope > 0 and model.threads == 1
    assert model.epoch_seconds(200_000) > model.epoch_seconds(20_000) > 0
    assert "calibrated here: cpu, 1 thread" in model.describe()


def test_a_stall_while_calibrating_does_not_flatten_the_cost_model(monkeypatch):
    """Another process held the core while the smallest network was timed: the header said
    's/epoch ~ 806.8 + 0.000 x K activations'."""
    from nas_mnist.engine import costmodel
    rounds = iter([[0.9, 0.2, 0.5], [0.1, 0.25, 0.6]])  # seconds per step: a stall, a re-take
    calls = []

    def fake(arch, device, **kw):
        calls.append(arch)
        if len(calls) % 3 == 1:
            fake.current = next(rounds)
        return fake.current[(len(calls) - 1) % 3]

    monkeypatch.setattr(costmodel, "_step_seconds", fake)
    model = calibrate(torch.device("cpu"), n_train=6000, n_eval=1000, steps=1, bf16=False)
    assert len(calls) == 6  # timed again once: the timings fell with size
    assert model.slope > 0
    assert model.epoch_seconds(150_000) > 4 * model.epoch_seconds(20_000)
    assert " + 0.000 x K" not in model.describe()


def test_cost_model_epoch_scales_with_the_data():
    m = CostModel(1e-4, 1e-9, n_train=60_000, n_eval=10_000, threads=1, device="cpu")
    assert m.epoch_seconds(0) == pytest.approx(1e-4 * (60_000 + 10_000 / 3))


# -- rungs from the first trial ---------------------------------------------------------------

def test_rungs_stop_a_weak_first_trial_with_no_peers_in_the_study():
    rule = make_rule("asha").fit(15)
    prior = [Curve(-1 - i, [95.0 + i * 0.2] * 6, 8000, True) for i in range(12)]
    weak = Curve(0, [90.0, 94.0], 8000)
    assert rule.should_stop(weak, [], multi_objective=False) is None  # the old free pass
    decision = rule.decide(weak, [], multi_objective=False, prior=prior)
    assert decision.stop and decision.source == "study+prior" and decision.peers == 12
    assert decision.threshold == pytest.approx(95.0 + 9 * 0.2)  # the 3rd best of 12 (eta 4)
    strong = Curve(1, [97.0, 98.5], 8000)
    assert not rule.decide(strong, [], multi_objective=False, prior=prior).stop
    # the option turns it off; a two-objective study never uses it
    assert make_rule("asha", {"prior": "0"}).fit(15).should_stop(
        weak, [], multi_objective=False, prior=prior) is None
    assert rule.should_stop(weak, [], multi_objective=True, prior=prior) is None


def test_packaged_prior_curves_match_the_data_run_length_and_recipe_family():
    prior = load_prior()
    checksum = prior.configs[0].data_checksum
    ema = prior.curves_for(data_checksum=checksum, epochs=15, budget=10_000, ema=True)
    assert ema and all(c.ema and 5_000 <= c.budget <= 20_000 for c in ema)
    assert not prior.curves_for(data_checksum="other", epochs=15, budget=10_000, ema=True)
    assert not prior.curves_for(data_checksum=checksum, epochs=2, budget=10_000, ema=True)


def test_a_resumed_study_in_the_prior_is_not_its_own_earlier_curve():
    """Resuming mnist-2k listed mnist-2k's curves as earlier ones: its trials judged twice."""
    prior = load_prior()
    key = dict(data_checksum=prior.configs[0].data_checksum, epochs=15, budget=2_000, ema=True)
    assert "mnist-2k" in {c.study for c in prior.curves_for(**key)}
    others = prior.without("mnist-2k")
    assert others.curves_for(**key) and "mnist-2k" not in {c.study for c in
                                                           others.curves_for(**key)}
    assert all(c.study != "mnist-2k" for c in others.configs)


def test_replay_with_prior_stops_no_top_quarter_network_in_any_shipped_study():
    """Every shipped study replayed as a search runs now, with the prior built from the other
    studies: where earlier curves take part in a decision, no network that ended in the
    study's top quarter is stopped (the script exits 1 otherwise)."""
    out = subprocess.run([sys.executable, "benchmarks/replay_pruners.py", "--prior"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    summary = out.stdout.strip().splitlines()[-1]
    assert "0 top-quarter networks stopped where earlier curves took part" in summary
    assert "saved" in summary


# -- size floor and cost limit ----------------------------------------------------------------

@pytest.mark.slow  # trains networks end to end
def test_floor_refuses_before_training_and_does_not_count(tmp_path, small_data_dir, monkeypatch):
    import nas_mnist.engine.evaluate as evaluate_mod
    trained = []
    real_train = evaluate_mod.train
    monkeypatch.setattr(evaluate_mod, "train",
                        lambda model, *a, **k: trained.append(model) or real_train(model, *a, **k))
    # random draws (TPE's start-up draws are all trainable: no refusal to look at)
    code, url = _search(tmp_path, small_data_dir, "--budget", "3000", "--min-params", "2000",
                        "--trials", "2", "--sampler", "random")
    assert code == 0
    study = _study(url)
    recs = records(study)
    under = [r for r in recs if r.kind == "under_floor"]
    assert under and all(r.n_params < 2000 and not r.accs for r in under)
    assert sum(r.trained for r in recs) == 2 == len(trained)
    assert all(r.n_params >= 2000 for r in recs if r.trained)
    # the sampler learns the floor as a constraint, like the budget
    t = study.trials[under[0].number]
    assert t.constraints["param_floor"] > 0 and t.constraints["param_budget"] <= 0


@pytest.mark.slow  # trains networks end to end
def test_default_floor_is_0_4_of_the_budget_and_off_for_two_objectives(tmp_path,
                                                                       small_data_dir, capsys):
    code, url = _search(tmp_path, small_data_dir, "--budget", "3000", "--trials", "1")
    assert code == 0
    assert "size floor 1,200 parameters" in capsys.readouterr().out
    code, url = _search(tmp_path, small_data_dir, "--budget", "3000", "--trials", "1",
                        "--objectives", "score,params", study="mo")
    assert code == 0 and "no size floor" in capsys.readouterr().out
    assert not any(r.kind == "under_floor" for r in records(_study(url, "mo")))


@pytest.mark.slow  # trains networks end to end
def test_resumed_older_study_keeps_its_own_limits(tmp_path, small_data_dir, capsys):
    """A study made before the floor existed resumes without one (its meta says none)."""
    from nas_mnist.searcher.record import StudyMeta
    code, url = _search(tmp_path, small_data_dir, "--budget", "3000", "--trials", "1",
                        "--min-params", "0", "--max-activations", "0")
    study = _study(url)
    meta = StudyMeta.from_study(study)
    assert (meta.min_params, meta.max_activations) == (0, 0)
    capsys.readouterr()
    assert _search(tmp_path, small_data_dir, "--budget", "3000", "--trials", "2")[0] == 0
    assert "no size floor, no activation limit" in capsys.readouterr().out
    code, _ = _search(tmp_path, small_data_dir, "--budget", "3000", "--trials", "3",
                      "--min-params", "1000")
    assert code == 2 and "min_params 0 (stored) vs 1000 (now)" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [
    (["--min-params", "5000"], "--min-params must be an integer in [0, budget 3,000]"),
    (["--min-params", "-1"], "--min-params: must be an integer >= 0"),
    (["--min-params", "nan"], "--min-params: must be an integer >= 0"),
    (["--min-params", "10", "--objectives", "score,params"], "needs objectives='score'"),
    (["--max-activations", "100"], "below the activations of the smallest network"),
    (["--warm-start", "missing.json"], "prior missing.json does not exist"),
    (["--warm-start", "none", "auto"], "--warm-start takes 'auto', 'none', or prior files"),
])
def test_bad_limits_and_warm_start_give_one_line_and_create_nothing(tmp_path, capsys, flags,
                                                                   message):
    url = f"sqlite:///{tmp_path}/never.db"
    code = main(["search", "--space", "quick", "--budget", "3000", "--storage", url, *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never.db").exists()


@pytest.mark.slow  # trains networks end to end
def test_max_activations_is_a_hard_constraint(tmp_path, small_data_dir):
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "2",
                        "--max-activations", "40000", "--min-params", "0")
    assert code == 0
    recs = records(_study(url))
    assert all((r.activations or 0) <= 40000 for r in recs if r.trained)
    over = [r for r in recs if r.kind == "over_activations"]
    assert all(r.activations > 40000 and not r.accs for r in over)


# -- warm start --------------------------------------------------------------------------------

def _prior_file(path: Path, checksum: str, configs: list[tuple[dict, dict, float]]) -> Path:
    doc = {"format": FORMAT, "configs": [
        {"study": "old", "trial": i, "arch": arch, "recipe": recipe,
         "params": ArchConfig.from_dict(arch).n_params(), "seeds": [0], "scores": [score],
         "data_checksum": checksum} for i, (arch, recipe, score) in enumerate(configs)]}
    path.write_text(json.dumps(doc))
    return path


QUICK_ARCH = {"stages": [[{"out": 8}], [{"out": 8, "pad": 0}, {"out": 12, "pad": 0}]],
              "transitions": [{}]}
OTHER_ARCH = {"stages": [[{"out": 8}], [{"out": 12, "pad": 0}]], "transitions": [{}]}
FIXED_ARCH = {"stages": [[{"out": 7}], [{"out": 9, "pad": 0}]], "transitions": [{}]}  # width 7


@pytest.mark.slow  # over 20 s: end-to-end
def test_warm_start_enqueues_the_expected_configurations_once(tmp_path, small_data_dir, capsys):
    from nas_mnist.engine.data import load_dataset
    checksum = load_dataset(small_data_dir).checksum
    recipe = {"lr": 0.05, "precision": "bf16"}
    prior = _prior_file(tmp_path / "p.json", checksum, [
        (QUICK_ARCH, recipe, 97.0), (OTHER_ARCH, recipe, 96.0), (FIXED_ARCH, recipe, 95.0),
        (QUICK_ARCH, recipe, 90.0)])  # a repeat: enqueued once
    flags = ["--budget", "5000", "--min-params", "0", "--warm-start", str(prior)]
    for trials in ("3", "4"):  # the second run resumes: nothing is enqueued again
        code, url = _search(tmp_path, small_data_dir, *flags, "--trials", trials, "--jobs", "2")
        assert code == 0
    out = capsys.readouterr().out
    study = _study(url)
    warm = [r for r in records(study) if r.warm]
    assert sorted(r.warm for r in warm) == [f"old trial {i} (seed 0, {s:.2f} %)"
                                            for i, s in enumerate((97, 96, 95))]
    assert all(r.kind in ("complete", "early_stopped") for r in warm)  # each ran once
    fixed = [r for r in warm if r.fixed_arch]
    assert len(fixed) == 1 and fixed[0].arch == ArchConfig.from_dict(FIXED_ARCH).to_dict()
    assert out.count("warm start: enqueued") == 3 and "cannot express it" in out


@pytest.mark.slow  # trains networks end to end
def test_warm_start_skips_a_prior_of_other_data_with_one_line(tmp_path, small_data_dir, capsys):
    prior = _prior_file(tmp_path / "p.json", "0" * 64, [(QUICK_ARCH, {}, 97.0)])
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--min-params", "0",
                        "--warm-start", str(prior), "--trials", "1")
    out = capsys.readouterr().out
    assert code == 0 and "made on other data (old)" in out and "a cold start" in out
    assert not any(r.warm for r in records(_study(url)))


def test_pick_warm_ranks_confirmed_means_first_and_respects_the_limits():
    prior = load_prior(PACKAGED_PRIOR)
    checksum = prior.configs[0].data_checksum
    picked, _ = pick_warm(list(prior.configs), Limits(10_000, 4_000, None, 210_000),
                          data_checksum=checksum)
    # ranked by the mean over 5 seeds; mnist-10k-v4's trial 2 by the search's own
    # confirmation runs (it re-ran v3's trial 34, 99.44 on 5 seeds, at 99.50); the warm
    # study's trial 50 by its report's seed runs (99.48)
    assert [(c.study, c.trial) for c in picked] == [("mnist-10k-v3", 33), ("mnist-10k-v4", 2),
                                                    ("mnist-10k-warm", 50)]
    assert picked[1].seeds == (0, 1, 2, 3, 4)
    picked, _ = pick_warm(list(prior.configs), Limits(4_000, 1_600, None, 210_000),
                          data_checksum=checksum)
    # the 4,000 baseline's sampled 3,496-parameter network, 99.28 on 5 seeds, before the
    # 3,254-parameter front point's 99.27
    assert [(c.study, c.trial) for c in picked][:2] == [("mnist-4k-baseline", 38),
                                                        ("mnist-4k-v4", 61)]
    assert all(1_600 <= c.params <= 4_000 for c in picked)


@pytest.mark.slow  # trains networks end to end
def test_the_packaged_prior_is_what_the_script_builds(tmp_path):
    out = tmp_path / "rebuilt.json"
    subprocess.run([sys.executable, "benchmarks/build_prior.py", "--out", str(out)], cwd=REPO,
                   check=True, capture_output=True)
    rebuilt, shipped = json.loads(out.read_text()), json.loads(PACKAGED_PRIOR.read_text())
    for doc in (rebuilt, shipped):
        doc.pop("commit")
    assert rebuilt == shipped


def test_a_reused_network_is_one_fact_in_the_prior_with_the_seeds_run_on_top():
    # mnist-4k-h200 took mnist-4k-v4's trials 61 and 0 with their stored runs (no training)
    # and ran seeds 3-4 of trial 0 on a GPU; the prior listed each network once per study
    # (and credited the front's 3,254 point to the GPU study that merely reused it)
    prior = json.loads(PACKAGED_PRIOR.read_text())
    reused = set()
    for db in sorted((REPO / "studies").glob("*.db")):
        url = f"sqlite:///{db}"
        for summary in optuna.get_all_study_summaries(url, include_best_trial=False):
            study = optuna.load_study(study_name=summary.study_name, storage=url)
            reused |= {(summary.study_name, r.number) for r in records(study) if r.reused}
    assert ("mnist-4k-h200", 0) in reused
    held = {(c["study"], c["trial"]) for c in prior["configs"] + prior["curves"]}
    assert not held & reused
    by_key = {(c["study"], c["trial"]): c for c in prior["configs"]}
    assert by_key[("mnist-4k-v4", 0)]["seeds"] == [0, 1, 2, 3, 4]
    measured = by_key[("mnist-4k-v4", 0)]["measured"]
    assert "seeds 3, 4: NVIDIA H200 (mnist-4k-h200 trial 1)" in measured


@pytest.mark.parametrize("doc,message", [
    ({}, "not a nas-mnist prior"),
    ({"format": FORMAT, "configs": [{"arch": QUICK_ARCH, "seeds": [0], "scores": [1e9],
                                     "params": 1, "data_checksum": "x"}]}, "params is 1"),
    ({"format": FORMAT, "configs": [{"arch": QUICK_ARCH, "seeds": [0, 1], "scores": [99.0],
                                     "data_checksum": "x"}]}, "one length"),
    ({"format": FORMAT, "curves": [{"accs": [101.0], "epochs": 1, "budget": 1,
                                    "params": 1}]}, "percentage"),
    ({"format": FORMAT, "public": [{"name": "p", "params": 10, "recipe": "theirs",
                                    "seed_scores": [99.0]}]}, r"public\[0\] must be"),
    ({"format": FORMAT, "public": [{"name": "p", "params": 10, "recipe": "own",
                                    "seed_scores": [990.0]}]}, r"public\[0\].seed_scores"),
])
def test_a_malformed_prior_is_refused_naming_the_field(doc, message):
    with pytest.raises(PriorError, match=message):
        parse_prior(doc, "p.json")


@pytest.mark.slow  # over 20 s: end-to-end; stops at its first hit, the cap only bounds a miss
def test_time_to_target_runs_on_a_fixture(tmp_path, small_data_dir):
    out = tmp_path / "ttt.jsonl"
    subprocess.run([sys.executable, str(REPO / "benchmarks/time_to_target.py"), "--seeds", "0",
                    "--cap-min", "3", "--target", "20", "--budget", "3000", "--out", str(out),
                    "--", "--data-dir", str(small_data_dir), "--space", "quick", "--epochs",
                    "1", "--jobs", "1"], check=True, capture_output=True, cwd=tmp_path)
    line = json.loads(out.read_text().splitlines()[-1])
    for key in ("seed", "warm_start", "reached", "minutes", "trained_epochs", "trials", "cpu",
                "date", "commit", "best_at_30", "best_at_60", "cpu_min_by_kind"):
        assert key in line, key
    assert line["warm_start"] == "none" and line["reached"] and line["trained_epochs"] >= 1


# -- peak RAM as a hard limit -------------------------------------------------------------------

@pytest.mark.slow  # trains networks end to end
def test_max_ram_is_a_hard_constraint(tmp_path, small_data_dir, capsys):
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "2",
                        "--min-params", "0", "--max-ram", "12000", "--sampler", "random")
    assert code == 0 and "peak RAM at most 12,000 B at int8" in capsys.readouterr().out
    study = _study(url)
    recs = records(study)
    assert all(r.peak <= 12000 for r in recs if r.trained)
    over = [r for r in recs if r.kind == "over_ram"]
    assert over and all(r.peak > 12000 and not r.accs for r in over)
    assert study.trials[over[0].number].constraints["max_ram"] > 0


@pytest.mark.parametrize("value,message", [
    ("0", "--max-ram: must be >= 1"), ("-5", "--max-ram: must be >= 1"),
    ("nan", "--max-ram: expected an integer, got 'nan'"),
    ("2.5", "--max-ram: expected an integer, got '2.5'"),
    ("100", "below the peak activation memory of the smallest network of space 'quick'"),
])
def test_bad_max_ram_is_one_line(tmp_path, capsys, value, message):
    url = f"sqlite:///{tmp_path}/never.db"
    code = main(["search", "--space", "quick", "--budget", "3000", "--storage", url,
                 "--max-ram", value])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never.db").exists()


@pytest.mark.slow  # trains networks end to end
def test_a_hopeless_search_names_the_limit_that_refuses(tmp_path, small_data_dir, capsys,
                                                       monkeypatch):
    """Refusals in a row (200; 20 here, each one a stored trial) end the search with the
    limits that refused, by parameter name (limits some uniform draws meet: those no draw meets
    are refused before the study)."""
    import nas_mnist.searcher.workers as workers
    monkeypatch.setattr(workers, "MAX_REFUSED_IN_A_ROW", 20)
    code, url = _search(tmp_path, small_data_dir, "--budget", "3000", "--min-params", "2990",
                        "--sampler", "random", "--trials", "1")
    err = capsys.readouterr().err
    assert code == 1 and "20 samples in a row were refused" in err
    assert "under the size floor min_params=2,990" in err and "space quick" in err
    assert sum(r.trained for r in records(_study(url))) == 0


def test_mcu_space_narrows_stage_one_only():
    """first_width / first_stage_convs set stage 1 on its own; spaces without them are as
    before (same digest), and most of the mcu space's samples fit 4 KB where default's do not."""
    from nas_mnist.searcher.space import load_space
    from nas_mnist.searcher.sampling import smallest_arch, suggest_arch
    mcu, default = load_space("mcu"), load_space("default")
    assert default.digest == "efc9883aae008683"
    assert smallest_arch(mcu).stages[0][0].out == 2
    fits = {}
    for space in (mcu, default):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        fits[space.name] = 0
        for _ in range(300):
            trial = study.ask()
            try:
                arch = suggest_arch(trial, space)
            except Exception:
                arch = None
            if arch is not None and space is mcu:
                assert arch.stages[0][0].out in (2, 3, 4, 6) and len(arch.stages[0]) <= 2
            fits[space.name] += arch is not None and footprint(arch).peak_int8_bytes <= 4096
            study.tell(trial, 0.0)
    assert fits["mcu"] > 5 * max(fits["default"], 1)


@pytest.mark.slow  # trains networks end to end
def test_score_ram_study_fronts_accuracy_against_peak_ram(tmp_path, small_data_dir):
    """--objectives score,ram: a two-objective study over peak RAM; its front, the export of
    that front and the report's RAM chart use peak RAM at int8."""
    from nas_mnist.results.ranking import feasible, pareto_front
    from nas_mnist.results.report import pareto_figure
    from nas_mnist.searcher.record import StudyMeta
    code, url = _search(tmp_path, small_data_dir, "--budget", "5000", "--trials", "3",
                        "--objectives", "score,ram", "--max-ram", "12000")
    assert code == 0
    study = _study(url)
    assert StudyMeta.from_study(study).objectives == "score,ram"
    assert study.metric_names == ["score", "peak_ram_int8"]
    done = [t for t in study.trials if t.values]
    assert done and all(t.values[1] == t.user_attrs["peak_ram_int8"] <= 12000 for t in done)
    front = pareto_front(feasible(study), "peak")
    out = tmp_path / "front"
    assert main(["export", "--study", "s", "--storage", url, "--pareto", "--out", str(out),
                 "--artifacts", str(tmp_path / "none"), "--data-dir", str(small_data_dir)]) == 0
    assert sorted(int(p.stem[5:]) for p in out.glob("*.json")) == sorted(r.number for r in front)
    fig = pareto_figure(study, "peak")
    assert "peak activation RAM" in fig.layout.xaxis.title.text
    assert [v.x0 for v in fig.layout.shapes] == [12000]  # the RAM limit, drawn


def test_time_to_target_labels_its_own_interruptions_and_counts_their_cpu():
    """The benchmark stops a search at the hit or the cap: the trial it interrupts is its
    own doing, not a failure, and its minutes count (they were left out: 7-52 % of a line)."""
    import datetime
    import importlib.util
    from optuna.trial import TrialState, create_trial
    from nas_mnist.searcher.record import attrs_of
    spec = importlib.util.spec_from_file_location("ttt", REPO / "benchmarks/time_to_target.py")
    ttt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ttt)
    start = datetime.datetime(2026, 12, 4, 1, 0, 0)
    minutes = datetime.timedelta(minutes=1)

    def trial(state, offset, length, value=None, **attrs):
        made = create_trial(state=state, value=value, user_attrs=attrs_of(**attrs))
        made.datetime_start = start + offset * minutes
        made.datetime_complete = start + (offset + length) * minutes
        return made

    study = optuna.create_study(direction="maximize")
    study.set_user_attr("nas_mnist", {"budget": 10_000})
    study.add_trial(trial(TrialState.COMPLETE, 0, 6, 99.3, warm="prior x#1", accs=[99.3]))
    study.add_trial(trial(TrialState.COMPLETE, 6, 3, 99.1, accs=[99.1]))  # sampled
    study.add_trial(trial(TrialState.FAIL, 9, 1, interrupted=True))  # stopped at the cap
    # a trial still running counts up to `now`, the same instant for every figure
    running = create_trial(state=TrialState.RUNNING, user_attrs=attrs_of(accs=[]))
    running.datetime_start = start + 10 * minutes
    study.add_trial(running)
    now = (start + datetime.timedelta(minutes=10, seconds=3)).timestamp()
    by_kind = ttt.cpu_by_kind(study, now)
    assert by_kind == {"complete": 9.0, "interrupted_by_benchmark": 1.0, "running": 0.1}
    # 4.05 of 10.05 minutes: the sampled network's 3, the one the benchmark interrupted and
    # the running one (the rounded kinds sum to 10.1 and made a share of 1.004 once)
    assert ttt.cpu_share_sampled(study, now) == round(4.05 / 10.05, 3)
    assert ttt.first_hit(study, 99.2, 10_000).number == 0


def test_a_baseline_line_holds_the_best_the_sampler_drew_apart_from_known_networks(tmp_path):
    """The default arm's best is often a warm start reused at minute 0; the line says what its
    own draws reached by each mark, so the comparison with plain Optuna is not all prior."""
    import datetime
    import importlib.util
    from optuna.trial import TrialState, create_trial
    from nas_mnist.searcher.record import attrs_of
    spec = importlib.util.spec_from_file_location("baseline", REPO / "benchmarks/baseline.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    start = datetime.datetime(2026, 12, 5, 1, 0, 0)
    url = f"sqlite:///{tmp_path}/b.db"
    study = optuna.create_study(study_name="default", storage=url, direction="maximize")

    def add(minute, value, params, **attrs):
        made = create_trial(state=TrialState.COMPLETE, value=value,
                            user_attrs=attrs_of(n_params=params, accs=[value], **attrs))
        made.datetime_start = start + datetime.timedelta(minutes=minute - 1)
        made.datetime_complete = start + datetime.timedelta(minutes=minute)
        study.add_trial(made)
    add(0, 99.3, 3_000, warm="prior x#1")  # known: reused at minute 0
    add(10, 99.0, 3_500)  # the sampler's
    add(20, 99.1, 3_900)
    add(25, 99.6, 4_100)  # over the budget: not counted
    got = baseline.outcome(url, "default", start.timestamp(), 4_000, 99.2)
    assert got["best"] == {15: 99.3, 30: 99.3, 60: 99.3}
    assert got["sampled_best"] == {15: 99.0, 30: 99.1, 60: 99.1}


@pytest.mark.parametrize("change,message", [
    (lambda d: d["configs"][0].update(scores=[99.99] + d["configs"][0]["scores"][1:]),
     "outside its own curve's range"),
    (lambda d: d["curves"][0].update(trainer="hash/bf8"), "names no trainer setting"),
])
def test_a_prior_whose_runs_disagree_with_its_curves_or_trainer_is_refused(change, message,
                                                                           tmp_path, capsys):
    from nas_mnist.cli import main
    doc = json.loads(PACKAGED_PRIOR.read_text())
    first = doc["configs"][0]
    doc["curves"] = [c for c in doc["curves"]
                     if (c["study"], c["trial"]) == (first["study"], first["trial"])] + \
        doc["curves"]
    change(doc)
    path = tmp_path / "bad-prior.json"
    path.write_text(json.dumps(doc))
    assert main(["search", "--study", "s", "--trials", "1", "--warm-start", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "studies").exists()


def test_an_input_pool_is_part_of_the_network_and_leaves_older_keys_alone():
    """input_pool 2 (the 2 KB class): a 2x2 average pool of the image is the network's first
    layer, so training, export and predict downsample alike; configs without it keep their
    dict and key, so prior and warm-start matches stay."""
    plain = ArchConfig(stages=((ConvSpec(4, pad=0),),))
    pooled = ArchConfig(stages=((ConvSpec(4, pad=0),),), input_pool=2)
    assert "input_pool" not in plain.to_dict() and pooled.to_dict()["input_pool"] == 2
    assert ArchConfig.from_dict(pooled.to_dict()) == pooled and plain.key() != pooled.key()
    assert pooled.feature_sizes() == [12] and pooled.describe().startswith("/2 | ")
    model = build_model(pooled)
    assert isinstance(model[0], torch.nn.AvgPool2d)
    x = torch.rand(2, 1, 28, 28)
    inner = torch.nn.Sequential(*list(model)[1:])
    assert torch.equal(model(x), inner(torch.nn.functional.avg_pool2d(x, 2)))
    # 784 in + 196 pooled; conv 196 + 4x12x12 = 772
    assert footprint(pooled).peak == 784 + 196
    with pytest.raises(Exception, match="input_pool"):
        ArchConfig(stages=((ConvSpec(4),),), input_pool=3)


def test_the_baseline_table_takes_medians_per_cell_and_mark_and_a_seeds_later_line(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("baseline", REPO / "benchmarks/baseline.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)

    def line(arm, seed, b15, b30, minutes=30.0, **own):
        return json.dumps({"data": "mnist", "budget": 4000, "arm": arm, "seed": seed,
                           "best_15": b15, "best_30": b30, "best_60": None,
                           "minutes": minutes, **own})
    lines = [line("default", 0, 98.0, 98.0), line("default", 0, 99.0, 99.1),  # measured again
             line("default", 1, 99.2, 99.3, sampled_best_15=None, sampled_best_30=98.7),
             line("default", 2, 98.5, 98.9),  # older: its own draws not recorded
             line("optuna", 0, None, 98.0), line("optuna", 1, 97.0, 98.5),
             line("optuna", 2, 96.0, 97.0),
             # a later pair whose arms trained in different precisions (emulated bf16 against
             # fp32): kept in the file, left out of the table, so seed 2's earlier pair counts
             *(line(arm, 2, 99.9, 99.9, minutes=60.0,
                    precisions={"default": "fp32", "optuna": "bf16"})
               for arm in ("default", "optuna"))]
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = baseline.table(path).splitlines()[2:]
    assert rows == [
        "| mnist 4,000 | 15 min | 3 (0, 1, 2) | 99.00 / 99.20 / 98.50 | 99.00 "
        "| - / 97.00 / 96.00 | 96.00 | default | n/r / - / n/r |",
        "| mnist 4,000 | 30 min | 3 (0, 1, 2) | 99.10 / 99.30 / 98.90 | 99.10 "
        "| 98.00 / 98.50 / 97.00 | 98.00 | default | n/r / 98.70 / n/r |"]  # no 60-min row


def test_the_baseline_plain_arm_trains_in_the_defaults_precision(tmp_path):
    """The wide space fixes bf16, which an AVX2-only CPU emulates 4x slower a step: the plain
    arm takes the default's `auto`, so the pair measures the search, not the CPU's bf16."""
    import importlib.util
    from nas_mnist.searcher.space import load_space
    spec = importlib.util.spec_from_file_location("baseline", REPO / "benchmarks/baseline.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    space = load_space(str(baseline.plain_space(tmp_path)))
    assert space.recipe["precision"].fixed == "auto"
    assert load_space("default").recipe["precision"].fixed == "auto"
