"""Small real bundles for the gate's same-run comparison: an MLP of `layers` equal square layers as ONNX (and
its OpenVINO IR when asked), written through edgekd's own bundle writer, so one more layer is a known amount
more work (6 layers against 5: 20% more)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekd.build.artifacts import Artifact
from edgekd.bundle.files import write_bundle
from edgekd.fileio import sha256_json
from edgekd.measure.rows import TeacherReference
from edgekd.recipe import load_recipe

INPUT = "x"


def mlp_onnx(path: Path, layers: int, width: int, features: int = 64, classes: int = 10, seed: int = 0) -> None:
    """x[batch, features] -> `layers` x (MatMul width x width + Relu) -> logits[batch, classes]."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(width)
    weights = [numpy_helper.from_array((rng.standard_normal((features, width)) * 0.1).astype(np.float32), "w_in")]
    nodes = [helper.make_node("MatMul", [INPUT, "w_in"], ["h0"])]
    for i in range(layers):
        w = numpy_helper.from_array((rng.standard_normal((width, width)) * scale).astype(np.float32), f"w{i}")
        weights.append(w)
        nodes += [helper.make_node("MatMul", [f"h{i}", w.name], [f"m{i}"]),
                  helper.make_node("Relu", [f"m{i}"], [f"h{i + 1}"])]  # fmt: skip
    weights.append(numpy_helper.from_array((rng.standard_normal((width, classes)) * scale).astype(np.float32), "w_out"))
    nodes.append(helper.make_node("MatMul", [f"h{layers}", "w_out"], ["logits"]))
    graph = helper.make_graph(nodes, f"mlp{layers}", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT,
                              ["batch", features])], [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                              ["batch", classes])], weights)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def mlp_bundle(bundle_dir: Path, layers: int, width: int = 64, openvino: bool = False,
               name: str = "student-onnx-fp32") -> Path:  # fmt: skip
    """A verified bundle holding the MLP as `name` (and as `name`-ov, an OpenVINO IR, when `openvino`)."""
    work = bundle_dir.with_name(bundle_dir.name + ".src")
    work.mkdir(parents=True, exist_ok=True)
    mlp_onnx(work / "model.onnx", layers, width)
    files = {"model.onnx": work / "model.onnx"}
    artifacts = [Artifact(name, "student", "model.onnx", "onnx", "onnxruntime", "fp32", 0)]
    if openvino:
        from edgekd.runtimes.openvino_runtime import build_ir

        build_ir(work / "model.onnx", work / "model.xml")
        files |= {"model.xml": work / "model.xml", "model.bin": work / "model.bin"}
        artifacts.append(Artifact(f"{name}-ov", "student", "model.xml", "openvino-ir", "openvino", "fp32", 0))
    inputs = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    labels = np.zeros(8, np.int64)
    reference = TeacherReference(np.zeros((8, 10), np.float32), 1.0)
    recipe = load_recipe(None).to_dict()  # a bundle carries a complete recipe, checked on arrival
    manifest = {"run": bundle_dir.name, "recipe_hash": sha256_json(recipe), "recipe": recipe,
                "input": {"name": INPUT, "shape": ["batch", 64], "dtype": "float32"},
                "task": {"name": "mlp", "split": {}, "num_classes": 10, "eval_batch_size": 1},
                "teacher": {"architecture": "none", "accuracy": 1.0, "params": 0},  # zero logits, zero labels
                "student": {"architecture": "mlp", "params": 0},
                "artifacts": [a.to_dict() for a in artifacts]}  # fmt: skip
    write_bundle(bundle_dir, files, (inputs, labels, reference), inputs, manifest)
    return bundle_dir
