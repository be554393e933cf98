"""The bundle stage: what a device needs to build and measure the student itself (`edgekd profile`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgekd.build import engines as engines_build
from edgekd.build.artifacts import Artifact
from edgekd.bundle.files import write_bundle
from edgekd.fileio import sha256_json
from edgekd.measure.rows import TeacherReference
from edgekd.pipeline.progress import step
from edgekd.recipe import Recipe
from edgekd.runtimes import format_of
from edgekd.runtimes.ort_mobile_runtime import mobile_settings
from edgekd.samples import Inputs
from edgekd.targets.profiles import Profile
from edgekd.tasks import TaskData


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
