"""OpenVINO on the CPU: converts the ONNX model to IR (.xml + .bin) and runs it.

OpenVINO runs "fp32" models in bf16 on CPUs that support it unless told otherwise; edgekd asks for f32
so an fp32 row measures fp32 arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import MissingDependencyError
from edgekd.fileio import atomic_path
from edgekd.runtimes.base import Runner, Runtime


def _version() -> str:
    import openvino

    return openvino.__version__.split("-")[0]


def _import_openvino():
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("openvino", "openvino", "Building an OpenVINO IR") from None
    return openvino


def build_ir(onnx_path: Path, xml_path: Path) -> None:
    """Convert ONNX to OpenVINO IR with fp32 weights; the .bin lands beside the .xml."""
    ov = _import_openvino()
    model = ov.convert_model(str(onnx_path))
    bin_path = xml_path.with_suffix(".bin")
    with atomic_path(xml_path) as tmp_xml:
        tmp_bin = tmp_xml.with_suffix(".bin")
        try:
            ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
            tmp_bin.replace(bin_path)
        finally:
            tmp_bin.unlink(missing_ok=True)


def _load(path: Path, threads: int) -> Runner:
    ov = _import_openvino()
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        request.infer({0: batch})
        return request.get_output_tensor(0).data.copy()

    return run


RUNTIME = Runtime(name="openvino", package="openvino", extra="openvino", version=_version, load=_load)
