"""One training run of one architecture: build, count, train, summarise. No printing."""

from __future__ import annotations

import platform
from typing import Callable

import torch

from nas_mnist import __version__
from nas_mnist.arch import ArchConfig
from nas_mnist.builder import build_model
from nas_mnist.counting import count_macs, count_params
from nas_mnist.data import Dataset
from nas_mnist.recipe import Recipe
from nas_mnist.train import EpochStats, evaluate, train


def in_shape(arch: ArchConfig) -> tuple[int, int, int]:
    return (arch.in_channels, arch.image_size, arch.image_size)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def train_arch(arch: ArchConfig, data: Dataset, recipe: Recipe, *, seed: int = 0,
               on_epoch: Callable[[EpochStats], bool | None] | None = None,
               on_step: Callable[[], None] | None = None) -> tuple[dict, torch.nn.Module]:
    """Train `arch` with `recipe` on `data`; return (summary dict, trained model)."""
    device = data.train_x.device
    torch.manual_seed(seed)
    model = build_model(arch)
    n_params, macs = count_params(model), count_macs(model, in_shape(arch))
    model = model.to(device)
    result = train(model, data, recipe, seed=seed, on_epoch=on_epoch, on_step=on_step)
    summary = {
        "arch": arch.to_dict(),
        "recipe": recipe.to_dict(),
        "seed": seed,
        "params": n_params,
        "macs": macs,
        **result.to_dict(),
        "device": describe_device(device),
        "data_checksum": data.checksum,
        "version": __version__,
    }
    if data.eval_split == "val":
        summary["test_acc_final"], _ = evaluate(model, data.test_x, data.test_y, data)
    return summary, model


def evaluate_weights(arch: ArchConfig, data: Dataset, weights_path: str) -> dict:
    """Load a state_dict into `arch` and measure it on the test set (no training)."""
    model = build_model(arch)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"weights file {weights_path} does not exist") from None
    except Exception as err:  # torch raises many kinds for a corrupt file
        raise ValueError(f"cannot read weights {weights_path}: {err}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"weights {weights_path} do not fit this architecture: "
                         f"{str(err).splitlines()[0]}") from None
    model = model.to(data.test_x.device)
    acc, loss = evaluate(model, data.test_x, data.test_y, data)
    return {"split": "test", "acc": acc, "loss": loss, "images": len(data.test_x)}
