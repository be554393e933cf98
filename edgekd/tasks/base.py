"""The in-memory form of a task: seeded splits and the input spec the exported model must accept."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from edgekd.errors import RecipeError
from edgekd.samples import Inputs, save_inputs, take


@dataclass(frozen=True)
class TaskData:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_name: str  # the ONNX input name; the eval .npz stores the inputs under it
    split: dict[str, Any]  # how the split was made (seed, sizes), recorded in the report
    # inputs fed beside x, per split: {"train" | "val" | "test": {name: array}} (a text task's attention_mask and
    # token_type_ids, as its tokenizer made them); training reads x alone, every exported graph takes them all
    side_inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    sequence_axis: bool = False  # axis 1 of every input is a token sequence: dynamic in the exported graph

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def input_names(self) -> list[str]:
        return [self.input_name, *self.side_inputs.get("test", {})]

    def inputs(self, split: str) -> Inputs:
        """A split's model inputs: x alone, or every named array the graph takes."""
        x = {"train": self.x_train, "val": self.x_val, "test": self.x_test}[split]
        side = self.side_inputs.get(split)
        return {self.input_name: x, **side} if side else x

    def input_spec(self) -> dict[str, Any]:
        """The first input (name, shape, dtype) and, for several, every input under `inputs`."""
        shape = ["batch", "sequence", *self.sample_shape[1:]] if self.sequence_axis else ["batch", *self.sample_shape]
        spec: dict[str, Any] = {"name": self.input_name, "shape": shape, "dtype": str(self.x_train.dtype)}
        if self.side_inputs:
            test = self.inputs("test")
            spec["inputs"] = [{"name": name, "shape": shape, "dtype": str(array.dtype)} for name, array in test.items()]
            spec["max_shape"] = ["batch", *self.sample_shape]
        return spec

    def fingerprint(self) -> str:
        """sha256 of every split's inputs and labels: cached teachers and finished stages are keyed by the data
        itself, so an edited data file is never served a model trained on the old one."""
        digest = hashlib.sha256()
        side = [array for split in self.side_inputs.values() for array in split.values()]
        for array in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test, *side):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def calibration_samples(self, count: int, seed: int) -> Inputs:
        """A seeded draw of real training inputs for static quantization (every input the graph takes)."""
        rng = np.random.default_rng(seed)
        count = min(count, len(self.x_train))
        return take(self.inputs("train"), rng.choice(len(self.x_train), size=count, replace=False))


UNLABELLED = -1  # a sample's label when it has none: transfer data (the trainer's losses read the same value)


def split_indices(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int, source: str,
                  labelled_eval: bool = True, stratified: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train / val / test indices. Val and test come from the labelled samples, which judge accuracy (from
    every sample without `labelled_eval`); unlabelled ones are transfer data and all go to training, where the
    teacher alone teaches them. `stratified` keeps class shares where every class has at least 3 samples."""
    labelled = np.flatnonzero(labels != UNLABELLED) if labelled_eval else np.arange(len(labels))
    if len(labelled) < 10:
        what = "labelled samples" if labelled_eval else "samples"
        raise RecipeError(f"{source} has {len(labelled)} {what}; val and test need at least 10")
    strata = None
    if stratified:
        counts = np.bincount(labels[labelled] + 1)  # + 1: the unlabelled (-1) count as a stratum of their own
        strata = labels[labelled] if counts[counts > 0].min() >= 3 else None  # rare classes: a plain split
    rest, test = train_test_split(labelled, test_size=test_fraction, random_state=seed, stratify=strata)
    train, val = train_test_split(rest, test_size=val_fraction / (1.0 - test_fraction), random_state=seed,
                                  stratify=labels[rest] if strata is not None else None)  # fmt: skip
    if labelled_eval:
        train = np.concatenate([train, np.flatnonzero(labels == UNLABELLED)])
    return train, val, test


def save_eval_split(path: Path, inputs: Inputs, labels: np.ndarray, input_name: str) -> None:
    """Write a split as .npz: inputs under the model's input name(s) and `labels`, atomically."""
    save_inputs(path, inputs, input_name, labels=labels)


def save_calibration_samples(path: Path, inputs: Inputs, input_name: str) -> None:
    """Write calibration inputs as .npz under the model's input names, atomically. No labels: calibration
    samples are drawn without regard to them, and zeros in a `labels` array would read like real ones."""
    save_inputs(path, inputs, input_name)


def load_eval_split(path: Path, input_name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return data[input_name], data["labels"]
