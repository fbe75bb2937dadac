"""The shipped winners on a microcontroller's terms, and what TFLite Micro's arena is made of.

1. Each winner file given is exported as full-int8 .tflite, C and int8 ONNX (its stored
   weights, packaged MNIST, 1,024 calibration images) and checked: accuracy in LiteRT, TFLite
   Micro and the compiled C against fp32, prediction agreement with the int8 ONNX model, the
   arena TFLite Micro needs (found by bisection), flash from `size`, latency on this CPU.
2. `--sample N` networks drawn uniformly from a space (random weights: the arena depends on
   the structure only) give the relation between the tool's peak-RAM figure and the arena:
   head (the planned activations) against the peak, and the tail (the interpreter's own
   structs) fitted as bytes per op, per conv op and per output channel.

Writes one JSON (default studies/microcontroller.json) and prints a table.

    python benchmarks/microcontroller.py studies/mnist-10k-winners/trial52.json \\
        studies/mnist-10k-mcu-winners/trial65.json --sample 40 --space mcu
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas_mnist.engine.builder import build_model  # noqa: E402
from nas_mnist.engine.counting import count_macs  # noqa: E402
from nas_mnist.engine.data import load_dataset  # noqa: E402
from nas_mnist.engine.device import cpu_model  # noqa: E402
from nas_mnist.results.csource import c_source  # noqa: E402
from nas_mnist.results.deploy import CALIBRATION_IMAGES, export_model  # noqa: E402
from nas_mnist.results.int8 import calibration_images, quantize  # noqa: E402
from nas_mnist.results.models import Normalised, load_model, winner_module  # noqa: E402
from nas_mnist.results.tflite import TFLM, tflite_bytes, tflm_arena  # noqa: E402
from nas_mnist.spec.winner import WinnerFile  # noqa: E402


def winner_figures(path: Path, data, out: Path) -> dict:
    winner = WinnerFile.read(path)
    model = winner_module(path, winner)
    stem = path.stem
    row = {"winner": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
           "params": winner.arch.n_params(), "macs": count_macs(build_model(winner.arch))}
    for fmt, suffix in (("onnx-int8", ".int8.onnx"), ("tflite-int8", ".int8.tflite"),
                        ("c", ".c")):
        start = time.perf_counter()
        check = export_model(model, fmt, out / f"{stem}{suffix}", data)
        check["export_seconds"] = round(time.perf_counter() - start, 1)
        row[fmt] = check
    images = data.test_x.cpu().numpy()
    onnx8 = load_model(out / f"{stem}.int8.onnx").predict(images)
    lite = load_model(out / f"{stem}.int8.tflite").predict(images)
    row["tflite_vs_onnx_int8_agreement"] = 100.0 * int((onnx8 == lite).sum()) / len(lite)
    return row


def arena_sample(space_name: str, samples: int, calibration: torch.Tensor) -> dict:
    """Arena head and tail of `samples` valid uniform draws of a space (random weights)."""
    from nas_mnist.searcher.sampling import uniform_draws
    from nas_mnist.searcher.space import load_space
    space = load_space(space_name)
    rows = []
    for _, arch in uniform_draws(space, samples * 4, seed=0):
        if arch is None or len(rows) == samples:
            continue
        torch.manual_seed(0)
        model = Normalised(build_model(arch), 0.1307, 0.3081).eval()
        graph = quantize(model, calibration)
        blob = tflite_bytes(graph)
        q = graph.quantize_images(calibration[:1].numpy())
        arena = tflm_arena(blob, q)
        head, tail = TFLM(blob, arena).allocations()
        convs = [op for op in graph.ops if op.weight is not None]
        rows.append({"params": arch.n_params(), "peak": graph.peak_bytes(),
                     "arena": arena, "head": head, "tail": tail, "ops": len(graph.ops) + 1,
                     "conv_ops": len(convs),
                     "channels": int(sum(op.bias.size for op in convs)),
                     "c_arena": graph.peak_bytes(),
                     "c_source_bytes": len(c_source(graph, "net")[1])})
    # tail = a + b * ops + c * conv ops + d * channels, least squares; its worst residual
    x = np.array([[1, r["ops"], r["conv_ops"], r["channels"]] for r in rows], float)
    y = np.array([r["tail"] for r in rows], float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    head_over_peak = [r["head"] - r["peak"] for r in rows]
    return {"space": space_name, "networks": len(rows), "rows": rows,
            "tail_fit": {"intercept": round(coef[0], 1), "per_op": round(coef[1], 1),
                         "per_conv_op": round(coef[2], 1), "per_channel": round(coef[3], 2),
                         "worst_residual_bytes": round(float(np.abs(residual).max()), 1)},
            "head_minus_peak": {"min": min(head_over_peak), "max": max(head_over_peak)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("winners", nargs="*", type=Path, help="winner JSON files")
    parser.add_argument("--sample", type=int, default=0, help="networks for the arena fit")
    parser.add_argument("--space", default="mcu", help="space the arena sample is drawn from")
    parser.add_argument("--out", type=Path, default=ROOT / "studies" / "microcontroller.json")
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset()
    report = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "note": args.note,
              "calibration_images": CALIBRATION_IMAGES, "winners": []}
    with tempfile.TemporaryDirectory() as work:
        for path in args.winners:
            row = winner_figures(path.resolve(), data, Path(work))
            report["winners"].append(row)
            lite, c = row["tflite-int8"], row["c"]
            print(f"{path.name}: {row['params']:,} params, {row['macs']:,} MACs; fp32 "
                  f"{lite['torch_acc']:.2f} %, LiteRT {lite['tflite-int8_acc']:.2f} %, TFLM "
                  f"{lite['tflm_acc']:.2f} %, C {c['c_acc']:.2f} %, int8 ONNX "
                  f"{row['onnx-int8']['onnx-int8_acc']:.2f} %; LiteRT vs int8 ONNX "
                  f"{row['tflite_vs_onnx_int8_agreement']:.2f} % agree; arena "
                  f"{lite['tflm_arena_bytes']:,} B (head {lite['tflm_arena_head']:,}, peak "
                  f"{lite['peak_ram_int8']:,}); C {c.get('flash_bytes', 0):,} B flash, "
                  f"{c['arena_bytes']:,} B arena; LiteRT {lite['latency_ms']:.3f} ms")
    if args.sample:
        calibration = calibration_images(data.train_x, 256)
        report["arena_sample"] = arena_sample(args.space, args.sample, calibration)
        fit = report["arena_sample"]["tail_fit"]
        print(f"arena of {args.sample} {args.space} networks: head - peak "
              f"{report['arena_sample']['head_minus_peak']}; tail = {fit['intercept']} + "
              f"{fit['per_op']} x ops + {fit['per_conv_op']} x conv ops + {fit['per_channel']} x "
              f"channels (worst residual {fit['worst_residual_bytes']} B)")
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
