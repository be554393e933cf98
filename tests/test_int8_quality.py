"""Static INT8 that holds: calibration chosen by fidelity, the quality-collapse flag, the recommended artifact,
OpenVINO int8 through NNCF, and ONNX Runtime's quantization chatter kept off the terminal. Real ONNX Runtime,
OpenVINO and NNCF throughout; the models are tiny and built here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.build.artifacts import Artifact
from edgekd.errors import RecipeError
from edgekd.export.onnx import export_onnx
from edgekd.measure import timing_policy
from edgekd.measure.quality import ACCURACY, TEACHER_COSINE
from edgekd.measure.rows import MeasureSettings, TeacherReference, measure_rows
from edgekd.quantize.calibration import calibration_sha256, fidelity_to, model_outputs, quantize_static_calibrated
from edgekd.quantize.ort_int8 import is_transformer_graph, quantize_int8_dynamic, quantize_int8_static
from edgekd.recipe import Recipe, apply_overrides
from edgekd.report.recommend import recommendation_lines, recommendations


class OutlierMlp(nn.Module):
    """An MLP whose hidden channel 0 is ~10^4 times the others on `outlier_share` of the inputs: one per-tensor
    int8 range then has no steps left for the channels that carry the answer, so static INT8 collapses."""

    def __init__(self, outlier_share: float = 1.0):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 10)
        self.threshold = -1e9 if outlier_share >= 1 else 1e9 if outlier_share <= 0 else float(
            torch.distributions.Normal(0, 1).icdf(torch.tensor(1 - outlier_share)))
        gain = torch.ones(32)
        gain[0] = 1e4
        self.register_buffer("gain", gain)
        with torch.no_grad():
            self.b.weight[:, 0] *= 1e-4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.a(x))
        spike = (x[:, :1] > self.threshold).to(x.dtype)  # which samples carry the outlier
        scale = 1 + spike * (self.gain - 1)
        return self.b(hidden * scale)


def _export(model: nn.Module, path, samples: np.ndarray, input_name: str = "x"):
    export_onnx(model, samples, input_name, path, 18)
    with torch.no_grad():
        return model(torch.from_numpy(samples)).numpy()


@pytest.fixture(scope="module")
def outlier_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("outlier")
    samples = np.random.default_rng(0).standard_normal((240, 16)).astype(np.float32)
    outputs = _export(OutlierMlp(), directory / "student.onnx", samples)
    return directory, samples, outputs


def test_static_int8_of_an_outlier_model_is_flagged_and_never_recommended(outlier_dir, tmp_path):
    directory, samples, torch_outputs = outlier_dir
    quantize_int8_static(directory / "student.onnx", directory / "student.int8-static.onnx", "x", samples[:64])
    (directory / "teacher.onnx").write_bytes((directory / "student.onnx").read_bytes())
    artifacts = [
        Artifact("teacher", "teacher", "teacher.onnx", "onnx", "onnxruntime", "fp32", 1),
        Artifact("student-onnx-fp32", "student", "student.onnx", "onnx", "onnxruntime", "fp32", 1, source="teacher"),
        Artifact("student-onnx-int8-static", "student", "student.int8-static.onnx", "onnx", "onnxruntime", "int8",
                 1, quantization="static", source="student-onnx-fp32"),
    ]  # fmt: skip
    test = samples[120:]
    labels = torch_outputs[120:].argmax(axis=1)
    settings = MeasureSettings(timing_policy("quick"), 4, 1, 1, isolation="in-process")
    reference = TeacherReference.of(torch_outputs[120:], labels, ACCURACY, student_outputs=torch_outputs[120:])
    rows = [row.to_json() for row in measure_rows(artifacts, directory, test, labels, settings, 10,
                                                  reference=reference)]  # fmt: skip
    by_name = {row["artifact"]: row for row in rows}
    int8, fp32 = by_name["student-onnx-int8-static"], by_name["student-onnx-fp32"]
    assert int8["student_parity"]["top1_agreement"] < 0.9  # it really collapsed, measured through ONNX Runtime
    assert "quality-collapse" in [f["code"] for f in int8["flags"]]
    assert "quality-collapse" not in [f["code"] for f in fp32["flags"]]  # the flag does not fire on every row
    report = {"rows": rows, "task": {"metric": ACCURACY}}
    [entry] = recommendations(report)
    assert entry["artifact"] == "student-onnx-fp32" and entry["basis"] == "fidelity"
    assert entry["speedup_vs_fp32_student"] == 1.0 and entry["speedup_vs_teacher"] > 0


def _row(name: str, p50: float, flags: tuple[str, ...] = (), cosine: float = 0.999, target: str = "host") -> dict:
    return {"artifact": name, "role": "teacher" if name == "teacher" else "student", "target": target,
            "status": "ok", "format": "onnx", "precision": "fp32" if "fp32" in name or name == "teacher" else "int8",
            "latency_ms": {"p50": p50}, "flags": [{"code": c, "message": c} for c in flags],
            "fidelity": {"mean_cosine": cosine}, "student_parity": {"mean_cosine": cosine}}  # fmt: skip


def test_the_fastest_row_is_skipped_when_flagged_and_budgets_decide_when_set():
    rows = [_row("teacher", 10.0), _row("student-onnx-fp32", 4.0), _row("student-onnx-int8-static", 1.0,
            ("quality-collapse",), cosine=0.6), _row("student-onnx-int8-dynamic", 2.0, cosine=0.995)]  # fmt: skip
    report = {"rows": rows, "task": {"metric": TEACHER_COSINE}}
    [entry] = recommendations(report)
    assert entry["artifact"] == "student-onnx-int8-dynamic"
    assert (entry["speedup_vs_teacher"], entry["speedup_vs_fp32_student"]) == (5.0, 2.0)
    assert entry["drop_points"] == pytest.approx(0.5)
    report["recommendations"] = [entry]
    assert "recommended on host: student-onnx-int8-dynamic" in recommendation_lines(report)[0]
    # a cosine budget the dynamic row misses: the fp32 row is the fastest that meets it
    report["verdicts"] = {"budgets": {"min_teacher_cosine": 0.998}}
    [entry] = recommendations(report)
    assert entry["artifact"] == "student-onnx-fp32" and entry["basis"] == "budgets"
    report["verdicts"] = {"budgets": {"min_teacher_cosine": 0.9999}}
    [entry] = recommendations(report)
    assert entry["artifact"] is None and "budgets" in entry["reason"]


def test_only_measured_student_rows_on_the_target_are_candidates():
    """A teacher faster than every student, a failed row and a faster row on another target are not what host
    ships: host gets its fastest measured student row, 2.0 ms (answers worked out by hand)."""
    rows = [_row("teacher", 0.2), _row("student-onnx-fp32", 4.0), _row("student-onnx-int8-dynamic", 2.0),
            {**_row("student-onnx-int8-static", 0.5), "status": "failed"},
            _row("student-onnx-int8-dynamic", 0.1, target="jetson")]  # fmt: skip
    host, jetson = recommendations({"rows": rows, "task": {"metric": TEACHER_COSINE}})
    assert (host["target"], host["artifact"], host["p50_ms"]) == ("host", "student-onnx-int8-dynamic", 2.0)
    assert (host["speedup_vs_teacher"], host["speedup_vs_fp32_student"]) == (0.1, 2.0)
    assert (jetson["target"], jetson["artifact"], jetson["p50_ms"]) == ("jetson", "student-onnx-int8-dynamic", 0.1)


def _timed_at_real_lengths(row: dict, real_ms: float) -> dict:
    lengths = {"min": 9, "p50": 16.0, "max": 48, "mean": 18.2, "samples": 150, "padded_to": 128}
    return {**row, "p50_ms_real_lengths": real_ms, "latency_real_lengths_ms": {"p50": real_ms, "lengths": lengths}}


def test_token_models_are_ranked_at_real_lengths_and_the_padded_winner_is_named_beside():
    """Figures from a real MiniLM-3L run (VNNI host): OpenVINO int8 is fastest padded to 128 tokens but slowest on
    mixed short texts, where ORT's dynamic INT8 wins; speed-ups on the same basis (worked out by hand)."""
    rows = [_timed_at_real_lengths(_row("teacher", 43.0), 12.6),
            _timed_at_real_lengths(_row("student-onnx-fp32", 9.8), 1.7),
            _timed_at_real_lengths(_row("student-onnx-int8-dynamic", 3.9, cosine=0.997), 0.5),
            _timed_at_real_lengths(_row("student-openvino-int8", 3.5), 5.8)]  # fmt: skip
    report = {"rows": rows, "task": {"metric": TEACHER_COSINE}}
    [entry] = recommendations(report)
    assert (entry["artifact"], entry["latency_basis"], entry["p50_ms_real_lengths"]) == (
        "student-onnx-int8-dynamic", "real-lengths", 0.5)
    assert (entry["speedup_vs_teacher"], entry["speedup_vs_fp32_student"]) == (25.2, 3.4)
    padded = entry["at_padded_length"]
    assert (padded["artifact"], padded["speedup_vs_fp32_student"]) == ("student-openvino-int8", 2.8)
    report["recommendations"] = [entry]
    first, second = recommendation_lines(report)
    assert "real lengths" in first and "median 16 tokens" in first and "student-onnx-int8-dynamic" in first
    assert second.startswith("recommended on host for inputs padded to 128 tokens: student-openvino-int8")
    # one row not timed at real lengths (a fixed-length engine): every row is ranked padded, nothing beside it
    rows[3] = {k: v for k, v in rows[3].items() if k not in ("p50_ms_real_lengths", "latency_real_lengths_ms")}
    [entry] = recommendations(report)
    assert (entry["artifact"], entry["latency_basis"]) == ("student-openvino-int8", "padded-length")
    assert "at_padded_length" not in entry and "p50_ms_real_lengths" not in entry


