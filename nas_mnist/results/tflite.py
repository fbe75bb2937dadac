"""A full-int8 `.tflite` file from an `Int8Graph`, and the two runtimes that read it back.

The file is written with the FlatBuffers schema classes of the `tflite` package: one subgraph,
int8 input (the raw pixel minus 128, NHWC, batch 1) and int8 logits out, the ops CONV_2D,
DEPTHWISE_CONV_2D, MAX_POOL_2D, AVERAGE_POOL_2D and RESHAPE with per-channel weight scales:
what TensorFlow Lite Micro runs. No TensorFlow, no converter: the integer graph is ours, and
`Int8Graph.run` says what every byte must compute.

Read back by LiteRT (`ai-edge-litert`, TFLite's interpreter) for predictions, and by
TensorFlow Lite Micro's own interpreter (`tflite-micro`, the runtime compiled for the host)
for the arena a microcontroller must reserve.
"""

from __future__ import annotations

import math
import re

import numpy as np

from nas_mnist.results.int8 import Int8Graph, Op, QParams, quantize
# LiteRT reads .tflite files for `predict` too: it lives with the other model readers
from nas_mnist.results.models import DeployError, LiteRT, Normalised, native_stderr, need  # noqa: F401

# builtin operator codes and the op versions that cover int8 with per-channel weights
_CODES = {"conv": (3, 3), "grouped": (3, 6), "depthwise": (4, 3), "maxpool": (17, 2),
          "avgpool": (1, 2), "avgpool2": (1, 2), "reshape": (22, 1)}
_INT8, _INT32 = 9, 2
_SAME, _VALID = 0, 1
MAX_ARENA = 1 << 22  # 4 MiB: beyond any microcontroller's RAM


def _padding(op: Op) -> int:
    if op.pad == 0:
        return _VALID
    if 2 * op.pad == op.k - 1:
        return _SAME
    raise DeployError(f"tflite: a {op.k}x{op.k} conv with padding {op.pad} has no TFLite "
                      f"padding mode (SAME or VALID)")


