"""Fast CPU layers for training: element dropout with a hashed mask, and a 2x2 max-pool.

Dropout. `nn.Dropout` draws its mask with aten's `bernoulli_`: one serial mt19937 draw per
element, about 9 ns each, 21-27 % of a training step of the networks the search picks
(findings/speed-limit.md).
Here the mask is a counter-based hash instead: element i of a call is kept when

    fmix32(fmix32(i * 0x9E3779B9 + seed_lo) ^ seed_hi) >= p * 2**32

(fmix32 is MurmurHash3's finaliser), and kept elements are scaled by 1 / (1 - p): the same
distribution as `nn.Dropout`, a different random stream. `seed` is drawn from torch's default
generator on every call, so a seeded run is deterministic. The backward pass applies the same
mask to the gradient (same seed, no saved mask).

Two implementations compute the same mask: a small C++ kernel (`kernels.cpp` beside this
file: one pass, vectorised with AVX-512 or AVX2 where the CPU has them) and a plain PyTorch one, used where no C++ compiler is
found (one line says so). A GPU draws the mask with torch's own fused dropout instead
(`dropout_path`).

Max-pool. `nn.MaxPool2d(2)` on a channels-first CPU tensor is slow (6.5 ms forward for a
(128, 12, 28, 28) bf16 batch on a 2-core AMD EPYC, one thread); the kernel here makes one pass
and keeps the index of the first maximum of each window, as aten does, so values and
gradients are exactly aten's. Without the kernel, `nn.MaxPool2d` itself runs.

The kernels are built once per machine and torch install with torch's `load_inline` (about
30 s) into the project's own cache (engine.kernel_cache: ~/.cache/nas-mnist/kernels, or
$NAS_MNIST_KERNEL_DIR); NAS_MNIST_NO_CPP=1 (or true/yes/on) turns them off.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from nas_mnist.engine import kernel_cache

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9

_KERNEL = (Path(__file__).parent / "kernels.cpp").read_text(encoding="utf-8")  # the C++ source

_NAME = "nas_mnist_kernels"
_state: dict = {}
_lock = threading.Lock()


def _ninja_on_path() -> None:
    """torch builds with the `ninja` on PATH: put the pip package's first, so that a venv's
    `nas-mnist` run without activating the venv still finds it."""
    try:
        import ninja
        bin_dir = getattr(ninja, "BIN_DIR", None)
    except ImportError:
        return
    if bin_dir and bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


_CFLAGS = ["-O3"]
_OFF = {"1", "true", "yes", "on"}


def _build_into(folder: Path):
    """Compile the kernels into `folder` with torch's builder and return the loaded module."""
    from torch.utils.cpp_extension import load_inline
    _ninja_on_path()
    return load_inline(_NAME, cpp_sources=_KERNEL,
                       functions=["hash_dropout", "max_pool2x2", "max_pool2x2_backward"],
                       extra_cflags=_CFLAGS, build_directory=str(folder), verbose=False)


def _extension():
    """The compiled kernel, or None where it cannot be built or loaded (said once, on
    stderr). The cache is kernel_cache's: it never waits without bound and never maps a
    damaged file."""
    if "ext" in _state:  # every forward asks: no lock once it is known
        return _state["ext"]
    with _lock:
        if "ext" not in _state:
            _state["ext"] = None
            if os.environ.get("NAS_MNIST_NO_CPP", "").strip().lower() not in _OFF:
                def say(line: str) -> None:
                    print(line, file=sys.stderr, flush=True)
                try:
                    _state["ext"] = kernel_cache.load_or_build(_NAME, _KERNEL, _CFLAGS,
                                                               _build_into, say)
                except Exception as err:  # no compiler, no ninja, a failed build
                    print(f"nas-mnist: the C++ kernels could not be built "
                          f"({kernel_cache.printable(err)}); dropout and max-pool run in "
                          "plain PyTorch: same numbers, slower", file=sys.stderr)
        return _state["ext"]


def backend() -> str:
    """"cpp" where the kernels are built, else "torch" (the same numbers in plain PyTorch)."""
    if _state.get("plain"):
        return "torch"
    return "cpp" if _extension() is not None else "torch"


@contextmanager
def plain():
    """Within the block the kernels are not used (the fallback path, and the trainer before
    them, for `nas-mnist bench` and the tests)."""
    before = _state.get("plain", False)
    _state["plain"] = True
    try:
        yield
    finally:
        _state["plain"] = before


def _threshold(p: float) -> int:
    return min(_MASK32, int(round(p * 2**32)))


