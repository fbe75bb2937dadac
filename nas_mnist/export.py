"""Export trials as winner files: architecture, recipe, metrics, provenance and weights."""

from __future__ import annotations

import json
import re
import math
import shutil
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial

from nas_mnist import __version__
from nas_mnist.arch import ArchConfig
from nas_mnist.data import Dataset
from nas_mnist.recipe import Recipe
from nas_mnist.results import feasible, pareto_front


class ExportError(ValueError):
    """A trial cannot be exported (not complete, over budget, non-finite)."""


def pick_trials(study: optuna.Study, *, trial: int | None = None,
                pareto: bool = False) -> list[FrozenTrial]:
    ok = feasible(study)
    if not ok:
        raise ExportError(f"study {study.study_name!r} has no complete feasible trial yet")
    if pareto:
        return pareto_front(study)
    if trial is None:
        return ok[:1]
    chosen = [t for t in ok if t.number == trial]
    if not chosen:
        states = {t.number: t.state.name for t in study.trials}
        why = states.get(trial, "not in the study")
        raise ExportError(f"trial {trial} cannot be exported: it is {why}, not a complete "
                          f"feasible trial with a finite score")
    return chosen


def _threads(attrs: dict) -> int | None:
    """CPU threads the trial trained with (same seed + same threads = same numbers)."""
    if "threads" in attrs:
        return attrs["threads"]
    found = re.search(r"(\d+) threads", attrs.get("device", ""))  # studies before 'threads'
    return int(found.group(1)) if found else None


def winner_doc(study: optuna.Study, t: FrozenTrial) -> dict:
    attrs = t.user_attrs
    meta = study.user_attrs.get("nas_mnist", {})
    accs = attrs["acc"]
    last_n = meta.get("last_n", 3)
    split = attrs.get("eval_split", "test")
    return {
        "arch": attrs["arch"],
        "recipe": attrs["recipe"],
        "seed": attrs.get("train_seed", 0),
        "threads": _threads(attrs),
        "params": attrs["params"],
        "macs": attrs["macs"],
        "metrics": {
            "eval_split": split,
            f"{split}_acc": accs,
            "train_loss": attrs.get("train_loss"),
            "last_n": last_n,
            "last_n_min": min(accs[-last_n:]),
            "last_n_mean": sum(accs[-last_n:]) / len(accs[-last_n:]),
            "score": t.values[0],
            "seconds": attrs.get("seconds"),
            "device": attrs.get("device"),
        },
        "study": study.study_name,
        "trial": t.number,
        "budget": meta.get("budget"),
        "test_set_used_for_selection": split == "test",
        "version": attrs.get("version", __version__),
        "exported_by": __version__,
        "data_checksum": attrs.get("data_checksum"),
        "describe": ArchConfig.from_dict(attrs["arch"]).describe(),
    }


def fetch_weights(t: FrozenTrial, artifacts_dir: str | None, dest: Path) -> bool:
    """Copy the trial's stored weights to `dest`; False if it kept none."""
    artifact = t.user_attrs.get("weights_artifact")
    if not artifact or not artifacts_dir:
        return False
    src = Path(artifacts_dir) / artifact
    if not src.is_file():
        return False
    shutil.copyfile(src, dest)
    return True


def retrain_weights(doc: dict, data: Dataset, dest: Path) -> dict:
    """Re-train the winner with its recipe and seed; save weights; return the new metrics."""
    from nas_mnist.run import train_arch
    summary, model = train_arch(ArchConfig.from_dict(doc["arch"]), data,
                                Recipe.from_dict(doc["recipe"]), seed=doc["seed"])
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, dest)
    return summary


def write_winner(doc: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"trial{doc['trial']}.json"
    if not all(math.isfinite(a) for a in doc["metrics"][f"{doc['metrics']['eval_split']}_acc"]):
        raise ExportError(f"trial {doc['trial']} has a non-finite accuracy")
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
