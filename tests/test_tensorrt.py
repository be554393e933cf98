"""TensorRT: engines are built where they run. Without an NVIDIA GPU and TensorRT these tests skip with the
reason; what needs no GPU is checked everywhere: the refusal of engines built elsewhere, the ONNX files the
strongly typed builds read, the trtexec command line, and that the code uses only TensorRT names it declares
(and, wherever the `tensorrt` package imports, that the installed module has every one of them)."""

import ast
import inspect
import json
import types

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgekd.errors import EdgekdError, StageError
from edgekd.fileio import sha256_file
from edgekd.runtimes import tensorrt_runtime
from edgekd.runtimes.base import Availability
from edgekd.runtimes.tensorrt_onnx import tensorrt_onnx, to_tensorrt_qdq
from edgekd.runtimes.tensorrt_runtime import (
    TENSORRT_API,
    build_engine,
    check_engine,
    device_identity,
    missing_api,
    onnx_precision,
    qdq_problem,
    sidecar_path,
    tensorrt_unavailable_reason,
    trtexec_args,
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


def _no_tensorrt_package():
    raise ImportError("No module named 'tensorrt'")


def test_trtexec_alone_is_build_only_and_no_gpu_is_absent(monkeypatch):
    """Availability is a value: with a GPU and trtexec but no tensorrt package, engines are built, not run."""
    monkeypatch.setattr(tensorrt_runtime, "nvidia_gpus", lambda: [{"name": "Orin (nvgpu)", "compute_cap": "8.7"}])
    monkeypatch.setattr(tensorrt_runtime, "trtexec_path", lambda: "/usr/src/tensorrt/bin/trtexec")
    monkeypatch.setattr(tensorrt_runtime, "_version", _no_tensorrt_package)
    status = tensorrt_runtime.RUNTIME.status()
    assert status.availability is Availability.BUILD_ONLY and status.can_build and not status.usable
    assert "only trtexec" in status.reason and status.why_not == status.reason
    monkeypatch.setattr(tensorrt_runtime, "nvidia_gpus", lambda: [])
    status = tensorrt_runtime.RUNTIME.status()
    assert status.availability is Availability.ABSENT and not status.can_build and "no NVIDIA GPU" in status.reason


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
    typed = tensorrt_onnx(precision, source, engine.with_suffix(".onnx"))
    record = build_engine(typed, engine, precision, "pixels", (1, 8, 8), max_batch=64)
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


# What each variable of tensorrt_runtime.py that holds a TensorRT object is ("" is the module itself).
TENSORRT_OBJECTS = {"trt": "", "tensorrt": "", "logger": "Logger", "self._logger": "Logger", "builder": "Builder",
                    "network": "INetworkDefinition", "parser": "OnnxParser", "config": "IBuilderConfig",
                    "profile": "IOptimizationProfile", "cache": "ITimingCache", "runtime": "Runtime",
                    "engine": "ICudaEngine", "self._engine": "ICudaEngine",
                    "self._context": "IExecutionContext"}  # fmt: skip
PLAIN_RESULTS = {"serialized"}  # an IHostMemory only handed to memoryview()


def _holder(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def _tensorrt_names_used() -> set[tuple[str, str]]:
    """(owner, name) for every attribute the code reads from a TensorRT object, `trt.A.B` read as A then A.B."""
    used = set()
    for node in ast.walk(ast.parse(inspect.getsource(tensorrt_runtime))):
        if not isinstance(node, ast.Attribute):
            continue
        if _holder(node.value) in TENSORRT_OBJECTS:
            used.add((TENSORRT_OBJECTS[_holder(node.value)], node.attr))
        elif isinstance(node.value, ast.Attribute) and _holder(node.value.value) in ("trt", "tensorrt"):
            used.add((node.value.attr, node.attr))
    return used


def test_the_code_uses_only_the_tensorrt_names_it_declares():
    used = _tensorrt_names_used()
    undeclared = sorted(f"{owner}.{name}".lstrip(".") for owner, name in used
                        if name not in TENSORRT_API.get(owner, ()))  # fmt: skip
    assert not undeclared, f"add to TENSORRT_API (and check against TensorRT 10.3 and 11.x): {undeclared}"
    assert ("Builder", "build_serialized_network") in used and ("IExecutionContext", "execute_async_v3") in used
    # every TensorRT object the code makes is held in a variable the reading above knows
    for node in ast.walk(ast.parse(inspect.getsource(tensorrt_runtime))):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and _holder(func.value) in TENSORRT_OBJECTS:
                targets = {_holder(t) for t in node.targets} | {_holder(e) for t in node.targets
                                                                 if isinstance(t, ast.Tuple) for e in t.elts}
                assert targets - {None} <= set(TENSORRT_OBJECTS) | PLAIN_RESULTS, ast.unparse(node)


def test_a_tensorrt_without_a_declared_name_is_caught():
    assert set(missing_api(types.ModuleType("tensorrt"))) >= {"Builder", "OnnxParser", "nptype"}


def test_the_installed_tensorrt_has_every_name_the_code_uses():
    try:
        import tensorrt
    except ImportError as exc:  # CI and machines without TensorRT's libraries (libnvinfer)
        pytest.skip(f"the tensorrt package does not import here ({exc}); checked where it does")
    assert missing_api(tensorrt) == [], f"TensorRT {tensorrt.__version__}"
    assert isinstance(int(tensorrt.NetworkDefinitionCreationFlag.STRONGLY_TYPED), int)


def test_trtexec_gets_no_precision_flags_and_strong_typing_on_10x():
    shapes = {"min": (1, 1, 8, 8), "opt": (1, 1, 8, 8), "max": (64, 1, 8, 8)}
    for version, strongly_typed in (("10.3.0", True), ("11.4.0", False), ("", True)):
        args = trtexec_args("trtexec", "m.onnx", "m.engine", "pixels", shapes, 1 << 30, "timing.cache", version)
        assert not {"--fp16", "--int8", "--best"} & set(args)  # removed in TensorRT 11
        assert ("--stronglyTyped" in args) is strongly_typed
        assert "--maxShapes=pixels:64x1x8x8" in args and "--memPoolSize=workspace:1024M" in args


def test_the_precision_of_an_engine_comes_from_its_onnx_file(quick_run, tmp_path):
    fp32, qdq = quick_run / "student.onnx", quick_run / "student.int8-static.onnx"
    fp16 = tensorrt_onnx("fp16", fp32, tmp_path / "student.fp16.onnx")
    assert [onnx_precision(p) for p in (fp32, fp16, qdq)] == ["fp32", "fp16", "int8"]
    assert tensorrt_onnx("fp32", fp32, tmp_path / "unused.onnx") == fp32
    with pytest.raises(StageError, match="computes in fp32.*strongly typed"):
        build_engine(fp32, tmp_path / "student.fp16.engine", "fp16", "pixels", (1, 8, 8), max_batch=8)
    with pytest.raises(StageError, match="int32 tensor.*to_tensorrt_qdq"):  # the parser cannot take it as it is
        build_engine(qdq, tmp_path / "student.int8.engine", "int8", "pixels", (1, 8, 8), max_batch=8)


def _quantization_tensors(path):
    model = onnx.load(str(path))
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    return nodes, values


def test_symmetric_qdq_becomes_tensorrts_form_exactly(quick_run, tmp_path):
    """Static INT8 quantized for TensorRT (int8 activations, zero point 0) only has its int32 biases turned into
    the floats ONNX Runtime's DequantizeLinear computes: the rewritten file gives the same outputs."""
    from edgekd.quantize.ort_int8 import quantize_int8_static
    from edgekd.runtimes import get_runtime
    from edgekd.tasks.base import load_eval_split

    with np.load(quick_run / "data" / "calibration.npz") as data:  # inputs only: calibration has no labels
        calibration = data["pixels"]
    source, target = tmp_path / "student.int8-static.onnx", tmp_path / "student.int8.onnx"
    quantize_int8_static(quick_run / "student.onnx", source, "pixels", calibration, symmetric_activations=True)
    assert qdq_problem(source) and "int32" in qdq_problem(source)  # only the biases are in the way
    to_tensorrt_qdq(source, target)
    assert qdq_problem(target) is None
    nodes, values = _quantization_tensors(target)
    assert nodes and all(values[n.input[2]].dtype == np.int8 and not values[n.input[2]].any() for n in nodes)
    old_nodes, old_values = _quantization_tensors(source)
    for node in old_nodes:  # ONNX Runtime's int32 biases are now the floats its DequantizeLinear computed
        if node.input[0] in old_values and old_values[node.input[0]].dtype == np.int32:
            expected = old_values[node.input[0]] * old_values[node.input[1]]
            np.testing.assert_allclose(values[node.output[0]], expected, rtol=1e-6)
    inputs, labels = load_eval_split(quick_run / "data" / "test.npz", "pixels")
    ort = get_runtime("onnxruntime")
    quantized, rewritten = ort.load(source, 1)(inputs), ort.load(target, 1)(inputs)
    np.testing.assert_allclose(rewritten, quantized, atol=1e-5)
    fp32 = ort.load(quick_run / "student.onnx", 1)(inputs)
    assert (rewritten.argmax(1) == labels).mean() >= (fp32.argmax(1) == labels).mean() - 0.02


def test_uint8_qdq_is_refused_with_the_fix(quick_run, tmp_path):
    """A host-only run quantizes activations as uint8 with zero points: TensorRT cannot read that, and re-scaling
    calibrated ranges would cost accuracy silently, so the build says how to quantize for TensorRT instead."""
    with pytest.raises(StageError, match="zero point 0.*int8-symmetric"):
        to_tensorrt_qdq(quick_run / "student.int8-static.onnx", tmp_path / "student.int8.onnx")
    assert not (tmp_path / "student.int8.onnx").exists()
