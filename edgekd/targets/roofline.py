"""Roofline estimates for targets not at hand: a lower bound on batch-1 latency from the ONNX graph.

FLOPs are 2 x the multiply-accumulates `edgekd.measure.graph.count_macs` counts (Conv, MatMul, Gemm and their
integer forms, at batch 1); bytes are the weights at the artifact's precision plus the model's input and
output, which every inference must move at least once. The bound is max(FLOPs / peak compute, bytes / memory
bandwidth): a real run is never faster, and usually several times slower (kernel launch, cache misses, unfused
ops). Estimates are labelled and kept apart from measurements.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from edgekd.measure.graph import count_macs, pinned_dims

BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class RooflineCost:
    """What a roofline needs of a model: work and the bytes it must move, at batch 1."""

    flops: int
    weight_count: int  # elements of the float initializers (the weights)
    io_bytes: int  # input + output at batch 1, in their own dtypes

    def bytes_at(self, precision: str) -> int:
        return self.weight_count * BYTES_PER_WEIGHT[precision] + self.io_bytes


def _io_bytes(value: onnx.ValueInfoProto, pinned: dict[str, int]) -> int:
    """Bytes of one graph input or output at batch 1 (the leading dynamic axis counted as 1, a sequence axis at
    its pinned length)."""
    dims = [d.dim_value if d.HasField("dim_value") else pinned.get(d.dim_param, 1)
            for d in value.type.tensor_type.shape.dim]  # fmt: skip
    return math.prod(dims) * onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).itemsize


def roofline_cost(onnx_path: Path) -> RooflineCost:
    """FLOPs, weight count and I/O bytes of the (fp32) ONNX model at batch 1."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    weights = sum(math.prod(init.dims) for init in model.graph.initializer if init.data_type in float_types)
    initializer_names = {init.name for init in model.graph.initializer}
    pinned = pinned_dims(model)
    io_bytes = sum(_io_bytes(v, pinned) for v in [*model.graph.input, *model.graph.output]
                   if v.name not in initializer_names)  # fmt: skip
    return RooflineCost(flops=count_macs(onnx_path).flops, weight_count=int(weights), io_bytes=int(io_bytes))


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
    cost: RooflineCost, artifact: str, target: str, runtime: str, precision: str, peak_ops_per_s: float,
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
