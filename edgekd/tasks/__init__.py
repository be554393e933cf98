"""Tasks: the data a run trains and judges on, plus the model's input spec. Looked up by name."""

from __future__ import annotations

from collections.abc import Callable

from edgekd.errors import RecipeError, did_you_mean
from edgekd.recipe import TaskSection
from edgekd.tasks.arrays import load_npz_task, load_user_task
from edgekd.tasks.base import TaskData
from edgekd.tasks.digits import load_digits_task
from edgekd.tasks.text import load_text_task

TASKS: dict[str, Callable[..., TaskData]] = {
    "digits": load_digits_task,
    "text": load_text_task,
    "npz": load_npz_task,
}


def load_task(section: TaskSection, tokenizer_dir: str = "", labelled_eval: bool = True) -> TaskData:
    """Load the recipe's task; `tokenizer_dir` is the text task's fallback tokenizer (the teacher's).
    `labelled_eval` False: the eval splits need no labels (an embedding encoder is judged against its teacher)."""
    if ":" in section.name:  # package.module:function
        return load_user_task(section, labelled_eval)
    try:
        loader = TASKS[section.name]
    except KeyError:
        hint = did_you_mean(section.name, TASKS)
        raise RecipeError(
            f"recipe key 'task.name': unknown task '{section.name}'{hint}; choose from {', '.join(TASKS)}, or name "
            "your own function as package.module:function"
        ) from None
    if section.name == "text":
        return loader(section, tokenizer_dir, labelled_eval)
    return loader(section, labelled_eval) if section.name == "npz" else loader(section)


__all__ = ["TaskData", "load_task", "TASKS"]
