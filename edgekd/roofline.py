"""Roofline estimates for targets not at hand: a lower bound on batch-1 latency from the ONNX graph.

FLOPs are counted per node at batch 1 (Conv, MatMul and Gemm as 2 x multiply-accumulates; every other node
as one operation per output element); bytes are the weights at the artifact's precision plus the model's
input and output, which every inference must move at least once. The bound is
max(FLOPs / peak compute, bytes / memory bandwidth): a real run is never faster, and usually several times
slower (kernel launch, cache misses, unfused ops). Estimates are labelled and kept apart from measurements.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx
from onnx import numpy_helper, shape_inference

BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}
MAC_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class GraphCost:
    flops: int  # at batch 1
    weight_count: int  # elements of the float initializers (the weights)
    io_bytes: int  # input + output at batch 1, in their own dtypes

    def bytes_at(self, precision: str) -> int:
        return self.weight_count * BYTES_PER_WEIGHT[precision] + self.io_bytes


def _dims(value_info: onnx.ValueInfoProto) -> list[int] | None:
    shape = value_info.type.tensor_type.shape
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in shape.dim]
    return dims if dims and all(d > 0 for d in dims) else None


def _fix_batch(model: onnx.ModelProto) -> None:
    """Set every symbolic leading axis of the inputs and outputs to 1, so shapes infer to numbers."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1


def graph_cost(onnx_path: Path) -> GraphCost:
    """FLOPs, weight count and I/O bytes of the (fp32) ONNX model at batch 1."""
    model = onnx.load(str(onnx_path))
    _fix_batch(model)
    model = shape_inference.infer_shapes(model)
    graph = model.graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    shapes: dict[str, list[int]] = {name: list(arr.shape) for name, arr in initializers.items()}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = _dims(value)
        if dims:
            shapes[value.name] = dims
    flops = 0
    for node in graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if out is None:
            continue
        out_elements = math.prod(out)
        if node.op_type == "Conv" and node.input[1] in shapes:
            flops += 2 * out_elements * math.prod(shapes[node.input[1]][1:])
        elif node.op_type in ("MatMul", "Gemm") and node.input[0] in shapes:
            a = shapes[node.input[0]]
            trans_a = any(att.name == "transA" and att.i for att in node.attribute)
            flops += 2 * out_elements * (a[-2] if trans_a and len(a) >= 2 else a[-1])
        else:
            flops += out_elements
    weight_count = sum(arr.size for arr in initializers.values() if arr.dtype.kind == "f")
    io_bytes = 0
    for value in [*graph.input, *graph.output]:
        dims = shapes.get(value.name)
        if dims and value.name not in initializers:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).itemsize
            io_bytes += math.prod(dims) * itemsize
    return GraphCost(flops=int(flops), weight_count=int(weight_count), io_bytes=int(io_bytes))


@dataclass(frozen=True)
class Estimate:
    artifact: str
    target: str
    runtime: str
    precision: str
    latency_ms_lower_bound: float
    bound: str  # "compute" or "memory": which roof the bound sits on
    flops: int
    bytes: int
    peak_ops_per_s: float
    memory_bandwidth_bytes_per_s: float
    basis: str
    estimate: bool = True  # always: these are never measurements

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def roofline_estimate(
    cost: GraphCost, artifact: str, target: str, runtime: str, precision: str, peak_ops_per_s: float,
    bandwidth_bytes_per_s: float,
) -> Estimate | None:  # fmt: skip
    """The lower bound for one artifact on one profile; None when the profile lacks either figure."""
    if peak_ops_per_s <= 0 or bandwidth_bytes_per_s <= 0:
        return None
    moved = cost.bytes_at(precision)
    compute_s, memory_s = cost.flops / peak_ops_per_s, moved / bandwidth_bytes_per_s
    return Estimate(
        artifact=artifact,
        target=target,
        runtime=runtime,
        precision=precision,
        latency_ms_lower_bound=max(compute_s, memory_s) * 1e3,
        bound="compute" if compute_s >= memory_s else "memory",
        flops=cost.flops,
        bytes=moved,
        peak_ops_per_s=peak_ops_per_s,
        memory_bandwidth_bytes_per_s=bandwidth_bytes_per_s,
        basis="roofline lower bound at batch 1: max(FLOPs / peak, (weights + input + output bytes) / bandwidth) "
        "from the profile's figures; not a measurement",
    )
