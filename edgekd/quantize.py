"""INT8 variants with ONNX Runtime: dynamic (weights only, no data) and static QDQ calibrated on real samples."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgekd.fileio import atomic_path
from edgekd.samples import Inputs, count, named, take


class _ArrayReader(CalibrationDataReader):
    """Feeds calibration samples one at a time under the model's input name (or names: see edgekd.samples)."""

    def __init__(self, input_name: str, samples: Inputs):
        self._items = iter([named(take(samples, slice(i, i + 1)), input_name) for i in range(count(samples))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def _preprocess(source: Path, work_dir: Path) -> Path:
    """Shape inference and graph optimisation, as ORT recommends before quantizing."""
    prepared = work_dir / f"{source.stem}.pre.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
    return prepared


def quantize_int8_dynamic(source: Path, target: Path) -> None:
    """Weights to INT8 ahead of time; activations quantized on the fly at run time."""
    with atomic_path(target) as tmp:
        prepared = _preprocess(source, tmp.parent)
        try:
            quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            prepared.unlink(missing_ok=True)


def quantize_int8_static(source: Path, target: Path, input_name: str, calibration: Inputs,
                         symmetric_activations: bool = False) -> None:  # fmt: skip
    """QDQ format (what OpenVINO and TensorRT also read): int8 symmetric per-channel weights; activations with
    ranges from min/max over the calibration samples, as uint8 with a zero point (ONNX Runtime's CPU default) or,
    with `symmetric_activations`, as int8 with zero point 0: the only form TensorRT's ONNX parser accepts."""
    logging.getLogger("root").setLevel(logging.WARNING)  # the calibrator logs per tensor at INFO
    with atomic_path(target) as tmp:
        prepared = _preprocess(source, tmp.parent)
        try:
            quantize_static(
                str(prepared),
                str(tmp),
                _ArrayReader(input_name, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True},
            )
        finally:
            prepared.unlink(missing_ok=True)
