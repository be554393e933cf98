"""Recipe values that are well typed but would fail, hang or run code late: checked when the recipe is built,
so nothing starts (no training minutes) with a value a later stage refuses.

Each limit says why: every float finite; seeds in the range numpy and torch take; batch sizes a machine can
hold; timing that ends; an input name that does not collide with the arrays edgekd stores beside it; an ONNX
opset the exporter writes as asked; factory import paths that name a user module (edgekd.factories).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from edgekd.errors import RecipeError
from edgekd.factories import check_import_path

MAX_SEED = 2**32 - 1  # numpy's RandomState takes 0 .. 2**32 - 1
MAX_BATCH = 65_536  # larger batches only exhaust memory on the machines edgekd targets
MAX_MIN_SECONDS = 3_600.0  # per timed figure; a measurement that takes longer than an hour is a typo
MAX_RUNS = 10_000_000
RESERVED_INPUT_NAMES = ("labels", "teacher_logits", "student_outputs")  # arrays stored beside the inputs
MIN_OPSET = 18  # torch's exporter writes 18 and up; older opsets convert only for some graphs, else stay 18


def _floats(value: Any, prefix: str) -> list[tuple[str, float]]:
    """Every float field of a (nested) recipe section, with its key path."""
    found: list[tuple[str, float]] = []
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            found += _floats(getattr(value, f.name), f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            found += _floats(item, f"{prefix}[{i}]")
    elif isinstance(value, float):
        found.append((prefix, value))
    return found


def _max_opset() -> int:
    import onnx

    return int(onnx.defs.onnx_opset_version())


def check_recipe_limits(recipe: Any) -> None:
    """Raise RecipeError naming the first key whose value is out of its limits."""
    for key, value in _floats(recipe, ""):
        if not math.isfinite(value):
            raise RecipeError(f"recipe key '{key}' must be a finite number, got {value}")
    for key, value in recipe.budgets.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RecipeError(f"recipe key 'budgets.{key}' must be a finite number, got {value}")
    measure = recipe.measure
    checks = [
        (0 <= recipe.task.seed <= MAX_SEED, "task.seed", f"must be between 0 and {MAX_SEED}"),
        (measure.min_seconds <= MAX_MIN_SECONDS, "measure.min_seconds", f"must be <= {MAX_MIN_SECONDS:g} s"),
        (measure.min_runs <= MAX_RUNS, "measure.min_runs", f"must be <= {MAX_RUNS}"),
        (measure.warmup_runs <= MAX_RUNS, "measure.warmup_runs", f"must be <= {MAX_RUNS}"),
        (recipe.task.input_name.isidentifier(), "task.input_name",
         f"must be a plain name (letters, digits, _), got {recipe.task.input_name!r}"),
        (recipe.task.input_name not in RESERVED_INPUT_NAMES, "task.input_name",
         f"cannot be '{recipe.task.input_name}': that name is taken by the arrays edgekd stores beside the inputs "
         f"({', '.join(RESERVED_INPUT_NAMES)}); choose another name"),
    ]  # fmt: skip
    for key, size in (("measure.throughput_batch_size", measure.throughput_batch_size),
                      ("measure.eval_batch_size", measure.eval_batch_size),
                      ("teacher.batch_size", recipe.teacher.batch_size),
                      ("distill.batch_size", recipe.distill.batch_size)):  # fmt: skip
        checks.append((size <= MAX_BATCH, key, f"must be <= {MAX_BATCH}, got {size}"))
    for ok, key, why in checks:
        if not ok:
            raise RecipeError(f"recipe key '{key}' {why}")
    top = _max_opset()
    if not MIN_OPSET <= recipe.export.opset <= top:
        raise RecipeError(f"recipe key 'export.opset' must be between {MIN_OPSET} and {top} (the installed onnx's "
                          f"newest), got {recipe.export.opset}: torch's exporter writes {MIN_OPSET} and newer")
    factories = [("teacher.factory", recipe.teacher.factory), ("student.factory", recipe.student.factory)]
    factories += [(f"distill.assistants[{i}].factory", a.factory) for i, a in enumerate(recipe.distill.assistants)]
    if ":" in recipe.task.name:
        factories.append(("task.name", recipe.task.name))
    for key, spec in factories:
        if spec:
            check_import_path(spec, key)
