"""The distill-and-export job: each stage reads what the previous one wrote under export/<run>/."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd import measure as m
from edgekd.artifacts import Artifact
from edgekd.distill import distributed, predict_logits
from edgekd.distill.stage import distill_stage, teacher_stage
from edgekd.export import check_parity, export_onnx
from edgekd.fileio import write_text_atomic
from edgekd.measure_rows import MeasureSettings, measure_rows
from edgekd.models import count_parameters, load_saved_model
from edgekd.progress import step
from edgekd.quantize import quantize_int8_dynamic, quantize_int8_static
from edgekd.recipe import Recipe
from edgekd.report import build_report, write_report
from edgekd.runtimes import get_runtime
from edgekd.runtimes.openvino_runtime import build_ir
from edgekd.stages import run_stage, stage_key
from edgekd.tasks import TaskData, load_task
from edgekd.tasks.base import save_eval_split

TEST_SPLIT = "data/test.npz"
CALIBRATION_SPLIT = "data/calibration.npz"


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    report: dict[str, Any]


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE_DIR", Path.home() / ".cache" / "edgekd"))


def distill_and_export(
    recipe: Recipe, output_dir: Path = Path("export"), run_name: str | None = None, fresh: bool = False
) -> RunResult:
    """Run every stage for `recipe` into `output_dir/<run_name>/`, resuming finished stages unless `fresh`."""
    started = time.perf_counter()
    run_dir = Path(output_dir) / (run_name or recipe.name)
    distributed.init_from_env()  # under torchrun: only the distill stage is shared, rank 0 does the rest
    if fresh and run_dir.exists() and distributed.is_main():
        shutil.rmtree(run_dir)
    distributed.barrier()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "recipe.toml", recipe.to_toml())
    threads = recipe.measure.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    step(f"task '{recipe.task.name}'")
    task = load_task(recipe.task, recipe.teacher.hf_dir)
    save_eval_split(run_dir / TEST_SPLIT, task.x_test, task.y_test, task.input_name)
    calibration = task.calibration_samples(recipe.quantize.calibration_samples, recipe.task.seed)
    save_eval_split(run_dir / CALIBRATION_SPLIT, calibration, np.zeros(len(calibration), np.int64), task.input_name)

    stages: dict[str, Any] = {}
    teacher, stages["teacher"] = _teacher_stage(recipe, task, run_dir)
    distill_key = stage_key(
        {"task": recipe.task, "teacher": stages["teacher"]["sha256"], "student": recipe.student,
         "distill": recipe.distill}  # fmt: skip
    )
    stages["distill"] = _timed(run_dir, "distill", distill_key, ["student.safetensors"],
                               lambda: _distill(recipe, task, teacher, run_dir))  # fmt: skip
    if not distributed.is_main():
        return RunResult(run_dir, {})
    student = load_saved_model(run_dir / "student.safetensors", recipe.student.architecture, task.num_classes)

    export_key = stage_key({"export": recipe.export}, distill_key)
    stages["export"] = _timed(run_dir, "export", export_key, ["student.onnx"],
                              lambda: _export(recipe, task, student, run_dir))  # fmt: skip

    quantize_key = stage_key({"quantize": recipe.quantize}, export_key)
    quantized = [f"student.{variant}.onnx" for variant in recipe.quantize.variants]
    stages["quantize"] = _timed(run_dir, "quantize", quantize_key, quantized,
                                lambda: _quantize(recipe, task, run_dir))  # fmt: skip

    artifacts = _artifacts(recipe, task, stages["teacher"]["params"], count_parameters(student))
    openvino_reason = get_runtime("openvino").unavailable_reason()
    if recipe.build.openvino and openvino_reason is None:
        stages["build"] = _timed(run_dir, "build", stage_key({"build": recipe.build}, export_key),
                                 ["openvino/student.xml"], lambda: _build_openvino(run_dir))  # fmt: skip
    skipped = {"student-openvino-fp32": openvino_reason} if recipe.build.openvino and openvino_reason else {}

    step("measure")
    settings = MeasureSettings(
        policy=m.TimingPolicy(recipe.measure.warmup_runs, recipe.measure.min_runs, recipe.measure.min_seconds),
        throughput_batch_size=recipe.measure.throughput_batch_size,
        eval_batch_size=recipe.measure.eval_batch_size,
        threads=threads,
    )
    rows = measure_rows(artifacts, run_dir, task.x_test, task.y_test, settings, task.num_classes, skipped)
    _mark_parity_failure(rows, stages["export"]["parity"])
    stages["total_seconds"] = round(time.perf_counter() - started, 3)
    report = build_report(recipe, task, stages, rows, threads)
    write_report(report, run_dir)
    return RunResult(run_dir, report)


def _timed(run_dir: Path, name: str, key: str, outputs: list[str], work) -> dict[str, Any]:
    step(name)
    t0 = time.perf_counter()
    summary, reused = run_stage(run_dir, name, key, outputs, work)
    return {**summary, "reused": reused, "seconds": round(time.perf_counter() - t0, 3)}


def _teacher_stage(recipe: Recipe, task: TaskData, run_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Use the user's checkpoint or Hugging Face directory, or a cached teacher, or train and cache one."""
    step("teacher")
    return teacher_stage(recipe, task, run_dir, cache_dir())


