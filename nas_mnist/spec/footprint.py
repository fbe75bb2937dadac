"""What a network costs to run, from its config alone (pure arithmetic, microseconds).

Two figures, per image:

- **activations**: the summed output elements of every layer the builder makes (each conv,
  batch norm, ReLU, dropout, pool, global average pool and classifier; a flatten is a view).
  Training time follows this figure, not MACs or parameters: a training step writes, keeps
  for backward and reads back every one of these tensors (findings/search-economy.md, 1a).
- **peak**: the largest number of elements alive at once under sequential inference, as a
  microcontroller runtime executes it: batch norm, ReLU and dropout fused into the conv
  before them (folded at export), so each conv, pool, GAP or classifier layer needs its input
  and its output buffers at once; the peak is the largest input + output over those layers
  (a separable conv is two layers, and its depthwise output counts as a map of its own).
  Bytes: 1 per element at int8, 4 at fp32.

The tests check both against forward hooks on the built model for random samples of every
shipped space.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas_mnist.spec.arch import ArchConfig


@dataclass(frozen=True)
class Footprint:
    activations: int  # elements per image, every layer's output summed
    peak: int  # elements alive at once at the worst layer (input + output)

    @property
    def peak_int8_bytes(self) -> int:
        return self.peak

    @property
    def peak_fp32_bytes(self) -> int:
        return 4 * self.peak


class _Walk:
    def __init__(self, arch: ArchConfig):
        self.arch = arch
        self.c, self.s = arch.in_channels, arch.image_size
        self.activations, self.peak = 0, 0

    def layer(self, c_out: int, s_out: int, *, fused: int = 0) -> None:
        """A conv/pool/GAP/classifier layer from the current map to c_out x s_out^2, followed
        by `fused` elementwise layers of the same size (BN, ReLU, dropout)."""
        size_in, size_out = self.c * self.s * self.s, c_out * s_out * s_out
        self.peak = max(self.peak, size_in + size_out)
        self.activations += size_out * (1 + fused)
        self.c, self.s = c_out, s_out

    def block(self, c_out: int, k: int, pad: int, *, act: bool, rate: float = 0.0,
              separable: bool = False, mid_act: bool = True) -> None:
        bn = 1 if self.arch.batch_norm else 0
        s_out = self.s - k + 1 + 2 * pad
        if separable:
            self.layer(self.c, s_out, fused=(bn + 1) if mid_act else 0)  # depthwise
            s_out = self.s  # the pointwise 1x1 keeps the size
            k = 1
        self.layer(c_out, s_out, fused=(bn + 1 + (rate > 0)) if act else 0)


def footprint(arch: ArchConfig) -> Footprint:
    """Activations and peak live elements of `arch` for one image (see the module doc)."""
    w = _Walk(arch)
    if arch.input_pool > 1:
        w.layer(w.c, w.s // arch.input_pool)  # the image's 2x2 average pool
    for i, stage in enumerate(arch.stages):
        rate = arch.stage_rate(i)
        for conv in stage:
            w.block(conv.out, conv.k, conv.pad, act=True, rate=rate,
                    separable=conv.kind == "separable", mid_act=conv.mid_act)
        if i < len(arch.transitions):
            t = arch.transitions[i]
            if t.conv1x1 and t.where == "before":
                w.block(t.conv1x1, 1, 0, act=t.act)
            w.layer(w.c, w.s // 2)  # the 2x2 max-pool
            if t.conv1x1 and t.where == "after":
                w.block(t.conv1x1, 1, 0, act=t.act)
    head = arch.head
    if head.pre_gap:
        w.block(head.pre_gap, 1, 0, act=True)
    n = arch.num_classes
    if head.kind == "conv_gap":
        w.layer(n, w.s)  # the 1x1 classifier
        w.layer(n, 1)  # GAP
    else:
        w.layer(w.c, 1)  # GAP
        w.layer(n, 1)  # 1x1 conv or linear on the pooled vector
    return Footprint(w.activations, w.peak)