def _i32(value: int) -> int:
    """A uint32 constant as the int32 with the same bits."""
    return value - 2**32 if value >= 2**31 else value


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's finaliser on uint32 bits held in int32, in place (products wrap mod
    2**32; a logical right shift is an arithmetic one masked)."""
    h ^= (h >> 16) & 0xFFFF
    h *= _i32(0x85EBCA6B)
    h ^= (h >> 13) & 0x7FFFF
    h *= _i32(0xC2B2AE35)
    h ^= (h >> 16) & 0xFFFF
    return h


def keep_mask(numel: int, p: float, seed: int, device=None) -> torch.Tensor:
    """The boolean keep mask of one call, in plain PyTorch (what the kernel computes)."""
    lo, hi = seed & _MASK32, (seed >> 32) & _MASK32
    h = torch.arange(numel, dtype=torch.int32, device=device)
    h *= _i32(_GOLDEN)
    h += _i32(lo)
    h = _fmix32(h)
    h ^= _i32(hi)
    h = _fmix32(h)
    # unsigned h >= threshold, compared as signed after flipping the sign bit
    return (h ^ _i32(0x80000000)) >= _i32(_threshold(p) ^ 0x80000000)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """Channels-last where `x` is laid out so (the mask follows memory order), else
    contiguous."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _apply(x: torch.Tensor, p: float, seed: int, use_cpp: bool) -> torch.Tensor:
    """Drop with the mask of `seed`; element i is the i-th in memory (x is dense)."""
    scale = 1.0 / (1.0 - p)
    if use_cpp:
        return _extension().hash_dropout(x, seed, _threshold(p), scale)
    keep = keep_mask(x.numel(), p, seed, x.device)
    if _memory_format(x) == torch.channels_last:
        n, c, h, w = x.shape
        keep = keep.view(n, h, w, c).permute(0, 3, 1, 2)
    else:
        keep = keep.view(x.shape)
    return torch.where(keep, x.float() * scale, 0.0).to(x.dtype)


class _HashDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, use_cpp):
        ctx.p, ctx.use_cpp, ctx.layout = p, use_cpp, _memory_format(x)
        ctx.seed = int(torch.randint(0, 2**63 - 1, (1,)))
        return _apply(x.contiguous(memory_format=ctx.layout), p, ctx.seed, use_cpp)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous(memory_format=ctx.layout)  # the mask's order, as in forward
        return _apply(grad, ctx.p, ctx.seed, ctx.use_cpp), None, None


def hash_dropout(x: torch.Tensor, p: float, training: bool = True,
                 backend_name: str | None = None) -> torch.Tensor:
    """Element dropout with the counter-hash mask (see the module's docstring)."""
    if not training or p == 0:
        return x
    if not 0 < p < 1:
        raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
    if x.numel() >= 2**31:
        raise ValueError(f"hash dropout indexes elements with 31 bits: a tensor of "
                         f"{x.numel():,} elements is too large")
    name = backend_name or dropout_path(x.device.type, x.dtype)
    if name == "native":
        return nn.functional.dropout(x, p, training=True)
    use_cpp = name == "cpp" and backend() == "cpp"
    return _HashDropout.apply(x, p, use_cpp)


def dropout_path(device_type: str, dtype: torch.dtype) -> str:
    """How the hash recipe drops on this device: "cpp" (the kernel, where built) on a CPU,
    "native" (torch's fused dropout: the same distribution, its own Philox stream) on a GPU,
    where the plain-PyTorch mask is about 20 element-wise kernels a call and made an H200's
    training step 2.2x slower than nn.Dropout (a GPU run never repeats a CPU run bit for bit
    anyway: cuDNN picks its own convolutions), "torch" otherwise."""
    if device_type == "cuda":
        return "native"
    return "cpp" if device_type == "cpu" and dtype in (torch.float32, torch.bfloat16) else "torch"


class HashDropout(nn.Dropout):
    """`nn.Dropout` with the counter-hash mask; same `p`, same state (none)."""

    backend: str | None = None  # None: the kernel on a CPU where built; "torch": plain PyTorch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hash_dropout(x, self.p, self.training, self.backend)


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y, idx = _extension().max_pool2x2(x)
        ctx.save_for_backward(idx)
        ctx.hw = x.shape[2:]
        return y

    @staticmethod
    def backward(ctx, grad):
        (idx,) = ctx.saved_tensors
        return _extension().max_pool2x2_backward(grad, idx, *ctx.hw)


class FastMaxPool2d(nn.MaxPool2d):
    """`nn.MaxPool2d(2)` with the one-pass kernel on a contiguous CPU tensor (exactly aten's
    values and gradients), aten's own elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous()
                and x.dtype in (torch.float32, torch.bfloat16) and backend() == "cpp"):
            return _MaxPool2x2.apply(x)
        return super().forward(x)


def _plain_pool(m: nn.Module) -> bool:
    """A 2x2, stride-2, unpadded, floor-mode max-pool (what the builder makes)."""
    return (type(m) is nn.MaxPool2d and m.kernel_size in (2, (2, 2))
            and m.stride in (2, (2, 2)) and m.padding in (0, (0, 0))
            and m.dilation in (1, (1, 1)) and not m.ceil_mode and not m.return_indices)


@contextmanager
def fast_layers(*models: nn.Module, dropout: bool, backend_name: str | None = None):
    """Within the block, `models` run the fast max-pool (exact) and, with `dropout`, the hash
    dropout (another random stream); the original modules are back afterwards."""
    swapped = []
    for model in models:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if dropout and type(child) is nn.Dropout:
                    fast = HashDropout(child.p)
                    fast.backend = backend_name
                elif _plain_pool(child) and (backend_name or backend()) == "cpp":
                    fast = FastMaxPool2d(2)
                else:
                    continue
                fast.train(child.training)
                setattr(parent, name, fast)
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, original in swapped:
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)
