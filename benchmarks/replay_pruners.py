"""Replay recorded learning curves through stopping rules: what would each rule have saved?

Takes the trained trials of shipped studies in their recorded order (trial number) and, for
each rule, replays them as one worker would have met them: a trial sees the curves of the
earlier trials as that rule left them (cut where it stopped them). Prints per rule the epochs
trained, the saving against training every network to the end, and how many of the final top
5 (by full-fidelity score) survive. Runs in seconds; it is what chose the defaults.

A trial that the old rule stopped early has no final score; if a rule lets it run past its
recorded curve it is charged the full epochs (pessimistic for the rule being replayed).

    python benchmarks/replay_pruners.py                      # the shipped studies
    python benchmarks/replay_pruners.py --study sqlite:///studies/x.db:x --multi-objective
    python benchmarks/replay_pruners.py --prior    # every shipped study, as a search runs now
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402

from nas_mnist.searcher.record import StudyMeta, records  # noqa: E402
from nas_mnist.searcher.stopping import Curve, make_rule, StopRule  # noqa: E402

SHIPPED = ("sqlite:///studies/mnist-10k.db:mnist-10k", "sqlite:///studies/mnist-10k-v1.db:mnist-10k-v1")
TOP = 5


@dataclass(frozen=True)
class Replay:
    rule: str
    trained_epochs: int
    full_epochs: int
    top_survived: int
    top: int
    best_kept: bool  # the final best of all survives

    @property
    def saving(self) -> float:
        return self.full_epochs / max(1, self.trained_epochs)


def load_curves(spec: str) -> tuple[list[Curve], int, int]:
    """Trained trials of `URL:STUDY` in recorded order, the epochs of a full run, last-N."""
    url, name = spec.rsplit(":", 1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=url)
    meta = StudyMeta.from_study(study)
    curves = [Curve(r.number, tuple(r.accs), r.n_params or 0, len(r.accs) == meta.epochs)
              for r in records(study) if r.accs]
    return curves, meta.epochs, meta.last_n


def replay(rule: StopRule, curves: list[Curve], epochs: int, last_n: int, *,
           multi_objective: bool) -> Replay:
    seen: list[Curve] = []
    trained = 0
    survivors = set()
    for c in curves:
        stop_at = None
        for e in range(1, epochs):
            if e > len(c.accs):
                break  # the recorded curve ends here: charge the rest below
            if rule.decides_at(e) and rule.should_stop(
                    Curve(c.number, c.accs[:e], c.n_params), seen,
                    multi_objective=multi_objective):
                stop_at = e
                break
        if stop_at is None:
            trained += epochs
            survivors.add(c.number)
            seen.append(c)
        else:
            trained += stop_at
            seen.append(Curve(c.number, c.accs[:stop_at], c.n_params))
    complete = [c for c in curves if c.complete]
    top = sorted(complete, key=lambda c: -min(c.accs[-last_n:]))[:TOP]
    return Replay(rule.describe(), trained, epochs * len(curves),
                  sum(c.number in survivors for c in top), len(top),
                  bool(top) and top[0].number in survivors)


def replay_prior(spec: str, prior_file: str | None = None) -> dict:
    """The default rule as a search runs it now (its own peers, the earlier studies' curves
    that apply - same data, space, trainer, run length, recipe family, nearby budget, a size
    within 2x, weighed down as the study's own grow - and the far-behind check), replayed on
    one study in trial order with the prior built from the *other* studies. Prints and returns
    the epochs and CPU minutes trained against training every network to the end, and every
    network of the study's top quarter (by its final score) that the rule stops."""
    from nas_mnist.searcher.prior import PACKAGED_PRIOR, Prior, load_prior
    from nas_mnist.searcher.record import trainer_key
    url, name = spec.rsplit(":", 1)
    study = optuna.load_study(study_name=name, storage=url)
    meta = StudyMeta.from_study(study)
    recs = [r for r in records(study) if r.accs]
    prior = load_prior(prior_file or PACKAGED_PRIOR)
    others = Prior(prior.source, (), tuple(c for c in prior.curves if c.study != name))
    rule = make_rule("asha").fit(meta.epochs)
    cost = {r.number: (sorted(r.epoch_seconds)[len(r.epoch_seconds) // 2] if r.epoch_seconds
                       else (r.seconds or 0) / len(r.accs)) for r in recs}
    complete = sorted((r for r in recs if r.kind == "complete" and r.value is not None),
                      key=lambda r: -r.value)
    top = {r.number for r in complete[:max(1, len(complete) // 4)]}
    seen, epochs, seconds, stopped, lost, own, full, curves = [], 0, 0.0, 0, [], [], 0, 0
    for r in recs:
        ema = bool((r.recipe or {}).get("ema"))
        pool = [Curve(-1 - i, c.accs, c.params, True) for i, c in enumerate(others.curves_for(
            data_checksum=meta.data_checksum, epochs=meta.epochs, budget=meta.budget, ema=ema,
            space_digest=meta.space_digest, trainer=trainer_key(meta)))]
        curves = max(curves, len(pool))
        stop_at, source = None, None
        for e in range(1, min(len(r.accs), meta.epochs - 1) + 1) if r.judged else ():
            decision = rule.decide(Curve(r.number, r.accs[:e], r.n_params or 0), seen,
                                   multi_objective=len(meta.directions) > 1, prior=pool) \
                if rule.decides_at(e) else None
            if decision is not None and decision.stop:
                stop_at, source = e, decision.source
                break
        run = stop_at or (meta.epochs if r.kind == "complete" else len(r.accs))
        full += meta.epochs if r.kind == "complete" else len(r.accs)
        epochs += run
        seconds += run * cost[r.number]
        seen.append(Curve(r.number, r.accs[:run], r.n_params or 0, run == meta.epochs))
        if stop_at is not None:
            stopped += 1
            if r.number in top:
                (lost if source == "study+prior" else own).append(
                    f"#{r.number} ({r.value:.2f}, {source})")
    print(f"{name:<20} {len(recs):>7} {curves:>7} {full:>7} {epochs:>7} "
          f"{seconds / 60:>8.1f} {stopped:>8}  {', '.join(lost) or 'none'}"
          + (f"; by its own peers: {', '.join(own)}" if own else ""))
    return {"study": name, "trained": len(recs), "epochs_full": full, "epochs": epochs,
            "stopped": stopped, "top_quarter_stopped": lost, "top_quarter_own": own}


def all_studies() -> list[str]:
    """Every shipped study (studies/*.db), as URL:NAME."""
    root = Path(__file__).resolve().parent.parent / "studies"
    out = []
    for db in sorted(root.glob("*.db")):
        for summary in optuna.get_all_study_summaries(f"sqlite:///{db}",
                                                      include_best_trial=False):
            out.append(f"sqlite:///{db}:{summary.study_name}")
    return out


def rank_correlation(curves: list[Curve], epoch: int, last_n: int) -> float:
    """Spearman's rho between the accuracy at `epoch` and the final score (complete trials)."""
    done = [c for c in curves if c.complete]
    if len(done) < 3:
        return float("nan")

    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        for rank, i in enumerate(order):
            out[i] = float(rank)
        return out

    a = ranks([c.accs[epoch - 1] for c in done])
    b = ranks([min(c.accs[-last_n:]) for c in done])
    n = len(done)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(a, b)) / (n * (n * n - 1))


def candidate_rules(epochs: int) -> list[StopRule]:
    rules = [make_rule("none").fit(epochs), make_rule("percentile").fit(epochs)]
    rung_sets = ["2", "3", "2,6", "3,9", "3,6,9", "5,10"]
    for rungs, eta, min_peers in itertools.product(rung_sets, (2, 3, 4), (3, 5, 8)):
        if all(int(r) < epochs for r in rungs.split(",")):
            rules.append(make_rule("asha", {"rungs": rungs, "eta": str(eta),
                                            "min_peers": str(min_peers)}).fit(epochs))
    return rules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", action="append", metavar="URL:NAME",
                        help="study to replay (default: the shipped mnist-10k and mnist-10k-v1)")
    parser.add_argument("--multi-objective", action="store_true",
                        help="rank by fronts of (accuracy, parameters), as in score,params studies")
    parser.add_argument("--rule", action="append", metavar="NAME[:k=v,...]",
                        help="replay only these rules, e.g. asha:rungs=3+9,eta=3")
    parser.add_argument("--prior", action="store_true",
                        help="replay the default rule with and without earlier studies' curves "
                             "at the first rungs (leave-one-study-out) on every shipped study")
    args = parser.parse_args(argv)
    if args.prior:
        print(f"{'study':<20} {'trained':>7} {'curves':>7} {'full':>7} {'epochs':>7} "
              f"{'CPU min':>8} {'stopped':>8}  top-quarter networks stopped with earlier curves")
        results = [replay_prior(spec) for spec in args.study or all_studies()]
        lost = sum(len(r["top_quarter_stopped"]) for r in results)
        full = sum(r["epochs_full"] for r in results)
        done = sum(r["epochs"] for r in results)
        print(f"\n{len(results)} studies: {done:,} of {full:,} epochs trained "
              f"({1 - done / full:.0%} saved); {lost} top-quarter networks stopped where "
              f"earlier curves took part, "
              f"{sum(len(r['top_quarter_own']) for r in results)} by the study's own peers")
        return 1 if lost else 0
    for spec in args.study or SHIPPED:
        curves, epochs, last_n = load_curves(spec)
        print(f"\n{spec.rsplit(':', 1)[1]}: {len(curves)} trained trials of {epochs} epochs; "
              f"rank correlation of epoch 3 with the final score: "
              f"{rank_correlation(curves, 3, last_n):.2f}"
              + (" (multi-objective ranking)" if args.multi_objective else ""))
        rules = ([_parse_rule(r, epochs) for r in args.rule] if args.rule
                 else candidate_rules(epochs))
        print(f"{'rule':<50} {'epochs':>7} {'saving':>7} {'top-5 kept':>10} {'best kept':>9}")
        for rule in rules:
            r = replay(rule, curves, epochs, last_n, multi_objective=args.multi_objective)
            print(f"{r.rule:<50} {r.trained_epochs:>7} {r.saving:>6.2f}x "
                  f"{r.top_survived:>8}/{r.top} {'yes' if r.best_kept else 'no':>9}")
    return 0


def _parse_rule(text: str, epochs: int) -> StopRule:
    name, _, opts = text.partition(":")
    options = dict(kv.split("=", 1) for kv in opts.split(",") if kv) if opts else {}
    return make_rule(name, options).fit(epochs)


if __name__ == "__main__":
    sys.exit(main())
