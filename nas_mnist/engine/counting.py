"""Count parameters and MACs with fvcore; format a per-layer table.

Unit convention, stated once: one fused multiply-add counts as one MAC (fvcore's "flop").
Counts are taken in eval mode on a batch of one image.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # fvcore touches torch.jit.script
    from fvcore.nn import FlopCountAnalysis, parameter_count

logging.getLogger("fvcore").setLevel(logging.ERROR)


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    out_shape: tuple[int, ...]
    n_params: int
    macs: int


def count_params(model: nn.Module) -> int:
    return int(parameter_count(model)[""])


def _analysis(model: nn.Module, in_shape: tuple[int, int, int]) -> FlopCountAnalysis:
    x = torch.zeros(1, *in_shape, device=next(model.parameters()).device)
    return (FlopCountAnalysis(model, x)
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
            .tracer_warnings("none"))


def count_macs(model: nn.Module, in_shape: tuple[int, int, int] = (1, 28, 28)) -> int:
    was_training = model.training
    model.eval()
    try:
        return int(_analysis(model, in_shape).total())
    finally:
        model.train(was_training)


def layer_table(model: nn.Module, in_shape: tuple[int, int, int] = (1, 28, 28)) -> list[LayerRow]:
    """One row per top-level block: output shape, parameters and MACs."""
    was_training = model.training
    model.eval()
    try:
        by_module = _analysis(model, in_shape).by_module()
        params = parameter_count(model)
        rows, x = [], torch.zeros(1, *in_shape, device=next(model.parameters()).device)
        with torch.no_grad():
            for name, module in model.named_children():
                x = module(x)
                kinds = [type(m).__name__ for m in module.modules() if not list(m.children())]
                rows.append(LayerRow(name, "+".join(kinds) or type(module).__name__,
                                     tuple(x.shape[1:]), int(params.get(name, 0)),
                                     int(by_module.get(name, 0))))
        return rows
    finally:
        model.train(was_training)


def format_table(rows: list[LayerRow]) -> str:
    lines = [f"{'layer':<11} {'modules':<34} {'output':>12} {'params':>8} {'MACs':>11}"]
    for r in rows:
        shape = "x".join(map(str, r.out_shape))
        lines.append(f"{r.name:<11} {r.kind:<34} {shape:>12} {r.n_params:>8,} {r.macs:>11,}")
    total_p, total_m = sum(r.n_params for r in rows), sum(r.macs for r in rows)
    lines.append(f"{'total':<11} {'':<34} {'':>12} {total_p:>8,} {total_m:>11,}")
    return "\n".join(lines)


# the layers with their own output buffer
_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Linear)


def measure_footprint(model: nn.Module, in_shape: tuple[int, int, int] = (1, 28, 28)):
    """`spec.footprint`'s two figures, measured with forward hooks on a built model: the
    summed output elements of every leaf module but a flatten, and the largest input + output
    of a conv, pool, GAP or classifier layer (the others run fused in place)."""
    from nas_mnist.engine.builder import GlobalAvgPool
    from nas_mnist.spec.footprint import Footprint
    totals = {"activations": 0, "peak": 0}

    def hook(module, inputs, output):
        if isinstance(module, nn.Flatten):
            return
        totals["activations"] += output[0].numel()
        if isinstance(module, (*_LAYERS, GlobalAvgPool)):
            totals["peak"] = max(totals["peak"], inputs[0][0].numel() + output[0].numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()  # dropout layers still run (as the identity) and are counted
    try:
        with torch.no_grad():
            model(torch.zeros(1, *in_shape, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return Footprint(totals["activations"], totals["peak"])
