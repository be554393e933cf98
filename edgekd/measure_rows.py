"""Measure a list of artifacts from disk into report rows: the measure stage of a run and of `edgekd profile`.

Works from files alone (artifacts, the eval split, optionally the teacher's outputs), so a device with only
a bundle can produce the same rows as the training machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import measure as m
from edgekd.artifacts import Artifact, load_runner
from edgekd.errors import EdgekdError, StageError


@dataclass(frozen=True)
class MeasureSettings:
    policy: m.TimingPolicy
    throughput_batch_size: int
    eval_batch_size: int
    threads: int
    target: str = "host"


@dataclass(frozen=True)
class TeacherReference:
    """The teacher's outputs on the eval split: what drop and agreement are computed against."""

    logits: np.ndarray
    accuracy: float


def measure_rows(
    artifacts: list[Artifact],
    run_dir: Path,
    inputs: np.ndarray,
    labels: np.ndarray,
    settings: MeasureSettings,
    num_classes: int,
    skipped: dict[str, str] | None = None,
    reference: TeacherReference | None = None,
) -> list[dict[str, Any]]:
    """One row per artifact. Without `reference`, the teacher artifact (listed first) provides it."""
    skipped = skipped or {}
    rows = []
    for artifact in artifacts:
        row: dict[str, Any] = {"artifact": artifact.name, **artifact.to_dict(), "target": settings.target,
                               "threads": settings.threads, "batch_size": settings.throughput_batch_size}  # fmt: skip
        del row["name"]
        if artifact.name in skipped:
            rows.append({**row, "status": "skipped", "reason": skipped[artifact.name]})
            continue
        try:
            runner = load_runner(artifact, run_dir, settings.threads, num_classes)
            logits = m.predict(runner, inputs, settings.eval_batch_size)
            latency = m.measure_latency(runner, inputs, settings.policy)
            throughput = m.measure_throughput(runner, inputs, settings.throughput_batch_size, settings.policy)
        except EdgekdError as exc:
            rows.append({**row, "status": "failed", "reason": str(exc)})
            continue
        except Exception as exc:  # a runtime failing on one artifact must not lose the other rows
            rows.append({**row, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
            continue
        acc = m.accuracy(logits, labels)
        if reference is None and artifact.role == "teacher":
            reference = TeacherReference(logits, acc)
        row.update(
            status="ok",
            reason="",
            size_bytes=artifact.size_bytes(run_dir),
            accuracy=acc,
            accuracy_drop=None if reference is None else round((reference.accuracy - acc) * 100, 4),
            teacher_agreement=None if reference is None else m.top1_agreement(logits, reference.logits),
            latency_ms=latency.to_dict(),
            throughput_per_s=throughput,
        )
        rows.append(row)
    if reference is None:
        raise StageError("measure: no teacher reference (the teacher could not be measured), so no drop")
    return rows
