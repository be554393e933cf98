"""`edgekd gate`: exit 0 within budget, 1 over budget (naming row, budget, value), 2 bad input, 3 inconclusive;
verdicts from intervals; JUnit, step summary and annotations; the same-run comparison (--rebench)."""

import json
import xml.etree.ElementTree as ET

import pytest

from edgekd.gate import evaluate
from tests.conftest import run_cli
from tests.mlp_bundles import mlp_bundle


def test_gate_passes_within_budget(quick_run, capsys):
    code, out, _ = run_cli(["gate", str(quick_run / "report.json"), "--max-accuracy-drop", "100",
                            "--max-p95-ms", "10000"], capsys)  # fmt: skip
    assert code == 0, out
    assert "PASS" in out


def test_gate_fails_and_names_row_budget_and_value(quick_run, capsys):
    code, out, _ = run_cli(["gate", str(quick_run), "--min-accuracy", "100.01", "--json"], capsys)
    assert code == 1
    verdict = json.loads(out)
    assert verdict["verdict"] == "fail"
    failing = [c for c in verdict["checks"] if c["verdict"] == "fail"]
    assert {c["budget"] for c in failing} == {"min_accuracy"}
    assert any(c["artifact"] == "student-onnx-int8-static" for c in failing)
    assert all(c["measured"] is not None and c["measured"] < 100.01 for c in failing)


def test_gate_on_selected_rows_with_budget_file(quick_run, tmp_path, capsys):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text("[budgets]\nmax_size_mb = 0.000001\n")
    code, out, _ = run_cli(["gate", str(quick_run), "--budgets", str(budgets), "-a", "student-onnx-*",
                            "--json"], capsys)  # fmt: skip
    assert code == 1
    checked = {c["artifact"] for c in json.loads(out)["checks"]}
    assert checked == {"student-onnx-fp32", "student-onnx-int8-dynamic", "student-onnx-int8-static"}


def test_gate_missing_report_exits_2(tmp_path, capsys):
    code, _, err = run_cli(["gate", str(tmp_path / "nope.json"), "--max-accuracy-drop", "1"], capsys)
    assert code == 2
    assert "does not exist" in err


def test_gate_malformed_report_exits_2(tmp_path, capsys):
    broken = tmp_path / "report.json"
    broken.write_text("{not json")
    code, _, err = run_cli(["gate", str(broken), "--max-accuracy-drop", "1"], capsys)
    assert code == 2 and "not valid JSON" in err
    broken.write_text(json.dumps({"schema_version": "1.0", "rows": []}))
    code, _, err = run_cli(["gate", str(broken), "--max-accuracy-drop", "1"], capsys)
    assert code == 2 and "schema" in err


def test_gate_unknown_budget_in_file_suggests(quick_run, tmp_path, capsys):
    budgets = tmp_path / "b.toml"
    budgets.write_text("max_p95_msec = 3\n")
    code, _, err = run_cli(["gate", str(quick_run), "--budgets", str(budgets)], capsys)
    assert code == 2 and "did you mean 'max_p95_ms'" in err


def test_gate_profile_checks_that_targets_rows_with_its_budgets(quick_run, capsys):
    code, out, _ = run_cli(["gate", str(quick_run), "--profile", "host", "--max-accuracy-drop", "100", "--json"],
                           capsys)  # fmt: skip
    assert code == 0
    assert json.loads(out)["verdict"] == "pass"
    # the quick run measured only the host: a phone profile's default budgets find no row to check
    code, out, _ = run_cli(["gate", str(quick_run), "--profile", "android-arm64", "--json"], capsys)
    assert code == 3
    assert json.loads(out)["verdict"] == "inconclusive"


def _variant(quick_run, tmp_path, name, change):
    """A copy of the quick run's report with `change(rows)` applied, no row flagged noisy and each p50 interval
    +-1% (as a quiet machine measures: known answers, whatever the test machine's load)."""
    report = json.loads((quick_run / "report.json").read_text())
    for row in report["rows"]:
        row["flags"] = [f for f in row.get("flags", []) if f["code"] != "noisy"]
        if row["status"] == "ok":
            row["latency_ms"]["p50_ci95"] = [row["latency_ms"]["p50"] * 0.99, row["latency_ms"]["p50"] * 1.01]
    change({row["artifact"]: row for row in report["rows"]})
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(report))
    return path


