"""The build stage: every engine this machine builds for the run's target profiles, kept between runs like
every other stage (same recipe section, profiles and upstream files: nothing is rebuilt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.build import engines as engines_build
from edgekd.build.artifacts import Artifact
from edgekd.pipeline.stages import stage_key, timed_stage
from edgekd.quantize.budget import QuantizeBudget
from edgekd.recipe import BuildSection
from edgekd.runtimes import format_of, get_runtime
from edgekd.targets.plan import host_specs
from edgekd.targets.profiles import Profile, load_profile
from edgekd.tasks import TaskData

SEQUENCE_BUCKETS_VERSION = 2  # bump when OpenVINO's bucket rule changes, so finished runs build again


def build_stage(
    section: BuildSection, sources: list[str], task: TaskData, run_dir: Path, profiles: list[Profile],
    upstream: str, params: int, max_batch: int, budget: QuantizeBudget | None = None,
) -> tuple[list[Artifact], dict[str, str], dict[str, Any]]:
    """Build every host-buildable engine the target profiles ask for; a runtime missing here makes its
    rows `skipped` with the reason instead of failing the run. Engines build from `sources` (the run's ONNX
    files) for batches up to `max_batch`; under a quantization `budget` the builds that can judge themselves on
    the validation split (NNCF's accuracy control) do, and what they did is the summary's `accuracy_control`;
    OpenVINO's sequence-bucket decisions for token models are its `sequence_buckets`."""
    host = next((p for p in profiles if p.device_class == "host"), load_profile("host"))
    specs = host_specs(section, sources, profiles)
    skipped = {s.artifact: reason for s in specs if (reason := get_runtime(s.measured_by).unavailable_reason())}
    to_build = [s for s in specs if s.artifact not in skipped]
    shared = list(dict.fromkeys(f for s in to_build for f in format_of(s.format).shared_files))

    def work() -> dict[str, Any]:
        for name in shared:  # rebuilt from the artifacts of this build alone
            (run_dir / name).unlink(missing_ok=True)
        records: dict[str, dict[str, Any]] = {}
        judging = {"budget": budget, "validation": task.inputs("val")} if budget is not None else {}
        for spec in to_build:
            # the host profile's settings for what it lists (measured here), else those of the first that lists it
            owner = host if spec.runtime in host.runtimes else next(p for p in profiles if spec.runtime in p.runtimes)
            record = engines_build.build_engine(spec, run_dir, run_dir, owner, input_name=task.input_names,
                                                log_path=run_dir / "quantize.log",
                                                sample_shape=task.sample_shape, sequence_axis=task.sequence_axis,
                                                max_batch=max_batch,
                                                sequence_buckets=section.openvino_sequence_buckets,
                                                **judging)  # fmt: skip
            engines_build.file_records(records, spec.artifact, record)
        return {"engines": {s.artifact: s.path for s in to_build},
                "openvino_inference_precision": host.openvino.inference_precision,
                "profiles": [p.name for p in profiles], **records}  # fmt: skip

    judged = {"budget": budget.to_dict()} if budget is not None else {}  # a build without one keeps its old key
    key = stage_key({"build": section, "profiles": profiles, "sequence_buckets": SEQUENCE_BUCKETS_VERSION, **judged},
                    upstream)  # fmt: skip
    outputs = [s.path for s in to_build] + shared
    summary = timed_stage(run_dir, "build", key, outputs, work)
    return [engines_build.to_artifact(s, params) for s in specs], skipped, summary