def test_a_memory_budget_passes_over_the_fastest_row_when_it_needs_more_memory():
    """Figures from a real BERT-4x256 run: OpenVINO int8 with sequence buckets is the fastest at 128 tokens but its
    process peaks at 596 MB; under max_peak_rss_mb = 500 the fastest row within it is recommended instead."""
    rows = [_timed_at_real_lengths(_row("teacher", 23.3), 5.7),
            _timed_at_real_lengths(_row("student-onnx-fp32", 5.3), 0.83),
            _timed_at_real_lengths(_row("student-onnx-int8-dynamic", 2.3), 0.45),
            _timed_at_real_lengths(_row("student-openvino-int8", 1.6), 0.42)]  # fmt: skip
    for row, mb in zip(rows, (775, 522, 485, 596), strict=True):
        row["memory"] = {"peak_rss_bytes": mb * 1e6}
    report = {"rows": rows, "task": {"metric": TEACHER_COSINE}}
    [entry] = recommendations(report)
    assert entry["artifact"] == "student-openvino-int8"
    report["verdicts"] = {"budgets": {"max_peak_rss_mb": 500}}
    [entry] = recommendations(report)
    assert (entry["artifact"], entry["basis"]) == ("student-onnx-int8-dynamic", "budgets")
    report["verdicts"] = {"budgets": {"max_p50_ms_real_lengths": 0.44}}
    [entry] = recommendations(report)
    assert entry["artifact"] == "student-openvino-int8"  # the only row within 0.44 ms at real lengths


