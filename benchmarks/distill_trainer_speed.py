"""Trainer speed, side by side in one run, as ratios:

1. edgekd's Trainer vs a hand-written Hinton-KD loop (AdamW, same models, data, batch and epochs), both with
   the teacher computed live every step: samples/s of each and the ratio (goal >= 0.9x).
2. Teacher-output caching: the same Trainer with the frozen teacher's outputs memory-mapped from disk vs live,
   with a teacher whose forward pass costs >= 10x the student's (measured here, reported beside it).
   The cached figure includes building the cache (one teacher pass over the training set).

Trials alternate between the variants so drift on a shared machine hits both; the median is reported.
Usage: PYTHONPATH=. python benchmarks/distill_trainer_speed.py [--trials 5] [--epochs 10]
Writes benchmarks/results/distill_trainer_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from edgekd.distill import LossSpec, TrainConfig, fit
from edgekd.distill.losses import hinton_kd_loss
from edgekd.models import build_model
from edgekd.recipe import TaskSection
from edgekd.targets.this_host import host_facts
from edgekd.tasks.digits import load_digits_task

RESULTS = Path(__file__).parent / "results"
BATCH, LR, TEMPERATURE, ALPHA = 64, 1e-2, 4.0, 0.7


def hand_written_kd(student, teacher, x, y, epochs: int, seed: int) -> None:
    """What a user would write without edgekd: the reference loop."""
    generator = torch.Generator().manual_seed(seed)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.AdamW(student.parameters(), lr=LR, weight_decay=0.0)
    student.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            with torch.no_grad():
                teacher_logits = teacher(inputs[idx])
            loss = hinton_kd_loss(student(inputs[idx]), teacher_logits, labels[idx], TEMPERATURE, ALPHA)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def edgekd_trainer(student, teacher, task, epochs: int, seed: int, cache_dir: Path | None) -> None:
    fit(student, task.x_train, task.y_train, task.x_val, task.y_val, TrainConfig(epochs, LR, BATCH, seed),
        [LossSpec("hinton-kd")], label="bench", teacher=teacher, temperature=TEMPERATURE, alpha=ALPHA,
        cache_teacher_dir=cache_dir)  # fmt: skip


def forward_ms(model, x, repeats: int = 200) -> float:
    """The fastest of `repeats` forward passes at the training batch: the model's cost with the least noise
    from other processes on a shared machine."""
    batch = torch.from_numpy(x[:BATCH])
    model.eval()
    samples = []
    with torch.no_grad():
        for _ in range(20):
            model(batch)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(batch)
            samples.append(time.perf_counter() - t0)
    return min(samples) * 1e3


def timed(work) -> float:
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    task = load_digits_task(TaskSection())
    torch.manual_seed(0)
    teacher = build_model("digits-cnn", 10).eval()  # the cost, not the accuracy, matters here
    samples = len(task.x_train) * args.epochs

    def student():
        torch.manual_seed(1)
        return build_model("digits-tiny", 10)

    teacher_ms, student_ms = forward_ms(teacher, task.x_train), forward_ms(student(), task.x_train)
    times: dict[str, list[float]] = {"hand_written_live": [], "trainer_live": [], "trainer_cached": []}
    for trial in range(args.trials + 1):  # trial 0 warms up (lazy imports, oneDNN primitives) and is dropped
        if trial == 1:
            times = {name: [] for name in times}
        times["hand_written_live"].append(timed(lambda: hand_written_kd(student(), teacher, task.x_train,
                                                                        task.y_train, args.epochs, 0)))  # fmt: skip
        times["trainer_live"].append(timed(lambda: edgekd_trainer(student(), teacher, task, args.epochs, 0, None)))
        with tempfile.TemporaryDirectory() as tmp:  # a fresh cache each trial: its build is part of the cost
            times["trainer_cached"].append(timed(lambda: edgekd_trainer(student(), teacher, task, args.epochs, 0,
                                                                        Path(tmp))))  # fmt: skip
    rate = {name: samples / statistics.median(values) for name, values in times.items()}
    result = {
        "host": host_facts(),
        "threads": torch.get_num_threads(),
        "epochs": args.epochs,
        "trials": args.trials,
        "train_samples": len(task.x_train),
        "teacher_forward_ms_batch64": round(teacher_ms, 4),
        "student_forward_ms_batch64": round(student_ms, 4),
        "teacher_cost_ratio": round(teacher_ms / student_ms, 2),
        "seconds": {name: [round(v, 3) for v in values] for name, values in times.items()},
        "samples_per_s": {name: round(v, 1) for name, v in rate.items()},
        "trainer_vs_hand_written": round(rate["trainer_live"] / rate["hand_written_live"], 3),
        "cache_speedup": round(rate["trainer_cached"] / rate["trainer_live"], 3),
        "notes": "the trainer also validates every epoch (the hand loop does not); cached includes the cache build",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distill_trainer_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "distill_trainer_speed.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    s = r["samples_per_s"]
    return "\n".join([
        "# Distillation trainer speed (digits, CPU)",
        "",
        f"Host: {r['host']['cpu']}, {r['threads']} threads; {r['train_samples']} training samples x "
        f"{r['epochs']} epochs, batch {BATCH}; median of {r['trials']} alternating trials after a "
        "dropped warm-up round.",
        "",
        "| variant | samples/s |",
        "|---|---|",
        f"| hand-written KD loop (teacher live) | {s['hand_written_live']:,.0f} |",
        f"| edgekd Trainer (teacher live) | {s['trainer_live']:,.0f} |",
        f"| edgekd Trainer (teacher cached, build included) | {s['trainer_cached']:,.0f} |",
        "",
        f"- Trainer vs hand-written loop: **{r['trainer_vs_hand_written']:.2f}x** (goal >= 0.9x). The trainer also "
        "runs validation each epoch, which the hand loop does not.",
        f"- Teacher-output cache speed-up: **{r['cache_speedup']:.2f}x** (goal >= 1.5x) with a teacher whose "
        f"forward pass costs {r['teacher_cost_ratio']:.1f}x the student's "
        f"({r['teacher_forward_ms_batch64']:.3f} ms vs {r['student_forward_ms_batch64']:.3f} ms at batch 64).",
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
