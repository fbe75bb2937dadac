"""Deployable winners: ONNX and TorchScript files that take raw images, verified on a test set
(the network as a module, and files read back: `models.py`).

The exported model folds the input normalisation in: it takes float images in [0, 1],
shape (N, channels, size, size), and returns class logits. A file is written only after its
predictions on every test image equal PyTorch's.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas_mnist.engine.data import Dataset
from nas_mnist.engine.train import EVAL_BATCH
from nas_mnist.files import atomic_write
from nas_mnist.results.models import DeployError, Normalised, load_model, need

FORMATS = {"onnx": ".onnx", "onnx-int8": ".int8.onnx", "torchscript": ".torchscript.pt",
           "tflite-int8": ".int8.tflite", "c": ".c"}
SIDE_FILES = {"c": (".h",)}  # written beside the format's file
INT8_FORMATS = {"onnx-int8", "tflite-int8", "c"}  # calibrated on training images
# int8 ONNX: ONNX Runtime static quantization (QDQ, 8-bit weights per output channel, 8-bit
# activations, min-max ranges) calibrated on training images, never test images. Both are
# uint8 (U8U8): with int8 weights ONNX Runtime's x86 kernels on CPUs without VNNI (AVX2 only)
# multiply in saturating 16-bit pairs, so one file scored 99.46 % on the AVX-512 CPU it was
# exported on and 99.24 % on an AVX2 one; U8U8 has no such step (ONNX Runtime's quantization
# guide). Measured on the shipped winners (packaged MNIST, 1,024 calibration images, AVX2 AMD
# EPYC): trial 52 99.46 -> 99.46 %, trial 75 99.40 -> 99.38 %, 99.98 % of predictions
# unchanged. A drop over MAX_INT8_DROP points means a broken quantization: nothing is kept.
CALIBRATION_IMAGES = 1024
MIN_CALIBRATION_IMAGES = 64
MAX_INT8_DROP = 0.3  # percentage points of test accuracy, fp32 -> int8
LATENCY_RUNS, LATENCY_WARMUP = 2000, 200


def check_format(fmt: str) -> None:
    """Fail before any work when the format's extra is not installed."""
    if fmt not in FORMATS:
        raise DeployError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt.startswith("onnx"):
        need("onnx", fmt), need("onnxruntime", fmt), need("onnxscript", fmt)
    if fmt == "tflite-int8":
        for module in ("flatbuffers", "tflite", "ai_edge_litert", "tflite_micro"):
            need(module, fmt)
    if fmt == "c":
        from nas_mnist.results.csource import compiler
        compiler()


def check_calibration(images: int) -> None:
    if isinstance(images, bool) or not isinstance(images, int) or images < MIN_CALIBRATION_IMAGES:
        raise DeployError(f"calibration_images must be an integer >= {MIN_CALIBRATION_IMAGES} "
                          f"(int8 ranges from fewer images are noise), got {images!r}")


