"""Export trials as winner files: architecture, recipe, metrics, provenance and weights."""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import optuna
import torch

from nas_mnist._version import __version__
from nas_mnist.engine.builder import build_model
from nas_mnist.engine.data import Dataset
from nas_mnist.engine.device import set_threads
from nas_mnist.engine.evaluate import evaluate_candidate
from nas_mnist.engine.train import WeightsError, load_state
from nas_mnist.errors import NasMnistError
from nas_mnist.files import (atomic_write, made_folder, check_names_free, copy_file, publish, staged,
                             write_text)
from nas_mnist.results.ranking import pareto_front
from nas_mnist.results.view import StudyView, view_of
from nas_mnist.searcher.record import StudyMeta, TrialRecord
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.footprint import footprint
from nas_mnist.spec.winner import WinnerFile
from nas_mnist.spec.score import last_n_score


class ExportError(NasMnistError, ValueError):
    """A trial cannot be exported (not complete, over budget, non-finite)."""


def pick_trials(study: StudyView | optuna.Study, *, trial: int | None = None,
                pareto: bool = False) -> list[TrialRecord]:
    view = view_of(study)
    ok = view.feasible
    if not ok:
        raise ExportError(f"study {view.name!r} has no complete feasible trial yet")
    if pareto:  # the study's own front: over parameters, or peak RAM in a score,ram study
        from nas_mnist.searcher.record import COST
        return pareto_front(ok, COST.get(view.meta.objectives, "n_params"))
    if trial is None:
        return ok[:1]
    chosen = [r for r in ok if r.number == trial]
    if not chosen:
        states = {r.number: r.state for r in view.records}
        why = states.get(trial, "not in the study")
        raise ExportError(f"trial {trial} cannot be exported: it is {why}, not a complete "
                          f"feasible trial with a finite score")
    return chosen


def _threads(r: TrialRecord) -> int | None:
    """CPU threads the trial trained with (same seed + same threads = same numbers)."""
    if r.threads is not None:
        return r.threads
    found = re.search(r"(\d+) threads", r.device or "")  # studies before 'threads'
    return int(found.group(1)) if found else None


def winner_doc(study: StudyView | optuna.Study, r: TrialRecord) -> dict:
    view = view_of(study)
    meta = view.meta
    size = footprint(r.arch_config)
    return {
        "arch": r.arch,
        "recipe": r.recipe,
        "seed": r.seed,
        "threads": _threads(r),
        "params": r.n_params,
        "macs": r.macs,
        "activations": size.activations,
        "peak_ram_int8": size.peak,
        "precision": r.precision,
        "metrics": {
            "eval_split": r.eval_split,
            f"{r.eval_split}_acc": r.accs,
            "train_loss": r.train_losses,
            "last_n": meta.last_n,
            "last_n_min": last_n_score(r.accs, meta.last_n, "min"),
            "last_n_mean": last_n_score(r.accs, meta.last_n, "mean"),
            "score": r.value,
            "seconds": r.seconds,
            "device": r.device,
            # the search's confirmation on more training seeds (absent: seed `seed` only)
            **({"seed_scores": {str(r.seed): r.value,
                                **{str(k): v for k, v in r.more_seeds.items()}},
                "mean_over_seeds": r.mean_score, "worst_seed": r.worst_score}
               if r.more_seeds else {}),
        },
        "study": view.name,
        "trial": r.number,
        "budget": meta.budget,
        "max_macs": meta.max_macs,
        "min_params": meta.min_params,
        "max_activations": meta.max_activations,
        "max_ram": meta.max_ram,
        "origin": r.origin,
        "warm_start": r.warm,
        "test_set_used_for_selection": r.eval_split == "test",
        "version": r.version or __version__,
        "exported_by": __version__,
        "data_checksum": r.data_checksum,
        "normalisation": {"mean": r.data_mean or meta.data_mean, "std": r.data_std or meta.data_std},
        "describe": r.arch_config.describe(),
    }


def fetch_weights(r: TrialRecord, arch: ArchConfig, artifacts_dir: str | None,
                  dest: Path) -> bool:
    """Copy the trial's stored weights to `dest` if they load into `arch`; False if the trial
    kept none or they are unreadable (the caller re-trains)."""
    if not r.weights or not artifacts_dir:
        return False
    src = Path(artifacts_dir) / r.weights
    if not src.is_file():
        return False
    try:
        load_state(build_model(arch), src)
    except WeightsError:
        return False
    copy_file(src, dest)
    return True


