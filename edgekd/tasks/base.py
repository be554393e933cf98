"""The in-memory form of a task: seeded splits and the input spec the exported model must accept."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from edgekd.errors import RecipeError
from edgekd.fileio import atomic_path


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

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def input_spec(self) -> dict[str, Any]:
        return {
            "name": self.input_name,
            "shape": ["batch", *self.sample_shape],
            "dtype": str(self.x_train.dtype),
        }

    def fingerprint(self) -> str:
        """sha256 of every split's inputs and labels: cached teachers and finished stages are keyed by the data
        itself, so an edited data file is never served a model trained on the old one."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def calibration_samples(self, count: int, seed: int) -> np.ndarray:
        """A seeded draw of real training inputs for static quantization."""
        rng = np.random.default_rng(seed)
        count = min(count, len(self.x_train))
        return self.x_train[rng.choice(len(self.x_train), size=count, replace=False)]


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


def save_eval_split(path: Path, inputs: np.ndarray, labels: np.ndarray, input_name: str) -> None:
    """Write a split as .npz: inputs under the model's input name and `labels`, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{input_name: inputs, "labels": labels})


def save_calibration_samples(path: Path, inputs: np.ndarray, input_name: str) -> None:
    """Write calibration inputs as .npz under the model's input name, atomically. No labels: calibration
    samples are drawn without regard to them, and zeros in a `labels` array would read like real ones."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{input_name: inputs})


def load_eval_split(path: Path, input_name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return data[input_name], data["labels"]