def export_model(model: Normalised, fmt: str, dest: Path, data: Dataset, *,
                 calibration_images: int = CALIBRATION_IMAGES,
                 device_ram: int | None = None) -> dict:
    """Write `model` as `fmt` to `dest` (through a temporary file) after checking that the
    written file predicts every test image as PyTorch does (int8: within MAX_INT8_DROP points
    of its accuracy; tflite-int8 and c: an arena within `device_ram` bytes, when given).
    Returns the accuracies, the file size and the latency."""
    check_format(fmt)
    if fmt in INT8_FORMATS:
        check_calibration(calibration_images)
        if len(data.train_x) < calibration_images:
            raise DeployError(f"calibration_images {calibration_images:,} is more than the "
                              f"{len(data.train_x):,} training images")
    if fmt == "onnx-int8":
        return _export_int8(model, dest, data, calibration_images)
    if fmt == "tflite-int8":
        return _export_tflite(model, dest, data, calibration_images, device_ram)
    if fmt == "c":
        return _export_c(model, dest, data, calibration_images, device_ram)
    shape = tuple(data.test_x.shape[1:])
    ours = predict_torch(model, data.test_x)
    theirs = None

    def write_and_check(tmp: str) -> None:
        nonlocal theirs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporters' deprecation and progress chatter
            if fmt == "onnx":
                _write_onnx(model, shape, Path(tmp))
            else:  # saved in memory first: TorchScript's C++ writer aborts on a full disk
                buffer = io.BytesIO()
                torch.jit.save(torch.jit.trace(model, torch.zeros(1, *shape)), buffer,
                               _extra_files={"input_shape.json": json.dumps(shape)})
                Path(tmp).write_bytes(buffer.getvalue())
        theirs = load_model(Path(tmp)).predict(data.test_x.cpu().numpy())
        differ = int((ours != theirs).sum())
        if differ:
            raise DeployError(f"the {fmt} file predicts {differ} of {len(ours):,} test images "
                              f"differently from PyTorch: {dest} not written")

    atomic_write(dest, write_and_check)  # the temporary file ends in dest's name: same format
    labels = data.test_y.cpu().numpy()
    return {"format": fmt, "file": dest.name, "images": len(labels),
            "torch_acc": _percent(ours == labels),
            f"{fmt}_acc": _percent(theirs == labels),
            "file_bytes": dest.stat().st_size,
            **(latency(dest) if fmt == "onnx" else {})}


def _percent(hits: np.ndarray) -> float:
    """Share of True in percent, from the integer count (99.46, never 99.46000000000001)."""
    return 100.0 * int(hits.sum()) / len(hits)


def _export_int8(model: Normalised, dest: Path, data: Dataset, images: int) -> dict:
    """fp32 ONNX, then static int8 quantization calibrated on `images` training images drawn
    with seed 0; kept only if test accuracy drops by at most MAX_INT8_DROP points."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnxruntime as ort
    from nas_mnist.results.int8 import calibration_images
    shape = tuple(data.test_x.shape[1:])
    calibration = calibration_images(data.train_x, images).numpy()

    class Batches(CalibrationDataReader):
        def __init__(self, name: str):
            self.name, self.at = name, 0

        def get_next(self):
            if self.at >= len(calibration):
                return None
            self.at += EVAL_BATCH
            return {self.name: calibration[self.at - EVAL_BATCH:self.at]}

    def quantize(tmp: str) -> None:
        nonlocal fp32_acc, int8_acc, agreement
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".int8-") as work:
            fp32, pre = Path(work) / "fp32.onnx", Path(work) / "pre.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _write_onnx(model, shape, fp32)
                quant_pre_process(str(fp32), str(pre))
                name = ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"]
                                            ).get_inputs()[0].name
                with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints
                    quantize_static(str(pre), tmp, Batches(name), quant_format=QuantFormat.QDQ,
                                    per_channel=True, activation_type=QuantType.QUInt8,
                                    weight_type=QuantType.QUInt8,
                                    calibrate_method=CalibrationMethod.MinMax)
            ours = load_model(fp32).predict(x)
        theirs = load_model(Path(tmp)).predict(x)
        fp32_acc, int8_acc = _percent(ours == labels), _percent(theirs == labels)
        agreement = _percent(ours == theirs)
        if fp32_acc - int8_acc > MAX_INT8_DROP:
            raise DeployError(f"int8 test accuracy {int8_acc:.2f} % is {fp32_acc - int8_acc:.2f} "
                              f"points under fp32 ({fp32_acc:.2f} %), more than the "
                              f"{MAX_INT8_DROP} allowed: {dest} not written")

    x, labels = data.test_x.cpu().numpy(), data.test_y.cpu().numpy()
    fp32_acc = int8_acc = agreement = None
    atomic_write(dest, quantize)
    return {"format": "onnx-int8", "file": dest.name, "images": len(labels),
            "onnx_acc": fp32_acc, "onnx-int8_acc": int8_acc,
            "drop": round(fp32_acc - int8_acc, 4),
            "agreement": agreement,
            "file_bytes": dest.stat().st_size, "weight_bytes": weight_bytes(dest),
            "calibration": {"images": images, "from": "training set", "seed": 0,
                            "method": "minmax", "weights": "uint8 per channel",
                            "activations": "uint8"},
            **latency(dest)}


def _int8_graph(model: Normalised, data: Dataset, images: int):
    """The full-int8 graph (`int8.py`), the test images as its int8 input, their labels, and
    PyTorch's predictions."""
    from nas_mnist.results.int8 import calibration_images, quantize
    graph = quantize(model, calibration_images(data.train_x, images))
    x = data.test_x.cpu().numpy()
    return graph, graph.quantize_images(x), data.test_y.cpu().numpy(), predict_torch(model,
                                                                                   data.test_x)


