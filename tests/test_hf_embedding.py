"""A sentence-embedding encoder end to end: a tiny mean-pooled BERT teacher (no head, random init, from a config)
distils on unlabelled text into a 2-layer shrunk student through `edgekd distill-and-export`; every row is
judged by the cosine of its embeddings with the teacher's, the bundle carries that reference to a device, and
the gate has a cosine budget."""

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("transformers", reason="needs the hf extra: pip install \"edgekd[hf]\"")

from edgekd.report.document import load_report  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.tiny_hf import make_sentences_txt, make_tiny_bert, run_recipe, text_recipe  # noqa: E402


def write_recipe(root, loss="embedding-cosine"):
    bert = make_tiny_bert(root / "tiny-bert-embed", output="embedding")
    data = make_sentences_txt(root / "sentences.txt")
    path = root / "tiny-embed.toml"
    path.write_text(text_recipe("tiny-embed", data, bert, [(loss, 1.0), ("hidden-state-mse", 0.5)], """
[quantize]
variants = ["int8-dynamic", "int8-static"]
calibration_samples = 16
[measure]
preset = "quick"
""", teacher_output="embedding"))
    return path


@pytest.fixture(scope="module")
def embed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    return run_recipe(write_recipe(root), root / "export")


@pytest.mark.openvino
def test_every_row_is_judged_by_cosine_to_the_teacher(embed_run):
    report = load_report(embed_run)
    assert report["task"]["metric"] == "teacher_cosine"
    assert report["teacher"]["accuracy"] is None  # embeddings have no classes
    rows = {row["artifact"]: row for row in report["rows"] if row["target"] == "host"}
    for name in ("teacher", "student", "student-onnx-fp32", "student-onnx-int8-dynamic", "student-onnx-int8-static",
                 "student-openvino-fp32"):  # fmt: skip
        assert rows[name]["status"] == "ok", (name, rows[name]["reason"])
    assert rows["teacher"]["fidelity"]["mean_cosine"] == pytest.approx(1.0, abs=1e-6)
    for name, row in rows.items():
        assert row["accuracy"] is None and row["teacher_agreement"] is None, name
        if name != "teacher":
            assert 0.0 < row["fidelity"]["mean_cosine"] < 1.0, name
            assert set(row["fidelity"]) == {"mean_cosine"}  # agreement and KL mean nothing for embeddings
    # The drop by stage is in points of cosine and adds up to (1 - cosine) x 100 along each chain.
    for name in ("student-onnx-int8-static", "student-openvino-fp32"):
        stages = rows[name]["drop_by_stage"]
        assert sum(stages.values()) == pytest.approx((1 - rows[name]["fidelity"]["mean_cosine"]) * 100, abs=1e-6)
    assert report["student"]["teacher_cosine"] == rows["student"]["fidelity"]["mean_cosine"]
    kd = report["stages"]["distill"]["kd"]
    assert "best_val_cosine" in kd and "test_accuracy" not in kd
    assert {loss["name"] for loss in report["stages"]["distill"]["losses"]} == {"embedding-cosine", "hidden-state-mse"}


