"""The default run shows why distillation pays, and the report tells the training story.

One distill stage of the built-in recipe as it ships (seed 0, every default: 50 labelled training images, the
rest transfer samples): the distilled student must beat its labels-only twin. The report of the shared quick run
must draw the training curve (distilled, labels only, teacher) in report.html and say it in words.
"""

import json
import re

import numpy as np

from edgekd.distill.defaults import FROM_SCRATCH, PRETRAINED, resolve_distill
from edgekd.distill.stage import distill_stage, teacher_stage
from edgekd.distill.story import keep_labels
from edgekd.recipe import DistillSection, load_recipe
from edgekd.report.training import training_lines
from edgekd.tasks import load_task


def test_the_default_run_gains_from_distillation(tmp_path):
    recipe = load_recipe(None)
    task = load_task(recipe.task)
    teacher, _ = teacher_stage(recipe.teacher, recipe.task, task, tmp_path, tmp_path / "cache")
    summary = distill_stage(recipe.distill, recipe.student, recipe.teacher, recipe.task, task, teacher, tmp_path)
    assert summary["labelled_train"] == recipe.distill.labelled_samples == 50
    kd, twin = summary["kd"]["test_accuracy"], summary["labels_only"]["test_accuracy"]
    assert kd - twin > 0.02, (kd, twin)  # the soft targets on the unlabelled samples carry what 50 labels cannot
    assert summary["defaults"]["student_kind"] == FROM_SCRATCH.kind and summary["lr"] == FROM_SCRATCH.lr
    curve = summary["kd"]["curve"]
    assert curve[0]["epoch"] == 0 and len(curve) == summary["epochs"] + 1
    assert summary["kd"]["samples_per_second"] > 0 and 0 < summary["kd"]["gap_recovered"] <= 1.5


def test_training_curve_is_drawn_in_report_html(quick_run):
    html = (quick_run / "report.html").read_text()
    assert "<h2>Training</h2>" in html
    series = re.findall(r'<polyline class="curve" data-series="([^"]+)" points="([^"]+)"', html)
    assert {name for name, _ in series} == {"distilled", "labels only"}
    report = json.loads((quick_run / "report.json").read_text())
    epochs = report["stages"]["distill"]["epochs"]
    assert all(len(points.split()) == epochs + 1 for _, points in series)  # epoch 0 (before training) and each epoch
    assert "stroke-dasharray" in html  # the teacher's line
    lines = training_lines(report)
    assert any(line.startswith("distillation: val accuracy") and "samples/s" in line for line in lines)


def test_defaults_follow_the_kind_of_student():
    auto = DistillSection()
    scratch, record = resolve_distill(auto, pretrained=False)
    pretrained, _ = resolve_distill(auto, pretrained=True)
    assert (scratch.lr, scratch.epochs, scratch.patience) == (FROM_SCRATCH.lr, FROM_SCRATCH.epochs, 0)
    assert pretrained.lr == PRETRAINED.lr < scratch.lr / 10 and pretrained.patience > 0
    assert set(record["filled"]) == {"lr", "epochs", "batch_size", "warmup_fraction", "weight_decay", "patience"}
    pinned, record = resolve_distill(DistillSection(lr=0.05, patience=0), pretrained=True)
    assert pinned.lr == 0.05 and pinned.patience == 0 and "lr" not in record["filled"]  # a recipe's value wins


def test_keep_labels_draws_a_balanced_seeded_subset():
    labels = np.repeat(np.arange(10), 30)
    labels[::7] = -1  # some already unlabelled
    kept = keep_labels(labels, 50, seed=3)
    assert (kept != -1).sum() == 50 and np.array_equal(kept, keep_labels(labels, 50, seed=3))
    assert set(np.bincount(kept[kept != -1])) == {5}
    assert np.all((kept == labels) | (kept == -1))
    assert keep_labels(labels, 0, seed=3) is labels
