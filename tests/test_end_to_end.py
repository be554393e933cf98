"""One reduced `edgekd distill-and-export` through the CLI, checked from the run directory alone."""

import json
import shutil
import tomllib

import numpy as np
import onnxruntime as ort
import pytest

from edgekd.report.document import load_report
from edgekd.report.schema import validate_report
from edgekd.tasks.base import load_eval_split
from tests.conftest import QUICK_OVERRIDES, run_cli

EXPECTED_ROWS = {
    "teacher", "student", "student-onnx-fp32", "student-onnx-int8-dynamic", "student-onnx-int8-static",
    "student-openvino-fp32",
}  # fmt: skip


def test_run_directory_holds_what_later_stages_need(quick_run):
    for name in ("recipe.toml", "teacher.safetensors", "student.safetensors", "student.onnx",
                 "student.int8-dynamic.onnx", "student.int8-static.onnx", "data/test.npz",
                 "report.json", "report.md"):  # fmt: skip
        assert (quick_run / name).is_file(), name
    recipe = tomllib.loads((quick_run / "recipe.toml").read_text())
    assert recipe["distill"]["epochs"] == 4  # the override, resolved into the recipe on disk
    assert not list(quick_run.rglob("*.tmp*")), "no temporary files left behind"


@pytest.mark.openvino
def test_report_has_every_row_ok_and_validates(quick_run):
    report = load_report(quick_run / "report.json")
    rows = {row["artifact"]: row for row in report["rows"]}
    assert EXPECTED_ROWS <= set(rows)
    for name in EXPECTED_ROWS:
        assert rows[name]["status"] == "ok", (name, rows[name]["reason"])
    teacher = rows["teacher"]
    assert report["teacher"]["accuracy"] == teacher["accuracy"]
    assert report["student"]["params"] * 10 <= report["teacher"]["params"]
    for row in rows.values():
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        # how the drop is computed: test_measure_rows, on hand-worked outputs; here, that every row has one
        assert isinstance(row["accuracy_drop"], float), row["artifact"]
    assert rows["teacher"]["accuracy_drop"] == pytest.approx(0, abs=1e-3)  # measured against itself
    assert report["stages"]["quantize"]["calibration_samples"] == 64
    assert report["stages"]["export"]["parity"]["passed"]


def test_onnx_rows_recompute_exactly_from_the_run_directory(quick_run):
    report = json.loads((quick_run / "report.json").read_text())
    inputs, labels = load_eval_split(quick_run / report["task"]["test_split"], report["task"]["input"]["name"])
    onnx_rows = [row for row in report["rows"] if row["format"] == "onnx"]
    assert len(onnx_rows) == 3
    for row in onnx_rows:
        path = quick_run / row["path"]
        assert path.stat().st_size == row["size_bytes"]
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        step = report["task"]["eval_batch_size"]
        logits = np.concatenate([session.run(None, {"pixels": inputs[i : i + step]})[0]
                                 for i in range(0, len(inputs), step)])  # fmt: skip
        assert float((logits.argmax(1) == labels).mean()) == row["accuracy"], row["artifact"]


def test_rerun_resumes_finished_stages(quick_run, tmp_path, capsys):
    # a copy of its own: the rerun rewrites the report and re-measures, which the other tests of quick_run read
    shutil.copytree(quick_run, tmp_path / "export" / "quick")
    args = ["distill-and-export", "--output-dir", str(tmp_path / "export"), "--run-name", "quick", "--json"]
    for override in QUICK_OVERRIDES:
        args += ["--set", override]
    code, out, _ = run_cli(args, capsys)
    assert code == 0
    report = json.loads(out)
    validate_report(report, "stdout")
    for stage in ("distill", "export", "quantize"):
        assert report["stages"][stage]["reused"] is True, stage


def test_bad_recipe_on_cli_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[distill]\nepochz = 3\n")
    code, _, err = run_cli(["distill-and-export", str(bad), "--output-dir", str(tmp_path)], capsys)
    assert code == 2
    assert "did you mean 'epochs'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "digits").exists()


def test_int8_static_within_two_points_of_fp32_student(quick_run):
    rows = {row["artifact"]: row for row in load_report(quick_run)["rows"]}
    gap_points = abs(rows["student-onnx-fp32"]["accuracy"] - rows["student-onnx-int8-static"]["accuracy"]) * 100
    assert gap_points <= 2.0


def test_every_artifact_reports_its_parity_with_the_fp32_student(quick_run):
    """The exported fp32 file follows the PyTorch student to float precision; INT8 files move further."""
    rows = {row["artifact"]: row for row in load_report(quick_run)["rows"]}
    assert "student_parity" not in rows["teacher"] and "student_parity" not in rows["student"]
    fp32 = rows["student-onnx-fp32"]["student_parity"]
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["top1_agreement"] == 1.0 and fp32["mean_cosine"] > 0.999999
    int8 = rows["student-onnx-int8-static"]["student_parity"]
    assert int8["max_abs_diff"] > fp32["max_abs_diff"] and 0.9 <= int8["top1_agreement"] <= 1.0
    assert "Parity with the fp32 PyTorch student" in (quick_run / "report.md").read_text()


def test_budgets_in_the_recipe_give_verdicts_in_the_report_and_the_same_gate(tmp_path, capsys):
    from tests.conftest import reduced_run, run_cli

    budgets = ["budgets.max_accuracy_drop=100", "budgets.max_size_mb=0.000001", "build.openvino=false"]
    run = reduced_run(tmp_path, "budgeted", [arg for override in budgets for arg in ("--set", override)])
    report = load_report(run)
    verdicts = report["verdicts"]
    assert verdicts["verdict"] == "fail" and verdicts["budgets"] == {"max_accuracy_drop": 100, "max_size_mb": 1e-6}
    failed = {c["budget"] for c in verdicts["checks"] if c["verdict"] == "fail"}
    assert failed == {"max_size_mb"}
    assert "Budgets from the recipe: FAIL" in (run / "report.md").read_text()
    assert "budgets from the recipe: FAIL" in capsys.readouterr().out  # the run's own summary line
    code, out, _ = run_cli(["gate", str(run), "--json"], capsys)
    assert code == 1 and json.loads(out)["checks"] == verdicts["checks"]
