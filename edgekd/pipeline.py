"""The distill-and-export job: each stage reads what the previous one wrote under export/<run>/."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd import measure as m
from edgekd.accuracy_aware import search_keep_float
from edgekd.artifacts import Artifact
from edgekd.calibration import calibration_sha256, quantize_static_calibrated
from edgekd.distill import distributed, predict_logits
from edgekd.distill.stage import distill_stage, teacher_stage
from edgekd.export import check_parity, export_onnx
from edgekd.fileio import write_text_atomic
from edgekd.gate import report_verdicts
from edgekd.hardware import Profile
from edgekd.measure.quality import ACCURACY, task_metric
from edgekd.measure_rows import MeasureSettings, TeacherReference, measure_rows
from edgekd.models import count_parameters, load_saved_model
from edgekd.progress import step
from edgekd.quantize import quantize_int8_dynamic
from edgekd.recipe import Recipe
from edgekd.recommend import recommendations
from edgekd.report import build_report, validate_report, write_report
from edgekd.rundirs import check_run_name, claim_dir, remove_owned_dir
from edgekd.runtimes import get_runtime
from edgekd.stages import stage_key, timed_stage
from edgekd.targets import (
    build_stage,
    bundle_stage,
    measured_here,
    onnx_sources,
    target_estimates,
    target_profiles,
    target_rows,
)
from edgekd.tasks import TaskData, load_task
from edgekd.tasks.base import save_eval_split

TEST_SPLIT = "data/test.npz"
CALIBRATION_SPLIT = "data/calibration.npz"
QUANTIZE_LOG = "quantize.log"  # ONNX Runtime's quantization logging, kept off the terminal


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    report: dict[str, Any]


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE_DIR", Path.home() / ".cache" / "edgekd"))


def distill_and_export(
    recipe: Recipe,
    output_dir: Path = Path("export"),
    run_name: str | None = None,
    fresh: bool = False,
    openvino_precision: str | None = None,
) -> RunResult:
    """Run every stage for `recipe` into `output_dir/<run_name>/`, resuming finished stages unless `fresh`.
    `openvino_precision` ("f32" / "auto") overrides the profiles' OpenVINO inference precision."""
    started = time.perf_counter()
    if run_name is None:
        run_name = check_run_name(recipe.name, "recipe key 'name'")
    else:
        run_name = check_run_name(run_name, "run name (--run-name)")
    output_dir = Path(output_dir)
    run_dir = output_dir / run_name
    distributed.init_from_env()  # under torchrun: only the distill stage is shared, rank 0 does the rest
    if distributed.is_main():
        if fresh:
            remove_owned_dir(run_dir, root=output_dir)
        claim_dir(run_dir, "run", root=output_dir)
    distributed.barrier()
    write_text_atomic(run_dir / "recipe.toml", recipe.to_toml())
    threads = recipe.measure.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    step(f"task '{recipe.task.name}'")
    metric = task_metric(recipe.teacher.hf_output)
    task = load_task(recipe.task, recipe.teacher.hf_dir, labelled_eval=metric == ACCURACY)
    save_eval_split(run_dir / TEST_SPLIT, task.x_test, task.y_test, task.input_name)
    calibration = task.calibration_samples(recipe.quantize.calibration_samples, recipe.task.seed)
    save_eval_split(run_dir / CALIBRATION_SPLIT, calibration, np.zeros(len(calibration), np.int64), task.input_name)

    stages: dict[str, Any] = {}
    teacher, stages["teacher"] = _teacher_stage(recipe, task, run_dir)
    distill_key = stage_key(
        {"task": recipe.task, "data": task.fingerprint(), "teacher": stages["teacher"]["sha256"],
         "student": recipe.student, "distill": recipe.distill}  # fmt: skip
    )
    stages["distill"] = timed_stage(run_dir, "distill", distill_key, ["student.safetensors"],
                               lambda: distill_stage(recipe, task, teacher, run_dir))  # fmt: skip
    if not distributed.is_main():
        return RunResult(run_dir, {})
    student = load_saved_model(run_dir / "student.safetensors", recipe.student.architecture, task.num_classes)

    export_key = stage_key({"export": recipe.export}, distill_key)
    stages["export"] = timed_stage(run_dir, "export", export_key, ["student.onnx"],
                              lambda: _export(recipe, task, student, run_dir))  # fmt: skip

    profiles = target_profiles(recipe, openvino_precision)
    activations = static_activations(recipe, profiles)
    quantize_key = stage_key({"quantize": recipe.quantize, "activations": activations}, export_key)
    quantized = [f"student.{variant}.onnx" for variant in recipe.quantize.variants]
    stages["quantize"] = timed_stage(run_dir, "quantize", quantize_key, quantized,
                                lambda: _quantize(recipe, task, run_dir, calibration, activations, metric))  # fmt: skip

    student_params = count_parameters(student)
    artifacts = _artifacts(recipe, stages["teacher"]["params"], student_params)
    engines, skipped, stages["build"] = build_stage(recipe, task, run_dir, profiles, quantize_key, student_params)

    step("measure")
    settings = MeasureSettings.from_recipe(dataclasses.asdict(recipe.measure), threads)
    outputs: dict[str, np.ndarray] = {}
    rows = measure_rows(artifacts + measured_here(engines, profiles), run_dir, task.x_test, task.y_test, settings,
                        task.num_classes, skipped, metric=metric, keep_outputs=outputs)  # fmt: skip
    # the teacher's outputs from its measured row (at the report's eval batch size) travel in the bundle
    reference = TeacherReference.of(outputs["teacher"], task.y_test, metric, outputs.get("student"))
    stages["bundle"] = bundle_stage(recipe, task, run_dir, profiles, artifacts + engines, calibration, reference,
                                     metric)  # fmt: skip
    rows += target_rows(profiles, onnx_sources(recipe), run_dir, task, settings, reference, student_params, metric)
    _mark_parity_failure(rows, stages["export"]["parity"])
    _mark_missed_quantization_budget(rows, stages["quantize"].get("calibration", {}).get("accuracy_aware"))
    stages["total_seconds"] = round(time.perf_counter() - started, 3)
    estimates = target_estimates(profiles, onnx_sources(recipe), run_dir)
    report = build_report(recipe, task, stages, rows, threads, measurement=settings.describe(), estimates=estimates,
                          run_name=run_dir.name, metric=metric)  # fmt: skip
    verdicts = report_verdicts(report)
    if verdicts:  # the recipe declared budgets: the report says how the run fares against them
        report["verdicts"] = verdicts
    report["recommendations"] = recommendations(report)
    validate_report(report, "the new report")
    write_report(report, run_dir)
    return RunResult(run_dir, report)


