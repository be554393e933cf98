"""The per-target half of a run: which profiles, the engines this machine builds for them, the portable bundle,
and the rows and estimates for targets it cannot measure (mobile proxies, device-only engines, roofline bounds).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekd.build import engines as engines_build
from edgekd.build.artifacts import Artifact
from edgekd.bundle.files import write_bundle
from edgekd.fileio import sha256_json
from edgekd.measure.rows import MeasureSettings, TeacherReference, measure_rows
from edgekd.pipeline.progress import step
from edgekd.pipeline.stages import stage_key, timed_stage
from edgekd.recipe import Recipe
from edgekd.report.model import Row
from edgekd.runtimes import format_of, get_runtime
from edgekd.runtimes.ort_mobile_runtime import mobile_settings, proxy_fields
from edgekd.samples import Inputs
from edgekd.targets.profiles import OpenvinoSection, Profile, load_profile
from edgekd.targets.roofline import roofline_cost
from edgekd.tasks import TaskData


def target_profiles(recipe: Recipe, openvino_precision: str | None) -> list[Profile]:
    profiles = [load_profile(name) for name in dict.fromkeys(recipe.targets.profiles)]
    if openvino_precision is not None:
        profiles = [replace(p, openvino=OpenvinoSection(openvino_precision)) for p in profiles]
    return profiles


def onnx_sources(recipe: Recipe) -> list[str]:
    """The ONNX files this run made (engines are built from them), from the recipe, not from what lies around."""
    return ["student.onnx", *(f"student.{variant}.onnx" for variant in recipe.quantize.variants)]


def _host_specs(recipe: Recipe, profiles: list[Profile]) -> list[engines_build.EngineSpec]:
    """What this machine builds: the host profile's engines, the ORT-format models of mobile profiles
    (measured here as labelled proxies), and derived ONNX files (fp16) any profile runs, which travel in the
    bundle. Engines tied to a device (TensorRT) are built on it, or here when this host is such a device."""
    sources = onnx_sources(recipe)
    specs: dict[str, engines_build.EngineSpec] = {}
    for profile in profiles:
        for spec in engines_build.specs_for(profile, sources, recipe.build.openvino_int8):
            runtime = get_runtime(spec.runtime)
            wanted = profile.device_class in ("host", "mobile") or format_of(spec.format).onnx_graph
            device_only = runtime.built_on_device and profile.device_class != "host"
            switched_off = bool(runtime.off_switch) and not getattr(recipe.build, runtime.off_switch)
            if wanted and not (spec.is_source or device_only or switched_off):
                specs.setdefault(spec.artifact, spec)
    return list(specs.values())


def measured_here(built: list[Artifact], profiles: list[Profile]) -> list[Artifact]:
    """The built artifacts the host rows measure: the host profile's (mobile models get proxy rows per target)."""
    host = {s.artifact for p in profiles if p.device_class == "host" for s in engines_build.engine_specs()
            if s.runtime in p.runtimes and s.precision in p.precisions and not engines_build.not_meaningful_here(s)}
    return [a for a in built if a.name in host]


def build_stage(
    recipe: Recipe, task: TaskData, run_dir: Path, profiles: list[Profile], upstream: str, params: int
) -> tuple[list[Artifact], dict[str, str], dict[str, Any]]:
    """Build every host-buildable engine the target profiles ask for; a runtime missing here makes its
    rows `skipped` with the reason instead of failing the run."""
    host = next((p for p in profiles if p.device_class == "host"), load_profile("host"))
    specs = _host_specs(recipe, profiles)
    skipped = {s.artifact: reason for s in specs if (reason := get_runtime(s.measured_by).unavailable_reason())}
    to_build = [s for s in specs if s.artifact not in skipped]
    shared = list(dict.fromkeys(f for s in to_build for f in format_of(s.format).shared_files))

    def work() -> dict[str, Any]:
        for name in shared:  # rebuilt from the artifacts of this build alone
            (run_dir / name).unlink(missing_ok=True)
        for spec in to_build:
            # the host profile's settings for what it lists (measured here), else those of the first that lists it
            owner = host if spec.runtime in host.runtimes else next(p for p in profiles if spec.runtime in p.runtimes)
            engines_build.build_engine(spec, run_dir, run_dir, owner, input_name=task.input_names,
                                       log_path=run_dir / "quantize.log",
                                       sample_shape=task.sample_shape, sequence_axis=task.sequence_axis,
                                       max_batch=max(recipe.measure.throughput_batch_size,
                                                     recipe.measure.eval_batch_size))  # fmt: skip
        return {"engines": {s.artifact: s.path for s in to_build},
                "openvino_inference_precision": host.openvino.inference_precision,
                "profiles": [p.name for p in profiles]}  # fmt: skip

    key = stage_key({"build": recipe.build, "profiles": profiles}, upstream)
    outputs = [s.path for s in to_build] + shared
    summary = timed_stage(run_dir, "build", key, outputs, work)
    return [engines_build.to_artifact(s, params) for s in specs], skipped, summary


