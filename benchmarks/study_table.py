"""The study table of studies/README.md, from the stored studies: time in trials and in the search's
confirmation runs, what was trained, refused and stopped, the epochs the stopping rule saved,
and the best network by its mean over the seeds run (the sampler's own and, if better, a
warm-started or enqueued one, labelled).

    python benchmarks/study_table.py mnist-10k-v3 mnist-4k mnist-4k-default
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas_mnist.results.report import active_minutes  # noqa: E402
from nas_mnist.results.summary import epochs_saved  # noqa: E402
from nas_mnist.results.view import StudyView  # noqa: E402
from nas_mnist.searcher.record import REFUSALS, count_kinds  # noqa: E402


def _best(r) -> str:
    label = {"warm": " (warm start)", "enqueued": " (enqueued)"}.get(r.origin, "")
    seeds = len(r.scores)
    score = (f"{r.mean_score:.2f} % on {seeds} seeds (worst {r.worst_score:.2f})" if seeds > 1
             else f"{r.value:.2f} % (seed 0)")
    return (f"trial {r.number}{label}: {score}, {r.n_params:,} params, "
            f"{(r.macs or 0) / 1e6:.2f} M MACs")


def row(name: str) -> str:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{ROOT}/studies/{name}.db")
    view = StudyView.read(study)
    minutes = max(active_minutes(list(view.times.values())), default=0.0)
    confirm_min = sum(view.confirm_seconds) / 60
    kinds = count_kinds(study)
    stopped, _, trained_epochs = epochs_saved(study)
    refused = sum(kinds.get(k, 0) for k in REFUSALS)
    ranked = view.feasible
    own = next((r for r in ranked if r.origin is None), None)
    best = [own] + ([ranked[0]] if ranked and ranked[0].origin is not None else [])
    n_trained = kinds.get("complete", 0) + kinds.get("early_stopped", 0)
    total = stopped + trained_epochs
    return (f"| `{name}` ({view.meta.space} space) | {minutes:.0f} min | "
            f"{len(view.confirm_seconds)} ({confirm_min:.0f} min) | {n_trained} "
            f"({kinds.get('complete', 0)} + {kinds.get('early_stopped', 0)}) | {refused} | "
            f"{trained_epochs} | {stopped} of {total} ({stopped / max(1, total):.0%}) | "
            f"{'; '.join(_best(r) for r in best if r)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", help="study names under studies/")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print("| study | time in trials | confirmation runs (time) | trained (complete + stopped "
          "early) | refused | epochs trained | saved by asha | best (the sampler's own, and a "
          "warm-started or enqueued one if it ranks first; min-last-3 test) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in args.studies:
        print(row(name))


if __name__ == "__main__":
    main()
