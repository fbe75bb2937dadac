import pytest

from nas_mnist.spec.limits import LIMITS, Counts, Limits


def test_a_limit_not_set_refuses_nothing_and_adds_no_constraint():
    limits = Limits(budget=10_000)
    assert limits.constraint_names() == ["param_budget"]
    assert limits.admits(Counts(params=9_000, activations=10**9, peak=10**9, macs=10**12))


def test_the_first_limit_breached_names_the_refusal_in_the_order_recorded_so_far():
    limits = Limits(10_000, min_params=4_000, max_macs=10**6, max_activations=200_000,
                    max_ram=4_096)
    assert limits.refusal_kind(Counts(12_000, 300_000, 9_000, 2 * 10**6)) == "over_budget"
    assert limits.refusal_kind(Counts(3_000, 300_000, 9_000)) == "under_floor"
    assert limits.refusal_kind(Counts(5_000, 300_000, 9_000, 2 * 10**6)) == "over_macs"
    assert limits.refusal_kind(Counts(5_000, 300_000, 9_000)) == "over_activations"  # MACs uncounted
    assert limits.refusal_kind(Counts(5_000, 100_000, 9_000)) == "over_ram"
    assert limits.refusal(Counts(5_000, 100_000, 9_000)) == "over the RAM limit (9,000 > 4,096 B)"
    assert limits.refusal(Counts(3_000, 1, 1)) == "under the size floor (3,000 < 4,000 parameters)"
    assert limits.refusal(Counts(5_000, 100_000, 4_000, 10)) is None


def test_constraints_keep_the_stored_order_and_are_positive_only_when_breached():
    limits = Limits(10_000, min_params=4_000, max_macs=10**6, max_activations=200_000,
                    max_ram=4_096)
    assert limits.constraint_names() == ["param_budget", "param_floor", "max_macs", "max_ram",
                                         "max_activations"]
    values = limits.constraint_values(Counts(3_000, 250_000, 1_000, 10))
    assert values == {"param_budget": -7_000, "param_floor": 1_000, "max_macs": 10 - 10**6,
                      "max_ram": 1_000 - 4_096, "max_activations": 50_000}


@pytest.mark.parametrize("limit", LIMITS, ids=lambda limit: limit.kind)
def test_every_limit_is_described_with_its_keyword(limit):
    limits = Limits(10_000, min_params=4_000, max_macs=10**6, max_activations=200_000,
                    max_ram=4_096)
    assert limits.describe(limit.kind).startswith(limit.words + f" {limit.key}=")
