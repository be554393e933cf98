"""The quantization budget: `quantize.max_drop` from the recipe's budgets when unset, and OpenVINO int8 by NNCF's
accuracy control under it (the ops it reverted, the drop it measured, the flag when it misses). Real NNCF and
OpenVINO; the model is tiny and built here."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
import torch

from edgekd.build.artifacts import Artifact
from edgekd.errors import RecipeError
from edgekd.export.onnx import export_onnx
from edgekd.measure.quality import ACCURACY, TEACHER_COSINE
from edgekd.quantize.accuracy_aware import drop_points
from edgekd.quantize.budget import QuantizeBudget, quantize_budget
from edgekd.quantize.calibration import fidelity_to, model_outputs
from edgekd.quantize.ort_int8 import calibration_feeds
from edgekd.quantize.stage import missed_budget
from edgekd.recipe import Recipe, apply_overrides
from edgekd.report.model import Row
from edgekd.report.schema import report_schema
from tests.test_int8_quality import OutlierMlp

HEAD = "node_linear_1/WithoutBiases"  # the OpenVINO name of the head's MatMul in the exported GainMlp


class GainMlp(OutlierMlp):
    """OutlierMlp's weights, its hidden channel 0 always 10^4 times the others (a constant gain the head undoes, so
    no activation-by-activation Multiply for NNCF to quantize): the head's per-tensor int8 input range has no steps
    left for the channels that carry the answer, so NNCF's plain int8 collapses; with the head in float only the
    first layer is int8, which costs this random net a few points."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)) * self.gain)


@pytest.fixture(scope="module")
def gain_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gain")
    samples = np.random.default_rng(0).standard_normal((240, 16)).astype(np.float32)
    export_onnx(GainMlp(), samples, "x", directory / "student.onnx", 18)
    return directory / "student.onnx", samples


def _budget(max_drop: float, max_float_nodes: int = 8) -> QuantizeBudget:
    return QuantizeBudget(max_drop, "budgets.max_accuracy_drop", ACCURACY, max_float_nodes)


def _drop_of_ir(xml, onnx_path, validation) -> float:
    from edgekd.runtimes.openvino_runtime import RUNTIME

    reference = model_outputs(onnx_path, validation, "x")
    return drop_points(fidelity_to(RUNTIME.load(xml, 1)(validation), reference, ACCURACY), ACCURACY)


def _row() -> Row:
    artifact = Artifact("student-openvino-int8", "student", "openvino/student.int8.xml", "openvino-ir", "openvino",
                        "int8", 1, quantization="static", source="student-onnx-fp32")  # fmt: skip
    return Row.of(artifact, "host", 1, flags=[])


def test_max_drop_follows_the_budgets_unless_the_recipe_sets_it():
    section = Recipe().quantize
    assert section.max_drop == -1 and quantize_budget(section, {}, ACCURACY) is None  # no budget: off, as before
    assert quantize_budget(section, {"max_p50_ms": 3.0, "min_accuracy": 0.9}, ACCURACY) is None  # nothing to derive
    budget = quantize_budget(section, {"max_accuracy_drop": 2.0}, ACCURACY)
    assert (budget.max_drop, budget.source, budget.max_float_nodes) == (2.0, "budgets.max_accuracy_drop", 8)
    budget = quantize_budget(section, {"max_accuracy_drop": 2.0, "min_teacher_agreement": 99.5}, ACCURACY)
    assert (budget.max_drop, budget.source) == (0.5, "budgets.min_teacher_agreement")  # the tightest
    # a cosine budget is an embedding task's; a classifier's drop is top-1 disagreement, so it is not used there
    assert quantize_budget(section, {"min_teacher_cosine": 0.99}, ACCURACY) is None
    budget = quantize_budget(section, {"min_teacher_cosine": 0.99, "max_accuracy_drop": 0.1}, TEACHER_COSINE)
    assert (budget.max_drop, budget.source, budget.metric) == (1.0, "budgets.min_teacher_cosine", TEACHER_COSINE)
    # the recipe's own value wins, and an explicit 0 still means off
    explicit = apply_overrides(Recipe(), ["quantize.max_drop=0.25"]).quantize
    assert quantize_budget(explicit, {"max_accuracy_drop": 2.0}, ACCURACY).source == "quantize.max_drop"
    off = apply_overrides(Recipe(), ["quantize.max_drop=0"]).quantize
    assert quantize_budget(off, {"max_accuracy_drop": 2.0}, ACCURACY) is None
    with pytest.raises(RecipeError, match="quantize.max_drop"):
        apply_overrides(Recipe(), ["quantize.max_drop=-0.5"])


