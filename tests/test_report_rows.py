"""A report row is a type: its JSON (keys, order, nulls) checked against the published schema, the marks the
stages put on rows, the typed document, and the one table of figures behind the report, compare and the gate."""

import os
import subprocess
import sys
from dataclasses import fields

import jsonschema
import pytest

from edgekd.budgets import BUDGET_SPECS
from edgekd.build.artifacts import Artifact
from edgekd.errors import ReportError
from edgekd.report.compare import COMPARE_METRICS
from edgekd.report.figures import FIGURES
from edgekd.report.model import Fidelity, Flag, Parity, Report, Row, RunInfo, Timing
from edgekd.report.schema import SCHEMA_VERSION, report_schema

ONNX = Artifact("student-onnx-int8-static", "student", "student.int8-static.onnx", "onnx", "onnxruntime", "int8",
                1234, quantization="static", source="student-onnx-fp32")  # fmt: skip
TIMING = Timing(p50=0.5, p90=0.6, p95=0.7, p99=0.9, mean=0.55, std=0.05, min=0.4, max=1.0, runs=30,
                p50_ci95=(0.45, 0.52))  # fmt: skip


def _valid(value, definition: str) -> None:
    """`value` against one of the schema's definitions ($defs/row, $defs/flag, ...)."""
    schema = report_schema()
    jsonschema.validate(value, {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"})


def _measured(**extra) -> Row:
    return Row.of(ONNX, "host", 2, size_bytes=4096, accuracy=0.95, accuracy_drop=2.5, teacher_agreement=0.97,
                  fidelity=Fidelity(0.99, top1_agreement=0.97, mean_kl=0.01), latency_ms=TIMING,
                  throughput_per_s=4000.0, batch_size=16, flags=[], **extra)  # fmt: skip


def test_a_measured_row_writes_its_fields_in_order_with_the_nulls_the_schema_promises():
    row = _measured(student_parity=Parity(0.01, 0.999, 0.98))
    data = row.to_json()
    _valid(data, "row")
    assert list(data) == ["artifact", "role", "path", "format", "runtime", "precision", "params", "quantization",
                          "architecture", "source", "target", "threads", "status", "reason", "size_bytes", "accuracy",
                          "accuracy_drop", "teacher_agreement", "fidelity", "student_parity", "latency_ms",
                          "throughput_per_s", "batch_size", "flags", "drop_by_stage"]  # fmt: skip
    assert data["artifact"] == "student-onnx-int8-static" and data["architecture"] is None
    assert data["fidelity"] == {"top1_agreement": 0.97, "mean_kl": 0.01, "mean_cosine": 0.99}
    assert data["student_parity"] == {"max_abs_diff": 0.01, "mean_cosine": 0.999, "top1_agreement": 0.98}
    assert data["latency_ms"]["p50_ci95"] == [0.45, 0.52] and "runtime_p50" not in data["latency_ms"]
    assert data["drop_by_stage"] is None  # a measured row always says whether its chain was split


def test_an_embedding_row_has_null_accuracy_and_a_skipped_row_has_no_figures():
    embedding = Row.of(ONNX, "host", 2, size_bytes=1, fidelity=Fidelity(0.98), latency_ms=TIMING,
                       throughput_per_s=1.0, batch_size=1, flags=[])  # fmt: skip
    data = embedding.to_json()
    _valid(data, "row")
    assert data["accuracy"] is None and data["teacher_agreement"] is None and data["fidelity"] == {"mean_cosine": 0.98}
    assert "neighbour_accuracy" not in data  # no labels: left out, not null
    skipped = Row.of(ONNX, "jetson-orin-nano", 6, batch_size=8, status="skipped", reason="measured on the device")
    data = skipped.to_json()
    _valid(data, "row")
    assert list(data) == ["artifact", "role", "path", "format", "runtime", "precision", "params", "quantization",
                          "architecture", "source", "target", "threads", "status", "reason",
                          "batch_size"]  # fmt: skip


def test_the_marks_stages_put_on_rows():
    row = _measured()
    row.flag("noisy", "the rounds vary")
    row.fail("parity: max |onnx - pytorch| 0.2 > atol 0.001")
    data = row.to_json()
    _valid(data, "row")
    assert data["status"] == "failed" and data["reason"].startswith("parity") and data["latency_ms"]["p50"] == 0.5
    assert data["flags"] == [{"code": "noisy", "message": "the rounds vary"}] and row.flagged("noisy")
    _valid(Flag("x", "y").to_json(), "flag")
    row.extend(proxy="measured on the host", gpu_compute_ms=TIMING)
    assert row.to_json()["gpu_compute_ms"] == TIMING.to_dict()
    with pytest.raises(TypeError, match="no field latency"):
        row.extend(latency=1.0)
    assert row.value(FIGURES["p50_ms"]) == 0.5 and row.value(FIGURES["accuracy"]) == 0.95
    assert row.value(FIGURES["cosine_drop"]) == 1.0  # (1 - 0.99) x 100


def _report(rows: list[Row]) -> Report:
    run = RunInfo(name="r", threads=2, host={"cpu": "test cpu", "cores": 2}, recipe_hash="abc", git_sha=None,
                  created_at="2026-01-01T00:00:00+00:00", runtime_versions={"onnxruntime": "1"})  # fmt: skip
    return Report(run=run, task={"name": "digits", "split": {"test": 10}, "test_split": "data/test.npz"},
                  teacher={"accuracy": 0.975, "params": 9000}, student={}, stages={}, recipe={}, rows=rows)


def test_the_document_is_validated_when_written_as_json():
    document = _report([_measured()]).to_json()  # no `measurement` given (as a device report): none written
    assert list(document) == ["schema_version", "run", "task", "teacher", "student", "stages", "recipe", "rows",
                              "estimates"]  # fmt: skip
    assert document["schema_version"] == SCHEMA_VERSION and document["run"]["git_sha"] is None
    assert "profile" not in document["run"]
    broken = _measured()
    broken.status = "lost"
    with pytest.raises(ReportError, match="rows/0"):
        _report([broken]).to_json()


def test_a_run_reports_rows_in_the_types_field_order(quick_run):
    from edgekd.report.document import load_report

    order = [f.name for f in fields(Row)]
    for row in load_report(quick_run)["rows"]:
        positions = [order.index(key) for key in row]  # every key is a Row field...
        assert positions == sorted(positions), row["artifact"]  # ...in the type's order


def test_the_row_type_and_the_schema_name_the_same_fields():
    assert {f.name for f in fields(Row)} == set(report_schema()["$defs"]["row"]["properties"])


def test_one_table_of_figures_behind_compare_and_the_gate():
    row_fields = report_schema()["$defs"]["row"]["properties"]
    for figure in FIGURES.values():
        if not callable(figure.read):
            assert figure.read[0] in row_fields, figure.name  # a figure the schema does not know is a typo
    assert all(m is FIGURES[m.name] for m in COMPARE_METRICS)
    assert {spec.figure.name for spec in BUDGET_SPECS.values()} <= set(FIGURES)
    assert BUDGET_SPECS["max_p95_ms"].field_path == ("latency_ms", "p95") and BUDGET_SPECS["max_p95_ms"].upper
    assert not BUDGET_SPECS["min_speedup_vs_teacher"].upper and BUDGET_SPECS["max_size_mb"].unit == "MB"


def test_every_budget_is_a_gate_option_with_its_help():
    proc = subprocess.run([sys.executable, "-m", "edgekd", "gate", "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name, spec in BUDGET_SPECS.items():
        assert f"--{name.replace('_', '-')}" in proc.stdout, name
        assert spec.help.split(",")[0] in proc.stdout, name
    assert "--json" in proc.stdout and "--artifact" in proc.stdout
