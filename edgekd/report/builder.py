"""The report of a run and the report of a device, side by side: the same `Report`, told apart only by where
their facts come from (the recipe and the run's stages; a bundle's manifest and the device). Both are finished
and written by `edgekd.report.document.publish_report`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.fileio import sha256_json
from edgekd.measure.quality import ACCURACY, METRIC_FIGURES, report_metric
from edgekd.pipeline.layout import TEST_SPLIT
from edgekd.report.model import Report, Row, RunInfo
from edgekd.runtimes import runtime_versions
from edgekd.targets.this_host import git_sha, host_facts

if TYPE_CHECKING:  # the task module pulls in scikit-learn; the report only names its type
    from edgekd.recipe import Recipe
    from edgekd.tasks import TaskData


def run_report(
    recipe: Recipe, task: TaskData, stages: dict[str, Any], rows: list[Row], threads: int,
    measurement: dict[str, Any] | None = None,
    estimates: list[dict[str, Any]] | None = None,
    run_name: str | None = None,
    metric: str = ACCURACY,
) -> Report:
    """The training machine's report; `estimates` (roofline bounds) are kept apart from measured rows.
    `metric` is what the rows are judged on: accuracy, or cosine to the teacher for embedding encoders."""
    by_name = {row.artifact: row for row in rows}
    teacher, student = by_name["teacher"], by_name.get("student")
    labels_only = stages.get("distill", {}).get("labels_only", {}).get("test_accuracy")
    accuracy = None if student is None else student.accuracy
    return Report(
        run=RunInfo(name=run_name or recipe.name, threads=threads, host=host_facts(),
                    runtime_versions=runtime_versions(), recipe_hash=sha256_json(recipe.to_dict()), git_sha=git_sha()),
        task={"name": task.name, "input": task.input_spec(), "split": task.split, "test_split": TEST_SPLIT,
              "eval_batch_size": recipe.measure.eval_batch_size, "metric": metric},
        teacher={"architecture": recipe.teacher.architecture, "params": teacher.params,
                 "accuracy": teacher.accuracy, "origin": stages["teacher"]["origin"]},
        student={
            "architecture": recipe.student.architecture,
            "params": None if student is None else student.params,
            "accuracy": accuracy,
            "labels_only_accuracy": labels_only,
            "kd_gain_points": None if labels_only is None or accuracy is None
            else round((accuracy - labels_only) * 100, 4),
            **({"teacher_cosine": student.value(METRIC_FIGURES[metric])} if metric != ACCURACY and student else {}),
        },
        stages=stages, measurement=measurement or {}, recipe=recipe.to_dict(), rows=rows, estimates=estimates or [],
    )  # fmt: skip


def device_report(manifest: dict[str, Any], profile: str, threads: int, rows: list[Row], built: dict[str, Any],
                  bundle_dir: Path, host: dict[str, Any],
                  build_records: dict[str, Any] | None = None) -> Report:  # fmt: skip
    """A device's report (`edgekd profile`): everything but its rows from the bundle's manifest; `host`: the
    device's facts (with what its engines are tied to); `build_records`: what the device's builds recorded, by
    kind (OpenVINO's sequence buckets)."""
    task, teacher = manifest["task"], manifest["teacher"]
    return Report(
        run=RunInfo(name=manifest["run"], threads=threads, host=host, runtime_versions=runtime_versions(),
                    recipe_hash=manifest["recipe_hash"], git_sha=None, profile=profile, bundle=str(bundle_dir)),
        task={"name": task["name"], "input": manifest["input"], "split": task["split"],
              "test_split": manifest["eval_samples"], "eval_batch_size": task["eval_batch_size"],
              "metric": report_metric(manifest)},
        teacher={"architecture": teacher["architecture"], "params": teacher["params"],
                 "accuracy": teacher["accuracy"], "origin": "bundle reference (teacher logits)"},
        student={"architecture": manifest["student"]["architecture"], "params": manifest["student"]["params"]},
        stages={"build": {"engines": built, "profile": profile, **(build_records or {})}}, recipe=manifest["recipe"],
        rows=rows,
    )  # fmt: skip
