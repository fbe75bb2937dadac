"""Train one model on tensors resident on the device; evaluate after every epoch.

Batches are index slices of a seeded permutation; augmentation runs on whole batches.
The trainer never imports optuna: a search hooks in through `on_epoch`, which may return
True to stop early.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nas_mnist.engine.augment import random_affine
from nas_mnist.engine.data import Dataset
from nas_mnist.engine.device import resolve_precision
from nas_mnist.engine.kernels import fast_layers
from nas_mnist.errors import NasMnistError
from nas_mnist.spec.recipe import Recipe
from nas_mnist.spec.score import last_n_score

EVAL_BATCH = 1000  # measured fastest of 1000/2000/5000 on the 2-core CPU


class NonFiniteLoss(NasMnistError, RuntimeError):
    """The training loss became NaN or infinite (a search fails the trial and goes on; `train`
    reports it in one line)."""


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    eval_acc: float  # percent, on the eval split
    eval_loss: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    eval_split: str  # "test" or "val": what eval_acc was measured on
    epochs: list[EpochStats] = field(default_factory=list)
    last_n: int = 3
    stopped_early: bool = False
    seconds: float = 0.0
    test_acc_final: float | None = None  # with a validation split: test accuracy at the end
    precision: str = "fp32"  # what the training ran in (a recipe's "auto" resolved)
    eval_precision: str = "fp32"  # what the evaluations ran in

    @property
    def accs(self) -> list[float]:
        return [e.eval_acc for e in self.epochs]

    @property
    def last_n_min(self) -> float:
        return last_n_score(self.accs, self.last_n, "min")

    @property
    def last_n_mean(self) -> float:
        return last_n_score(self.accs, self.last_n, "mean")

    def to_dict(self) -> dict:
        return {
            "eval_split": self.eval_split,
            f"{self.eval_split}_acc": self.accs,
            f"{self.eval_split}_loss": [e.eval_loss for e in self.epochs],
            "train_loss": [e.train_loss for e in self.epochs],
            "epoch_seconds": [e.seconds for e in self.epochs],
            "last_n": self.last_n,
            "last_n_min": self.last_n_min,
            "last_n_mean": self.last_n_mean,
            "stopped_early": self.stopped_early,
            "precision": self.precision,
            "eval_precision": self.eval_precision,
            "seconds": self.seconds,
            "epochs": [asdict(e) for e in self.epochs],
            **({"test_acc_final": self.test_acc_final} if self.test_acc_final is not None else {}),
        }


def normalise(x: torch.Tensor, data: Dataset) -> torch.Tensor:
    return (x - data.mean) / data.std


def _autocast(precision: str, device: torch.device):
    return (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
            else nullcontext())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: Dataset,
             batch_size: int = EVAL_BATCH, precision: str = "fp32") -> tuple[float, float]:
    """Accuracy (percent) and mean loss over all of (x, y), in large batches, no gradients;
    in bf16 autocast with `precision="bf16"` (2x faster on a CPU with native bf16)."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        with _autocast(precision, x.device):
            logits = model(normalise(x[start:start + batch_size], data))
        target = y[start:start + batch_size]
        loss_sum += float(F.cross_entropy(logits.float(), target, reduction="sum"))
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    return 100.0 * correct / len(x), loss_sum / len(x)


class WeightsError(NasMnistError):
    """A weights file is missing, unreadable or does not fit the architecture."""


MAX_WEIGHTS_BYTES = 256 << 20  # a 20,000-parameter network's state_dict is ~100 KB


def load_state(model: nn.Module, weights_path) -> nn.Module:
    """Load a saved state_dict into `model`; a bad file is a WeightsError, not a traceback."""
    import io
    from nas_mnist.files import FileReadError, read_bounded
    try:
        data = read_bounded(weights_path, MAX_WEIGHTS_BYTES, "weights file")
    except FileReadError as err:
        raise WeightsError(str(err)) from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a corrupt or truncated file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(f"weights file {weights_path} ({len(data):,} bytes) is cut short "
                           f"or not a state_dict saved by torch: {reason[:160]}") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise WeightsError(f"weights {weights_path} do not fit this architecture: "
                           f"{str(err).splitlines()[0]}") from None
    return model


