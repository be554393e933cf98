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
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(batch: Inputs) -> np.ndarray:
        return session.run(None, named(batch, input_name))[0]

    return run


RUNTIME = Runtime(name="onnxruntime", package="onnxruntime", extra="all", version=_version, load=_load)
