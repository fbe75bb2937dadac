"""Search efficiency: the default sampler (TPE) against random search, same trials, 3 seeds.

Low fidelity so that it runs on a 2-core CPU: the default space and a 10,000-parameter budget,
but 2 epochs on the first 10,000 training images, scored on the first 2,000 test images.
Reports, per sampler and seed, the trials until the first feasible network reaching the
threshold, the share of trials over budget or invalid, and the best score.

    python benchmarks/compare_samplers.py [--trials 30] [--threshold 97.0] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nas_mnist.searcher.record import records  # noqa: E402
from nas_mnist.searcher.study import (SearchSettings, create_or_resume, load_search_data,  # noqa: E402
                                    preflight, run_search)
from nas_mnist.engine.data import write_subset as make_subset  # noqa: E402


def first_hit(study: optuna.Study, threshold: float) -> int | None:
    for t in sorted(study.trials, key=lambda t: t.number):
        if t.state.name == "COMPLETE" and t.values[0] >= threshold:
            return t.number + 1
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--threshold", type=float, default=97.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--out")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = make_subset(Path(tmp) / "data", 10_000, 2_000)
        for sampler in ("tpe", "random"):
            for seed in range(args.seeds):
                settings = SearchSettings.of(
                    study=f"{sampler}{seed}", storage=f"sqlite:///{tmp}/{sampler}{seed}.db",
                    budget=10_000, epochs=2, last_n=1, trials=args.trials, seed=seed,
                    sampler=sampler, data_dir=str(data_dir), prune="none", jobs=1,
                    threads=args.threads)
                data = load_search_data(settings)
                study, _ = create_or_resume(settings, preflight(settings), data)
                run_search(settings, study, data=data)
                kinds = [r.kind for r in records(study)]
                done = [r.value for r in records(study) if r.kind == "complete"]
                row = {"sampler": sampler, "seed": seed, "trials": len(kinds),
                       "first_hit": first_hit(study, args.threshold),
                       "over_budget_or_invalid": sum(k in ("over_budget", "invalid")
                                                     for k in kinds) / len(kinds),
                       "best": max(done) if done else None}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\nthreshold {args.threshold} % (2 epochs, 10k train / 2k test images), "
          f"{args.trials} trials per run")
    print(f"{'sampler':<8} {'seed':>4} {'first hit':>9} {'wasted':>7} {'best %':>7}")
    for r in rows:
        hit = r["first_hit"] if r["first_hit"] is not None else "never"
        best = f"{r['best']:.2f}" if r["best"] is not None else "-"
        print(f"{r['sampler']:<8} {r['seed']:>4} {hit!s:>9} {r['over_budget_or_invalid']:>7.0%} "
              f"{best:>7}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
