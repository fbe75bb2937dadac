"""Build an `nn.Module` from an ArchConfig. The builder never sees a trial or a recipe."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from nas_mnist.spec.arch import ArchConfig, ConvSpec


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def _convs(arch: ArchConfig, c_in: int, spec: ConvSpec) -> OrderedDict:
    """The conv(s) of a block: one conv (full or grouped), or depthwise + pointwise."""
    if spec.kind != "separable":
        return OrderedDict(conv=nn.Conv2d(c_in, spec.out, spec.k, padding=spec.pad,
                                          groups=spec.groups, bias=arch.conv_bias))
    layers = OrderedDict(dw=nn.Conv2d(c_in, c_in, spec.k, padding=spec.pad, groups=c_in,
                                      bias=arch.conv_bias))
    if spec.mid_act:
        if arch.batch_norm:
            layers["dw_bn"] = nn.BatchNorm2d(c_in)
        layers["dw_relu"] = nn.ReLU(inplace=True)
    layers["conv"] = nn.Conv2d(c_in, spec.out, 1, bias=arch.conv_bias)
    return layers


def _block(arch: ArchConfig, c_in: int, c_out: int, k: int, pad: int, rate: float,
           act: bool = True, spec: ConvSpec | None = None) -> nn.Sequential:
    """conv -> [BN] -> ReLU -> [dropout], BN/dropout before or after the ReLU as configured."""
    layers = _convs(arch, c_in, spec or ConvSpec(c_out, pad=pad, k=k))
    if not act:
        return nn.Sequential(layers)
    bn = nn.BatchNorm2d(c_out) if arch.batch_norm else None
    drop = None
    if rate > 0:
        drop = nn.Dropout2d(rate) if arch.dropout_kind == "channel" else nn.Dropout(rate)
    if bn is not None and arch.bn_position == "before_relu":
        layers["bn"] = bn
    if drop is not None and arch.dropout_position == "before_relu":
        layers["drop"] = drop
    layers["relu"] = nn.ReLU(inplace=True)
    if bn is not None and arch.bn_position == "after_relu":
        layers["bn"] = bn
    if drop is not None and arch.dropout_position == "after_relu":
        layers["drop"] = drop
    return nn.Sequential(layers)


def build_model(arch: ArchConfig) -> nn.Sequential:
    """Return a model mapping (N, in_channels, H, W) images to (N, num_classes) logits.

    Module names follow the config: s1c2 is stage 1 conv 2, t1 transition 1, head.* the head.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if arch.input_pool > 1:
        layers["input_pool"] = nn.AvgPool2d(arch.input_pool)
    c = arch.in_channels
    for i, stage in enumerate(arch.stages, start=1):
        rate = arch.stage_rate(i - 1)
        for j, conv in enumerate(stage, start=1):
            layers[f"s{i}c{j}"] = _block(arch, c, conv.out, conv.k, conv.pad, rate, spec=conv)
            c = conv.out
        if i - 1 < len(arch.transitions):
            t = arch.transitions[i - 1]
            if t.conv1x1 and t.where == "before":
                layers[f"t{i}conv"] = _block(arch, c, t.conv1x1, 1, 0, 0.0, act=t.act)
                c = t.conv1x1
            layers[f"t{i}pool"] = nn.MaxPool2d(2)
            if t.conv1x1 and t.where == "after":
                layers[f"t{i}conv"] = _block(arch, c, t.conv1x1, 1, 0, 0.0, act=t.act)
                c = t.conv1x1
    head = arch.head
    if head.pre_gap:
        layers["pre_gap"] = _block(arch, c, head.pre_gap, 1, 0, 0.0)
        c = head.pre_gap
    n = arch.num_classes
    if head.kind == "conv_gap":
        layers["classifier"] = nn.Conv2d(c, n, 1, bias=head.bias)
        layers["gap"] = GlobalAvgPool()
        layers["flatten"] = nn.Flatten()
    elif head.kind == "gap_conv":
        layers["gap"] = GlobalAvgPool()
        layers["classifier"] = nn.Conv2d(c, n, 1, bias=head.bias)
        layers["flatten"] = nn.Flatten()
    else:
        layers["gap"] = GlobalAvgPool()
        layers["flatten"] = nn.Flatten()
        layers["classifier"] = nn.Linear(c, n, bias=head.bias)
    return nn.Sequential(layers)
