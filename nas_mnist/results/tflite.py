"""A full-int8 `.tflite` file from an `Int8Graph`, and the two runtimes that read it back.

The file is written with the FlatBuffers schema classes of the `tflite` package: one subgraph,
int8 input (the raw pixel minus 128, NHWC, batch 1) and int8 logits out, the ops CONV_2D,
DEPTHWISE_CONV_2D, MAX_POOL_2D, AVERAGE_POOL_2D and RESHAPE with per-channel weight scales:
what TensorFlow Lite Micro runs. No TensorFlow, no converter: the integer graph is ours, and
`Int8Graph.run` says what every byte must compute.

Read back by LiteRT (`ai-edge-litert`, TFLite's interpreter: `models.LiteRT`, which `predict`
uses too), and by
TensorFlow Lite Micro's own interpreter (`tflite-micro`, the runtime compiled for the host)
for the arena a microcontroller must reserve.
"""

from __future__ import annotations

import math
import os
import re
from importlib import import_module

import numpy as np

from nas_mnist.results.int8 import Int8Graph, Op, QParams, quantize
from nas_mnist.results.models import DeployError, Normalised, native_stderr, need

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
    return _Writer(graph).write()


_SCHEMA = ("Buffer", "Conv2DOptions", "DepthwiseConv2DOptions", "Model", "Operator",
           "OperatorCode", "Pool2DOptions", "QuantizationParameters", "ReshapeOptions",
           "SubGraph", "Tensor")


