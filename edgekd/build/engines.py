"""The build stage: from the ONNX variants to what each selected profile runs (OpenVINO IRs, ORT-format
mobile models, TensorRT engines), plus the rows a run cannot measure here: proxies, skips and estimates.

One table (`ENGINE_SPECS`) says which artifact each (runtime, precision) of a profile needs and what it
is built from; the run on the training machine and `edgekd profile` on a device both plan from it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.build.artifacts import Artifact
from edgekd.errors import StageError
from edgekd.fileio import atomic_path
from edgekd.pipeline.layout import CALIBRATION_SAMPLES, FP16_ONNX, FP32_ONNX, MOBILE_CONFIG, QDQ_ONNX
from edgekd.quantize.calibration import check_calibration
from edgekd.quantize.ort_int8 import calibration_feeds, is_transformer_graph
from edgekd.report.model import Row
from edgekd.runtimes.openvino_runtime import build_int8_ir_nncf, build_ir
from edgekd.samples import load_inputs
from edgekd.targets.profiles import Profile, measurable_reason
from edgekd.targets.roofline import RooflineCost, roofline_estimate

X86_MACHINES = ("x86_64", "AMD64", "i686")


@dataclass(frozen=True)
class EngineSpec:
    """One buildable artifact: which profile runtime and precision ask for it, and what it is built from."""

    runtime: str  # the profile's runtime name
    precision: str
    artifact: str
    path: str  # relative to the directory the engines are built in
    format: str
    measured_by: str  # the registry runtime that loads it
    source: str  # ONNX file it is built from (relative to the run or bundle directory)
    built_on_device: bool = False  # True: engines tied to the GPU and TensorRT version, never built elsewhere
    # One of several ways to build the same artifact, picked by a recipe key (OpenVINO int8: "nncf" or "qdq");
    # "" when there is only one. "nncf" specs calibrate on the run's (or bundle's) data/calibration.npz.
    method: str = ""

    @property
    def is_source(self) -> bool:
        """True for an ONNX file the export / quantize stages made: run as it is, nothing to build."""
        return self.path == self.source


ENGINE_SPECS: tuple[EngineSpec, ...] = (
    EngineSpec("onnxruntime", "fp32", "student-onnx-fp32", FP32_ONNX, "onnx", "onnxruntime", FP32_ONNX),
    EngineSpec("onnxruntime", "fp16", "student-onnx-fp16", FP16_ONNX, "onnx", "onnxruntime", FP32_ONNX),
    EngineSpec("onnxruntime", "int8", "student-onnx-int8-static", QDQ_ONNX, "onnx", "onnxruntime", QDQ_ONNX),
    EngineSpec("openvino", "fp32", "student-openvino-fp32", "openvino/student.xml", "openvino-ir", "openvino",
               FP32_ONNX),
    EngineSpec("openvino", "fp16", "student-openvino-fp16", "openvino/student.fp16.xml", "openvino-ir", "openvino",
               FP32_ONNX),
    EngineSpec("openvino", "int8", "student-openvino-int8", "openvino/student.int8.xml", "openvino-ir", "openvino",
               FP32_ONNX, method="nncf"),
    EngineSpec("openvino", "int8", "student-openvino-int8", "openvino/student.int8.xml", "openvino-ir", "openvino",
               QDQ_ONNX, method="qdq"),
    EngineSpec("ort-mobile", "fp32", "student-ort-fp32", "mobile/student.ort", "ort", "onnxruntime", FP32_ONNX),
    EngineSpec("ort-mobile", "int8", "student-ort-int8", "mobile/student.int8-static.ort", "ort", "onnxruntime",
               QDQ_ONNX),
    EngineSpec("tensorrt", "fp32", "student-tensorrt-fp32", "tensorrt/student.fp32.engine", "tensorrt-engine",
               "tensorrt", FP32_ONNX, built_on_device=True),
    EngineSpec("tensorrt", "fp16", "student-tensorrt-fp16", "tensorrt/student.fp16.engine", "tensorrt-engine",
               "tensorrt", FP32_ONNX, built_on_device=True),
    EngineSpec("tensorrt", "int8", "student-tensorrt-int8", "tensorrt/student.int8.engine", "tensorrt-engine",
               "tensorrt", QDQ_ONNX, built_on_device=True),
)  # fmt: skip


def not_meaningful_here(spec: EngineSpec) -> str | None:
    """Why measuring `spec` on this machine would not measure what it claims, else None. ONNX Runtime's CPU
    provider has no fp16 kernels on x86 and silently computes fp16 graphs in fp32, so the fp16 ONNX file is
    built for the devices that run fp16 (Arm CPUs, GPUs), not measured on an x86 host."""
    if spec.runtime == "onnxruntime" and spec.precision == "fp16" and platform.machine() in X86_MACHINES:
        return "ONNX Runtime's CPU provider computes fp16 graphs in fp32 on x86: it would not measure fp16 here"
    return None


def specs_for(profile: Profile, available_sources: Iterable[str], openvino_int8: str = "nncf") -> list[EngineSpec]:
    """The artifacts `profile` asks for, limited to those whose ONNX source exists; the OpenVINO int8 IR built
    the way `openvino_int8` says ("nncf" needs only the fp32 model, "qdq" the static QDQ one)."""
    sources = set(available_sources)
    return [s for s in ENGINE_SPECS if s.runtime in profile.runtimes and s.precision in profile.precisions
            and s.source in sources and s.method in ("", openvino_int8)]  # fmt: skip


# The artifact each ONNX source file is, and what that file was made from: an artifact's `source` names a row,
# so the stage-by-stage drop can follow the chain.
SOURCE_ARTIFACTS = {FP32_ONNX: "student-onnx-fp32", QDQ_ONNX: "student-onnx-int8-static"}
MADE_FROM = {FP32_ONNX: "student", QDQ_ONNX: "student-onnx-fp32"}


def to_artifact(spec: EngineSpec, params: int) -> Artifact:
    quantization = "static" if spec.source == QDQ_ONNX or spec.method == "nncf" else None
    source = MADE_FROM[spec.source] if spec.is_source else SOURCE_ARTIFACTS[spec.source]
    return Artifact(spec.artifact, "student", spec.path, spec.format, spec.measured_by, spec.precision, params,
                    quantization=quantization, source=source)  # fmt: skip


def build_engine(spec: EngineSpec, source_dir: Path, out_dir: Path, profile: Profile, **device: Any) -> None:
    """Build one artifact from its ONNX source into `out_dir`: an OpenVINO IR, an ORT-format model, the fp16
    ONNX file, or a TensorRT engine (which needs `device`: input_name (one, or a list), sample_shape, max_batch,
    sequence_axis)."""
    source, target = source_dir / spec.source, out_dir / spec.path
    target.parent.mkdir(parents=True, exist_ok=True)
    precision = "f32" if profile.openvino.inference_precision == "f32" else "auto"
    if spec.format == "openvino-ir" and spec.method == "nncf":
        names = [device["input_name"]] if isinstance(device["input_name"], str) else list(device["input_name"])
        calibration = load_inputs(source_dir / CALIBRATION_SAMPLES, names)  # every input the graph takes
        check_calibration(source, calibration, names[0])
        build_int8_ir_nncf(source, target, calibration_feeds(calibration, names[0]),
                           is_transformer_graph(source), precision, device.get("log_path"))  # fmt: skip
    elif spec.format == "openvino-ir":
        build_ir(source, target, compress_to_fp16=spec.precision == "fp16", inference_precision=precision)
    elif spec.format == "ort":
        build_ort_format(source, target, out_dir / MOBILE_CONFIG, profile.mobile.optimization_style)
    elif spec.format == "onnx" and not spec.is_source:
        convert_to_fp16(source, target)
    elif spec.format == "tensorrt-engine":
        from edgekd.runtimes.tensorrt_runtime import build_engine as build_trt

        typed = tensorrt_onnx(spec.precision, source, target.with_suffix(".onnx"))
        build_trt(typed, target, spec.precision, device["input_name"], device["sample_shape"], device["max_batch"],
                  sequence_axis=device.get("sequence_axis", False))  # fmt: skip
    elif spec.format != "onnx":
        raise StageError(f"build: no builder for format '{spec.format}' ({spec.artifact})")


def convert_to_fp16(source: Path, target: Path) -> None:
    """fp16 weights and arithmetic with fp32 inputs and outputs (for GPUs, NNAPI and CoreML fp16 paths), with
    ONNX Runtime's converter; its inserted casts are sorted back into graph order so the checker passes."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True))
    model.topological_sort()
    with atomic_path(target) as tmp:
        onnx.save(model.model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)


