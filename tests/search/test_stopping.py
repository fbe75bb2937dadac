"""Stopping rules on synthetic curves, a rule swapped in without touching the objective, and
the replay benchmark on a small recorded study."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import optuna
import pytest

from nas_mnist.cli import main
from nas_mnist.searcher import stopping
from nas_mnist.searcher.stopping import Curve, RuleError, StopRule, make_rule

ROOT = Path(__file__).resolve().parents[2]


def _asha(**options):
    return make_rule("asha", {k: str(v) for k, v in options.items()}).fit(15)


def test_asha_promotes_exactly_the_top_fraction_at_a_rung():
    rule = _asha(rungs="3,9", eta=3, min_peers=1)
    accs = [90.0 + i for i in range(9)]  # nine trials already at rung 3: 90 .. 98 %
    peers = [Curve(i, [a] * 3, 1000) for i, a in enumerate(accs)]
    # with a tenth trial, 10 reached the rung and the top 10 // 3 = 3 go on
    kept = [a for a in (89.5, 90.5, 95.5, 96.5, 97.5, 98.5)
            if not rule.should_stop(Curve(99, [a] * 3, 1000), peers, multi_objective=False)]
    assert kept == [96.5, 97.5, 98.5]
    # replaying all nine in a fixed order: each is judged among those that reached the rung
    # before it; once everyone is there, exactly the top 1/eta of them are above the cut
    everyone = [Curve(i, [a] * 3, 1000) for i, a in enumerate(accs)]
    go_on = [c.accs[0] for c in everyone
             if not rule.should_stop(c, everyone, multi_objective=False)]
    assert go_on == [96.0, 97.0, 98.0]


def test_asha_decides_only_at_rungs_and_after_min_peers():
    rule = _asha(rungs="3", eta=2, min_peers=4)
    peers = [Curve(i, [99.0] * 5, 1000) for i in range(3)]
    bad = Curve(9, [10.0] * 3, 1000)
    fair = Curve(9, [98.5] * 3, 1000)  # 1.5 % error against the best's 1 %: not twice
    # 3 peers < 4: no ranking yet, but no free pass either for one far behind the best
    assert rule.should_stop(bad, peers, multi_objective=False) == \
        "asha rung 3 (behind the study's best)"
    assert rule.should_stop(fair, peers, multi_objective=False) is None
    assert rule.should_stop(bad, peers[:1], multi_objective=False) is None  # 1 peer: too few
    peers.append(Curve(3, [99.0] * 5, 1000))
    assert rule.should_stop(bad, peers, multi_objective=False) == "asha rung 3"
    assert rule.should_stop(Curve(9, [10.0] * 4, 1000), peers, multi_objective=False) is None


def test_asha_compares_peers_at_the_rung_not_where_they_ended():
    """Rising curves: a peer that ended at 99 % had 95 % at rung 2, and that is what counts."""
    rule = _asha(rungs="2", eta=2, min_peers=1)
    rising = [Curve(i, [90.0, 95.0, 99.0], 1000) for i in range(3)]
    assert rule.should_stop(Curve(9, [91.0, 96.0], 1000), rising, multi_objective=False) is None
    assert rule.should_stop(Curve(9, [91.0, 94.0], 1000), rising,
                            multi_objective=False) == "asha rung 2"
    decision = rule.decide(Curve(9, [91.0, 96.0], 1000), rising, multi_objective=False)
    assert decision.threshold == 95.0 and decision.peers == 3


def test_a_trial_within_the_seed_noise_of_the_bar_goes_on():
    """The training seed alone moves a network's accuracy at a rung by about a tenth of its
    error; a 20,000 baseline search stopped a draw at 99.45 % at epoch 6 against a bar of
    99.46 %, and others at epoch 2 by 0.01 points."""
    rule = _asha(rungs="6", min_peers=1)
    peers = [Curve(i, [99.46] * 6, 15_000) for i in range(8)]
    assert rule.should_stop(Curve(9, [99.45] * 6, 15_000), peers, multi_objective=False) is None
    # 0.60 % error against the bar's 0.54 %: more than a tenth beyond it
    assert rule.should_stop(Curve(9, [99.40] * 6, 15_000), peers,
                            multi_objective=False) == "asha rung 6"
    strict = _asha(rungs="6", min_peers=1, noise=0)
    assert strict.should_stop(Curve(9, [99.45] * 6, 15_000), peers,
                              multi_objective=False) == "asha rung 6"


def test_asha_ignores_peers_that_have_not_reached_the_rung():
    rule = _asha(rungs="3", eta=2, min_peers=2)
    behind = [Curve(i, [99.9, 99.9], 1000) for i in range(5)]  # two epochs: not at rung 3
    at_rung = [Curve(10, [97.0] * 3, 1000), Curve(11, [98.0] * 3, 1000)]
    me = Curve(9, [97.5] * 3, 1000)
    # only the two at the rung count: keep (2 + 1) // 2 = 1, and 98.0 is ahead of 97.5
    assert rule.should_stop(me, behind + at_rung, multi_objective=False) == "asha rung 3"
    assert rule.decide(me, behind + at_rung, multi_objective=False).peers == 2
    # with fewer than min_peers at the rung nothing is decided, however many are behind
    assert rule.should_stop(me, behind + at_rung[:1], multi_objective=False) is None


def test_two_objective_asha_never_stops_a_non_dominated_trial():
    rule = _asha(rungs="2", eta=4, min_peers=1)
    big_and_good = [Curve(i, [99.0 - 0.1 * i] * 2, 9000 + i) for i in range(12)]
    tiny = Curve(50, [80.0, 80.0], 600)  # far behind in accuracy, but nothing is smaller
    assert rule.should_stop(tiny, big_and_good, multi_objective=True) is None
    assert rule.should_stop(tiny, big_and_good, multi_objective=False).startswith("asha rung 2")
    dominated = Curve(51, [80.0, 80.0], 9500)  # bigger and worse than most: stopped
    assert rule.should_stop(dominated, big_and_good, multi_objective=True) == "asha rung 2"


def test_percentile_fits_its_default_warmup_to_short_runs_and_refuses_only_a_given_one():
    """`--prune percentile --epochs 3` was refused for a warmup the user never set."""
    assert make_rule("percentile", {}).fit(15).warmup == 3
    assert make_rule("percentile", {}).fit(3).warmup == 2
    one = make_rule("percentile", {}).fit(1)
    assert not one.decides_at(1)  # a one-epoch run has nothing to stop
    with pytest.raises(RuleError, match="percentile warmup must be in \\[1, 2\\], got 3"):
        make_rule("percentile", {"warmup": "3"}).fit(3)


def test_two_workers_reading_the_same_storage_decide_alike():
    rule = _asha(rungs="3", eta=3, min_peers=2)
    stored = [Curve(i, [95.0 + i] * 3, 2000 + 100 * i) for i in range(6)]
    me = Curve(7, [97.2] * 3, 2500)
    # the same facts in a different order (as two workers may read them) give one decision
    assert (rule.should_stop(me, stored, multi_objective=False)
            == rule.should_stop(me, stored[::-1], multi_objective=False)
            == rule.should_stop(me, stored + [me], multi_objective=False))


@pytest.mark.parametrize("name,options,message", [
    ("asha", {"rungs": "3,15"}, "must lie in [1, 14]"),
    ("asha", {"eta": "1"}, "eta must be >= 2"),
    ("asha", {"eta": "x"}, "cannot read 'x' as int"),
    ("asha", {"rung": "3"}, "has no option 'rung'"),
    ("asha", {"noise": "1.5"}, "noise must be in [0, 1]"),
    ("hyperband", {}, "unknown stopping rule"),
])
def test_bad_rule_settings_are_rule_errors(name, options, message):
    with pytest.raises(RuleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_rule(name, options).fit(15)


def test_bad_rule_flags_one_line_exit_2_no_storage(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    for flags in (["--prune-opt", "rungs=20"], ["--prune-opt", "eta=1"], ["--prune", "nope"],
                  ["--prune-opt", "eta"]):
        assert main(["search", "--storage", url, "--space", "quick", *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("nas-mnist: error:")
    assert not (tmp_path / "s.db").exists()


@dataclass(frozen=True)
class StopAfter(StopRule):
    """A rule defined only here: stop every trial after `epoch` epochs."""

    name: ClassVar[str] = "stop_after"
    epoch: int = 1

    def decides_at(self, epoch: int) -> bool:
        return epoch == self.epoch

    def should_stop(self, me, peers, *, multi_objective):
        return f"stop_after {self.epoch}"


@pytest.mark.slow  # trains networks end to end
def test_a_new_rule_is_one_class_and_its_registration(tmp_path, small_data_dir, monkeypatch):
    from nas_mnist.searcher.study import SearchSettings, create_or_resume, preflight, run_search
    from nas_mnist.engine.data import load_dataset
    monkeypatch.setitem(stopping.RULES, "stop_after", StopAfter)
    settings = SearchSettings.of(study="n", storage=f"sqlite:///{tmp_path}/n.db", space="quick",
                              budget=5000, epochs=3, last_n=1, trials=2, data_dir=str(small_data_dir),
                              prune="stop_after", prune_options=(("epoch", "2"),),
                              artifacts=str(tmp_path / "art"))
    space = preflight(settings)
    study, _ = create_or_resume(settings, space, load_dataset(small_data_dir))
    assert run_search(settings, study) == 2
    trained = [t for t in study.trials if t.user_attrs.get("acc")]  # not refused
    assert len(trained) == 2
    for t in trained:
        assert t.state == optuna.trial.TrialState.PRUNED and len(t.user_attrs["acc"]) == 2
        assert t.user_attrs["reason"] == "early_stopped"
        assert t.user_attrs["stopped_by"] == "stop_after 2" and t.user_attrs["weights_artifact"]


@pytest.mark.slow  # trains networks end to end
def test_replay_benchmark_runs_on_a_small_recorded_study(tmp_path):
    from nas_mnist.searcher.record import StudyMeta
    url = f"sqlite:///{tmp_path}/rec.db"
    study = optuna.create_study(study_name="rec", storage=url)
    StudyMeta(budget=10_000, epochs=6, last_n=2).save(study)
    for i, quality in enumerate([5, 11, 2, 8, 0, 9, 3, 7, 1, 10, 4, 6]):
        curve = [50.0 + quality + 5 * e for e in range(6)]
        study.add_trial(optuna.trial.create_trial(value=min(curve[-2:]),
                                                  user_attrs={"acc": curve, "params": 1000 + i}))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "replay_pruners.py"),
                           "--study", f"{url}:rec", "--rule", "none",
                           "--rule", "asha:rungs=2,eta=3,min_peers=2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = {line.split(" (")[0].split()[0]: line for line in done.stdout.splitlines()
             if line.startswith(("none", "asha"))}
    assert "72" in lines["none"].split()  # 12 trials x 6 epochs, nothing stopped
    # curves that keep their order: trailing ones stop at rung 2, the best (2nd) is kept
    asha = lines["asha"].split()
    assert int(asha[-4]) < 72 and asha[-1] == "yes"


@pytest.mark.slow  # over 20 s: end-to-end
def test_a_resume_with_another_rule_is_allowed_and_says_so(tmp_path, small_data_dir, capsys):
    args = ["search", "--study", "r", "--storage", f"sqlite:///{tmp_path}/r.db", "--space",
            "quick", "--budget", "5000", "--epochs", "2", "--jobs", "1",
            "--data-dir", str(small_data_dir)]
    assert main([*args, "--trials", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--trials", "2", "--prune", "none"]) == 0
    out = capsys.readouterr().out
    assert "stopping rule changed from asha" in out and "to none" in out
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path}/r.db")
    assert study.user_attrs["nas_mnist"]["rule"] == "none"


# -- earlier studies' curves: only where they apply, giving way to the study's own ----------

def test_a_curve_of_another_space_trainer_or_size_band_never_decides_a_rung():
    from nas_mnist.searcher.prior import Prior, PriorCurve
    def curve(**over):
        base = dict(study="s", trial=1, budget=10_000, epochs=15, ema=True, params=8000,
                    accs=(99.0,) * 6, data_checksum="c", space_digest="focused",
                    trainer="hash/train")
        return PriorCurve(**{**base, **over})
    prior = Prior("p", (), (curve(), curve(space_digest="wide"), curve(trainer="bernoulli/fp32"),
                            curve(space_digest=None), curve(budget=30_000)))
    key = dict(data_checksum="c", epochs=15, budget=10_000, ema=True, trainer="hash/train")
    assert len(prior.curves_for(**key, space_digest="focused")) == 1
    assert prior.curves_for(**key, space_digest="other") == []
    rule = _asha(rungs="2", eta=4, min_peers=5)
    strong = [Curve(-1 - i, [99.0, 99.0], 8000, True) for i in range(12)]
    weak_small = Curve(0, [95.0, 95.0], 2000)  # a quarter of their size: out of the band
    decision = rule.decide(weak_small, [], multi_objective=False, prior=strong)
    assert not decision.stop and decision.source == "none"
    weak_near = Curve(0, [95.0, 95.0], 7500)  # within 10 % of their size
    assert rule.decide(weak_near, [], multi_objective=False, prior=strong).stop


def test_only_networks_no_larger_set_the_bar_in_a_single_objective_study():
    """At a 2,000 budget the bars of 1,900-parameter networks stopped every sampled network
    of 800-1,600 at epoch 2: a bigger network learns faster early. Only peers (own or
    earlier) up to 10 % larger judge a trial; smaller ones still do."""
    rule = _asha(rungs="2", eta=4, min_peers=5)
    big = [Curve(i, [98.0, 98.0], 1900, True) for i in range(8)]
    small = Curve(99, [96.0, 96.0], 1200)
    assert not rule.decide(small, big, multi_objective=False).stop
    assert not rule.decide(small, [], multi_objective=False, prior=[
        Curve(-1 - c.number, c.accs, c.n_params, True) for c in big]).stop
    smaller = [Curve(i, [97.0, 97.0], 1000 + i, True) for i in range(8)]
    assert rule.decide(small, big + smaller, multi_objective=False).stop  # judged by these
    assert rule.decide(Curve(99, [96.0, 96.0], 1800), big, multi_objective=False).stop


def test_a_warm_start_known_from_one_seed_is_judged_a_confirmed_one_is_not():
    from nas_mnist.searcher.record import TrialRecord
    assert TrialRecord(warm="s#1 (seed 0, 97.98 %)", warm_seeds=1).judged
    assert not TrialRecord(warm="s#2 (5 seeds, mean 99.50 %)", warm_seeds=5).judged
    assert not TrialRecord(warm="recorded before the seeds were").judged  # as it was then
    assert not TrialRecord(reused=True).judged and TrialRecord().judged


def test_the_prior_weighs_less_as_the_study_gains_its_own_peers():
    from nas_mnist.searcher.stopping import PRIOR_GIVES_WAY_AT, prior_weight
    assert prior_weight(0) == 1.0 and prior_weight(PRIOR_GIVES_WAY_AT) == 0.0
    assert prior_weight(5) > prior_weight(10) > prior_weight(15) > 0
    rule = _asha(rungs="2", eta=4, min_peers=5)
    prior = [Curve(-1 - i, [99.0, 99.0], 8000, True) for i in range(40)]  # a high bar
    own = [Curve(i, [96.0 + i * 0.01, 97.0], 8000) for i in range(PRIOR_GIVES_WAY_AT)]
    me = Curve(99, [97.0, 97.0], 8000)  # the study's best so far at the rung
    assert rule.decide(me, own[:3], multi_objective=False, prior=prior).stop  # prior rules
    late = rule.decide(me, own, multi_objective=False, prior=prior)
    assert not late.stop and late.source == "study"  # the study's own judge it now
