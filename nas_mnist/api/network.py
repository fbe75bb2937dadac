"""One network: `count`, `train`, `bench`, `predict`, `load_winner`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # names for the annotations only: importing nas_mnist stays light
    import numpy as np
    import torch

    from nas_mnist.spec.arch import ArchConfig
    from nas_mnist.spec.recipe import Recipe
    from nas_mnist.spec.seedrun import SeedRun

import nas_mnist.api.checks as checks
from nas_mnist.api.errors import ApiError

def count(config) -> dict:
    """Parameters, MACs, activations and peak activation memory of an architecture file, dict
    or ArchConfig (`nas-mnist count`), with the per-layer table."""
    from nas_mnist.engine.builder import build_model
    from nas_mnist.engine.counting import count_macs, count_params, layer_table
    from nas_mnist.engine.evaluate import in_shape
    from nas_mnist.spec.footprint import footprint
    arch = _arch_of(config)
    model = build_model(arch)
    f = footprint(arch)
    return {"params": count_params(model), "macs": count_macs(model, in_shape(arch)),
            "activations": f.activations, "peak_ram_int8": f.peak_int8_bytes,
            "peak_ram_fp32": f.peak_fp32_bytes, **_tflm_arena(model, in_shape(arch)),
            "arch": arch.describe(),
            "layers": [r.__dict__ for r in layer_table(model, in_shape(arch))]}


def _tflm_arena(model, shape) -> dict:
    """TFLite Micro's arena, measured where the tflite extra is installed (else nothing)."""
    from nas_mnist.results.models import DeployError, Normalised
    from nas_mnist.results.tflite import arena_of
    try:
        return arena_of(Normalised(model, 0.0, 1.0).eval(), shape)
    except DeployError:  # the extra is not installed, or a layer int8 cannot express
        return {}


def _arch_of(config):
    from nas_mnist.spec.arch import ArchConfig, load_arch
    if isinstance(config, ArchConfig):
        return config
    if isinstance(config, dict):
        return ArchConfig.from_dict(config.get("arch", config))
    return load_arch(config_path(str(config)))[0]


@dataclass
class TrainPlan:
    """What `train` is about to do, for a caller that shows it first (the CLI's header)."""

    arch: "ArchConfig"
    recipe: "Recipe"
    seed: int
    data: object  # engine.data.Dataset
    device: object  # torch.device

    @property
    def device_text(self) -> str:
        """Where it trains, e.g. 'cpu (AMD EPYC, x86_64, 1 threads)'."""
        from nas_mnist.engine.evaluate import describe_device
        return describe_device(self.device)

    @property
    def trainer_text(self) -> str:
        """How it trains: the dropout mask and the evaluation precision (recipe keys)."""
        from nas_mnist.engine.train import eval_precision
        return (f"{self.recipe.dropout_rng} dropout mask, evaluated in "
                f"{eval_precision(self.recipe, self.device)}")


def describe_data(data) -> str:
    """A data set in one phrase: its name or folder and its checksum."""
    from nas_mnist.engine.data import describe_data as describe
    return describe(data)


def count_table(counted: dict) -> str:
    """The per-layer table of a `count` result."""
    from nas_mnist.engine.counting import LayerRow, format_table
    return format_table([LayerRow(**row) for row in counted["layers"]])


def seed_stats(mins: list[float]) -> dict:
    """seeds, mean, std, min and max of per-seed scores."""
    from nas_mnist.results.summary import seed_stats as stats
    return stats(mins)


PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # nas_mnist/configs


def config_path(config: str) -> str:
    """A file path as given; a name that is no file but a packaged config's (trial52, trial81,
    ref8k, woolly3762): that config."""
    packaged = PACKAGED_CONFIGS / f"{config}.json"
    if Path(config).exists() or "/" in config or not packaged.exists():
        return config
    return str(packaged)


BENCH_CONFIGS = ("trial52", "trial81", "ref8k")  # packaged: nas_mnist/configs/NAME.json


