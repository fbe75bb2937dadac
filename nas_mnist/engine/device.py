"""Pick the device and CPU threads for a run."""

from __future__ import annotations

import os

import torch

from nas_mnist.errors import NasMnistError


class DeviceError(NasMnistError):
    """The requested device cannot be used."""


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device cuda requested but no CUDA GPU is available",
                          params=("device",))
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"device must be auto, cpu or cuda, got {name!r}", params=("device",))
    return torch.device(name)


def cpu_model() -> str:
    """The CPU's marketing name ("Intel(R) Xeon(R) Processor"): every speed figure names it."""
    import platform
    from pathlib import Path
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    """Cores this process may use (its affinity where the OS tells, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


GPU_WORKERS = 4  # on an H200, four runs of trial52 at once took 40 s each, as long as one


def auto_jobs(device: torch.device) -> int:
    """Search workers: one one-thread worker per core on the CPU (measured ~15-20 % more
    trials per hour than one worker using every core); on a GPU four, sharing it (networks
    this small leave it waiting on kernel launches), or one per core where there are fewer."""
    return min(GPU_WORKERS, cpu_cores()) if device.type == "cuda" else cpu_cores()


OVERSUBSCRIBE = 4  # threads (or processes) per core beyond which a request is refused


def check_parallel(n: int, what: str) -> None:
    """Refuse `n` threads or processes that would swamp the cores (torch segfaulted at
    100,000 threads; 60 workers on 2 cores took 8 GB in 30 s)."""
    limit = OVERSUBSCRIBE * cpu_cores()
    if n > limit:
        raise DeviceError(f"{what} {n} is more than {OVERSUBSCRIBE} per CPU core "
                          f"({cpu_cores()} cores here: at most {limit})", params=(what,))


def set_threads(n: int | None) -> int:
    """Use `n` CPU threads for torch (default: all cores this process may use)."""
    n = n or cpu_cores()
    check_parallel(n, "threads")
    torch.set_num_threads(n)
    return n


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA device that says so, or a CPU with
    AVX512-BF16 or AMX. On an AVX2-only AMD EPYC (Zen 3) bf16 autocast is emulated: a trial-52
    training step took 155 ms against 36 ms in fp32 (one thread, batch 128, 2026-12-01)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes: trust the recipe's bf16
        return True


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a recipe trains in on `device`: "auto" becomes bf16 or fp32."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"
