"""The distill-and-export job: each stage reads what the previous one wrote under export/<run>/."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd import build as engines_build
from edgekd import measure as m
from edgekd.artifacts import Artifact
from edgekd.bundle import write_bundle
from edgekd.distill import distributed, predict_logits
from edgekd.distill.stage import distill_stage, teacher_stage
from edgekd.export import check_parity, export_onnx
from edgekd.fileio import sha256_json, write_text_atomic
from edgekd.gate import report_verdicts
from edgekd.hardware import OpenvinoSection, Profile, load_profile
from edgekd.measure.quality import ACCURACY, task_metric
from edgekd.measure_rows import MeasureSettings, TeacherReference, measure_rows
from edgekd.models import count_parameters, load_saved_model
from edgekd.progress import step
from edgekd.quantize import quantize_int8_dynamic, quantize_int8_static
from edgekd.recipe import Recipe
from edgekd.report import build_report, validate_report, write_report
from edgekd.roofline import roofline_cost
from edgekd.runtimes import get_runtime
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
    recipe: Recipe,
    output_dir: Path = Path("export"),
    run_name: str | None = None,
    fresh: bool = False,
    openvino_precision: str | None = None,
) -> RunResult:
    """Run every stage for `recipe` into `output_dir/<run_name>/`, resuming finished stages unless `fresh`.
    `openvino_precision` ("f32" / "auto") overrides the profiles' OpenVINO inference precision."""
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
    stages["distill"] = _timed(run_dir, "distill", distill_key, ["student.safetensors"],
                               lambda: distill_stage(recipe, task, teacher, run_dir))  # fmt: skip
    if not distributed.is_main():
        return RunResult(run_dir, {})
    student = load_saved_model(run_dir / "student.safetensors", recipe.student.architecture, task.num_classes)

    export_key = stage_key({"export": recipe.export}, distill_key)
    stages["export"] = _timed(run_dir, "export", export_key, ["student.onnx"],
                              lambda: _export(recipe, task, student, run_dir))  # fmt: skip

    profiles = _target_profiles(recipe, openvino_precision)
    activations = static_activations(recipe, profiles)
    quantize_key = stage_key({"quantize": recipe.quantize, "activations": activations}, export_key)
    quantized = [f"student.{variant}.onnx" for variant in recipe.quantize.variants]
    stages["quantize"] = _timed(run_dir, "quantize", quantize_key, quantized,
                                lambda: _quantize(recipe, task, run_dir, calibration, activations))  # fmt: skip

    student_params = count_parameters(student)
    artifacts = _artifacts(recipe, stages["teacher"]["params"], student_params)
    engines, skipped, stages["build"] = _build_stage(recipe, task, run_dir, profiles, quantize_key, student_params)

    step("measure")
    settings = MeasureSettings.from_recipe(dataclasses.asdict(recipe.measure), threads)
    outputs: dict[str, np.ndarray] = {}
    rows = measure_rows(artifacts + _measured_here(engines, profiles), run_dir, task.x_test, task.y_test, settings,
                        task.num_classes, skipped, metric=metric, keep_outputs=outputs)  # fmt: skip
    # the teacher's outputs from its measured row (at the report's eval batch size) travel in the bundle
    reference = TeacherReference.of(outputs["teacher"], task.y_test, metric, outputs.get("student"))
    stages["bundle"] = _bundle_stage(recipe, task, run_dir, profiles, artifacts + engines, calibration, reference,
                                     metric)  # fmt: skip
    rows += _target_rows(profiles, _onnx_sources(recipe), run_dir, task, settings, reference, student_params, metric)
    _mark_parity_failure(rows, stages["export"]["parity"])
    stages["total_seconds"] = round(time.perf_counter() - started, 3)
    estimates = _estimates(profiles, _onnx_sources(recipe), run_dir)
    report = build_report(recipe, task, stages, rows, threads, measurement=settings.describe(), estimates=estimates,
                          run_name=run_dir.name, metric=metric)  # fmt: skip
    verdicts = report_verdicts(report)
    if verdicts:  # the recipe declared budgets: the report says how the run fares against them
        report["verdicts"] = verdicts
        validate_report(report, "the new report")
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