class _Writer:
    """One FlatBuffer being built: tables are made inside out (a table's vectors and strings
    before the table), so tensors and options are written first, the model last."""

    def __init__(self, graph: Int8Graph):
        import flatbuffers
        self.graph = graph
        self.b = flatbuffers.Builder(1024)
        self.fb = {name: import_module(f"tflite.{name}") for name in _SCHEMA}
        self.buffers: list[bytes] = [b""]  # buffer 0: the empty one of non-constant tensors
        self.tensors: list[int] = []
        self.codes: list[str] = []
        self.operators: list[int] = []

    def write(self) -> bytes:
        graph = self.graph
        current = self.activation("input", graph.input_shape, graph.input)
        params, spatial = graph.input, graph.input_shape[0]
        for i, op in enumerate(graph.ops):
            out = self.activation(f"op{i}_{op.kind}", op.shape, op.out)
            inputs = [current]
            if op.kind in ("conv", "depthwise"):
                inputs += self.weights(i, op, params)
            code = "grouped" if op.kind == "conv" and op.groups > 1 else op.kind
            self.operator(code, inputs, [out], self.options(code, op, spatial))
            current, params, spatial = out, op.out, op.shape[0]
        flat = math.prod(graph.ops[-1].shape)  # (1, 1, classes) for a whole network
        shape = self.tensor("logits_shape", (2,), _INT32, None,
                            np.array([1, flat], "<i4").tobytes())
        logits = self.tensor("logits", (1, flat), _INT8, self.quant([params.scale],
                                                                    [params.zero]))
        self.operator("reshape", [current, shape], [logits], self.reshape_options(flat))
        return self.model(self.subgraph(logits))

    # -- tensors ---------------------------------------------------------------------------

    def quant(self, scales, zeros, dim: int = 0) -> int:
        b, q = self.b, self.fb["QuantizationParameters"]
        scale_vec = b.CreateNumpyVector(np.asarray(scales, np.float32))
        zero_vec = b.CreateNumpyVector(np.asarray(zeros, np.int64))
        q.Start(b)
        q.AddScale(b, scale_vec)
        q.AddZeroPoint(b, zero_vec)
        q.AddQuantizedDimension(b, dim)
        return q.End(b)

    def tensor(self, name: str, shape, kind: int, quant: int | None,
               data: bytes | None = None) -> int:
        b, t = self.b, self.fb["Tensor"]
        if data is not None:
            self.buffers.append(data)
        name_off = b.CreateString(name)
        shape_vec = b.CreateNumpyVector(np.asarray(shape, np.int32))
        t.Start(b)
        t.AddShape(b, shape_vec)
        t.AddType(b, kind)
        t.AddBuffer(b, len(self.buffers) - 1 if data is not None else 0)
        t.AddName(b, name_off)
        if quant is not None:
            t.AddQuantization(b, quant)
        self.tensors.append(t.End(b))
        return len(self.tensors) - 1

    def activation(self, name: str, shape, p: QParams) -> int:
        return self.tensor(name, (1, *shape), _INT8, self.quant([p.scale], [p.zero]))

    def weights(self, i: int, op: Op, inp: QParams) -> list[int]:
        """The weight and bias tensors of a conv-like op, one scale per output channel."""
        dim = 3 if op.kind == "depthwise" else 0
        zeros = np.zeros(op.weight.shape[dim])
        w = self.tensor(f"op{i}_weight", op.weight.shape, _INT8,
                        self.quant(op.w_scale, zeros, dim), op.weight.tobytes())
        bias = self.tensor(f"op{i}_bias", op.bias.shape, _INT32,
                           self.quant(inp.scale * op.w_scale, zeros),
                           op.bias.astype("<i4").tobytes())
        return [w, bias]

    # -- operators -------------------------------------------------------------------------

    def options(self, code: str, op: Op, spatial: int) -> tuple[int, int]:
        """(BuiltinOptions type, offset) of a conv, depthwise conv or pool."""
        b = self.b
        if code in ("conv", "grouped", "depthwise"):
            o = self.fb["Conv2DOptions" if code != "depthwise" else "DepthwiseConv2DOptions"]
            o.Start(b)
            o.AddPadding(b, _padding(op))
            o.AddStrideW(b, 1), o.AddStrideH(b, 1)
            o.AddDilationWFactor(b, 1), o.AddDilationHFactor(b, 1)
            o.AddFusedActivationFunction(b, 1 if op.relu else 0)
            if code == "depthwise":
                o.AddDepthMultiplier(b, 1)
            return (2 if code == "depthwise" else 1), o.End(b)
        size = spatial if code == "avgpool" else 2  # global, or a 2x2 pool of stride 2
        o = self.fb["Pool2DOptions"]
        o.Start(b)
        o.AddPadding(b, _VALID)
        o.AddStrideW(b, size), o.AddStrideH(b, size)
        o.AddFilterWidth(b, size), o.AddFilterHeight(b, size)
        return 5, o.End(b)

    def reshape_options(self, flat: int) -> tuple[int, int]:
        b, o = self.b, self.fb["ReshapeOptions"]
        shape_vec = b.CreateNumpyVector(np.array([1, flat], np.int32))
        o.Start(b)
        o.AddNewShape(b, shape_vec)
        return 17, o.End(b)

    def operator(self, code: str, inputs: list[int], outputs: list[int],
                 options: tuple[int, int]) -> None:
        b, o = self.b, self.fb["Operator"]
        if code not in self.codes:
            self.codes.append(code)
        in_vec = b.CreateNumpyVector(np.asarray(inputs, np.int32))
        out_vec = b.CreateNumpyVector(np.asarray(outputs, np.int32))
        o.Start(b)
        o.AddOpcodeIndex(b, self.codes.index(code))
        o.AddInputs(b, in_vec)
        o.AddOutputs(b, out_vec)
        o.AddBuiltinOptionsType(b, options[0])
        o.AddBuiltinOptions(b, options[1])
        self.operators.append(o.End(b))

    # -- the model -------------------------------------------------------------------------

    def vector(self, table: str, field: str, items: list[int]) -> int:
        getattr(self.fb[table], f"Start{field}Vector")(self.b, len(items))
        for item in reversed(items):
            self.b.PrependUOffsetTRelative(item)
        return self.b.EndVector()

    def subgraph(self, output: int) -> int:
        b, g = self.b, self.fb["SubGraph"]
        tensor_vec = self.vector("SubGraph", "Tensors", self.tensors)
        op_vec = self.vector("SubGraph", "Operators", self.operators)
        inputs_vec = b.CreateNumpyVector(np.array([0], np.int32))
        outputs_vec = b.CreateNumpyVector(np.array([output], np.int32))
        name = b.CreateString("main")
        g.Start(b)
        g.AddTensors(b, tensor_vec)
        g.AddInputs(b, inputs_vec)
        g.AddOutputs(b, outputs_vec)
        g.AddOperators(b, op_vec)
        g.AddName(b, name)
        return g.End(b)

    def model(self, subgraph: int) -> bytes:
        b, fb = self.b, self.fb
        codes = []
        for code in self.codes:
            builtin, version = _CODES[code]
            fb["OperatorCode"].Start(b)
            fb["OperatorCode"].AddDeprecatedBuiltinCode(b, builtin)
            fb["OperatorCode"].AddBuiltinCode(b, builtin)
            fb["OperatorCode"].AddVersion(b, version)
            codes.append(fb["OperatorCode"].End(b))
        buffers = []
        for data in self.buffers:
            data_vec = b.CreateByteVector(data) if data else None
            fb["Buffer"].Start(b)
            if data_vec is not None:
                fb["Buffer"].AddData(b, data_vec)
            buffers.append(fb["Buffer"].End(b))
        codes_vec = self.vector("Model", "OperatorCodes", codes)
        subgraphs_vec = self.vector("Model", "Subgraphs", [subgraph])
        buffers_vec = self.vector("Model", "Buffers", buffers)
        description = b.CreateString("nas-mnist full-int8")
        m = fb["Model"]
        m.Start(b)
        m.AddVersion(b, 3)
        m.AddOperatorCodes(b, codes_vec)
        m.AddSubgraphs(b, subgraphs_vec)
        m.AddDescription(b, description)
        m.AddBuffers(b, buffers_vec)
        b.Finish(m.End(b), file_identifier=b"TFL3")
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


