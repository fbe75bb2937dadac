import json
from pathlib import Path

import pytest

from nas_mnist.spec.arch import ArchConfig, ConvSpec, Head, Transition, load_arch
from nas_mnist.engine.builder import build_model
from nas_mnist.engine.counting import count_macs, count_params

C = ConvSpec


def ref8k() -> ArchConfig:
    return ArchConfig(stages=((C(12), C(12)), tuple(C(12, pad=0) for _ in range(5))),
                      transitions=(Transition(),), dropout=0.05)


def test_reference_network_matches_hand_count():
    # convs 1*12*9 + 6 * 12*12*9, BN 2*12 per conv (7 convs), head 12*10, no biases
    expected = 108 + 6 * 1296 + 7 * 24 + 120
    arch = ref8k()
    packaged, _ = load_arch(str(Path(__file__).resolve().parents[2] / "nas_mnist" / "configs"
                                / "ref8k.json"))
    assert packaged.n_params() == expected  # the packaged config is the published 8,172
    assert arch.n_params() == expected
    assert count_params(build_model(arch)) == expected


def test_reference_network_macs():
    # per conv: H*W*(c_in*c_out*9) at the output size, plus BN, which fvcore counts as 2
    # per element at inference (normalise, then the affine scale)
    sizes = [28, 28, 12, 10, 8, 6, 4]
    conv = [28 * 28 * 108] + [s * s * 1296 for s in sizes[1:]]
    bn = [2 * s * s * 12 for s in sizes]
    assert count_macs(build_model(ref8k())) == sum(conv) + sum(bn) + 120


HAND_COUNTED = [
    # (config, hand arithmetic)
    (ArchConfig(stages=((C(8), C(16)), (C(16), C(16)), (C(16, pad=0),)),
                transitions=(Transition(conv1x1=8, where="before"),
                             Transition(conv1x1=8, where="after", act=True)),
                head=Head(kind="conv_gap"), batch_norm=True),
     (9 * 8 + 16) + (8 * 16 * 9 + 32)      # stage 1
     + 16 * 8                               # 1x1 before pool, no BN
     + (8 * 16 * 9 + 32) + (16 * 16 * 9 + 32)  # stage 2
     + (16 * 8 + 16)                         # 1x1 after pool with BN
     + (8 * 16 * 9 + 32)                     # stage 3
     + 16 * 10),                             # conv to classes
    (ArchConfig(stages=((C(10), C(10)),), transitions=(), head=Head(kind="gap_linear", bias=True),
                batch_norm=False, conv_bias=True),
     (9 * 10 + 10) + (90 * 10 + 10) + (10 * 10 + 10)),
    (ArchConfig(stages=((C(4),), (C(8),)), transitions=(Transition(), Transition()),
                head=Head(kind="gap_conv", pre_gap=16), bn_position="after_relu"),
     (9 * 4 + 8) + (36 * 8 + 16) + (8 * 16 + 32) + 16 * 10),
    (ArchConfig(stages=((C(6, k=1), C(6)),), head=Head(kind="conv_gap", pre_gap=12, bias=True),
                conv_bias=True, batch_norm=False, dropout_kind="channel", dropout=0.1),
     (6 + 6) + (54 * 6 + 6) + (6 * 12 + 12) + (12 * 10 + 10)),
]


@pytest.mark.parametrize("arch,expected", HAND_COUNTED)
def test_builder_counts_match_hand_arithmetic(arch, expected):
    model = build_model(arch)
    assert arch.n_params() == expected
    assert count_params(model) == expected
    import torch
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_feature_sizes_track_padding_and_pools():
    assert ref8k().feature_sizes() == [28, 28, 14, 12, 10, 8, 6, 4]


def test_json_round_trip(tmp_path):
    arch = HAND_COUNTED[0][0]
    assert ArchConfig.from_json(arch.to_json()) == arch
    assert ArchConfig.from_json(arch.to_json()).key() == arch.key()
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"arch": arch.to_dict(), "recipe": {"epochs": 3}}))
    loaded, doc = load_arch(path)
    assert loaded == arch and doc["recipe"] == {"epochs": 3}