def bundle_stage(
    recipe: Recipe, task: TaskData, run_dir: Path, profiles: list[Profile], artifacts: list[Artifact],
    calibration: Inputs, reference: TeacherReference, metric: str,
) -> dict[str, Any]:
    """Write export/<run>/bundle/: the student's ONNX and mobile artifacts, eval samples with the teacher's
    outputs (`reference`, from its measured row), calibration samples, the manifest."""
    step("bundle")
    t0 = time.perf_counter()
    teacher = next(a for a in artifacts if a.role == "teacher")
    shipped = [a for a in artifacts if format_of(a.format).in_bundle and (run_dir / a.path).is_file()]
    files = {a.path: run_dir / a.path for a in shipped}
    if (run_dir / engines_build.FP32_ONNX).is_file():  # the standard-op graph devices build their engines from
        files[engines_build.FP32_ONNX] = run_dir / engines_build.FP32_ONNX
    for name in dict.fromkeys(f for a in shipped for f in format_of(a.format).shared_files):
        if (run_dir / name).is_file():  # the operator config of the ORT-format models
            files[name] = run_dir / name
    files["recipe.toml"] = run_dir / "recipe.toml"
    manifest = write_bundle(run_dir / "bundle", files, (task.inputs("test"), task.y_test, reference), calibration, {
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
        "mobile": {p.name: mobile_settings(p) for p in profiles if p.device_class == "mobile"},
    })  # fmt: skip
    summary = {"path": "bundle", "files": len(manifest["files"]),
               "bytes": sum(f["bytes"] for f in manifest["files"].values()),
               "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
    return summary


def target_rows(
    profiles: list[Profile],
    sources: list[str],
    run_dir: Path,
    task: TaskData,
    settings: MeasureSettings,
    reference: TeacherReference,
    params: int,
    metric: str,
) -> list[Row]:
    """Rows for the non-host targets: mobile models measured here as labelled proxies, and `skipped` rows
    (with the command to run on the device) for everything a device has to build or measure itself."""
    rows: list[Row] = []
    for profile in profiles:
        if profile.device_class == "host":
            continue
        specs = engines_build.specs_for(profile, sources)
        artifacts = [engines_build.to_artifact(s, params) for s in specs]
        if profile.device_class == "mobile":
            proxy = replace(settings, target=profile.name)
            measured = measure_rows(artifacts, run_dir, task.inputs("test"), task.y_test, proxy, task.num_classes,
                                    reference=reference, metric=metric)  # fmt: skip
            for row in measured:
                row.extend(**proxy_fields(profile))
            rows += measured
            continue
        reason = engines_build.device_only_reason(profile, run_dir / "bundle")
        rows += [engines_build.skipped_row(a, profile.name, reason, profile.threads or settings.threads,
                                           max(profile.batch_sizes)) for a in artifacts]  # fmt: skip
    return rows


def target_estimates(profiles: list[Profile], sources: list[str], run_dir: Path) -> list[dict[str, Any]]:
    """Roofline lower bounds for every non-host target, from the fp32 graph's FLOPs and bytes."""
    targets = [p for p in profiles if p.device_class != "host"]
    if not targets:
        return []
    cost = roofline_cost(run_dir / engines_build.FP32_ONNX)
    return [e for p in targets for e in engines_build.estimates_for(p, engines_build.specs_for(p, sources), cost)]