def earlier_weights(view: StudyView, r: TrialRecord, out: Path, dest: Path) -> dict | None:
    """The weights an earlier export of this trial left in `out` (its winner file names this
    study, trial and architecture, and they load), copied to `dest`; their record, or None.
    Adding a format to a winner never re-trains its weights: another CPU gives other ones."""
    try:
        earlier = WinnerFile.read(out / f"trial{r.number}.json")
    except (OSError, NasMnistError):
        return None
    if (earlier.doc.get("study"), earlier.doc.get("trial")) != (view.name, r.number) or \
            earlier.arch != r.arch_config or not earlier.weights_path.is_file():
        return None
    try:
        load_state(build_model(r.arch_config), earlier.weights_path)
    except WeightsError:
        return None
    copy_file(earlier.weights_path, dest)
    kept = earlier.doc.get("weights")
    return kept if isinstance(kept, dict) else {"source": "kept from an earlier export"}


def check_data(meta: StudyMeta, data: Dataset) -> None:
    """Re-training must use the study's data: refuse another data set."""
    if meta.data_checksum and meta.data_checksum != data.checksum:
        raise ExportError(f"the study was searched on data {meta.data_checksum[:12]}, but "
                          f"the data folder gives {data.checksum[:12]} ({data.source}): pass the "
                          f"study's (data_dir, --data-dir)")


def retrain_weights(winner: WinnerFile, data: Dataset, dest: Path, log=print) -> dict:
    """Re-train the winner with its recipe and seed, one line per epoch; save weights; return
    the new metrics."""
    def epoch_line(e) -> None:
        log(f"  epoch {e.epoch:2d}/{winner.recipe.epochs}: {e.eval_acc:.2f} % "
            f"({e.seconds:.0f} s)")

    run = evaluate_candidate(winner.arch, winner.recipe, data, seed=winner.seed,
                             on_epoch=epoch_line)
    state = {k: v.cpu() for k, v in run.model.state_dict().items()}
    atomic_write(dest, lambda tmp: torch.save(state, tmp))
    return run.summary(data)


def write_winner(winner: WinnerFile) -> Path:
    """Write the record to its path; what every reader will check: a file written is a file
    that loads (read back)."""
    metrics = winner.metrics
    if not all(math.isfinite(a) for a in metrics[f"{metrics['eval_split']}_acc"]):
        raise ExportError(f"trial {winner.doc['trial']} has a non-finite accuracy")
    winner.path.parent.mkdir(parents=True, exist_ok=True)
    write_text(winner.path, json.dumps(winner.to_dict(), indent=2) + "\n")
    WinnerFile.read(winner.path)
    return winner.path


def export_trials(study: StudyView | optuna.Study, *, url: str, out: str | Path | None, formats: list[str],
                  trial: int | None, pareto: bool, artifacts: str | None,
                  data_dir: str | None = None, device: str = "auto", threads: int | None = None,
                  calibration_images: int = 1024, device_ram: int | None = None,
                  log=print) -> list[Path]:
    """Write the winner files of the chosen trials (their stored weights, or re-trained when
    the search kept none) and any deployable formats; returns the winner JSON paths."""
    from nas_mnist.results.deploy import (FORMATS, INT8_FORMATS, SIDE_FILES, check_calibration,
                                          check_format)
    for fmt in formats:
        check_format(fmt)  # a missing extra or compiler fails now, not after re-training
    if set(formats) & INT8_FORMATS:
        check_calibration(calibration_images)
    view = view_of(study)
    chosen = pick_trials(view, trial=trial, pareto=pareto)
    out = Path(out) if out else Path("studies") / f"{view.name}-winners"
    if out.exists() and not out.is_dir():
        raise ExportError(f"out {out} is a file, not a folder")
    for r in chosen:
        check_names_free(out, [f"trial{r.number}{suffix}" for suffix in
                               (".json", ".pt", *(FORMATS[f] for f in formats),
                                *(side for f in formats for side in SIDE_FILES.get(f, ())))])
    with made_folder(out):  # a folder this export made and filled with nothing goes again
        return _export_chosen(view, chosen, out=out, formats=formats, artifacts=artifacts,
                              data_dir=data_dir, device=device, threads=threads,
                              calibration_images=calibration_images, device_ram=device_ram,
                              log=log)


def _export_chosen(view: StudyView, chosen: list[TrialRecord], *, out: Path, formats, artifacts,
                   data_dir, device, threads, calibration_images, device_ram, log) -> list[Path]:
    meta = view.meta
    log(f"study {view.name!r}: data sha256 {(meta.data_checksum or '?')[:12]} "
        f"(as searched)")
    paths: list[Path] = []

    @functools.cache
    def data():
        from nas_mnist.engine.data import load_dataset
        from nas_mnist.engine.device import resolve_device, set_threads
        set_threads(threads)
        loaded = load_dataset(data_dir, val_split=meta.val_split,
                              seed=meta.split_seed).to(resolve_device(device))
        check_data(meta, loaded)
        return loaded

    for r in chosen:
        # All or nothing per trial: its files are made in a hidden folder inside `out` and
        # moved in only when every one of them is written and verified.
        with staged(out, f"export-trial{r.number}") as stage:
            made = _export_one(view, r, stage, formats, artifacts, calibration_images, data,
                               log, threads, device_ram, earlier=out)
            publish(stage, made, out)
        path = out / made[-1]
        paths.append(path)
        winner = WinnerFile.read(path)
        log(f"trial {r.number}: {winner.doc['params']:,} params, "
            f"{winner.metrics['score']:.2f} % -> {path} ({winner.doc['weights']['source']})")
        for fmt, check in winner.deployed.items():
            log(f"  {fmt}: {out / check['file']}, {deploy_line(fmt, check)}")
    return paths