def _quantize(recipe: Recipe, task: TaskData, run_dir: Path, calibration: np.ndarray,
              activations: str) -> dict[str, Any]:  # fmt: skip
    source = run_dir / "student.onnx"
    summary: dict[str, Any] = {"variants": list(recipe.quantize.variants)}
    if "int8-dynamic" in recipe.quantize.variants:
        quantize_int8_dynamic(source, run_dir / "student.int8-dynamic.onnx")
    if "int8-static" in recipe.quantize.variants:
        quantize_int8_static(source, run_dir / "student.int8-static.onnx", task.input_name, calibration,
                             symmetric_activations=activations == "int8-symmetric")  # fmt: skip
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


# --- build and bundle stages: engines per target profile, the portable bundle, and the rows and estimates
# --- for targets this machine cannot measure (mobile proxies, device-only engines, roofline bounds)


def _target_profiles(recipe: Recipe, openvino_precision: str | None) -> list[Profile]:
    profiles = [load_profile(name) for name in dict.fromkeys(recipe.targets.profiles)]
    if openvino_precision is not None:
        profiles = [replace(p, openvino=OpenvinoSection(openvino_precision)) for p in profiles]
    return profiles


def _onnx_sources(recipe: Recipe) -> list[str]:
    """The ONNX files this run made (engines are built from them), from the recipe, not from what lies around."""
    return ["student.onnx", *(f"student.{variant}.onnx" for variant in recipe.quantize.variants)]


def _host_specs(recipe: Recipe, profiles: list[Profile]) -> list[engines_build.EngineSpec]:
    """What this machine builds: the host profile's engines, the ORT-format models of mobile profiles
    (measured here as labelled proxies), and derived ONNX files (fp16) any profile runs, which travel in the
    bundle. Engines tied to a device (TensorRT) are built on it, or here when this host is such a device."""
    sources = _onnx_sources(recipe)
    specs: dict[str, engines_build.EngineSpec] = {}
    for profile in profiles:
        for spec in engines_build.specs_for(profile, sources):
            wanted = profile.device_class in ("host", "mobile") or spec.format == "onnx"
            device_only = spec.built_on_device and profile.device_class != "host"
            openvino_off = spec.runtime == "openvino" and not recipe.build.openvino
            if wanted and not (spec.is_source or device_only or openvino_off):
                specs.setdefault(spec.artifact, spec)
    return list(specs.values())


def _measured_here(built: list[Artifact], profiles: list[Profile]) -> list[Artifact]:
    """The built artifacts the host rows measure: the host profile's (mobile models get proxy rows per target)."""
    host = {s.artifact for p in profiles if p.device_class == "host" for s in engines_build.ENGINE_SPECS
            if s.runtime in p.runtimes and s.precision in p.precisions and not engines_build.not_meaningful_here(s)}
    return [a for a in built if a.name in host]


def _build_stage(
    recipe: Recipe, task: TaskData, run_dir: Path, profiles: list[Profile], upstream: str, params: int
) -> tuple[list[Artifact], dict[str, str], dict[str, Any]]:
    """Build every host-buildable engine the target profiles ask for; a runtime missing here makes its
    rows `skipped` with the reason instead of failing the run."""
    host = next((p for p in profiles if p.device_class == "host"), load_profile("host"))
    specs = _host_specs(recipe, profiles)
    skipped = {s.artifact: reason for s in specs if (reason := get_runtime(s.measured_by).unavailable_reason())}
    to_build = [s for s in specs if s.artifact not in skipped]

    def work() -> dict[str, Any]:
        (run_dir / engines_build.MOBILE_CONFIG).unlink(missing_ok=True)
        for spec in to_build:
            owner = host if spec.runtime == "openvino" else next(p for p in profiles if spec.runtime in p.runtimes)
            engines_build.build_engine(spec, run_dir, run_dir, owner, input_name=task.input_name,
                                       sample_shape=task.sample_shape, max_batch=max(
                                           recipe.measure.throughput_batch_size, recipe.measure.eval_batch_size))
        return {"engines": {s.artifact: s.path for s in to_build},
                "openvino_inference_precision": host.openvino.inference_precision,
                "profiles": [p.name for p in profiles]}  # fmt: skip

    key = stage_key({"build": recipe.build, "profiles": profiles}, upstream)
    outputs = [s.path for s in to_build] + ([engines_build.MOBILE_CONFIG] if any(
        s.format == "ort" for s in to_build) else [])  # fmt: skip
    summary = _timed(run_dir, "build", key, outputs, work)
    return [engines_build.to_artifact(s, params) for s in specs], skipped, summary


