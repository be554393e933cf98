"""The interface apps feed a Hugging Face encoder: named inputs with the mask, dynamic batch AND sequence, the
output named for what it is; parity at shapes the export did not trace."""

import numpy as np
import onnx
import pytest
import torch

pytest.importorskip("transformers", reason="needs the hf extra: pip install \"edgekd[hf]\"")

from edgekd.export.onnx import check_shape_parity, export_onnx, onnx_interface, parity_shapes  # noqa: E402
from edgekd.measure.graph import count_macs  # noqa: E402
from edgekd.models.hf import load_hf_encoder  # noqa: E402
from edgekd.runtimes import get_runtime  # noqa: E402
from tests.tiny_hf import make_tiny_bert  # noqa: E402

NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def token_inputs(batch: int, length: int, real: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    """Right-padded token batches as a tokenizer makes them: [CLS] words [SEP] then [PAD] (id 0)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((batch, length), np.int64)
    for i in range(batch):
        n = real[i % len(real)]
        ids[i, :n] = np.r_[2, rng.integers(5, 25, n - 2), 3]
    return {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64), "token_type_ids": np.zeros_like(ids)}


@pytest.fixture(scope="module", params=["logits", "embedding"])
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"iface-{request.param}")
    bert = make_tiny_bert(root / "bert", layers=2, output=request.param)
    model = load_hf_encoder(bert, request.param, 2, 0).eval()
    inputs = token_inputs(9, 12, [4, 7, 12, 9])
    path = root / "student.onnx"
    export_onnx(model, inputs, "input_ids", path, 18)
    return model, path, inputs


def test_inputs_outputs_and_dynamic_axes_are_the_apps(exported):
    model, path, _ = exported
    interface = onnx_interface(path)
    assert [i["name"] for i in interface["inputs"]] == NAMES
    assert all(i["shape"] == ["batch", "sequence"] for i in interface["inputs"])
    expected = "logits" if model.output == "logits" else "sentence_embedding"
    assert [o["name"] for o in interface["outputs"]] == [expected]
    onnx.checker.check_model(str(path))
    cost = count_macs(path)  # counted at the longest sequence exported (12), not at a dynamic axis pinned to 1
    assert cost.uncounted_nodes == 0 and cost.macs >= 2 * 12 * 4 * 32 * 32  # the Q, K, V, O projections alone


def test_parity_at_shapes_the_export_did_not_trace(exported):
    model, path, inputs = exported
    assert parity_shapes(inputs) == [(1, 4), (7, 12)]  # the shortest text alone; 7 at the longest
    results = check_shape_parity(model, get_runtime("onnxruntime").load(path, 1), inputs, 1e-4)
    assert [(r["batch"], r["sequence"]) for r in results] == [(1, 4), (7, 12)]
    assert all(r["passed"] for r in results), results


def test_runs_longer_than_exported_and_the_mask_matters(exported):
    model, path, _ = exported
    runner = get_runtime("onnxruntime").load(path, 1)
    longer = token_inputs(3, 20, [20, 15, 6], seed=1)  # exported at 12
    with torch.inference_mode():
        expected = model(**{k: torch.from_numpy(v) for k, v in longer.items()}).numpy()
    masked_diff = np.abs(runner(longer) - expected).max()
    assert masked_diff < 1e-4
    unmasked = {**longer, "attention_mask": np.ones_like(longer["attention_mask"])}
    # the mask is used: attending to the padding of the 6-token text moves its output far beyond the parity error
    assert np.abs(runner(unmasked)[2] - expected[2]).max() > 100 * max(masked_diff, 1e-7)


def test_a_padded_text_gives_what_the_same_text_unpadded_gives(exported):
    """Dynamic sequence is only useful if trimming the padding leaves the answer unchanged."""
    _, path, inputs = exported
    runner = get_runtime("onnxruntime").load(path, 1)
    one = {k: v[:1] for k, v in inputs.items()}  # 4 real tokens, padded to 12
    trimmed = {k: v[:, :4] for k, v in one.items()}
    np.testing.assert_allclose(runner(trimmed), runner(one), atol=1e-5)


def test_loading_a_model_prints_nothing(tmp_path, capfd):
    """transformers' "Loading weights" progress bar and load reports stay off the terminal (edgekd's progress
    lines are the only ones a run prints)."""
    bert = make_tiny_bert(tmp_path / "bert", layers=2, output="embedding")
    capfd.readouterr()
    load_hf_encoder(bert, "embedding", 0, 0)
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