def test_gate_against_a_baseline_report(quick_run, tmp_path, capsys):
    base = _variant(quick_run, tmp_path, "base", lambda rows: None)
    relative = ["--max-p50-increase-pct", "10", "--max-accuracy-loss-pts", "0", "--max-size-increase-pct", "0"]
    code, out, _ = run_cli(["gate", str(base), "--baseline", str(base), *relative], capsys)
    assert code == 0, out

    def slower(rows):
        _scale_latency(rows["student-onnx-int8-static"], 1.5)
    new = _variant(quick_run, tmp_path, "new", slower)
    code, out, _ = run_cli(["gate", str(new), "--baseline", str(base), *relative, "--json"], capsys)
    assert code == 1
    failing = [c for c in json.loads(out)["checks"] if c["verdict"] == "fail"]
    assert [(c["artifact"], c["budget"]) for c in failing] == [("student-onnx-int8-static", "max_p50_increase_pct")]
    assert failing[0]["measured"] == pytest.approx(50.0)


def _scale_latency(row, factor):
    """The row as if measured `factor` times slower: every latency figure and interval scaled."""
    lat = row["latency_ms"]
    for key, value in list(lat.items()):
        if key.endswith("_ci95"):
            lat[key] = [v * factor for v in value]
        elif key in ("p50", "p90", "p95", "p99", "mean", "min", "max"):
            lat[key] = value * factor


def test_gate_baseline_noise_and_missing_rows_are_inconclusive(quick_run, tmp_path, capsys):
    base = _variant(quick_run, tmp_path, "base", lambda rows: None)

    def noisy_and_slower(rows):
        row = rows["student-onnx-fp32"]
        p50 = row["latency_ms"]["p50"]
        row["latency_ms"]["p50"] = p50 * 1.2
        row["latency_ms"]["p50_ci95"] = [p50 * 0.9, p50 * 1.6]  # a wide interval: could be either
        rows["student-onnx-int8-dynamic"]["artifact"] = "renamed"  # not in the baseline
    new = _variant(quick_run, tmp_path, "new", noisy_and_slower)
    code, out, _ = run_cli(["gate", str(new), "--baseline", str(base), "--max-p50-increase-pct", "10",
                            "--json"], capsys)  # fmt: skip
    assert code == 3
    checks = {c["artifact"]: c for c in json.loads(out)["checks"]}
    assert checks["student-onnx-fp32"]["verdict"] == "inconclusive"
    assert "straddles" in checks["student-onnx-fp32"]["detail"] and checks["student-onnx-fp32"]["interval"]
    assert checks["renamed"]["verdict"] == "inconclusive" and "baseline" in checks["renamed"]["detail"]
    assert checks["student-onnx-int8-static"]["verdict"] == "pass"


@pytest.mark.openvino
def test_a_baseline_from_another_machine_says_so(quick_run, tmp_path, capsys):
    base = _variant(quick_run, tmp_path, "base", lambda rows: None)
    report = json.loads(base.read_text())
    report["run"]["host"]["cpu"] = "Some Other CPU"
    base.write_text(json.dumps(report))
    code, out, _ = run_cli(["gate", str(quick_run), "--baseline", str(base), "--max-size-increase-pct", "0",
                            "--json"], capsys)  # fmt: skip
    document = json.loads(out)
    assert code == 0 and any("another machine" in n and "Some Other CPU" in n for n in document["notes"])
    assert all("cross-machine" in c["detail"] for c in document["checks"])


def _report(p50_ci, teacher_ci=(1.0, 1.0), runs_p50=None):
    """A minimal report dict: one student row with a p50 interval, and a teacher row."""
    def row(name, role, ci):
        p50 = runs_p50 if runs_p50 is not None and role == "student" else sum(ci) / 2
        return {"artifact": name, "role": role, "status": "ok", "target": "host",
                "latency_ms": {"p50": p50, "p90": p50, "p99": p50, "mean": p50, "p50_ci95": list(ci)}}
    return {"rows": [row("student", "student", p50_ci), row("teacher", "teacher", teacher_ci)], "task": {}}


