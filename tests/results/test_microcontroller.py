"""The full-int8 graph, the .tflite file and the C source: each run by its own runtime (LiteRT,
TensorFlow Lite Micro, the system C compiler) must compute the integer reference's logits."""

import json
import random
import shutil

import numpy as np
import pytest
import torch

from nas_mnist.cli import main
from nas_mnist.engine.builder import build_model
from nas_mnist.results import int8
from nas_mnist.results.models import DeployError, Normalised
from nas_mnist.spec.arch import ArchConfig

# Every layer kind the builder makes: grouped and separable convs (with and without their own
# BN + ReLU), padded and unpadded, a 1x1 transition without activation, BN after the ReLU
# (not foldable: a per-channel scale of its own), biases, and each of the three heads.
ARCHS = {
    "grouped_gap_conv": {"stages": [[{"out": 8, "pad": 1}, {"out": 8, "kind": "grouped",
                                                            "groups": 2, "pad": 0}],
                                    [{"out": 12, "kind": "separable", "pad": 1}]],
                         "transitions": [{"conv1x1": 6, "where": "before", "act": False}],
                         "head": {"kind": "gap_conv", "pre_gap": 10, "bias": True},
                         "conv_bias": True},
    "bn_after_relu_linear": {"stages": [[{"out": 6, "pad": 0}], [{"out": 10, "pad": 1,
                                                                  "kind": "separable",
                                                                  "mid_act": False}]],
                             "transitions": [{"conv1x1": None, "where": "before", "act": True}],
                             "head": {"kind": "gap_linear", "pre_gap": None, "bias": True},
                             "bn_position": "after_relu", "dropout": 0.1},
    "conv_gap": {"stages": [[{"out": 4, "pad": 0}, {"out": 8, "pad": 0}]],
                 "transitions": [{"conv1x1": 8, "where": "after", "act": True}],
                 "head": {"kind": "conv_gap", "pre_gap": None, "bias": False}},
    "input_pool": {"stages": [[{"out": 6, "pad": 1}], [{"out": 8, "pad": 0}]],
                   "transitions": [{"conv1x1": None, "where": "before", "act": False}],
                   "head": {"kind": "gap_conv", "pre_gap": 8, "bias": False}, "input_pool": 2},
}


def _model(name: str) -> Normalised:
    """A network with random weights and random batch-norm statistics (a trained network's
    folding is the same arithmetic), raw [0, 1] images in."""
    torch.manual_seed(0)
    model = build_model(ArchConfig.from_dict(ARCHS[name]))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5), module.bias.data.uniform_(-0.3, 0.3)
    return Normalised(model, 0.1307, 0.3081).eval()


@pytest.fixture(scope="module")
def images():
    """300 real MNIST test images as [0, 1] floats (N, 1, 28, 28), and 256 training images
    for the calibration."""
    from nas_mnist.engine.data import PACKAGED_DIR, read_idx
    test, _ = read_idx(PACKAGED_DIR / "t10k-images-idx3-ubyte.gz")
    train, _ = read_idx(PACKAGED_DIR / "train-images-idx3-ubyte.gz")
    as_float = lambda a: torch.from_numpy(a[:, None] / np.float32(255.0))  # noqa: E731
    return as_float(test[:300]), as_float(train[:256])


@pytest.fixture(scope="module", params=sorted(ARCHS))
def graph(request, images):
    test, calibration = images
    model = _model(request.param)
    return model, int8.quantize(model, calibration), test


def test_folded_float_ops_compute_the_network(graph):
    """Batch norm, biases and the normalisation folded into the ops change no logit."""
    model, _, test = graph
    x = (test.double() - float(model.mean)) / float(model.std)
    for op in int8.fold(model):
        x = int8._run_float(op, x)
    with torch.no_grad():
        expected = model(test).double()
    assert torch.allclose(x.reshape(len(x), -1), expected, atol=1e-6)


def test_int8_graph_stays_close_to_fp32(graph):
    model, g, test = graph
    with torch.no_grad():
        fp32 = model(test).numpy()
    logits = g.dequantize(g.run(g.quantize_images(test.numpy())))
    spread = fp32.max() - fp32.min()
    assert np.abs(logits - fp32).max() < 0.1 * spread  # a few output steps, not a broken scale


