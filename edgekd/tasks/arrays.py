"""A user's own data as arrays: an `.npz` file (`task.name = "npz"`) or a function named by import path
(`task.name = "package.module:function"`, called with `task.kwargs`) that returns the same arrays.

Either the six split arrays `x_train, y_train, x_val, y_val, x_test, y_test`, or just `x, y`, which are then
split with the recipe's seed and fractions (stratified). For an embedding teacher (judged by cosine to its
outputs, not by labels) the labels may be left out: `x` alone, or the three `x_` splits. Inputs are float
(cast to float32) or integer token ids; labels are integer class indices, -1 marking an unlabelled training
sample (transfer data). The `.npz` is read with `allow_pickle=False`: arrays only, never objects that run
code when loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import RecipeError
from edgekd.recipe import TaskSection
from edgekd.tasks.base import UNLABELLED, TaskData, split_indices

SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def load_npz_task(section: TaskSection, labelled_eval: bool = True) -> TaskData:
    if not section.path:
        raise RecipeError("recipe key 'task.path' is empty: the npz task reads your arrays from an .npz file; set it")
    path = Path(section.path)
    if not path.is_file():
        raise RecipeError(f"recipe key 'task.path': npz file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise RecipeError(f"'{path}': {exc}; save plain numeric arrays (np.savez with numbers, not objects)") from None
    return task_from_arrays(arrays, section, f"'{path}'", labelled_eval)


def load_user_task(section: TaskSection, labelled_eval: bool = True) -> TaskData:
    from edgekd.models.user import import_factory

    function = import_factory(section.name, "task.name")
    try:
        arrays = function(**dict(section.kwargs))
    except TypeError as exc:
        raise RecipeError(f"recipe key 'task.name': calling {section.name}(**{dict(section.kwargs)}) failed: "
                          f"{exc}") from exc  # fmt: skip
    if not isinstance(arrays, Mapping):
        raise RecipeError(f"recipe key 'task.name': {section.name} returned {type(arrays).__name__}; return a dict "
                          f"with {', '.join(SPLIT_KEYS)} (or x and y)")  # fmt: skip
    return task_from_arrays(dict(arrays), section, section.name, labelled_eval)


def task_from_arrays(arrays: dict[str, Any], section: TaskSection, source: str,
                     labelled_eval: bool = True) -> TaskData:  # fmt: skip
    """Check the arrays (each problem named by its key) and make the task, splitting x, y if need be.
    Without `labelled_eval` missing labels are allowed (all -1) and the split is over every sample."""
    if not labelled_eval:
        arrays = _unlabelled_where_missing(arrays)
    if all(key in arrays for key in SPLIT_KEYS):
        split = {key: np.asarray(arrays[key]) for key in SPLIT_KEYS}
        method = "given"
    elif "x" in arrays and "y" in arrays:
        split = _split(_inputs(arrays["x"], source, "x"), _labels(arrays["y"], source, "y"), section, source,
                       labelled_eval)  # fmt: skip
        method = "stratified"
    else:
        raise RecipeError(f"{source}: expected arrays {', '.join(SPLIT_KEYS)} or x and y; found "
                          f"{', '.join(sorted(arrays)) or 'none'}")  # fmt: skip
    for part in ("train", "val", "test"):
        x, y = _inputs(split[f"x_{part}"], source, f"x_{part}"), _labels(split[f"y_{part}"], source, f"y_{part}")
        if len(x) != len(y):
            raise RecipeError(f"{source}: x_{part} has {len(x)} samples but y_{part} has {len(y)}")
        if labelled_eval and part != "train" and (y == UNLABELLED).any():
            raise RecipeError(f"{source}: y_{part} has unlabelled samples (-1); only training samples may lack a label")
        if len(x) == 0:
            raise RecipeError(f"{source}: x_{part} is empty")
        split[f"x_{part}"], split[f"y_{part}"] = x, y
    shapes = {split[f"x_{part}"].shape[1:] for part in ("train", "val", "test")}
    if len(shapes) > 1:
        raise RecipeError(f"{source}: the splits' sample shapes differ ({', '.join(map(str, shapes))})")
    num_classes = max(int(max(split[f"y_{part}"].max() for part in ("train", "val", "test"))) + 1, 0)
    return TaskData(
        name=section.name,
        **split,
        num_classes=num_classes,
        input_name=section.input_name,
        split={"method": method, "seed": section.seed, "train": len(split["y_train"]), "val": len(split["y_val"]),
               "test": len(split["y_test"]), "source": source, "num_classes": num_classes,
               "unlabelled_train": int((split["y_train"] == UNLABELLED).sum())},
    )  # fmt: skip


def _inputs(x: Any, source: str, key: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2:
        raise RecipeError(f"{source}: '{key}' must be samples x features (at least 2-D), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.int64)  # token ids
    raise RecipeError(f"{source}: '{key}' must hold numbers (float inputs or integer token ids), not {x.dtype}")


def _labels(y: Any, source: str, key: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise RecipeError(f"{source}: '{key}' must be 1-D integer class indices, got {y.dtype} of shape {y.shape}")
    if (y < UNLABELLED).any():
        raise RecipeError(f"{source}: '{key}' has labels below -1; use 0..N-1, or -1 for an unlabelled sample")
    return y.astype(np.int64)


def _unlabelled_where_missing(arrays: dict[str, Any]) -> dict[str, Any]:
    """Labels of -1 for every x (or x_ split) that came without them."""
    filled = dict(arrays)
    for x_key in ("x", "x_train", "x_val", "x_test"):
        y_key = x_key.replace("x", "y", 1)
        if x_key in filled and y_key not in filled:
            filled[y_key] = np.full(len(filled[x_key]), UNLABELLED, np.int64)
    return filled


def _split(x: np.ndarray, y: np.ndarray, section: TaskSection, source: str,
           labelled_eval: bool = True) -> dict[str, np.ndarray]:  # fmt: skip
    """x and y split by `split_indices`, stratified."""
    if len(x) != len(y):
        raise RecipeError(f"{source}: x has {len(x)} samples but y has {len(y)}")
    train, val, test = split_indices(y, section.val_fraction, section.test_fraction, section.seed, source,
                                     labelled_eval, stratified=True)  # fmt: skip
    return {"x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val], "x_test": x[test],
            "y_test": y[test]}  # fmt: skip