def test_a_runner_up_within_the_timing_noise_is_named_as_a_tie():
    """MiniLM-3L at real lengths in one run: ORT int8 dynamic 0.634 ms, OpenVINO int8 0.636 ms per text."""
    rows = [_timed_at_real_lengths(_row("teacher", 38.7), 13.0),
            _timed_at_real_lengths(_row("student-onnx-fp32", 8.2), 2.1),
            _timed_at_real_lengths(_row("student-onnx-int8-dynamic", 3.8), 0.634),
            _timed_at_real_lengths(_row("student-openvino-int8", 3.2), 0.636)]  # fmt: skip
    report = {"rows": rows, "task": {"metric": TEACHER_COSINE}}
    [entry] = recommendations(report)
    assert entry["runner_up"] == {"artifact": "student-openvino-int8", "slower_by": 1.003}
    report["recommendations"] = [entry]
    assert "student-openvino-int8 only 1.00x slower: a tie" in recommendation_lines(report)[0]
    rows[3]["p50_ms_real_lengths"] = 0.7  # 10% slower: no longer a tie, not said
    report["recommendations"] = recommendations(report)
    assert report["recommendations"][0]["runner_up"]["slower_by"] == 1.104
    assert "tie" not in recommendation_lines(report)[0]


def test_auto_calibration_keeps_the_method_with_the_best_validation_fidelity(tmp_path):
    samples = np.random.default_rng(1).standard_normal((300, 16)).astype(np.float32)
    _export(OutlierMlp(outlier_share=0.0), tmp_path / "student.onnx", samples)
    calibration = samples[:100].copy()
    calibration[0] *= 1000  # one wild calibration sample: min/max spends the range on it, percentiles clip it
    target, log = tmp_path / "student.int8-static.onnx", tmp_path / "quantize.log"
    summary = quantize_static_calibrated(tmp_path / "student.onnx", target, "x", calibration, samples[100:200],
                                         ACCURACY, method="auto", percentile=99.0, log_path=log)  # fmt: skip
    scores = {c["method"]: (c["top1_agreement"], c["mean_cosine"]) for c in summary["candidates"]}
    assert set(scores) == {"minmax", "percentile", "entropy"}
    assert scores[summary["method"]] == max(scores.values())
    assert len(set(scores.values())) > 1  # the methods really differ on this model: the choice means something
    reference = model_outputs(tmp_path / "student.onnx", samples[100:200], "x")
    kept = fidelity_to(model_outputs(target, samples[100:200], "x"), reference, ACCURACY)
    assert (kept["top1_agreement"], kept["mean_cosine"]) == scores[summary["method"]]  # the file is the winner
    assert summary["samples"] == 100 and "100 validation samples" in summary["judged_on"]
    assert calibration_sha256(samples[:100], "x") != calibration_sha256(samples[:99], "x")


