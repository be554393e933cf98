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

from edgekd.build.artifacts import Artifact
from edgekd.build.stage import build_stage
from edgekd.bundle.stage import bundle_stage
from edgekd.distill import distributed
from edgekd.distill.stage import distill_stage, teacher_stage
from edgekd.export.stage import GRAPH_CHOICE_VERSION, export_stage, graph_stage, has_graph_choice, parity_failure
from edgekd.fileio import write_text_atomic
from edgekd.measure.quality import ACCURACY, task_metric
from edgekd.measure.rows import MeasureSettings, TeacherReference, measure_rows, require_a_measured_row
from edgekd.measure.target_rows import target_rows
from edgekd.models import count_parameters, load_saved_model
from edgekd.pipeline.identity import check_same_models
from edgekd.pipeline.layout import (
    CALIBRATION_SAMPLES,
    FP32_ONNX,
    ORT_GRAPH,
    ORT_INT8_DYNAMIC_GRAPH,
    QUANTIZE_LOG,
    RECIPE,
    REPORT_JSON,
    STUDENT_CHECKPOINT,
    TEACHER_CHECKPOINT,
    TEST_SPLIT,
    quantized_onnx,
)
from edgekd.pipeline.progress import timed_step
from edgekd.pipeline.rundirs import check_run_name, claim_dir, remove_owned_dir
from edgekd.pipeline.stages import stage_key, timed_stage
from edgekd.quantize.budget import quantize_budget
from edgekd.quantize.stage import missed_budget, quantize_outputs, quantize_stage, static_activations
from edgekd.recipe import Recipe
from edgekd.report.builder import run_report
from edgekd.report.document import publish_report
from edgekd.targets.plan import measured_here, onnx_sources, target_estimates, target_profiles
from edgekd.tasks import TaskData, load_task
from edgekd.tasks.base import save_calibration_samples, save_eval_split


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
    profiles = target_profiles(recipe.targets, openvino_precision)  # an unknown profile fails now, not after training
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
    write_text_atomic(run_dir / RECIPE, recipe.to_toml())
    threads = recipe.measure.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    with timed_step(f"task '{recipe.task.name}'"):
        metric = task_metric(recipe.teacher.hf_output)
        task = load_task(recipe.task, recipe.teacher.hf_dir, labelled_eval=metric == ACCURACY)
        save_eval_split(run_dir / TEST_SPLIT, task.inputs("test"), task.y_test, task.input_name)
        calibration = task.calibration_samples(recipe.quantize.calibration_samples, recipe.task.seed)
        save_calibration_samples(run_dir / CALIBRATION_SAMPLES, calibration, task.input_name)

    stages: dict[str, Any] = {}
    teacher, stages["teacher"] = _teacher_stage(recipe, task, run_dir)
    distill_key = stage_key(
        {"task": recipe.task, "data": task.fingerprint(), "teacher": stages["teacher"]["sha256"],
         "student": recipe.student, "distill": recipe.distill}  # fmt: skip
    )
    stages["distill"] = timed_stage(run_dir, "distill", distill_key, [STUDENT_CHECKPOINT],
                               lambda: distill_stage(recipe.distill, recipe.student, recipe.teacher, recipe.task,
                                                     task, teacher, run_dir))  # fmt: skip
    if not distributed.is_main():
        return RunResult(run_dir, {})
    factories = recipe_factories(recipe)
    student = load_saved_model(run_dir / STUDENT_CHECKPOINT, recipe.student.architecture, task.num_classes,
                               factories["student"])  # fmt: skip

    export_key = stage_key({"export": recipe.export}, distill_key)
    stages["export"] = timed_stage(run_dir, "export", export_key, [FP32_ONNX],
                                   lambda: export_stage(recipe.export, task, student, run_dir))  # fmt: skip

    activations = static_activations(recipe.quantize, profiles)
    budget = quantize_budget(recipe.quantize, recipe.budgets, metric)  # quantize.max_drop, or from [budgets]
    quantize_key = stage_key({"quantize": recipe.quantize, "activations": activations,
                              "budget": budget and budget.to_dict()}, export_key)  # fmt: skip
    stages["quantize"] = timed_stage(run_dir, "quantize", quantize_key, quantize_outputs(recipe.quantize),
                                     lambda: quantize_stage(recipe.quantize, task, run_dir, calibration, activations,
                                                            metric, budget))  # fmt: skip

    ort_graphs: dict[str, str] = {}
    if has_graph_choice(task, student):  # a transformer encoder: its fastest ORT graphs (fp32, int8-dynamic), measured
        dynamic = "int8-dynamic" in recipe.quantize.variants
        outputs = [ORT_GRAPH, *([ORT_INT8_DYNAMIC_GRAPH] if dynamic else [])]
        stages["graph"] = timed_stage(run_dir, "graph", stage_key({"graph": GRAPH_CHOICE_VERSION, "int8": dynamic},
                                                                  export_key),
                                      outputs, lambda: graph_stage(recipe.export, task, student, run_dir, threads,
                                                                   dynamic, run_dir / QUANTIZE_LOG))  # fmt: skip
        ort_graphs["fp32"] = stages["graph"]["path"]
        if "int8_dynamic" in stages["graph"]:
            ort_graphs["int8-dynamic"] = stages["graph"]["int8_dynamic"]["path"]
    student_params = count_parameters(student)
    artifacts = _artifacts(recipe, stages["teacher"]["params"], student_params, ort_graphs)
    sources = onnx_sources(recipe.quantize.variants)
    max_batch = max(recipe.measure.throughput_batch_size, recipe.measure.eval_batch_size)
    engines, skipped, stages["build"] = build_stage(recipe.build, sources, task, run_dir, profiles, quantize_key,
                                                    student_params, max_batch, budget)  # fmt: skip

    settings = MeasureSettings.from_recipe(dataclasses.asdict(recipe.measure), threads)
    outputs: dict[str, np.ndarray] = {}
    with timed_step("measure"):
        rows = measure_rows(artifacts + measured_here(engines, profiles), run_dir, task.inputs("test"), task.y_test,
                            settings, task.num_classes, skipped, metric=metric, keep_outputs=outputs,
                            factories=factories)  # fmt: skip
    # the teacher's outputs from its measured row (at the report's eval batch size) travel in the bundle
    reference = TeacherReference.of(outputs["teacher"], task.y_test, metric, outputs.get("student"))
    stages["bundle"] = bundle_stage(recipe, task, run_dir, profiles, artifacts + engines, calibration, reference,
                                     metric)  # fmt: skip
    rows += target_rows(profiles, sources, run_dir, task, settings, reference, student_params, metric)
    parity_failure(rows, stages["export"]["parity"])
    missed_budget(rows, stages["quantize"], stages["build"])
    stages["total_seconds"] = round(time.perf_counter() - started, 3)
    estimates = target_estimates(profiles, sources, run_dir)
    report = run_report(recipe, task, stages, rows, threads, measurement=settings.describe(), estimates=estimates,
                        run_name=run_dir.name, metric=metric)  # fmt: skip
    document = publish_report(report.to_json(), run_dir / REPORT_JSON)
    require_a_measured_row(rows, task.input_spec(), task.x_test)
    return RunResult(run_dir, document)


