"""ONNX Runtime on the CPU provider: runs every ONNX variant, fp32 and INT8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.runtimes.base import Runner, Runtime, TimedCall
from edgekd.samples import Inputs, named


def _version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _load(path: Path, threads: int) -> Runner:
    """A CPU session; a graph that edgekd chose with some ORT optimizers off (its metadata says which) gets them
    off here too (edgekd.export.graph_choice)."""
    from edgekd.export.graph_choice import disabled_optimizers, ort_session

    session = ort_session(path, threads, disabled_optimizers(path))
    input_name = session.get_inputs()[0].name

    def run(batch: Inputs) -> np.ndarray:
        return session.run(None, named(batch, input_name))[0]

    def bind(batch: Inputs) -> TimedCall:
        # inputs and outputs bound once: the timed call is run_with_iobinding, no feed dict, no output copy
        # (session.run costs ~4 us more per call on a 10 us model)
        binding = session.io_binding()
        arrays = {name: np.ascontiguousarray(array) for name, array in named(batch, input_name).items()}
        for name, array in arrays.items():
            binding.bind_cpu_input(name, array)
        batch = arrays if isinstance(batch, dict) else arrays[input_name]
        output = session.get_outputs()[0]
        shape = run(batch).shape  # the output's shape at this batch, from one real run
        out = np.empty(shape, dtype=_NUMPY_TYPES.get(output.type, np.float32))
        binding.bind_output(output.name, "cpu", 0, out.dtype, list(shape), out.ctypes.data)
        keep = (batch, out)  # the bound buffers must outlive the binding

        def call() -> object:
            session.run_with_iobinding(binding)
            return keep

        return TimedCall(call)

    run.bind = bind  # type: ignore[attr-defined]
    return run


_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(double)": np.float64}  # fmt: skip


RUNTIME = Runtime(name="onnxruntime", package="onnxruntime", extra="all", version=_version, load=_load)
