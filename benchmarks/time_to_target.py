"""Time to a target: from an empty study with the default settings, how long until the first
trained network under the budget scores >= the target (default 99.4 %)?

Runs `nas-mnist search` as a user would (default space, rule and workers) in a scratch
folder, watches the storage, and stops the search when the target is reached or the time cap
passes. `--warm-start none` is a cold search; with a warm start the line also says when a
network the sampler drew first beat the best warm-started one. Prints and appends one JSON
line per search seed to --out (also: where the CPU time went, per kind of trial).

    python benchmarks/time_to_target.py --seeds 0 1 2 3 4 --warm-start none --cap-min 45
    python benchmarks/time_to_target.py --seeds 0 --warm-start auto --cap-min 20
    python benchmarks/time_to_target.py --seeds 0 --cap-min 30 -- --space wide --data-dir D
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas_mnist.engine.device import cpu_model  # noqa: E402
from nas_mnist.searcher.record import (KIND_ORDER, StudyMeta, records,  # noqa: E402
                                       seed_runs)

POLL_S = 10


def first_hit(study, target: float, budget: int):
    """The first trial (by completion time) under the budget that reached the target."""
    meta = StudyMeta.from_study(study)
    # a trial read between its state and its completion time being stored has no time yet:
    # it is not a hit until it has one (comparing None with a datetime crashed a run)
    hits = [(t.datetime_complete, r) for t, r in zip(study.trials, records(study))
            if r.kind == "complete" and r.value is not None and r.value >= target
            and (r.n_params or 0) <= budget and meta is not None
            and t.datetime_complete is not None]
    return min(hits, key=lambda h: h[0])[1] if hits else None


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


def best_by(study, start: float, minutes: float, budget: int) -> float | None:
    """The best score under the budget among trials complete `minutes` after the start."""
    limit = start + minutes * 60
    scores = [r.value for t, r in zip(study.trials, records(study))
              if r.kind == "complete" and r.value is not None and (r.n_params or 0) <= budget
              and t.datetime_complete is not None and t.datetime_complete.timestamp() <= limit]
    return max(scores, default=None)


def _kind(r) -> str:
    """The record's kind, with the benchmark's own interruption (at the hit or the cap) named
    as such instead of as a failure."""
    return "interrupted_by_benchmark" if r.kind == "failed" and r.interrupted else r.kind


def _minutes_of(t, now: float) -> float:
    """A trial's minutes, an interrupted one's up to its interruption (or `now`)."""
    if t.datetime_start is None:
        return 0.0
    end = t.datetime_complete
    return ((end.timestamp() if end else now) - t.datetime_start.timestamp()) / 60


def cpu_by_kind(study, now: float, digits: int | None = 1) -> dict:
    """CPU minutes per kind of trial (trials run one per worker, one thread each by default),
    and the search's confirmation runs (more seeds of its top trials) as their own kind."""
    out: dict[str, float] = {}
    for t, r in zip(study.trials, records(study)):
        if t.datetime_start is not None:
            out[_kind(r)] = out.get(_kind(r), 0.0) + _minutes_of(t, now)
    confirm = sum(float(run.get("seconds") or 0.0) for held in seed_runs(study).values()
                  for run in held.get("runs", {}).values() if isinstance(run, dict)) / 60
    if confirm:
        out["confirmation_runs"] = confirm
    return out if digits is None else {k: round(v, digits) for k, v in out.items()}


def cpu_share_sampled(study, now: float) -> float | None:
    """The share of the search's CPU (trials and confirmation runs) spent on networks the
    sampler drew (its start-up draws included; warm-started and enqueued ones not); both sums
    unrounded and up to the same `now` (rounded kinds made it 1.004 once)."""
    total = sum(cpu_by_kind(study, now, digits=None).values())
    recs = records(study)
    drawn = {r.number for r in recs if r.origin is None}
    sampled = sum(_minutes_of(t, now) for t, r in zip(study.trials, recs)
                  if r.number in drawn and t.datetime_start is not None)
    sampled += sum(float(run.get("seconds") or 0.0) for number, held in seed_runs(study).items()
                   if number in drawn for run in held.get("runs", {}).values()
                   if isinstance(run, dict)) / 60  # their confirmation runs
    return round(sampled / total, 3) if total else None


