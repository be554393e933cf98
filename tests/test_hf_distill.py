"""Hugging Face encoders from a local directory: a tiny BERT made here (random init, from a config) is
distilled into a 2-layer shrunk student, exported to ONNX and measured in the report."""

import copy
import json

import numpy as np
import onnx
import pytest
import torch

pytest.importorskip("transformers", reason="needs the hf extra: pip install \"edgekd[hf]\"")

from edgekd.distill import LossSpec, TrainConfig, fit  # noqa: E402
from edgekd.export.graph_choice import SWITCH_MARGIN  # noqa: E402
from edgekd.models.hf import encoder_from_config, load_hf_encoder, shrink_encoder, shrunk_layers  # noqa: E402
from edgekd.report.document import load_report  # noqa: E402
from edgekd.runtimes.ort_session import disabled_optimizers  # noqa: E402
from tests.tiny_hf import make_text_file, make_tiny_bert, run_recipe, text_recipe  # noqa: E402


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="module")
def hf_run(bert_dir, tmp_path_factory):
    """`edgekd distill-and-export` on a text recipe: tiny BERT teacher -> 2-layer shrunk student."""
    root = tmp_path_factory.mktemp("hf-run")
    data = make_text_file(root / "reviews.jsonl", samples=96, unlabelled=16)
    recipe = root / "tiny-text.toml"
    recipe.write_text(text_recipe("tiny-text", data, bert_dir,
                                  [("hinton-kd", 1.0), ("hidden-state-mse", 0.5), ("attention-kl", 0.5)], """
[quantize]
variants = ["int8-dynamic"]
calibration_samples = 16
[build]
openvino = false
[measure]
warmup_runs = 1
min_runs = 5
min_seconds = 0.02
"""))
    return run_recipe(recipe, root / "export")


def test_shrunk_student_appears_in_the_report_with_its_fidelity(hf_run):
    report = load_report(hf_run)
    rows = {row["artifact"]: row for row in report["rows"]}
    for name in ("teacher", "student", "student-onnx-fp32", "student-onnx-int8-dynamic"):
        assert rows[name]["status"] == "ok", (name, rows[name]["reason"])
    assert report["task"]["split"]["unlabelled_train"] == 16  # transfer data: taught by the teacher alone
    distill = report["stages"]["distill"]
    assert distill["student"]["origin"] == "teacher shrunk"
    choice = distill["student"]["layer_choice"]  # measured: the candidate closest to the teacher at init
    best = max(choice["candidates"], key=lambda c: (c["top1_agreement"], -c["mean_kl"]))
    assert distill["student"]["teacher_layers"] == choice["layers"] == best["layers"] and best["chosen"]
    assert len(choice["candidates"]) >= 3 and all(len(c["layers"]) == 2 for c in choice["candidates"])
    assert distill["defaults"]["student_kind"] == "initialised from the teacher"  # lr etc. set by the recipe
    curve = distill["kd"]["curve"]
    assert [p["epoch"] for p in curve] == [0, 1, 2, 3] and distill["kd"]["initial_val"] == curve[0]["val"]
    assert 0.0 < distill["fidelity"]["cosine"] <= 1.0
    assert {loss["name"] for loss in distill["losses"]} == {"hinton-kd", "hidden-state-mse", "attention-kl"}
    assert all(np.isfinite(loss["final"]) for loss in distill["losses"])
    assert rows["student"]["params"] < rows["teacher"]["params"]


