"""Recipe validation: typos and wrong types fail with the key path and a suggestion."""

import dataclasses

import pytest

from edgekd.errors import RecipeError
from edgekd.recipe import Recipe, load_recipe


def _write(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_builtin_default_loads():
    recipe = load_recipe()
    # the shipped TOML states the dataclass defaults, except that the default run gives its student only 50 labels
    # (where distillation pays) and times its microsecond models for less than the preset's 2 s; a recipe of your
    # own sees every label and keeps the preset's timing unless it sets distill.labelled_samples / measure.min_seconds
    defaults = Recipe()
    expected = dataclasses.replace(
        defaults, distill=dataclasses.replace(defaults.distill, labelled_samples=50),
        measure=dataclasses.replace(defaults.measure, min_seconds=recipe.measure.min_seconds))
    assert recipe == expected
    assert 0 < recipe.measure.min_seconds < 2.0
    assert recipe.task.name == "digits"


def test_unknown_key_names_path_and_suggests(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown recipe key 'distill\.epochz' \(did you mean 'epochs'\?\)"):
        load_recipe(_write(tmp_path, "[distill]\nepochz = 3\n"))


def test_unknown_section_suggests(tmp_path):
    with pytest.raises(RecipeError, match=r"'distil'.*did you mean 'distill'"):
        load_recipe(_write(tmp_path, "[distil]\nepochs = 3\n"))


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(RecipeError, match=r"'teacher\.epochs' must be an? integer"):
        load_recipe(_write(tmp_path, '[teacher]\nepochs = "many"\n'))


def test_bad_value_is_rejected(tmp_path):
    with pytest.raises(RecipeError, match=r"distill\.alpha"):
        load_recipe(_write(tmp_path, "[distill]\nalpha = 1.5\n"))


def test_unknown_quantize_variant_suggests(tmp_path):
    with pytest.raises(RecipeError, match=r"did you mean 'int8-static'"):
        load_recipe(_write(tmp_path, '[quantize]\nvariants = ["int8-statik"]\n'))


def test_overrides_apply_and_are_validated():
    recipe = load_recipe(None, ["distill.epochs=5", "distill.temperature=2"])
    assert recipe.distill.epochs == 5 and recipe.distill.temperature == 2.0
    with pytest.raises(RecipeError, match="did you mean 'temperature'"):
        load_recipe(None, ["distill.temprature=2"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.toml")


def test_recipe_round_trips_through_toml(tmp_path):
    recipe = load_recipe(None, ["distill.epochs=7"])
    assert load_recipe(_write(tmp_path, recipe.to_toml())) == recipe


def test_overrides_on_a_recipe_object():
    from edgekd.recipe import apply_overrides

    recipe = apply_overrides(Recipe(), ["quantize.calibration_samples=10"])
    assert recipe.quantize.calibration_samples == 10
    with pytest.raises(RecipeError, match="calibration_samples"):
        apply_overrides(Recipe(), ["quantize.calibration_samples=0"])


def test_budgets_are_named_as_the_gates_flags(tmp_path):
    recipe = load_recipe(_write(tmp_path, "[budgets]\nmax_accuracy_drop = 2\nmax_p95_ms = 5.0\n"))
    assert recipe.budgets == {"max_accuracy_drop": 2, "max_p95_ms": 5.0}
    with pytest.raises(RecipeError, match=r"'budgets\.max_p95_msec' is not a budget \(did you mean 'max_p95_ms'\?\)"):
        load_recipe(_write(tmp_path, "[budgets]\nmax_p95_msec = 5\n"))
    with pytest.raises(RecipeError, match=r"'budgets\.max_p95_ms' must be a number"):
        load_recipe(_write(tmp_path, '[budgets]\nmax_p95_ms = "fast"\n'))