@pytest.mark.parametrize(("ci", "limit", "verdict"), [
    ((0.9, 1.1), 1.2, "pass"),  # the whole interval within the budget
    ((0.9, 1.1), 0.8, "fail"),  # the whole interval beyond it
    ((0.9, 1.1), 1.0, "inconclusive"),  # the budget inside the interval
])
def test_absolute_latency_verdicts_come_from_the_interval(ci, limit, verdict):
    overall, [check] = evaluate(_report(ci), {"max_p50_ms": limit}, ["student"])
    assert overall == check.verdict == verdict
    assert check.interval == ci and "95% interval 0.9 to 1.1 ms" in check.detail


@pytest.mark.parametrize(("ci", "verdict"), [((0.2, 0.25), "pass"), ((0.4, 0.5), "fail"), ((0.3, 0.4), "inconclusive")])
def test_speedup_over_the_teacher_measured_in_the_same_run(ci, verdict):
    # teacher p50 1 ms (interval 1 to 1): speed-up interval = 1 / student's interval, against >= 3x
    overall, [check] = evaluate(_report(ci), {"min_speedup_vs_teacher": 3}, ["student"])
    assert check.verdict == verdict and "speed-up over the teacher" in check.detail
    assert check.interval == pytest.approx((1 / ci[1], 1 / ci[0]))


def _latency_report(quick_run, tmp_path, ci_factor):
    """The quick run's report with every student row's p50 interval set to [1, ci_factor] x its p50."""
    report = json.loads((quick_run / "report.json").read_text())
    for row in report["rows"]:
        if row["status"] == "ok":
            p50 = row["latency_ms"]["p50"]
            row["latency_ms"]["p50_ci95"] = [p50, p50 * ci_factor]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    return path, max(r["latency_ms"]["p50"] for r in report["rows"] if r["status"] == "ok")


def test_every_exit_code_and_the_inconclusive_policy(quick_run, tmp_path, capsys):
    path, slowest = _latency_report(quick_run, tmp_path, 2.0)
    fp32 = next(r for r in json.loads(path.read_text())["rows"] if r["artifact"] == "student-onnx-fp32")
    assert run_cli(["gate", str(path), "--max-p50-ms", str(slowest * 3)], capsys)[0] == 0  # pass
    assert run_cli(["gate", str(path), "--max-p50-ms", str(slowest * 0.001)], capsys)[0] == 1  # fail
    inconclusive = ["gate", str(path), "--max-p50-ms", str(fp32["latency_ms"]["p50"] * 1.5), "-a", "student-onnx-fp32"]
    code, out, _ = run_cli([*inconclusive, "--json"], capsys)
    assert code == 3 and json.loads(out)["verdict"] == "inconclusive" and json.loads(out)["exit_code"] == 3
    assert run_cli([*inconclusive, "--inconclusive", "pass"], capsys)[0] == 0
    assert run_cli([*inconclusive, "--inconclusive", "fail"], capsys)[0] == 1
    code, _, err = run_cli([*inconclusive, "--inconclusive", "maybe"], capsys)
    assert code == 2 and "--inconclusive" in err  # usage