def _export_one(view: StudyView, r: TrialRecord, out: Path, formats: list[str],
                artifacts: str | None, calibration_images: int, data, log,
                threads: int | None = None, device_ram: int | None = None,
                earlier: Path | None = None) -> list[str]:
    """Write the weights, formats and winner file of one trial into `out`; return their
    names, the winner file last. Weights: the search's, else those an earlier export left in
    the folder `earlier`, else re-trained."""
    winner = WinnerFile.of(winner_doc(view, r), out / f"trial{r.number}.json")
    weights = out / f"trial{r.number}.pt"
    if fetch_weights(r, r.arch_config, artifacts, weights):
        source = {"source": "stored by the search"}
    elif earlier and (kept := earlier_weights(view, r, earlier, weights)):
        source = {k: v for k, v in kept.items() if k != "file"}
    else:
        # same seed and same threads as the search: the same numbers on the same CPU kind
        loaded = data()
        used = set_threads(threads or winner.threads)
        log(f"trial {r.number} kept no usable weights: re-training it (seed {winner.seed}, "
            f"{used} thread{'s' * (used > 1)}) ...")
        summary = retrain_weights(winner, loaded, weights, log)
        source = {"source": "re-trained at export", "retrained_threads": used,
                  "retrained_last_n_min": summary["last_n_min"]}
    winner = winner.with_keys(weights={"file": weights.name, **source},
                              files={"weights": weights.name})
    if formats:
        winner = _deploy(winner, formats, data(), calibration_images, device_ram)
    return [*winner.files.values(), write_winner(winner).name]


def deploy_line(fmt: str, check: dict) -> str:
    """What an export verified, in one line."""
    line = f"test accuracy {check[fmt + '_acc']:.2f} % "
    if fmt == "onnx-int8":
        line += (f"(fp32 {check['onnx_acc']:.2f} %, {check['agreement']:.2f} % of predictions "
                 f"unchanged), {check['weight_bytes']:,} B of weights")
    elif fmt == "tflite-int8":
        line += (f"in LiteRT (fp32 {check['torch_acc']:.2f} %, {check['agreement']:.2f} % of "
                 f"predictions unchanged); TFLite Micro: the same logits as the integer "
                 f"reference, arena {check['tflm_arena_bytes']:,} B "
                 f"({check['tflm_arena_head']:,} activations + {check['tflm_arena_tail']:,} "
                 f"interpreter, 64-bit host)")
    elif fmt == "c":
        line += (f"compiled with {check['compiler']} (fp32 {check['torch_acc']:.2f} %, the "
                 f"integer reference's logits on every image), "
                 + (f"{check['flash_bytes']:,} B flash, " if "flash_bytes" in check else "")
                 + f"{check['arena_bytes']:,} B static arena; header {check['header']}")
    else:
        line += f"(PyTorch {check['torch_acc']:.2f} %, every prediction equal)"
    if "latency_ms" in check:
        line += f", {check['latency_ms']:.3f} ms an image (batch 1, 1 thread, this CPU)"
    return line


def _deploy(winner: WinnerFile, formats: list[str], data, calibration_images: int,
            device_ram: int | None = None) -> WinnerFile:
    """Write each format beside the winner; the record with what each check verified."""
    from nas_mnist.results.deploy import FORMATS, export_model
    from nas_mnist.results.models import deployable
    if winner.normalisation is None:  # studies made before normalisation was recorded
        winner = winner.with_keys(normalisation={"mean": data.mean, "std": data.std})
    model = deployable(winner.arch, winner.weights_path, *winner.normalisation)
    deployed, files = {}, dict(winner.files)
    for fmt in dict.fromkeys(formats):
        dest = winner.path.with_name(f"{winner.path.stem}{FORMATS[fmt]}")
        deployed[fmt] = export_model(model, fmt, dest, data,
                                     calibration_images=calibration_images,
                                     device_ram=device_ram)
        files[fmt] = dest.name
        if "header" in deployed[fmt]:
            files[f"{fmt}_header"] = deployed[fmt]["header"]
    return winner.with_keys(deployed=deployed, files=files)