def _tflite_requantize(acc: int, multiplier: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier on one int32, written as its C reads."""
    left, right = max(shift, 0), max(-shift, 0)
    a, b = acc * (1 << left), multiplier
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    nudged = ab + nudge
    high = (abs(nudged) >> 31) * (1 if nudged >= 0 else -1)  # C's division: toward zero
    mask = (1 << right) - 1
    remainder, threshold = high & mask, (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if remainder > threshold else 0)


def test_requantize_is_tflite_rounding_on_every_sign_and_tie():
    rng = random.Random(0)
    cases = [(acc, *int8.quantize_multiplier(m)) for acc in (-5, -4, -3, -2, -1, 0, 1, 2, 3, 4)
             for m in (0.5, 0.25, 0.125, 0.75)]  # exact halves: the ties
    cases += [(rng.randint(-2**20, 2**20), *int8.quantize_multiplier(rng.uniform(1e-4, 0.9)))
              for _ in range(2000)]
    acc, mult, shift = (torch.tensor(column, dtype=torch.long) for column in zip(*cases))
    got = int8.requantize(acc, mult, shift).tolist()
    assert got == [_tflite_requantize(*case) for case in cases]
    # TFLite's two roundings, each hit by a tie: the doubling high multiply rounds half up
    # (-3 x 0.5 -> -1, 3 x 0.5 -> 2), the shift rounds half away from zero (-2 x 0.25 -> -1)
    half, quarter = (tuple(map(torch.tensor, int8.quantize_multiplier(m))) for m in (0.5, 0.25))
    assert int8.requantize(torch.tensor([-3, 3]), *half).tolist() == [-1, 2]
    assert int8.requantize(torch.tensor([-2, 2]), *quarter).tolist() == [-1, 1]


def test_a_layer_the_graph_cannot_express_is_named():
    model = Normalised(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Sigmoid()),
                       0.0, 1.0)
    with pytest.raises(DeployError, match="a Sigmoid layer cannot be exported"):
        int8.fold(model)
    strided = Normalised(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2)), 0.0, 1.0)
    with pytest.raises(DeployError, match="stride"):
        int8.fold(strided)


def test_tflite_file_runs_in_litert_and_tflite_micro_as_the_reference(graph):
    pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")
    pytest.importorskip("tflite_micro", reason="the tflite extra is not installed")
    from nas_mnist.results.models import LiteRT
    from nas_mnist.results.tflite import TFLM, tflite_bytes, tflm_arena
    _, g, test = graph
    blob = tflite_bytes(g)
    q = g.quantize_images(test.numpy())
    reference = g.run(q)
    arena = tflm_arena(blob, q[:1])
    micro = TFLM(blob, arena)
    assert (micro.run(q) == reference).all()  # TFLite Micro: bit for bit
    head, tail = micro.allocations()
    peak = g.peak_bytes()
    assert head + tail <= arena and peak <= head <= peak + 16 * 2  # activations + alignment
    lite = LiteRT(blob).run(q)  # XNNPACK may round a last bit its own way
    assert np.abs(lite.astype(int) - reference).max() <= 1
    assert (lite.argmax(1) == reference.argmax(1)).mean() >= 0.98


def test_c_source_compiles_and_computes_the_reference(graph):
    from nas_mnist.results.csource import c_source, check_c
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler (cc or gcc) on this machine")
    _, g, test = graph
    q = g.quantize_images(test.numpy())
    header, source = c_source(g, "net")
    assert "malloc(" not in source and "#include <stdint.h>" in header
    built = check_c(header, source, "net", q)
    assert (built["logits"] == g.run(q)).all()
    if "size_bss" in built:  # the arena is the only RAM the code takes
        assert built["size_bss"] == g.peak_bytes() and built["flash_bytes"] > g.weight_bytes()


def test_no_compiler_and_no_extra_are_one_line(monkeypatch, tmp_path):
    from nas_mnist.results import csource
    from nas_mnist.results.deploy import check_format
    monkeypatch.setenv("CC", "")
    monkeypatch.setattr(csource.shutil, "which", lambda name: None)
    with pytest.raises(DeployError, match="no C compiler found"):
        check_format("c")
    import builtins
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (
        (_ for _ in ()).throw(ImportError(name)) if name.startswith("ai_edge_litert")
        else real_import(name, *a, **k)))
    with pytest.raises(DeployError, match=r"needs the tflite extra: pip install -e '\.\[tflite\]'"):
        check_format("tflite-int8")


@pytest.mark.slow  # trains networks end to end
def test_export_tflite_and_c_and_predict_reads_the_tflite(tmp_path, small_data_dir, capsys,
                                                          monkeypatch):
    pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")
    pytest.importorskip("tflite_micro", reason="the tflite extra is not installed")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler (cc or gcc) on this machine")
    import nas_mnist.results.deploy as deploy
    monkeypatch.setattr(deploy, "MAX_INT8_DROP", 2.0)  # 2-epoch networks near 90 %
    url = f"sqlite:///{tmp_path}/m.db"
    assert main(["search", "--study", "m", "--storage", url, "--space", "quick", "--epochs",
                 "2", "--last-n", "1", "--data-dir", str(small_data_dir), "--artifacts",
                 str(tmp_path / "art"), "--budget", "5000", "--trials", "1", "--jobs", "1"]) == 0
    out = tmp_path / "w"
    assert main(["export", "--study", "m", "--storage", url, "--artifacts", str(tmp_path / "art"),
                 "--data-dir", str(small_data_dir), "--out", str(out), "--format", "tflite-int8",
                 "--format", "c", "--calibration-images", "256"]) == 0
    printed = capsys.readouterr().out
    assert "TFLite Micro: the same logits as the integer reference" in printed
    doc = json.loads(next(out.glob("*.json")).read_text())
    n, lite, c = doc["trial"], doc["deployed"]["tflite-int8"], doc["deployed"]["c"]
    assert {p.name for p in out.iterdir()} == {f"trial{n}{s}" for s in
                                              (".json", ".pt", ".int8.tflite", ".c", ".h")}
    assert lite["tflm_arena_bytes"] >= lite["tflm_arena_head"] >= lite["peak_ram_int8"]
    assert lite["tflm_predictions_equal_litert"] >= 99.0 and c["logits_equal_reference"] == 100
    assert main(["predict", str(out / f"trial{n}.int8.tflite"),
                 str(small_data_dir / "t10k-images-idx3-ubyte"),
                 "--labels", str(small_data_dir / "t10k-labels-idx1-ubyte")]) == 0
    printed = capsys.readouterr()
    assert f"accuracy {lite['tflite-int8_acc']:.2f} %" in printed.out + printed.err


def test_an_arena_over_the_parts_ram_is_refused_and_nothing_is_written(images, tmp_path):
    from types import SimpleNamespace
    from nas_mnist.results.deploy import export_model
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler (cc or gcc) on this machine")
    test, calibration = images
    data = SimpleNamespace(train_x=calibration, test_x=test[:64],
                           test_y=torch.zeros(64, dtype=torch.long))
    model = _model("conv_gap")
    with pytest.raises(DeployError, match=r"needs [\d,]+ B of RAM, more than device_ram 512 B"
                       ) as caught:
        export_model(model, "c", tmp_path / "net.c", data, calibration_images=64,
                     device_ram=512)
    assert caught.value.params == ("device_ram",) and not list(tmp_path.iterdir())
    check = export_model(model, "c", tmp_path / "net.c", data, calibration_images=64,
                         device_ram=100_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.c", "net.h"]
    assert check["logits_equal_reference"] == 100.0


def test_count_measures_the_tflite_micro_arena_beside_the_peak():
    pytest.importorskip("tflite_micro", reason="the tflite extra is not installed")
    from nas_mnist.api import count
    c = count(ArchConfig.from_dict(ARCHS["input_pool"]))
    assert c["tflm_arena_bytes"] >= c["tflm_arena_head"] + c["tflm_arena_tail"]
    assert c["peak_ram_int8"] <= c["tflm_arena_head"] < c["tflm_arena_bytes"]


def test_a_runtime_that_crashes_at_a_small_arena_does_not_take_the_caller_down(monkeypatch):
    """TFLite Micro segfaults at some arena sizes too small (4,096 B for woolly3762) instead
    of failing: each size is tried in a forked child, a crash counts as 'does not fit'."""
    import faulthandler
    import os
    import signal
    from nas_mnist.results import tflite
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")

    def crashy(model, probe, size):
        if size < 3000:
            faulthandler.disable()  # pytest's handler would print the child's stack
            os.kill(os.getpid(), signal.SIGSEGV)
        return True

    monkeypatch.setattr(tflite, "_fits", crashy)
    assert 3000 <= tflite.tflm_arena(b"", np.zeros((1, 1), np.int8)) < 3000 + 16