def test_the_cosine_is_recomputed_from_the_bundle_alone(embed_run):
    """The row's figure follows from the shipped ONNX file and the teacher's embeddings in the bundle."""
    row = next(r for r in load_report(embed_run)["rows"] if r["artifact"] == "student-onnx-fp32")
    names = ["input_ids", "attention_mask", "token_type_ids"]  # what an app feeds, as the tokenizer made them
    with np.load(embed_run / "bundle" / "data" / "eval.npz") as data:
        inputs, teacher = {name: data[name] for name in names}, data["teacher_logits"]
    session = ort.InferenceSession(str(embed_run / "bundle" / "student.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["sentence_embedding"]
    batch = load_report(embed_run)["task"]["eval_batch_size"]
    outputs = np.concatenate([session.run(None, {k: v[i : i + batch] for k, v in inputs.items()})[0]
                              for i in range(0, len(teacher), batch)])  # fmt: skip
    a, b = outputs.astype(np.float64), teacher.astype(np.float64)
    cosine = ((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean()
    assert row["fidelity"]["mean_cosine"] == pytest.approx(cosine, abs=1e-9)


def test_profile_on_a_device_reports_the_same_cosine(embed_run, tmp_path, capsys):
    code, _, err = run_cli(["profile", str(embed_run / "bundle"), "-p", "host", "-o", str(tmp_path / "dev")], capsys)
    assert code == 0, err
    device = load_report(tmp_path / "dev")
    host = {r["artifact"]: r for r in load_report(embed_run)["rows"] if r["target"] == "host"}
    assert device["task"]["metric"] == "teacher_cosine"
    row = next(r for r in device["rows"] if r["artifact"] == "student-onnx-fp32")
    assert row["fidelity"]["mean_cosine"] == host["student-onnx-fp32"]["fidelity"]["mean_cosine"]
    # the device builds its own OpenVINO IRs and measures their sequence buckets there, on the bundle's texts
    buckets = device["stages"]["build"]["sequence_buckets"]
    assert "student-openvino-fp32" in buckets and buckets["student-openvino-fp32"]["texts"] == 16


def test_gate_budgets_the_cosine_and_explains_accuracy_budgets(embed_run, capsys):
    cosine = min(r["fidelity"]["mean_cosine"] for r in load_report(embed_run)["rows"]
                 if r["status"] == "ok" and r["role"] == "student")  # fmt: skip
    assert run_cli(["gate", str(embed_run), "--min-teacher-cosine", f"{cosine - 0.01:.4f}"], capsys)[0] == 0
    code, out, _ = run_cli(["gate", str(embed_run), "--min-teacher-cosine", f"{cosine + 0.001:.6f}"], capsys)
    assert code == 1 and "min_teacher_cosine" in out
    code, out, _ = run_cli(["gate", str(embed_run), "--max-accuracy-drop", "2", "--json"], capsys)
    assert code == 3 and "use min_teacher_cosine" in out  # inconclusive


def test_reports_say_what_the_rows_are_judged_on(embed_run):
    markdown = (embed_run / "report.md").read_text()
    assert "cosine to the teacher" in markdown and "Cosine-to-teacher drop by stage" in markdown
    assert "cosine to teacher" in (embed_run / "report.html").read_text()


def test_a_class_loss_on_an_embedding_teacher_is_a_clear_error(tmp_path, capsys):
    code, _, err = run_cli(["distill-and-export", str(write_recipe(tmp_path, loss="hinton-kd")),
                            "--output-dir", str(tmp_path / "export")], capsys)  # fmt: skip
    assert code == 2
    assert "distill.losses[0].name" in err and "embedding-cosine" in err


def test_a_narrower_embedding_student_is_a_clear_error(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace("[student]\n", "[student]\nshrink_hidden_size = 16\n", 1))
    code, _, err = run_cli(["distill-and-export", str(recipe), "--output-dir", str(tmp_path / "export")], capsys)
    assert code == 2 and "Traceback" not in err
    assert "student.shrink_hidden_size" in err and "16-dimensional embeddings" in err and "shrink_layers" in err


@pytest.mark.openvino
def test_compare_covers_the_cosine(embed_run, capsys):
    code, out, _ = run_cli(["report", str(embed_run), "--compare", str(embed_run), "--format", "md"], capsys)
    assert code == 0 and "no change" in out
    from edgekd.report.compare import compare_reports

    old = load_report(embed_run)
    new = load_report(embed_run)
    row = next(r for r in new["rows"] if r["artifact"] == "student-onnx-fp32")
    row["fidelity"]["mean_cosine"] -= 0.01  # the embeddings moved away from the teacher's
    regressed = [d.metric for c in compare_reports(new, old) for d in c.regressions]
    assert regressed == ["teacher_cosine"]


def test_the_student_loads_with_transformers_and_sentence_transformers(embed_run):
    """student-hf/ is a standard directory: AutoModel + mean pooling, and SentenceTransformer(dir), give the
    fp32 student's embeddings (the ones the bundle carries)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    directory = embed_run / "student-hf"
    assert (directory / "model.safetensors").is_file()
    with np.load(embed_run / "bundle" / "data" / "eval.npz") as data:
        ids, mask, expected = data["input_ids"], data["attention_mask"], data["student_outputs"]
    model = AutoModel.from_pretrained(str(directory), local_files_only=True).eval()
    with torch.inference_mode():
        hidden = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
    weights = torch.from_numpy(mask).unsqueeze(-1).float()
    pooled = ((hidden * weights).sum(1) / weights.sum(1)).numpy()
    np.testing.assert_allclose(pooled, expected, atol=1e-5)
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    texts = tokenizer.batch_decode([row[m.astype(bool)][1:-1] for row, m in zip(ids, mask, strict=True)])
    encoded = st.SentenceTransformer(str(directory), device="cpu", local_files_only=True).encode(texts)
    np.testing.assert_allclose(encoded, expected, atol=1e-5)


@pytest.mark.openvino
def test_openvino_sequence_buckets_are_measured_and_leave_the_embeddings_unchanged(embed_run, tmp_path):
    """Each OpenVINO IR of a token model gets a measured bucket decision; an IR run with buckets (every input
    padded to the next bucket, mask 0) gives the dynamic model's embeddings at every length, beyond the last
    bucket too."""
    import openvino as ov

    from edgekd.runtimes.openvino_buckets import BUCKETS_KEY, bucket_lengths, bucketable, buckets_of
    from edgekd.runtimes.openvino_runtime import RUNTIME

    decisions = load_report(embed_run)["stages"]["build"]["sequence_buckets"]
    assert {"student-openvino-fp32", "student-openvino-int8"} <= set(decisions)
    for name, d in decisions.items():
        assert d["ms_per_text"]["buckets"] > 0 and d["ms_per_text"]["dynamic"] > 0, name
        assert d["cosine"] > 0.9999 and d["texts"] == 16  # the calibration texts, cut to their real lengths
        assert d["buckets"] in ([], d["candidate_buckets"]) and (d["buckets"] != []) == (d["why"] == "faster at "
                                                                                          "real lengths")  # fmt: skip
    summary = (embed_run / "report.md").read_text(encoding="utf-8")
    assert "OpenVINO sequence buckets" in summary and "student-openvino-int8 " in summary
    core = ov.Core()
    dynamic_xml = embed_run / "openvino" / "student.xml"
    model = core.read_model(str(dynamic_xml))
    assert bucketable(model)
    longest = model.inputs[0].get_partial_shape()  # dynamic: the buckets end at the export length instead
    assert longest[1].is_dynamic
    model.set_rt_info("4,8", BUCKETS_KEY)  # small buckets, so texts beyond the last run dynamic
    forced = tmp_path / "bucketed.xml"
    ov.save_model(model, str(forced), compress_to_fp16=False)
    assert buckets_of(core.read_model(str(forced))) == (4, 8)
    plain, bucketed = RUNTIME.load(dynamic_xml, 1), RUNTIME.load(forced, 1)
    with np.load(embed_run / "data" / "test.npz") as data:
        feed = {k: data[k][:1] for k in data.files if k != "labels"}
    for length in (3, 4, 6, 8, feed["attention_mask"].shape[1]):
        cut = {k: v[:, :length] for k, v in feed.items()}
        np.testing.assert_allclose(bucketed(cut), plain(cut), atol=1e-5, err_msg=f"{length} tokens")
    assert bucket_lengths(128) == (16, 24, 32, 48, 64, 96, 128) and bucket_lengths(12) == (12,)


def test_a_model_with_a_sequence_axis_in_its_output_is_never_bucketed():
    import openvino as ov
    from openvino import opset13 as ops

    from edgekd.runtimes.openvino_buckets import bucketable

    ids = ops.parameter(ov.PartialShape([-1, -1]), ov.Type.i64, name="input_ids")
    mask = ops.parameter(ov.PartialShape([-1, -1]), ov.Type.i64, name="attention_mask")
    tokens = ops.convert(ops.multiply(ids, mask), ov.Type.f32)  # [batch, sequence]: padding would change it
    pooled = ops.reduce_sum(tokens, ops.constant(np.array([1])), keep_dims=False)
    assert not bucketable(ov.Model([ops.unsqueeze(tokens, ops.constant(np.array([2])))], [ids, mask]))
    assert bucketable(ov.Model([ops.unsqueeze(pooled, ops.constant(np.array([1])))], [ids, mask]))


@pytest.mark.openvino
def test_sequence_buckets_can_be_turned_off_in_the_recipe(embed_run, tmp_path):
    from edgekd.recipe import Recipe, apply_overrides
    from edgekd.runtimes.base import BuildJob
    from edgekd.runtimes.openvino_buckets import buckets_of
    from edgekd.runtimes.openvino_runtime import ENGINES, RUNTIME
    from edgekd.targets.profiles import load_profile

    recipe = apply_overrides(Recipe(), ["build.openvino_sequence_buckets=false"])
    assert recipe.build.openvino_sequence_buckets is False
    names = ["input_ids", "attention_mask", "token_type_ids"]
    job = BuildJob(embed_run, tmp_path, load_profile("host"), {"input_name": names, "sequence_buckets": False})
    record = RUNTIME.build(ENGINES[0], job)  # the fp32 IR
    assert record == {"sequence_buckets": {"buckets": [], "why": "off in the recipe (build.openvino_sequence_buckets)"}}
    import openvino as ov

    assert buckets_of(ov.Core().read_model(str(tmp_path / ENGINES[0].path))) == ()
