"""The distill-and-export job: each stage reads what the previous one wrote under export/<run>/."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from edgekd import measure as m
from edgekd.build.artifacts import Artifact
from edgekd.build.engines import FP32_ONNX
from edgekd.distill import distributed
from edgekd.distill.stage import distill_stage, teacher_stage
from edgekd.errors import StageError
from edgekd.export.graph_choice import choose_graph, ship_choice, transformer_candidates
from edgekd.export.onnx import check_parity, check_shape_parity, export_onnx, onnx_interface
from edgekd.fileio import write_text_atomic
from edgekd.gate import report_verdicts
from edgekd.measure.quality import ACCURACY, task_metric
from edgekd.measure.rows import MeasureSettings, TeacherReference, measure_rows, require_a_measured_row
from edgekd.models import count_parameters, load_saved_model
from edgekd.pipeline.identity import check_same_models
from edgekd.pipeline.progress import step
from edgekd.pipeline.rundirs import check_run_name, claim_dir, remove_owned_dir
from edgekd.pipeline.stages import stage_key, timed_stage
from edgekd.pipeline.targets import (
    build_stage,
    bundle_stage,
    measured_here,
    onnx_sources,
    target_estimates,
    target_profiles,
    target_rows,
)
from edgekd.quantize.accuracy_aware import search_keep_float
from edgekd.quantize.calibration import calibration_sha256, quantize_static_calibrated
from edgekd.quantize.ort_int8 import quantize_int8_dynamic
from edgekd.recipe import Recipe
from edgekd.report.document import build_report, validate_report, write_report
from edgekd.report.recommend import recommendations
from edgekd.runtimes import get_runtime
from edgekd.runtimes.pytorch_runtime import runner_for_module
from edgekd.targets.profiles import Profile
from edgekd.tasks import TaskData, load_task
from edgekd.tasks.base import save_calibration_samples, save_eval_split

TEST_SPLIT = "data/test.npz"
ORT_GRAPH = "student.ort.onnx"  # a transformer's ONNX Runtime fp32 graph, chosen by measurement
GRAPH_CHOICE_VERSION = 1  # bump when the candidates change, so finished runs choose again
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
    profiles = target_profiles(recipe, openvino_precision)  # an unknown profile fails now, not after training
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
    check_same_models(run_dir, recipe.to_dict())  # a run name reused for other models is refused
    write_text_atomic(run_dir / "recipe.toml", recipe.to_toml())
    threads = recipe.measure.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    step(f"task '{recipe.task.name}'")
    metric = task_metric(recipe.teacher.hf_output)
    task = load_task(recipe.task, recipe.teacher.hf_dir, labelled_eval=metric == ACCURACY)
    save_eval_split(run_dir / TEST_SPLIT, task.inputs("test"), task.y_test, task.input_name)
    calibration = task.calibration_samples(recipe.quantize.calibration_samples, recipe.task.seed)
    save_calibration_samples(run_dir / CALIBRATION_SPLIT, calibration, task.input_name)

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
    factories = recipe_factories(recipe)
    student = load_saved_model(run_dir / "student.safetensors", recipe.student.architecture, task.num_classes,
                               factories["student"])  # fmt: skip

    export_key = stage_key({"export": recipe.export}, distill_key)
    stages["export"] = timed_stage(run_dir, "export", export_key, ["student.onnx"],
                              lambda: _export(recipe, task, student, run_dir))  # fmt: skip

    activations = static_activations(recipe, profiles)
    quantize_key = stage_key({"quantize": recipe.quantize, "activations": activations}, export_key)
    quantized = [f"student.{variant}.onnx" for variant in recipe.quantize.variants]
    stages["quantize"] = timed_stage(run_dir, "quantize", quantize_key, quantized,
                                lambda: _quantize(recipe, task, run_dir, calibration, activations, metric))  # fmt: skip

    ort_fp32 = FP32_ONNX
    if task.sequence_axis and hasattr(student, "hf"):  # a transformer encoder: its fastest ORT graph, measured
        stages["graph"] = timed_stage(run_dir, "graph", stage_key({"graph": GRAPH_CHOICE_VERSION}, export_key),
                                      [ORT_GRAPH], lambda: _choose_graph(recipe, task, student, run_dir, threads))
        ort_fp32 = stages["graph"]["path"]
    student_params = count_parameters(student)
    artifacts = _artifacts(recipe, stages["teacher"]["params"], student_params, ort_fp32)
    engines, skipped, stages["build"] = build_stage(recipe, task, run_dir, profiles, quantize_key, student_params)

    step("measure")
    settings = MeasureSettings.from_recipe(dataclasses.asdict(recipe.measure), threads)
    outputs: dict[str, np.ndarray] = {}
    rows = measure_rows(artifacts + measured_here(engines, profiles), run_dir, task.inputs("test"), task.y_test,
                        settings, task.num_classes, skipped, metric=metric, keep_outputs=outputs,
                        factories=factories)  # fmt: skip
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
    require_a_measured_row(rows, task.input_spec(), task.x_test)
    return RunResult(run_dir, report)


def recipe_factories(recipe: Recipe) -> dict[str, tuple[str, dict[str, Any]]]:
    """The recipe's factory (import path, kwargs) per PyTorch artifact: the only code a saved model is rebuilt with."""
    teacher = recipe.teacher  # a Hugging Face directory wins over a factory (distill.stage.teacher_spec)
    return {"teacher": ("", {}) if teacher.hf_dir else (teacher.factory, dict(teacher.factory_kwargs)),
            "student": (recipe.student.factory, dict(recipe.student.factory_kwargs))}  # fmt: skip


