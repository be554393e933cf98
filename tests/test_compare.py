"""`edgekd report --compare`: a report against itself shows no change; worse figures beyond their tolerance are
regressions, named row by row."""

import copy
import json
from pathlib import Path

import pytest

from edgekd.fileio import write_json_atomic
from edgekd.report.compare import REGRESSION, SAME, WORSE, compare_reports, summary
from edgekd.report.document import load_report
from tests.conftest import run_cli

FIXTURE_1_0 = Path(__file__).parent / "fixtures" / "report-1.0.json"


@pytest.mark.openvino
def test_compare_with_itself_shows_no_change(quick_run, capsys):
    report = load_report(quick_run)
    comparisons = compare_reports(report, report)
    assert all(d.verdict == SAME for c in comparisons for d in c.deltas)
    assert summary(comparisons).startswith("no change")
    code, out, _ = run_cli(["report", str(quick_run), "--compare", str(quick_run), "--format", "json",
                            "--fail-on-regression"], capsys)  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert result["regressions"] == 0 and result["summary"].startswith("no change")
    assert {row["presence"] for row in result["rows"]} == {"both"}


def test_regressions_are_named_and_tolerances_respected(quick_run, tmp_path, capsys):
    old = load_report(quick_run)
    new = copy.deepcopy(old)
    rows = {row["artifact"]: row for row in new["rows"]}
    rows["student-onnx-fp32"]["latency_ms"]["p50"] *= 1.5  # a real slowdown
    rows["student-onnx-int8-static"]["latency_ms"]["p50"] *= 1.05  # within the 10% timing tolerance
    rows["student"]["accuracy"] -= 0.01  # accuracy has no tolerance
    rows["teacher"]["size_bytes"] -= 1  # smaller is better
    new["rows"] = [row for row in new["rows"] if row["artifact"] != "student-onnx-int8-dynamic"]
    verdicts = {(c.artifact, d.metric): d.verdict for c in compare_reports(new, old) for d in c.deltas}
    assert verdicts[("student-onnx-fp32", "p50_ms")] == REGRESSION
    assert verdicts[("student-onnx-int8-static", "p50_ms")] == WORSE
    assert verdicts[("student", "accuracy")] == REGRESSION
    assert verdicts[("teacher", "size_bytes")] == "better"
    presence = {c.artifact: c.presence for c in compare_reports(new, old)}
    assert presence["student-onnx-int8-dynamic"] == "only-old"
    new_path = tmp_path / "new.json"
    write_json_atomic(new_path, new)
    code, out, _ = run_cli(["report", str(new_path), "--compare", str(quick_run), "--format", "md",
                            "--fail-on-regression"], capsys)  # fmt: skip
    assert code == 1
    assert "**student-onnx-fp32** | **host** | **p50_ms**" in out
    code, out, _ = run_cli(["report", str(new_path), "--compare", str(quick_run), "-f", "html"], capsys)
    assert code == 0 and out.count('class="bad"') == 2


@pytest.mark.openvino
def test_compare_against_a_1_0_report(quick_run, capsys):
    code, out, _ = run_cli(["report", str(quick_run), "--compare", str(FIXTURE_1_0), "--format", "json"], capsys)
    assert code == 0
    rows = json.loads(out)["rows"]
    old_artifacts = {row["artifact"] for row in json.loads(FIXTURE_1_0.read_text())["rows"]}
    assert all(row["presence"] == "both" for row in rows if row["artifact"] in old_artifacts)
    assert all(row["presence"] == "only-new" for row in rows if row["artifact"] not in old_artifacts)
    assert all(d["metric"] != "peak_rss_bytes" for row in rows for d in row["deltas"])  # 1.0 did not record it
