"""Roofline estimates: FLOPs and bytes counted from the graph, and the bound on the right roof."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.targets.roofline import roofline_cost, roofline_estimate


def _save(tmp_path, nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def test_conv_and_gemm_flops_are_counted_exactly(tmp_path):
    w = np.zeros((4, 1, 3, 3), np.float32)  # 4 filters over 1 channel: 9 MACs per output element
    fc = np.zeros((64, 10), np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),  # -> [N, 4, 4, 4]
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),  # -> [N, 64]
        helper.make_node("Gemm", ["f", "fc"], ["y"]),  # -> [N, 10]
    ]
    path = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], [("w", w), ("fc", fc)])
    cost = roofline_cost(path)
    conv, gemm = 2 * 64 * 9, 2 * 10 * 64  # elementwise ops are not counted (see edgekd.measure.graph)
    assert cost.flops == conv + gemm
    assert cost.weight_count == w.size + fc.size
    assert cost.io_bytes == (16 + 10) * 4  # batch 1 input and output, fp32
    assert cost.bytes_at("int8") == w.size + fc.size + cost.io_bytes
    assert cost.bytes_at("fp16") == 2 * (w.size + fc.size) + cost.io_bytes


def test_bound_sits_on_the_slower_roof_and_needs_both_figures(tmp_path):
    from edgekd.targets.roofline import RooflineCost

    cost = RooflineCost(flops=2_000_000, weight_count=1000, io_bytes=0)
    compute = roofline_estimate(cost, "a", "t", "r", "fp32", peak_ops_per_s=1e9, bandwidth_bytes_per_s=1e12)
    assert compute.bound == "compute" and compute.latency_ms_lower_bound == pytest.approx(2.0)
    memory = roofline_estimate(cost, "a", "t", "r", "fp32", peak_ops_per_s=1e15, bandwidth_bytes_per_s=4e6)
    assert memory.bound == "memory" and memory.latency_ms_lower_bound == pytest.approx(1.0)
    assert memory.to_dict()["estimate"] is True and "not a measurement" in memory.basis
    assert roofline_estimate(cost, "a", "t", "r", "fp16", 0.0, 1e9) is None
