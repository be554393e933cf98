"""The recipe's distillation fields: composable losses, assistants and factory kwargs, checked at load time."""

import tomllib

import pytest

from edgekd.errors import RecipeError
from edgekd.recipe import LossSection, Recipe, load_recipe, recipe_from_dict


def test_default_recipe_distils_with_hinton_kd_alone():
    assert Recipe().distill.losses == (LossSection("hinton-kd", 1.0),)
    assert Recipe().distill.assistants == ()


def test_losses_assistants_and_kwargs_survive_the_run_directory_round_trip():
    recipe = load_recipe(None, [
        'distill.losses=[{name="hinton-kd"}, {name="fitnets-hint", weight=0.1, student_layers=["3"], '
        'teacher_layers=["5"]}]',
        'distill.assistants=[{architecture="digits-tiny"}]',
        'teacher.factory_kwargs={hidden=3, activation="relu"}',
    ])  # fmt: skip
    assert recipe.distill.losses[1].student_layers == ("3",)
    assert recipe.teacher.factory_kwargs == {"hidden": 3, "activation": "relu"}
    assert recipe_from_dict(tomllib.loads(recipe.to_toml())) == recipe  # recipe.toml in the run dir reloads


@pytest.mark.parametrize(("override", "message"), [
    ('distill.losses=[{name="hinton-kl"}]', r"'distill\.losses\[0\]\.name'.*did you mean 'hinton-kd'"),
    ('distill.losses=[{name="hinton-kd", wieght=2}]', r"'distill\.losses\[0\]\.wieght' \(did you mean 'weight'"),
    ("distill.losses=[]", r"'distill\.losses' must name at least one loss"),
    ('distill.assistants=[{factory_kwargs={a=1}}]', r"'distill\.assistants\[0\]' needs an architecture"),
    ('teacher.hf_output="pooled"', r"'teacher\.hf_output' must be one of logits, embedding"),
    ("distill.warmup_fraction=1.5", r"'distill\.warmup_fraction' must be in \[0, 1\)"),
])  # fmt: skip
def test_bad_distillation_fields_fail_at_load_with_the_key(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(None, [override])
