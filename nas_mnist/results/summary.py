"""Markdown summary of a study: budget, trial counts, time, top-k, multi-seed confirmation."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import timedelta

import optuna

from nas_mnist.results.ranking import leaderboard
from nas_mnist.results.view import StudyView, view_of
from nas_mnist.searcher.record import KIND_ORDER, OPEN
from nas_mnist.spec.seedrun import SeedRun


def seed_stats(mins: list[float]) -> dict:
    return {"seeds": len(mins), "mean": statistics.fmean(mins),
            "std": statistics.stdev(mins) if len(mins) > 1 else 0.0,
            "min": min(mins), "max": max(mins)}


def epochs_saved(study: StudyView | optuna.Study) -> tuple[int, int, int]:
    """(epochs the stopping rule saved, epochs refused samples would have cost, epochs trained),
    counting every finished trial as `epochs` long had it been trained to the end."""
    view = view_of(study)
    meta = view.meta
    recs = [r for r in view.records if r.kind not in (*OPEN, "failed")]
    trained = sum(len(r.accs) for r in recs)
    stopped = sum(meta.epochs - len(r.accs) for r in recs if r.kind == "early_stopped")
    refused = sum(meta.epochs for r in recs if not r.accs and r.kind != "early_stopped")
    return stopped, refused, trained


def md_cell(text: str) -> str:
    """A table cell that renders on GitHub: `|` inside a cell must be escaped."""
    return text.replace("|", "\\|")


def _fixed(meta):
    from nas_mnist.spec.arch import ArchConfig
    return ArchConfig.from_dict(meta.arch)


def summary_markdown(study: StudyView | optuna.Study, *, top_k: int = 10,
                     seed_runs: list[SeedRun] | None = None) -> str:
    view = view_of(study)
    lines = [f"# Study `{view.name}`", "", *_facts(view), "", *_top_table(view, top_k)]
    if seed_runs:
        origins = {r.number: r.origin for r in view.feasible if r.origin}
        lines += _seed_table(view.meta, seed_runs, origins)
    return "\n".join(lines) + "\n"


def _facts(view: StudyView) -> list[str]:
    """The study in bullets: what it is, its trials, its time, what the rule saved, and
    whether the test set picked the winners."""
    meta, recs = view.meta, view.records
    kinds = Counter(r.kind for r in recs)
    seconds = sum(end - start for start, end in view.times.values())
    stopped, refused, trained_epochs = epochs_saved(view)
    complete = [view.times[r.number] for r in recs
                if r.kind == "complete" and r.number in view.times]
    per_trial = (sum(end - start for start, end in complete) / len(complete)
                 if complete else 0.0)
    kind = {"score": "single objective (score; the budget is a hard constraint)",
            "score,params": "two objectives (score, parameters)",
            "score,ram": "two objectives (score, peak RAM at int8)"}[meta.objectives]
    return [
        f"- Budget: {meta.budget:,} parameters"
        + (f" (size floor {meta.min_params:,})" if meta.min_params else "")
        + (f", {meta.max_macs:,} MACs" if meta.max_macs else "")
        + (f", {meta.max_activations:,} activations per image" if meta.max_activations else "")
        + (f", {meta.max_ram:,} B peak RAM at int8" if meta.max_ram else "")
        + f"; space `{meta.space}`; {kind}; score = {meta.objective} of the {meta.eval_split} "
        f"accuracy over the last {meta.last_n} of {meta.epochs} epochs"
        + (f"; stopping rule {meta.rule}" if meta.rule else "") + ".",
        *([f"- A recipe study: every trial trains `{md_cell(_fixed(meta).describe())}` "
           f"({_fixed(meta).n_params():,} parameters); the trials differ in their recipe."]
          if meta.arch is not None else []),
        "- Trials: " + ", ".join(f"{kinds[k]} {k.replace('_', ' ')}" for k in KIND_ORDER
                                 if kinds.get(k)) + f" ({len(recs)} in all).",
        f"- Time in trials: {timedelta(seconds=round(seconds))} (summed over workers); "
        f"{trained_epochs} training epochs run; {per_trial:.0f} s per complete trial.",
        *([f"- Confirmation runs (the top trials on more training seeds, by the search or a "
           f"report): {len(view.confirm_seconds)}, "
           f"{timedelta(seconds=round(sum(view.confirm_seconds)))}; "
           f"{sum(view.confirm_seconds) / (sum(view.confirm_seconds) + seconds):.0%} of the "
           f"time in trials and confirmations."] if view.confirm_seconds else []),
        f"- Epochs saved by the stopping rule: {stopped} of the {stopped + trained_epochs} the "
        f"trained networks would have run to the end ({stopped / max(1, stopped + trained_epochs):.0%}"
        f"; {kinds.get('early_stopped', 0)} stopped early); refused samples (never trained) "
        f"would have cost {refused} more.",
        "- " + ("**The test set was used for selection**: the scores below are test accuracies "
                "of the trials the search picked, so they are optimistic as estimates of "
                "accuracy on new data." if meta.eval_split == "test" else
                "Selection used a validation split held out of the training set; the test "
                "set was not used to pick the winners."),
    ]


def _top_table(view: StudyView, top_k: int) -> list[str]:
    meta = view.meta
    rows = leaderboard(view, top_k)
    confirmed = any(r.seeds > 1 for r in rows)
    lines = [
        f"## Top {top_k}",
        "",
        f"| rank | trial | params | MACs | activations | peak RAM B (int8) | "
        f"{'mean ' * confirmed}{meta.label} " + ("| seeds | worst % " * confirmed)
        + ("| recipe |" if meta.arch is not None else "| architecture |"),
        "|---:|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * confirmed + "---|",
    ]
    for r in rows:
        lines.append(f"| {r.rank} | {r.trial_label} | {r.n_params:,} | {r.macs:,} | "
                     f"{r.activations:,} | {r.peak:,} | {r.score:.2f} | "
                     + (f"{r.seeds} | {r.worst:.2f} | " if confirmed else "")
                     + f"`{md_cell(r.describe)}` |")
    if confirmed:
        lines += ["", "Rows with several seeds were re-trained on more training seeds during "
                      "the search (its top trials); they rank by the mean over their seeds."]
    return lines


def _seed_table(meta, seed_runs: list[SeedRun], origins: dict[int, str]) -> list[str]:
    split = seed_runs[0].eval_split
    lines = ["", "## Multi-seed confirmation", "",
             "Each trial re-trained from scratch with its recipe; "
             f"the minimum of the {split} accuracy over the last {meta.last_n} epochs, "
             "per seed. Run on: the device, and the processes the command ran side by side.", "",
             f"| trial | params | seeds | per-seed min-last-{meta.last_n} % | "
             "mean | std | worst | seconds/run | run on |",
             "|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for run in seed_runs:
        s = seed_stats(run.mins)
        per_seed = ", ".join(f"{m:.2f}" for m in run.mins)
        origin = origins.get(run.trial)
        label = f"{run.trial} ({origin})" if origin else run.trial
        lines.append(f"| {label} | {run.params:,} | {s['seeds']} | {per_seed} | "
                     f"{s['mean']:.2f} | {s['std']:.2f} | {s['min']:.2f} | "
                     f"{run.seconds:.0f} | {run.device}, {run.jobs or 1} process(es)"
                     + (f"; reused from `{run.reused_from}`" if run.reused_from else "")
                     + " |")
    if len(seed_runs) > 1:
        best = max(seed_runs, key=lambda run: seed_stats(run.mins)["mean"])
        lines += ["", f"Best on the mean of {len(best.mins)} seeds: trial {best.trial} "
                      f"({seed_stats(best.mins)['mean']:.2f} %); the rows are in the "
                      f"search's order, on its one seed."]
    return lines