def test_run_directory_carries_tokenizer_and_the_app_interface(hf_run):
    config = json.loads((hf_run / "student-hf" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    assert (hf_run / "student-hf" / "tokenizer.json").is_file() or (hf_run / "student-hf" / "vocab.txt").is_file()
    model = onnx.load(str(hf_run / "student.onnx"))
    names = ["input_ids", "attention_mask", "token_type_ids"]  # what the tokenizer gives an app
    assert [i.name for i in model.graph.input] == names
    assert all([d.dim_param for d in i.type.tensor_type.shape.dim] == ["batch", "sequence"] for i in model.graph.input)
    assert [o.name for o in model.graph.output] == ["logits"]
    parity = report_parity(hf_run)
    assert parity["passed"] and [(s["batch"], s["sequence"]) for s in parity["shapes"]] == [(1, 7), (7, 12)]
    with np.load(hf_run / "bundle" / "data" / "eval.npz") as data:  # every runtime on a device feeds the mask
        assert set(names) <= set(data.files) and (data["attention_mask"].sum(axis=1) == 7).all()
    row = next(r for r in load_report(hf_run)["rows"] if r["artifact"] == "student-onnx-fp32")
    assert row["latency_real_lengths_ms"]["lengths"] == {"min": 7, "p50": 7.0, "max": 7, "mean": 7.0, "samples": 16,
                                                         "padded_to": 12}  # fmt: skip
    assert row["p50_ms_real_lengths"] > 0
    [recommended] = load_report(hf_run)["recommendations"]  # ranked where apps run it: at the texts' own lengths
    assert recommended["latency_basis"] == "real-lengths" and recommended["lengths"]["padded_to"] == 12


def test_the_ort_graph_is_chosen_by_measurement_and_engines_keep_the_standard_graph(hf_run):
    graph = load_report(hf_run)["stages"]["graph"]
    assert graph["path"] == "student.ort.onnx" and graph["chosen"] in graph["candidates"]
    assert graph["candidates"]["as-exported"]["ratio"] == 1.0 and graph["candidates"][graph["chosen"]]["passed"]
    for choice in (graph, graph["int8_dynamic"]):  # the paired-ratio rule, for the fp32 and the INT8 graph
        others = [f["ratio"] for name, f in choice["candidates"].items() if f["passed"] and name != "as-exported"]
        if choice["chosen"] == "as-exported":
            assert min(others) >= 1 - SWITCH_MARGIN, choice["candidates"]
        else:
            assert choice["candidates"][choice["chosen"]]["ratio"] == min(others) < 1 - SWITCH_MARGIN
    int8 = graph["int8_dynamic"]
    assert int8["path"] == "student.int8-dynamic.ort.onnx" and set(int8["candidates"]) == set(graph["candidates"])
    assert all(0 < f["cosine_to_fp32"] <= 1 and f["passed"] == (f["cosine_lost"] <= 1e-3)
               for f in int8["candidates"].values())  # fmt: skip
    assert disabled_optimizers(hf_run / int8["path"]) == int8["candidates"][int8["chosen"]]["disabled_optimizers"]
    rows = {r["artifact"]: r for r in load_report(hf_run)["rows"]}
    assert rows["student-onnx-fp32"]["path"] == "student.ort.onnx"
    assert rows["student-onnx-int8-dynamic"]["path"] == "student.int8-dynamic.ort.onnx"
    standard_int8 = onnx.load(str(hf_run / "student.int8-dynamic.onnx"))  # what device builds read, unfused
    assert not any(n.domain == "com.microsoft" and n.op_type.startswith("Skip") for n in standard_int8.graph.node)
    assert (hf_run / "bundle" / "student.onnx").is_file() and (hf_run / "bundle" / "student.ort.onnx").is_file()
    exported = onnx.load(str(hf_run / "student.onnx"))
    assert not any(n.domain == "com.microsoft" for n in exported.graph.node)  # what OpenVINO / TensorRT build from


def test_the_student_loads_with_transformers_and_gives_the_same_logits(hf_run):
    from transformers import AutoModelForSequenceClassification

    directory = hf_run / "student-hf"
    assert (directory / "model.safetensors").is_file() and not (directory / "modules.json").exists()
    model = AutoModelForSequenceClassification.from_pretrained(str(directory), local_files_only=True).eval()
    with np.load(hf_run / "bundle" / "data" / "eval.npz") as data:
        feeds = {name: torch.from_numpy(data[name]) for name in ("input_ids", "attention_mask", "token_type_ids")}
        expected = data["student_outputs"]  # the fp32 PyTorch student's, as edgekd measured it
    with torch.inference_mode():
        np.testing.assert_allclose(model(**feeds).logits.numpy(), expected, atol=1e-5)


def report_parity(run_dir):
    return load_report(run_dir)["stages"]["export"]["parity"]


def test_shrink_copies_the_chosen_teacher_layers(bert_dir):
    teacher = load_hf_encoder(bert_dir, "logits", 2, 0)
    student, chosen = shrink_encoder(teacher, keep_layers=2)
    assert chosen == [0, 2] and shrunk_layers(12, 0) == [0, 2, 4, 6, 8, 10]
    t, s = teacher.state_dict(), student.state_dict()
    key = "hf.bert.encoder.layer.{}.attention.self.query.weight"
    assert torch.equal(s[key.format(1)], t[key.format(2)])
    assert torch.equal(s["hf.bert.embeddings.word_embeddings.weight"], t["hf.bert.embeddings.word_embeddings.weight"])
    narrow, _ = shrink_encoder(teacher, keep_layers=2, hidden_size=16)
    assert narrow.hf.config.hidden_size == 16 and narrow.hf.config.intermediate_size == 32
    assert torch.equal(narrow.state_dict()[key.format(0)], t[key.format(0)][:16, :16])


def test_mean_pooled_encoder_distils_from_unlabelled_text(tmp_path):
    """A sentence-embedding teacher (no head), unlabelled data: the student learns the embeddings alone."""
    bert = make_tiny_bert(tmp_path / "enc", output="embedding")
    teacher = load_hf_encoder(bert, "embedding", 0, 0).eval()
    config = copy.deepcopy(teacher.hf.config)
    config.num_hidden_layers = 2
    torch.manual_seed(5)
    student = encoder_from_config(config, "embedding", 0)  # a student from a config, random init
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 25, size=(48, 10)).astype(np.int64)
    ids[:, 7:] = 0  # padding: the mean pool must ignore it
    unlabelled = np.full(len(ids), -1, dtype=np.int64)
    before = _cosine(student, teacher, ids)
    result = fit(student, ids[:32], unlabelled[:32], ids[32:], unlabelled[32:],
                 TrainConfig(epochs=6, lr=1e-2, batch_size=16, seed=0),
                 [LossSpec("embedding-cosine")], label="encoder", teacher=teacher)  # fmt: skip
    after = _cosine(student, teacher, ids)
    assert result.best_val_metric == pytest.approx(after[32:].mean(), abs=1e-5)  # validation = cosine to teacher
    assert after[32:].mean() > before[32:].mean() + 0.1
    with torch.no_grad():
        padded = teacher(torch.from_numpy(ids[:1]))
        trimmed = teacher(torch.from_numpy(ids[:1, :7]))
    assert torch.allclose(padded, trimmed, atol=1e-5)


def _cosine(student, teacher, ids):
    with torch.no_grad():
        s, t = student.eval()(torch.from_numpy(ids)), teacher(torch.from_numpy(ids))
    return torch.nn.functional.cosine_similarity(s, t).numpy()


def test_missing_head_or_directory_is_a_clear_error(tmp_path):
    bert = make_tiny_bert(tmp_path / "enc", output="embedding")
    from edgekd.errors import CheckpointError, RecipeError

    with pytest.raises(CheckpointError, match="no trained classification head"):
        load_hf_encoder(bert, "logits", 2, 0)
    with pytest.raises(RecipeError, match="does not exist"):
        load_hf_encoder(tmp_path / "nowhere", "logits", 2, 0)
