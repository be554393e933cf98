"""The trainer: resume gives the same weights, signals checkpoint, non-finite losses stop cleanly, the
teacher-output cache changes nothing but the speed, early stopping and the JSONL log."""

import json
import os
import signal

import numpy as np
import pytest
import torch

from edgekd.distill import LossSpec, TrainConfig, fit
from edgekd.distill.checkpoint import load_training_state
from edgekd.distill.run import predict_logits
from edgekd.distill.teacher_cache import CachedTeacher, LiveTeacher
from edgekd.distill.trainer import lr_factor
from edgekd.errors import StageError, TrainingInterrupted
from edgekd.models import build_model
from edgekd.recipe import TaskSection
from edgekd.tasks.digits import load_digits_task

LOSSES = [LossSpec("hinton-kd"), LossSpec("fitnets-hint", weight=0.1, student_layers=("3",), teacher_layers=("5",))]


@pytest.fixture(scope="module")
def data():
    task = load_digits_task(TaskSection())
    return task.x_train[:240], task.y_train[:240], task.x_val[:80], task.y_val[:80]


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(1)
    return build_model("digits-cnn", 10).eval()  # random but frozen: a fixed function is all the trainer needs


def _student():
    torch.manual_seed(0)
    return build_model("digits-tiny", 10)


def _fit(student, data, teacher, run_dir, config, **kwargs):
    return fit(student, *data, config, LOSSES, label="student (KD)", teacher=teacher, temperature=2.0, alpha=0.5,
               run_dir=run_dir, **kwargs)  # fmt: skip


CONFIG = TrainConfig(epochs=3, lr=5e-3, batch_size=32, seed=7, weight_decay=0.01, warmup_fraction=0.2, grad_clip=1.0)


def test_resume_gives_the_same_weights_as_a_straight_run(tmp_path, data, teacher):
    cache = tmp_path / "teacher-outputs"  # computed once, shared by both runs: also exercises resume + cache
    straight = _student()
    result = _fit(straight, data, teacher, tmp_path / "a", CONFIG, cache_teacher_dir=cache)
    assert result.steps == 24  # 240 samples / 32 per batch = 8 steps, 3 epochs

    def stop_halfway(trainer, step):
        if step == 12:  # mid-epoch: the sampler position must be restored, not just the epoch
            trainer.request_stop()

    resumed = _student()
    with pytest.raises(TrainingInterrupted, match="Run the same command again to resume"):
        _fit(resumed, data, teacher, tmp_path / "b", CONFIG, on_step=stop_halfway, cache_teacher_dir=cache)
    saved = load_training_state(tmp_path / "b" / "checkpoints" / "student-kd.pt")  # weights_only=True
    assert saved["state"]["global_step"] == 12
    again = _student()  # a new process would start from a fresh model: everything comes from the checkpoint
    result_b = _fit(again, data, teacher, tmp_path / "b", CONFIG, cache_teacher_dir=cache)
    assert result_b.steps == 24 and result_b.best_epoch == result.best_epoch
    for (name, a), b in zip(straight.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), name
    log = [json.loads(line) for line in (tmp_path / "b" / "train.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if "epoch" in r] == [1, 2, 3]
    assert any("resumed_at_step" in r for r in log)
    assert set(log[-1]["losses"]) == {"total", "hinton-kd", "fitnets-hint"}


def test_sigterm_checkpoints_at_the_next_step_and_says_how_to_resume(tmp_path, data, teacher):
    def send_sigterm(trainer, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 3 .*checkpoint saved"):
        _fit(_student(), data, teacher, tmp_path, CONFIG, on_step=send_sigterm)
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is restored
    assert load_training_state(tmp_path / "checkpoints" / "student-kd.pt")["state"]["global_step"] == 3


def test_non_finite_loss_names_the_step_and_saves_nothing_non_finite(tmp_path, data, teacher):
    config = TrainConfig(epochs=3, lr=1e12, batch_size=32, seed=0)
    with pytest.raises(StageError, match=r"loss became (nan|inf) at step \d+ \(epoch \d\)"):
        _fit(_student(), data, teacher, tmp_path, config)
    checkpoint = tmp_path / "checkpoints" / "student-kd.pt"
    if checkpoint.exists():  # an epoch may have finished before the blow-up: what it saved is finite
        saved = load_training_state(checkpoint)
        best = saved["state"]["best_state"] or {}
        assert all(torch.isfinite(v).all() for v in best.values() if v.is_floating_point())


def test_cached_teacher_outputs_match_live_and_train_the_same(tmp_path, data, teacher):
    keys = ["feature.5", "logits"]
    cached = CachedTeacher.build(teacher, data[0], keys, tmp_path / "cache", key="k1")
    assert (tmp_path / "cache" / "logits.npy").is_file()
    idx = torch.tensor([17, 3, 200, 3])
    live = LiveTeacher(teacher, data[0], keys).get(idx)
    for key in keys:
        assert torch.allclose(cached.get(idx)[key], live[key], atol=1e-5), key
    a, b = _student(), _student()
    config = TrainConfig(epochs=1, lr=5e-3, batch_size=32, seed=7)
    _fit(a, data, teacher, None, config)
    _fit(b, data, teacher, None, config, cache_teacher_dir=tmp_path / "cache2")
    assert np.allclose(predict_logits(a, data[2]), predict_logits(b, data[2]), atol=1e-4)


def test_early_stopping_stops_when_validation_stalls(data):
    config = TrainConfig(epochs=20, lr=1e-12, batch_size=64, seed=0, patience=2)  # too small an lr to improve
    result = fit(_student(), *data, config, [LossSpec("cross-entropy")], label="student")
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_lr_schedule_warms_up_then_decays_by_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_teacher_training_is_seeded_end_to_end(tmp_path):
    """The same recipe trains the same teacher bit for bit (init, batch order, dropout all seeded)."""
    from edgekd.distill.stage import teacher_stage
    from edgekd.recipe import load_recipe

    recipe = load_recipe(None, ["teacher.epochs=1"])
    task = load_digits_task(recipe.task)
    digests = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        torch.manual_seed(123 if name == "a" else 456)  # whatever ran before must not matter
        _, summary = teacher_stage(recipe.teacher, recipe.task, task, tmp_path / name, tmp_path / f"cache-{name}")
        digests.append(summary["sha256"])
    assert digests[0] == digests[1]