def _teacher_stage(recipe: Recipe, task: TaskData, run_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Use the user's checkpoint or Hugging Face directory, or a cached teacher, or train and cache one."""
    step("teacher")
    return teacher_stage(recipe, task, run_dir, cache_dir())


def _export(recipe: Recipe, task: TaskData, student: torch.nn.Module, run_dir: Path) -> dict[str, Any]:
    path = run_dir / "student.onnx"
    inputs = task.inputs("test")
    export_onnx(student, inputs, task.input_name, path, recipe.export.opset)
    written = max((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                   if o.domain in ("", "ai.onnx")), default=None)  # fmt: skip
    if written != recipe.export.opset:  # the report says the recipe's opset: it must be the file's
        path.unlink(missing_ok=True)
        raise StageError(f"export: asked for ONNX opset {recipe.export.opset}, the exporter wrote {written}; "
                         "set export.opset to a version it writes (18 and newer)")  # fmt: skip
    runner = get_runtime("onnxruntime").load(path, 1)
    onnx_logits = m.predict(runner, inputs, batch_size=256)
    reference = m.predict(runner_for_module(student, torch.get_num_threads()), inputs, batch_size=256)
    parity = check_parity(reference, onnx_logits, recipe.export.parity_atol).to_dict()
    shapes = check_shape_parity(student, runner, inputs, recipe.export.parity_atol)
    if shapes:  # token inputs: also at shapes the export did not trace; every check must pass
        parity = {**parity, "passed": parity["passed"] and all(s["passed"] for s in shapes), "shapes": shapes,
                  "max_abs_diff": max([parity["max_abs_diff"], *(s["max_abs_diff"] for s in shapes)])}
    return {"path": "student.onnx", "opset": recipe.export.opset, "parity": parity,
            "inputs": onnx_interface(path)}  # fmt: skip


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
            source, run_dir / "student.int8-static.onnx", task.input_name, calibration, task.inputs("val"), metric,
            method=q.calibration, symmetric_activations=activations == "int8-symmetric", static_ops=q.static_ops,
            percentile=q.percentile, log_path=log)  # fmt: skip
        if q.max_drop > 0:
            summary["calibration"]["accuracy_aware"] = search_keep_float(
                source, run_dir / "student.int8-static.onnx", task.input_name, calibration, task.inputs("val"), metric,
                q.max_drop, summary["calibration"]["method"], activations == "int8-symmetric", q.static_ops,
                q.percentile, q.max_float_nodes, log)  # fmt: skip
        summary["calibration"]["sha256"] = calibration_sha256(calibration, task.input_name)
        summary["calibration_samples"] = int(len(calibration))
        summary["calibration_source"] = "train split, seeded draw"
        summary["activations"] = activations
    return summary


def _choose_graph(recipe: Recipe, task: TaskData, student: torch.nn.Module, run_dir: Path,
                  threads: int) -> dict[str, Any]:  # fmt: skip
    """Time the exported graph against ORT's transformer optimizer's, fusions on and off; ship the fastest that
    matches the export (to student.ort.onnx: the ONNX Runtime fp32 artifact; OpenVINO and TensorRT keep
    building from the standard-op student.onnx)."""
    config = student.hf.config
    work = run_dir / "graphs"
    work.mkdir(exist_ok=True)
    candidates = transformer_candidates(run_dir / FP32_ONNX, work, config.num_attention_heads, config.hidden_size)
    choice = choose_graph(candidates, task.inputs("test"), task.input_name, threads, recipe.export.parity_atol)
    ship_choice(choice, run_dir / ORT_GRAPH)
    return {**choice.to_dict(run_dir), "path": ORT_GRAPH}


def _artifacts(recipe: Recipe, teacher_params: int, student_params: int,
               ort_fp32: str = FP32_ONNX) -> list[Artifact]:  # fmt: skip
    """Every artifact of the run, teacher first (it is the reference the others are compared with). `ort_fp32`:
    the graph ONNX Runtime runs at fp32 (a transformer's chosen graph, else the export itself)."""
    items = [
        Artifact("teacher", "teacher", "teacher.safetensors", "pytorch", "pytorch", "fp32", teacher_params,
                 architecture=recipe.teacher.architecture),
        Artifact("student", "student", "student.safetensors", "pytorch", "pytorch", "fp32", student_params,
                 architecture=recipe.student.architecture),
        Artifact("student-onnx-fp32", "student", ort_fp32, "onnx", "onnxruntime", "fp32", student_params,
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