def bench(configs: Sequence[str] | None = None, *, steps: int = 20, rounds: int = 5,
          notebook_steps: int = 30, precision: str | None = "auto",
          dropout_kind: str | None = None, parallel: int = 0, data_dir: str | None = None,
          device: str = "auto", threads: int | None = 1,
          on_network: Callable | None = None) -> list[dict]:
    """Time training of each network, as `nas-mnist bench`: the trainer before and now, the
    convolutions-only skeleton and a notebook pipeline (engine.bench). `configs`: files or
    packaged names (default: trial52, trial81, ref8k). `precision` overrides each file's
    recipe (default auto: bf16 where the CPU computes it natively; None: the file's).
    Returns one dict of figures per network; `on_network(arch)` runs before each."""
    import dataclasses as dc
    import time as _time
    from nas_mnist.engine.bench import run_bench
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.device import resolve_device, set_threads
    from nas_mnist.engine.evaluate import describe_device
    from nas_mnist.spec.arch import load_arch
    from nas_mnist.spec.recipe import Recipe
    from nas_mnist.engine.device import check_parallel
    for name, value in (("steps", steps), ("rounds", rounds), ("notebook_steps", notebook_steps)):
        checks.integer(name, value, 1)
    checks.choice("dropout_kind", dropout_kind, ("element", "channel"), none_ok=True)
    checks.integer("parallel", parallel, 0)
    check_parallel(parallel + 1, "parallel")  # the workers and the process timing them
    checks.integer("threads", threads, 1, none_ok=True)
    data_dir = checks.path_or_none("data_dir", data_dir)
    configs = None if configs is None else checks.paths("configs", configs)
    loaded = []
    for config in configs or BENCH_CONFIGS:
        arch, doc = load_arch(config_path(config))
        if dropout_kind:
            arch = dc.replace(arch, dropout_kind=dropout_kind)
        loaded.append((config, arch, Recipe.from_dict(doc.get("recipe", {}))
                       .replace(precision=precision)))
    dev = resolve_device(device)
    set_threads(threads)
    data = load_dataset(data_dir).to(dev)
    for config, arch, _ in loaded:  # before any timing: a label of 10 crashed mid-run
        data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
    rows = []
    for config, arch, recipe in loaded:
        if on_network is not None:
            on_network(config, arch)
        figures = run_bench(arch, data, recipe, steps=steps, rounds=rounds,
                            notebook_steps=notebook_steps, parallel_workers=parallel,
                            data_dir=data_dir)
        rows.append({"config": config, "params": arch.n_params(), "batch_size": recipe.batch_size,
                     "dropout": arch.dropout, "dropout_kind": arch.dropout_kind,
                     "device": describe_device(dev), "date": _time.strftime("%Y-%m-%d"),
                     **figures})
    return rows


def train(config, *, epochs: int | None = None, last_n: int | None = None,
          seed: int | None = None, batch_size: int | None = None, precision: str | None = None,
          dropout_rng: str | None = None, eval_precision: str | None = None,
          weights: str | None = None, seeds: int | None = None, jobs: int = 1,
          data_dir: str | None = None, val_split: int = 0, split_seed: int = 0,
          device: str = "auto", threads: int | None = None, on_start: Callable | None = None,
          on_epoch: Callable | None = None, on_step: Callable | None = None,
          on_seed: Callable | None = None) -> dict | SeedRun:
    """Train one architecture file (a winner JSON carries its recipe, seed and threads), as
    `nas-mnist train`; returns the run's summary (what `--json-out` writes).

    `weights`: evaluate those weights on the test set instead (no training). `seeds`: train
    on seeds 0..K-1 (`jobs` at a time) and return them as a `SeedRun` (its `to_json()` is
    what `--json-out` writes). The callbacks only
    show progress: `on_start(TrainPlan)`, `on_epoch(EpochStats)`, `on_step()`, `on_seed(run)`."""
    import dataclasses as dc
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.device import resolve_device, set_threads
    from nas_mnist.engine.evaluate import evaluate_candidate, evaluate_weights
    from nas_mnist.spec.score import default_last_n
    for name, value, low in (("epochs", epochs, 1), ("last_n", last_n, 1), ("seed", seed, 0),
                             ("batch_size", batch_size, 1), ("seeds", seeds, 1),
                             ("val_split", val_split, 0), ("split_seed", split_seed, 0),
                             ("jobs", jobs, 1), ("threads", threads, 1)):
        checks.integer(name, value, low, none_ok=name not in ("jobs", "val_split",
                                                              "split_seed"))
    weights = checks.path_or_none("weights", weights)
    data_dir = checks.path_or_none("data_dir", data_dir)
    arch, stored, norm, seed_of, threads_of = _config_of(config)
    epochs = epochs or stored.epochs
    # the file's last-N for the file's epochs; other epochs get the default for their length
    last_n = last_n or (stored.last_n if epochs == stored.epochs else default_last_n(epochs))
    if last_n > epochs:
        raise ApiError(f"last_n {last_n} exceeds the {epochs} training epochs")
    recipe = stored.replace(epochs=epochs, last_n=last_n, batch_size=batch_size,
                            precision=precision, dropout_rng=dropout_rng,
                            eval_precision=eval_precision)
    if seeds:
        if seed is not None or weights:
            raise ApiError("seeds trains new networks on seeds 0..K-1: leave out seed and "
                           "weights", params=("seed", "weights"))
        return _train_seeds(arch, recipe, seeds, jobs=jobs, data_dir=data_dir,
                            val_split=val_split, split_seed=split_seed, device=device,
                            threads=threads, on_start=on_start, on_seed=on_seed)
    if jobs != 1:
        raise ApiError("jobs needs seeds", params=("seeds",))
    dev = resolve_device(device)
    set_threads(threads or threads_of)  # a winner's threads: its CPU numerics
    data = load_dataset(data_dir, val_split=val_split, seed=split_seed).to(dev)
    data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
    if weights:
        if norm is not None:  # the statistics these weights were trained with, not this loader's
            data = dc.replace(data, mean=norm[0], std=norm[1])
        return {**evaluate_weights(arch, data, weights, recipe), "data": data}
    seed = seed if seed is not None else seed_of
    if on_start is not None:
        on_start(TrainPlan(arch, recipe, seed, data, dev))
    run = evaluate_candidate(arch, recipe, data, seed=seed, on_epoch=on_epoch, on_step=on_step)
    return run.summary(data)