def _distill(recipe: Recipe, task: TaskData, teacher: torch.nn.Module, run_dir: Path) -> dict[str, Any]:
    return distill_stage(recipe, task, teacher, run_dir)


def _export(recipe: Recipe, task: TaskData, student: torch.nn.Module, run_dir: Path) -> dict[str, Any]:
    path = run_dir / "student.onnx"
    export_onnx(student, task.x_test, task.input_name, path, recipe.export.opset)
    onnx_logits = m.predict(get_runtime("onnxruntime").load(path, 1), task.x_test, batch_size=256)
    parity = check_parity(predict_logits(student, task.x_test), onnx_logits, recipe.export.parity_atol)
    return {"path": "student.onnx", "opset": recipe.export.opset, "parity": parity.to_dict()}


def _quantize(recipe: Recipe, task: TaskData, run_dir: Path) -> dict[str, Any]:
    source = run_dir / "student.onnx"
    calibration = task.calibration_samples(recipe.quantize.calibration_samples, recipe.task.seed)
    summary: dict[str, Any] = {"variants": list(recipe.quantize.variants)}
    if "int8-dynamic" in recipe.quantize.variants:
        quantize_int8_dynamic(source, run_dir / "student.int8-dynamic.onnx")
    if "int8-static" in recipe.quantize.variants:
        quantize_int8_static(source, run_dir / "student.int8-static.onnx", task.input_name, calibration)
        summary["calibration_samples"] = int(len(calibration))
        summary["calibration_source"] = "train split, seeded draw"
    return summary


def _build_openvino(run_dir: Path) -> dict[str, Any]:
    (run_dir / "openvino").mkdir(exist_ok=True)
    build_ir(run_dir / "student.onnx", run_dir / "openvino" / "student.xml")
    return {"openvino": "openvino/student.xml"}


def _artifacts(recipe: Recipe, task: TaskData, teacher_params: int, student_params: int) -> list[Artifact]:
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
    if recipe.build.openvino:
        items.append(Artifact("student-openvino-fp32", "student", "openvino/student.xml", "openvino-ir",
                              "openvino", "fp32", student_params, source="student-onnx-fp32"))  # fmt: skip
    return items


def _mark_parity_failure(rows: list[dict[str, Any]], parity: dict[str, Any]) -> None:
    """A failed parity check is reported on the ONNX row, never hidden."""
    if parity["passed"]:
        return
    for row in rows:
        if row["artifact"] == "student-onnx-fp32" and row["status"] == "ok":
            row.update(status="failed", reason=(f"parity: max |onnx - pytorch| {parity['max_abs_diff']:.3g} "
                                                f"> atol {parity['atol']:.3g}"))  # fmt: skip
