"""Worker run by test_distill_ddp.py (single process or under torchrun), not a test: rank 0 writes the result."""

import json
import sys
from pathlib import Path

import torch

from edgekd.distill import LossSpec, TrainConfig, distributed, fit
from edgekd.distill.run import predict_logits
from edgekd.models import build_model, save_checkpoint
from edgekd.recipe import TaskSection
from edgekd.tasks.digits import load_digits_task


def main(out: Path) -> None:
    distributed.init_from_env()
    torch.set_num_threads(1)
    task = load_digits_task(TaskSection())
    torch.manual_seed(1)
    teacher = build_model("digits-cnn", 10).eval()
    torch.manual_seed(0)
    student = build_model("digits-tiny", 10)
    config = TrainConfig(epochs=2, lr=1e-2, batch_size=64, seed=0)  # the global batch, whatever the ranks
    losses = [LossSpec("hinton-kd"), LossSpec("fitnets-hint", weight=0.1, student_layers=("3",), teacher_layers=("5",))]
    result = fit(student, task.x_train[:512], task.y_train[:512], task.x_val, task.y_val, config, losses,
                 label="student", teacher=teacher, temperature=4.0, alpha=0.7)  # fmt: skip
    if distributed.is_main():
        save_checkpoint(student, out / "student.safetensors")
        logits = predict_logits(student, task.x_test)
        summary = {"val": result.best_val_metric, "test": float((logits.argmax(1) == task.y_test).mean()),
                   "world": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1}
        (out / "result.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