def tensorrt_onnx(precision: str, source: Path, target: Path) -> Path:
    """The ONNX file a TensorRT engine of `precision` is built from. TensorRT builds strongly typed networks (the
    only kind in TensorRT 11), so the file carries the precision: fp16 from the fp16 conversion, int8 from the QDQ
    model in the Q/DQ form TensorRT reads, fp32 as it is. Written to `target` beside the engine."""
    if precision == "fp16":
        convert_to_fp16(source, target)
    elif precision == "int8":
        to_tensorrt_qdq(source, target)
    else:
        return source
    return target


def to_tensorrt_qdq(source: Path, target: Path) -> None:
    """The QDQ model in the form TensorRT's ONNX parser takes: its int32 biases behind a DequantizeLinear become
    the floats that DequantizeLinear computes (exact). Activations must already be int8 with zero point 0 (the
    parser refuses other zero points and misreads uint8): a model quantized otherwise is refused with the fix,
    because re-scaling its ranges after calibration would cost accuracy silently."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgekd.runtimes.tensorrt_runtime import qdq_problem

    model = onnx.load(str(source))
    graph = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept, folded = [], {}
    for node in graph.node:
        data = node.input[0] if node.op_type == "DequantizeLinear" else ""
        if data in values and values[data].dtype == np.int32:
            scale = values[node.input[1]]
            zero = values[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(1, np.int32)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [-1 if i == axis % values[data].ndim else 1 for i in range(values[data].ndim)]
            exact = (values[data].astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape)
            folded[node.output[0]] = exact.astype(scale.dtype)  # the float bias the DequantizeLinear computed
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in folded.items())
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    with atomic_path(target) as tmp:
        onnx.save(model, str(tmp))
        problem = qdq_problem(tmp)
        if problem:
            raise StageError(f"build: {source.name} cannot become a TensorRT engine: {problem}. TensorRT reads int8 "
                             "activations with zero point 0 only; re-run distill-and-export with a TensorRT profile "
                             "(-p jetson-orin-nano-8gb, ...) or quantize.activations = \"int8-symmetric\"")  # fmt: skip
        onnx.checker.check_model(str(tmp), full_check=True)


def build_ort_format(source: Path, target: Path, config_path: Path, optimization_style: str) -> None:
    """Convert an ONNX model to ORT format for ONNX Runtime Mobile, and merge the operators it needs into
    `config_path` (what a reduced-size ORT build for the app is compiled with)."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # logs each config it writes
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        work_dir = Path(work)
        shutil.copyfile(source, work_dir / f"{target.stem}.onnx")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            convert_onnx_models_to_ort(work_dir / f"{target.stem}.onnx", work_dir / "out",
                                       [OptimizationStyle[optimization_style]], target_platform="arm")  # fmt: skip
        converted = work_dir / "out" / f"{target.stem}.ort"
        if not converted.is_file():
            raise StageError(f"build: ORT-format conversion of {source.name} produced no {converted.name}")
        with atomic_path(target) as tmp:
            shutil.copyfile(converted, tmp)
        operators = next((work_dir / "out").glob("*required_operators*.config")).read_text(encoding="utf-8")
    merge_operator_config(config_path, operators)


