"""The frontier as data: studies/frontier.json (and studies/frontier.html, the figure) from what
is stored - the packaged prior's networks measured on 5 or more seeds, their validation-split
runs and study CPU time, and the public designs re-trained here (the prior's `public`, built by
benchmarks/build_prior.py from studies/confirmations and benchmarks/results), and each public
design beside the front's best network of at most its size. Nothing is trained; a budget with
no measured network is listed as missing. Each point is written as a packaged config (nas_mnist/configs/frontNNNN.json) unless one exists.

    python benchmarks/frontier.py
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas_mnist.api.network import count  # noqa: E402
from nas_mnist.files import write_text  # noqa: E402
from nas_mnist.api.space import space_shares  # noqa: E402
from nas_mnist.results.frontier import (BUDGETS, FrontierError, Point,  # noqa: E402
                                        beats, best_per_budget, check_budgets, check_max_ram,
                                        front)
from nas_mnist.results.report import frontier_figure  # noqa: E402
from nas_mnist.results.view import StudyView  # noqa: E402
from nas_mnist.searcher.prior import PACKAGED_PRIOR  # noqa: E402
from nas_mnist.searcher.record import records  # noqa: E402

CONFIGS = ROOT / "nas_mnist" / "configs"
CONFIRMATIONS = ROOT / "studies" / "confirmations"
MIN_SEEDS = 5
MAX_RAM = 2048  # the RAM-class point: int8 activations of at most this many bytes


def _candidates() -> list[Point]:
    prior = json.loads(PACKAGED_PRIOR.read_text())
    return [Point(f"{c['study']}#{c['trial']}", c["params"], tuple(c["scores"]), extra=c)
            for c in prior["configs"] if len(c["scores"]) >= MIN_SEEDS]


def _val_mean(arch: dict) -> float | None:
    for path in sorted(CONFIRMATIONS.glob("*val*.json")):
        doc = json.loads(path.read_text())
        if doc.get("arch") == arch and doc.get("eval_split") == "val":
            return round(sum(doc["mins"]) / len(doc["mins"]), 2)
    return None


def _study_hours(study: str) -> dict:
    """The whole study's time in trials and its confirmation runs, summed over workers:
    {"cpu_hours": h} (one thread each), or {"cpu_hours": None, "gpu_hours": h} where the
    study trained on a GPU (its workers sharing it)."""
    url = f"sqlite:///{ROOT}/studies/{study}.db"
    loaded = optuna.load_study(study_name=study, storage=url)
    view = StudyView.read(loaded)
    seconds = sum(end - start for start, end in view.times.values())
    hours = round((seconds + sum(view.confirm_seconds)) / 3600, 2)
    on_gpu = any(r.trained and r.device and not r.device.startswith("cpu")
                 for r in records(loaded))
    return {"cpu_hours": None, "gpu_hours": hours} if on_gpu else {"cpu_hours": hours}


def _packaged_name(c: dict) -> str:
    for path in sorted(CONFIGS.glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("arch") == c["arch"] and doc.get("recipe") == c["recipe"]:
            return path.stem
    name = f"front{c['params']}"
    write_text(CONFIGS / f"{name}.json", json.dumps({
        "about": f"Trial {c['trial']} of {c['study']} ({c['params']:,} parameters): on the "
                 f"frontier, mean {sum(c['scores']) / len(c['scores']):.2f} % over "
                 f"{len(c['scores'])} seeds, measured on {c.get('measured')} "
                 f"(studies/frontier.json).",
        "arch": c["arch"], "recipe": c["recipe"]}, indent=1) + "\n")
    return name


def _point(p: Point, budget: int) -> dict:
    c = p.extra
    counted = count({"arch": c["arch"]})
    return {"budget": budget, "name": _packaged_name(c), "study": c["study"], "trial": c["trial"],
            "params": p.params, "ram_int8": counted["peak_ram_int8"], "macs": counted["macs"],
            "seed_scores": list(p.seed_scores), "mean": round(p.mean, 3),
            "worst": p.worst, "std": round(p.std, 3), "val_mean": _val_mean(c["arch"]),
            **_study_hours(c["study"]), "measured": c.get("measured")}


def _ram_point(candidates: list[Point], max_ram: int) -> dict | None:
    """The best mean among the networks whose int8 peak RAM is at most `max_ram` bytes."""
    from nas_mnist.spec.arch import ArchConfig
    from nas_mnist.spec.footprint import footprint
    fits = [p for p in candidates
            if footprint(ArchConfig.from_dict(p.extra["arch"])).peak_int8_bytes <= max_ram]
    if not fits:
        return None
    best = max(fits, key=lambda p: (p.mean, -p.params))
    point = {"max_ram": max_ram, **_point(best, None)}
    del point["budget"]
    counted = count({"arch": best.extra["arch"]})
    point["tflm_arena_bytes"] = counted.get("tflm_arena_bytes")  # None: no tflite extra
    return point


def _least_ram() -> int:
    """The int8 peak RAM of the leanest network any packaged space draws (at its own widths)."""
    from nas_mnist.searcher.sampling import smallest_arch
    from nas_mnist.searcher.space import SPACE_DIR, load_space
    from nas_mnist.spec.footprint import footprint
    spaces = [load_space(path.stem) for path in sorted(SPACE_DIR.glob("*.yaml"))]
    return min(footprint(smallest_arch(space)).peak_int8_bytes
               for space in spaces if space.samples_arch)


def _like_for_like(candidates: list[Point], points: list[dict], public: list[dict]) -> list[dict]:
    """Each public design (and recipe) beside the front's best network of at most its size:
    the difference of the means in points and in standard errors of the difference."""
    on_front = front(candidates)
    rows = []
    for d in sorted(public, key=lambda d: (d["params"], d["name"], d["recipe"])):
        theirs = Point(d["name"], d["params"], tuple(d["seed_scores"]))
        ours = next((p for p in reversed(on_front) if p.params <= theirs.params), None)
        if ours is None:
            rows.append({"design": d["name"], "recipe": d["recipe"], "params": d["params"],
                         "mean": round(theirs.mean, 3), "worst": theirs.worst, "ours": None})
            continue
        name = next((q["name"] for q in points if q.get("study") == ours.extra["study"]
                     and q.get("trial") == ours.extra["trial"]), ours.name)
        error = math.hypot(ours.standard_error, theirs.standard_error)
        rows.append({"design": d["name"], "recipe": d["recipe"], "params": d["params"],
                     "mean": round(theirs.mean, 3), "worst": theirs.worst,
                     "ours": name, "ours_params": ours.params, "ours_mean": round(ours.mean, 3),
                     "ours_worst": ours.worst, "difference": round(ours.mean - theirs.mean, 3),
                     "standard_errors": round((ours.mean - theirs.mean) / error, 2)
                     if error else None,
                     "ahead": beats(ours, theirs)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--max-ram", type=int, default=MAX_RAM, metavar="BYTES",
                        help=f"the RAM-class point's int8 activation limit ({MAX_RAM:,})")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        budgets = check_budgets(args.budgets)
        check_budgets(budgets, space_shares("default", budget=budgets[0],
                                            samples=1)["smallest_params"])
        max_ram = check_max_ram(args.max_ram, _least_ram())
    except FrontierError as err:  # one line, nothing written
        parser.exit(2, f"frontier.py: error: {err}\n")
    candidates = _candidates()
    per_budget = best_per_budget(candidates, budgets)
    points, seen = [], set()
    for budget, p in per_budget.items():
        if p is not None and p.name not in seen:
            seen.add(p.name)
            points.append(_point(p, budget))
    ram = _ram_point(candidates, max_ram)
    if ram is not None:
        points.append(ram)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    public = [{k: v for k, v in row.items() if k != "data_checksum"}
              for row in json.loads(PACKAGED_PRIOR.read_text()).get("public", [])]
    doc = {
        "about": "Best network per parameter budget, on >= 5 training seeds (min of the last 3 "
                 "of 15 epochs on test: the test set chose these networks), kept only where its "
                 "mean beats every smaller point's by more than one standard error "
                 "(nas_mnist/results/frontier.py). Built by benchmarks/frontier.py from stored "
                 "runs; cpu_hours is the whole study the point came from (trials, one thread "
                 "each, and its confirmation runs); gpu_hours in its place: a study that "
                 "trained on a GPU (the sum over its workers, which shared one GPU).",
        "commit": commit,
        "points": points,
        "budgets": {str(b): (next(q["name"] for q in points if q["study"] == p.extra["study"]
                                  and q["trial"] == p.extra["trial"]) if p else None)
                    for b, p in per_budget.items()},
        "missing": [f"budget {b:,}: no network of at most that size measured on "
                    f"{MIN_SEEDS} seeds" for b, p in per_budget.items() if p is None]
                   + ([] if ram else [f"max_ram {max_ram:,} B: no network under it measured "
                                      f"on {MIN_SEEDS} seeds"]),
        "dropped": [{"name": p.name, "params": p.params, "mean": round(p.mean, 3)}
                    for p in candidates if p not in front(candidates)],
        "public": public,
        "like_for_like": _like_for_like(candidates, points, public),
    }
    write_text(ROOT / "studies" / "frontier.json", json.dumps(doc, indent=1) + "\n")
    figure = frontier_figure(doc)
    figure.write_html(ROOT / "studies" / "frontier.html", include_plotlyjs="cdn")
    try:  # the png extra (kaleido) and a Chromium
        figure.write_image(ROOT / "studies" / "frontier.png", width=900, height=520)
    except Exception as err:  # noqa: BLE001 - the figure is optional, the data is not
        print(f"no PNG: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    for q in points:
        where = f"{q['budget']:>6,}" if "budget" in q else f"{q['max_ram']:>5,}B"
        print(f"{where}  {q['name']:<12} {q['params']:>6,} p  mean {q['mean']:.2f}  "
              f"worst {q['worst']:.2f}  val {q['val_mean']}  "
              + (f"{q['cpu_hours']} CPU h" if q["cpu_hours"] is not None
                 else f"{q['gpu_hours']} GPU h"))
    print("\n".join(doc["missing"]))
    for r in doc["like_for_like"]:
        print(f"{r['design']:<20} {r['params']:>6,} p  {r['recipe']:<4} mean {r['mean']:.2f}  "
              + (f"vs {r['ours']} ({r['ours_params']:,} p) {r['ours_mean']:.2f}: "
                 f"{r['difference']:+.2f} ({r['standard_errors']} SE)"
                 f"{'' if r['ahead'] else ', NOT ahead by more than 1 SE'}"
                 if r["ours"] else "no front point at or under its size"))


if __name__ == "__main__":
    main()
