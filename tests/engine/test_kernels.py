"""The fast CPU layers (engine.kernels): hash dropout and the 2x2 max-pool, on both paths."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nas_mnist.engine import kernels
from nas_mnist.engine.builder import build_model
from nas_mnist.engine.kernels import FastMaxPool2d, fast_layers, hash_dropout, plain
from nas_mnist.engine.train import evaluate, train
from nas_mnist.engine.data import load_dataset
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.blocks import ConvSpec, Transition
from nas_mnist.spec.recipe import Recipe

needs_cpp = pytest.mark.skipif(kernels.backend() != "cpp", reason="no C++ compiler here")


def _drop(x, p, seed, backend=None):
    torch.manual_seed(seed)
    return hash_dropout(x, p, backend_name=backend)


@pytest.mark.parametrize("p", [0.0055, 0.1, 0.5])
def test_dropout_keeps_the_expected_fraction_and_scales_what_it_keeps(p):
    x = torch.ones(1_000_000)
    y = _drop(x, p, seed=0)
    kept = (y != 0).float().mean().item()
    sigma = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(kept - (1 - p)) < 5 * sigma
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))


def test_dropout_is_deterministic_for_a_seed_and_differs_between_seeds():
    x = torch.randn(64, 8, 14, 14)
    assert torch.equal(_drop(x, 0.2, 3), _drop(x, 0.2, 3))
    assert not torch.equal(_drop(x, 0.2, 3), _drop(x, 0.2, 4))


def test_dropout_masks_of_one_call_are_uncorrelated_between_neighbours():
    keep = kernels.keep_mask(1_000_000, 0.5, seed=12345).float()
    corr = torch.corrcoef(torch.stack([keep[:-1], keep[1:]]))[0, 1].item()
    assert abs(corr) < 0.01


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_kernel_and_plain_pytorch_give_the_same_values_and_gradients(dtype, layout):
    x = torch.randn(16, 6, 13, 11).to(dtype).contiguous(memory_format=layout)
    outs = []
    for backend in ("cpp", "torch"):
        xi = x.clone().requires_grad_()
        torch.manual_seed(7)
        y = hash_dropout(xi, 0.3, backend_name=backend)
        y.backward(torch.arange(y.numel(), dtype=torch.float32).view(y.shape).to(dtype))
        outs.append((y.detach(), xi.grad))
    (y_cpp, g_cpp), (y_pt, g_pt) = outs
    assert torch.equal(y_cpp, y_pt)
    assert torch.equal(g_cpp, g_pt)


def test_the_gradient_is_the_forward_mask_times_the_scale():
    x = (torch.rand(32, 4, 10, 10) + 0.5).requires_grad_()
    torch.manual_seed(1)
    y = hash_dropout(x, 0.25)
    y.sum().backward()
    expected = (y.detach() != 0).float() / 0.75
    assert torch.allclose(x.grad, expected)


def test_dropout_is_the_identity_in_eval_and_at_rate_zero():
    x = torch.randn(4, 3, 5, 5)
    assert hash_dropout(x, 0.3, training=False) is x
    assert hash_dropout(x, 0.0) is x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(8, 5, 28, 28), (3, 2, 13, 11), (2, 1, 3, 2)])
def test_fast_max_pool_is_exactly_atens_in_value_and_gradient(dtype, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape).relu().round().to(dtype)  # many ties, as after a ReLU
    x.view(-1)[5] = float("nan")
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = F.max_pool2d(a, 2), FastMaxPool2d(2)(b)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(ya.nan_to_num(-1), yb.nan_to_num(-1))
    assert torch.equal(a.grad, b.grad)


def _tiny_arch(**changes) -> ArchConfig:
    arch = ArchConfig(stages=((ConvSpec(8), ConvSpec(8)), (ConvSpec(12),)),
                      transitions=(Transition(conv1x1=6),), dropout=0.1)
    return dataclasses.replace(arch, **changes)


def _train(data, recipe, seed=0):
    torch.manual_seed(seed)
    model = build_model(_tiny_arch())
    return model, train(model, data, recipe, seed=seed)


@pytest.fixture(scope="module")
def small(small_data_dir):
    """768 training and 500 evaluation images: the properties below (same numbers on both
    paths, from run to run) hold at any size, and training on the fixture's 3,000 cost the
    fast loop 25 s."""
    data = load_dataset(str(small_data_dir))
    return dataclasses.replace(data, train_x=data.train_x[:768], train_y=data.train_y[:768],
                               eval_x=data.eval_x[:500], eval_y=data.eval_y[:500])


def test_the_layers_are_swapped_only_while_training_and_put_back(small):
    model = build_model(_tiny_arch())
    kinds = [type(m) for m in model.modules()]
    with fast_layers(model, dropout=True):
        assert any(isinstance(m, kernels.HashDropout) for m in model.modules())
    assert [type(m) for m in model.modules()] == kinds
    train(model, small, Recipe(epochs=1, last_n=1, dropout_rng="hash"))
    assert [type(m) for m in model.modules()] == kinds


def test_training_with_hash_dropout_is_reproducible_and_the_same_on_both_paths(small):
    recipe = Recipe(epochs=1, last_n=1, dropout_rng="hash", precision="fp32")
    _, first = _train(small, recipe)
    _, again = _train(small, recipe)
    with plain():
        _, fallback = _train(small, recipe)
    assert first.accs == again.accs == fallback.accs
    assert first.epochs[0].train_loss == pytest.approx(fallback.epochs[0].train_loss, rel=1e-5)


def test_the_fast_pool_leaves_an_older_recipes_numbers_exactly_as_they_were(small):
    recipe = Recipe(epochs=1, last_n=1, precision="fp32")  # bernoulli dropout, fp32 eval
    _, fast = _train(small, recipe)
    with plain():
        _, before = _train(small, recipe)
    assert fast.accs == before.accs
    assert fast.epochs[0].train_loss == before.epochs[0].train_loss


def test_bf16_evaluation_agrees_with_fp32_on_a_trained_network(small):
    model, _ = _train(small, Recipe(epochs=2, last_n=1, precision="fp32"))
    model.eval()
    fp32, _ = evaluate(model, small.eval_x, small.eval_y, small)
    bf16, _ = evaluate(model, small.eval_x, small.eval_y, small, precision="bf16")
    assert abs(fp32 - bf16) <= 0.6  # 3 of 500 images; README: 0.00-0.03 at the end


def test_the_recipe_records_how_it_evaluated(small):
    _, result = _train(small, Recipe(epochs=1, last_n=1, precision="bf16",
                                     eval_precision="train"))
    assert result.to_dict()["eval_precision"] == "bf16"
    _, result = _train(small, Recipe(epochs=1, last_n=1, precision="bf16"))
    assert result.to_dict()["eval_precision"] == "fp32"


def test_a_failed_build_falls_back_in_one_line_with_the_same_numbers(monkeypatch, capsys,
                                                                    tmp_path):
    import torch.utils.cpp_extension as ext

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'nas_mnist_kernels'\nmore lines")

    monkeypatch.setattr(ext, "load_inline", no_compiler)
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("NAS_MNIST_KERNEL_DIR", str(tmp_path / "empty-cache"))
    x = torch.randn(10, 4, 6, 6)
    torch.manual_seed(2)
    y = hash_dropout(x, 0.4)
    assert kernels.backend() == "torch"
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("nas-mnist: building the CPU kernels") and len(err) == 2
    assert "could not be built" in err[1] and "same numbers" in err[1]
    assert "more lines" not in err[1]
    torch.manual_seed(2)
    assert torch.equal(y, hash_dropout(x, 0.4, backend_name="torch"))


def test_on_a_gpu_the_hash_recipe_drops_with_torchs_fused_kernel():
    """On an H200 the plain-PyTorch hash mask (about 20 element-wise kernels a call) made
    a training step 2.2x slower than nn.Dropout: a GPU takes torch's fused dropout."""
    assert kernels.dropout_path("cuda", torch.bfloat16) == "native"
    assert kernels.dropout_path("cpu", torch.float32) == "cpp"
    assert kernels.dropout_path("cpu", torch.float16) == "torch"
    x = torch.randn(64, 8, 5, 5)
    torch.manual_seed(3)
    y = hash_dropout(x, 0.3, backend_name="native")
    torch.manual_seed(3)
    assert torch.equal(y, F.dropout(x, 0.3, training=True))