def _config_of(config):
    """(arch, stored recipe, normalisation, seed, threads) of a config dict or a file."""
    from nas_mnist.errors import SpecError
    from nas_mnist.spec.recipe import Recipe
    from nas_mnist.spec.winner import WinnerFile
    if isinstance(config, dict):
        try:
            stored = Recipe.from_dict(config.get("recipe", {}))
        except SpecError as err:
            raise SpecError(f"config: {err}") from None
        return _arch_of(config), stored, None, int(config.get("seed", 0)), config.get("threads")
    winner = WinnerFile.read(config_path(str(config)))
    return winner.arch, winner.recipe, winner.normalisation, winner.seed, winner.threads


def _train_seeds(arch, recipe, seeds: int, *, jobs, data_dir, val_split, split_seed, device,
                 threads, on_start, on_seed) -> SeedRun:
    import dataclasses
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.device import resolve_device
    from nas_mnist.engine.seeds import confirm_seeds
    data = load_dataset(data_dir, val_split=val_split, seed=split_seed)
    data.check_fits(arch.in_channels, arch.image_size, arch.num_classes)
    if on_start is not None:
        on_start(TrainPlan(arch, recipe, 0, data, resolve_device(device)))
    run, = confirm_seeds([(None, arch.to_dict(), recipe.to_dict())], seeds,
                         data_dir=data_dir, val_split=val_split, split_seed=split_seed,
                         device=device, jobs=jobs, threads=threads, on_done=on_seed)
    return dataclasses.replace(run, data_checksum=data.checksum)


@dataclass
class Prediction:
    names: list[str]  # one per image ("file.png", "images.idx[3]", "array[3]")
    predicted: "np.ndarray"  # class indices
    accuracy: float | None = None  # percent, when labels were given
    caveats: list[str] = field(default_factory=list)  # about this file on this machine


def predict(model, images, labels=None) -> Prediction:
    """Class predictions of an exported model (.onnx, .torchscript.pt or a winner .json) for
    image files (one IDX file or PNGs) or an array of [0, 1] images, N x 1 x 28 x 28, as
    `nas-mnist predict`; `labels` (an IDX labels file or an array) adds the accuracy;
    `caveats` holds what to tell the user about this file on this CPU (`predict` prints them)."""
    import numpy as np
    from nas_mnist.engine.data import read_idx
    from nas_mnist.results.models import load_model, read_images
    model = checks.path_or_none("model", model)
    if model is None:
        raise ApiError("model must be a path to an .onnx, .torchscript.pt or winner .json file")
    if not isinstance(images, np.ndarray):
        images = checks.paths("images", images)
    if labels is not None and not isinstance(labels, np.ndarray):
        labels = checks.path_or_none("labels", labels)
    loaded = load_model(Path(model))
    if isinstance(images, np.ndarray):
        names = [f"array[{i}]" for i in range(len(images))]
        logits = loaded.logits(images.astype(np.float32))
    else:
        names, array = read_images([str(p) for p in images])
        logits = loaded.logits(array)
    predicted = logits.argmax(1)
    accuracy = None
    if labels is not None:
        truth = labels if isinstance(labels, np.ndarray) else read_idx(Path(labels))[0]
        if np.ndim(truth) != 1:
            given = "the array" if isinstance(labels, np.ndarray) else str(labels)
            raise ApiError(f"labels must be one class per image, shape (N,); {given} has "
                           f"shape {np.shape(truth)} (an images file?)")
        if len(truth) != len(predicted):
            raise ApiError(f"labels holds {len(truth):,} labels for {len(predicted):,} images")
        classes = logits.shape[1]
        outside = [int(v) for v in np.asarray(truth).ravel()
                   if not float(v).is_integer() or not 0 <= v < classes][:1]
        if outside:  # a label the model cannot predict: an accuracy would miscount silently
            raise ApiError(f"labels must be classes 0-{classes - 1} (the model's outputs); "
                           f"found {outside[0]}", params=("labels",))
        accuracy = 100.0 * int((np.asarray(truth) == predicted).sum()) / len(predicted)
    return Prediction(names, predicted, accuracy, loaded.caveats)


def load_winner(path) -> "torch.nn.Module":
    """An exported winner JSON (weights beside it) as an `nn.Module` taking raw [0, 1] images."""
    from nas_mnist.results.models import winner_module
    return winner_module(Path(path))
