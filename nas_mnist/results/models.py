"""Models to predict with: a winner's network with its input normalisation folded in, exported
files read back as one `predict(images) -> labels` call (ONNX, TorchScript, a winner JSON),
and the images to give them (one IDX file or PNG files). Writing exports: `deploy.py`."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas_mnist.engine.builder import build_model
from nas_mnist.engine.train import EVAL_BATCH, load_state
from nas_mnist.errors import NasMnistError, SpecError
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.blocks import MAX_IMAGE_SIZE

EXTRAS = {"onnx": "onnx", "onnx-int8": "onnx", "tflite-int8": "tflite"}  # format -> pip extra


MAX_TFLITE_BYTES = 64 << 20  # a network here is tens of KB; read no more than this


class DeployError(NasMnistError):
    """An export format cannot be written or read, or a model file is unusable."""


class Normalised(nn.Module):
    """The network with its input normalisation folded in: raw [0, 1] images in, logits out."""

    def __init__(self, model: nn.Module, mean: float, std: float):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def deployable(arch: ArchConfig, weights: Path, mean: float, std: float) -> Normalised:
    return Normalised(load_state(build_model(arch), weights), mean, std).eval()


def need(module: str, fmt: str):
    try:
        return __import__(module)
    except ImportError:
        raise DeployError(f"--format {fmt} needs the {EXTRAS.get(fmt, fmt)} extra: "
                          f"pip install -e '.[{EXTRAS.get(fmt, fmt)}]'") from None


@contextlib.contextmanager
def native_stderr(lines: list[str]):
    """What native code writes to file descriptor 2 inside the block goes into `lines`, not to
    the terminal (LiteRT's delegate notice, TFLite Micro's allocation failures while the arena
    is bisected)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def int8_pixels(images: np.ndarray) -> np.ndarray:
    """float [0, 1] images (N, C, H, W) -> each pixel (0-255) minus 128 as int8, NHWC: the
    input of every full-int8 export."""
    q = np.clip(np.rint(np.asarray(images, np.float64) * 255.0), 0, 255) - 128
    return q.astype(np.int8).transpose(0, 2, 3, 1)


class LiteRT:
    """A .tflite model in LiteRT's interpreter on one thread: int8 NHWC in, int8 logits out."""

    def __init__(self, model: bytes):
        need("ai_edge_litert", "tflite-int8")
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter
        self.version = getattr(ai_edge_litert, "__version__", "")
        with native_stderr([]):
            self.interpreter = Interpreter(model_content=model, num_threads=1)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def run(self, q: np.ndarray) -> np.ndarray:
        out = np.empty((len(q), self.output["shape"][-1]), np.int8)
        for i, image in enumerate(q):
            self.interpreter.set_tensor(self.input["index"], image[None])
            self.interpreter.invoke()
            out[i] = self.interpreter.get_tensor(self.output["index"])[0]
        return out


class LoadedModel:
    """An exported model of any format, as one `predict(images) -> labels` call; `caveats`
    holds what the caller should tell the user about running this file on this machine."""

    def __init__(self, run, input_shape: tuple, caveats: list[str] | None = None):
        self._run, self.input_shape = run, input_shape
        self.caveats = caveats or []

    def logits(self, images: np.ndarray) -> np.ndarray:
        if images.shape[1:] != self.input_shape:
            raise DeployError(f"the model takes images of shape {self.input_shape}, got "
                              f"{images.shape[1:]}")
        return np.concatenate([self._run(images[i:i + EVAL_BATCH].astype(np.float32))
                               for i in range(0, len(images), EVAL_BATCH)])

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.logits(images).argmax(1)


def load_model(path: Path) -> LoadedModel:
    """Open an ONNX file, a TorchScript file, or a winner JSON (with its weights beside)."""
    from nas_mnist.files import FileReadError, open_regular
    path = Path(path)
    if path.is_dir():
        raise DeployError(f"model {path} is a folder: give an .onnx, .torchscript.pt or winner "
                          f".json file")
    try:
        open_regular(path, "model file").close()
    except FileReadError as err:
        raise DeployError(str(err)) from None
    name = path.name
    try:
        if name.endswith(".onnx"):
            ort = need("onnxruntime", "onnx")
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            inp = session.get_inputs()[0]
            return LoadedModel(lambda x: session.run(None, {inp.name: x})[0],
                               tuple(inp.shape[1:]), _int8_weight_caveats(path))
        if name.endswith(".pt") or name.endswith(".pth"):
            extra = {"input_shape.json": ""}
            try:
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            except RuntimeError:
                raise DeployError(f"{path} is not a TorchScript model (for a state_dict, give "
                                  f"the winner .json beside it)") from None
            module.eval()
            if not extra["input_shape.json"]:
                raise DeployError(f"{path} is not a TorchScript file written by nas-mnist "
                                  f"export (a state_dict is read with `train --weights`)")
            return LoadedModel(lambda x: _no_grad(module, x),
                               tuple(json.loads(extra["input_shape.json"])))
        if name.endswith(".json"):
            return _load_winner(path)
        if name.endswith(".tflite"):
            return _load_tflite(path)
    except (DeployError, SpecError):  # their messages name the file already
        raise
    except Exception as err:  # each runtime raises its own kinds for a corrupt file
        raise DeployError(f"cannot load model {path}: "
                          f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
                          ) from None
    raise DeployError(f"{path}: not a model file (.onnx, .tflite, .torchscript.pt or a "
                      f"winner .json)")


