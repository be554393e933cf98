"""Model inputs as data: one array, or several named arrays sharing the sample axis.

A Hugging Face encoder takes `input_ids`, `attention_mask` (and `token_type_ids`), as every app feeds it; the
digits MLP takes one array. Every stage that slices, repeats, saves or feeds samples goes through these
functions, so a runtime receives exactly the named arrays the exported graph declares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np

from edgekd.fileio import atomic_path

Inputs = Union[np.ndarray, dict[str, np.ndarray]]  # noqa: UP007 (a runtime alias, read by isinstance users)
MASK = "attention_mask"


def count(inputs: Inputs) -> int:
    """Number of samples."""
    return len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)


def take(inputs: Inputs, index: Any) -> Inputs:
    """The samples at `index` (a slice or an index array) of every named array."""
    if isinstance(inputs, dict):
        return {name: array[index] for name, array in inputs.items()}
    return inputs[index]


def repeat_to_batch(inputs: Inputs, batch_size: int) -> Inputs:
    """A batch of `batch_size` real samples (cycling through `inputs` if it has fewer)."""
    if isinstance(inputs, dict):
        return {name: repeat_to_batch(array, batch_size) for name, array in inputs.items()}
    return np.resize(inputs, (batch_size, *inputs.shape[1:])).astype(inputs.dtype)


def named(inputs: Inputs, default_name: str) -> dict[str, np.ndarray]:
    """The inputs as name -> array; a lone array goes under `default_name` (the graph's only input)."""
    return dict(inputs) if isinstance(inputs, dict) else {default_name: inputs}


def real_lengths(inputs: Inputs) -> np.ndarray | None:
    """Each sample's token count (its attention mask's sum), or None for inputs without a mask."""
    if isinstance(inputs, dict) and MASK in inputs:
        return inputs[MASK].sum(axis=1).astype(np.int64)
    return None


def trim_to_length(inputs: Inputs, length: int) -> Inputs:
    """Token sequences cut to their first `length` positions (what an app feeds for a short text)."""
    if not isinstance(inputs, dict):
        return inputs
    return {name: array[:, :length] for name, array in inputs.items()}


def input_names(inputs: Inputs, default_name: str) -> list[str]:
    return list(named(inputs, default_name))


def save_inputs(path: Path, inputs: Inputs, default_name: str, **extra: np.ndarray) -> None:
    """Write the inputs (under their names) and any `extra` arrays as one .npz, atomically."""
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **named(inputs, default_name), **extra)


def read_inputs(data: Any, names: list[str]) -> Inputs:
    """The inputs from an opened .npz: one array for a one-input model, else name -> array."""
    missing = [name for name in names if name not in data.files]
    if missing:
        raise KeyError(f"no array '{missing[0]}' (the model's inputs are {names}; arrays: {list(data.files)})")
    return data[names[0]] if len(names) == 1 else {name: data[name] for name in names}


def load_inputs(path: Path, names: list[str] | None = None) -> Inputs:
    """The inputs saved at `path`: those `names`, or (None) every array it holds."""
    with np.load(path, allow_pickle=False) as data:
        return read_inputs(data, names or list(data.files))
