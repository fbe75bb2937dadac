"""A network as integer arithmetic: the full-int8 graph that `.tflite` and C exports write.

`quantize(model, calibration)` folds a winner's network (input normalisation, batch norm,
biases) into a short list of integer ops and quantizes it the way TensorFlow Lite does:

- weights int8, symmetric, one scale per output channel; biases int32 at input x weight scale;
- activations int8, asymmetric, one scale and zero point per tensor from the min and max seen
  on the calibration images (training images, never test images); a fused ReLU clamps at the
  zero point;
- the input is the raw pixel minus 128 as int8 (what a camera or a microcontroller has), its
  scale and zero point chosen so that it reads as the normalised image: scale 1 / (255 std),
  zero point round(255 mean) - 128 (the normalisation mean moves by at most half a grey
  level);
- requantization by a 32-bit fixed-point multiplier and shift per channel
  (`QuantizeMultiplier` / `MultiplyByQuantizedMultiplier` of TFLite's reference kernels).

`Int8Graph.run` executes the graph in integers exactly as those reference kernels do (and as
TFLite Micro's, which use them): the C export is checked against it bit for bit. Products are
summed in float64, exact for these sizes (every partial sum is an integer far below 2^53).

The ops are the few the builder makes: conv (full or grouped, fused ReLU), depthwise conv
(a separable conv's first half, and a batch norm after a ReLU as a 1x1 per-channel scale),
2x2 max pool, 2x2 average pool (a downsampled input), global average pool, and a reshape to (1, classes) at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas_mnist.results.models import DeployError, Normalised, int8_pixels

INT8_MIN, INT8_MAX = -128, 127


@dataclass(frozen=True)
class QParams:
    """real = scale * (q - zero)"""
    scale: float
    zero: int

    @classmethod
    def of_range(cls, lo: float, hi: float) -> "QParams":
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = _f32((hi - lo) / 255.0 or 1.0)
        return cls(scale, int(np.clip(round(INT8_MIN - lo / scale), INT8_MIN, INT8_MAX)))


def _f32(x):
    """A scale as the file stores it (float32): runtimes derive their multipliers from these,
    so ours must too, or a rounding step differs now and then."""
    return np.asarray(x, np.float32).astype(np.float64) if np.ndim(x) else float(np.float32(x))


@dataclass
class Op:
    """One integer op. `kind`: conv, depthwise, maxpool, avgpool (global), avgpool2 (2x2,
    stride 2: an image's downsampling). Conv-like ops hold int8
    weights (conv: out, k, k, in/groups; depthwise: 1, k, k, channels: TFLite's layouts),
    int32 biases and per-channel multipliers; pools keep their input's quantization."""
    kind: str
    shape: tuple  # output (H, W, C)
    out: QParams
    k: int = 1
    pad: int = 0
    groups: int = 1
    relu: bool = False
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    w_scale: np.ndarray | None = None
    multiplier: np.ndarray | None = None
    shift: np.ndarray | None = None

    @property
    def act_range(self) -> tuple[int, int]:
        return (max(INT8_MIN, self.out.zero) if self.relu else INT8_MIN), INT8_MAX


@dataclass
class Int8Graph:
    input_shape: tuple  # (H, W, C)
    input: QParams
    ops: list[Op] = field(default_factory=list)

    @property
    def classes(self) -> int:
        return self.ops[-1].shape[-1]

    def quantize_images(self, images: np.ndarray) -> np.ndarray:
        return int8_pixels(images)

    @torch.no_grad()
    def run(self, q: np.ndarray) -> np.ndarray:
        """int8 NHWC input -> int8 logits (N, classes), as TFLite's reference kernels compute."""
        x = torch.from_numpy(np.ascontiguousarray(q.transpose(0, 3, 1, 2))).long()
        zero = self.input.zero
        for op in self.ops:
            x = _run_op(op, x, zero)
            zero = op.out.zero
        return x.permute(0, 2, 3, 1).reshape(len(x), -1).numpy().astype(np.int8)  # NHWC

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.run(self.quantize_images(images)).argmax(1)

    def dequantize(self, logits: np.ndarray) -> np.ndarray:
        out = self.ops[-1].out
        return (logits.astype(np.float32) - out.zero) * np.float32(out.scale)

    def tensor_bytes(self) -> list[int]:
        """int8 bytes of the input and of each op's output, in order."""
        return [math.prod(self.input_shape)] + [math.prod(op.shape) for op in self.ops]

    def peak_bytes(self) -> int:
        """The largest input + output of one op: `spec.footprint`'s peak, and the C arena."""
        sizes = self.tensor_bytes()
        return max(a + b for a, b in zip(sizes, sizes[1:]))

    def weight_bytes(self) -> int:
        """Constant bytes: int8 weights, int32 biases, int32 multipliers and shifts."""
        return sum(op.weight.size + 4 * op.bias.size + 8 * op.multiplier.size
                   for op in self.ops if op.weight is not None)


def _run_op(op: Op, x: torch.Tensor, zero: int) -> torch.Tensor:
    if op.kind in ("conv", "depthwise"):
        w = torch.from_numpy(op.weight.astype(np.float64))
        if op.kind == "depthwise":  # (1, k, k, C) -> (C, 1, k, k)
            w, groups = w.permute(3, 0, 1, 2), x.shape[1]
        else:  # (O, k, k, I/g) -> (O, I/g, k, k)
            w, groups = w.permute(0, 3, 1, 2), op.groups
        acc = F.conv2d((x - zero).double(), w.contiguous(), padding=op.pad, groups=groups)
        acc = acc.round().long() + torch.from_numpy(op.bias.astype(np.int64))[:, None, None]
        y = requantize(acc, torch.from_numpy(op.multiplier)[:, None, None],
                       torch.from_numpy(op.shift)[:, None, None]) + op.out.zero
        lo, hi = op.act_range
        return y.clamp(lo, hi)
    if op.kind == "maxpool":
        return F.max_pool2d(x.double(), 2).long()
    if op.kind in ("avgpool", "avgpool2"):  # the sum, then division rounded half away from 0
        if op.kind == "avgpool":
            n, acc = x.shape[2] * x.shape[3], x.sum(dim=(2, 3), keepdim=True)
        else:  # 2x2, stride 2 (an odd last row or column is dropped, as in PyTorch)
            n, acc = 4, (F.avg_pool2d(x.double(), 2) * 4).round().long()
        half = n // 2
        y = torch.where(acc > 0, (acc + half) // n, -((half - acc) // n))
        return y.clamp(INT8_MIN, INT8_MAX)
    raise DeployError(f"int8: unknown op {op.kind!r}")


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: m = q * 2^(shift - 31), q a 31-bit fixed-point mantissa."""
    if m == 0:
        return 0, 0
    mantissa, shift = math.frexp(m)
    q = round(mantissa * (1 << 31))
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def requantize(acc: torch.Tensor, multiplier: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """TFLite's MultiplyByQuantizedMultiplier on int64 tensors: a rounding doubling high
    multiply by the 32-bit multiplier, then a rounding right shift."""
    left, right = shift.clamp(min=0), (-shift).clamp(min=0)
    ab = (acc << left) * multiplier
    nudged = ab + torch.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = torch.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))  # C's division by 2^31
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (high < 0).long()
    return (high >> right) + ((high & mask) > threshold).long()


# --- from a PyTorch network to float ops, then to integer ops -----------------------------

@dataclass
class _FloatOp:
    kind: str
    weight: torch.Tensor | None = None  # OIHW
    bias: torch.Tensor | None = None
    k: int = 1
    pad: int = 0
    groups: int = 1
    relu: bool = False


def _leaves(module: nn.Module):
    children = list(module.children())
    if not children:
        yield module
    for child in children:
        yield from _leaves(child)


def fold(model: Normalised) -> list[_FloatOp]:
    """The network as conv / depthwise / pool ops with batch norm and biases folded in."""
    from nas_mnist.engine.builder import GlobalAvgPool
    ops: list[_FloatOp] = []
    for layer in _leaves(model.model):
        last = ops[-1] if ops else None
        if isinstance(layer, nn.Conv2d):
            if layer.stride != (1, 1) or layer.dilation != (1, 1) or \
                    layer.kernel_size[0] != layer.kernel_size[1] or \
                    layer.padding[0] != layer.padding[1]:
                raise DeployError(f"int8: a conv with stride {layer.stride}, dilation "
                                  f"{layer.dilation}, kernel {layer.kernel_size} or padding "
                                  f"{layer.padding} cannot be exported")
            w = layer.weight.detach().double()
            b = (layer.bias.detach().double() if layer.bias is not None
                 else torch.zeros(w.shape[0], dtype=torch.float64))
            depthwise = layer.groups > 1 and layer.groups == layer.in_channels == w.shape[0]
            ops.append(_FloatOp("depthwise" if depthwise else "conv", w, b,
                                layer.kernel_size[0], layer.padding[0], layer.groups))
        elif isinstance(layer, nn.Linear):
            w = layer.weight.detach().double()[:, :, None, None]
            b = (layer.bias.detach().double() if layer.bias is not None
                 else torch.zeros(w.shape[0], dtype=torch.float64))
            ops.append(_FloatOp("conv", w, b))
        elif isinstance(layer, nn.BatchNorm2d):
            scale = layer.weight.detach().double() / torch.sqrt(
                layer.running_var.double() + layer.eps)
            shift = layer.bias.detach().double() - layer.running_mean.double() * scale
            if last is not None and last.kind in ("conv", "depthwise") and not last.relu:
                last.weight = last.weight * scale.view(-1, 1, 1, 1)
                last.bias = last.bias * scale + shift
            else:  # after a ReLU: its own per-channel scale, a 1x1 depthwise conv
                ops.append(_FloatOp("depthwise", scale.view(-1, 1, 1, 1), shift,
                                    groups=len(scale)))
        elif isinstance(layer, nn.ReLU):
            if last is None or last.kind not in ("conv", "depthwise") or last.relu:
                raise DeployError("int8: a ReLU that follows no conv cannot be fused")
            last.relu = True
        elif isinstance(layer, nn.MaxPool2d):
            if layer.kernel_size not in (2, (2, 2)) or layer.stride not in (2, (2, 2)) or \
                    layer.padding not in (0, (0, 0)) or layer.ceil_mode:
                raise DeployError("int8: only a 2x2 max pool of stride 2 can be exported")
            ops.append(_FloatOp("maxpool"))
        elif isinstance(layer, GlobalAvgPool):
            ops.append(_FloatOp("avgpool"))
        elif isinstance(layer, nn.AvgPool2d):
            if layer.kernel_size not in (2, (2, 2)) or layer.stride not in (2, (2, 2)) or \
                    layer.padding not in (0, (0, 0)) or layer.ceil_mode:
                raise DeployError("int8: only a 2x2 average pool of stride 2 can be exported")
            ops.append(_FloatOp("avgpool2"))
        elif isinstance(layer, (nn.Dropout, nn.Dropout2d, nn.Flatten, nn.Identity)):
            continue  # nothing at inference; the graph ends with a reshape to (1, classes)
        else:
            raise DeployError(f"int8: a {type(layer).__name__} layer cannot be exported")
    if not ops or ops[-1].kind not in ("conv", "avgpool"):
        raise DeployError("int8: the network must end in a classifier or a global average pool")
    return ops


def _run_float(op: _FloatOp, x: torch.Tensor) -> torch.Tensor:
    if op.kind in ("conv", "depthwise"):
        y = F.conv2d(x, op.weight, op.bias, padding=op.pad, groups=op.groups)
        return F.relu(y) if op.relu else y
    if op.kind == "maxpool":
        return F.max_pool2d(x, 2)
    if op.kind == "avgpool2":
        return F.avg_pool2d(x, 2)
    return x.mean(dim=(2, 3), keepdim=True)


@torch.no_grad()
def quantize(model: Normalised, calibration: torch.Tensor) -> Int8Graph:
    """The full-int8 graph of `model`, activation ranges from `calibration` ([0, 1] images
    N, C, H, W)."""
    float_ops = fold(model)
    mean, std = float(model.mean), float(model.std)
    c, h, w = calibration.shape[1:]
    graph = Int8Graph((h, w, c), QParams(_f32(1.0 / (255.0 * std)), round(255.0 * mean) - 128))
    x = (calibration.double() - mean) / std
    params = graph.input
    for fop in float_ops:
        x = _run_float(fop, x)
        shape = (x.shape[2], x.shape[3], x.shape[1])
        if fop.kind in ("maxpool", "avgpool", "avgpool2"):  # int8 pools keep the input's scale
            graph.ops.append(Op(fop.kind, shape, params))
            continue
        out = QParams.of_range(float(x.min()), float(x.max()))
        graph.ops.append(_quantize_conv(fop, shape, params, out))
        params = out
    return graph


def _quantize_conv(fop: _FloatOp, shape: tuple, inp: QParams, out: QParams) -> Op:
    w = fop.weight.numpy()
    w_scale = np.abs(w).reshape(len(w), -1).max(1) / INT8_MAX
    w_scale[w_scale == 0] = 1.0  # an all-zero channel: any scale, its weights stay 0
    w_scale = _f32(w_scale)
    q = np.clip(np.rint(w / w_scale[:, None, None, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    bias_scale = inp.scale * w_scale
    bias = np.clip(np.rint(fop.bias.numpy() / bias_scale), -2**31, 2**31 - 1).astype(np.int32)
    mult, shift = zip(*(quantize_multiplier(inp.scale * s / out.scale) for s in w_scale))
    if fop.kind == "depthwise":
        weight = q.transpose(1, 2, 3, 0)  # (C, 1, k, k) -> (1, k, k, C)
    else:
        weight = q.transpose(0, 2, 3, 1)  # OIHW -> OHWI
    return Op(fop.kind, shape, out, k=fop.k, pad=fop.pad,
              groups=1 if fop.kind == "depthwise" else fop.groups, relu=fop.relu,
              weight=np.ascontiguousarray(weight), bias=bias, w_scale=w_scale,
              multiplier=np.array(mult, np.int64), shift=np.array(shift, np.int64))


def calibration_images(train_x: torch.Tensor, images: int) -> torch.Tensor:
    """`images` training images drawn with seed 0: the same ones the ONNX int8 export uses."""
    pick = np.random.default_rng(0).choice(len(train_x), images, replace=False)
    return train_x[torch.from_numpy(np.sort(pick))].cpu()