def recipe_factories(recipe: Recipe) -> dict[str, tuple[str, dict[str, Any]]]:
    """The recipe's factory (import path, kwargs) per PyTorch artifact: the only code a saved model is rebuilt with."""
    teacher = recipe.teacher  # a Hugging Face directory wins over a factory (distill.stage.teacher_spec)
    return {"teacher": ("", {}) if teacher.hf_dir else (teacher.factory, dict(teacher.factory_kwargs)),
            "student": (recipe.student.factory, dict(recipe.student.factory_kwargs))}  # fmt: skip


def _teacher_stage(recipe: Recipe, task: TaskData, run_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Use the user's checkpoint or Hugging Face directory, or a cached teacher, or train and cache one."""
    with timed_step("teacher"):
        return teacher_stage(recipe.teacher, recipe.task, task, run_dir, cache_dir())


def _artifacts(recipe: Recipe, teacher_params: int, student_params: int,
               ort_graphs: dict[str, str] | None = None) -> list[Artifact]:  # fmt: skip
    """Every artifact of the run, teacher first (it is the reference the others are compared with). `ort_graphs`:
    the graph ONNX Runtime runs per precision ("fp32", "int8-dynamic") where one was chosen by measurement (a
    transformer's), else the export's own file."""
    ort_graphs = ort_graphs or {}
    ort_fp32 = ort_graphs.get("fp32", FP32_ONNX)
    items = [
        Artifact("teacher", "teacher", TEACHER_CHECKPOINT, "pytorch", "pytorch", "fp32", teacher_params,
                 architecture=recipe.teacher.architecture),
        Artifact("student", "student", STUDENT_CHECKPOINT, "pytorch", "pytorch", "fp32", student_params,
                 architecture=recipe.student.architecture),
        Artifact("student-onnx-fp32", "student", ort_fp32, "onnx", "onnxruntime", "fp32", student_params,
                 source="student"),
    ]  # fmt: skip
    for variant in recipe.quantize.variants:
        kind = variant.removeprefix("int8-")
        items.append(Artifact(f"student-onnx-{variant}", "student", ort_graphs.get(variant, quantized_onnx(variant)),
                              "onnx",
                              "onnxruntime", "int8", student_params, quantization=kind,
                              source="student-onnx-fp32"))  # fmt: skip
    return items


