"""Training checkpoints for resume: written atomically (temp file, fsync, rename), read with weights_only=True.

A checkpoint holds only tensors and plain values (model, loss projections, optimizer, scheduler, RNG state,
epoch/step, best-so-far), so it loads without unpickling arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgekd.errors import CheckpointError
from edgekd.fileio import atomic_path


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"training checkpoint '{path}' could not be read ({exc}); "
                              "delete it or pass --fresh to start over") from exc  # fmt: skip