class WeightEMA:
    """Exponential moving average of a model's state: weights and batch-norm statistics.

    The decay ramps up as min(decay, (1 + k) / (10 + k)) after k updates, so the random
    initial weights fade fast (as in timm's ModelEmaV2).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).requires_grad_(False)
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self._avg = [e for e, _ in pairs if e.is_floating_point()]
        self._live = [m for e, m in pairs if e.is_floating_point()]
        self._copy = [(e, m) for e, m in pairs if not e.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._avg, self._live, 1.0 - decay)
        for avg, live in self._copy:
            avg.copy_(live)


def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = model.parameters()
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov and recipe.momentum > 0,
                               weight_decay=recipe.weight_decay)
    cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int):
    """Return (scheduler or None, steps per scheduler.step()): per batch, or per epoch."""
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe.lr, total_steps=total, pct_start=recipe.pct_start,
            anneal_strategy=recipe.anneal, div_factor=recipe.div_factor,
            final_div_factor=recipe.final_div_factor), 1
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total), 1
    if recipe.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, recipe.step_size, recipe.gamma), steps_per_epoch
    return None, steps_per_epoch


def eval_precision(recipe: Recipe, device: torch.device) -> str:
    """What `recipe` evaluates in on `device`: its training precision with `eval_precision:
    train`, else fp32."""
    return resolve_precision(recipe.precision, device) if recipe.eval_precision == "train" \
        else "fp32"


def train(model: nn.Module, data: Dataset, recipe: Recipe, *, seed: int = 0,
          on_epoch: Callable[[EpochStats], bool | None] | None = None,
          on_step: Callable[[], None] | None = None) -> TrainResult:
    """Train `model` (already on the data's device) with `recipe`; evaluate after each epoch.

    With `recipe.ema`, every evaluation uses the moving average of the weights, and `model`
    ends holding that average: the weights whose accuracy was reported last.
    """
    device = data.train_x.device
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = _optimizer(model, recipe)
    ema = WeightEMA(model, recipe.ema) if recipe.ema else None
    n = len(data.train_x)
    steps_per_epoch = max(1, n // recipe.batch_size)
    sched, sched_every = _scheduler(opt, recipe, steps_per_epoch)
    precision = resolve_precision(recipe.precision, device)
    autocast = _autocast(precision, device)
    result = TrainResult(eval_split=data.eval_split, last_n=recipe.last_n, precision=precision,
                         eval_precision=eval_precision(recipe, device))
    models = (model, ema.model) if ema else (model,)
    with fast_layers(*models, dropout=recipe.dropout_rng == "hash"):
        _epochs(model, data, recipe, result, gen=gen, opt=opt, ema=ema, sched=sched,
                sched_every=sched_every, autocast=autocast, on_epoch=on_epoch, on_step=on_step)
    if ema is not None:
        model.load_state_dict(ema.model.state_dict())
    return result


def _epochs(model, data, recipe, result, *, gen, opt, ema, sched, sched_every, autocast,
            on_epoch, on_step) -> None:
    device = data.train_x.device
    n = len(data.train_x)
    steps_per_epoch = max(1, n // recipe.batch_size)
    start = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, device=device, generator=gen)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            x = random_affine(data.train_x[idx], rotate_deg=recipe.rotate_deg,
                              translate=recipe.translate, scale=recipe.scale, generator=gen,
                              p=recipe.augment_p)
            with autocast:
                logits = model(normalise(x, data))
            loss = F.cross_entropy(logits.float(), data.train_y[idx],
                                   label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update()
            if sched is not None and (sched_every == 1 or step == steps_per_epoch - 1):
                sched.step()
            loss_sum += loss.detach()
            if on_step is not None:
                on_step()
        train_loss = float(loss_sum) / steps_per_epoch
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(f"training loss became {train_loss} in epoch {epoch}")
        acc, eval_loss = evaluate(ema.model if ema else model, data.eval_x, data.eval_y, data,
                                  precision=result.eval_precision)
        stats = EpochStats(epoch, train_loss, acc, eval_loss, opt.param_groups[0]["lr"],
                           time.perf_counter() - t0)
        result.epochs.append(stats)
        if on_epoch is not None and on_epoch(stats):
            result.stopped_early = True
            break
    result.seconds = time.perf_counter() - start