def _check_drop(fmt: str, fp32_acc: float, acc: float, dest: Path) -> None:
    if fp32_acc - acc > MAX_INT8_DROP:
        raise DeployError(f"{fmt} test accuracy {acc:.2f} % is {fp32_acc - acc:.2f} points "
                          f"under fp32 ({fp32_acc:.2f} %), more than the {MAX_INT8_DROP} "
                          f"allowed: {dest} not written")


def _calibration(images: int) -> dict:
    return {"images": images, "from": "training set", "seed": 0, "method": "minmax",
            "weights": "int8 per channel, symmetric", "activations": "int8 per tensor"}


def _check_ram(what: str, arena: int, device_ram: int | None, dest: Path) -> None:
    if device_ram is not None and arena > device_ram:
        raise DeployError(f"{what} needs {arena:,} B of RAM, more than device_ram "
                          f"{device_ram:,} B: {dest.name} not written", params=("device_ram",))


def _export_tflite(model: Normalised, dest: Path, data: Dataset, images: int,
                   device_ram: int | None = None) -> dict:
    """A full-int8 .tflite (`tflite.py`), kept only if LiteRT's predictions stay within
    MAX_INT8_DROP points of PyTorch's accuracy and TFLite Micro computes the integer
    reference's logits on every test image; records the arena TFLite Micro needs."""
    from nas_mnist.results.models import LiteRT
    from nas_mnist.results.tflite import TFLM, tflite_bytes, tflm_arena
    graph, q, labels, ours = _int8_graph(model, data, images)
    blob = tflite_bytes(graph)
    reference = graph.run(q)
    lite = LiteRT(blob)
    lite_logits = lite.run(q)
    arena = tflm_arena(blob, q[:1])
    _check_ram("the TFLite Micro arena (64-bit host build)", arena, device_ram, dest)
    micro = TFLM(blob, arena)
    micro_logits = micro.run(q)
    head, tail = micro.allocations()
    fp32_acc = _percent(ours == labels)
    acc = _percent(lite_logits.argmax(1) == labels)
    _check_drop("tflite-int8", fp32_acc, acc, dest)
    differ = int((micro_logits != reference).any(1).sum())
    if differ:
        raise DeployError(f"TFLite Micro computes other logits than the integer reference on "
                          f"{differ:,} test images: {dest} not written")
    atomic_write(dest, lambda tmp: Path(tmp).write_bytes(blob))
    return {"format": "tflite-int8", "file": dest.name, "images": len(labels),
            "torch_acc": fp32_acc, "tflite-int8_acc": acc,
            "drop": round(fp32_acc - acc, 4),
            "agreement": _percent(lite_logits.argmax(1) == ours),
            "litert_logits_equal_reference": _percent((lite_logits == reference).all(1)),
            "tflm_acc": _percent(micro_logits.argmax(1) == labels),
            "tflm_predictions_equal_litert": _percent(micro_logits.argmax(1)
                                                      == lite_logits.argmax(1)),
            "tflm_logits_equal_reference": 100.0,
            "tflm_arena_bytes": arena, "tflm_arena_head": head, "tflm_arena_tail": tail,
            "peak_ram_int8": graph.peak_bytes(),
            "file_bytes": len(blob), "weight_bytes": graph.weight_bytes(),
            "calibration": _calibration(images),
            **_latency(lambda: lite.run(q[:1]), f"LiteRT {lite.version}")}


