"""What a distillation run says about itself: where the student started and ended, the curve in between, how much
of the teacher - labels-only gap it recovered, how fast it trained, and what to try when it fell short.

Also the one way to hide labels (`keep_labels`): the few-labels setting where distillation pays, a teacher that
came trained and a student with few labels of its own plus unlabelled transfer samples.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgekd.distill.losses import UNLABELLED
from edgekd.distill.trainer import TrainResult

LOW_COSINE = 0.9  # an embedding student below this cosine to its teacher is not yet a stand-in for it
LOW_AGREEMENT = 0.95  # a classifier student that disagrees with its teacher on > 5% of samples


def keep_labels(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`labels` with all but `count` of the labelled samples set to unlabelled: a seeded draw, as even across
    the classes as their sizes allow. `count` 0 (or more than there are) keeps every label."""
    labelled = np.flatnonzero(labels != UNLABELLED)
    if count <= 0 or count >= len(labelled):
        return labels
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(labelled[labels[labelled] == c]) for c in np.unique(labels[labelled])]
    keep: list[int] = []
    rank = 0
    while len(keep) < count:  # round-robin over the classes: the r-th sample of each class, then the next
        keep.extend(int(members[rank]) for members in by_class if rank < len(members))
        rank += 1
    masked = np.full_like(labels, UNLABELLED)
    chosen = np.asarray(sorted(keep[:count]))
    masked[chosen] = labels[chosen]
    return masked


def curve(result: TrainResult) -> list[dict[str, float]]:
    """Validation metric per epoch, epoch 0 being the student before training."""
    points = [{"epoch": 0, "val": round(result.initial_val_metric, 6)}] if math.isfinite(
        result.initial_val_metric) else []  # fmt: skip
    return points + [{"epoch": r["epoch"], "val": round(r["val_metric"], 6)} for r in result.history]


def training_figures(result: TrainResult) -> dict[str, Any]:
    """Steps, wall time in training steps and samples/s, for the summary."""
    rate = result.samples_per_second()
    return {"train_seconds": round(result.train_seconds, 3),
            "samples_per_second": round(rate, 1) if math.isfinite(rate) else None}  # fmt: skip


def gap_recovered(student: float, labels_only: float, teacher: float) -> float | None:
    """The share of the teacher - labels-only gap the distilled student closes; None when there is no gap."""
    gap = teacher - labels_only
    if gap <= 0:
        return None
    return round((student - labels_only) / gap, 4)


def advice(fidelity: dict[str, float], result: TrainResult, train_samples: int, epochs: int) -> list[str]:
    """What to try when the student's fidelity is low, read off the run itself (empty when it is not low)."""
    embedding = "top1_agreement" not in fidelity
    figure, floor = (fidelity["cosine"], LOW_COSINE) if embedding else (fidelity["top1_agreement"], LOW_AGREEMENT)
    if figure >= floor:
        return []
    name = "cosine to the teacher" if embedding else "top-1 agreement with the teacher"
    tips = [f"the student's {name} is {figure:.3f} (below {floor}):"]
    values = [r["val_metric"] for r in result.history]
    if values and math.isfinite(result.initial_val_metric) and max(values) < result.initial_val_metric:
        tips.append("training made the student worse than where it started: lower distill.lr (e.g. 1e-4)")
    still_rising = bool(values) and result.best_epoch == len(values) and not result.stopped_early
    if still_rising:
        tips.append(f"it was still improving at the last epoch: more steps (distill.epochs > {epochs})")
    if train_samples < 10_000:
        tips.append(f"more transfer data: {train_samples} training samples; unlabelled inputs of the same kind "
                    "work (the teacher labels them)")  # fmt: skip
    tips.append("a wider or deeper student (student.shrink_layers, student.shrink_hidden_size), or hidden-state-mse "
                "and attention-kl terms beside the output loss")  # fmt: skip
    return tips
