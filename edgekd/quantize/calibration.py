"""Static INT8 with the calibration method chosen by measurement.

`quantize.calibration = "auto"` quantizes with each method (MinMax, Percentile, Entropy), judges each result by
its fidelity to the fp32 ONNX student on validation samples (top-1 agreement then cosine for classifiers, mean
cosine for embeddings) and keeps the best. A named method is used as it is, and its fidelity is measured the
same way, so the report always says what the chosen model scored and, for "auto", what the others did.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import CalibrationError
from edgekd.fileio import atomic_path
from edgekd.measure.quality import ACCURACY, mean_cosine, top1_agreement
from edgekd.quantize.ort_int8 import (
    CALIBRATION_METHODS,
    DEFAULT_PERCENTILE,
    Calibration,
    preprocess,
    quantize_int8_static,
)

VALIDATION_LIMIT = 256  # validation samples each candidate is judged on (enough to rank; keeps auto cheap)


def check_calibration(model_path: Path, calibration: Calibration, input_name: str) -> None:
    """Fail before any calibration when the samples cannot feed the model: none at all, or an input missing,
    unexpected, of another dtype or shape (dynamic axes match anything). The message names the input."""
    import onnx
    from onnx import helper

    arrays = dict(calibration) if isinstance(calibration, Mapping) else {input_name: calibration}
    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = {i.name: i.type.tensor_type for i in graph.input if i.name not in initializers}
    where = f"calibration samples for {model_path.name}"
    unexpected = sorted(set(arrays) - set(inputs))
    if unexpected:
        raise CalibrationError(f"{where}: '{unexpected[0]}' is not an input of the model (inputs: {', '.join(inputs)})")
    for name, tensor in inputs.items():
        if name not in arrays:
            raise CalibrationError(f"{where}: input '{name}' has no samples (got {', '.join(arrays) or 'none'})")
        values = np.asarray(arrays[name])
        if values.ndim == 0 or len(values) == 0:
            raise CalibrationError(f"{where}: input '{name}' has no samples (an empty calibration set); "
                                   "set quantize.calibration_samples >= 1 and give the task training data")
        expected = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        if values.dtype != expected:
            raise CalibrationError(f"{where}: input '{name}' expects {expected}, got {values.dtype}")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        shape = ["N" if d is None else str(d) for d in dims]
        fixed = zip(dims[1:], values.shape[1:], strict=True) if len(dims) == values.ndim else None
        if fixed is None or any(d is not None and d != v for d, v in fixed):
            raise CalibrationError(f"{where}: input '{name}' expects shape ({', '.join(shape)}), got samples of "
                                   f"shape {tuple(values.shape)}")


def calibration_sha256(calibration: Calibration, input_name: str) -> str:
    """A digest of the calibration samples (names, dtypes, shapes and bytes), so a run's INT8 can be reproduced."""
    arrays = dict(calibration) if isinstance(calibration, Mapping) else {input_name: calibration}
    digest = hashlib.sha256()
    for name in sorted(arrays):
        values = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{values.dtype.str}|{values.shape}|".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def model_outputs(path: Path, samples: Calibration, input_name: str, batch_size: int = 32) -> np.ndarray:
    """The first output of the ONNX model at `path` on `samples`, through ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    arrays = dict(samples) if isinstance(samples, Mapping) else {input_name: samples}
    count = len(next(iter(arrays.values())))
    return np.concatenate([session.run(None, {k: v[i : i + batch_size] for k, v in arrays.items()})[0]
                           for i in range(0, count, batch_size)])  # fmt: skip


def fidelity_to(outputs: np.ndarray, reference: np.ndarray, metric: str) -> dict[str, float]:
    """How closely `outputs` follow the fp32 model's: mean cosine, and top-1 agreement for classifiers."""
    figures = {"mean_cosine": round(mean_cosine(outputs, reference), 6)}
    if metric == ACCURACY:
        figures["top1_agreement"] = round(top1_agreement(outputs, reference), 6)
    return figures


def _score(figures: dict[str, float]) -> tuple[float, float]:
    return figures.get("top1_agreement", 1.0), figures["mean_cosine"]


def _count(samples: Calibration) -> int:
    return len(next(iter(samples.values()))) if isinstance(samples, Mapping) else len(samples)


def _head(samples: Calibration, count: int) -> Calibration:
    if isinstance(samples, Mapping):
        return {name: values[:count] for name, values in samples.items()}
    return samples[:count]


def judging_samples(validation: Calibration, calibration: Calibration) -> tuple[Calibration, str]:
    """The samples a quantized model is judged on against the fp32 one, and what they are: the first
    `VALIDATION_LIMIT` of the validation split, or of the calibration samples for a task without one."""
    if _count(validation) == 0:
        return _head(calibration, VALIDATION_LIMIT), "calibration samples (no validation split)"
    return _head(validation, VALIDATION_LIMIT), "validation samples"


def quantize_static_calibrated(
    source: Path, target: Path, input_name: str, calibration: Calibration, validation: Calibration,
    metric: str = ACCURACY, method: str = "auto", symmetric_activations: bool = False, static_ops: str = "safe",
    percentile: float = DEFAULT_PERCENTILE, log_path: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Write the static QDQ model of `source` to `target` with `method` ("auto": the best of every method on
    `validation`), and return what was chosen and each candidate's measured fidelity and quantize time."""
    check_calibration(source, calibration, input_name)
    validation, _ = judging_samples(validation, calibration)
    reference = model_outputs(source, validation, input_name)
    methods = CALIBRATION_METHODS if method == "auto" else (method,)
    candidates: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix=".edgekd-calibrate-", dir=target.parent) as work:
        work_dir = Path(work)
        prepared = preprocess(source, work_dir / f"{source.stem}.pre.onnx", log_path)
        for name in methods:
            started = time.perf_counter()
            path = work_dir / f"{name}.onnx"
            quantize_int8_static(source, path, input_name, calibration, symmetric_activations, name, static_ops,
                                 percentile, log_path, prepared=prepared)  # fmt: skip
            figures = fidelity_to(model_outputs(path, validation, input_name), reference, metric)
            candidates.append({"method": name, **figures, "seconds": round(time.perf_counter() - started, 3),
                               **({"percentile": percentile} if name == "percentile" else {})})  # fmt: skip
        best = max(candidates, key=_score)
        with atomic_path(target) as tmp:
            shutil.copyfile(work_dir / f"{best['method']}.onnx", tmp)
    return {"method": best["method"], "requested": method, "static_ops": static_ops,
            "judged_on": f"{_count(validation)} validation samples, against the fp32 ONNX student",
            "candidates": candidates, "samples": _count(calibration)}  # fmt: skip
