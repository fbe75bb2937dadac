"""Seed runs: one configuration trained on several training seeds, as a typed record.

A `SeedRun` is what `train --seeds --json-out` writes, what a report's seeds.json holds (one
per row of its seed table) and what `report --reuse` reads back. `SeedRun.from_json` checks a
run whole (a made-up score is refused, naming the field); `to_json` writes the file format,
which older files share. Pure data: no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace

from nas_mnist.errors import SpecError
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.recipe import Recipe
from nas_mnist.spec.score import last_n_score

# The per-seed lists of a run (everything else is one value for the whole run).
_PER_SEED = ("seeds", "mins", "means", "curves", "test_acc_final")


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
    for key, ok, wanted in (
            ("trial", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
             "a trial number"),
            ("val_split", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)
                                                  and v >= 0), "an integer >= 0"),
            ("in_table", lambda v: isinstance(v, bool), "true or false"),
            ("data_checksum", lambda v: v is None or isinstance(v, str), "a string"),
            ("reused_from", lambda v: v is None or isinstance(v, str), "a string"),
            ("arch", lambda v: v is None or isinstance(v, dict), "an architecture object"),
            ("recipe", lambda v: v is None or isinstance(v, dict), "a recipe object")):
        if key in run and not ok(run[key]):
            return f"{key} must be {wanted}, got {run[key]!r}"[:160]
    return _curve_problem(run, seeds)


def _curve_problem(run: dict, seeds: list) -> str | None:
    """Why the run's per-epoch accuracies do not give its scores (None: they do, or the run
    predates them)."""
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


@dataclass(frozen=True)
class SeedRun:
    """One configuration on training seeds `seeds`; lists hold one entry per seed."""

    seeds: list[int]
    mins: list[float]  # min of the last N epochs on `eval_split`, percent
    params: int
    seconds: float  # per run (the mean over the seeds)
    device: str
    means: list[float] | None = None  # mean of the last N epochs
    eval_split: str = "test"  # "val": scored on held-out training images
    curves: list[list[float]] | None = None  # per-epoch accuracies on eval_split
    test_acc_final: list[float] | None = None  # with a val split: test after the last epoch
    arch: dict | None = None
    recipe: dict | None = None
    trial: int | None = None  # the study trial it re-trains (None: a file's network)
    val_split: int | None = None
    data_checksum: str | None = None
    threads: int | None = None
    jobs: int | None = None
    in_table: bool = True  # False: kept in seeds.json, out of the report's seed table
    reused_from: str | None = None  # the file it was taken from instead of training
    extra: dict = field(default_factory=dict)  # keys of another version, written back as read

    @classmethod
    def from_json(cls, doc) -> "SeedRun":
        """The run in `doc` (one entry of a seeds.json), checked: SpecError names the field."""
        if not isinstance(doc, dict):
            raise SpecError("a seed run must be an object")
        problem = seed_run_problem(doc)
        if problem:
            raise SpecError(problem)
        split = doc.get("eval_split", "test")
        known = {f.name for f in fields(cls)} - {"curves", "extra"}
        curve_key = f"{split}_acc"
        return cls(**{k: v for k, v in doc.items() if k in known},
                   curves=doc.get(curve_key),
                   extra={k: v for k, v in doc.items() if k not in known and k != curve_key})

    def to_json(self) -> dict:
        out = {"trial": self.trial, "arch": self.arch, "recipe": self.recipe,
               "params": self.params, "seeds": self.seeds, "mins": self.mins,
               "means": self.means, "eval_split": self.eval_split, "val_split": self.val_split,
               f"{self.eval_split}_acc": self.curves, "test_acc_final": self.test_acc_final,
               "seconds": self.seconds, "device": self.device, "threads": self.threads,
               "jobs": self.jobs, "data_checksum": self.data_checksum,
               "reused_from": self.reused_from, **self.extra}
        if not self.in_table:
            out["in_table"] = False
        return {k: v for k, v in out.items() if v is not None or k == "trial"}

    def key(self) -> str | None:
        """Its canonical key (`run_key`): None for a run without a valid configuration and
        curves, which is shown but never reused."""
        if not (isinstance(self.arch, dict) and isinstance(self.recipe, dict)
                and isinstance(self.curves, list)):
            return None
        split = self.val_split if self.val_split is not None else (
            0 if self.eval_split == "test" else None)
        return run_key(self.arch, self.recipe, data_checksum=self.data_checksum,
                       val_split=split)

    def first(self, n: int) -> "SeedRun":
        """The run cut to its first n seeds."""
        cut = {f.name: getattr(self, f.name)[:n] for f in fields(self)
               if f.name in _PER_SEED and getattr(self, f.name) is not None}
        return replace(self, **cut)