@pytest.mark.openvino
def test_nncf_accuracy_control_brings_the_ir_within_a_budget_plain_nncf_breaks(gain_model, tmp_path, capfd):
    from edgekd.runtimes.openvino_runtime import build_int8_ir_nncf

    source, samples = gain_model
    feeds, validation, log = calibration_feeds(samples[:64], "x"), samples[64:160], tmp_path / "quantize.log"
    plain, controlled = tmp_path / "plain.xml", tmp_path / "controlled.xml"
    assert build_int8_ir_nncf(source, plain, feeds, transformer=False, log_path=log) is None
    plain_drop = _drop_of_ir(plain, source, validation)
    assert plain_drop > 5.0  # plain NNCF breaks a 5-point budget: measured
    record = build_int8_ir_nncf(source, controlled, feeds, transformer=False, log_path=log,
                                under_budget=(_budget(5.0), validation, "x"))  # fmt: skip
    assert record["met"] and record["drop_points"] <= 5.0 and record["plain_drop_points"] == pytest.approx(plain_drop)
    assert record["reverted"] == [{"name": HEAD, "op_type": "MatMul"}] and record["quantized_ops"] == 2
    assert "FakeQuantize" in controlled.read_text()  # the first layer is still int8
    assert _drop_of_ir(controlled, source, validation) == pytest.approx(record["drop_points"], abs=1e-3)
    assert record["judged_on"] == "96 validation samples, against the fp32 ONNX student, OpenVINO in f32"
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # NNCF's logger and progress bars went to the log
    assert "Reverted 1 operations" in log.read_text()


@pytest.mark.openvino
def test_a_budget_nncf_cannot_meet_is_reported_and_flags_the_row(gain_model, tmp_path):
    from edgekd.runtimes.openvino_runtime import build_int8_ir_nncf

    source, samples = gain_model
    feeds, validation = calibration_feeds(samples[:64], "x"), samples[64:160]
    record = build_int8_ir_nncf(source, tmp_path / "int8.xml", feeds, transformer=False,
                                log_path=tmp_path / "quantize.log",
                                under_budget=(_budget(1.0, max_float_nodes=1), validation, "x"))  # fmt: skip
    # one group may be reverted: the head, which leaves the int8 first layer's few points over a 1-point budget
    assert not record["met"] and record["drop_points"] > 1.0 and len(record["reverted"]) == 1
    assert record["drop_points"] < record["plain_drop_points"]
    row, untouched = _row(), _row()
    untouched.artifact = "student-openvino-fp32"
    missed_budget([row, untouched], {}, {"accuracy_control": {"student-openvino-int8": record}})
    assert row.flagged("quantization-budget-missed") and not untouched.flagged("quantization-budget-missed")
    [flag] = row.flags
    assert "budgets.max_accuracy_drop" in flag.message and "1 of 2 int8 ops reverted" in flag.message
    written = row.to_json()
    assert written["accuracy_control"]["reverted"] == record["reverted"] and untouched.accuracy_control is None
    jsonschema.validate(written["accuracy_control"], report_schema()["$defs"]["row"]["properties"]["accuracy_control"])


def test_the_onnx_runtime_flag_names_where_the_budget_came_from():
    row = _row()
    row.artifact = "student-onnx-int8-static"
    search = {"met": False, "max_drop": 0.5, "max_drop_source": "budgets.min_teacher_agreement",
              "drop_points": 3.0, "kept_float": [{"node": "n"}]}  # fmt: skip
    missed_budget([row], {"calibration": {"accuracy_aware": search}})
    [flag] = row.flags
    assert flag.code == "quantization-budget-missed" and "(budgets.min_teacher_agreement)" in flag.message


