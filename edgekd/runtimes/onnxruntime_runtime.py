"""ONNX Runtime on the CPU provider: runs every ONNX variant, fp32 and INT8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.runtimes.base import Runner, Runtime
from edgekd.samples import Inputs, named


def _version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _load(path: Path, threads: int) -> Runner:
    """A CPU session; a graph that edgekd chose with some ORT optimizers off (its metadata says which) gets them
    off here too (edgekd.graph_choice)."""
    from edgekd.graph_choice import disabled_optimizers, ort_session

    session = ort_session(path, threads, disabled_optimizers(path))
    input_name = session.get_inputs()[0].name

    def run(batch: Inputs) -> np.ndarray:
        return session.run(None, named(batch, input_name))[0]

    return run


RUNTIME = Runtime(name="onnxruntime", package="onnxruntime", extra="all", version=_version, load=_load)
