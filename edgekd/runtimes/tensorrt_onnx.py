"""The ONNX file a TensorRT engine is built from. TensorRT builds strongly typed networks (the only kind in
TensorRT 11), so the file carries the precision: fp16 from the fp16 conversion, int8 from the QDQ model in the
Q/DQ form TensorRT's parser reads (int8, zero point 0, no int32 biases), fp32 as it is."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import StageError
from edgekd.fileio import atomic_path
from edgekd.runtimes.onnxruntime_runtime import convert_to_fp16


def onnx_precision(onnx_path: Path) -> str:
    """What a strongly typed TensorRT network of this ONNX file computes in: int8 with Q/DQ nodes, fp16 with fp16
    weights, else fp32 (TensorRT follows the file's types, it picks no lower precision by itself)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node):
        return "int8"
    if any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in graph.initializer):
        return "fp16"
    return "fp32"


def qdq_problem(onnx_path: Path) -> str | None:
    """Why TensorRT's ONNX parser would refuse or misread this Q/DQ model, else None. It takes int8 with zero point
    0 only: it refuses other zero points, and it reads uint8 as int8 with a warning, clipping the upper half."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        source = tensors.get(node.input[0])
        if source is not None and source.data_type == onnx.TensorProto.INT32:
            return f"{node.op_type} '{node.name}' dequantizes an int32 tensor"
        zero = tensors.get(node.input[2]) if len(node.input) > 2 else None
        if zero is None or zero.data_type != onnx.TensorProto.INT8 or onnx.numpy_helper.to_array(zero).any():
            return f"{node.op_type} '{node.name}' is not int8 with zero point 0"
    return None


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
