"""`edgekd gate` exit codes: 0 within budget, 1 over budget (naming row, budget, value), 2 bad report."""

import json

import pytest

from tests.conftest import run_cli


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
    assert code == 2
    assert json.loads(out)["verdict"] == "inconclusive"


def _variant(quick_run, tmp_path, name, change):
    """A copy of the quick run's report with `change(rows)` applied and no row flagged noisy."""
    report = json.loads((quick_run / "report.json").read_text())
    for row in report["rows"]:
        row["flags"] = [f for f in row.get("flags", []) if f["code"] != "noisy"]
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
        rows["student-onnx-int8-static"]["latency_ms"]["p50"] *= 1.5
    new = _variant(quick_run, tmp_path, "new", slower)
    code, out, _ = run_cli(["gate", str(new), "--baseline", str(base), *relative, "--json"], capsys)
    assert code == 1
    failing = [c for c in json.loads(out)["checks"] if c["verdict"] == "fail"]
    assert [(c["artifact"], c["budget"]) for c in failing] == [("student-onnx-int8-static", "max_p50_increase_pct")]
    assert failing[0]["measured"] == pytest.approx(50.0)


def test_gate_baseline_noise_and_missing_rows_are_inconclusive(quick_run, tmp_path, capsys):
    base = _variant(quick_run, tmp_path, "base", lambda rows: None)

    def noisy_and_slower(rows):
        row = rows["student-onnx-fp32"]
        row["latency_ms"]["std"] = row["latency_ms"]["p50"]  # spread as large as the figure itself
        row["latency_ms"]["p50"] *= 1.2
        row["flags"].append({"code": "noisy", "message": "busy machine"})
        rows["student-onnx-int8-dynamic"]["artifact"] = "renamed"  # not in the baseline
    new = _variant(quick_run, tmp_path, "new", noisy_and_slower)
    code, out, _ = run_cli(["gate", str(new), "--baseline", str(base), "--max-p50-increase-pct", "10",
                            "--json"], capsys)  # fmt: skip
    assert code == 2
    checks = {c["artifact"]: c for c in json.loads(out)["checks"]}
    assert checks["student-onnx-fp32"]["verdict"] == "inconclusive" and "noise" in checks["student-onnx-fp32"]["detail"]
    assert checks["renamed"]["verdict"] == "inconclusive" and "baseline" in checks["renamed"]["detail"]
    assert checks["student-onnx-int8-static"]["verdict"] == "pass"


def test_gate_relative_budget_needs_a_baseline(quick_run, capsys):
    code, _, err = run_cli(["gate", str(quick_run), "--max-p50-increase-pct", "10"], capsys)
    assert code == 2 and "--baseline" in err


def test_the_recipes_budgets_are_the_default_and_flags_override_them(quick_run, tmp_path, capsys):
    report = json.loads((quick_run / "report.json").read_text())
    report["recipe"]["budgets"] = {"max_size_mb": 0.000001}  # as `[budgets]` in the recipe would put it
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    code, out, _ = run_cli(["gate", str(path), "--json"], capsys)
    assert code == 1 and {c["budget"] for c in json.loads(out)["checks"]} == {"max_size_mb"}
    code, out, _ = run_cli(["gate", str(path), "--max-size-mb", "1000", "--json"], capsys)
    assert code == 0, out
