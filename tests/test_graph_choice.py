"""The ONNX Runtime graph is chosen by measurement, in real sessions: the faster candidate wins, a candidate whose
outputs drift never ships, and the session setting travels in the shipped file."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("transformers", reason="needs the hf extra: pip install \"edgekd[hf]\"")

from edgekd.export.graph_choice import (  # noqa: E402
    SKIP_LAYER_NORM,
    SWITCH_MARGIN,
    GraphCandidate,
    choose_graph,
    decide,
    ship_choice,
    transformer_candidates,
)
from edgekd.export.onnx import export_onnx  # noqa: E402
from edgekd.models.hf import load_hf_encoder  # noqa: E402
from edgekd.runtimes import get_runtime  # noqa: E402
from edgekd.runtimes.ort_session import disabled_optimizers  # noqa: E402
from tests.test_hf_interface import token_inputs  # noqa: E402
from tests.tiny_hf import make_tiny_bert  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("graphs")
    model = load_hf_encoder(make_tiny_bert(root / "bert", layers=2), "logits", 2, 0).eval()
    inputs = token_inputs(8, 12, [5, 12, 9])
    path = root / "student.onnx"
    export_onnx(model, inputs, "input_ids", path, 18)
    return path, inputs


def with_extra_output_work(source, target, offset=0.0, sin_steps=0):
    """The same model plus `sin_steps` Sin ops over a (batch, sequence, 4096) tensor from the mask, multiplied
    by 0 and added to the logits (costly, no effect), and `offset` added to the logits (wrong outputs)."""
    model = onnx.load(str(source))
    graph = model.graph
    out = graph.output[0].name
    producer = next(node for node in graph.node if out in node.output)
    producer.output[list(producer.output).index(out)] = "logits_raw"
    nodes = [helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask_3d"]),
             helper.make_node("Expand", ["mask_3d", "wide"], ["work_0"])]  # fmt: skip
    current = "work_0"
    for i in range(sin_steps):
        nodes.append(helper.make_node("Sin", [current], [f"work_{i + 1}"]))
        current = f"work_{i + 1}"
    nodes += [helper.make_node("ReduceSum", [current, "axes12"], ["work_sum"], keepdims=0),
              helper.make_node("Mul", ["work_sum", "zero"], ["work_zero"]),
              helper.make_node("Unsqueeze", ["work_zero", "axis1"], ["work_col"]),
              helper.make_node("Add", ["logits_raw", "work_col"], ["logits_off"]),
              helper.make_node("Add", ["logits_off", "offset"], [out])]  # fmt: skip
    graph.node.extend(nodes)
    graph.initializer.extend([
        numpy_helper.from_array(np.array([2], np.int64), "axis2"), numpy_helper.from_array(np.array([1], np.int64),
        "axis1"), numpy_helper.from_array(np.array([1, 1, 4096], np.int64), "wide"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes12"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(offset, np.float32), "offset")])  # fmt: skip
    onnx.save(model, str(target))
    return target


def test_the_faster_candidate_wins_whatever_its_place(exported, tmp_path):
    path, inputs = exported
    fast = GraphCandidate("fast", with_extra_output_work(path, tmp_path / "fast.onnx"))
    slow = GraphCandidate("slow", with_extra_output_work(path, tmp_path / "slow.onnx", sin_steps=40))
    for candidates in ([slow, fast], [fast, slow]):
        choice = choose_graph(candidates, inputs, "input_ids", threads=1, atol=1e-4, rounds=3, runs=8)
        assert choice.chosen.name == "fast", choice.figures
        assert choice.figures["slow"]["passed"] and choice.figures["slow"]["p50_ms"] > choice.figures["fast"]["p50_ms"]
    assert choice.figures["slow"]["ratio"] > 1.0


def test_the_exported_graph_stays_unless_another_is_faster_beyond_the_margin(exported, tmp_path):
    path, inputs = exported
    a, b, c = (GraphCandidate(name, path) for name in ("as-exported", "b", "c"))
    figures = {"as-exported": {"ratio": 1.0, "passed": True}, "b": {"ratio": 1 - SWITCH_MARGIN / 2, "passed": True},
               "c": {"ratio": 0.5, "passed": False}}  # fmt: skip
    assert decide([a, b, c], figures) is a  # b is within the noise margin; c is fast but its outputs differ
    figures["b"]["ratio"] = 1 - 2 * SWITCH_MARGIN
    assert decide([a, b, c], figures) is b
    same = choose_graph([a, GraphCandidate("same", path)], inputs, "input_ids", threads=1, atol=1e-4, rounds=5,
                        runs=5)  # fmt: skip
    assert same.figures["same"]["max_abs_diff"] == 0.0 and same.figures["same"]["passed"]
    low, high = same.figures["same"]["ratio_range"]  # paired per-round ratios of one graph against itself
    assert low <= same.figures["same"]["ratio"] <= high and 0.8 < same.figures["same"]["ratio"] < 1.25


def test_a_candidate_whose_outputs_drift_never_ships(exported, tmp_path):
    path, inputs = exported
    exact = GraphCandidate("exact", with_extra_output_work(path, tmp_path / "exact.onnx", sin_steps=40))
    wrong = GraphCandidate("wrong", with_extra_output_work(path, tmp_path / "wrong.onnx", offset=0.5))  # faster
    choice = choose_graph([exact, wrong], inputs, "input_ids", threads=1, atol=1e-4, rounds=2, runs=5)
    assert choice.chosen.name == "exact"
    assert not choice.figures["wrong"]["passed"] and choice.figures["wrong"]["max_abs_diff"] == pytest.approx(0.5)


def test_quantized_candidates_are_judged_by_cosine_to_the_fp32_outputs(exported, tmp_path):
    path, inputs = exported
    exact = GraphCandidate("exact", with_extra_output_work(path, tmp_path / "exact.onnx", sin_steps=40))
    worse = GraphCandidate("worse", with_extra_output_work(path, tmp_path / "worse.onnx", offset=0.5))  # faster
    fp32 = get_runtime("onnxruntime").load(path, 1)(inputs)
    choice = choose_graph([exact, worse], inputs, "input_ids", threads=1, atol=1e-3, rounds=2, runs=5,
                          fidelity_to=fp32)  # fmt: skip
    assert choice.chosen.name == "exact", choice.figures
    assert choice.figures["exact"]["cosine_to_fp32"] > choice.figures["worse"]["cosine_to_fp32"]
    assert not choice.figures["worse"]["passed"] and choice.figures["worse"]["cosine_lost"] > 1e-3
    assert choice.figures["worse"]["ratio"] < 1  # faster, and still not shipped


def test_transformer_candidates_match_and_the_setting_travels(exported, tmp_path):
    path, inputs = exported
    candidates = transformer_candidates(path, tmp_path, num_heads=4, hidden_size=32)
    names = [c.name for c in candidates]
    assert names[:2] == ["as-exported", "as-exported/skip-layernorm-fusion-off"]
    assert "ort-transformer-optimizer" in names  # ORT's optimizer ran on the exported graph
    choice = choose_graph(candidates, inputs, "input_ids", threads=1, atol=1e-4, rounds=2, runs=5)
    assert all(f["passed"] for f in choice.figures.values()), choice.figures
    assert choice.figures["as-exported"]["ratio"] == 1.0
    shipped = tmp_path / "student.ort.onnx"
    ship_choice(choice, shipped)
    assert disabled_optimizers(shipped) == list(choice.chosen.disabled_optimizers)
    forced = GraphCandidate("off", path, (SKIP_LAYER_NORM,))
    ship_choice(choose_graph([forced], inputs, "input_ids", 1, 1e-4, rounds=1, runs=2), shipped)
    assert disabled_optimizers(shipped) == [SKIP_LAYER_NORM]  # edgekd's ORT runtime reads it back
    runner = get_runtime("onnxruntime").load(shipped, 1)
    np.testing.assert_allclose(runner(inputs), get_runtime("onnxruntime").load(path, 1)(inputs), atol=1e-5)