def tflite_bytes(graph: Int8Graph) -> bytes:
    """The graph as a .tflite FlatBuffer."""
    need("flatbuffers", "tflite-int8"), need("tflite", "tflite-int8")
    import flatbuffers
    from importlib import import_module
    (Buffer, Conv2DOptions, DepthwiseConv2DOptions, Model, Operator, OperatorCode, Pool2DOptions,
     QuantizationParameters, ReshapeOptions, SubGraph, Tensor) = (  # the schema's modules
        import_module(f"tflite.{name}") for name in (
            "Buffer", "Conv2DOptions", "DepthwiseConv2DOptions", "Model", "Operator",
            "OperatorCode", "Pool2DOptions", "QuantizationParameters", "ReshapeOptions",
            "SubGraph", "Tensor"))
    b = flatbuffers.Builder(1024)
    buffers: list[bytes] = [b""]  # buffer 0: the empty one every non-constant tensor points to
    tensors: list[int] = []

    def quant(scales, zeros, dim: int = 0) -> int:
        scale_vec = b.CreateNumpyVector(np.asarray(scales, np.float32))
        zero_vec = b.CreateNumpyVector(np.asarray(zeros, np.int64))
        QuantizationParameters.Start(b)
        QuantizationParameters.AddScale(b, scale_vec)
        QuantizationParameters.AddZeroPoint(b, zero_vec)
        QuantizationParameters.AddQuantizedDimension(b, dim)
        return QuantizationParameters.End(b)

    def tensor(name: str, shape, kind: int, q: int | None, data: bytes | None = None) -> int:
        if data is not None:
            buffers.append(data)
        name_off = b.CreateString(name)
        shape_vec = b.CreateNumpyVector(np.asarray(shape, np.int32))
        Tensor.Start(b)
        Tensor.AddShape(b, shape_vec)
        Tensor.AddType(b, kind)
        Tensor.AddBuffer(b, len(buffers) - 1 if data is not None else 0)
        Tensor.AddName(b, name_off)
        if q is not None:
            Tensor.AddQuantization(b, q)
        tensors.append(Tensor.End(b))
        return len(tensors) - 1

    def activation(name: str, shape, p: QParams) -> int:
        return tensor(name, (1, *shape), _INT8, quant([p.scale], [p.zero]))

    codes: list[str] = []
    operators: list[tuple] = []  # (code, inputs, outputs, options type, options builder)

    current = activation("input", graph.input_shape, graph.input)
    params = graph.input
    for i, op in enumerate(graph.ops):
        out = activation(f"op{i}_{op.kind}", op.shape, op.out)
        if op.kind in ("conv", "depthwise"):
            dim = 3 if op.kind == "depthwise" else 0
            channels = op.weight.shape[dim]
            w = tensor(f"op{i}_weight", op.weight.shape, _INT8,
                       quant(op.w_scale, np.zeros(channels), dim), op.weight.tobytes())
            bias_scales = params.scale * op.w_scale
            bias = tensor(f"op{i}_bias", op.bias.shape, _INT32,
                          quant(bias_scales, np.zeros(channels)), op.bias.astype("<i4").tobytes())
            code = "grouped" if op.kind == "conv" and op.groups > 1 else op.kind
            operators.append((code, [current, w, bias], [out], op))
        else:
            operators.append((op.kind, [current], [out], op))
        current, params = out, op.out
    classes = math.prod(graph.ops[-1].shape)  # (1, 1, classes) for a whole network
    shape_const = tensor("logits_shape", (2,), _INT32, None,
                         np.array([1, classes], "<i4").tobytes())
    logits = tensor("logits", (1, classes), _INT8, quant([params.scale], [params.zero]))
    operators.append(("reshape", [current, shape_const], [logits], None))

    def options(code: str, op: Op | None, spatial: tuple) -> tuple[int, int]:
        if code in ("conv", "grouped"):
            Conv2DOptions.Start(b)
            Conv2DOptions.AddPadding(b, _padding(op))
            Conv2DOptions.AddStrideW(b, 1), Conv2DOptions.AddStrideH(b, 1)
            Conv2DOptions.AddDilationWFactor(b, 1), Conv2DOptions.AddDilationHFactor(b, 1)
            Conv2DOptions.AddFusedActivationFunction(b, 1 if op.relu else 0)
            return 1, Conv2DOptions.End(b)
        if code == "depthwise":
            DepthwiseConv2DOptions.Start(b)
            DepthwiseConv2DOptions.AddPadding(b, _padding(op))
            DepthwiseConv2DOptions.AddStrideW(b, 1), DepthwiseConv2DOptions.AddStrideH(b, 1)
            DepthwiseConv2DOptions.AddDepthMultiplier(b, 1)
            DepthwiseConv2DOptions.AddDilationWFactor(b, 1)
            DepthwiseConv2DOptions.AddDilationHFactor(b, 1)
            DepthwiseConv2DOptions.AddFusedActivationFunction(b, 1 if op.relu else 0)
            return 2, DepthwiseConv2DOptions.End(b)
        if code in ("maxpool", "avgpool", "avgpool2"):
            size = spatial if code == "avgpool" else 2
            Pool2DOptions.Start(b)
            Pool2DOptions.AddPadding(b, _VALID)
            Pool2DOptions.AddStrideW(b, size), Pool2DOptions.AddStrideH(b, size)
            Pool2DOptions.AddFilterWidth(b, size), Pool2DOptions.AddFilterHeight(b, size)
            return 5, Pool2DOptions.End(b)
        shape_vec = b.CreateNumpyVector(np.array([1, classes], np.int32))
        ReshapeOptions.Start(b)
        ReshapeOptions.AddNewShape(b, shape_vec)
        return 17, ReshapeOptions.End(b)

    spatial_in = [graph.input_shape[0]] + [op.shape[0] for op in graph.ops]
    op_offsets = []
    for j, (code, inputs, outputs, op) in enumerate(operators):
        if code not in codes:
            codes.append(code)
        kind, opts = options(code, op, spatial_in[j] if j < len(spatial_in) else 1)
        in_vec = b.CreateNumpyVector(np.asarray(inputs, np.int32))
        out_vec = b.CreateNumpyVector(np.asarray(outputs, np.int32))
        Operator.Start(b)
        Operator.AddOpcodeIndex(b, codes.index(code))
        Operator.AddInputs(b, in_vec)
        Operator.AddOutputs(b, out_vec)
        Operator.AddBuiltinOptionsType(b, kind)
        Operator.AddBuiltinOptions(b, opts)
        op_offsets.append(Operator.End(b))

    def vector(start, items: list[int]) -> int:
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    tensor_vec = vector(SubGraph.StartTensorsVector, tensors)
    op_vec = vector(SubGraph.StartOperatorsVector, op_offsets)
    inputs_vec = b.CreateNumpyVector(np.array([0], np.int32))
    outputs_vec = b.CreateNumpyVector(np.array([logits], np.int32))
    name = b.CreateString("main")
    SubGraph.Start(b)
    SubGraph.AddTensors(b, tensor_vec)
    SubGraph.AddInputs(b, inputs_vec)
    SubGraph.AddOutputs(b, outputs_vec)
    SubGraph.AddOperators(b, op_vec)
    SubGraph.AddName(b, name)
    subgraph = SubGraph.End(b)

    code_offsets = []
    for code in codes:
        builtin, version = _CODES[code]
        OperatorCode.Start(b)
        OperatorCode.AddDeprecatedBuiltinCode(b, builtin)
        OperatorCode.AddBuiltinCode(b, builtin)
        OperatorCode.AddVersion(b, version)
        code_offsets.append(OperatorCode.End(b))
    buffer_offsets = []
    for data in buffers:
        data_vec = b.CreateByteVector(data) if data else None
        Buffer.Start(b)
        if data_vec is not None:
            Buffer.AddData(b, data_vec)
        buffer_offsets.append(Buffer.End(b))
    codes_vec = vector(Model.StartOperatorCodesVector, code_offsets)
    subgraphs_vec = vector(Model.StartSubgraphsVector, [subgraph])
    buffers_vec = vector(Model.StartBuffersVector, buffer_offsets)
    description = b.CreateString("nas-mnist full-int8")
    Model.Start(b)
    Model.AddVersion(b, 3)
    Model.AddOperatorCodes(b, codes_vec)
    Model.AddSubgraphs(b, subgraphs_vec)
    Model.AddDescription(b, description)
    Model.AddBuffers(b, buffers_vec)
    b.Finish(Model.End(b), file_identifier=b"TFL3")
    return bytes(b.Output())


