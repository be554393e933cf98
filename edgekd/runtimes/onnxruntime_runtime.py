"""ONNX Runtime on the CPU provider: runs every ONNX variant, fp32 and INT8, and builds the fp16 ONNX file
(fp16 weights and arithmetic, fp32 inputs and outputs) for the devices that compute fp16."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from edgekd.fileio import atomic_path
from edgekd.pipeline.layout import FP16_ONNX, FP32_ONNX, QDQ_ONNX
from edgekd.runtimes.base import ArtifactFormat, BuildJob, EngineSpec, Runner, Runtime, TimedCall
from edgekd.samples import Inputs, named

X86_MACHINES = ("x86_64", "AMD64", "i686")
ONNX = ArtifactFormat("onnx", onnx_graph=True, in_bundle=True)


def _version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _load(path: Path, threads: int) -> Runner:
    """A CPU session; a graph that edgekd chose with some ORT optimizers off (its metadata says which) gets them
    off here too (edgekd.export.graph_choice)."""
    from edgekd.runtimes.ort_session import disabled_optimizers, ort_session

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


def convert_to_fp16(source: Path, target: Path) -> None:
    """fp16 weights and arithmetic with fp32 inputs and outputs (for GPUs, NNAPI and CoreML fp16 paths), with
    ONNX Runtime's converter; its inserted casts are sorted back into graph order so the checker passes."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True))
    model.topological_sort()
    with atomic_path(target) as tmp:
        onnx.save(model.model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)


def _build(spec: EngineSpec, job: BuildJob) -> None:
    """The one derived ONNX file: fp16 (the fp32 and INT8 rows are the export's and quantize's own files)."""
    convert_to_fp16(*job.paths(spec))


def not_meaningful_here(spec: EngineSpec) -> str | None:
    """ONNX Runtime's CPU provider has no fp16 kernels on x86 and silently computes fp16 graphs in fp32, so the
    fp16 ONNX file is built for the devices that run fp16 (Arm CPUs, GPUs), not measured on an x86 host."""
    if spec.precision == "fp16" and platform.machine() in X86_MACHINES:
        return "ONNX Runtime's CPU provider computes fp16 graphs in fp32 on x86: it would not measure fp16 here"
    return None


def providers() -> dict[str, list[str]]:
    try:
        import onnxruntime
    except ImportError:
        return {}
    return {"onnxruntime": onnxruntime.get_available_providers()}


ENGINES = (
    EngineSpec("onnxruntime", "fp32", "student-onnx-fp32", FP32_ONNX, "onnx", "onnxruntime", FP32_ONNX),
    EngineSpec("onnxruntime", "fp16", "student-onnx-fp16", FP16_ONNX, "onnx", "onnxruntime", FP32_ONNX),
    EngineSpec("onnxruntime", "int8", "student-onnx-int8-static", QDQ_ONNX, "onnx", "onnxruntime", QDQ_ONNX),
)  # fmt: skip

RUNTIME = Runtime(name="onnxruntime", package="onnxruntime", extra="all", version=_version, load=_load,
                  engines=ENGINES, build=_build, formats=(ONNX,), not_meaningful=not_meaningful_here,
                  providers=providers)  # fmt: skip
