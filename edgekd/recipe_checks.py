"""The checks a recipe passes when it is built: ranges, choices, names the registries know (losses, budgets,
quantization variants) and sections that must agree (an embedding teacher and its losses), each failing with
its key path and a did-you-mean. The limits that guard later stages (finite floats, seeds, batch sizes, opset,
factory paths) are edgekd.recipe_limits.

It takes the recipe untyped (as recipe_limits does) so that edgekd.recipe, which calls it from
`Recipe.__post_init__`, is the only one of the two that imports the other.
"""

from __future__ import annotations

import math
from typing import Any

from edgekd.budgets import BUDGET_SPECS  # the one list of budget names
from edgekd.errors import RecipeError, did_you_mean
from edgekd.recipe_limits import check_recipe_limits

QUANTIZE_VARIANTS = ("int8-dynamic", "int8-static")
MEASURE_PRESETS = ("quick", "default", "thorough")  # keys of edgekd.measure.timing.TIMING_PRESETS
MEASURE_ISOLATION = ("subprocess", "in-process")
HF_OUTPUTS = ("logits", "embedding")
STATIC_ACTIVATIONS = ("auto", "uint8", "int8-symmetric")
CALIBRATION_CHOICES = ("auto", "minmax", "percentile", "entropy")  # edgekd.quantize.ort_int8.CALIBRATION_METHODS + auto
STATIC_OPS = ("safe", "all", "matmul")  # edgekd.quantize.ort_int8.STATIC_OPS
OPENVINO_INT8 = ("nncf", "qdq")
CLASS_LOSSES = ("hinton-kd", "cross-entropy")  # they read outputs as class logits: meaningless on embeddings


