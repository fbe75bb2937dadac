"""Seed runs as files: checked when read (a made-up score is refused), reused by exact
configuration, never dropped once paid for. The runs themselves: engine/seeds.py."""

from __future__ import annotations

import json
import math

from nas_mnist.errors import SpecError
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.recipe import Recipe
from nas_mnist.spec.score import last_n_score

# The per-seed lists of a run (everything else is one value for the whole run).
_PER_SEED = ("seeds", "mins", "means", "test_acc", "val_acc", "test_acc_final")


def _finite_percent(x) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)
            and math.isfinite(x) and 0.0 <= x <= 100.0)


def seed_run_problem(run: dict) -> str | None:
    """Why `run` (one entry of a seeds.json, or `train --seeds --json-out` output) cannot be
    shown or reused, naming the field; None when it is sound. Scores must be percentages, one
    per seed, and where the run carries its per-epoch accuracies and recipe, each seed's
    min-last-N and mean-last-N must be what those accuracies give: a made-up score is refused,
    not shown."""
    seeds = run.get("seeds")
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        return f"seeds must be a non-empty list of distinct seeds >= 0, got {seeds!r}"[:160]
    for key in ("mins", "means"):
        values = run.get(key)
        if key == "means" and values is None:
            continue
        if not isinstance(values, list) or len(values) != len(seeds):
            return f"{key} must hold one score per seed ({len(seeds)})"
        bad = next((v for v in values if not _finite_percent(v)), None)
        if bad is not None or any(v is None for v in values):
            return f"{key} holds {bad!r}, not a percentage in [0, 100]"
    seconds = run.get("seconds")
    if (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
            or not math.isfinite(seconds) or seconds < 0):
        return f"seconds must be a number >= 0, got {seconds!r}"
    params = run.get("params")
    if not isinstance(params, int) or isinstance(params, bool) or params < 1:
        return f"params must be a positive integer, got {params!r}"[:160]
    if not isinstance(run.get("device"), str):
        return f"device must be a string, got {run.get('device')!r}"[:160]
    split = run.get("eval_split", "test")
    if split not in ("test", "val"):
        return f"eval_split must be 'test' or 'val', got {split!r}"
    curves = run.get(f"{split}_acc")
    if curves is None:
        return None  # files before per-epoch accuracies were kept: shown, never reused
    if (not isinstance(curves, list) or len(curves) != len(seeds)
            or not all(isinstance(c, list) and c and all(_finite_percent(a) for a in c)
                       for c in curves)):
        return f"{split}_acc must hold one list of percentages per seed ({len(seeds)})"
    try:
        last_n = Recipe.from_dict(run["recipe"]).last_n if "recipe" in run else None
    except (SpecError, TypeError, AttributeError):
        return "recipe is not a valid recipe"
    if last_n is None:
        return None
    for i, accs in enumerate(curves):
        for key, how in (("mins", "min"), ("means", "mean")):
            if key in run and abs(run[key][i] - last_n_score(accs, last_n, how)) > 0.006:
                return (f"{key}[{i}] {run[key][i]} is not the {how} of the last {last_n} of "
                        f"its {split}_acc ({last_n_score(accs, last_n, how):.2f})")
    return None


def run_key(arch: dict, recipe: dict, *, data_checksum: str | None,
            val_split: int | None) -> str | None:
    """The canonical key of a configuration trained on a data set and split: what seed-run
    reuse looks up (None: not a valid configuration, so never a match)."""
    try:
        config = (ArchConfig.from_dict(arch).to_dict(), Recipe.from_dict(recipe).to_dict())
    except (SpecError, TypeError, AttributeError):  # another version's run, or one by hand
        return None
    return json.dumps([*config, data_checksum, val_split], sort_keys=True)


def _key_of(run: dict) -> str | None:
    if not (isinstance(run.get("arch"), dict) and isinstance(run.get("recipe"), dict)
            and isinstance(run.get(f"{run.get('eval_split', 'test')}_acc"), list)):
        return None  # without its configuration and curves a run cannot be checked
    split = run.get("val_split", 0 if run.get("eval_split", "test") == "test" else None)
    return run_key(run["arch"], run["recipe"], data_checksum=run.get("data_checksum"),
                   val_split=split)


def reusable_run(runs: list[dict], arch: dict, recipe: dict, seeds: int, *, val_split: int,
                 data_checksum: str) -> dict | None:
    """An earlier run of exactly this configuration on this data and split, on seeds
    0..seeds-1 (cut to those), or None: a lookup by `run_key`."""
    wanted = run_key(arch, recipe, data_checksum=data_checksum, val_split=val_split)
    index: dict[str, list[dict]] = {}
    for run in runs:
        index.setdefault(_key_of(run), []).append(run)
    for run in index.get(wanted, []) if wanted else []:
        if run.get("seeds", [])[:seeds] == list(range(seeds)):
            return {k: v[:seeds] if k in _PER_SEED and isinstance(v, list) else v
                    for k, v in run.items() if k != "in_table"}
    return None


def runs_to_keep(earlier: list[dict], table: list[dict]) -> list[dict]:
    """Earlier runs that a new seed table does not hold (another configuration, or more
    seeds), marked as out of the table: paid-for runs are never dropped."""
    def holds(t, e):
        return (len(t.get("seeds", [])) >= len(e.get("seeds", []))
                and t.get("val_split") == e.get("val_split")
                and t.get("data_checksum") == e.get("data_checksum")
                and run_key(t["arch"], t["recipe"], data_checksum=None, val_split=None)
                == run_key(e["arch"], e["recipe"], data_checksum=None, val_split=None))
    return [{**e, "in_table": False} for e in earlier
            if isinstance(e.get("arch"), dict) and isinstance(e.get("recipe"), dict)
            and not any(isinstance(t.get("arch"), dict) and holds(t, e) for t in table)]
