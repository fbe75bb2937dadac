"""Training recipe: pure data (no torch), JSON round trip, validated when made."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from nas_mnist.errors import SpecError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "step", "cosine", "constant")
ANNEALS = ("cos", "linear")  # how a one-cycle schedule ramps (torch's anneal_strategy)
PRECISIONS = ("fp32", "bf16", "auto")
DROPOUT_RNGS = ("bernoulli", "hash")  # engine.dropout; a file without the key: bernoulli
EVAL_PRECISIONS = ("fp32", "train")  # train: evaluate in the precision the recipe trains in
# How the trainer runs, not what it trains: set by the study (StudyMeta), not by a space.
TRAINER_KEYS = ("dropout_rng", "eval_precision")
MAX_EPOCHS = 1000
MAX_BATCH = 65536


@dataclass(frozen=True)
class Recipe:
    epochs: int = 15
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05  # peak LR for OneCycle, initial LR otherwise
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    # One-cycle's shape (torch.optim.lr_scheduler.OneCycleLR's defaults): it starts at
    # lr / div_factor, rises to lr over the first pct_start of the steps, then falls to
    # lr / div_factor / final_div_factor, by cosine or in straight lines.
    anneal: str = "cos"
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    step_size: int = 5  # epochs between StepLR decays
    gamma: float = 0.1  # StepLR decay factor
    label_smoothing: float = 0.0
    rotate_deg: float = 10.0  # uniform in [-rotate_deg, +rotate_deg]
    translate: float = 0.1  # fraction of the image side, uniform in [-t, +t] per axis
    scale: float = 0.0  # uniform zoom factor in [1 - scale, 1 + scale]
    augment_p: float = 1.0  # the share of training images transformed (1: every one)
    precision: str = "fp32"  # bf16: autocast matmuls/convs to bfloat16 while training;
    # auto: bf16 on a GPU or a CPU with native bf16 (AVX512-BF16 or AMX), fp32 elsewhere
    # (emulated bf16 on an AVX2-only CPU trained 4x slower than fp32; engine.device)
    ema: float = 0.0  # > 0: evaluate (and keep) an exponential moving average of the weights
    last_n: int = 3  # epochs in the "last N" score
    # How the trainer runs, kept with the recipe so that a trial re-trains as it was scored.
    # The defaults are what older files were made with; new studies record "hash" and "train"
    # (3.8x cheaper dropout masks, 1.7-2.6x cheaper bf16 evaluations: docs/speed.md).
    dropout_rng: str = "bernoulli"  # element dropout's mask: torch's bernoulli_ or the hash
    eval_precision: str = "fp32"  # fp32, or "train": bf16 evaluation when training in bf16

    def __post_init__(self):
        self._check_types()
        checks = [
            (1 <= self.epochs <= MAX_EPOCHS, f"epochs must be in [1, {MAX_EPOCHS}]"),
            (1 <= self.batch_size <= MAX_BATCH, f"batch_size must be in [1, {MAX_BATCH}]"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.anneal in ANNEALS, f"anneal must be one of {ANNEALS}"),
            (0 < self.pct_start < 1, "pct_start must be in (0, 1)"),
            (self.div_factor >= 1, "div_factor must be >= 1"),
            (self.final_div_factor >= 1, "final_div_factor must be >= 1"),
            (self.step_size >= 1, "step_size must be >= 1"),
            (0 < self.gamma <= 1, "gamma must be in (0, 1]"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (0 <= self.rotate_deg <= 180, "rotate_deg must be in [0, 180]"),
            (0 <= self.translate < 0.5, "translate must be in [0, 0.5)"),
            (0 <= self.scale < 1, "scale must be in [0, 1)"),
            (0 <= self.augment_p <= 1, "augment_p must be in [0, 1]"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (0 <= self.ema < 1, "ema must be in [0, 1) (0: off)"),
            (self.dropout_rng in DROPOUT_RNGS, f"dropout_rng must be one of {DROPOUT_RNGS}"),
            (self.eval_precision in EVAL_PRECISIONS,
             f"eval_precision must be one of {EVAL_PRECISIONS}"),
            (1 <= self.last_n <= self.epochs, f"last_n must be in [1, epochs={self.epochs}]"),
        ]
        for ok, message in checks:
            if not ok:
                raise SpecError(f"recipe: {message}")

    def _check_types(self) -> None:
        """Strict types: a bool is not a number, a string is not a number, NaN is not a value."""
        for f in fields(self):
            value, kind = getattr(self, f.name), type(f.default)
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif kind is float:
                ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                      and math.isfinite(value))
            else:
                ok = isinstance(value, kind)
            if not ok:
                what = {bool: "true or false", int: "an integer", float: "a finite number",
                        str: "a string"}[kind]
                raise SpecError(f"recipe: {f.name} must be {what}, got {value!r}")

    def describe(self) -> str:
        """Short human-readable form of what a recipe search varies, e.g.
        'lr 0.18 cos@0.3, batch 64, wd 0.0001, aug r10 t0 s0 p1, ema 0.999'."""
        shape = (f" {self.anneal}@{self.pct_start:g}" if self.schedule == "onecycle"
                 else f" {self.schedule}")
        aug = f"r{self.rotate_deg:g} t{self.translate:g} s{self.scale:g} p{self.augment_p:g}"
        extra = f", ls {self.label_smoothing:g}" if self.label_smoothing else ""
        return (f"{self.optimizer} lr {self.lr:.3g}{shape}, batch {self.batch_size}, "
                f"wd {self.weight_decay:g}, aug {aug}{extra}, ema {self.ema:g}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        if not isinstance(data, dict):
            raise SpecError("recipe: expected an object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise SpecError(f"recipe: unknown key(s) {sorted(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "Recipe":
        return Recipe.from_dict({**self.to_dict(), **{k: v for k, v in changes.items()
                                                       if v is not None}})

    def same_training(self, other: "Recipe") -> bool:
        """Equal but for how the trainer runs (dropout mask, evaluation precision) and the
        precision, which the space or the hardware decides: the same network trained this way
        scores what it scored, within the noise of those."""
        return other.replace(**{k: getattr(self, k) for k in (*TRAINER_KEYS, "precision")}) == self
