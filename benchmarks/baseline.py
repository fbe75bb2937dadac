"""The default search beside plain Optuna, for the same time on the same machine.

Two searches run side by side, one one-thread worker each, from empty studies in a scratch
folder (so `--warm-start auto` sees the packaged prior only, as on a fresh machine):
- `default`: `nas-mnist search --budget B` with every default (focused space with its widths
  scaled for B, warm start, size floor, cost limit, successive halving with earlier curves);
- `optuna`: TPE on the `wide` space as written (widths not scaled) with the budget alone: no
  warm start, no stopping rule, no size floor, no cost limit. Only its precision is the
  default's, `auto` (bf16 where the CPU computes it natively, else fp32): the wide file's fixed
  bf16 is emulated on an AVX2-only CPU, 4x slower a step, which measures the CPU, not the search.
  Each line records what each arm trained in (`precisions`); a pair whose arms differ there
  (lines made before 2026-12-05 14:00 UTC on such a CPU) is kept in the file and left out of
  the table.
Both stop after --minutes of wall time (a trial still running is interrupted, SIGTERM: the
study stays consistent); one JSON line per arm is appended to --out with the best score under
the budget among trials complete by 15, 30 and 60 minutes (null: past the run's length), the
same for the networks the sampler drew (`sampled_best_M`: the default arm's best is often a
known network reused at minute 0), the minutes to the target (null: not reached) and what was
trained.

    python benchmarks/baseline.py --data mnist --budget 4000 --seeds 0 1 2 --minutes 60
    python benchmarks/baseline.py --data fashion --budget 10000 --seeds 0 --minutes 30
    python benchmarks/baseline.py --table      # the matrix so far, medians per cell and mark
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas_mnist.engine.device import cpu_model, native_bf16  # noqa: E402
from nas_mnist.searcher.record import REFUSALS, records  # noqa: E402
from nas_mnist.searcher.space import SPACE_DIR  # noqa: E402

DATA = {"mnist": None, "fashion": "/usr/share/datasets/fashion-mnist"}  # None: packaged
# What "good" is per cell (min of the last 3 epochs, test set): near the best seen or
# published at that size.
TARGETS = {("mnist", 2000): 99.0, ("mnist", 4000): 99.2, ("mnist", 10000): 99.4,
           ("mnist", 20000): 99.5, ("fashion", 10000): 91.0}
POLL_S = 15
NOT_RECORDED = object()  # a line older than its sampled_best_M fields
MARKS_MIN = (15, 30, 60)


def plain_space(folder: Path) -> Path:
    """The wide space as written, its widths not scaled with the budget, in the default's
    precision (`auto`)."""
    text = (SPACE_DIR / "wide.yaml").read_text(encoding="utf-8")
    auto = r"\1 auto  # the default's (benchmarks/baseline.py)"
    lines = [re.sub(r"^(\s+precision:).*", auto, line)
             for line in text.splitlines() if not line.startswith("scale_widths:")]
    path = folder / "plain.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def arm_command(arm: str, args, seed: int, folder: Path) -> list[str]:
    cmd = [sys.executable, "-m", "nas_mnist", "search", "--study", arm, "--storage",
           f"sqlite:///{folder}/{arm}.db", "--budget", str(args.budget), "--seed", str(seed),
           "--trials", "1000", "--timeout", str(args.minutes * 60), "--jobs", "1",
           "--threads", "1"]
    if DATA[args.data]:
        cmd += ["--data-dir", DATA[args.data]]
    if arm == "optuna":
        cmd += ["--space", str(plain_space(folder)), "--warm-start", "none", "--prune", "none",
                "--min-params", "0", "--max-activations", "0"]
    return cmd


def outcome(url: str, arm: str, start: float, budget: int, target: float) -> dict:
    study = optuna.load_study(study_name=arm, storage=url)
    done = [(t.datetime_complete.timestamp() - start, r) for t, r in
            zip(study.trials, records(study))
            if r.kind == "complete" and r.value is not None and (r.n_params or 0) <= budget
            and t.datetime_complete is not None]
    hits = [m for m, r in done if r.value >= target]
    recs = records(study)

    def best_by_mark(runs):
        return {m: max((r.value for s, r in runs if s <= m * 60), default=None)
                for m in MARKS_MIN}
    return {"best": best_by_mark(done),
            # what the sampler's own draws reached (no warm start, nothing enqueued)
            "sampled_best": best_by_mark([(s, r) for s, r in done if r.origin is None]),
            "minutes_to_target": round(min(hits) / 60, 1) if hits else None,
            "trained": sum(r.trained for r in recs),
            "refused": sum(r.kind in REFUSALS for r in recs),
            "best_trial": max(((r.value, r.number, r.n_params, r.origin or "sampled")
                               for _, r in done), default=None),
            # what its networks trained in (a recipe's "auto" resolved on this CPU)
            "precision": "+".join(sorted({r.precision for r in recs if r.precision})) or None}


def run_pair(seed: int, args) -> list[dict]:
    folder = Path(tempfile.mkdtemp(prefix=f"baseline-{args.data}-{args.budget}-{seed}-"))
    start = time.time()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    procs = {}
    for arm in ("default", "optuna"):
        log = open(folder / f"{arm}.log", "w")
        procs[arm] = subprocess.Popen(arm_command(arm, args, seed, folder), cwd=folder,
                                      stdout=log, stderr=subprocess.STDOUT)
    try:  # the same wall time for both: a trial running at the end is interrupted
        while any(p.poll() is None for p in procs.values()):
            if time.time() - start > args.minutes * 60:
                break
            time.sleep(min(POLL_S, max(0.5, start + args.minutes * 60 - time.time())))
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # the search leaves its storage consistent
                p.wait(timeout=300)
    target = args.target or TARGETS.get((args.data, args.budget), 99.0)
    outcomes = {arm: outcome(f"sqlite:///{folder}/{arm}.db", arm, start, args.budget, target)
                for arm in ("default", "optuna")}
    precisions = {arm: got["precision"] for arm, got in outcomes.items()}
    return [{"data": args.data, "budget": args.budget, "arm": arm, "seed": seed,
             **{f"best_{m}": got["best"][m] if m <= args.minutes else None for m in MARKS_MIN},
             **{f"sampled_best_{m}": got["sampled_best"][m] if m <= args.minutes else None
                for m in MARKS_MIN},
             "target": target, "minutes_to_target": got["minutes_to_target"],
             "trained": got["trained"], "refused": got["refused"],
             "best_trial": got["best_trial"], "minutes": args.minutes,
             "exit": procs[arm].returncode, "cpu": cpu_model(), "cores": os.cpu_count(),
             "native_bf16": native_bf16(torch.device("cpu")), "precisions": precisions,
             "date": time.strftime("%Y-%m-%d"), "commit": commit, "other_load": args.note,
             "command": " ".join(["nas-mnist", *arm_command(arm, args, seed, folder)[3:]])
                           .replace(str(folder), "SCRATCH")}
            for arm, got in outcomes.items()]


def _median(values: list[float | None]) -> float | None:
    """The median, a run with no network complete by the mark counting as the lowest."""
    ranked = sorted(values, key=lambda v: -math.inf if v is None else v)
    if not ranked:
        return None
    mid = len(ranked) // 2
    if len(ranked) % 2:
        return ranked[mid]
    low, high = ranked[mid - 1], ranked[mid]
    return None if low is None or high is None else round((low + high) / 2, 2)


def unequal(line: dict) -> bool:
    """Whether the line's two arms trained in different precisions (the wide space's fixed
    bf16, emulated on an AVX2-only CPU, against the default's fp32 there)."""
    return len(set((line.get("precisions") or {}).values())) > 1


