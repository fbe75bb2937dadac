"""Markdown summary of a study: budget, trial counts, time, top-k, multi-seed confirmation."""

from __future__ import annotations

import statistics
from datetime import timedelta

import optuna

from nas_mnist.results import leaderboard
from nas_mnist.storage import count_kinds, trial_kind


KIND_ORDER = ("complete", "early_stopped", "over_budget", "invalid", "failed", "running")


def seed_stats(mins: list[float]) -> dict:
    return {"seeds": len(mins), "mean": statistics.fmean(mins),
            "std": statistics.stdev(mins) if len(mins) > 1 else 0.0,
            "min": min(mins), "max": max(mins)}


def summary_markdown(study: optuna.Study, *, top_k: int = 10,
                     seed_runs: list[dict] | None = None) -> str:
    meta = study.user_attrs.get("nas_mnist", {})
    split = meta.get("eval_split", "test")
    kinds = count_kinds(study)
    seconds = sum((t.duration.total_seconds() for t in study.trials if t.duration), 0.0)
    trained_epochs = sum(len(t.user_attrs.get("acc") or []) for t in study.trials)
    epochs = meta.get("epochs", 15)
    skipped = sum(epochs - len(t.user_attrs.get("acc") or []) for t in study.trials
                  if trial_kind(t) in ("early_stopped", "over_budget", "invalid"))
    trained = [t for t in study.trials if trial_kind(t) == "complete"]
    per_trial = (sum(t.duration.total_seconds() for t in trained) / len(trained)
                 if trained else 0.0)
    lines = [
        f"# Study `{study.study_name}`",
        "",
        f"- Budget: {meta.get('budget', '?'):,} parameters; space `{meta.get('space', '?')}`; "
        f"score = {meta.get('objective', 'min')} of the {split} accuracy over the last "
        f"{meta.get('last_n', 3)} of {meta.get('epochs', 15)} epochs.",
        "- Trials: " + ", ".join(f"{kinds[k]} {k.replace('_', ' ')}" for k in KIND_ORDER
                                 if kinds.get(k)) + f" ({len(study.trials)} in all).",
        f"- Time in trials: {timedelta(seconds=round(seconds))} (summed over workers); "
        f"{trained_epochs} training epochs run; {per_trial:.0f} s per complete trial.",
        f"- Epochs saved: {skipped} of {skipped + trained_epochs} "
        f"({skipped / max(1, skipped + trained_epochs):.0%}) by refusing over-budget and invalid "
        f"configurations before training and stopping hopeless trials early.",
        "- " + ("**The test set was used for selection**: the scores below are test accuracies "
                "of the trials the search picked, so they are optimistic as estimates of "
                "accuracy on new data." if split == "test" else
                "Selection used a validation split held out of the training set; the test "
                "set was not used to pick the winners."),
        "",
        f"## Top {top_k}",
        "",
        f"| rank | trial | params | MACs | {meta.get('objective', 'min')}-last-"
        f"{meta.get('last_n', 3)} {split} % | architecture |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in leaderboard(study, top_k):
        lines.append(f"| {r.rank} | {r.trial} | {r.params:,} | {r.macs:,} | {r.score:.2f} | "
                     f"`{r.describe}` |")
    if seed_runs:
        lines += ["", "## Multi-seed confirmation", "",
                  "Each winner re-trained from scratch with its recipe; min of the test "
                  f"accuracy over the last {meta.get('last_n', 3)} epochs, per seed.",
                  f"Device: {seed_runs[0]['device']}; {seed_runs[0].get('jobs', 1)} process(es) "
                  f"of {seed_runs[0].get('threads', '?')} thread(s).", "",
                  f"| trial | params | seeds | per-seed min-last-{meta.get('last_n', 3)} % | mean "
                  "| std | seconds/run |",
                  "|---:|---:|---:|---|---:|---:|---:|"]
        for run in seed_runs:
            s = seed_stats(run["mins"])
            per_seed = ", ".join(f"{m:.2f}" for m in run["mins"])
            lines.append(f"| {run['trial']} | {run['params']:,} | {s['seeds']} | {per_seed} | "
                         f"{s['mean']:.2f} | {s['std']:.2f} | {run['seconds']:.0f} |")
    return "\n".join(lines) + "\n"
