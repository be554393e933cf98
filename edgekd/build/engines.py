"""The build stage: from the ONNX variants to what each selected profile runs (OpenVINO IRs, ORT-format
mobile models, TensorRT engines), plus the rows a run cannot measure here: proxies, skips and estimates.

One table (`engine_specs()`, the registered runtimes' rows) says which artifact each (runtime, precision) of
a profile needs and what it is built from; the run on the training machine and `edgekd profile` on a device
both plan from it, and each runtime builds its own rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgekd.build.artifacts import Artifact
from edgekd.errors import StageError
from edgekd.pipeline.layout import FP32_ONNX, QDQ_ONNX
from edgekd.report.model import Row
from edgekd.runtimes import engine_specs, get_runtime
from edgekd.runtimes.base import BuildJob, EngineSpec
from edgekd.targets.profiles import Profile, measurable_reason
from edgekd.targets.roofline import RooflineCost, roofline_estimate

__all__ = ["FP32_ONNX", "QDQ_ONNX", "EngineSpec", "build_engine", "engine_specs", "specs_for", "to_artifact"]


def not_meaningful_here(spec: EngineSpec) -> str | None:
    """Why measuring `spec` on this machine would not measure what it claims (its runtime says), else None."""
    probe = get_runtime(spec.runtime).not_meaningful
    return probe(spec) if probe else None


def specs_for(profile: Profile, available_sources: Iterable[str], openvino_int8: str = "nncf") -> list[EngineSpec]:
    """The artifacts `profile` asks for, limited to those whose ONNX source exists; the OpenVINO int8 IR built
    the way `openvino_int8` says ("nncf" needs only the fp32 model, "qdq" the static QDQ one)."""
    sources = set(available_sources)
    return [s for s in engine_specs() if s.runtime in profile.runtimes and s.precision in profile.precisions
            and s.source in sources and s.method in ("", openvino_int8)]  # fmt: skip


# The artifact each ONNX source file is, and what that file was made from: an artifact's `source` names a row,
# so the stage-by-stage drop can follow the chain.
SOURCE_ARTIFACTS = {FP32_ONNX: "student-onnx-fp32", QDQ_ONNX: "student-onnx-int8-static"}
MADE_FROM = {FP32_ONNX: "student", QDQ_ONNX: "student-onnx-fp32"}


def to_artifact(spec: EngineSpec, params: int) -> Artifact:
    quantization = "static" if spec.source == QDQ_ONNX or spec.method == "nncf" else None
    source = MADE_FROM[spec.source] if spec.is_source else SOURCE_ARTIFACTS[spec.source]
    return Artifact(spec.artifact, "student", spec.path, spec.format, spec.measured_by, spec.precision, params,
                    quantization=quantization, source=source)  # fmt: skip


def build_engine(spec: EngineSpec, source_dir: Path, out_dir: Path, profile: Profile,
                 **device: Any) -> dict[str, Any] | None:  # fmt: skip
    """Build one artifact from its ONNX source into `out_dir`, by its runtime's build step (`device`: the model's
    input facts that engines with fixed shape ranges need: input_name (one, or a list), sample_shape, max_batch,
    sequence_axis, log_path; in a run under a quantization budget also `budget` and the `validation` inputs,
    which NNCF's accuracy control needs). An ONNX file the export or quantize stages made is run as it is.
    Returns what the build step reports it did (NNCF's accuracy control), else None."""
    if spec.is_source:
        return None
    runtime = get_runtime(spec.runtime)
    if runtime.build is None:
        raise StageError(f"build: runtime '{spec.runtime}' has no build step for '{spec.format}' ({spec.artifact})")
    return runtime.build(spec, BuildJob(source_dir, out_dir, profile, device))


def file_records(records: dict[str, dict[str, Any]], artifact: str, record: dict[str, Any] | None) -> None:
    """Add what one build reported (`build_engine`'s return: kind -> record) under each kind, by artifact: the
    build summary's `accuracy_control` and `sequence_buckets`."""
    for kind, what in (record or {}).items():
        records.setdefault(kind, {})[artifact] = what


def skipped_row(artifact: Artifact, target: str, reason: str, threads: int, batch_size: int) -> Row:
    return Row.of(artifact, target, threads, batch_size=batch_size, status="skipped", reason=reason)


def device_only_reason(profile: Profile, bundle: Path) -> str:
    """Why a row of a non-host profile is not measured in the run, and the command that measures it."""
    command = f"`edgekd profile {bundle} -p {profile.name}`"
    why_not = measurable_reason(profile)
    if why_not is None:
        return f"measured by {command}; this machine qualifies, so it can run here"
    return f"measured on the device by {command} ({why_not})"


def estimates_for(profile: Profile, specs: list[EngineSpec], cost: RooflineCost) -> list[dict[str, Any]]:
    """Roofline lower bounds for each artifact `profile` asks for (labelled estimates, never rows)."""
    result = []
    for spec in specs:
        estimate = roofline_estimate(cost, spec.artifact, profile.name, spec.runtime, spec.precision,
                                     profile.peak_ops_per_s(spec.precision), profile.memory_bandwidth_gbps * 1e9)
        if estimate is not None:
            result.append(estimate.to_dict())
    return result