@pytest.mark.openvino
def test_the_build_stage_judges_nncf_on_the_validation_split_and_the_summary_says_what_it_did(gain_model, tmp_path):
    import shutil

    from edgekd.build.stage import build_stage
    from edgekd.pipeline.layout import CALIBRATION_SAMPLES, FP32_ONNX
    from edgekd.recipe import BuildSection
    from edgekd.report.summary import accuracy_control_lines
    from edgekd.targets.profiles import load_profile
    from edgekd.tasks.base import TaskData, save_calibration_samples

    source, samples = gain_model
    shutil.copyfile(source, tmp_path / FP32_ONNX)
    save_calibration_samples(tmp_path / CALIBRATION_SAMPLES, samples[:64], "x")
    labels = np.zeros(len(samples), dtype=np.int64)
    task = TaskData("gain", samples[:64], labels[:64], samples[64:160], labels[64:160], samples[160:], labels[160:],
                    10, "x", {})  # fmt: skip
    _, _, summary = build_stage(BuildSection(), [FP32_ONNX], task, tmp_path, [load_profile("host")], "", 1, 16,
                                _budget(5.0))  # fmt: skip
    record = summary["accuracy_control"]["student-openvino-int8"]  # the one NNCF build; fp32 / fp16 IRs have none
    assert list(summary["accuracy_control"]) == ["student-openvino-int8"]
    assert record["met"] and record["reverted"] == [{"name": HEAD, "op_type": "MatMul"}]
    assert record["judged_on"].startswith("96 validation samples")  # the task's validation split, not calibration
    [line] = accuracy_control_lines(summary)
    assert f"from budgets.max_accuracy_drop) met: {record['plain_drop_points']:.2f} -> " in line
    assert f"1 of 2 int8 ops reverted to float: {HEAD} (MatMul)" in line
    assert (tmp_path / "quantize.log").is_file()
    _, _, plain = build_stage(BuildSection(), [FP32_ONNX], task, tmp_path, [load_profile("host")], "", 1, 16)
    assert "accuracy_control" not in plain  # no budget: plain NNCF, as a bundle on a device builds it


@pytest.mark.openvino
def test_nncf_accuracy_control_on_a_token_encoder_judges_cosine_and_names_what_it_reverted(tmp_path):
    from edgekd.models.hf import load_hf_encoder
    from edgekd.runtimes.openvino_runtime import RUNTIME, build_int8_ir_nncf
    from tests.tiny_hf import make_tiny_bert

    encoder = load_hf_encoder(make_tiny_bert(tmp_path / "bert", output="embedding"), "embedding", 0, pad_token_id=0)
    ids = np.random.default_rng(0).integers(5, 25, size=(32, 12)).astype(np.int64)
    ids[:, 9:] = 0  # padding
    export_onnx(encoder, ids, "input_ids", tmp_path / "student.onnx", 18)
    validation = {"input_ids": ids[16:]}
    budget = QuantizeBudget(0.0, "budgets.min_teacher_cosine", TEACHER_COSINE, 1)  # min_teacher_cosine = 1: no room
    record = build_int8_ir_nncf(tmp_path / "student.onnx", tmp_path / "int8.xml",
                                calibration_feeds(ids[:16], "input_ids"), transformer=True,
                                log_path=tmp_path / "quantize.log",
                                under_budget=(budget, validation, "input_ids"))  # fmt: skip
    # one iteration (max_float_nodes) reverts one group, which may hold several ops (the embedding Gathers)
    assert record["quantized_ops"] > len(record["reverted"]) >= 1 and record["plain_drop_points"] > 0
    assert all(op["name"] and op["op_type"] for op in record["reverted"])
    reference = model_outputs(tmp_path / "student.onnx", validation, "input_ids")
    got = RUNTIME.load(tmp_path / "int8.xml", 1)(validation)  # the IR stores f32 inference precision
    measured = drop_points(fidelity_to(got, reference, TEACHER_COSINE), TEACHER_COSINE)
    assert measured == pytest.approx(record["drop_points"], abs=1e-3)
    assert record["met"] == (record["drop_points"] <= 0)
