"""Teacher-assistant chains and unlabelled transfer data."""

import numpy as np
import torch

from edgekd.distill import LossSpec, TrainConfig, fit
from edgekd.models import build_model
from edgekd.recipe import TaskSection
from edgekd.report.document import load_report
from edgekd.tasks.digits import load_digits_task


def test_student_learns_from_the_teacher_alone_when_no_sample_is_labelled():
    task = load_digits_task(TaskSection())
    torch.manual_seed(0)
    teacher = build_model("digits-tiny", 10)
    fit(teacher, task.x_train, task.y_train, task.x_val, task.y_val, TrainConfig(5, 1e-2, 64, 0),
        [LossSpec("cross-entropy")], label="teacher")  # fmt: skip
    torch.manual_seed(1)
    student = build_model("digits-tiny", 10)
    no_labels = np.full_like(task.y_train, -1)
    result = fit(student, task.x_train, no_labels, task.x_val, task.y_val, TrainConfig(5, 1e-2, 64, 0),
                 [LossSpec("hinton-kd")], label="student", teacher=teacher.eval(), temperature=4.0,
                 alpha=0.7)  # fmt: skip
    assert result.best_val_metric > 0.8  # chance is 0.1: everything it knows came through the teacher


def test_assistant_chain_in_the_pipeline(tmp_path):
    from edgekd.cli import main

    args = ["distill-and-export", "--output-dir", str(tmp_path), "--run-name", "chain"]
    # teacher.epochs=4 as in quick_run: the session cache then serves the same teacher instead of training one
    for override in ['distill.assistants=[{factory="tests.model_factories:mlp", factory_kwargs={hidden=48}, '
                     'architecture="mlp-48"}]', "teacher.epochs=4", "distill.epochs=2",
                     "distill.train_scratch_baseline=false", "measure.warmup_runs=1", "measure.min_runs=3",
                     "measure.min_seconds=0.01", "build.openvino=false",
                     'quantize.variants=["int8-dynamic"]']:  # fmt: skip
        args += ["--set", override]
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None)
    report = load_report(tmp_path / "chain")
    (assistant,) = report["stages"]["distill"]["assistants"]
    assert assistant["architecture"] == "mlp-48" and assistant["params"] == 64 * 48 + 48 + 48 * 10 + 10
    assert 0 <= assistant["test_accuracy"] <= 1
    assert {row["status"] for row in report["rows"]} == {"ok"}
