"""OpenVINO IRs: fp32 / fp16 / int8 build and run, and the execution precision is what the plugin really uses."""

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="openvino is not installed: pip install 'edgekd[openvino]'")

from edgekd.runtimes import get_runtime  # noqa: E402
from edgekd.runtimes.openvino_runtime import build_ir, execution_precision  # noqa: E402
from edgekd.tasks.base import load_eval_split  # noqa: E402

pytestmark = pytest.mark.openvino


def _default_cpu_precision() -> str:
    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()


def test_f32_is_forced_and_auto_reports_what_the_cpu_picks(quick_run, tmp_path):
    forced, auto = tmp_path / "forced.xml", tmp_path / "auto.xml"
    build_ir(quick_run / "student.onnx", forced, inference_precision="f32")
    build_ir(quick_run / "student.onnx", auto, inference_precision="auto")
    assert execution_precision(forced) == "f32"
    assert execution_precision(auto) == _default_cpu_precision()  # bf16 on CPUs with AVX512_BF16 / AMX


def test_fp16_ir_halves_the_weights_and_int8_ir_comes_from_the_qdq_model(quick_run, tmp_path):
    fp32, fp16, int8 = tmp_path / "a.xml", tmp_path / "b.xml", tmp_path / "c.xml"
    build_ir(quick_run / "student.onnx", fp32)
    build_ir(quick_run / "student.onnx", fp16, compress_to_fp16=True)
    build_ir(quick_run / "student.int8-static.onnx", int8)
    ratio = fp16.with_suffix(".bin").stat().st_size / fp32.with_suffix(".bin").stat().st_size
    assert 0.4 < ratio < 0.6
    assert "FakeQuantize" in int8.read_text() or "fake_quantize" in int8.read_text().lower()
    inputs, _ = load_eval_split(quick_run / "data" / "test.npz", "pixels")
    reference = get_runtime("onnxruntime").load(quick_run / "student.onnx", 1)(inputs[:32])
    for path, atol in ((fp32, 1e-4), (fp16, 5e-2)):
        out = get_runtime("openvino").load(path, 1)(inputs[:32])
        np.testing.assert_allclose(out, reference, atol=atol * max(1.0, np.abs(reference).max()))
    int8_out = get_runtime("openvino").load(int8, 1)(inputs[:32])
    assert (int8_out.argmax(1) == reference.argmax(1)).mean() >= 0.8


def test_run_rows_record_execution_precision(quick_run):
    from edgekd.report.document import load_report

    rows = {r["artifact"]: r for r in load_report(quick_run)["rows"]}
    expected = _default_cpu_precision()  # the host profile lets the plugin choose, and says what it chose
    assert rows["student-openvino-fp32"]["execution_precision"] == expected
    assert rows["student-openvino-int8"]["execution_precision"] == f"int8+{expected}"
    assert rows["student-openvino-fp16"]["status"] == "ok"


def test_openvino_precision_flag_forces_f32(tmp_path, capsys):
    """`--openvino-precision f32` reaches the IR: the fp32 row then computes in f32 whatever the CPU."""
    import json

    from tests.conftest import QUICK_OVERRIDES, run_cli

    args = ["distill-and-export", "-o", str(tmp_path), "--run-name", "f32", "--openvino-precision", "f32", "--json",
            "--set", "distill.train_scratch_baseline=false"]  # fmt: skip
    for override in QUICK_OVERRIDES:
        args += ["--set", override]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    rows = {r["artifact"]: r for r in json.loads(out)["rows"]}
    assert rows["student-openvino-fp32"]["execution_precision"] == "f32"
    assert rows["student-openvino-fp16"]["execution_precision"] == "f32"
