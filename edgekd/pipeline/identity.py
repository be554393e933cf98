"""One run directory, one model: a run name reused with a recipe that trains something else is refused, naming
the first difference, so an earlier report is never overwritten and `train.jsonl` never mixes two runs.

What a run directory's models are is fixed by the task, teacher, student and distill sections. Changing the
rest (export, quantize, build, measure, targets, budgets) resumes the same models and re-makes what follows.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from edgekd.errors import RecipeError

MODEL_SECTIONS = ("task", "teacher", "student", "distill")


def first_difference(old: Any, new: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """(key path, old value, new value) of the first difference between two plain values, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            found = first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if old == new else (path, old, new)


def _has_results(run_dir: Path) -> bool:
    """Whether the earlier run left something a reuse would overwrite or mix: a report, a training log, a stage."""
    return ((run_dir / "report.json").is_file() or (run_dir / "train.jsonl").is_file()
            or any((run_dir / "stages").glob("*.json")))  # fmt: skip


def check_same_models(run_dir: Path, recipe_data: dict[str, Any]) -> None:
    """Refuse to reuse `run_dir` when its recipe.toml trains other models than `recipe_data` (a recipe's dict)."""
    run_dir = Path(run_dir)
    saved = run_dir / "recipe.toml"
    if not saved.is_file() or not _has_results(run_dir):
        return  # an attempt that stopped before any stage finished or training began: nothing to overwrite
    try:
        old = tomllib.loads(saved.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return  # not readable as a recipe: the stage keys still decide what is reused
    wanted = {s: recipe_data.get(s) for s in MODEL_SECTIONS}
    found = first_difference({s: old.get(s) for s in MODEL_SECTIONS}, wanted)
    if found:
        key, was, now = found
        raise RecipeError(f"run directory '{run_dir}' holds a run of another recipe ({key} is {was!r} there, "
                          f"{now!r} now); reusing it would overwrite that report. Pick another --run-name, or pass "
                          "--fresh to replace it")  # fmt: skip
