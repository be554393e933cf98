"""TensorRT: engines are built where they run. Without an NVIDIA GPU and TensorRT these tests skip with the
reason; the refusal of engines built elsewhere is checked everywhere, because it needs no GPU."""

import json

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.fileio import sha256_file
from edgekd.runtimes.tensorrt_runtime import (
    build_engine,
    check_engine,
    device_identity,
    sidecar_path,
    tensorrt_unavailable_reason,
)

REASON = tensorrt_unavailable_reason()
needs_tensorrt = pytest.mark.skipif(REASON is not None, reason=f"TensorRT cannot run here: {REASON}")


def test_an_engine_without_a_build_record_is_refused(tmp_path):
    engine = tmp_path / "student.fp16.engine"
    engine.write_bytes(b"not built here")
    with pytest.raises(EdgekdError, match="no build record.*rebuild on target"):
        check_engine(engine)


def test_an_engine_built_for_another_gpu_is_refused(tmp_path):
    engine = tmp_path / "student.fp16.engine"
    engine.write_bytes(b"serialized engine bytes")
    record = {**device_identity(), "gpu": "Orin (nvgpu)", "compute_capability": "8.7",
              "engine_sha256": sha256_file(engine)}  # fmt: skip
    if record["gpu"] == device_identity()["gpu"]:
        record["gpu"] = "some other GPU"
    sidecar_path(engine).write_text(json.dumps(record))
    with pytest.raises(EdgekdError, match="rebuild on target"):
        check_engine(engine)


def test_an_engine_whose_bytes_changed_is_refused(tmp_path):
    engine = tmp_path / "student.int8.engine"
    engine.write_bytes(b"original")
    sidecar_path(engine).write_text(json.dumps({**device_identity(), "engine_sha256": sha256_file(engine)}))
    engine.write_bytes(b"tampered")
    with pytest.raises(EdgekdError, match="does not match its build record"):
        check_engine(engine)


def test_the_reason_is_stated_when_tensorrt_cannot_run():
    if REASON is None:
        pytest.skip("TensorRT runs here")
    assert "GPU" in REASON or "TensorRT" in REASON or "tensorrt" in REASON


@pytest.mark.tensorrt
@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_build_run_and_record_an_engine(quick_run, tmp_path, precision):
    from edgekd.runtimes import get_runtime
    from edgekd.tasks.base import load_eval_split

    source = quick_run / ("student.int8-static.onnx" if precision == "int8" else "student.onnx")
    engine = tmp_path / f"student.{precision}.engine"
    record = build_engine(source, engine, precision, "pixels", (1, 8, 8), max_batch=64)
    assert record["tensorrt_version"] and record["gpu"] and record["compute_capability"]
    assert record["engine_sha256"] == sha256_file(engine)
    inputs, labels = load_eval_split(quick_run / "data" / "test.npz", "pixels")
    runner = get_runtime("tensorrt").load(engine, 1)
    logits = np.concatenate([runner(inputs[i : i + 7]) for i in range(0, len(inputs), 7)])
    reference = get_runtime("onnxruntime").load(source, 1)(inputs)
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.97
    assert len(runner.gpu_compute_ms(inputs[:1], warmup_runs=5, runs=20)) == 20


@pytest.mark.tensorrt
@needs_tensorrt
def test_profile_on_a_gpu_builds_and_measures_tensorrt_rows(quick_run, tmp_path, capsys):
    from tests.conftest import run_cli

    profile = tmp_path / "gpu.toml"
    profile.write_text('name = "this-gpu"\ndevice_class = "host"\nruntimes = ["tensorrt"]\n'
                       'precisions = ["fp16", "int8"]\n')  # fmt: skip
    code, out, err = run_cli(["profile", str(quick_run / "bundle"), "-p", str(profile), "--json"], capsys)
    assert code == 0, err
    rows = {r["artifact"]: r for r in json.loads(out)["rows"]}
    for name in ("student-tensorrt-fp16", "student-tensorrt-int8"):
        assert rows[name]["status"] == "ok", rows[name]["reason"]
        assert rows[name]["gpu_compute_ms"]["p50"] > 0 and rows[name]["build"]["gpu"]