def table(path: Path) -> str:
    """The matrix as Markdown: per cell and mark, each arm's best per search seed and their
    median, and what the default arm's own draws reached ("n/r": not recorded, an older
    line). A seed measured twice counts its later line (a newer commit); a pair whose arms
    trained in different precisions is left out."""
    latest = {}
    for text in Path(path).read_text(encoding="utf-8").splitlines():
        if text.strip() and not unequal(line := json.loads(text)):
            latest[(line["data"], line["budget"], line["arm"], line["seed"])] = line
    cells = sorted({(data, budget) for data, budget, _, _ in latest})
    rows = ["| cell | mark | seeds | default: per seed | default: median | optuna: per seed "
            "| optuna: median | ahead | default's own draws: per seed |",
            "|---|---:|---:|---|---:|---|---:|---|---|"]

    def shown(v):
        return "-" if v is None else "n/r" if v is NOT_RECORDED else f"{v:.2f}"
    for data, budget in cells:
        for mark in MARKS_MIN:
            runs = {arm: {seed: line for (d, b, a, seed), line in sorted(latest.items())
                          if (d, b, a) == (data, budget, arm) and line["minutes"] >= mark}
                    for arm in ("default", "optuna")}
            seeds = sorted(set(runs["default"]) & set(runs["optuna"]))
            if not seeds:
                continue
            got = {arm: [runs[arm][s][f"best_{mark}"] for s in seeds] for arm in runs}
            own = [runs["default"][s].get(f"sampled_best_{mark}", NOT_RECORDED) for s in seeds]
            med = {arm: _median(got[arm]) for arm in got}
            ahead = ("default" if (med["default"] or 0) > (med["optuna"] or 0) else
                     "optuna" if (med["optuna"] or 0) > (med["default"] or 0) else "tie")
            rows.append(f"| {data} {budget:,} | {mark} min "
                        f"| {len(seeds)} ({', '.join(map(str, seeds))}) "
                        f"| {' / '.join(map(shown, got['default']))} | {shown(med['default'])} "
                        f"| {' / '.join(map(shown, got['optuna']))} | {shown(med['optuna'])} "
                        f"| {ahead} | {' / '.join(map(shown, own))} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATA), default="mnist")
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--target", type=float, help="default: per cell (TARGETS)")
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    parser.add_argument("--out", default=str(ROOT / "studies" / "baseline.jsonl"))
    parser.add_argument("--table", action="store_true",
                        help="print the matrix of --out as a Markdown table (medians per cell "
                             "and mark) and run nothing")
    args = parser.parse_args(argv)
    if args.table:
        print(table(Path(args.out)))
        return 0
    if DATA[args.data] and not Path(DATA[args.data]).is_dir():
        parser.error(f"{args.data}: {DATA[args.data]} is missing (Debian: apt-get install "
                     f"dataset-fashion-mnist)")
    for seed in args.seeds:
        for line in run_pair(seed, args):
            print(json.dumps(line), flush=True)
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
