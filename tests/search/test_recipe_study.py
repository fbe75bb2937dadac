"""The recipe stage: a study of one fixed architecture that searches only its recipe
(`search --arch FILE`, the packaged `recipe` space)."""

import json
from pathlib import Path

import optuna
import pytest

import nas_mnist as nm
from nas_mnist.cli import main
from nas_mnist.searcher.record import StudyMeta, records
from nas_mnist.searcher.settings import SearchSettings, SettingsError
from nas_mnist.searcher.space import SpaceError, load_space
from nas_mnist.searcher.study import preflight
from nas_mnist.spec.arch import ArchConfig, load_arch
from nas_mnist.spec.recipe import Recipe

CONFIGS = Path(nm.__file__).parent / "configs"


def _arch(name="trial81") -> dict:
    return load_arch(CONFIGS / f"{name}.json")[0].to_dict()


def test_the_recipe_space_samples_no_architecture():
    space = load_space("recipe")
    assert not space.samples_arch and not space.arch
    # it offers what the issue asks the recipe family to include
    assert 32 in space.recipe["batch_size"].choices
    assert set(space.recipe["anneal"].choices) == {"cos", "linear"}
    assert 0.5 in space.recipe["augment_p"].choices and 0.0 in space.recipe["ema"].choices


def test_a_space_with_no_key_is_refused(tmp_path):
    (tmp_path / "empty.yaml").write_text("recipe: {}\n")
    with pytest.raises(SpaceError, match="no key"):
        load_space(str(tmp_path / "empty.yaml"))


def test_a_recipe_space_without_an_architecture_is_refused_by_name():
    with pytest.raises(SettingsError, match="only the recipe.*arch"):
        preflight(SearchSettings.of(study="s", storage="sqlite:///x.db", space="recipe"))


@pytest.mark.parametrize("changes, named", [
    (dict(budget=3000), "budget 3,000 is below the fixed architecture"),
    (dict(min_params=4000, budget=5000), "min_params 4,000 is above the fixed architecture"),
    (dict(max_macs=1000), "below the MACs of the fixed architecture"),
])
def test_limits_are_checked_against_the_fixed_architecture(changes, named):
    settings = SearchSettings.of(study="s", storage="sqlite:///x.db", space="recipe",
                              arch=_arch(), **{"budget": 4000, **changes})
    with pytest.raises(SettingsError, match=named):
        preflight(settings)


def test_a_recipe_study_has_no_size_floor_by_default():
    settings = SearchSettings.of(study="s", storage="sqlite:///x.db", space="recipe",
                              arch=_arch(), budget=4000)
    assert settings.value.resolved_min_params == 0
    preflight(settings)  # 3,322 parameters under 4,000: fine


def test_resume_compares_the_fixed_architecture():
    sampled = StudyMeta(budget=4000)
    fixed = StudyMeta(budget=4000, arch=_arch())
    other = StudyMeta(budget=4000, arch=_arch("woolly3762"))
    assert any(d.startswith("arch sampled (stored)") for d in sampled.differences(fixed))
    assert any(d.startswith("arch '6v-14xv") for d in fixed.differences(other))
    assert fixed.differences(StudyMeta(budget=4000, arch=_arch())) == []


def test_recipe_describe_names_what_a_recipe_search_varies():
    text = Recipe(lr=0.1, anneal="linear", pct_start=0.2, batch_size=32, augment_p=0.5,
                  ema=0.99).describe()
    assert text == ("sgd lr 0.1 linear@0.2, batch 32, wd 0.0005, aug r10 t0.1 s0 p0.5, "
                    "ema 0.99")


def test_a_missing_arch_file_is_one_line_and_creates_nothing(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/r.db"
    code = main(["search", "--arch", str(tmp_path / "none.json"), "--study", "r",
                 "--storage", url])
    err = capsys.readouterr().err
    assert code == 2 and "none.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.db").exists()


@pytest.mark.slow  # trains networks end to end
def test_a_recipe_study_trains_one_network_with_several_recipes(tmp_path, small_data_dir):
    url = f"sqlite:///{tmp_path}/r.db"
    study = nm.search(arch="trial81", study="r", storage=url, trials=3, epochs=1,
                      data_dir=str(small_data_dir), jobs=1, threads=2, progress=False,
                      log=None)
    meta = study.meta
    assert meta.arch == _arch() and meta.budget == 3322 and meta.min_params == 0
    assert meta.space == "recipe"
    recs = [r for r in records(study.optuna) if r.kind == "complete"]
    assert len(recs) == 3
    assert {ArchConfig.from_dict(r.arch).key() for r in recs} == {ArchConfig.from_dict(
        _arch()).key()}
    assert len({json.dumps(r.recipe, sort_keys=True) for r in recs}) == 3
    own = load_arch(CONFIGS / "trial81.json")[1]["recipe"]
    first = records(study.optuna)[0]
    assert first.enqueued and first.recipe["lr"] == own["lr"]  # its own recipe ran first
    rows = study.leaderboard()
    assert rows.what == "recipe" and "recipe" in str(rows).splitlines()[0]
    assert all(r.describe.startswith("sgd lr ") for r in rows)
    # a joiner with the study alone takes the fixed architecture from the storage ...
    again = nm.search(study="r", storage=url, trials=3, data_dir=str(small_data_dir),
                      jobs=1, threads=2, progress=False, log=None)
    assert again.meta.arch == _arch() and len(again.optuna.trials) == 3
    # ... and another architecture is refused by name, the study untouched
    with pytest.raises(nm.NasMnistError, match="recipe study of '6v-14xv"):
        nm.search(arch={**_arch(), "dropout": 0.0}, study="r", storage=url, trials=4,
                  data_dir=str(small_data_dir), jobs=1, threads=2, progress=False, log=None)
    assert len(optuna.load_study(study_name="r", storage=url).trials) == 3
