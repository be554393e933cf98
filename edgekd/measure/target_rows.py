"""Rows for the targets other than this host: mobile models measured here as labelled proxies, and skipped
rows that name the command to run on the device for what only the device can build or measure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgekd.build import engines as engines_build
from edgekd.measure.rows import MeasureSettings, TeacherReference, measure_rows
from edgekd.report.model import Row
from edgekd.runtimes.ort_mobile_runtime import proxy_fields
from edgekd.targets.profiles import Profile
from edgekd.tasks import TaskData


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
