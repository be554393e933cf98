"""Measuring artifacts from disk: one process per artifact, memory, OpenVINO's modes and precision, row flags,
and a broken artifact becoming a failed row instead of a lost run."""

import json

import numpy as np
import pytest

from edgekd.build.artifacts import Artifact
from edgekd.measure import LatencyStats, TimingPolicy
from edgekd.measure.rows import MeasureSettings, TeacherReference, measure_rows
from edgekd.report.document import load_report
from edgekd.report.model import Row
from edgekd.tasks.base import load_eval_split

TINY = TimingPolicy(warmup_runs=1, min_runs=3, min_seconds=0.0)


def _rows(quick_run):
    return {row["artifact"]: row for row in load_report(quick_run)["rows"]}


@pytest.mark.openvino
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
    # all of them alive at once, their batch-1 rounds taken in turns: each row says with how many, and where
    rounds = report["measurement"]["policy"]["rounds"]
    assert "in turns" in report["measurement"]["interleaving"]
    for row in report["rows"]:
        latency = row["latency_ms"]
        assert latency["interleaved_across"] == len(report["rows"]), row["artifact"]
        assert len(latency["round_slots"]) == len(latency["round_start_s"]) == rounds
    first_slots = sorted(row["latency_ms"]["round_slots"][0] for row in report["rows"])
    assert first_slots == list(range(len(report["rows"])))  # one turn each in a round


@pytest.mark.openvino
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


def _timed(name: str, precision: str, p50: float, source: str | None = None, target: str = "host") -> Row:
    """An ok row timed at `p50` ms (the only figure the comparison reads)."""
    artifact = Artifact(name, "student", f"{name}.onnx", "onnx", "onnxruntime", precision, 10, source=source)
    latency = LatencyStats(p50=p50, p90=p50, p95=p50, p99=p50, mean=p50, std=0.0, min=p50, max=p50, runs=1)
    return Row.of(artifact, target, 1, status="ok", latency_ms=latency, flags=[])


def test_int8_not_faster_flag_fires_at_and_above_its_fp32_sources_p50():
    from edgekd.measure.rows import _add_comparison_flags

    rows = [_timed("fp32", "fp32", 2.0), _timed("int8-faster", "int8", 1.0, "fp32"),
            _timed("int8-equal", "int8", 2.0, "fp32"), _timed("int8-slower", "int8", 3.0, "fp32"),
            _timed("int8-elsewhere", "int8", 3.0, "fp32", target="jetson"),  # its source is not on that target
            _timed("int8-of-int8", "int8", 9.0, "int8-faster")]  # fmt: skip
    _add_comparison_flags(rows)
    flagged = {row.artifact: [f.message for f in row.flags if f.code == "int8-not-faster"] for row in rows}
    assert flagged == {"fp32": [], "int8-faster": [], "int8-elsewhere": [], "int8-of-int8": [],
                       "int8-equal": ["p50 is 1.00x that of its fp32 source 'fp32' on host: INT8 does not pay off "
                                      "here"],
                       "int8-slower": ["p50 is 1.50x that of its fp32 source 'fp32' on host: INT8 does not pay off "
                                       "here"]}  # fmt: skip


def test_accuracy_drop_and_agreement_are_against_the_teachers_outputs():
    from edgekd.measure.quality import ACCURACY
    from edgekd.measure.rows import _quality

    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    teacher = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3, 0, 0]]  # wrong on the last: 9 of 10
    row = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 0, 0, 0, 0]]  # also wrong on the 7th and 8th: 7 of 10
    figures = _quality(row, labels, TeacherReference.of(teacher, labels, ACCURACY), ACCURACY)
    # by hand: 0.9 - 0.7 = 20 points; the row's top-1 matches the teacher's on 8 of 10 samples
    assert figures["accuracy"] == pytest.approx(0.7) and figures["accuracy_drop"] == pytest.approx(20.0)
    assert figures["teacher_agreement"] == pytest.approx(0.8)


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
