"""ONNX Runtime Mobile: the ORT-format model (`.ort`) an app loads, the operator config its reduced-size ORT
build is compiled with, and the provider settings (NNAPI, CoreML, XNNPACK) the app registers.

A phone is not at hand, so ORT-format models are measured on this host through ONNX Runtime's CPU provider as
labelled proxies (their rows' runtime is "onnxruntime", which loads them).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.errors import StageError
from edgekd.fileio import atomic_path
from edgekd.pipeline.layout import FP32_ONNX, MOBILE_CONFIG, QDQ_ONNX
from edgekd.runtimes.base import ArtifactFormat, BuildJob, EngineSpec, Runtime
from edgekd.runtimes.onnxruntime_runtime import RUNTIME as ONNX_RUNTIME

if TYPE_CHECKING:
    from edgekd.targets.profiles import Profile

ORT = ArtifactFormat("ort", in_bundle=True, shared_files=(MOBILE_CONFIG,), host_proxy=True)


def build_ort_format(source: Path, target: Path, config_path: Path, optimization_style: str) -> None:
    """Convert an ONNX model to ORT format for ONNX Runtime Mobile, and merge the operators it needs into
    `config_path` (what a reduced-size ORT build for the app is compiled with)."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # logs each config it writes
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        work_dir = Path(work)
        shutil.copyfile(source, work_dir / f"{target.stem}.onnx")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            convert_onnx_models_to_ort(work_dir / f"{target.stem}.onnx", work_dir / "out",
                                       [OptimizationStyle[optimization_style]], target_platform="arm")  # fmt: skip
        converted = work_dir / "out" / f"{target.stem}.ort"
        if not converted.is_file():
            raise StageError(f"build: ORT-format conversion of {source.name} produced no {converted.name}")
        with atomic_path(target) as tmp:
            shutil.copyfile(converted, tmp)
        operators = next((work_dir / "out").glob("*required_operators*.config")).read_text(encoding="utf-8")
    merge_operator_config(config_path, operators)


def merge_operator_config(config_path: Path, new_text: str) -> None:
    """Union of `domain;opset;op,op` lines, so one config covers every mobile model of the run."""
    table: dict[tuple[str, str], set[str]] = {}
    texts = [config_path.read_text(encoding="utf-8")] if config_path.is_file() else []
    for line in "\n".join([*texts, new_text]).splitlines():
        if line.strip() and not line.startswith("#"):
            domain, opset, ops = line.strip().split(";")
            table.setdefault((domain, opset), set()).update(ops.split(","))
    lines = ["# Operators the ORT-format models need: build ONNX Runtime Mobile with",
             "#   --include_ops_by_config required_operators.config"]  # fmt: skip
    lines += [f"{d};{o};{','.join(sorted(ops))}" for (d, o), ops in sorted(table.items())]
    with atomic_path(config_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _build(spec: EngineSpec, job: BuildJob) -> None:
    source, target = job.paths(spec)
    build_ort_format(source, target, job.out_dir / MOBILE_CONFIG, job.profile.mobile.optimization_style)


def mobile_settings(profile: Profile) -> dict[str, Any]:
    """What the app has to configure, recorded beside the ORT-format model and in the row."""
    return {"execution_providers": list(profile.mobile.execution_providers),
            "optimization_style": profile.mobile.optimization_style, "operators_config": MOBILE_CONFIG}  # fmt: skip


def proxy_note(profile: Profile) -> str:
    return (f"measured on this host through ONNX Runtime (CPU provider) as a stand-in for {profile.name}; "
            f"the app registers {', '.join(profile.mobile.execution_providers)}")  # fmt: skip


def proxy_fields(profile: Profile) -> dict[str, Any]:
    """What a proxy row of `profile` carries besides its figures: what it stands in for, and the app's settings."""
    return {"proxy": proxy_note(profile), "mobile": mobile_settings(profile)}


def _profile_problem(profile: Profile) -> tuple[str, str] | None:
    if profile.mobile.execution_providers:
        return None
    return "mobile.execution_providers", "must name the providers the app registers when runtimes include 'ort-mobile'"


ENGINES = (
    EngineSpec("ort-mobile", "fp32", "student-ort-fp32", "mobile/student.ort", ORT.name, "onnxruntime", FP32_ONNX),
    EngineSpec("ort-mobile", "int8", "student-ort-int8", "mobile/student.int8-static.ort", ORT.name, "onnxruntime",
               QDQ_ONNX),
)  # fmt: skip

# loaded by ONNX Runtime (`measured_by`), so it is here exactly when ONNX Runtime is
RUNTIME = Runtime(name="ort-mobile", package="onnxruntime", extra="all", version=ONNX_RUNTIME.version,
                  engines=ENGINES, build=_build, formats=(ORT,), profile_problem=_profile_problem)  # fmt: skip