def _bundle_stage(
    recipe: Recipe, task: TaskData, run_dir: Path, profiles: list[Profile], artifacts: list[Artifact],
    calibration: np.ndarray, reference: TeacherReference, metric: str,
) -> dict[str, Any]:
    """Write export/<run>/bundle/: the student's ONNX and mobile artifacts, eval samples with the teacher's
    outputs (`reference`, from its measured row), calibration samples, the manifest."""
    step("bundle")
    t0 = time.perf_counter()
    teacher = next(a for a in artifacts if a.role == "teacher")
    shipped = [a for a in artifacts if a.format in ("onnx", "ort") and (run_dir / a.path).is_file()]
    files = {a.path: run_dir / a.path for a in shipped}
    if (run_dir / engines_build.MOBILE_CONFIG).is_file() and any(a.format == "ort" for a in shipped):
        files[engines_build.MOBILE_CONFIG] = run_dir / engines_build.MOBILE_CONFIG
    files["recipe.toml"] = run_dir / "recipe.toml"
    manifest = write_bundle(run_dir / "bundle", files, (task.x_test, task.y_test, reference), calibration, {
        "run": recipe.name,
        "recipe_hash": sha256_json(recipe.to_dict()),
        "recipe": recipe.to_dict(),
        "task": {"name": task.name, "split": task.split, "num_classes": task.num_classes,
                 "eval_batch_size": recipe.measure.eval_batch_size, "metric": metric},
        "input": task.input_spec(),
        "teacher": {"architecture": recipe.teacher.architecture, "accuracy": reference.accuracy,
                    "params": teacher.params,
                    "reference": "teacher logits on the eval samples, in data/eval.npz"},
        "student": {"architecture": recipe.student.architecture, "params": shipped[0].params if shipped else 0},
        "artifacts": [a.to_dict() for a in shipped],
        "profiles": [p.name for p in profiles],
        "mobile": {p.name: engines_build.mobile_settings(p) for p in profiles if p.device_class == "mobile"},
    })  # fmt: skip
    summary = {"path": "bundle", "files": len(manifest["files"]),
               "bytes": sum(f["bytes"] for f in manifest["files"].values()),
               "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
    return summary


def _target_rows(
    profiles: list[Profile],
    sources: list[str],
    run_dir: Path,
    task: TaskData,
    settings: MeasureSettings,
    reference: TeacherReference,
    params: int,
    metric: str,
) -> list[dict[str, Any]]:
    """Rows for the non-host targets: mobile models measured here as labelled proxies, and `skipped` rows
    (with the command to run on the device) for everything a device has to build or measure itself."""
    rows: list[dict[str, Any]] = []
    for profile in profiles:
        if profile.device_class == "host":
            continue
        specs = engines_build.specs_for(profile, sources)
        artifacts = [engines_build.to_artifact(s, params) for s in specs]
        if profile.device_class == "mobile":
            proxy = replace(settings, target=profile.name)
            measured = measure_rows(artifacts, run_dir, task.x_test, task.y_test, proxy, task.num_classes,
                                    reference=reference, metric=metric)  # fmt: skip
            for row in measured:
                row.update(proxy=engines_build.proxy_note(profile), mobile=engines_build.mobile_settings(profile))
            rows += measured
            continue
        reason = engines_build.device_only_reason(profile, run_dir / "bundle")
        rows += [engines_build.skipped_row(a, profile.name, reason, profile.threads or settings.threads,
                                           max(profile.batch_sizes)) for a in artifacts]  # fmt: skip
    return rows


def _estimates(profiles: list[Profile], sources: list[str], run_dir: Path) -> list[dict[str, Any]]:
    """Roofline lower bounds for every non-host target, from the fp32 graph's FLOPs and bytes."""
    targets = [p for p in profiles if p.device_class != "host"]
    if not targets:
        return []
    cost = roofline_cost(run_dir / engines_build.FP32_ONNX)
    return [e for p in targets for e in engines_build.estimates_for(p, engines_build.specs_for(p, sources), cost)]