def test_quantizer_logging_goes_to_the_log_not_the_terminal(outlier_dir, tmp_path, capfd):
    directory, samples, _ = outlier_dir
    log = tmp_path / "quantize.log"
    quantize_int8_static(directory / "student.onnx", tmp_path / "s.onnx", "x", samples[:32], method="percentile",
                         log_path=log)  # fmt: skip
    quantize_int8_dynamic(directory / "student.onnx", tmp_path / "d.onnx", log_path=log)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert "percentile" in log.read_text().lower()  # the calibrator's own progress lines landed in the log


def test_quantizing_takes_paths_relative_to_the_working_directory(outlier_dir, tmp_path, monkeypatch):
    """The README's `edgekd distill-and-export` writes to the relative `export/`; ONNX Runtime's pre-processing
    runs in a scratch working directory, so relative paths must be resolved before it is entered."""
    import shutil

    directory, samples, _ = outlier_dir
    (tmp_path / "export").mkdir()
    shutil.copyfile(directory / "student.onnx", tmp_path / "export" / "student.onnx")
    monkeypatch.chdir(tmp_path)
    quantize_int8_dynamic(Path("export/student.onnx"), Path("export/d.onnx"), log_path=Path("export/quantize.log"))
    quantize_int8_static(Path("export/student.onnx"), Path("export/s.onnx"), "x", samples[:16],
                         log_path=Path("export/quantize.log"))  # fmt: skip
    assert (tmp_path / "export" / "d.onnx").stat().st_size > 0 and (tmp_path / "export" / "s.onnx").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # nothing else landed in the working directory


