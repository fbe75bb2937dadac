"""The README's study table, from the stored studies: running time, what was trained, refused
and stopped, the epochs the stopping rule saved, and the best network (the sampler's own and,
if better, an enqueued one, labelled).

    python benchmarks/study_table.py mnist-10k-v3 mnist-4k mnist-4k-default
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas_mnist.results.ranking import feasible, study_meta  # noqa: E402
from nas_mnist.results.report import active_minutes  # noqa: E402
from nas_mnist.results.summary import epochs_saved  # noqa: E402
from nas_mnist.searcher.record import REFUSALS, count_kinds  # noqa: E402


def row(name: str) -> str:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{ROOT}/studies/{name}.db")
    meta = study_meta(study)
    spans = [(t.datetime_start.timestamp(), t.datetime_complete.timestamp())
             for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    minutes = max(active_minutes(spans), default=0.0)
    kinds = count_kinds(study)
    stopped, _, trained_epochs = epochs_saved(study)
    refused = sum(kinds.get(k, 0) for k in REFUSALS)
    ranked = feasible(study)
    own = next((r for r in ranked if not r.was_enqueued), None)
    best = [own] + ([ranked[0]] if ranked and ranked[0].was_enqueued else [])
    best_text = "; ".join(
        f"trial {r.number}{' (enqueued)' if r.was_enqueued else ''}: {r.value:.2f} %, "
        f"{r.n_params:,} params, {(r.macs or 0) / 1e6:.2f} M MACs" for r in best if r)
    n_trained = kinds.get("complete", 0) + kinds.get("early_stopped", 0)
    total = stopped + trained_epochs
    return (f"| `{name}` ({meta.space} space) | {minutes:.0f} min | {n_trained} "
            f"({kinds.get('complete', 0)} + {kinds.get('early_stopped', 0)}) | {refused} | "
            f"{trained_epochs} | {stopped} of {total} ({stopped / max(1, total):.0%}) | "
            f"{best_text} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", help="study names under studies/")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print("| study | running time | trained (complete + stopped early) | refused | "
          "epochs trained | saved by asha | best so far (min-last-3 test, seed 0) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in args.studies:
        print(row(name))


if __name__ == "__main__":
    main()
