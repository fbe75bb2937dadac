"""Seed runs reused by exact configuration and never dropped once paid for. The record:
spec/seedrun.py; the runs themselves: engine/seeds.py."""

from __future__ import annotations

from dataclasses import replace

from nas_mnist.spec.seedrun import SeedRun, run_key


def reusable_run(runs: list[SeedRun], arch: dict, recipe: dict, seeds: int, *, val_split: int,
                 data_checksum: str) -> SeedRun | None:
    """An earlier run of exactly this configuration on this data and split, on seeds
    0..seeds-1 (cut to those), or None: a lookup by the canonical key (`run_key`)."""
    wanted = run_key(arch, recipe, data_checksum=data_checksum, val_split=val_split)
    if wanted is None:
        return None
    for run in runs:
        if run.key() == wanted and run.seeds[:seeds] == list(range(seeds)):
            return replace(run.first(seeds), in_table=True)
    return None


def runs_to_keep(earlier: list[SeedRun], table: list[SeedRun]) -> list[SeedRun]:
    """Earlier runs that a new seed table does not hold (another configuration, or more
    seeds), marked as out of the table: paid-for runs are never dropped."""
    def config(run: SeedRun) -> str | None:
        if not (isinstance(run.arch, dict) and isinstance(run.recipe, dict)):
            return None
        return run_key(run.arch, run.recipe, data_checksum=None, val_split=None)

    def holds(t: SeedRun, e: SeedRun) -> bool:
        return (len(t.seeds) >= len(e.seeds) and t.val_split == e.val_split
                and t.data_checksum == e.data_checksum and config(t) == config(e))
    return [replace(e, in_table=False) for e in earlier
            if config(e) is not None and not any(config(t) is not None and holds(t, e)
                                                 for t in table)]