def _export_c(model: Normalised, dest: Path, data: Dataset, images: int,
              device_ram: int | None = None) -> dict:
    """A C source and header (`csource.py`), kept only if the compiled code returns the
    integer reference's logits on every test image."""
    from nas_mnist.results.csource import c_name, c_source, check_c
    graph, q, labels, ours = _int8_graph(model, data, images)
    _check_ram("the C code's static arena", graph.peak_bytes(), device_ram, dest)
    name = c_name(dest.name[:-len(FORMATS["c"])])
    header, source = c_source(graph, name)
    built = check_c(header, source, name, q)
    logits = built.pop("logits")
    differ = int((logits != graph.run(q)).any(1).sum())
    if differ:
        raise DeployError(f"the compiled C computes other logits than the integer reference on "
                          f"{differ:,} test images: {dest} not written")
    fp32_acc, acc = _percent(ours == labels), _percent(logits.argmax(1) == labels)
    _check_drop("c", fp32_acc, acc, dest)
    header_path = dest.with_name(f"{name}.h")
    atomic_write(header_path, lambda tmp: Path(tmp).write_text(header, encoding="utf-8"))
    atomic_write(dest, lambda tmp: Path(tmp).write_text(source, encoding="utf-8"))
    return {"format": "c", "file": dest.name, "header": header_path.name,
            "images": len(labels), "torch_acc": fp32_acc, "c_acc": acc,
            "drop": round(fp32_acc - acc, 4), "agreement": _percent(logits.argmax(1) == ours),
            "logits_equal_reference": 100.0, "arena_bytes": graph.peak_bytes(),
            "weight_bytes": graph.weight_bytes(), "calibration": _calibration(images),
            **built}


def weight_bytes(path: Path) -> int:
    """Bytes of the stored tensors of an ONNX file (weights, biases, scales, zero points):
    what a microcontroller keeps in flash besides its code."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(str(path)).graph
    return int(sum(numpy_helper.to_array(t).nbytes for t in graph.initializer))


def latency(path: Path, runs: int = LATENCY_RUNS, warmup: int = LATENCY_WARMUP) -> dict:
    """Median wall time of one image (batch 1) through ONNX Runtime on one CPU thread, after
    a warm-up: this CPU's figure, not a microcontroller's (there MACs are the proxy)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    image = {inp.name: np.zeros((1, *inp.shape[1:]), dtype=np.float32)}
    return _latency(lambda: session.run(None, image), f"onnxruntime {ort.__version__}",
                    runs, warmup)


def _latency(run_one, runtime: str, runs: int = LATENCY_RUNS,
             warmup: int = LATENCY_WARMUP) -> dict:
    import time
    from nas_mnist.engine.device import cpu_model
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        run_one()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"latency_ms": round(1e3 * float(np.median(times)), 4),
            "latency": {"runs": runs, "warmup": warmup, "batch": 1, "threads": 1,
                        "runtime": runtime, "cpu": cpu_model()}}


def _write_onnx(model: nn.Module, shape: tuple, path: Path) -> None:
    import logging
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    quiet = logging.getLogger("torch.onnx")
    level, quiet.level = quiet.level, logging.ERROR  # "torchvision is not installed" notes
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints progress lines
            program = torch.onnx.export(model, (torch.zeros(2, *shape),), dynamo=True,
                                        dynamic_shapes=({0: batch},))
        for node in program.model.graph.all_nodes():  # the exporter's Python stack, with
            node.metadata_props.pop("pkg.torch.onnx.stack_trace", None)  # this machine's paths
        program.save(str(path))
    finally:
        quiet.setLevel(level)


@torch.no_grad()
def predict_torch(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    return np.concatenate([model(x[i:i + EVAL_BATCH].cpu()).argmax(1).numpy()
                           for i in range(0, len(x), EVAL_BATCH)])