@pytest.mark.parametrize("make,message", [
    (lambda: ArchConfig(stages=(tuple(C(8, pad=0) for _ in range(14)),)), "shrinks to nothing"),
    (lambda: ArchConfig(stages=((C(8),),), dropout=1.0), "dropout rate"),
    (lambda: ArchConfig(stages=((C(8),),), dropout=-0.1), "dropout rate"),
    (lambda: ArchConfig(stages=((C(8),),), head=None), "missing head"),
    (lambda: ArchConfig(stages=((C(8),), (C(8),)), transitions=()), "transition"),
    (lambda: ArchConfig(stages=((C(8, pad=2),),)), "padding"),
    (lambda: ArchConfig(stages=((C(0),),)), "positive integer"),
    (lambda: ArchConfig(stages=((C(8),),), head=Head(kind="mlp")), "head kind"),
    (lambda: ArchConfig(stages=()), "one stage"),
    (lambda: ArchConfig(stages=((C(8),),), stage_dropout=(0.1, 0.1)), "stage_dropout"),
    (lambda: ArchConfig.from_dict({"stages": [[{"out": 8, "stride": 2}]]}), "unknown key"),
    (lambda: ArchConfig.from_dict({"stages": [[{"pad": 1}]]}), "out"),
    (lambda: ArchConfig.from_dict({"head": {}}), "missing key 'stages'"),
])
def test_invalid_configs_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_pooling_a_one_pixel_map_is_refused():
    stages = ((C(8, pad=0),) * 3,) * 3  # 28 -> 22 -> 11 -> 5 -> 2 -> ... vanishes
    with pytest.raises(ValueError, match="nothing"):
        ArchConfig(stages=stages, transitions=(Transition(), Transition()))


@pytest.mark.slow  # trains networks end to end
@pytest.mark.parametrize("space_name", ["default", "tiny"])
def test_every_sampled_network_builds_and_counts_as_fvcore_does(space_name):
    """Property test over random samples of a space: the closed-form count equals fvcore's,
    and the model maps images to class logits (full, separable and grouped convs)."""
    import optuna
    import torch
    from nas_mnist.engine.builder import build_model
    from nas_mnist.engine.counting import count_params
    from nas_mnist.errors import SpecError
    from nas_mnist.searcher.space import load_space
    from nas_mnist.searcher.sampling import suggest_arch
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    kinds, checked = set(), 0
    for _ in range(150):
        trial = study.ask()
        try:
            arch = suggest_arch(trial, space)
        except SpecError:
            study.tell(trial, 0.0)
            continue
        model = build_model(arch).eval()
        assert arch.n_params() == count_params(model), arch.describe()
        with torch.no_grad():
            assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        kinds |= {c.kind for stage in arch.stages for c in stage}
        checked += 1
        study.tell(trial, 0.0)
    assert checked > 50 and "separable" in kinds
    if space_name == "tiny":
        assert kinds == {"full", "separable", "grouped"}


def test_separable_and_grouped_counts_by_hand():
    from nas_mnist.engine.builder import build_model
    from nas_mnist.engine.counting import count_macs, count_params
    arch = ArchConfig(stages=((ConvSpec(8), ConvSpec(16, kind="separable")),
                              (ConvSpec(16, kind="grouped", groups=4, pad=0),)),
                      transitions=(Transition(),))
    # 8*9+16 | depthwise 8*9 + BN 16, pointwise 8*16 + BN 32 | 16*16*9/4 + 32 | head 16*10
    assert arch.n_params() == (72 + 16) + (72 + 16 + 128 + 32) + (576 + 32) + 160 == 1104
    model = build_model(arch)
    assert count_params(model) == 1104
    # MACs of the depthwise conv: 8 channels x 9 x 28 x 28 (fvcore counts groups right)
    dw = build_model(ArchConfig(stages=((ConvSpec(8), ConvSpec(8, kind="separable")),),
                                head=Head(kind="gap_conv")))
    # the separable block: depthwise 8 x 9 x 784, BN between (2 per element), pointwise
    # 8 x 8 x 784, BN after
    assert (count_macs(dw) - count_macs(build_model(ArchConfig(stages=((ConvSpec(8),),))))
            == 8 * 9 * 784 + 2 * 8 * 784 + 8 * 8 * 784 + 2 * 8 * 784)
    assert arch.describe() == "8-16s | M | 16g4v | gap_conv"


def test_the_published_4k_design_is_expressed_with_its_parameter_count():
    """adilsammar/woolly-of-cv's 3,762-parameter network, as the write-up counts it."""
    from pathlib import Path
    from nas_mnist.spec.arch import load_arch
    from nas_mnist.spec.recipe import Recipe
    path = Path(__file__).resolve().parents[2] / "nas_mnist/configs/woolly3762.json"
    arch, doc = load_arch(path)
    assert arch.n_params() == 3762
    assert Recipe.from_dict(doc["recipe"]).batch_size == 32