def test_static_ops_safe_leaves_transformer_breaking_ops_in_float(outlier_dir, tmp_path):
    import onnx

    from edgekd.quantize.ort_int8 import TRANSFORMER_UNSAFE_OPS, static_op_types

    safe, every = set(static_op_types("safe")), set(static_op_types("all"))
    assert {"MatMul", "Gemm", "Conv"} <= safe and not safe & TRANSFORMER_UNSAFE_OPS
    assert {"Softmax", "LayerNormalization", "Add", "Mul"} <= every  # ONNX Runtime's default wraps them
    directory, samples, _ = outlier_dir
    counts = {}
    for ops in ("all", "safe"):
        quantize_int8_static(directory / "student.onnx", tmp_path / f"{ops}.onnx", "x", samples[:32], static_ops=ops)
        counts[ops] = sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(tmp_path / f"{ops}.onnx")).graph.node)
    assert 0 < counts["safe"] < counts["all"]  # the Mul's output is no longer quantized on its own
    assert not is_transformer_graph(directory / "student.onnx")


def test_new_quantize_keys_are_validated():
    recipe = apply_overrides(Recipe(), ["quantize.calibration=entropy", "quantize.static_ops=matmul"])
    assert (recipe.quantize.calibration, recipe.quantize.static_ops) == ("entropy", "matmul")
    with pytest.raises(RecipeError, match="did you mean 'percentile'"):
        apply_overrides(Recipe(), ["quantize.calibration=percentil"])
    with pytest.raises(RecipeError, match="build.openvino_int8"):
        apply_overrides(Recipe(), ["build.openvino_int8=pot"])
    with pytest.raises(RecipeError, match="quantize.percentile"):
        apply_overrides(Recipe(), ["quantize.percentile=100"])


@pytest.mark.openvino
def test_nncf_builds_a_working_int8_ir_for_a_transformer(tmp_path):
    pytest.importorskip("nncf", reason="nncf is not installed: pip install \"edgekd[openvino]\"")
    from edgekd.models.hf import load_hf_encoder
    from edgekd.quantize.ort_int8 import calibration_feeds
    from edgekd.runtimes.openvino_runtime import RUNTIME, build_int8_ir_nncf
    from tests.tiny_hf import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert", output="embedding")
    encoder = load_hf_encoder(bert, "embedding", 0, pad_token_id=0)
    ids = np.random.default_rng(0).integers(5, 25, size=(48, 12)).astype(np.int64)
    ids[:, 9:] = 0  # padding
    fp32 = _export(encoder, tmp_path / "student.onnx", ids, "input_ids")
    assert is_transformer_graph(tmp_path / "student.onnx")
    xml = tmp_path / "openvino" / "student.int8.xml"
    xml.parent.mkdir()
    build_int8_ir_nncf(tmp_path / "student.onnx", xml, calibration_feeds(ids[:32], "input_ids"), transformer=True,
                       log_path=tmp_path / "quantize.log")  # fmt: skip
    assert "FakeQuantize" in xml.read_text()
    int8 = RUNTIME.load(xml, 1)(ids[32:])
    assert fidelity_to(int8, fp32[32:], TEACHER_COSINE)["mean_cosine"] > 0.98


def test_bad_calibration_input_fails_before_calibration_naming_the_input(outlier_dir, tmp_path):
    from edgekd.errors import CalibrationError

    directory, samples, _ = outlier_dir
    source, target = directory / "student.onnx", tmp_path / "s.onnx"
    cases = [(samples[:0], "'x' has no samples"), (samples[:8, :12], r"expects shape \(N, 16\), got .*\(8, 12\)"),
             (samples[:8].astype(np.float64), "expects float32, got float64"),
             ({"pixels": samples[:8]}, "'pixels' is not an input of the model \\(inputs: x\\)")]  # fmt: skip
    for calibration, message in cases:
        with pytest.raises(CalibrationError, match=message):
            quantize_static_calibrated(source, target, "x", calibration, samples[:8], ACCURACY, method="auto")
    assert not target.exists() and not list(tmp_path.glob(".edgekd-calibrate-*"))  # nothing half-written