def _fits(model: bytes, probe: np.ndarray, size: int) -> bool:
    try:
        with native_stderr([]):
            TFLM(model, size).run(probe)
        return True
    except (RuntimeError, ValueError):
        return False


def tflm_arena(model: bytes, probe: np.ndarray) -> int:
    """The smallest arena (bytes, a multiple of 16) in which TFLite Micro allocates and runs
    the model: found by bisection, each size tried by building an interpreter and invoking it,
    in a forked child: at some sizes too small the runtime crashes instead of failing (a
    segmentation fault at 4,096 B for woolly3762), and a crash must not take the caller down."""
    def fits(size: int) -> bool:
        if not hasattr(os, "fork"):
            return _fits(model, probe, size)
        pid = os.fork()
        if pid == 0:  # the child: try, and say how it went in the exit code only
            os._exit(0 if _fits(model, probe, size) else 1)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0

    # First guess: what the interpreter lays out in an ample arena (its planned head and its
    # tail); on 6 of 7 networks measured that is the smallest arena, found in two probes.
    guess = _laid_out(model)
    lo, hi = 0, guess or 1024
    if guess and fits(hi):
        if not fits(hi - 16):
            return hi
        hi -= 16
    elif guess:
        lo, hi = hi, hi * 2
    while not fits(hi):
        lo, hi = hi, hi * 2
        if hi > MAX_ARENA:
            raise DeployError(f"TFLite Micro could not run the model in {MAX_ARENA:,} B")
    while hi - lo > 16:
        mid = (lo + hi) // 32 * 16
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def _laid_out(model: bytes) -> int | None:
    """Head + tail of the model in an ample arena, rounded up to 16 B (None: it does not
    build even there; the bisection finds out and says so)."""
    try:
        with native_stderr([]):
            return -(-sum(TFLM(model, MAX_ARENA).allocations()) // 16) * 16 or None
    except Exception:  # noqa: BLE001 - a guess only: whatever failed, the probes say it
        return None


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