def test_junit_step_summary_and_annotations(quick_run, tmp_path, capsys, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    junit = tmp_path / "out" / "gate.xml"
    junit.parent.mkdir()
    code, out, err = run_cli(["gate", str(quick_run), "--min-accuracy", "100.01", "--max-size-mb", "1000",
                              "--junit", str(junit), "--json"], capsys)  # fmt: skip
    document = json.loads(out)  # stdout stays pure JSON: the annotations go to stderr
    failed = [c for c in document["checks"] if c["verdict"] == "fail"]
    assert code == 1 and document["gate_version"] == "1.0" and document["counts"]["fail"] == len(failed) > 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert int(suite.get("tests")) == len(document["checks"]) == len(suite.findall("testcase"))
    assert int(suite.get("failures")) == len(failed) == len(suite.findall("testcase/failure"))
    failing_case = next(c for c in suite.findall("testcase") if c.find("failure") is not None)
    assert failing_case.get("name") == "min_accuracy"
    errors = [line for line in err.splitlines() if line.startswith("::error ")]
    assert len(errors) == len(failed) and all("min_accuracy" in line for line in errors)
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "## edgekd gate:" in text and "FAIL (exit 1)" in text
    assert text.count("| fail") + text.count("❌ fail") >= len(failed)
    monkeypatch.delenv("GITHUB_ACTIONS")
    _, _, err = run_cli(["gate", str(quick_run), "--min-accuracy", "100.01"], capsys)
    assert "::error" not in err  # annotations only on GitHub Actions


def test_rebench_of_a_model_against_itself_and_against_a_much_slower_copy(tmp_path, capsys):
    base = mlp_bundle(tmp_path / "base", layers=1)
    same = mlp_bundle(tmp_path / "same", layers=1)
    slow = mlp_bundle(tmp_path / "slow", layers=12, width=256)  # many times the work of the baseline
    quick = ["--rebench-rounds", "3", "--rebench-max-rounds", "6", "--threads", "1", "--json"]
    code, out, _ = run_cli(["gate", str(same), "--rebench", str(base), "--max-p50-increase-pct", "50", *quick], capsys)
    [check] = json.loads(out)["checks"]
    # the same model never fails; on a shared machine it may stay inconclusive (exit 3) rather than pass
    assert code in (0, 3) and check["verdict"] in ("pass", "inconclusive") and "ABBA rounds" in check["detail"], out
    assert check["interval"][0] <= check["measured"] <= check["interval"][1]
    code, out, _ = run_cli(["gate", str(slow), "--rebench", str(base), "--max-p50-increase-pct", "50", *quick], capsys)
    [check] = json.loads(out)["checks"]
    assert code == 1 and check["verdict"] == "fail" and check["interval"][0] > 50, out
    assert any("same-run comparison" in n for n in json.loads(out)["notes"])


def test_rebench_usage_errors(tmp_path, capsys):
    base = mlp_bundle(tmp_path / "base", layers=1)
    code, _, err = run_cli(["gate", str(base), "--rebench", str(tmp_path / "nowhere"), "--max-p50-increase-pct",
                            "10"], capsys)  # fmt: skip
    assert code == 2 and "neither a bundle nor a run directory" in err
    code, _, err = run_cli(["gate", str(base), "--rebench", str(base), "--max-p50-ms", "1"], capsys)
    assert code == 2 and "--max-p50-increase-pct" in err


def test_gate_relative_budget_needs_a_baseline(quick_run, capsys):
    code, _, err = run_cli(["gate", str(quick_run), "--max-p50-increase-pct", "10"], capsys)
    assert code == 2 and "--baseline" in err and "--rebench" in err


@pytest.mark.openvino
def test_the_recipes_budgets_are_the_default_and_flags_override_them(quick_run, tmp_path, capsys):
    report = json.loads((quick_run / "report.json").read_text())
    report["recipe"]["budgets"] = {"max_size_mb": 0.000001}  # as `[budgets]` in the recipe would put it
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    code, out, _ = run_cli(["gate", str(path), "--json"], capsys)
    assert code == 1 and {c["budget"] for c in json.loads(out)["checks"]} == {"max_size_mb"}
    code, out, _ = run_cli(["gate", str(path), "--max-size-mb", "1000", "--json"], capsys)
    assert code == 0, out


def test_rebench_of_a_run_directory_against_itself(quick_run, capsys):
    # the run's bundle carries its ONNX variants: those are re-measured; an OpenVINO row is not in the bundle
    code, out, _ = run_cli(["gate", str(quick_run), "--rebench", str(quick_run), "--max-p50-increase-pct", "50",
                            "-a", "student-onnx-fp32", "-a", "student-openvino-*", "--rebench-rounds", "3",
                            "--rebench-max-rounds", "6", "--json"], capsys)  # fmt: skip
    checks = {c["artifact"]: c for c in json.loads(out)["checks"]}
    assert checks["student-onnx-fp32"]["verdict"] in ("pass", "inconclusive"), out  # never "fail" against itself
    openvino = [c for name, c in checks.items() if name.startswith("student-openvino")]
    assert openvino, "the quick run has OpenVINO rows"
    assert code in (0, 3)  # never a fail against itself