def _teacher_stage(recipe: Recipe, task: TaskData, run_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Use the user's checkpoint or Hugging Face directory, or a cached teacher, or train and cache one."""
    step("teacher")
    return teacher_stage(recipe, task, run_dir, cache_dir())


def _export(recipe: Recipe, task: TaskData, student: torch.nn.Module, run_dir: Path) -> dict[str, Any]:
    path = run_dir / "student.onnx"
    export_onnx(student, task.x_test, task.input_name, path, recipe.export.opset)
    onnx_logits = m.predict(get_runtime("onnxruntime").load(path, 1), task.x_test, batch_size=256)
    parity = check_parity(predict_logits(student, task.x_test), onnx_logits, recipe.export.parity_atol)
    return {"path": "student.onnx", "opset": recipe.export.opset, "parity": parity.to_dict()}


def static_activations(recipe: Recipe, profiles: list[Profile]) -> str:
    """The static INT8 activation form: the recipe's choice, or for "auto" int8-symmetric when a target builds
    TensorRT engines (its parser takes only zero point 0) and uint8 (ONNX Runtime's CPU default) otherwise."""
    if recipe.quantize.activations != "auto":
        return recipe.quantize.activations
    return "int8-symmetric" if any("tensorrt" in p.runtimes for p in profiles) else "uint8"


def _quantize(recipe: Recipe, task: TaskData, run_dir: Path, calibration: np.ndarray, activations: str,
              metric: str) -> dict[str, Any]:  # fmt: skip
    source, log = run_dir / "student.onnx", run_dir / QUANTIZE_LOG
    log.unlink(missing_ok=True)
    summary: dict[str, Any] = {"variants": list(recipe.quantize.variants), "log": QUANTIZE_LOG}
    if "int8-dynamic" in recipe.quantize.variants:
        quantize_int8_dynamic(source, run_dir / "student.int8-dynamic.onnx", log_path=log)
    if "int8-static" in recipe.quantize.variants:
        q = recipe.quantize
        summary["calibration"] = quantize_static_calibrated(
            source, run_dir / "student.int8-static.onnx", task.input_name, calibration, task.x_val, metric,
            method=q.calibration, symmetric_activations=activations == "int8-symmetric", static_ops=q.static_ops,
            percentile=q.percentile, log_path=log)  # fmt: skip
        if q.max_drop > 0:
            summary["calibration"]["accuracy_aware"] = search_keep_float(
                source, run_dir / "student.int8-static.onnx", task.input_name, calibration, task.x_val, metric,
                q.max_drop, summary["calibration"]["method"], activations == "int8-symmetric", q.static_ops,
                q.percentile, q.max_float_nodes, log)  # fmt: skip
        summary["calibration"]["sha256"] = calibration_sha256(calibration, task.input_name)
        summary["calibration_samples"] = int(len(calibration))
        summary["calibration_source"] = "train split, seeded draw"
        summary["activations"] = activations
    return summary


def _artifacts(recipe: Recipe, teacher_params: int, student_params: int) -> list[Artifact]:
    """Every artifact of the run, teacher first (it is the reference the others are compared with)."""
    items = [
        Artifact("teacher", "teacher", "teacher.safetensors", "pytorch", "pytorch", "fp32", teacher_params,
                 architecture=recipe.teacher.architecture),
        Artifact("student", "student", "student.safetensors", "pytorch", "pytorch", "fp32", student_params,
                 architecture=recipe.student.architecture),
        Artifact("student-onnx-fp32", "student", "student.onnx", "onnx", "onnxruntime", "fp32", student_params,
                 source="student"),
    ]  # fmt: skip
    for variant in recipe.quantize.variants:
        kind = variant.removeprefix("int8-")
        items.append(Artifact(f"student-onnx-{variant}", "student", f"student.{variant}.onnx", "onnx",
                              "onnxruntime", "int8", student_params, quantization=kind,
                              source="student-onnx-fp32"))  # fmt: skip
    return items


def _mark_parity_failure(rows: list[dict[str, Any]], parity: dict[str, Any]) -> None:
    """A failed parity check is reported on the ONNX row, never hidden."""
    if parity["passed"]:
        return
    for row in rows:
        if row["artifact"] == "student-onnx-fp32" and row["status"] == "ok":
            row.update(status="failed", reason=(f"parity: max |onnx - pytorch| {parity['max_abs_diff']:.3g} "
                                                f"> atol {parity['atol']:.3g}"))  # fmt: skip


def _mark_missed_quantization_budget(rows: list[dict[str, Any]], search: dict[str, Any] | None) -> None:
    """When no float/int8 mix met quantize.max_drop, the static INT8 rows say so (the best model was kept)."""
    if not search or search["met"]:
        return
    message = (f"no mix of float and int8 nodes met quantize.max_drop {search['max_drop']:g} on validation: kept "
               f"the best found ({search['drop_points']:g} points, {len(search['kept_float'])} nodes in float)")
    for row in rows:
        if row["status"] == "ok" and row["artifact"] == "student-onnx-int8-static":
            row["flags"].append({"code": "quantization-budget-missed", "message": message})
