"""The report's seed table: which trials to re-train on several seeds, which earlier runs of
exactly the same configuration to take instead, and the files those runs are kept in.

`api.report(seeds=K, ...)` and `nas-mnist report --seeds K` both call `report_seed_runs`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from nas_mnist.errors import NasMnistError, SpecError
from nas_mnist.searcher import record
from nas_mnist.spec.seedrun import SeedRun


MAX_SEED_RUNS_BYTES = 16 << 20  # a seeds.json of 50 trials x 10 seeds is ~0.5 MB


class SeedRunsError(NasMnistError, ValueError):
    """A seed-runs file or a choice of trials to confirm that cannot be used."""


def read_seed_runs(path: Path) -> list[SeedRun]:
    """The runs in a report's seeds.json or a `train --seeds --json-out` file, each checked
    (`SeedRun.from_json`): a made-up run is refused, never shown."""
    what = "a seeds.json of a report, or `train --seeds --json-out` output"
    from nas_mnist.files import FileReadError, read_text_bounded
    try:
        runs = json.loads(read_text_bounded(path, MAX_SEED_RUNS_BYTES, "seed runs file"))
    except FileReadError as exc:
        raise SeedRunsError(str(exc)) from None
    except (ValueError, RecursionError):
        raise SeedRunsError(f"{path} is not JSON ({what})") from None
    runs = [runs] if isinstance(runs, dict) else runs
    if not isinstance(runs, list) or not all(
            isinstance(r, dict) and isinstance(r.get("mins"), list)
            and isinstance(r.get("seeds", []), list) for r in runs):
        raise SeedRunsError(f"{path} is not a file of seed runs ({what})")
    out = []
    for i, run in enumerate(runs):
        try:
            out.append(SeedRun.from_json(run))
        except SpecError as err:
            raise SeedRunsError(f"{path}: run {i + 1} (trial {run.get('trial')}): {err}") \
                from None
    return out


def earlier_seed_runs(out: Path, log: Callable[[str], None]) -> list[dict] | None:
    """The seed table of an earlier `seeds` report in folder `out`, kept in a new summary."""
    path = Path(out) / "seeds.json"
    if not path.is_file():
        return None
    runs = [r for r in read_seed_runs(path) if r.in_table]
    log(f"keeping the seed runs of {path} (re-run them with --seeds)")
    return runs or None


def check_choice(*, seeds: int | None, confirm: list[int], confirm_top: int, winner: bool,
                 reuse: list[str], jobs: int = 1) -> None:
    """The trials to confirm make sense together (parameter names, as a library call)."""
    from nas_mnist.engine.device import check_parallel
    check_parallel(jobs, "jobs")  # before any file is touched
    if not winner and not confirm:
        raise SeedRunsError("winner=False needs at least one trial in confirm",
                            params=("confirm",))
    if not winner and confirm_top > 1:
        raise SeedRunsError("winner=False and confirm_top > 1 exclude each other",
                            params=("confirm_top",))
    for name, given in (("reuse", reuse), ("confirm", confirm), ("confirm_top", confirm_top > 1)):
        if given and not seeds:
            raise SeedRunsError(f"{name} needs seeds", params=(name, "seeds"))


def _sources(earlier: Path, reuse: list[str], log) -> tuple[list[SeedRun], list]:
    """(the report folder's own earlier runs, every (path, runs) to reuse from: the folder's
    first, then the `reuse` files)."""
    sources = [(Path(f), read_seed_runs(Path(f))) for f in reuse]
    folder_runs: list[SeedRun] = []
    if earlier.is_file():
        try:
            folder_runs = read_seed_runs(earlier)
            sources.insert(0, (earlier, folder_runs))
        except SeedRunsError as err:  # it is about to be replaced: say so, do not stop
            log(f"not reusing runs: {err}")
    return folder_runs, sources


def _reused(chosen, sources, seeds: int, meta, data, log) -> dict[int, SeedRun]:
    """Trial number -> a stored run of exactly its configuration on these seeds and data."""
    from nas_mnist.results.confirm import reusable_run
    runs = {}
    for r in chosen:
        for path, earlier_runs in sources:
            run = reusable_run(earlier_runs, r.arch, r.recipe, seeds,
                               val_split=meta.val_split, data_checksum=data.checksum)
            if run:
                runs[r.number] = replace(run, trial=r.number,
                                         reused_from=run.reused_from or str(path))
                log(f"trial {r.number}: {seeds} seed run(s) reused from {path}")
                break
    return runs


def _held_by_study(view, chosen, seeds: int, log) -> dict[int, dict[int, dict]]:
    """Runs the study itself holds of the chosen trials on seeds 0..seeds-1, by trial and
    seed: a trial's own run and the search's confirmations (`search --confirm-top`). A
    validation-split study's runs lack the test accuracy after the last epoch that its seed
    table shows: those are trained again."""
    from nas_mnist.spec.score import last_n_score
    meta = view.meta
    if meta.val_split:
        return {}
    confirmed = record.seed_runs(view.study)
    held = {}
    for r in chosen:
        runs = {r.seed: {"accs": r.accs, "seconds": r.seconds, "device": r.device}}
        for seed, run in confirmed.get(r.number, {}).get("runs", {}).items():
            if isinstance(run, dict) and run.get("eval_split", "test") == "test":
                runs.setdefault(int(seed), run)
        mine = {seed: {"seed": seed, "accs": list(run["accs"]),
                       "last_n_min": last_n_score(run["accs"], meta.last_n, "min"),
                       "last_n_mean": last_n_score(run["accs"], meta.last_n, "mean"),
                       "eval_split": "test", "test_acc_final": None,
                       "seconds": float(run.get("seconds") or 0.0),
                       "device": str(run.get("device") or "?")}
                for seed, run in runs.items()
                if seed < seeds and len(run.get("accs") or []) == meta.epochs}
        if mine:
            held[r.number] = mine
            log(f"trial {r.number}: seed {', '.join(map(str, sorted(mine)))} taken from the "
                f"study (its own run{' and confirmations' if len(mine) > 1 else ''})")
    return held


def report_seed_runs(study, *, seeds: int, confirm: list[int], confirm_top: int, winner: bool,
                     reuse: list[str], earlier: Path, jobs: int, data_dir: str | None,
                     device: str, threads: int | None, log: Callable[[str], None],
                     url: str | None = None) -> tuple[list[SeedRun], list[SeedRun]]:
    """(the seed table's runs, earlier runs of the folder that it does not hold, to keep).

    The best `confirm_top` trials (with `winner`) and the `confirm` trials are re-trained on
    seeds 0..seeds-1 with the study's data and split, `jobs` processes at a time, unless a run
    of exactly the same configuration is in `earlier` (the report folder's seeds.json) or a
    `reuse` file. With the study's storage `url`, the runs are kept in the study too, as its
    confirmation runs: the study then ranks these trials by the same mean as the table."""
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.device import resolve_device
    from nas_mnist.engine.seeds import confirm_seeds
    from nas_mnist.results.confirm import runs_to_keep
    from nas_mnist.results.export import check_data
    from nas_mnist.results.view import view_of
    resolve_device(device)
    view = view_of(study)
    meta = view.meta
    folder_runs, sources = _sources(earlier, reuse, log)
    data = load_dataset(data_dir, val_split=meta.val_split, seed=meta.split_seed)
    check_data(meta, data)
    ranked = view.feasible
    unknown = set(confirm) - {r.number for r in ranked}
    if unknown:
        raise SeedRunsError(f"confirm {sorted(unknown)}: not complete feasible trials of "
                            f"study {view.name!r}")
    chosen = [r for i, r in enumerate(ranked)
              if (i < confirm_top and winner) or r.number in confirm]
    runs = _reused(chosen, sources, seeds, meta, data, log)
    candidates = [(r.number, r.arch, r.recipe) for r in chosen if r.number not in runs]
    stored = _held_by_study(view, [r for r in chosen if r.number not in runs], seeds, log)
    if candidates:
        jobs = max(1, min(jobs, len(candidates) * seeds - sum(map(len, stored.values()))))
        log(f"re-training {len(candidates)} trial(s) on {seeds} seed(s) with {jobs} "
            f"process(es) ...")

        def on_done(r):
            score = r["last_n_min"] if meta.objective == "min" else r["last_n_mean"]
            log(f"  trial {r['trial']} seed {r['seed']}: {meta.objective}-last-{meta.last_n} "
                f"{score:.2f} % ({r['seconds']:.0f} s)")

        trained = confirm_seeds(candidates, seeds, data_dir=data_dir, val_split=meta.val_split,
                                split_seed=meta.split_seed, device=device, jobs=jobs,
                                threads=threads, stored=stored, on_done=on_done)
        runs.update((run.trial, replace(run, data_checksum=data.checksum)) for run in trained)
    table = [runs[r.number] for r in chosen]
    if url is not None:
        _store_in_study(view, url, chosen, table, log)
    return table, runs_to_keep(folder_runs, table)


def _store_in_study(view, url: str, chosen, table: list[SeedRun], log) -> None:
    """Each table run the study lacks becomes a confirmation run of its trial (not the trial's
    own seed: that is the trial), unless the run's own-seed score differs from the trial's: then
    it was measured another way (an older trainer) and its seeds would mix two series. A study
    that cannot be written keeps the report going."""
    import optuna
    from nas_mnist.searcher.confirmation import store_runs
    from nas_mnist.spec.score import last_n_score
    meta = view.meta
    for r, run in zip(chosen, table):
        if run.data_checksum not in (None, meta.data_checksum):
            continue  # measured on other data: not this study's fact
        scores = run.mins if meta.objective == "min" else (run.means or run.mins)
        own = scores[run.seeds.index(r.seed)] if r.seed in run.seeds else None
        if own is not None and r.value is not None and abs(own - r.value) > 0.005:
            log(f"trial {r.number}: seed runs not kept in the study (seed {r.seed} scored "
                f"{own:.2f} % there, {r.value:.2f} % in the study: measured another way)")
            continue
        mine = {}
        for i, seed in enumerate(run.seeds):
            accs = run.curves[i] if run.curves else None
            if seed == r.seed or (accs and len(accs) != meta.epochs):
                continue
            score = last_n_score(accs, meta.last_n, meta.objective) if accs else scores[i]
            mine[seed] = {"score": score, "accs": accs, "seconds": round(run.seconds, 1),
                          "device": run.device, "eval_split": run.eval_split, "by": "report"}
        try:
            added = store_runs(view.study, url, r.number, mine) if mine else []
        except (optuna.exceptions.StorageInternalError, OSError) as err:
            log(f"trial {r.number}: seed runs not kept in the study ({err})")
            return
        if added:
            log(f"trial {r.number}: seed {', '.join(map(str, added))} kept in the study")