def check_recipe_values(recipe: Any) -> None:
    """Raise RecipeError naming the first key of `recipe` (a Recipe) whose value is out of range or unknown."""
    from edgekd.pipeline.rundirs import RUN_NAME_EXAMPLE, run_name_problem

    name_problem = run_name_problem(recipe.name)
    checks = [
        (name_problem is None, "name", f"{recipe.name!r} {name_problem}: the recipe's name is its run directory "
         f"name, one plain directory name such as '{RUN_NAME_EXAMPLE}'"),
        (0 < recipe.task.val_fraction < 1, "task.val_fraction", "must be between 0 and 1"),
        (0 < recipe.task.test_fraction < 1, "task.test_fraction", "must be between 0 and 1"),
        (recipe.task.val_fraction + recipe.task.test_fraction < 1, "task", "val + test fractions must be < 1"),
        (recipe.distill.temperature > 0, "distill.temperature", "must be > 0"),
        (0 <= recipe.distill.alpha <= 1, "distill.alpha", "must be between 0 and 1"),
        (recipe.measure.min_runs >= 0, "measure.min_runs", "must be >= 0 (0 = the preset's value)"),
        (recipe.measure.warmup_runs >= 0, "measure.warmup_runs", "must be >= 0 (0 = the preset's value)"),
        (recipe.measure.min_seconds >= 0, "measure.min_seconds", "must be >= 0 (0 = the preset's value)"),
        (recipe.measure.preset in MEASURE_PRESETS, "measure.preset", f"must be one of {', '.join(MEASURE_PRESETS)}"),
        (recipe.measure.isolation in MEASURE_ISOLATION, "measure.isolation",
         f"must be one of {', '.join(MEASURE_ISOLATION)}"),
        (recipe.measure.throughput_batch_size >= 1, "measure.throughput_batch_size", "must be >= 1"),
        (recipe.measure.eval_batch_size >= 1, "measure.eval_batch_size", "must be >= 1"),
        (recipe.measure.threads >= 0, "measure.threads", "must be >= 0 (0 = one per core)"),
        (recipe.quantize.calibration_samples >= 1, "quantize.calibration_samples", "must be >= 1"),
        (recipe.quantize.activations in STATIC_ACTIVATIONS, "quantize.activations",
         f"must be one of {', '.join(STATIC_ACTIVATIONS)}"),
        _choice(recipe.quantize.calibration, CALIBRATION_CHOICES, "quantize.calibration"),
        _choice(recipe.quantize.static_ops, STATIC_OPS, "quantize.static_ops"),
        _choice(recipe.build.openvino_int8, OPENVINO_INT8, "build.openvino_int8"),
        (50 < recipe.quantize.percentile < 100, "quantize.percentile", "must be between 50 and 100 (e.g. 99.99)"),
        (recipe.quantize.max_drop >= 0 or recipe.quantize.max_drop == -1, "quantize.max_drop",
         "must be >= 0 (0 = off), or -1 to follow the recipe's [budgets]"),
        (recipe.quantize.max_float_nodes >= 1, "quantize.max_float_nodes", "must be >= 1"),
    ]
    checks += [
        (recipe.task.max_length >= 2, "task.max_length", "must be >= 2"),
        (recipe.teacher.hf_output in HF_OUTPUTS, "teacher.hf_output", f"must be one of {', '.join(HF_OUTPUTS)}"),
        (recipe.student.shrink_layers >= 0, "student.shrink_layers", "must be >= 0"),
        (recipe.student.shrink_hidden_size >= 0, "student.shrink_hidden_size", "must be >= 0"),
        (recipe.distill.warmup_fraction == -1 or 0 <= recipe.distill.warmup_fraction < 1, "distill.warmup_fraction",
         "must be in [0, 1), or -1 for the student kind's default"),
        (recipe.distill.grad_clip >= 0, "distill.grad_clip", "must be >= 0 (0 = off)"),
        (recipe.distill.weight_decay >= 0 or recipe.distill.weight_decay == -1, "distill.weight_decay",
         "must be >= 0, or -1 for the student kind's default"),
        (recipe.distill.patience >= -1, "distill.patience", "must be >= 0 (0 = off), or -1 for the default"),
        (recipe.distill.labelled_samples >= 0, "distill.labelled_samples", "must be >= 0 (0 = every label)"),
        (len(set(recipe.student.teacher_layers)) == len(recipe.student.teacher_layers)
         and all(i >= 0 for i in recipe.student.teacher_layers), "student.teacher_layers",
         "must be distinct teacher layer indices (0-based)"),
        (not recipe.student.teacher_layers or recipe.student.shrink_layers in (0, len(recipe.student.teacher_layers)),
         "student.teacher_layers", "must name student.shrink_layers layers (or leave shrink_layers = 0)"),
        (len(recipe.distill.losses) >= 1, "distill.losses", "must name at least one loss"),
    ]
    from edgekd.distill.losses import LOSSES  # the registry is the one list of names (checked before training)

    for i, loss in enumerate(recipe.distill.losses):
        checks.append((math.isfinite(loss.weight) and loss.weight >= 0, f"distill.losses[{i}].weight", "must be >= 0"))
        hint = did_you_mean(loss.name, LOSSES)
        checks.append((loss.name in LOSSES, f"distill.losses[{i}].name",
                       f"'{loss.name}' is not a loss{hint}; choose from {', '.join(LOSSES)}"))  # fmt: skip
    for name, value in recipe.budgets.items():
        checks.append((name in BUDGET_SPECS, f"budgets.{name}",
                       f"is not a budget{did_you_mean(name, BUDGET_SPECS)}; choose from {', '.join(BUDGET_SPECS)}"))
        checks.append((isinstance(value, int | float) and not isinstance(value, bool), f"budgets.{name}",
                       f"must be a number, got {value!r}"))  # fmt: skip
    for i, assistant in enumerate(recipe.distill.assistants):
        checks.append((bool(assistant.architecture or assistant.factory), f"distill.assistants[{i}]",
                       "needs an architecture or a factory"))  # fmt: skip
    checks += [
        (recipe.teacher.epochs >= 0, "teacher.epochs", "must be >= 0"),
        (recipe.teacher.batch_size >= 1, "teacher.batch_size", "must be >= 1"),
        (recipe.teacher.lr > 0, "teacher.lr", "must be > 0"),
        (recipe.distill.epochs >= 0, "distill.epochs", "must be >= 1, or 0 for the student kind's default"),
        (recipe.distill.batch_size >= 0, "distill.batch_size", "must be >= 1, or 0 for the student kind's default"),
        (recipe.distill.lr >= 0, "distill.lr", "must be > 0, or 0 for the student kind's default"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise RecipeError(f"recipe key '{key}' {why}")
    check_recipe_limits(recipe)  # finite floats, seed and batch ranges, opset, input name, factory paths
    for variant in recipe.quantize.variants:
        if variant not in QUANTIZE_VARIANTS:
            raise RecipeError(
                f"recipe key 'quantize.variants': unknown variant '{variant}'{did_you_mean(variant, QUANTIZE_VARIANTS)}"
                f"; choose from {', '.join(QUANTIZE_VARIANTS)}"
            )
    if recipe.teacher.hf_output == "embedding":
        _check_embedding_teacher(recipe.teacher, recipe.distill.losses)


def _check_embedding_teacher(teacher: Any, losses: Any) -> None:
    """An embedding teacher comes trained (there are no classes to train it on) and is distilled with
    embedding losses."""
    if not teacher.hf_dir and not (teacher.factory and teacher.checkpoint):
        raise RecipeError("recipe key 'teacher.hf_output': an embedding teacher must come trained: a Hugging Face "
                          "directory (teacher.hf_dir), or your model (teacher.factory) with its teacher.checkpoint")
    for i, loss in enumerate(losses):
        if loss.name in CLASS_LOSSES:
            raise RecipeError(f"recipe key 'distill.losses[{i}].name': '{loss.name}' treats outputs as class logits, "
                              "but teacher.hf_output = \"embedding\" emits embeddings; use "
                              "\"embedding-cosine\" or \"embedding-mse\" (plus hidden-state-mse / attention-kl)")


def _choice(value: str, choices: tuple[str, ...], key: str) -> tuple[bool, str, str]:
    """A check that `value` is one of `choices`, with a did-you-mean."""
    return (value in choices, key, f"is '{value}'{did_you_mean(value, choices)}; choose from {', '.join(choices)}")
