"""Text classification (or unlabelled text) from a local file, tokenized for a Hugging Face encoder.

Files: `.txt` (one sample per line, no labels), `.csv` (header row) or `.jsonl` (one object per line).
A sample whose label is missing or empty is unlabelled (-1): transfer data, always in the training split,
where the student learns it from the teacher alone.
Labels are mapped to class indices in sorted order; the mapping is recorded in the split metadata.
For an embedding encoder (judged by cosine to the teacher, not by labels) no labels are needed at all: the
val and test splits are then drawn from every sample.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import RecipeError
from edgekd.recipe import TaskSection
from edgekd.tasks.base import UNLABELLED, TaskData, split_indices

# what a Hugging Face encoder takes beside input_ids, as its tokenizer makes them (token_type_ids only where the
# model has them: the tokenizer's model_input_names say so)
SIDE_INPUTS = ("attention_mask", "token_type_ids")


def read_text_samples(path: Path, text_field: str, label_field: str) -> list[tuple[str, Any]]:
    """(text, raw label or None) pairs from a .txt, .csv or .jsonl file; a bad row names its line."""
    if not path.is_file():
        raise RecipeError(f"recipe key 'task.path': text file '{path}' does not exist")
    suffix = path.suffix.lower()
    with open(path, encoding="utf-8", newline="") as fh:
        if suffix == ".txt":
            return [(line.rstrip("\n"), None) for line in fh if line.strip()]
        if suffix == ".csv":
            reader = csv.DictReader(fh)
            if text_field not in (reader.fieldnames or []):
                raise RecipeError(f"'{path}': no column '{text_field}' (task.text_field); columns: {reader.fieldnames}")
            return [(row[text_field], row.get(label_field)) for row in reader]
        if suffix == ".jsonl":
            samples = []
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RecipeError(f"'{path}' line {number} is not JSON: {exc}") from None
                if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
                    raise RecipeError(f"'{path}' line {number}: no string field '{text_field}' (task.text_field)")
                samples.append((row[text_field], row.get(label_field)))
            return samples
    raise RecipeError(f"recipe key 'task.path': '{path}' must be .txt, .csv or .jsonl")


def load_tokenizer(directory: str | Path):
    from edgekd.models.hf import require_transformers

    transformers = require_transformers()
    if not directory or not Path(directory).is_dir():
        raise RecipeError(f"text task: tokenizer directory '{directory}' does not exist; set task.tokenizer "
                          "or teacher.hf_dir to a local Hugging Face directory")  # fmt: skip
    return transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def load_text_task(section: TaskSection, tokenizer_dir: str = "", labelled_eval: bool = True) -> TaskData:
    """Tokenize the file and split it. With `labelled_eval` (classifiers) val and test come from the labelled
    samples only; without it (embedding encoders) from all of them."""
    if not section.path:
        raise RecipeError("recipe key 'task.path' is empty: the text task reads a .txt, .csv or .jsonl file; set it")
    samples = read_text_samples(Path(section.path), section.text_field, section.label_field)
    tokenizer = load_tokenizer(section.tokenizer or tokenizer_dir)
    texts = [text for text, _ in samples]
    raw_labels = [None if label in (None, "") else str(label) for _, label in samples]
    classes = sorted({label for label in raw_labels if label is not None})
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([UNLABELLED if label is None else index[label] for label in raw_labels], dtype=np.int64)
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=section.max_length)
    input_ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    side = {name: np.asarray(encoded[name], dtype=np.int64) for name in SIDE_INPUTS if name in encoded}
    train, val, test = split_indices(labels, section.val_fraction, section.test_fraction, section.seed,
                                     f"'{section.path}'", labelled_eval)  # fmt: skip
    split = {"method": "random", "seed": section.seed, "train": len(train), "val": len(val), "test": len(test),
             "classes": classes, "unlabelled_train": int((labels[train] == UNLABELLED).sum()),
             "source": str(section.path), "max_length": section.max_length}  # fmt: skip
    return TaskData(
        name="text",
        x_train=input_ids[train], y_train=labels[train],
        x_val=input_ids[val], y_val=labels[val],
        x_test=input_ids[test], y_test=labels[test],
        num_classes=len(classes),
        input_name="input_ids",
        split=split,
        side_inputs={name: {key: array[rows] for key, array in side.items()}
                     for name, rows in (("train", train), ("val", val), ("test", test))},
        sequence_axis=True,
    )  # fmt: skip
