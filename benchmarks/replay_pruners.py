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
    python benchmarks/replay_pruners.py --prior    # first rungs from earlier studies' curves
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
PRIOR_CHECK = tuple(f"sqlite:///studies/{n}.db:{n}" for n in
                    ("mnist-10k-v3", "mnist-4k-default", "mnist-4k", "mnist-10k", "mnist-10k-v1",
                     "mnist-10k-mcu"))


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


def replay_prior(spec: str, prior_file: str | None = None, good: float = 99.3) -> None:
    """The default rule with and without earlier studies' curves at its first rungs, on one
    study, with the prior built from the *other* studies (this one's curves left out): epochs
    and CPU seconds trained, and every network that ended >= `good` that the rule stops."""
    from nas_mnist.searcher.prior import PACKAGED_PRIOR, load_prior
    url, name = spec.rsplit(":", 1)
    study = optuna.load_study(study_name=name, storage=url)
    meta = StudyMeta.from_study(study)
    recs = [r for r in records(study) if r.accs]
    prior = load_prior(prior_file or PACKAGED_PRIOR)
    others = [c for c in prior.curves if c.study != name]
    rule = make_rule("asha").fit(meta.epochs)
    cost = {r.number: (sorted(r.epoch_seconds)[len(r.epoch_seconds) // 2] if r.epoch_seconds
                       else (r.seconds or 0) / len(r.accs)) for r in recs}
    print(f"\n{name}: {len(recs)} trained trials, {rule.describe()}, prior curves from "
          f"{sorted({c.study for c in others})} (this study's own left out)")
    print(f"{'rungs':<34} {'epochs':>7} {'CPU min':>8} {'stopped':>8}  stopped >= {good} %")
    for label, use_prior in (("own peers only (free pass)", False),
                             ("own peers + prior curves", True)):
        seen, epochs, seconds, stopped, lost = [], 0, 0.0, 0, []
        for r in recs:
            ema = bool((r.recipe or {}).get("ema"))
            pool = [Curve(-1 - i, c.accs, c.params, True) for i, c in enumerate(others)
                    if use_prior and c.data_checksum == meta.data_checksum
                    and c.epochs == meta.epochs and c.ema == ema
                    and meta.budget / 2 <= c.budget <= meta.budget * 2]
            stop_at = None
            for e in range(1, min(len(r.accs), meta.epochs - 1) + 1):
                if rule.decides_at(e) and rule.should_stop(
                        Curve(r.number, r.accs[:e], r.n_params or 0), seen,
                        multi_objective=False, prior=pool):
                    stop_at = e
                    break
            run = stop_at or (meta.epochs if r.kind == "complete" else len(r.accs))
            epochs += run
            seconds += run * cost[r.number]
            seen.append(Curve(r.number, r.accs[:run], r.n_params or 0, run == meta.epochs))
            if stop_at is not None:
                stopped += 1
                if r.kind == "complete" and (r.value or 0) >= good:
                    lost.append(f"#{r.number} ({r.value:.2f})")
        print(f"{label:<34} {epochs:>7} {seconds / 60:>8.1f} {stopped:>8}  "
              f"{', '.join(lost) or 'none'}")


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
        for spec in args.study or PRIOR_CHECK:
            replay_prior(spec)
        return 0
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