def test_accuracy_aware_search_keeps_the_sensitive_node_in_float_and_says_what_it_cost(outlier_dir, tmp_path):
    from edgekd.quantize.accuracy_aware import search_keep_float

    directory, samples, _ = outlier_dir
    source, target = directory / "student.onnx", tmp_path / "student.int8-static.onnx"
    quantize_int8_static(source, target, "x", samples[:64])
    search = search_keep_float(source, target, "x", samples[:64], samples[64:160], ACCURACY, max_drop=1.0,
                               method="minmax")  # fmt: skip
    assert search["all_int8_drop_points"] > 10 and search["met"] and search["drop_points"] <= 1.0
    [kept] = search["kept_float"]  # the head, whose input carries the outlier channel; the first layer stays int8
    assert kept["op_type"] in ("Gemm", "MatMul") and kept["bought_points"] > 10
    assert isinstance(kept["latency_cost_ms"], float) and len(kept["confirmed_among"]) == 2
    # SQNR alone ranks the first layer's input worse (its one huge channel hides the lost ones): measuring decided
    assert kept["input_sqnr_db"] > search["ranking"][0]["input_sqnr_db"]
    reference = model_outputs(source, samples[64:160], "x")
    written = fidelity_to(model_outputs(target, samples[64:160], "x"), reference, ACCURACY)
    assert (1 - written["top1_agreement"]) * 100 == pytest.approx(search["drop_points"], abs=1e-3)


def test_a_budget_no_mix_meets_keeps_the_best_model_and_says_so(outlier_dir, tmp_path):
    from edgekd.quantize.accuracy_aware import search_keep_float

    directory, samples, _ = outlier_dir
    source, target = directory / "student.onnx", tmp_path / "student.int8-static.onnx"
    calibration = samples[:64].copy()
    calibration[0] *= 1000  # the first layer's input range is ruined too: two nodes would have to stay float
    quantize_int8_static(source, target, "x", calibration)
    search = search_keep_float(source, target, "x", calibration, samples[64:160], ACCURACY, max_drop=1.0,
                               method="minmax", max_float_nodes=1)  # fmt: skip
    assert not search["met"] and len(search["kept_float"]) <= 1 and search["tried"] >= 1
    assert search["drop_points"] == min(s["drop_points"] for s in search["steps"]) > 1.0


def test_a_run_records_its_calibration_recommends_and_builds_openvino_int8_with_nncf(quick_run):
    from edgekd.report.document import load_report

    report = load_report(quick_run)
    calibration = report["stages"]["quantize"]["calibration"]
    assert calibration["requested"] == "auto" and len(calibration["candidates"]) == 3
    assert len(calibration["sha256"]) == 64 and calibration["samples"] == 64
    rows = {r["artifact"]: r for r in report["rows"] if r.get("target", "host") == "host"}
    if rows.get("student-openvino-int8", {}).get("status") == "ok":  # NNCF: made from the fp32 model
        assert rows["student-openvino-int8"]["source"] == "student-onnx-fp32"
    [entry] = [e for e in report["recommendations"] if e["target"] == "host"]
    recommended = rows[entry["artifact"]]
    assert "quality-collapse" not in [f["code"] for f in recommended["flags"]]
    # which row wins is checked on hand-worked rows (test_only_measured_student_rows_on_the_target_are_candidates,
    # test_the_fastest_row_is_skipped_when_flagged_...); here: the entry is a measured student row, its own figure
    assert recommended["status"] == "ok" and recommended["role"] == "student"
    assert entry["p50_ms"] == recommended["latency_ms"]["p50"]
    assert (quick_run / "quantize.log").is_file()
