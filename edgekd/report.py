"""The single report: report.json (versioned schema), report.md, and the table printed to the terminal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from rich.table import Table

from edgekd import __version__
from edgekd.errors import ReportError
from edgekd.fileio import sha256_json, write_json_atomic, write_text_atomic
from edgekd.hostinfo import git_sha, host_facts
from edgekd.recipe import Recipe
from edgekd.runtimes import runtime_versions
from edgekd.tasks import TaskData

SCHEMA_VERSION = "1.0"


def report_schema() -> dict[str, Any]:
    return json.loads((resources.files("edgekd") / "schemas" / "report.schema.json").read_text(encoding="utf-8"))


def build_report(
    recipe: Recipe, task: TaskData, stages: dict[str, Any], rows: list[dict[str, Any]], threads: int
) -> dict[str, Any]:
    by_name = {row["artifact"]: row for row in rows}
    teacher, student = by_name["teacher"], by_name.get("student", {})
    distill = stages.get("distill", {})
    labels_only = distill.get("labels_only", {}).get("test_accuracy")
    report = {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "name": recipe.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "edgekd_version": __version__,
            "runtime_versions": runtime_versions(),
            "host": host_facts(),
            "threads": threads,
            "recipe_hash": sha256_json(recipe.to_dict()),
            "git_sha": git_sha(),
        },
        "task": {"name": task.name, "input": task.input_spec(), "split": task.split,
                 "test_split": "data/test.npz", "eval_batch_size": recipe.measure.eval_batch_size},  # fmt: skip
        "teacher": {"architecture": recipe.teacher.architecture, "params": teacher.get("params", 0),
                    "accuracy": teacher.get("accuracy", 0.0), "origin": stages["teacher"]["origin"]},  # fmt: skip
        "student": {
            "architecture": recipe.student.architecture,
            "params": student.get("params"),
            "accuracy": student.get("accuracy"),
            "labels_only_accuracy": labels_only,
            "kd_gain_points": None if labels_only is None or "accuracy" not in student
            else round((student["accuracy"] - labels_only) * 100, 4),
        },
        "stages": stages,
        "recipe": recipe.to_dict(),
        "rows": rows,
    }
    validate_report(report, "the new report")
    return report


def validate_report(report: Any, origin: str) -> None:
    try:
        jsonschema.validate(report, report_schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ReportError(f"{origin} does not match the report schema at '{where}': {exc.message}") from None


def load_report(path: Path) -> dict[str, Any]:
    """Read and validate a report.json (or the report.json inside a run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise ReportError(f"report '{path}' does not exist; run `edgekd distill-and-export` first")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"report '{path}' is not valid JSON: {exc}") from None
    validate_report(report, f"report '{path}'")
    return report


def write_report(report: dict[str, Any], run_dir: Path) -> None:
    write_json_atomic(run_dir / "report.json", report)
    write_text_atomic(run_dir / "report.md", render_markdown(report))


COLUMNS = ("artifact", "runtime", "precision", "status", "size", "params", "accuracy", "drop (pts)",
           "agree", "p50 ms", "p90 ms", "p99 ms", "thru/s")  # fmt: skip


def _cells(row: dict[str, Any]) -> list[str]:
    if row["status"] != "ok":
        return [row["artifact"], row["runtime"], row["precision"], f"{row['status']}: {row['reason']}"] + [""] * 9
    lat = row["latency_ms"]
    drop = row["accuracy_drop"]
    agree = row["teacher_agreement"]
    return [
        row["artifact"],
        row["runtime"],
        row["precision"] + (f" ({row['quantization']})" if row.get("quantization") else ""),
        "ok",
        _human_bytes(row["size_bytes"]),
        f"{row['params']:,}",
        f"{row['accuracy'] * 100:.2f}%",
        "-" if drop is None else f"{drop:+.2f}",
        "-" if agree is None else f"{agree * 100:.1f}%",
        f"{lat['p50']:.3f}",
        f"{lat['p90']:.3f}",
        f"{lat['p99']:.3f}",
        f"{row['throughput_per_s']:,.0f}",
    ]


def _human_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _summary_lines(report: dict[str, Any]) -> list[str]:
    run, student, teacher = report["run"], report["student"], report["teacher"]
    lines = [
        f"run '{run['name']}' on {run['host']['cpu']} ({run['threads']} threads), edgekd {run['edgekd_version']}, "
        f"{run['created_at']}",
        f"teacher {teacher['architecture']}: {teacher['accuracy'] * 100:.2f}% with {teacher['params']:,} params",
    ]
    if student.get("accuracy") is not None:
        line = (f"student {student['architecture']}: {student['accuracy'] * 100:.2f}% with "
                f"{student['params']:,} params ({teacher['params'] / max(student['params'], 1):.0f}x fewer)")
        if student.get("labels_only_accuracy") is not None:
            line += (f"; trained on labels alone {student['labels_only_accuracy'] * 100:.2f}% "
                     f"(KD gain {student['kd_gain_points']:+.2f} pts)")
        lines.append(line)
    parity = report.get("stages", {}).get("export", {}).get("parity")
    if parity:
        verdict = "passed" if parity["passed"] else "FAILED"
        lines.append(f"ONNX parity {verdict}: max |onnx - pytorch| {parity['max_abs_diff']:.2e} "
                     f"(atol {parity['atol']:.0e}) on {parity['samples']} test samples")
    calib = report.get("stages", {}).get("quantize", {}).get("calibration_samples")
    if calib:
        lines.append(f"INT8 static calibrated on {calib} training samples")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# edgekd report: {report['run']['name']}", ""]
    lines += [f"- {line}" for line in _summary_lines(report)]
    lines += ["", "Latency at batch 1; throughput at the batch size in the JSON row. Accuracy on the "
              f"{report['task']['split'].get('test', '?')}-sample test split; drop = teacher minus row, "
              "in percentage points.", ""]  # fmt: skip
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in report["rows"]:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in _cells(row)) + " |")
    return "\n".join(lines) + "\n"


def render_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"edgekd report: {report['run']['name']}", caption="\n".join(_summary_lines(report)))
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("artifact", "runtime", "precision", "status")
                         else "right")  # fmt: skip
    for row in report["rows"]:
        table.add_row(*_cells(row), style=None if row["status"] == "ok" else "yellow")
    return table
