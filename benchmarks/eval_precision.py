"""bf16 vs fp32 evaluation of trained networks: the shipped winners' weights, 10,000 test images.

    python benchmarks/eval_precision.py [WINNER.json ...]   # default: every studies/*-winners/*.json

For each winner with weights: accuracy in fp32 and in bf16 autocast (what a new study's trials
are scored with, recipe eval_precision "train"), the predictions that differ, and the time of
each evaluation on this machine (one thread).
"""

from __future__ import annotations

import glob
import json
import sys
import time
from pathlib import Path

import torch

from nas_mnist.engine.builder import build_model
from nas_mnist.engine.data import load_dataset
from nas_mnist.engine.device import cpu_model, native_bf16
from nas_mnist.engine.train import load_state, normalise
from nas_mnist.spec.arch import ArchConfig


@torch.no_grad()
def predictions(model, data, bf16: bool) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = []
    for start in range(0, len(data.test_x), 1000):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.no_grad()
        with ctx:
            out.append(model(normalise(data.test_x[start:start + 1000], data)).argmax(1))
    return torch.cat(out), time.perf_counter() - t0


def main(paths: list[str]) -> None:
    torch.set_num_threads(1)
    data = load_dataset(None)
    print(f"{cpu_model()} (native bf16: {native_bf16(torch.device('cpu'))}), one thread, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'winner':<46} {'fp32 %':>7} {'bf16 %':>7} {'diff':>6} {'changed':>7} "
          f"{'fp32 s':>6} {'bf16 s':>6}")
    diffs = []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        weights = Path(path).with_suffix(".pt")
        if not weights.exists():
            continue
        model = load_state(build_model(ArchConfig.from_dict(doc["arch"])), weights).eval()
        norm = doc.get("normalisation") or {}
        d = data
        if norm.get("mean") is not None:
            import dataclasses
            d = dataclasses.replace(data, mean=float(norm["mean"]), std=float(norm["std"]))
        predictions(model, d, True)  # warm-up
        p32, t32 = predictions(model, d, False)
        p16, t16 = predictions(model, d, True)
        a32 = 100 * int((p32 == d.test_y).sum()) / len(p32)
        a16 = 100 * int((p16 == d.test_y).sum()) / len(p16)
        diffs.append(a16 - a32)
        print(f"{path:<46} {a32:7.2f} {a16:7.2f} {a16 - a32:+6.2f} {int((p32 != p16).sum()):7d} "
              f"{t32:6.2f} {t16:6.2f}")
    if diffs:
        print(f"{len(diffs)} networks: bf16 - fp32 from {min(diffs):+.2f} to {max(diffs):+.2f} "
              f"points, mean {sum(diffs) / len(diffs):+.3f}")


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(glob.glob("studies/*-winners/*.json")))
