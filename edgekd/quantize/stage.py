"""The quantize stage: INT8 variants of student.onnx (dynamic, and static calibrated on the run's samples), with
the calibration method and, under a budget, the float nodes chosen on the validation split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd import samples
from edgekd.pipeline.layout import FP32_ONNX, QDQ_ONNX, QUANTIZE_LOG, quantized_onnx
from edgekd.quantize.accuracy_aware import search_keep_float
from edgekd.quantize.calibration import calibration_sha256, quantize_static_calibrated
from edgekd.quantize.ort_int8 import Calibration, quantize_int8_dynamic
from edgekd.recipe import QuantizeSection
from edgekd.runtimes import get_runtime
from edgekd.targets.profiles import Profile
from edgekd.tasks import TaskData

if TYPE_CHECKING:
    from edgekd.report.model import Row


def static_activations(section: QuantizeSection, profiles: list[Profile]) -> str:
    """The static INT8 activation form: the recipe's choice, or for "auto" int8-symmetric when a target builds
    engines of a runtime that reads only zero point 0 (`Runtime.needs_symmetric_int8`: TensorRT's parser) and uint8
    (ONNX Runtime's CPU default) otherwise."""
    if section.activations != "auto":
        return section.activations
    symmetric = any(get_runtime(name).needs_symmetric_int8 for p in profiles for name in p.runtimes)
    return "int8-symmetric" if symmetric else "uint8"


def quantize_outputs(section: QuantizeSection) -> list[str]:
    return [quantized_onnx(variant) for variant in section.variants]


def quantize_stage(section: QuantizeSection, task: TaskData, run_dir: Path, calibration: Calibration,
                   activations: str, metric: str) -> dict[str, Any]:  # fmt: skip
    """Write every variant the recipe asks for; ONNX Runtime's quantizer logging goes to quantize.log."""
    source, log = run_dir / FP32_ONNX, run_dir / QUANTIZE_LOG
    log.unlink(missing_ok=True)
    summary: dict[str, Any] = {"variants": list(section.variants), "log": QUANTIZE_LOG}
    if "int8-dynamic" in section.variants:
        quantize_int8_dynamic(source, run_dir / quantized_onnx("int8-dynamic"), log_path=log)
    if "int8-static" not in section.variants:
        return summary
    symmetric = activations == "int8-symmetric"
    calibrated = quantize_static_calibrated(
        source, run_dir / QDQ_ONNX, task.input_name, calibration, task.inputs("val"), metric,
        method=section.calibration, symmetric_activations=symmetric, static_ops=section.static_ops,
        percentile=section.percentile, log_path=log)  # fmt: skip
    if section.max_drop > 0:
        calibrated["accuracy_aware"] = search_keep_float(
            source, run_dir / QDQ_ONNX, task.input_name, calibration, task.inputs("val"), metric, section.max_drop,
            calibrated["method"], symmetric, section.static_ops, section.percentile, section.max_float_nodes,
            log)  # fmt: skip
    calibrated["sha256"] = calibration_sha256(calibration, task.input_name)
    return {**summary, "calibration": calibrated, "calibration_samples": samples.count(calibration),
            "calibration_source": "train split, seeded draw", "activations": activations}


def missed_budget(rows: list[Row], quantize_summary: dict[str, Any]) -> None:
    """When no float/int8 mix met quantize.max_drop, the static INT8 rows say so (the best model was kept)."""
    search = quantize_summary.get("calibration", {}).get("accuracy_aware")
    if not search or search["met"]:
        return
    message = (f"no mix of float and int8 nodes met quantize.max_drop {search['max_drop']:g} on validation: kept "
               f"the best found ({search['drop_points']:g} points, {len(search['kept_float'])} nodes in float)")
    for row in rows:
        if row.ok and row.artifact == "student-onnx-int8-static":
            row.flag("quantization-budget-missed", message)
