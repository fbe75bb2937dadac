"""Seconds per epoch from a network's activation count, calibrated on the machine at hand.

Training time follows activations (the elements every layer writes and backward reads again),
not MACs or parameters: over 110 one-thread trials on a 2-core Xeon, seconds per epoch =
3.4 + 0.243 x thousands of activations per image fitted with R^2 0.86, MACs alone 0.48
(findings/search-economy.md). The coefficients are this machine's, so a search measures them at
start-up: it times a few training steps (the trainer's own step: augmentation, bf16 autocast
when the recipe asks, SGD, EMA) of three reference networks that span the activation range and
fits time per image = a + b x activations. The step runs the layers a new study trains with
(engine.kernels: hash dropout, the max-pool kernel). An epoch is the training images at that
rate plus an evaluation pass (a forward pass, taken as a third of a training step's work).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nas_mnist.engine.augment import random_affine
from nas_mnist.engine.builder import build_model
from nas_mnist.engine.kernels import fast_layers
from nas_mnist.spec.arch import ArchConfig, ConvSpec, Head, Transition
from nas_mnist.spec.footprint import footprint

# Three plain networks from ~20 K to ~150 K activations per image (a 28x28 input).
_REFERENCES = (
    ArchConfig(stages=((ConvSpec(8, pad=0),), (ConvSpec(8, pad=0),)),
               transitions=(Transition(),), dropout=0.02),
    ArchConfig(stages=((ConvSpec(8, pad=0), ConvSpec(12, pad=0)),
                       (ConvSpec(16, pad=0), ConvSpec(16, pad=0), ConvSpec(16, pad=0))),
               transitions=(Transition(),), head=Head(pre_gap=16), dropout=0.02),
    ArchConfig(stages=((ConvSpec(16), ConvSpec(16), ConvSpec(16)),
                       (ConvSpec(16, pad=0), ConvSpec(16, pad=0))),
               transitions=(Transition(),), dropout=0.02),
)
EVAL_WORK = 1 / 3  # an evaluated image costs about a third of a trained one (forward only)


@dataclass(frozen=True)
class CostModel:
    """Seconds per training image = `intercept` + `slope` x activations; per epoch scaled by
    the data set's sizes."""

    intercept: float  # seconds per image
    slope: float  # seconds per image per activation element
    n_train: int
    n_eval: int
    threads: int
    device: str

    def image_seconds(self, activations: int) -> float:
        return max(self.intercept + self.slope * activations, 1e-7)

    def epoch_seconds(self, activations: int) -> float:
        return self.image_seconds(activations) * (self.n_train + EVAL_WORK * self.n_eval)

    def describe(self) -> str:
        """'s/epoch ~ 2.1 + 0.19 x K activations (calibrated: cpu, 1 thread)'."""
        per_epoch = self.n_train + EVAL_WORK * self.n_eval
        where = (f"{self.device}, {self.threads} thread{'s' * (self.threads != 1)}"
                 if self.device == "cpu" else self.device)
        return (f"s/epoch ~ {self.intercept * per_epoch:.1f} + "
                f"{self.slope * per_epoch * 1000:.3f} x K activations (calibrated here: {where})")


def _step_seconds(arch: ArchConfig, device: torch.device, *, batch: int, steps: int,
                  bf16: bool) -> float:
    torch.manual_seed(0)
    model = build_model(arch).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, arch.in_channels, arch.image_size, arch.image_size, device=device)
    y = torch.randint(0, arch.num_classes, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def step():
        xb = random_affine(x, rotate_deg=10.0, translate=0.05, scale=0.0, generator=gen)
        with autocast:
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    best = float("inf")
    with fast_layers(model, dropout=True):  # what a new study's trials run
        step()  # warm-up: first-call allocations and kernel selection
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        for _ in range(3):  # the fastest of three timings: less noise from other work
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, (time.perf_counter() - t0) / steps)
    return best


def calibrate(device: torch.device, *, n_train: int, n_eval: int, batch: int = 128,
              steps: int = 1, bf16: bool = True) -> CostModel:
    """Time the reference networks on `device` with the current torch thread count and fit
    the line; timings that fall with size are taken again, and a line that does not rise is
    replaced by one through the origin. It only feeds the header and the progress
    estimates, and every search pays it: a warm-up and the fastest of three single steps
    per network, about a second on one thread (ten steps each took 2-4 s; measured on a
    2-core AMD EPYC, 2026-12-03)."""
    acts = [footprint(a).activations for a in _REFERENCES]  # ascending

    def timings() -> list[float]:
        return [_step_seconds(a, device, batch=batch, steps=steps, bf16=bf16) / batch
                for a in _REFERENCES]

    secs = timings()
    if secs != sorted(secs):  # a bigger network timed faster: another process had the core
        secs = [min(a, b) for a, b in zip(secs, timings())]  # once more, the faster of each
    n = len(acts)
    mean_a, mean_s = sum(acts) / n, sum(secs) / n
    var = sum((a - mean_a) ** 2 for a in acts)
    slope = sum((a - mean_a) * (s - mean_s) for a, s in zip(acts, secs)) / var
    intercept = mean_s - slope * mean_a
    if slope <= 0 or intercept < 0:
        # noise (a stall while timing the smallest network made the line flat or falling:
        # "806.8 + 0.000 x K"); a line through the origin instead (least squares), which
        # keeps time growing with activations as it does
        intercept, slope = 0.0, sum(a * s for a, s in zip(acts, secs)) / sum(a * a for a in acts)
    return CostModel(intercept=intercept, slope=slope, n_train=n_train,
                     n_eval=n_eval, threads=torch.get_num_threads(), device=device.type)