# x86 features with which ONNX Runtime multiplies uint8 by int8 without saturating
VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")


def saturating_cpu() -> bool:
    """Whether ONNX Runtime's u8 x s8 kernels saturate here: an x86 CPU without VNNI, whose
    16-bit pair sums clip (torch's cpuinfo probe; False where it cannot tell)."""
    try:
        capabilities = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):
        return False
    return (capabilities.get("architecture") in ("x86_64", "x86")
            and not any(capabilities.get(flag) for flag in VNNI))


def _int8_weight_caveats(path: Path) -> list[str]:
    """A line for an ONNX file with signed int8 weights (S8S8: what export wrote before
    2026-12-05) on a CPU where they saturate: a shipped 99.46 % file scored 99.24 % on an AVX2
    AMD EPYC."""
    if not saturating_cpu():
        return []
    try:
        import onnx
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # no onnx package, or a file only the runtime reads: nothing to say
        return []
    if not any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer):
        return []
    return [f"{path} holds signed int8 weights, which ONNX Runtime multiplies with saturation "
            f"on this CPU (x86 without VNNI): its accuracy can fall (a 99.46 % network scored "
            f"99.24 %); export it again: `nas-mnist export --format onnx-int8` writes uint8 "
            f"weights since 2026-12-05"]


def _load_tflite(path: Path) -> LoadedModel:
    """A .tflite file written by `export --format tflite-int8`: [0, 1] images in, quantized
    to its int8 input (each pixel x 255 minus 128), dequantized logits out."""
    from nas_mnist.files import read_bounded
    blob = read_bounded(path, MAX_TFLITE_BYTES, "model file")
    if blob[4:8] != b"TFL3":
        raise DeployError(f"{path} is not a TFLite model (no TFL3 identifier)")
    lite = LiteRT(blob)
    scale, zero = lite.output["quantization"]
    shape = tuple(int(v) for v in lite.input["shape"][1:])  # NHWC
    if lite.input["dtype"] != np.int8 or lite.input["quantization"][0] == 0:
        raise DeployError(f"{path} has no int8 input: give a file written by nas-mnist export "
                          f"--format tflite-int8")

    def run(x: np.ndarray) -> np.ndarray:
        return (lite.run(int8_pixels(x)).astype(np.float32) - zero) * np.float32(scale)

    return LoadedModel(run, (shape[2], shape[0], shape[1]))


def _no_grad(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def winner_module(path: Path, winner=None) -> Normalised:
    """A winner file's network with its weights and normalisation: raw [0, 1] images in."""
    from nas_mnist.spec.winner import WinnerFile
    winner = winner or WinnerFile.read(path)
    if winner.normalisation is None:
        raise DeployError(f"{path} records no normalisation statistics (export it again)")
    return deployable(winner.arch, winner.weights_path, *winner.normalisation)


def _load_winner(path: Path) -> LoadedModel:
    from nas_mnist.spec.winner import WinnerFile
    winner = WinnerFile.read(path)
    model = winner_module(path, winner)
    arch = winner.arch
    return LoadedModel(lambda x: _no_grad(model, x),
                       (arch.in_channels, arch.image_size, arch.image_size))


MAX_IMAGE_PIXELS = MAX_IMAGE_SIZE * MAX_IMAGE_SIZE  # the largest input a network here takes


def read_images(paths: list[str]) -> tuple[list[str], np.ndarray]:
    """Images as float32 in [0, 1], shape (N, 1, H, W), from one IDX file or PNG files."""
    from nas_mnist.engine.data import read_idx
    folders = [p for p in paths if Path(p).is_dir()]
    if folders:
        raise DeployError(f"images {folders[0]} is a folder: give one IDX file or PNG files "
                          f"(e.g. {folders[0]}/*.png)")
    others = [p for p in paths if not p.lower().endswith(".png")]
    if others and len(paths) > 1:
        raise DeployError(f"images: give one IDX file, or PNG files; {others[0]} is not a PNG "
                          f"and {len(paths)} files were given")
    if len(paths) == 1 and not paths[0].lower().endswith(".png"):
        array, _ = read_idx(Path(paths[0]))
        if array.ndim != 3:
            raise DeployError(f"{paths[0]}: expected images (N, H, W), got shape {array.shape}")
        if len(array) == 0:
            raise DeployError(f"images {paths[0]} holds no image (its header says 0)")
        return ([f"{paths[0]}[{i}]" for i in range(len(array))],
                (array[:, None] / 255.0).astype(np.float32))
    from PIL import Image, UnidentifiedImageError
    from nas_mnist.files import FileReadError, open_regular
    images = []
    for path in paths:
        try:
            with open_regular(path, "image") as f, Image.open(f) as img:  # header first
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise DeployError(f"image {path} is {img.width}x{img.height} pixels; a "
                                      f"model here takes images of at most "
                                      f"{MAX_IMAGE_SIZE}x{MAX_IMAGE_SIZE}")
                images.append(np.asarray(img.convert("L"), dtype=np.float32) / 255.0)
        except FileReadError as err:
            raise DeployError(str(err)) from None
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
            raise DeployError(f"cannot read image {path}: {err}") from None
    if len({im.shape for im in images}) > 1:
        raise DeployError("the PNG files have different sizes")
    return list(paths), np.stack(images)[:, None]