class TFLM:
    """A .tflite model in TensorFlow Lite Micro's interpreter (the host build of the runtime)."""

    def __init__(self, model: bytes, arena: int):
        need("tflite_micro", "tflite-int8")
        from tflite_micro.python.tflite_micro import runtime
        with native_stderr([]):
            self.interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)

    def allocations(self) -> tuple[int, int]:
        """(head, tail) bytes of the arena: the planned activation buffers, and what the
        interpreter keeps for good (tensor and node structs, per-channel op data). Sizes of
        this 64-bit host build; a 32-bit part's structs are smaller."""
        lines: list[str] = []
        with native_stderr(lines):
            self.interpreter.print_allocations()
        found = dict(re.findall(r"Arena allocation (head|tail) (\d+) bytes", "\n".join(lines)))
        return int(found.get("head", 0)), int(found.get("tail", 0))

    def run(self, q: np.ndarray) -> np.ndarray:
        outs = []
        for image in q:
            self.interpreter.set_input(image[None], 0)
            self.interpreter.invoke()
            outs.append(np.array(self.interpreter.get_output(0)).reshape(-1))
        return np.stack(outs).astype(np.int8)


def tflm_arena(model: bytes, probe: np.ndarray) -> int:
    """The smallest arena (bytes, a multiple of 16) in which TFLite Micro allocates and runs
    the model: found by bisection, each size tried by building an interpreter and invoking it."""
    def fits(size: int) -> bool:
        try:
            with native_stderr([]):
                TFLM(model, size).run(probe)
            return True
        except (RuntimeError, ValueError):
            return False

    lo, hi = 0, 1024
    while not fits(hi):
        lo, hi = hi, hi * 2
        if hi > MAX_ARENA:
            raise DeployError(f"TFLite Micro could not run the model in {MAX_ARENA:,} B")
    while hi - lo > 16:
        mid = (lo + hi) // 32 * 16
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi



def arena_of(model: Normalised, in_shape: tuple[int, int, int]) -> dict:
    """TFLite Micro's arena for a network's structure (its weights and ranges change no
    buffer): the int8 graph of `model` on 16 random images, bisected. `head` is the planned
    activations (the greedy planner: at least the largest input + output of one op, sometimes
    more), `tail` the interpreter's own structs in this 64-bit host build."""
    import torch
    generator = torch.Generator().manual_seed(0)
    c, h, w = in_shape
    images = torch.rand(16, c, h, w, generator=generator)
    graph = quantize(model, images)
    blob = tflite_bytes(graph)
    arena = tflm_arena(blob, graph.quantize_images(images[:1].numpy()))
    head, tail = TFLM(blob, arena).allocations()
    return {"tflm_arena_bytes": arena, "tflm_arena_head": head, "tflm_arena_tail": tail}
