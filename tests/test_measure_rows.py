"""Measuring artifacts from disk: one process per artifact, memory, OpenVINO's modes and precision, row flags,
and a broken artifact becoming a failed row instead of a lost run."""

import json

import numpy as np
import pytest

from edgekd.build.artifacts import Artifact
from edgekd.measure import TimingPolicy
from edgekd.measure.rows import MeasureSettings, TeacherReference, measure_rows
from edgekd.report.document import load_report
from edgekd.tasks.base import load_eval_split

TINY = TimingPolicy(warmup_runs=1, min_runs=3, min_seconds=0.0)


def _rows(quick_run):
    return {row["artifact"]: row for row in load_report(quick_run)["rows"]}


def test_each_artifact_was_measured_in_its_own_process(quick_run):
    report = load_report(quick_run)
    assert report["measurement"]["isolation"] == "subprocess"
    assert report["measurement"]["preset"] == "quick"
    for row in report["rows"]:
        memory = row["memory"]
        assert row["isolation"] == "subprocess"
        assert 0 < memory["rss_before_load_bytes"] <= memory["peak_rss_bytes"], row["artifact"]
        assert row["latency_ms"]["runs"] >= report["measurement"]["policy"]["min_runs"]
        assert {t["batch_size"] for t in row["throughput"] if t["mode"] == "sync"} == {1, 16}
        assert row["fidelity"]["top1_agreement"] == row["teacher_agreement"]


def test_openvino_row_reports_its_execution_precision_and_a_labelled_throughput_mode(quick_run):
    row = _rows(quick_run)["student-openvino-fp32"]
    # the host profile leaves OpenVINO its default: bf16 on CPUs that have it, f32 elsewhere; either way the
    # row says what ran, and an fp32 artifact that did not run in f32 is flagged
    assert row["execution_precision"] in ("f32", "bf16")
    flagged = "precision-mismatch" in {flag["code"] for flag in row["flags"]}
    assert flagged == (row["execution_precision"] != "f32")
    modes = [t for t in row["throughput"] if t["mode"] == "openvino-throughput"]
    assert [t["batch_size"] for t in modes] == [1]  # requests in flight at batch 1, as benchmark_app does
    assert all(t["streams"] >= 1 and t["infer_requests"] >= 1 and t["per_s"] > 0 for t in modes)
    assert row["flops"] == _rows(quick_run)["student-onnx-fp32"]["flops"] > 0  # counted on the graph it came from


def test_int8_not_faster_flag_agrees_with_the_figures(quick_run):
    rows = _rows(quick_run)
    for name in ("student-onnx-int8-dynamic", "student-onnx-int8-static"):
        row, source = rows[name], rows[rows[name]["source"]]
        slower = row["latency_ms"]["p50"] >= source["latency_ms"]["p50"]
        assert ("int8-not-faster" in {f["code"] for f in row["flags"]}) == slower, name


def test_in_process_mode_and_a_broken_artifact(quick_run, tmp_path):
    report = json.loads((quick_run / "report.json").read_text())
    inputs, labels = load_eval_split(quick_run / "data/test.npz", "pixels")
    teacher_row = _rows(quick_run)["teacher"]
    onnx = Artifact("student-onnx-fp32", "student", "student.onnx", "onnx", "onnxruntime", "fp32", 10,
                    source="student")  # fmt: skip
    broken = Artifact("broken", "student", "missing.onnx", "onnx", "onnxruntime", "fp32", 10)
    rng = np.random.default_rng(0)
    reference = TeacherReference(rng.standard_normal((len(labels), 10)).astype(np.float32),
                                 teacher_row["accuracy"])  # fmt: skip
    for isolation in ("in-process", "subprocess"):
        settings = MeasureSettings(TINY, 4, report["task"]["eval_batch_size"], 1, isolation=isolation,
                                   batch_sizes=(1, 4), openvino_throughput=False)  # fmt: skip
        rows = measure_rows([onnx, broken], quick_run, inputs, labels, settings, 10, reference=reference)
        ok, failed = rows
        assert ok.status == "ok" and ok.isolation == isolation
        assert ok.accuracy == _rows(quick_run)["student-onnx-fp32"]["accuracy"]
        assert (ok.memory["peak_rss_bytes"] is None) == (isolation == "in-process")
        assert failed.status == "failed" and "missing.onnx" in failed.reason, failed.reason


def test_unknown_isolation_is_refused():
    from edgekd.errors import EdgekdError

    with pytest.raises(EdgekdError, match="isolation"):
        MeasureSettings(TINY, 4, 1, 1, isolation="thread")
