"""The teacher's side of a training step: computed live, or once and memory-mapped from disk.

With a frozen teacher and no augmentation, the teacher's outputs on a training sample never change, so
computing them every epoch is wasted work. `CachedTeacher` runs the teacher once over the training inputs,
writes each output as a .npy file (atomically), and later reads the rows of a batch through a memory map,
so the cache can exceed RAM. The directory is keyed by a hash of the teacher weights, inputs and output keys.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.distill.outputs import Outputs, model_outputs
from edgekd.fileio import atomic_path, write_json_atomic


class LiveTeacher:
    """Runs the teacher on each batch (the teacher's own dropout stays off: it is in eval mode)."""

    def __init__(self, teacher: nn.Module, inputs: np.ndarray, keys: Sequence[str]):
        self.teacher, self.inputs, self.keys = teacher.eval(), inputs, list(keys)

    @torch.no_grad()
    def get(self, indices: torch.Tensor) -> Outputs:
        if not self.keys:
            return {}
        return model_outputs(self.teacher, torch.from_numpy(self.inputs[indices.numpy()]), self.keys)


class CachedTeacher:
    """Teacher outputs for every training sample, memory-mapped from `directory/<key>.npy`."""

    def __init__(self, directory: Path, keys: Sequence[str]):
        self.directory = Path(directory)
        self.arrays = {key: np.load(self.directory / f"{key}.npy", mmap_mode="r") for key in keys}

    def get(self, indices: torch.Tensor) -> Outputs:
        rows = np.sort(indices.numpy())  # sorted reads are sequential on disk
        order = np.argsort(np.argsort(indices.numpy()))
        return {key: torch.from_numpy(np.ascontiguousarray(array[rows][order])) for key, array in self.arrays.items()}

    @classmethod
    @torch.no_grad()
    def build(
        cls, teacher: nn.Module, inputs: np.ndarray, keys: Sequence[str], directory: Path, key: str,
        batch_size: int = 256,
    ) -> CachedTeacher:
        """Reuse `directory` if it holds outputs for `key`; otherwise compute them once and write them."""
        directory = Path(directory)
        meta_path = directory / "meta.json"
        keys = list(keys)
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("key") == key and meta.get("outputs") == keys:
                return cls(directory, keys)
        directory.mkdir(parents=True, exist_ok=True)
        meta_path.unlink(missing_ok=True)
        teacher.eval()
        first = model_outputs(teacher, torch.from_numpy(inputs[:1]), keys)
        paths = {k: directory / f"{k}.npy" for k in keys}
        with contextlib.ExitStack() as stack:
            temps = {k: stack.enter_context(atomic_path(p)) for k, p in paths.items()}
            arrays = {k: np.lib.format.open_memmap(temps[k], mode="w+", dtype=np.float32,
                                                   shape=(len(inputs), *first[k].shape[1:])) for k in keys}  # fmt: skip
            for start in range(0, len(inputs), batch_size):
                out = model_outputs(teacher, torch.from_numpy(inputs[start : start + batch_size]), keys)
                for k in keys:
                    arrays[k][start : start + batch_size] = out[k].float().numpy()
            for array in arrays.values():
                array.flush()
            del arrays
        write_json_atomic(meta_path, {"key": key, "outputs": keys, "samples": int(len(inputs))})
        return cls(directory, keys)