def merge_operator_config(config_path: Path, new_text: str) -> None:
    """Union of `domain;opset;op,op` lines, so one config covers every mobile model of the run."""
    table: dict[tuple[str, str], set[str]] = {}
    texts = [config_path.read_text(encoding="utf-8")] if config_path.is_file() else []
    for line in "\n".join([*texts, new_text]).splitlines():
        if line.strip() and not line.startswith("#"):
            domain, opset, ops = line.strip().split(";")
            table.setdefault((domain, opset), set()).update(ops.split(","))
    lines = ["# Operators the ORT-format models need: build ONNX Runtime Mobile with",
             "#   --include_ops_by_config required_operators.config"]  # fmt: skip
    lines += [f"{d};{o};{','.join(sorted(ops))}" for (d, o), ops in sorted(table.items())]
    with atomic_path(config_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def mobile_settings(profile: Profile) -> dict[str, Any]:
    """What the app has to configure, recorded beside the ORT-format model and in the row."""
    return {"execution_providers": list(profile.mobile.execution_providers),
            "optimization_style": profile.mobile.optimization_style, "operators_config": MOBILE_CONFIG}  # fmt: skip


def proxy_note(profile: Profile) -> str:
    return (f"measured on this host through ONNX Runtime (CPU provider) as a stand-in for {profile.name}; "
            f"the app registers {', '.join(profile.mobile.execution_providers)}")  # fmt: skip


def skipped_row(artifact: Artifact, target: str, reason: str, threads: int, batch_size: int) -> Row:
    return Row.of(artifact, target, threads, batch_size=batch_size, status="skipped", reason=reason)


def device_only_reason(profile: Profile, bundle: Path) -> str:
    """Why a row of a non-host profile is not measured in the run, and the command that measures it."""
    command = f"`edgekd profile {bundle} -p {profile.name}`"
    why_not = measurable_reason(profile)
    if why_not is None:
        return f"measured by {command}; this machine qualifies, so it can run here"
    return f"measured on the device by {command} ({why_not})"


def estimates_for(profile: Profile, specs: list[EngineSpec], cost: RooflineCost) -> list[dict[str, Any]]:
    """Roofline lower bounds for each artifact `profile` asks for (labelled estimates, never rows)."""
    result = []
    for spec in specs:
        estimate = roofline_estimate(cost, spec.artifact, profile.name, spec.runtime, spec.precision,
                                     profile.peak_ops_per_s(spec.precision), profile.memory_bandwidth_gbps * 1e9)
        if estimate is not None:
            result.append(estimate.to_dict())
    return result