def first_sampled_beat(study, start: float, budget: int):
    """Minutes until a network the sampler drew beat every warm-started one (None: never)."""
    recs = list(zip(study.trials, records(study)))
    warm = [r.value for _, r in recs if r.warm and r.kind == "complete" and r.value is not None]
    if not warm:
        return None
    best = max(warm)
    beats = [t.datetime_complete.timestamp() for t, r in recs
             if not r.origin and r.kind == "complete" and r.value is not None
             and r.value > best and (r.n_params or 0) <= budget]
    return round((min(beats) - start) / 60, 1) if beats else None


def run_one(seed: int, args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"ttt-{seed}-"))
    url = f"sqlite:///{folder}/t.db"
    cmd = [sys.executable, "-m", "nas_mnist", "search", "--study", "t", "--storage", url,
           "--budget", str(args.budget), "--trials", "1000", "--seed", str(seed),
           "--timeout", str(args.cap_min * 60), "--warm-start", *args.warm_start, *args.extra]
    start, code_at_start = time.time(), commit()  # the code the search runs
    log = open(folder / "search.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    hit, study = None, None
    try:
        while proc.poll() is None and time.time() - start < args.cap_min * 60 + 60:
            time.sleep(POLL_S)
            try:
                study = optuna.load_study(study_name="t", storage=url)
            except (KeyError, Exception):  # not created yet
                continue
            hit = first_hit(study, args.target, args.budget)
            if hit is not None and args.stop_at_hit:
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the search leaves its storage consistent
            proc.wait(timeout=120)
    elapsed = time.time() - start
    study = optuna.load_study(study_name="t", storage=url)
    now = time.time()  # one instant for every figure below
    hit = first_hit(study, args.target, args.budget)
    recs = records(study)
    kinds = {k: sum(r.kind == k for r in recs) for k in KIND_ORDER if any(r.kind == k for r in recs)}
    trained = [r for r in recs if r.trained]
    hit_minutes = None
    if hit is not None:
        done = study.trials[hit.number].datetime_complete
        hit_minutes = round((done.timestamp() - start) / 60, 1) if done else None
    result = {
        "seed": seed, "warm_start": " ".join(args.warm_start), "target": args.target,
        "budget": args.budget, "reached": hit is not None,
        "minutes": hit_minutes if hit is not None else args.cap_min,
        "wall_minutes": round(elapsed / 60, 1),
        "trained_epochs": sum(len(r.accs) for r in recs),
        "epochs_per_trained": round(sum(len(r.accs) for r in trained) / len(trained), 2)
                              if trained else None,
        "hit_origin": (hit.origin or "sampled") if hit else None,
        "best_at_30": best_by(study, start, 30, args.budget),
        "best_at_60": best_by(study, start, 60, args.budget) if args.cap_min >= 60 else None,
        "sampled_beat_warm_min": first_sampled_beat(study, start, args.budget),
        "cpu_min_by_kind": cpu_by_kind(study, now),
        "cpu_share_sampled": cpu_share_sampled(study, now),
        "trial": hit.number if hit else None,
        "score": hit.value if hit else max((r.value for r in recs if r.kind == "complete"
                                            and (r.n_params or 0) <= args.budget), default=None),
        "params": hit.n_params if hit else None,
        "trials": kinds, "cap_min": args.cap_min, "cpu": cpu_model(),
        "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "commit": code_at_start,
        "other_load": args.note,
        "study": folder.name,  # a scratch folder under the system's temporary directory
        "command": " ".join(["nas-mnist", *cmd[3:]]).replace(str(folder), "SCRATCH"),
    }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="search seeds")
    parser.add_argument("--target", type=float, default=99.4, help="min-last-3 %% (99.4)")
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--cap-min", type=float, default=40, help="time cap per search")
    parser.add_argument("--warm-start", nargs="+", default=["none"],
                        help="the search's --warm-start (default none: a cold search)")
    parser.add_argument("--stop-at-hit", action=argparse.BooleanOptionalAction, default=True,
                        help="stop the search at the first hit (default) or run to the cap")
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    parser.add_argument("--out", default=str(ROOT / "studies" / "time-to-target.jsonl"))
    parser.add_argument("extra", nargs="*", help="more search flags, after --")
    args = parser.parse_args(argv)
    for seed in args.seeds:
        result = run_one(seed, args)
        print(json.dumps(result), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
