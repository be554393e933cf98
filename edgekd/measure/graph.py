"""Static facts of an ONNX graph: multiply-accumulates counted per operator, and the files it occupies on disk.

MACs are counted at batch 1 after ONNX shape inference (dynamic dimensions pinned to 1; a token model's
sequence axis at the longest length it was exported for): Conv and its integer /
QLinear forms as N*Cout*Hout*Wout * Cin/groups * prod(kernel); Gemm, MatMul and their integer forms as
prod(output) * K. FLOPs = 2 * MACs. Elementwise operators, pooling and activations are not counted: on the
models edgekd ships they are a few percent at most, and counting them would pretend to a precision the
roofline estimates built on these figures do not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path

CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}  # op -> (input index, weight index)
MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1)}


@dataclass(frozen=True)
class GraphCost:
    macs: int
    counted_nodes: int
    uncounted_nodes: int  # nodes of a counted type whose shapes inference could not resolve

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, int]:
        return {"macs": self.macs, "flops": self.flops, "counted_nodes": self.counted_nodes,
                "uncounted_nodes": self.uncounted_nodes}  # fmt: skip


DIM_KEY_PREFIX = "edgekd.dim."  # model metadata: the value a named dynamic axis is counted at


def pinned_dims(model) -> dict[str, int]:
    """Named dynamic axes and the length they are counted at: a token model's `sequence` at the longest length
    it was exported for (its metadata, `edgekd.dim.sequence`); any other dynamic axis (batch) at 1."""
    return {p.key.removeprefix(DIM_KEY_PREFIX): int(p.value) for p in model.metadata_props
            if p.key.startswith(DIM_KEY_PREFIX) and p.value.isdigit()}  # fmt: skip


def _static_shapes(model) -> dict[str, list[int]]:
    """Every value's shape with dynamic dimensions of the graph inputs pinned (batch 1, `pinned_dims`)."""
    import onnx

    pinned = pinned_dims(model)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                length = pinned.get(dim.dim_param, 1)
                dim.ClearField("dim_param")
                dim.dim_value = length
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def count_macs(onnx_path: Path) -> GraphCost:
    """Multiply-accumulates of one inference at batch 1 (weights are not loaded: external data stays on disk)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    shapes = _static_shapes(model)
    macs = counted = uncounted = 0
    for node in model.graph.node:
        if node.op_type in CONV_OPS:
            _, w = CONV_OPS[node.op_type]
            weight, out = shapes.get(node.input[w]), shapes.get(node.output[0])
            if weight is None or out is None:
                uncounted += 1
                continue
            # weight is [Cout, Cin/groups, *kernel]: each output element needs Cin/groups * prod(kernel) MACs
            macs += prod(out) * prod(weight[1:])
        elif node.op_type in MATMUL_OPS:
            a_index, _ = MATMUL_OPS[node.op_type]
            a, out = shapes.get(node.input[a_index]), shapes.get(node.output[0])
            if a is None or out is None:
                uncounted += 1
                continue
            trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
            inner = a[-2] if trans_a and len(a) >= 2 else a[-1]
            macs += prod(out) * inner
        else:
            continue
        counted += 1
    return GraphCost(macs=macs, counted_nodes=counted, uncounted_nodes=uncounted)


def onnx_external_files(onnx_path: Path) -> list[Path]:
    """The external-data files an ONNX model refers to (weights stored beside the .onnx), each once. A location
    that leaves the model's directory is refused: a model file must not make edgekd read elsewhere."""
    import onnx

    from edgekd.errors import EdgekdError

    model = onnx.load(str(onnx_path), load_external_data=False)
    files: list[Path] = []
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), None)
        path = onnx_path.parent / location if location else None
        if path is not None and not path.resolve().is_relative_to(onnx_path.parent.resolve()):
            raise EdgekdError(f"{onnx_path.name}: tensor '{tensor.name}' keeps its data at '{location}', outside "
                              "the model's directory; refusing it (re-save the model with its data beside it)")
        if path is not None and path not in files:
            files.append(path)
    return files


def files_on_disk(main_files: list[Path], fmt: str) -> list[Path]:
    """An artifact's files including ONNX external data (which lives in files the .onnx only names), for an
    artifact whose format (`fmt`) is an ONNX graph."""
    from edgekd.runtimes import format_of  # here: the runtimes' modules import this one's constants

    files = list(main_files)
    if format_of(fmt).onnx_graph:
        for path in main_files:
            files += [f for f in onnx_external_files(path) if f not in files]
    return files
