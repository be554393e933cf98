"""The quantize stage: INT8 variants of student.onnx (dynamic, and static calibrated on the run's samples), with
the calibration method and, under a budget, the float nodes chosen on the validation split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd import samples
from edgekd.pipeline.layout import FP32_ONNX, QDQ_ONNX, QUANTIZE_LOG, quantized_onnx
from edgekd.quantize.accuracy_aware import search_keep_float
from edgekd.quantize.budget import QuantizeBudget
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
                   activations: str, metric: str, budget: QuantizeBudget | None = None) -> dict[str, Any]:  # fmt: skip
    """Write every variant the recipe asks for, static INT8 under `budget` when one is active
    (edgekd.quantize.budget); ONNX Runtime's quantizer logging goes to quantize.log."""
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
    if budget is not None:
        search = search_keep_float(
            source, run_dir / QDQ_ONNX, task.input_name, calibration, task.inputs("val"), metric, budget.max_drop,
            calibrated["method"], symmetric, section.static_ops, section.percentile, budget.max_float_nodes,
            log)  # fmt: skip
        calibrated["accuracy_aware"] = {**search, "max_drop_source": budget.source}
    calibrated["sha256"] = calibration_sha256(calibration, task.input_name)
    return {**summary, "calibration": calibrated, "calibration_samples": samples.count(calibration),
            "calibration_source": "train split, seeded draw", "activations": activations}


def missed_budget(rows: list[Row], quantize_summary: dict[str, Any],
                  build_summary: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Rows say what the quantization budget did: when no float/int8 mix met it, the static INT8 rows are flagged
    `quantization-budget-missed` (the best model was kept); the OpenVINO int8 rows NNCF's accuracy control built
    carry its record (`accuracy_control`), flagged the same way when its measured drop is over the budget."""
    from edgekd.report.model import AccuracyControl

    search = quantize_summary.get("calibration", {}).get("accuracy_aware")
    if search and not search["met"]:
        source = search.get("max_drop_source", "quantize.max_drop")
        message = (f"no mix of float and int8 nodes met quantize.max_drop {search['max_drop']:g} ({source}) on "
                   f"validation: kept the best found ({search['drop_points']:g} points, {len(search['kept_float'])} "
                   "nodes in float)")  # fmt: skip
        for row in rows:
            if row.ok and row.artifact == "student-onnx-int8-static":
                row.flag("quantization-budget-missed", message)
    for artifact, record in (build_summary or {}).get("accuracy_control", {}).items():
        for row in rows:
            if not (row.ok and row.artifact == artifact):
                continue
            row.extend(accuracy_control=AccuracyControl.of(record))
            if not record["met"]:
                row.flag("quantization-budget-missed", (
                    f"NNCF's accuracy control did not meet quantize.max_drop {record['max_drop']:g} "
                    f"({record['max_drop_source']}) on validation: {record['drop_points']:g} points with "
                    f"{len(record['reverted'])} of {record['quantized_ops']} int8 ops reverted to float"))  # fmt: skip
