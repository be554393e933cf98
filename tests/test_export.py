"""ONNX export: dynamic batch, checker, and a parity check that can fail."""

import numpy as np
import onnx
import torch

from edgekd.export.onnx import check_parity, export_onnx
from edgekd.measure import predict
from edgekd.models import build_model
from edgekd.runtimes import get_runtime


def test_export_has_dynamic_batch_and_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = build_model("digits-tiny", 10).eval()
    inputs = np.random.default_rng(0).random((37, 1, 8, 8), dtype=np.float32)
    path = tmp_path / "m.onnx"
    export_onnx(model, inputs, "pixels", path, opset=18)

    graph_input = onnx.load(str(path)).graph.input[0]
    assert graph_input.name == "pixels"
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed size

    onnx_logits = predict(get_runtime("onnxruntime").load(path, 1), inputs, batch_size=16)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(inputs)).numpy()
    parity = check_parity(torch_logits, onnx_logits, atol=1e-4)
    assert parity.passed and parity.samples == 37
    assert parity.max_abs_diff < 1e-4


def test_parity_reports_a_real_mismatch():
    reference = np.zeros((4, 10), np.float32)
    drifted = reference.copy()
    drifted[2, 3] = 0.01
    parity = check_parity(reference, drifted, atol=1e-4)
    assert not parity.passed
    assert parity.max_abs_diff == np.float32(0.01)
