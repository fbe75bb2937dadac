"""Time to a target: from an empty study with the default settings (no --enqueue), how long
until the first trained network under the budget scores >= the target (default 99.4 %)?

Runs `nas-mnist search` as a user would (default space, rule and workers) in a scratch
folder, watches the storage, and stops the search when the target is reached or the time cap
passes. Prints and appends one JSON line per search seed to --out.

    python benchmarks/time_to_target.py --seeds 0 1 --cap-min 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas_mnist.search.record import StudyMeta, records  # noqa: E402

POLL_S = 10


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def first_hit(study, target: float, budget: int):
    """The first trial (by completion time) under the budget that reached the target."""
    meta = StudyMeta.from_study(study)
    hits = [(t.datetime_complete, r) for t, r in zip(study.trials, records(study))
            if r.kind == "complete" and r.value is not None and r.value >= target
            and (r.n_params or 0) <= budget and meta is not None]
    return min(hits, key=lambda h: h[0])[1] if hits else None


def run_one(seed: int, args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"ttt-{seed}-"))
    url = f"sqlite:///{folder}/t.db"
    cmd = [sys.executable, "-m", "nas_mnist", "search", "--study", "t", "--storage", url,
           "--budget", str(args.budget), "--trials", "1000", "--seed", str(seed),
           "--timeout", str(args.cap_min * 60), *args.extra]
    start = time.time()
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
            if hit is not None:
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the search leaves its storage consistent
            proc.wait(timeout=120)
    elapsed = time.time() - start
    study = optuna.load_study(study_name="t", storage=url)
    recs = records(study)
    kinds = {k: sum(r.kind == k for r in recs) for k in
             ("complete", "early_stopped", "over_budget", "invalid", "failed")}
    result = {
        "seed": seed, "target": args.target, "budget": args.budget,
        "reached": hit is not None,
        "minutes": round(elapsed / 60, 1),
        "trained_epochs": sum(len(r.accs) for r in recs),
        "trial": hit.number if hit else None,
        "score": hit.value if hit else max((r.value for r in recs if r.kind == "complete"
                                            and (r.n_params or 0) <= args.budget), default=None),
        "params": hit.n_params if hit else None,
        "trials": kinds, "cap_min": args.cap_min, "cpu": cpu_model(),
        "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
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
