"""PyTorch eager on the CPU: the reference the teacher and the student are measured on before export.

Not a registry runtime: PyTorch rows are measured from the module in memory, not loaded from an artifact.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgekd.runtimes.base import Runner
from edgekd.samples import Inputs


def runner_for_module(model: nn.Module, threads: int) -> Runner:
    torch.set_num_threads(threads)
    model.eval()

    @torch.inference_mode()
    def run(batch: Inputs) -> np.ndarray:
        if isinstance(batch, dict):  # named inputs, as the exported graph takes them
            return model(**{name: torch.from_numpy(array) for name, array in batch.items()}).numpy()
        return model(torch.from_numpy(batch)).numpy()

    return run
