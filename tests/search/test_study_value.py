"""One resolution of what a study is: the values given, else the stored study's, else the
defaults (searcher.settings.StudyValue.resolve)."""

import pytest

from nas_mnist.searcher.defaults import STUDY_DEFAULTS
from nas_mnist.searcher.record import StudyMeta
from nas_mnist.searcher.settings import SettingsError, StudyValue
from nas_mnist.searcher.space import load_space

NOTHING = dict.fromkeys(("budget", "space", "epochs", "objective", "objectives", "val_split",
                         "split_seed", "last_n", "max_macs", "max_ram", "min_params",
                         "max_activations", "arch"))


def _stored(**changes) -> StudyMeta:
    space = load_space("quick")
    values = dict(budget=3_000, space="quick", space_digest=space.digest, min_params=0,
                  max_activations=0, split_seed=4, val_split=5_000, epochs=4, last_n=2,
                  max_ram=9_000, width_scale=0.75, data_checksum="c" * 64)
    return StudyMeta(**{**values, **changes})


def test_a_new_study_takes_the_defaults():
    value = StudyValue.resolve(NOTHING, None)
    for key, default in STUDY_DEFAULTS.items():
        assert getattr(value, key) == default, key
    assert value.min_params is None and value.resolved_min_params == 4_000


def test_a_resume_takes_every_value_it_was_not_given_from_the_stored_study():
    stored = _stored()
    value = StudyValue.resolve(NOTHING, stored)
    assert (value.budget, value.space, value.epochs, value.last_n, value.split_seed,
            value.val_split, value.max_ram, value.width_scale) == (3_000, "quick", 4, 2, 4,
                                                                   5_000, 9_000, 0.75)
    # limits the study stored (an older study: none) are its own, not today's defaults
    assert (value.resolved_min_params, value.resolved_max_activations) == (0, 0)


def test_a_given_value_stays_given_so_a_change_is_named_as_one():
    value = StudyValue.resolve({**NOTHING, "budget": 4_000, "min_params": 100}, _stored())
    assert (value.budget, value.min_params) == (4_000, 100)


def test_a_recipe_study_of_another_network_is_refused_by_name():
    arch = {"stages": [[{"out": 4}]]}
    with pytest.raises(SettingsError, match="arch: the stored study is a search of sampled architectures"):
        StudyValue.resolve({**NOTHING, "arch": arch}, _stored())


def test_a_space_that_is_no_packaged_file_must_be_given():
    with pytest.raises(SettingsError, match="space: the study was made with space 'mine'"):
        StudyValue.resolve(NOTHING, _stored(space="mine", space_digest="not-packaged"))


def test_a_resume_asking_other_objectives_keeps_the_floor_out_of_the_way():
    """The stored floor belongs to a single-objective study: carried over to a request for
    two objectives it was refused as a floor, hiding the real difference (the objectives)."""
    value = StudyValue.resolve({**NOTHING, "objectives": "score,params"},
                               _stored(min_params=1_200))
    assert value.objectives == "score,params" and value.resolved_min_params == 0
